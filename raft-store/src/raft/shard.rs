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
use switchboard_protocol::{ChatMessage, ConversationId, Participant};

mod tag {
    pub const MESSAGE: u8 = 1;
    pub const LAST_SEQ: u8 = 2;
    pub const IDEMPOTENCY: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const CONVERSATION: u8 = 5;
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
    /// The answers to an [`ShardCommand::AppendBatch`], in order.
    Batch(Vec<ShardResponse>),
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
