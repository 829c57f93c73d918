//! What a node answers on the peer link: raft messages of every group it hosts,
//! joins, and writes forwarded to the leader it is.

use super::node::ClusterNode;
use super::rpc::{PeerRequest, PeerResponse, WriteError};
use super::transport::{BoxFuture, PeerHandler};
use openraft::error::Fatal;
use openraft::Raft;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use switchboard_raft_store::raft::{ControlCommand, ControlResponse, NodeId, NodeRecord, ShardConfig};

impl ClusterNode {
    /// Adds a node to the cluster (on the control-plane leader): the node table, then
    /// the control group as a learner, then as a voter while there are fewer than
    /// the configured voters.
    async fn handle_join(&self, record: NodeRecord) -> Result<ControlResponse, WriteError> {
        if !self.is_control_leader() {
            return self.forward_to_control_leader(PeerRequest::Join(record)).await;
        }
        let known = self.tables().nodes().map_err(|e| WriteError::Unavailable(e.to_string()))?.into_iter().find(|n| n.id == record.id);
        if known.as_ref().map(|k| &k.addr) != Some(&record.addr) {
            self.control_write(ControlCommand::PutNode(record.clone())).await.map_err(WriteError::Unavailable)?;
        }
        let m = self.control.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&record.id) && !membership.learner_ids().any(|l| l == record.id) {
            self.control.add_learner(record.id, record.addr.clone(), true).await.map_err(|e| WriteError::Unavailable(e.to_string()))?;
        }
        if !voters.contains(&record.id) && voters.len() < self.config.voters {
            voters.insert(record.id);
            self.control.change_membership(voters, false).await.map_err(|e| WriteError::Unavailable(e.to_string()))?;
        }
        Ok(ControlResponse::Ok)
    }

    async fn serve_shard<T>(&self, shard: u32, open: bool, f: impl FnOnce(Raft<ShardConfig>) -> T) -> Result<T::Output, Fatal<NodeId>>
    where
        T: Future,
    {
        let replica = match self.replica(shard) {
            Some(r) => r,
            // A leader sending entries or a snapshot means this node is (becoming) a
            // replica: open the group. Votes alone never create one.
            None if open && self.shard_count().is_some_and(|n| shard < n) => self.open_shard(shard).await.map_err(|_| Fatal::Stopped)?,
            None => return Err(Fatal::Stopped),
        };
        Ok(f(replica.raft).await)
    }
}

impl PeerHandler for ClusterNode {
    fn handle(self: Arc<Self>, request: PeerRequest) -> BoxFuture<PeerResponse> {
        Box::pin(async move {
            match request {
                PeerRequest::ControlAppend(r) => PeerResponse::Append(self.control.append_entries(r).await),
                PeerRequest::ControlVote(r) => PeerResponse::Vote(self.control.vote(r).await),
                PeerRequest::ControlSnapshot(r) => PeerResponse::Snapshot(self.control.install_snapshot(r).await),
                PeerRequest::ShardAppend(shard, r) => {
                    PeerResponse::Append(self.serve_shard(shard, true, |raft| async move { raft.append_entries(r).await }).await.unwrap_or_else(|f| Err(f.into())))
                }
                PeerRequest::ShardVote(shard, r) => {
                    PeerResponse::Vote(self.serve_shard(shard, false, |raft| async move { raft.vote(r).await }).await.unwrap_or_else(|f| Err(f.into())))
                }
                PeerRequest::ShardSnapshot(shard, r) => PeerResponse::Snapshot(
                    self.serve_shard(shard, true, |raft| async move { raft.install_snapshot(r).await }).await.unwrap_or_else(|f| Err(f.into())),
                ),
                PeerRequest::Join(record) => PeerResponse::Control(self.handle_join(record).await),
                request @ (PeerRequest::ControlWrite(_) | PeerRequest::RemoveNode(_)) => PeerResponse::Control(self.lead_request(request).await),
                PeerRequest::TakeLeadership(group) => PeerResponse::Control(self.take_leadership(group).await),
                // Also the probe of `cluster::homes`: a node cut off by its own probes
                // fails it, so the others move its tenants even when they can still
                // reach it (its own links out failed, theirs in did not).
                PeerRequest::HostedShards if self.is_cut_off() => PeerResponse::Shard(Err(WriteError::Unavailable("this node is cut off from a quorum of the cluster".into()))),
                PeerRequest::HostedShards => PeerResponse::Hosted(self.replicas().into_iter().map(|r| r.shard).collect()),
                PeerRequest::ShardMembers(shard) => PeerResponse::Members(self.applied_members(shard)),
                PeerRequest::TenantHome(tenant) => PeerResponse::TenantHome(self.tables().tenant_home(tenant).ok().flatten()),
                PeerRequest::ShardWrite(shard, command) => {
                    let deadline = Instant::now() + self.config.write_timeout;
                    PeerResponse::Shard(self.write_local(shard, command, deadline).await)
                }
            }
        })
    }
}
