//! The narrow interface between sessions and the message log: append a message and
//! learn its durable sequence number, read a range, keep cursors. The single-node
//! [`crate::Store`] implements it with a group-commit writer; the cluster implements
//! it with a replicated log.

use crate::error::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use switchboard_protocol::{ChatMessage, ConversationId, Participant};
use tokio::sync::oneshot;

/// A message to append.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The conversation.
    pub conversation: ConversationId,
    /// Who wrote it.
    pub sender: Participant,
    /// The sender's id for it (idempotency key together with conversation and sender).
    pub client_msg_id: u64,
    /// The text.
    pub body: String,
    /// Acceptance time stamped into the message, ms since the epoch.
    pub sent_at_ms: u64,
    /// The connection that sent it (opaque to the store; echoed in [`Committed`]).
    pub origin: u64,
    /// When the node received it, for latency metrics.
    pub received_at: Instant,
    /// Queue a `message.created` webhook for this tenant in the same batch.
    pub webhook: Option<switchboard_protocol::TenantId>,
}

/// Result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new message, durable with this sequence number. The [`CommitListener`] was
    /// told before this outcome was delivered.
    Committed {
        /// Its sequence number.
        seq: u64,
    },
    /// The same (conversation, sender, client_msg_id) was appended before; nothing new
    /// was written and the listener was not told again.
    Duplicate {
        /// The original sequence number.
        seq: u64,
    },
}

impl AppendOutcome {
    /// The sequence number either way.
    pub fn seq(&self) -> u64 {
        match *self {
            AppendOutcome::Committed { seq } | AppendOutcome::Duplicate { seq } => seq,
        }
    }
}

/// A message that has just become durable.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The message as stored.
    pub message: ChatMessage,
    /// [`AppendRequest::origin`].
    pub origin: u64,
    /// [`AppendRequest::received_at`].
    pub received_at: Instant,
}

/// The answer to a [`ConversationLog::submit`] that did not commit a new message.
#[derive(Clone, Debug)]
pub struct Answer {
    /// [`AppendRequest::origin`].
    pub origin: u64,
    /// The conversation.
    pub conversation: ConversationId,
    /// The sender's id for the message.
    pub client_msg_id: u64,
    /// `Ok(seq)`: a duplicate of the message with that seq; `Err`: not stored, why.
    pub result: Result<u64, String>,
}

/// Told, in commit order, about every message once it is durable. Called on the
/// writer thread: implementations must only hand work off (no blocking).
pub trait CommitListener: Send + Sync + 'static {
    /// A batch of newly durable messages, in order.
    fn committed(&self, batch: &[Committed]);
    /// Submitted appends that were duplicates or failed.
    fn answered(&self, _answers: &[Answer]) {}
}

/// A listener that does nothing (tests, tools).
pub struct NoListener;

impl CommitListener for NoListener {
    fn committed(&self, _: &[Committed]) {}
}

/// Resolves when an append is durable (or failed).
pub struct AppendFuture {
    rx: oneshot::Receiver<Result<AppendOutcome, StoreError>>,
}

impl AppendFuture {
    /// A future completed through `rx` (for other [`ConversationLog`] implementations).
    pub fn new(rx: oneshot::Receiver<Result<AppendOutcome, StoreError>>) -> Self {
        AppendFuture { rx }
    }
}

impl Future for AppendFuture {
    type Output = Result<AppendOutcome, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// The message log as the session layer sees it.
pub trait ConversationLog: Send + Sync + 'static {
    /// Appends a message; the future resolves once it is durable.
    fn append(&self, request: AppendRequest) -> AppendFuture;
    /// Appends a message without a future: a new message is reported through
    /// [`CommitListener::committed`], a duplicate or a failure through
    /// [`CommitListener::answered`]. What sessions use on the hot path.
    fn submit(&self, request: AppendRequest);
    /// Up to `limit` messages with seq > `after_seq`, in order, at most about
    /// `max_bytes` of bodies (always at least one message if any exists). Blocking: call
    /// off the actor threads.
    fn read(&self, conversation: ConversationId, after_seq: u64, limit: usize, max_bytes: usize)
        -> Result<Vec<ChatMessage>, StoreError>;
    /// The highest seq of a conversation (0 if empty). Blocking.
    fn last_seq(&self, conversation: ConversationId) -> Result<u64, StoreError>;
    /// Records that `reader` has every message up to `seq` (never moves backwards).
    /// Durable with the next batch; fire and forget.
    fn ack(&self, conversation: ConversationId, reader: Participant, seq: u64);
    /// The acknowledged cursor of `reader` (0 if none). Blocking.
    fn cursor(&self, conversation: ConversationId, reader: Participant) -> Result<u64, StoreError>;
}
