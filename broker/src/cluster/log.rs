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

type Done = Box<dyn FnOnce(Result<AppendOutcome, WriteError>) + Send>;

/// Most appends proposed as one raft entry.
const MAX_BATCH: usize = 512;
/// Most message bytes in one raft entry (with `max_payload_entries` in the raft
/// config, this keeps every AppendEntries well under the peer link's frame limit).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most cursor moves in one raft entry (about 40 bytes each).
const MAX_ACK_BATCH: usize = 16 * 1024;
/// How often coalesced cursor moves are written.
const ACK_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// [`ConversationLog`] over the cluster's shard groups.
///
/// Appends to a shard are batched: while one batch is being committed, the next
/// gathers, and goes out as one `AppendBatch` entry (group commit at the raft level,
/// on top of the WAL fsync shared by all shards). Cursor moves are coalesced per
/// reader and written every 100 ms.
pub struct ClusterLog {
    node: Arc<ClusterNode>,
    runtime: Handle,
    shards: u32,
    commits: Arc<ClusterCommits>,
    batchers: DashMap<u32, tokio::sync::mpsc::UnboundedSender<(AppendCommand, Done)>>,
    acks: Arc<DashMap<(ConversationId, Participant), u64>>,
}

impl ClusterLog {
    /// The log of `node`, whose raft groups run on `runtime`.
    pub fn new(node: Arc<ClusterNode>, runtime: Handle, shards: u32, commits: Arc<ClusterCommits>) -> Self {
        let acks: Arc<DashMap<(ConversationId, Participant), u64>> = Arc::new(DashMap::new());
        let (flush_node, flush_acks) = (node.clone(), acks.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(ACK_FLUSH);
            // Ends with the runtime at shutdown.
            loop {
                tick.tick().await;
                flush_cursors(&flush_node, &flush_acks, shards).await;
            }
        });
        ClusterLog { node, runtime, shards, commits, batchers: DashMap::new(), acks }
    }

    /// The batcher of `shard`, started on first use.
    fn batcher(&self, shard: u32) -> tokio::sync::mpsc::UnboundedSender<(AppendCommand, Done)> {
        if let Some(tx) = self.batchers.get(&shard) {
            return tx.clone();
        }
        self.batchers
            .entry(shard)
            .or_insert_with(|| {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(AppendCommand, Done)>();
                let node = self.node.clone();
                self.runtime.spawn(async move {
                    // An append that did not fit the last batch starts the next.
                    let mut carried = None;
                    loop {
                        let first = match carried.take() {
                            Some(first) => first,
                            None => match rx.recv().await {
                                Some(first) => first,
                                None => break,
                            },
                        };
                        let mut bytes = first.0.body.len();
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(more) if bytes + more.0.body.len() > MAX_BATCH_BYTES => {
                                    carried = Some(more);
                                    break;
                                }
                                Ok(more) => {
                                    bytes += more.0.body.len();
                                    batch.push(more);
                                }
                                Err(_) => break,
                            }
                        }
                        let (commands, dones): (Vec<AppendCommand>, Vec<Done>) = batch.into_iter().unzip();
                        let n = commands.len();
                        match node.write(shard, ShardCommand::AppendBatch(commands)).await {
                            Ok(ShardResponse::Batch(responses)) if responses.len() == n => {
                                for (done, r) in dones.into_iter().zip(responses) {
                                    done(match r {
                                        ShardResponse::Duplicate { seq } => Ok(AppendOutcome::Duplicate { seq }),
                                        ShardResponse::Appended { seq } => Ok(AppendOutcome::Committed { seq }),
                                        other => Err(WriteError::Unavailable(format!("unexpected answer to an append: {other:?}"))),
                                    });
                                }
                            }
                            Ok(other) => {
                                for done in dones {
                                    done(Err(WriteError::Unavailable(format!("unexpected answer to a batch: {other:?}"))));
                                }
                            }
                            Err(e) => {
                                for done in dones {
                                    done(Err(e.clone()));
                                }
                            }
                        }
                    }
                });
                tx
            })
            .clone()
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
        let shard = self.shard(request.conversation);
        let command = AppendCommand {
            conversation: request.conversation,
            sender: request.sender,
            client_msg_id: request.client_msg_id,
            body: request.body,
            sent_at_ms: request.sent_at_ms,
            webhook: request.webhook,
        };
        let commits = self.commits.clone();
        let done: Done = Box::new(move |result| {
            if !matches!(result, Ok(AppendOutcome::Committed { .. })) {
                commits.pending.remove(&key);
            }
            done(result);
        });
        if let Err(tokio::sync::mpsc::error::SendError((_, done))) = self.batcher(shard).send((command, done)) {
            done(Err(WriteError::Fatal("the shard's batcher stopped".into())));
        }
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
        let mut entry = self.acks.entry((conversation, reader)).or_insert(0);
        *entry = (*entry).max(seq);
    }

    fn cursor(&self, conversation: ConversationId, reader: Participant) -> Result<u64, StoreError> {
        let stored = self.reader(conversation)?.cursor(conversation, reader)?;
        // A move not yet flushed counts too (cursors never go backwards).
        Ok(self.acks.get(&(conversation, reader)).map(|s| (*s).max(stored)).unwrap_or(stored))
    }
}

/// Writes the coalesced cursor moves, one `AckBatch` per shard. A move whose write
/// fails is kept for the next flush unless a newer one replaced it.
async fn flush_cursors(node: &ClusterNode, acks: &DashMap<(ConversationId, Participant), u64>, shards: u32) {
    let taken: Vec<((ConversationId, Participant), u64)> = {
        let keys: Vec<(ConversationId, Participant)> = acks.iter().map(|e| *e.key()).collect();
        keys.into_iter().filter_map(|k| acks.remove(&k)).collect()
    };
    if taken.is_empty() {
        return;
    }
    let mut by_shard: std::collections::BTreeMap<u32, Vec<(ConversationId, Participant, u64)>> = Default::default();
    for ((conversation, reader), seq) in taken {
        by_shard.entry(conversation_shard(conversation, shards)).or_default().push((conversation, reader, seq));
    }
    let chunks = by_shard.into_iter().flat_map(|(shard, moves)| moves.chunks(MAX_ACK_BATCH).map(|c| (shard, c.to_vec())).collect::<Vec<_>>());
    for (shard, moves) in chunks {
        if let Err(e) = node.write(shard, ShardCommand::AckBatch(moves.clone())).await {
            tracing::debug!(shard, error = %e, "cursors not stored; retrying with the next flush");
            for (conversation, reader, seq) in moves {
                let mut entry = acks.entry((conversation, reader)).or_insert(0);
                *entry = (*entry).max(seq);
            }
        }
    }
}
