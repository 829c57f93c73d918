//! A raft state machine kept under one group's prefix of `raft_state`, generic over
//! the rules that turn commands into key writes ([`Logic`]).
//!
//! Applying a batch of entries writes their changes, `last_applied` and the
//! membership in one RocksDB batch. A snapshot is every key of the group, read from
//! one RocksDB snapshot; installing one replaces the group's keys in one batch.

use super::log_store::{decode, encode, meta};
use super::{group_end, group_key, io_error, GroupId, NodeAddr, NodeId, RaftDb, StorageError};
use crate::error::StoreError;
use crate::keys::{CF_RAFT_META, CF_RAFT_STATE};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The rules of one kind of state machine.
pub trait Logic<C: RaftTypeConfig>: Send + Sync + 'static {
    /// Applies one command: reads and writes go through `state`, which sees the
    /// writes of earlier commands of the same batch. Must be deterministic: every
    /// replica applies the same commands to the same state. An `Err` stops the group
    /// (it means the local state cannot be read); business rejections belong in `C::R`.
    fn apply(&self, state: &mut Overlay<'_>, command: &C::D) -> Result<C::R, StoreError>;
    /// The response to a blank or membership entry.
    fn empty_response(&self) -> C::R;
    /// Called after a batch is written, with each applied command and its response.
    fn applied(&self, _results: &[(C::D, C::R)]) {}
    /// Called after a snapshot replaced the whole state (drop any cache).
    fn reset(&self) {}
}

/// The state of one group as seen while applying: the database plus the writes of
/// the batch so far.
pub struct Overlay<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    group: GroupId,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    /// An overlay over `db` with no writes yet, for applying commands in tests.
    #[cfg(test)]
    pub(crate) fn for_test(db: &'a DB, group: GroupId) -> Self {
        let cf = db.cf_handle(crate::keys::CF_RAFT_STATE).expect("raft_state column family");
        Overlay { db, cf, group, writes: BTreeMap::new() }
    }

    /// Writes what the overlay holds to the database, as applying a batch would.
    #[cfg(test)]
    pub(crate) fn commit_for_test(self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.put_cf(self.cf, group_key(self.group, &k), v),
                None => batch.delete_cf(self.cf, group_key(self.group, &k)),
            }
        }
        self.db.write(batch).map_err(StoreError::rocks("commit overlay"))
    }

    /// The value of `key` (within this group).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        self.db.get_cf(self.cf, group_key(self.group, key)).map_err(StoreError::rocks("read raft state"))
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
}

/// What a snapshot holds: every key of the group (without the group prefix).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A stored snapshot: its meta and its bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeAddr>,
    data: Vec<u8>,
}

/// A group's state machine. Clones share everything.
pub struct StateMachine<C, L> {
    db: Arc<RaftDb>,
    group: GroupId,
    logic: Arc<L>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeAddr>,
    snapshots: Arc<AtomicU64>,
    _config: std::marker::PhantomData<fn() -> C>,
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or(StoreError::Corrupt { what: "raft column family", reason: format!("{name} is missing") })
}

fn read_err(e: impl ToString) -> StorageError {
    StorageIOError::read_state_machine(io_error(e)).into()
}

fn write_err(e: impl ToString) -> StorageError {
    StorageIOError::write_state_machine(io_error(e)).into()
}

impl<C, L> StateMachine<C, L>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = NodeAddr, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Clone,
    L: Logic<C>,
{
    pub(crate) fn open(db: Arc<RaftDb>, group: GroupId, logic: L) -> Result<Self, StoreError> {
        let meta_cf = cf(db.db(), CF_RAFT_META)?;
        let read = |tag: u8| db.db().get_cf(meta_cf, group_key(group, &[tag])).map_err(StoreError::rocks("read raft meta"));
        let last_applied = match read(meta::APPLIED)? {
            Some(b) => decode(&b).map_err(|e| StoreError::Corrupt { what: "raft applied", reason: e.to_string() })?,
            None => None,
        };
        let membership = match read(meta::MEMBERSHIP)? {
            Some(b) => decode(&b).map_err(|e| StoreError::Corrupt { what: "raft membership", reason: e.to_string() })?,
            None => StoredMembership::default(),
        };
        Ok(StateMachine {
            db,
            group,
            logic: Arc::new(logic),
            last_applied,
            membership,
            snapshots: Arc::new(AtomicU64::new(0)),
            _config: std::marker::PhantomData,
        })
    }

    /// The rules, shared with readers of this machine.
    pub fn logic(&self) -> &Arc<L> {
        &self.logic
    }

    fn meta_key(&self, tag: u8) -> Vec<u8> {
        group_key(self.group, &[tag])
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let meta_cf = cf(self.db.db(), CF_RAFT_META).map_err(read_err)?;
        match self.db.db().get_cf(meta_cf, self.meta_key(meta::SNAPSHOT)).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }
}

impl<C, L> Clone for StateMachine<C, L> {
    fn clone(&self) -> Self {
        StateMachine {
            db: self.db.clone(),
            group: self.group,
            logic: self.logic.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
            _config: std::marker::PhantomData,
        }
    }
}

impl<C, L> RaftSnapshotBuilder<C> for StateMachine<C, L>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = NodeAddr, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Clone,
    L: Logic<C>,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError> {
        let db = self.db.db();
        let state_cf = cf(db, CF_RAFT_STATE).map_err(read_err)?;
        let meta_cf = cf(db, CF_RAFT_META).map_err(read_err)?;
        // One RocksDB snapshot: the keys, last_applied and membership agree.
        let snap = db.snapshot();
        let last_applied: Option<LogId<NodeId>> = match snap.get_cf(meta_cf, self.meta_key(meta::APPLIED)).map_err(read_err)? {
            Some(b) => decode(&b).map_err(read_err)?,
            None => None,
        };
        let last_membership: StoredMembership<NodeId, NodeAddr> = match snap.get_cf(meta_cf, self.meta_key(meta::MEMBERSHIP)).map_err(read_err)? {
            Some(b) => decode(&b).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(group_end(self.group));
        let mut pairs = Vec::new();
        for item in snap.iterator_cf_opt(state_cf, opts, rocksdb::IteratorMode::From(&self.group.to_be_bytes(), rocksdb::Direction::Forward)) {
            let (k, v) = item.map_err(read_err)?;
            pairs.push((k[8..].to_vec(), v.to_vec()));
        }
        drop(snap);
        let data = encode(&SnapshotData { pairs }).map_err(|e| StorageIOError::write_snapshot(None, e))?;
        let n = self.snapshots.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}-{n}", self.group, l.leader_id, l.index),
            None => format!("{}-none-{n}", self.group),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        // Stored with fsync: after this the log before it may be purged, so the state
        // it stands for (written earlier to the same WAL) must be durable too.
        let stored = encode(&StoredSnapshot { meta: meta.clone(), data: data.clone() }).map_err(|e| StorageIOError::write_snapshot(None, e))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.put_cf_opt(meta_cf, self.meta_key(meta::SNAPSHOT), stored, &wo)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_error(e)))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl<C, L> RaftStateMachine<C> for StateMachine<C, L>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = NodeAddr, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Clone,
    L: Logic<C>,
{
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddr>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.db();
        let state_cf = cf(db, CF_RAFT_STATE).map_err(write_err)?;
        let meta_cf = cf(db, CF_RAFT_META).map_err(write_err)?;
        let mut overlay = Overlay { db, cf: state_cf, group: self.group, writes: BTreeMap::new() };
        let mut responses = Vec::new();
        let mut applied = Vec::new();
        let mut last_applied = self.last_applied;
        let mut membership = self.membership.clone();
        for entry in entries {
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(self.logic.empty_response()),
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    responses.push(self.logic.empty_response());
                }
                EntryPayload::Normal(command) => {
                    let response = self.logic.apply(&mut overlay, &command).map_err(write_err)?;
                    responses.push(response.clone());
                    applied.push((command, response));
                }
            }
        }
        let mut batch = WriteBatch::default();
        for (k, v) in overlay.writes {
            let key = group_key(self.group, &k);
            match v {
                Some(v) => batch.put_cf(state_cf, key, v),
                None => batch.delete_cf(state_cf, key),
            }
        }
        batch.put_cf(meta_cf, self.meta_key(meta::APPLIED), encode(&last_applied).map_err(write_err)?);
        batch.put_cf(meta_cf, self.meta_key(meta::MEMBERSHIP), encode(&membership).map_err(write_err)?);
        db.write(batch).map_err(write_err)?;
        self.last_applied = last_applied;
        self.membership = membership;
        if !applied.is_empty() {
            self.logic.applied(&applied);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<NodeId, NodeAddr>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let contents: SnapshotData = decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        let db = self.db.db();
        let state_cf = cf(db, CF_RAFT_STATE).map_err(write_err)?;
        let meta_cf = cf(db, CF_RAFT_META).map_err(write_err)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(state_cf, self.group.to_be_bytes().to_vec(), group_end(self.group));
        for (k, v) in &contents.pairs {
            batch.put_cf(state_cf, group_key(self.group, k), v);
        }
        batch.put_cf(meta_cf, self.meta_key(meta::APPLIED), encode(&meta.last_log_id).map_err(write_err)?);
        batch.put_cf(meta_cf, self.meta_key(meta::MEMBERSHIP), encode(&meta.last_membership).map_err(write_err)?);
        let stored = encode(&StoredSnapshot { meta: meta.clone(), data }).map_err(write_err)?;
        batch.put_cf(meta_cf, self.meta_key(meta::SNAPSHOT), stored);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_error(e)))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.logic.reset();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
