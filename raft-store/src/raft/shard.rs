//! The shard state machine: the message logs, idempotency keys, cursors and
//! conversation records of the conversations placed on one shard.
//!
//! Keys under the group prefix (integers big-endian):
//!
//! | tag | rest | value |
//! |-----|------|-------|
//! | 1 | conversation, seq | bincode [`ChatMessage`] |
//! | 2 | conversation | last seq u64 |
//! | 3 | conversation, sender (kind u8, id u64), client_msg_id | seq u64 |
//! | 4 | conversation, reader (kind u8, id u64) | acknowledged seq u64 |
//! | 5 | conversation | bincode [`ConversationRecord`] |
//! | 6 | tenant u64, space u8, the record's key | the record (see [`TenantWrites`]) |
//! | 7 | tenant u64 | the tenant's epoch u64 (the highest written with) |
//!
//! Sequence numbers are decided when an entry is applied, so every replica assigns
//! the same ones; the time stamp travels in the command, never read from a clock here.

use super::machine::{Logic, Overlay};
use super::{group_end, group_key, GroupId, RaftDb, ShardConfig};
use crate::error::StoreError;
use crate::keys::{cursor_key, idempotency_key, message_key, CF_RAFT_STATE};
use crate::records::{self, ConversationRecord};
use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use switchboard_protocol::{ChatMessage, ConversationId, Participant, TenantId};

mod tag {
    pub const MESSAGE: u8 = 1;
    pub const LAST_SEQ: u8 = 2;
    pub const IDEMPOTENCY: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const CONVERSATION: u8 = 5;
    pub const RECORD: u8 = 6;
    pub const EPOCH: u8 = 7;
}

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// A chat message to append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCommand {
    /// The conversation.
    pub conversation: ConversationId,
    /// Who wrote it.
    pub sender: Participant,
    /// The sender's id for it: with conversation and sender, the idempotency key.
    pub client_msg_id: u64,
    /// The text.
    pub body: String,
    /// Acceptance time, ms since the epoch, stamped by the node that proposed it.
    pub sent_at_ms: u64,
    /// Queue a `message.created` webhook for this tenant.
    pub webhook: Option<switchboard_protocol::TenantId>,
}

impl AppendCommand {
    /// The message this command stores with sequence number `seq`.
    pub fn message(&self, seq: u64) -> ChatMessage {
        ChatMessage {
            conversation: self.conversation,
            seq,
            sender: self.sender,
            client_msg_id: self.client_msg_id,
            sent_at_ms: self.sent_at_ms,
            body: self.body.clone(),
        }
    }
}

/// Where a replicated record lives in a node's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordSpace {
    /// The `directory` column family.
    Directory,
    /// The `conversations` column family.
    Conversations,
}

impl RecordSpace {
    fn tag(self) -> u8 {
        match self {
            RecordSpace::Directory => 0,
            RecordSpace::Conversations => 1,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(RecordSpace::Directory),
            1 => Some(RecordSpace::Conversations),
            _ => None,
        }
    }
}

/// One record of a tenant to write (`value: None` deletes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWrite {
    /// Where it lives.
    pub space: RecordSpace,
    /// Its key in the node store.
    pub key: Vec<u8>,
    /// Its value, or `None` to delete it.
    pub value: Option<Vec<u8>>,
}

/// A tenant's directory records (tenant, agents, tokens, groups, conversation
/// records...), written by the node serving the tenant, so another replica can take
/// over. `epoch` fences: once a write with a higher epoch is applied (the tenant
/// moved), writes with a lower one are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantWrites {
    /// The tenant.
    pub tenant: TenantId,
    /// The tenant's placement epoch the writer serves it at.
    pub epoch: u64,
    /// The records, in order (empty: only raise the epoch).
    pub writes: Vec<RecordWrite>,
}

/// A write to a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Append a chat message (a duplicate of an earlier one appends nothing).
    Append(AppendCommand),
    /// Store a conversation's routing state.
    PutConversation(ConversationRecord),
    /// Several appends in one raft entry (what a node's batcher proposes), applied in
    /// order; answered with one response each.
    AppendBatch(Vec<AppendCommand>),
    /// Cursor moves: (conversation, reader, seq) means `reader` has every message up
    /// to `seq` (a cursor never moves backwards).
    AckBatch(Vec<(ConversationId, Participant, u64)>),
    /// Tenants' record writes (tenants placed on this shard), applied in order;
    /// answered with one response each: `Done` or `Fenced`.
    Records(Vec<TenantWrites>),
}

/// The result of a [`ShardCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardResponse {
    /// The message was appended with this seq.
    Appended {
        /// Its seq.
        seq: u64,
    },
    /// The message was appended before with this seq; nothing new was written.
    Duplicate {
        /// The original seq.
        seq: u64,
    },
    /// Done (acks, conversation records, blank and membership entries).
    Done,
    /// The answers to an [`ShardCommand::AppendBatch`] or [`ShardCommand::Records`],
    /// in order.
    Batch(Vec<ShardResponse>),
    /// Not written: the tenant moved on to a later epoch (this one's writer serves it
    /// no more).
    Fenced {
        /// The tenant's current epoch.
        epoch: u64,
    },
}

/// Hears every message a shard appends, in order, on every replica, once the entry
/// is committed and applied. Called on the state machine's task: hand work off only.
pub trait ShardListener: Send + Sync + 'static {
    /// Messages newly appended to `shard`, in seq order per conversation, each with
    /// the command that appended it.
    fn appended(&self, shard: u32, messages: &[(ChatMessage, &AppendCommand)]);
}

/// The rules of a shard.
pub struct ShardLogic {
    shard: u32,
    listener: RwLock<Option<Arc<dyn ShardListener>>>,
}

impl ShardLogic {
    /// The rules of shard `shard`, telling nobody yet.
    pub fn new(shard: u32) -> Self {
        ShardLogic { shard, listener: RwLock::new(None) }
    }

    /// From now on, tell `listener` about appended messages.
    pub fn set_listener(&self, listener: Arc<dyn ShardListener>) {
        if let Ok(mut l) = self.listener.write() {
            *l = Some(listener);
        }
    }
}

fn read_u64(state: &Overlay<'_>, key: &[u8], what: &'static str) -> Result<Option<u64>, StoreError> {
    state.get(key)?.map(|v| records::decode_u64(what, &v)).transpose()
}

impl Logic<ShardConfig> for ShardLogic {
    fn apply(&self, state: &mut Overlay<'_>, command: &ShardCommand) -> Result<ShardResponse, StoreError> {
        match command {
            ShardCommand::Append(a) => apply_append(state, a),
            ShardCommand::AppendBatch(batch) => Ok(ShardResponse::Batch(batch.iter().map(|a| apply_append(state, a)).collect::<Result<_, _>>()?)),
            ShardCommand::AckBatch(acks) => {
                for &(conversation, reader, seq) in acks {
                    apply_ack(state, conversation, reader, seq)?;
                }
                Ok(ShardResponse::Done)
            }
            ShardCommand::Records(tenants) => Ok(ShardResponse::Batch(tenants.iter().map(|t| apply_records(state, t)).collect::<Result<_, _>>()?)),
            ShardCommand::PutConversation(record) => {
                state.put(tagged(tag::CONVERSATION, &record.id.0.to_be_bytes()), records::encode(record));
                Ok(ShardResponse::Done)
            }
        }
    }

    fn empty_response(&self) -> ShardResponse {
        ShardResponse::Done
    }

    fn applied(&self, results: &[(ShardCommand, ShardResponse)]) {
        let mut messages: Vec<(ChatMessage, &AppendCommand)> = Vec::new();
        let note = |a: &AppendCommand, response: &ShardResponse| match response {
            ShardResponse::Appended { seq } => Some(a.message(*seq)),
            _ => None,
        };
        for (command, response) in results {
            match (command, response) {
                (ShardCommand::Append(a), r) => messages.extend(note(a, r).map(|m| (m, a))),
                (ShardCommand::AppendBatch(batch), ShardResponse::Batch(responses)) => {
                    for (a, r) in batch.iter().zip(responses) {
                        messages.extend(note(a, r).map(|m| (m, a)));
                    }
                }
                _ => {}
            }
        }
        if messages.is_empty() {
            return;
        }
        let listener = self.listener.read().ok().and_then(|l| l.clone());
        if let Some(listener) = listener {
            listener.appended(self.shard, &messages);
        }
    }
}

fn record_key(tenant: TenantId, space: RecordSpace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len());
    k.push(tag::RECORD);
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.push(space.tag());
    k.extend_from_slice(key);
    k
}

fn apply_records(state: &mut Overlay<'_>, t: &TenantWrites) -> Result<ShardResponse, StoreError> {
    let epoch_key = tagged(tag::EPOCH, &t.tenant.0.to_be_bytes());
    let current = read_u64(state, &epoch_key, "tenant epoch")?.unwrap_or(0);
    if t.epoch < current {
        return Ok(ShardResponse::Fenced { epoch: current });
    }
    if t.epoch > current {
        state.put(epoch_key, t.epoch.to_be_bytes().to_vec());
    }
    for w in &t.writes {
        let key = record_key(t.tenant, w.space, &w.key);
        match &w.value {
            Some(v) => state.put(key, v.clone()),
            None => state.delete(key),
        }
    }
    Ok(ShardResponse::Done)
}

fn apply_ack(state: &mut Overlay<'_>, conversation: ConversationId, reader: Participant, seq: u64) -> Result<(), StoreError> {
    let key = tagged(tag::CURSOR, &cursor_key(conversation, reader));
    if read_u64(state, &key, "cursor")?.unwrap_or(0) < seq {
        state.put(key, seq.to_be_bytes().to_vec());
    }
    Ok(())
}

fn apply_append(state: &mut Overlay<'_>, a: &AppendCommand) -> Result<ShardResponse, StoreError> {
    let idem = tagged(tag::IDEMPOTENCY, &idempotency_key(a.conversation, a.sender, a.client_msg_id));
    if let Some(seq) = read_u64(state, &idem, "idempotency")? {
        return Ok(ShardResponse::Duplicate { seq });
    }
    let last_key = tagged(tag::LAST_SEQ, &a.conversation.0.to_be_bytes());
    let seq = read_u64(state, &last_key, "last seq")?.unwrap_or(0) + 1;
    state.put(tagged(tag::MESSAGE, &message_key(a.conversation, seq)), records::encode(&a.message(seq)));
    state.put(last_key, seq.to_be_bytes().to_vec());
    state.put(idem, seq.to_be_bytes().to_vec());
    Ok(ShardResponse::Appended { seq })
}

/// Reads a shard's applied state on this node (a follower's may lag its leader's).
#[derive(Clone)]
pub struct ShardReader {
    db: Arc<RaftDb>,
    group: GroupId,
}

impl ShardReader {
    /// Reads the shard with group id `group`.
    pub fn new(db: Arc<RaftDb>, group: GroupId) -> Self {
        ShardReader { db, group }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        self.db.db().get_cf(cf, group_key(self.group, key)).map_err(StoreError::rocks("read shard"))
    }

    /// Up to `limit` messages with seq > `after_seq`, in order, about `max_bytes` of
    /// them at most (at least one if any).
    pub fn read(&self, conversation: ConversationId, after_seq: u64, limit: usize, max_bytes: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        let start = group_key(self.group, &tagged(tag::MESSAGE, &message_key(conversation, first)));
        let end = group_key(self.group, &tagged(tag::MESSAGE, &message_key(conversation, u64::MAX)));
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.db().iterator_cf_opt(cf, opts, IteratorMode::From(&start, Direction::Forward)) {
            let (_, v) = item.map_err(StoreError::rocks("read shard messages"))?;
            if out.len() >= limit || (!out.is_empty() && bytes + v.len() > max_bytes) {
                break;
            }
            bytes += v.len();
            out.push(records::decode::<ChatMessage>("message", &v)?);
        }
        Ok(out)
    }

    /// The highest seq of a conversation (0 if none).
    pub fn last_seq(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        Ok(self.get(&tagged(tag::LAST_SEQ, &conversation.0.to_be_bytes()))?.map(|v| records::decode_u64("last seq", &v)).transpose()?.unwrap_or(0))
    }

    /// `reader`'s acknowledged cursor (0 if none).
    pub fn cursor(&self, conversation: ConversationId, reader: Participant) -> Result<u64, StoreError> {
        Ok(self.get(&tagged(tag::CURSOR, &cursor_key(conversation, reader)))?.map(|v| records::decode_u64("cursor", &v)).transpose()?.unwrap_or(0))
    }

    /// A conversation's stored record.
    pub fn conversation(&self, conversation: ConversationId) -> Result<Option<ConversationRecord>, StoreError> {
        self.get(&tagged(tag::CONVERSATION, &conversation.0.to_be_bytes()))?.map(|v| records::decode("conversation", &v)).transpose()
    }

    /// The highest epoch `tenant`'s records were written with here (0 if none).
    pub fn tenant_epoch(&self, tenant: TenantId) -> Result<u64, StoreError> {
        Ok(self.get(&tagged(tag::EPOCH, &tenant.0.to_be_bytes()))?.map(|v| records::decode_u64("tenant epoch", &v)).transpose()?.unwrap_or(0))
    }

    /// Every record of `tenant` applied here, in key order.
    pub fn tenant_records(&self, tenant: TenantId) -> Result<Vec<RecordWrite>, StoreError> {
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        let prefix = group_key(self.group, &tagged(tag::RECORD, &tenant.0.to_be_bytes()));
        let end = match tenant.0.checked_add(1) {
            Some(next) => group_key(self.group, &tagged(tag::RECORD, &next.to_be_bytes())),
            None => group_key(self.group, &[tag::EPOCH]),
        };
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end);
        let mut out = Vec::new();
        for item in self.db.db().iterator_cf_opt(cf, opts, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(StoreError::rocks("read tenant records"))?;
            let rest = k.get(prefix.len()..).unwrap_or_default();
            let space = rest.first().and_then(|t| RecordSpace::from_tag(*t));
            let Some(space) = space else {
                return Err(StoreError::Corrupt { what: "tenant record key", reason: format!("space tag {:?}", rest.first()) });
            };
            out.push(RecordWrite { space, key: rest[1..].to_vec(), value: Some(v.to_vec()) });
        }
        Ok(out)
    }

    /// How many keys the shard holds (for tests and status).
    pub fn key_count(&self) -> Result<usize, StoreError> {
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(group_end(self.group));
        let mut n = 0;
        for item in self.db.db().iterator_cf_opt(cf, opts, IteratorMode::From(&self.group.to_be_bytes(), Direction::Forward)) {
            item.map_err(StoreError::rocks("count shard keys"))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::RaftDb;

    fn writes(tenant: u64, epoch: u64, records: &[(&[u8], Option<&[u8]>)]) -> TenantWrites {
        let writes = records.iter().map(|(k, v)| RecordWrite { space: RecordSpace::Directory, key: k.to_vec(), value: v.map(|v| v.to_vec()) }).collect();
        TenantWrites { tenant: TenantId(tenant), epoch, writes }
    }

    #[test]
    fn tenant_records_are_kept_per_tenant_and_a_lower_epoch_is_fenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raft_db = RaftDb::open(dir.path()).expect("open");
        let logic = ShardLogic::new(3);
        let group = crate::raft::shard_group(3);
        let mut state = Overlay::for_test(raft_db.db(), group);
        let command = ShardCommand::Records(vec![
            writes(7, 0, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]),
            writes(8, 0, &[(b"a", Some(b"other tenant"))]),
            writes(7, 0, &[(b"b", None), (b"c", Some(b"3"))]),
        ]);
        let done = ShardResponse::Batch(vec![ShardResponse::Done; 3]);
        assert_eq!(logic.apply(&mut state, &command).expect("apply"), done);
        // The tenant moved: its new node writes at epoch 1; the old one is refused.
        let moved = ShardCommand::Records(vec![writes(7, 1, &[]), writes(7, 0, &[(b"a", Some(b"stale"))]), writes(7, 1, &[(b"d", Some(b"4"))])]);
        let answers = ShardResponse::Batch(vec![ShardResponse::Done, ShardResponse::Fenced { epoch: 1 }, ShardResponse::Done]);
        assert_eq!(logic.apply(&mut state, &moved).expect("apply"), answers);
        state.commit_for_test().expect("commit");

        let reader = ShardReader::new(raft_db.clone(), group);
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = reader.tenant_records(TenantId(7)).expect("read").into_iter().map(|w| (w.key, w.value)).collect();
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"c".to_vec(), Some(b"3".to_vec())), (b"d".to_vec(), Some(b"4".to_vec()))];
        assert_eq!(got, want);
        assert_eq!(reader.tenant_epoch(TenantId(7)).expect("epoch"), 1);
        assert_eq!(reader.tenant_epoch(TenantId(8)).expect("epoch"), 0);
        assert_eq!(reader.tenant_records(TenantId(8)).expect("read").len(), 1);
        assert!(reader.tenant_records(TenantId(u64::MAX)).expect("read").is_empty());
    }
}
