//! The message log of a clustered node: [`ConversationLog`] over the shard groups.
//!
//! An append becomes a `ShardCommand::Append` written through the shard's leader;
//! the shard's state machine assigns the seq when the entry is committed and
//! applied, and tells [`ClusterCommits`], which tells the node's [`CommitListener`]
//! (the dispatcher) before the write's future completes. Reads come from this node's
//! replica of the shard.

use super::node::ClusterNode;
use super::rpc::WriteError;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Instant;
use switchboard_protocol::{ChatMessage, ConversationId, Participant};
use switchboard_raft_store::raft::placement::conversation_shard;
use switchboard_raft_store::raft::{AppendCommand, ShardCommand, ShardListener, ShardResponse};
use switchboard_raft_store::{
    Answer, AppendFuture, AppendOutcome, AppendRequest, CommitListener, Committed, ConversationLog, Store, StoreError, WebhookEvent,
};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

type PendingKey = (ConversationId, Participant, u64);

/// What this node remembers of an append it proposed, until it is applied.
struct Pending {
    origin: u64,
    received_at: Instant,
}

/// Hears the shards' applied appends and tells the node's listener, with the
/// connection and receive time of appends this node proposed.
pub struct ClusterCommits {
    pending: DashMap<PendingKey, Pending>,
    listener: Arc<dyn CommitListener>,
    store: Arc<Store>,
}

impl ClusterCommits {
    /// Tells `listener`; queues webhooks in `store`'s outbox.
    pub fn new(listener: Arc<dyn CommitListener>, store: Arc<Store>) -> Arc<Self> {
        Arc::new(ClusterCommits { pending: DashMap::new(), listener, store })
    }
}

impl ShardListener for ClusterCommits {
    fn appended(&self, _shard: u32, messages: &[(ChatMessage, &AppendCommand)]) {
        let mut batch = Vec::with_capacity(messages.len());
        let mut events = Vec::new();
        for (message, command) in messages {
            let mine = self.pending.remove(&(message.conversation, message.sender, message.client_msg_id)).map(|(_, p)| p);
            // Appends proposed elsewhere have no local connection (origin 0 is never a
            // connection id).
            let (origin, received_at) = mine.as_ref().map(|p| (p.origin, p.received_at)).unwrap_or((0, Instant::now()));
            if let (Some(tenant), Some(_)) = (command.webhook, mine.as_ref()) {
                events.push((tenant, WebhookEvent::MessageCreated { conversation: message.conversation, seq: message.seq }));
            }
            batch.push(Committed { message: message.clone(), origin, received_at });
        }
        if !events.is_empty() {
            // The outbox is written after the commit: a crash in between loses the
            // event (not the message).
            drop(self.store.enqueue_events(events));
        }
        self.listener.committed(&batch);
    }
}

/// [`ConversationLog`] over the cluster's shard groups.
pub struct ClusterLog {
    node: Arc<ClusterNode>,
    runtime: Handle,
    shards: u32,
    commits: Arc<ClusterCommits>,
}

impl ClusterLog {
    /// The log of `node`, whose raft groups run on `runtime`.
    pub fn new(node: Arc<ClusterNode>, runtime: Handle, shards: u32, commits: Arc<ClusterCommits>) -> Self {
        ClusterLog { node, runtime, shards, commits }
    }

    fn shard(&self, conversation: ConversationId) -> u32 {
        conversation_shard(conversation, self.shards)
    }

    fn reader(&self, conversation: ConversationId) -> Result<switchboard_raft_store::raft::ShardReader, StoreError> {
        let shard = self.shard(conversation);
        self.node.replica(shard).map(|r| r.reader).ok_or_else(|| StoreError::Open { path: format!("shard {shard}"), reason: "no replica of this shard on this node".into() })
    }

    /// Starts the write; `done` gets the outcome after the listener heard a new message.
    fn start(&self, request: AppendRequest, done: impl FnOnce(Result<AppendOutcome, WriteError>) + Send + 'static) {
        let key = (request.conversation, request.sender, request.client_msg_id);
        self.commits.pending.insert(key, Pending { origin: request.origin, received_at: request.received_at });
        let command = ShardCommand::Append(AppendCommand {
            conversation: request.conversation,
            sender: request.sender,
            client_msg_id: request.client_msg_id,
            body: request.body,
            sent_at_ms: request.sent_at_ms,
            webhook: request.webhook,
        });
        let shard = self.shard(request.conversation);
        let node = self.node.clone();
        let commits = self.commits.clone();
        self.runtime.spawn(async move {
            let result = node.write(shard, command).await.map(|r| match r {
                ShardResponse::Duplicate { seq } => AppendOutcome::Duplicate { seq },
                ShardResponse::Appended { seq } => AppendOutcome::Committed { seq },
                ShardResponse::Done => AppendOutcome::Committed { seq: 0 },
            });
            if !matches!(result, Ok(AppendOutcome::Committed { .. })) {
                commits.pending.remove(&key);
            }
            done(result);
        });
    }
}

fn write_failed(e: WriteError) -> StoreError {
    StoreError::WriteFailed { reason: e.to_string() }
}

impl ConversationLog for ClusterLog {
    fn append(&self, request: AppendRequest) -> AppendFuture {
        let (tx, rx) = oneshot::channel();
        self.start(request, move |result| {
            let _ = tx.send(result.map_err(write_failed));
        });
        AppendFuture::new(rx)
    }

    fn submit(&self, request: AppendRequest) {
        let listener = self.commits.listener.clone();
        let (origin, conversation, client_msg_id) = (request.origin, request.conversation, request.client_msg_id);
        self.start(request, move |result| {
            let result = match result {
                Ok(AppendOutcome::Committed { .. }) => return,
                Ok(AppendOutcome::Duplicate { seq }) => Ok(seq),
                Err(e) => Err(e.to_string()),
            };
            listener.answered(&[Answer { origin, conversation, client_msg_id, result }]);
        });
    }

    fn read(&self, conversation: ConversationId, after_seq: u64, limit: usize, max_bytes: usize) -> Result<Vec<ChatMessage>, StoreError> {
        self.reader(conversation)?.read(conversation, after_seq, limit, max_bytes)
    }

    fn last_seq(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        self.reader(conversation)?.last_seq(conversation)
    }

    fn ack(&self, conversation: ConversationId, reader: Participant, seq: u64) {
        let shard = self.shard(conversation);
        let node = self.node.clone();
        self.runtime.spawn(async move {
            if let Err(e) = node.write(shard, ShardCommand::Ack { conversation, reader, seq }).await {
                tracing::debug!(%conversation, seq, error = %e, "cursor not stored");
            }
        });
    }

    fn cursor(&self, conversation: ConversationId, reader: Participant) -> Result<u64, StoreError> {
        self.reader(conversation)?.cursor(conversation, reader)
    }
}
