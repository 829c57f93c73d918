//! Raft storage for every group a node hosts: the control plane (membership and shard
//! table) and one group per shard (the replicated message logs).
//!
//! All groups of a node share one RocksDB (the same one as [`crate::Store`] in a
//! single process) and three column families, every key starting with the group id
//! (u64, big-endian):
//!
//! | column family | key after the group id | value |
//! |---------------|------------------------|-------|
//! | `raft_log`    | log index u64          | bincode `Entry` |
//! | `raft_meta`   | tag u8 (vote, committed, purged, snapshot, applied, membership) | bincode |
//! | `raft_state`  | the state machine's own key | the state machine's own value |
//!
//! Log appends of every group are made durable by one shared WAL fsync
//! ([`RaftDb`]'s sync thread): a group commit across groups, so 64 groups do not
//! cost 64 fsyncs. A state machine writes its changes and its `last_applied` in one
//! batch without fsync: after a crash it is never ahead of the durable log, and
//! openraft re-applies what it lost from the log.
//!
//! This module opens no sockets; the broker's cluster layer supplies the network.

pub mod control;
mod log_store;
mod machine;
pub mod placement;
pub mod shard;
mod sync;

pub use control::{ClusterMeta, ControlCommand, ControlLogic, ControlReader, ControlResponse, NodeRecord, NodeState, ShardRecord, TenantMove, TenantPlacement};
pub use log_store::LogStore;
pub use machine::{Logic, Overlay, StateMachine};
pub use shard::{AppendCommand, RecordSpace, RecordWrite, ShardCommand, ShardListener, ShardLogic, ShardReader, ShardResponse, TenantWrites};

use crate::error::StoreError;
use crate::keys::RAFT_CFS;
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// A node's id in the cluster.
pub type NodeId = u64;

/// A raft group's id: 0 is the control plane, `1 + shard` a shard.
pub type GroupId = u64;

/// The control plane's group id.
pub const CONTROL_GROUP: GroupId = 0;

/// The group id of shard `shard`.
pub fn shard_group(shard: u32) -> GroupId {
    shard as GroupId + 1
}

/// The shard of a group id (`None` for the control plane).
pub fn group_shard(group: GroupId) -> Option<u32> {
    group.checked_sub(1).and_then(|s| u32::try_from(s).ok())
}

/// Where a node listens: for peers (raft and forwarded traffic) and for clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the peer listener.
    pub peer: String,
    /// `host:port` of the client listener (TCP).
    pub client: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer, self.client)
    }
}

openraft::declare_raft_types!(
    /// Type configuration of the control-plane group.
    pub ControlConfig:
        D = ControlCommand,
        R = ControlResponse,
        NodeId = NodeId,
        Node = NodeAddr,
);

openraft::declare_raft_types!(
    /// Type configuration of the shard groups.
    pub ShardConfig:
        D = ShardCommand,
        R = ShardResponse,
        NodeId = NodeId,
        Node = NodeAddr,
);

/// A storage error as openraft wants it.
pub type StorageError = openraft::StorageError<NodeId>;

/// The RocksDB every raft group of a node lives in, and the thread that fsyncs its
/// write-ahead log for log appends of all groups at once.
pub struct RaftDb {
    db: Arc<DB>,
    sync: sync::Syncer,
}

impl RaftDb {
    /// Opens (creating if needed) a RocksDB holding only the raft column families.
    pub fn open(path: &Path) -> Result<Arc<RaftDb>, StoreError> {
        let db = crate::store::open_db(path, &RAFT_CFS)?;
        Ok(RaftDb::on(Arc::new(db), true))
    }

    /// Raft storage in an already open RocksDB that has the raft column families.
    /// `fsync` off only for throwaway tests.
    pub fn on(db: Arc<DB>, fsync: bool) -> Arc<RaftDb> {
        let sync = sync::Syncer::start(db.clone(), fsync);
        Arc::new(RaftDb { db, sync })
    }

    /// The underlying database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The log store of one group.
    pub fn log_store<C>(self: &Arc<Self>, group: GroupId) -> LogStore<C>
    where
        C: openraft::RaftTypeConfig<NodeId = NodeId, Entry = openraft::Entry<C>>,
    {
        LogStore::new(self.clone(), group)
    }

    /// The state machine of one group.
    pub fn state_machine<C, L>(self: &Arc<Self>, group: GroupId, logic: L) -> Result<StateMachine<C, L>, StoreError>
    where
        C: openraft::RaftTypeConfig<NodeId = NodeId, Node = NodeAddr, Entry = openraft::Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
        C::R: Clone,
        L: Logic<C>,
    {
        StateMachine::open(self.clone(), group, logic)
    }

    /// Deletes everything of `group` on this node (a replica that was moved away).
    pub fn remove_group(&self, group: GroupId) -> Result<(), StoreError> {
        let mut batch = rocksdb::WriteBatch::default();
        for name in RAFT_CFS {
            let cf = self.db.cf_handle(name).ok_or(StoreError::Closed)?;
            batch.delete_range_cf(cf, group.to_be_bytes().to_vec(), group_end(group));
        }
        self.db.write(batch).map_err(StoreError::rocks("remove raft group"))
    }

    /// Every group that has anything stored on this node (log, vote or state).
    pub fn groups_on_disk(&self) -> Result<Vec<GroupId>, StoreError> {
        let cf = self.db.cf_handle(crate::keys::CF_RAFT_META).ok_or(StoreError::Closed)?;
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let mut it = self.db.raw_iterator_cf(cf);
            it.seek(from.to_be_bytes());
            let Some(key) = it.key() else { break };
            let Some(group) = key.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))) else { break };
            out.push(group);
            match group.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }
}

/// `group ++ suffix`.
pub(crate) fn group_key(group: GroupId, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + suffix.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// The first key after every key of `group`.
pub(crate) fn group_end(group: GroupId) -> Vec<u8> {
    match group.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    }
}

pub(crate) fn io_error(e: impl ToString) -> openraft::AnyError {
    openraft::AnyError::error(e)
}
