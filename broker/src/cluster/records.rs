//! The record pipeline: a tenant's directory and conversation records are written
//! through the raft group of the tenant's shard (`placement::tenant_shard`) before
//! the store writes them on the home node, so every replica of that shard holds
//! them and can take the tenant over (`cluster::takeover`).
//!
//! One task per shard keeps the writes in order: it takes everything waiting (up to
//! [`MAX_BATCH_BYTES`]), proposes it as one `ShardCommand::Records` entry, and
//! completes each write in submission order. Each write carries the tenant's
//! placement epoch; once a newer home has written with a higher epoch, the shard
//! refuses it (`Fenced`), so a node that lost a tenant cannot overwrite its records.

use super::node::ClusterNode;
use dashmap::DashMap;
use std::sync::Arc;
use switchboard_protocol::TenantId;
use switchboard_raft_store::raft::{placement, RecordWrite, ShardCommand, ShardResponse, TenantWrites};
use switchboard_raft_store::{RecordReplicator, StoreError};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Most record bytes in one raft entry (far under the peer link's 16 MiB frame).
const MAX_BATCH_BYTES: usize = 1 << 20;

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Pending {
    tenant: TenantId,
    writes: Vec<RecordWrite>,
    done: Done,
}

/// Replicates tenants' records through their shards' raft groups.
pub struct RecordPipeline {
    node: Arc<ClusterNode>,
    runtime: Handle,
    shards: u32,
    queues: DashMap<u32, mpsc::UnboundedSender<Pending>>,
}

impl RecordPipeline {
    /// A pipeline writing through `node`, its tasks on `runtime`.
    pub fn new(node: Arc<ClusterNode>, runtime: Handle, shards: u32) -> Self {
        RecordPipeline { node, runtime, shards, queues: DashMap::new() }
    }
}

impl RecordReplicator for RecordPipeline {
    fn replicate(&self, tenant: TenantId, writes: Vec<RecordWrite>, done: Done) {
        let shard = placement::tenant_shard(tenant, self.shards);
        let queue = self
            .queues
            .entry(shard)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                self.runtime.spawn(run(self.node.clone(), shard, rx));
                tx
            })
            .clone();
        if let Err(mpsc::error::SendError(p)) = queue.send(Pending { tenant, writes, done }) {
            (p.done)(Err(StoreError::Closed));
        }
    }
}

fn size(writes: &[RecordWrite]) -> usize {
    writes.iter().map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len) + 16).sum()
}

async fn run(node: Arc<ClusterNode>, shard: u32, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = size(&first.writes);
        let mut batch = vec![first];
        while bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += size(&p.writes);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let command = ShardCommand::Records(
            batch.iter().map(|p| TenantWrites { tenant: p.tenant, epoch: node.tenant_epoch(p.tenant), writes: p.writes.clone() }).collect(),
        );
        let n = batch.len();
        let answers: Vec<Result<(), StoreError>> = match node.write(shard, command).await {
            Ok(ShardResponse::Batch(responses)) if responses.len() == n => responses
                .into_iter()
                .zip(&batch)
                .map(|(r, p)| match r {
                    ShardResponse::Done => Ok(()),
                    ShardResponse::Fenced { epoch } => {
                        tracing::warn!(tenant = p.tenant.0, epoch, "a record write was refused: the tenant moved to another node");
                        Err(StoreError::WriteFailed { reason: format!("tenant {} is served by another node now (epoch {epoch})", p.tenant.0) })
                    }
                    other => Err(StoreError::WriteFailed { reason: format!("unexpected answer {other:?}") }),
                })
                .collect(),
            Ok(other) => (0..n).map(|_| Err(StoreError::WriteFailed { reason: format!("unexpected answer {other:?}") })).collect(),
            Err(e) => (0..n).map(|_| Err(StoreError::WriteFailed { reason: format!("replicating records: {e}") })).collect(),
        };
        for (p, answer) in batch.into_iter().zip(answers) {
            (p.done)(answer);
        }
    }
}
