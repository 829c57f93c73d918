//! `RaftLogStorage` of one group in the node's shared RocksDB.

use super::{group_end, group_key, io_error, GroupId, NodeId, RaftDb, StorageError};
use crate::keys::{CF_RAFT_LOG, CF_RAFT_META};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, RaftTypeConfig, StorageIOError, Vote};
use rocksdb::{ColumnFamily, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Tags of the per-group records in `raft_meta`.
pub(crate) mod meta {
    pub const VOTE: u8 = 1;
    pub const COMMITTED: u8 = 2;
    pub const PURGED: u8 = 3;
    pub const SNAPSHOT: u8 = 4;
    pub const APPLIED: u8 = 5;
    pub const MEMBERSHIP: u8 = 6;
}

/// The raft log of one group. Cheap to clone; clones share the database.
pub struct LogStore<C> {
    db: Arc<RaftDb>,
    group: GroupId,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore { db: self.db.clone(), group: self.group, _config: PhantomData }
    }
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, openraft::AnyError> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(io_error)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, openraft::AnyError> {
    bincode::serde::decode_from_slice(bytes, bincode_config()).map(|(v, _)| v).map_err(io_error)
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
{
    pub(crate) fn new(db: Arc<RaftDb>, group: GroupId) -> Self {
        LogStore { db, group, _config: PhantomData }
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StorageError> {
        self.db.db().cf_handle(name).ok_or_else(|| StorageIOError::read(io_error(format!("column family {name} is missing"))).into())
    }

    fn log_key(&self, index: u64) -> Vec<u8> {
        group_key(self.group, &index.to_be_bytes())
    }

    fn meta_key(&self, tag: u8) -> Vec<u8> {
        group_key(self.group, &[tag])
    }

    fn get_meta<T: DeserializeOwned>(&self, tag: u8) -> Result<Option<T>, StorageError> {
        let value = self.db.db().get_cf(self.cf(CF_RAFT_META)?, self.meta_key(tag)).map_err(|e| StorageIOError::read(io_error(e)))?;
        match value {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(StorageIOError::read)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, tag: u8, value: &T, sync: bool) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(StorageIOError::write)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .db()
            .put_cf_opt(self.cf(CF_RAFT_META)?, self.meta_key(tag), bytes, &opts)
            .map_err(|e| StorageIOError::write(io_error(e)).into())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let mut it = self.db.db().raw_iterator_cf(self.cf(CF_RAFT_LOG)?);
        it.seek_for_prev(self.log_key(u64::MAX));
        match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(&self.group.to_be_bytes()) => {
                let entry: Entry<C> = decode(v).map_err(StorageIOError::read_logs)?;
                Ok(Some(entry.log_id))
            }
            _ => it.status().map(|_| None).map_err(|e| StorageIOError::read_logs(io_error(e)).into()),
        }
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(&mut self, range: RB) -> Result<Vec<C::Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let mut it = self.db.db().raw_iterator_cf(self.cf(CF_RAFT_LOG)?);
        it.seek(self.log_key(start));
        let prefix = self.group.to_be_bytes();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || k.len() != 16 {
                break;
            }
            let index = u64::from_be_bytes(k[8..16].try_into().unwrap_or([0xff; 8]));
            if !range.contains(&index) {
                break;
            }
            out.push(decode::<Entry<C>>(v).map_err(|e| StorageIOError::read_log_at_index(index, e))?);
            it.next();
        }
        it.status().map_err(|e| StorageIOError::read_logs(io_error(e)))?;
        Ok(out)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Entry = Entry<C>>,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        let last_purged_log_id = self.get_meta::<LogId<NodeId>>(meta::PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(meta::VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(meta::VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying from the state machine's own
        // durable `last_applied` once the leader commits again.
        self.put_meta(meta::COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(meta::COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, e))?;
            batch.put_cf(cf, self.log_key(entry.log_id.index), bytes);
        }
        self.db.db().write(batch).map_err(|e| StorageIOError::write_logs(io_error(e)))?;
        self.db.sync.after_sync(Box::new(move |result| callback.log_io_completed(result)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        self.db
            .db()
            .delete_range_cf(cf, self.log_key(log_id.index), group_end(self.group))
            .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_RAFT_META)?, self.meta_key(meta::PURGED), encode(&log_id).map_err(StorageIOError::write)?);
        let end = log_id.index.checked_add(1).map(|i| self.log_key(i)).unwrap_or_else(|| group_end(self.group));
        batch.delete_range_cf(self.cf(CF_RAFT_LOG)?, self.log_key(0), end);
        self.db.db().write(batch).map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }
}
