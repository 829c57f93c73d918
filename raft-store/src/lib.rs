//! Every byte Switchboard keeps on disk.
//!
//! One RocksDB per node with a column family per kind of record:
//!
//! | column family   | key (big-endian, so byte order is numeric order) | value |
//! |-----------------|-----------------------------------------------|-------|
//! | `messages`      | conversation u64, seq u64                      | bincode [`ChatMessage`] |
//! | `idempotency`   | conversation u64, sender kind u8, sender u64, client_msg_id u64 | seq u64 |
//! | `cursors`       | conversation u64, reader kind u8, reader u64   | acknowledged seq u64 |
//! | `conversations` | conversation u64                               | bincode [`ConversationRecord`] |
//! | `directory`     | tag u8 + fields (tenants, agents, tokens, keys, verified visitors, counters) | bincode records |
//!
//! Writes go through one group-commit writer thread ([`writer`]): it drains every
//! pending request into one `WriteBatch`, writes it with `sync = true` (one fsync for
//! the whole batch), then tells the [`CommitListener`] what was committed, in order,
//! and completes the callers' futures. Sequence numbers and idempotency are decided
//! there, single-threaded, so they need no locks.
//!
//! The message path reaches the store only through [`ConversationLog`]; the cluster
//! puts a replicated log behind the same interface. This crate opens no sockets.
#![deny(missing_docs)]

pub mod error;
pub mod keys;
pub mod log;
pub mod raft;
pub mod records;
pub mod store;
mod writer;

pub use error::StoreError;
pub use log::{Answer, AppendFuture, AppendOutcome, AppendRequest, CommitListener, Committed, ConversationLog};
pub use records::{
    AgentRecord, AgentTokenRecord, BotRecord, BusinessHours, ChannelRecord, ConversationRecord, DayHours, GroupRecord, KnowledgeRecord, MenuItemRecord, OutboxRecord, RatingRecord, Strategy,
    TenantRecord, VisitorProfileRecord, WebhookEvent, WebhookRecord,
};
pub use store::{node_scoped, RecordReplicator, Store, StoreOptions};
pub use switchboard_protocol::ChatMessage;

/// Names of the metrics this crate records (described and bucketed by the broker).
pub mod metric_names {
    /// Histogram: operations committed per group-commit batch.
    pub const COMMIT_BATCH_OPS: &str = "switchboard_store_commit_batch_ops";
    /// Histogram: seconds spent writing and fsyncing one batch.
    pub const COMMIT_SECONDS: &str = "switchboard_store_commit_seconds";
    /// Counter: batches that failed to write.
    pub const COMMIT_ERRORS: &str = "switchboard_store_commit_errors_total";
    /// Histogram: seconds spent fsyncing the WAL for raft log appends.
    pub const RAFT_SYNC_SECONDS: &str = "switchboard_raft_log_sync_seconds";
    /// Histogram: raft log appends (of any group) made durable by one fsync.
    pub const RAFT_SYNC_APPENDS: &str = "switchboard_raft_log_sync_appends";
}
