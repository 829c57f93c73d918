//! The group-commit writer: one thread that owns every write. It takes all pending
//! requests (up to `max_batch_ops`), decides sequence numbers and idempotency,
//! writes one `WriteBatch` with one fsync, tells the [`CommitListener`] in order, and
//! only then completes the callers' futures.

use crate::error::StoreError;
use crate::keys::*;
use crate::log::{Answer, AppendOutcome, AppendRequest, CommitListener, Committed};
use crate::metric_names;
use crate::records;
use crate::raft::{RecordSpace, RecordWrite};
use crate::store::{counters, node_scoped, RecordReplicator, StoreOptions};
use std::sync::OnceLock;
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;
use crate::records::{OutboxRecord, WebhookEvent};
use switchboard_protocol::{ChatMessage, ConversationId, Participant, TenantId, VisitorId};
use tokio::sync::oneshot;

/// Above this many cached conversations the seq cache is dropped and rebuilt lazily.
const SEQ_CACHE_LIMIT: usize = 1 << 20;

/// One key/value to write.
pub(crate) struct Put {
    pub cf: &'static str,
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

pub(crate) enum WriteOp {
    Append { request: AppendRequest, reply: AppendReply },
    Ack { conversation: ConversationId, reader: Participant, seq: u64 },
    Put {
        puts: Vec<Put>,
        bump: Option<(&'static str, u64)>,
        events: Vec<(TenantId, WebhookEvent)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    AllocateId { counter: &'static str, reply: oneshot::Sender<Result<u64, StoreError>> },
    ResolveVisitor { tenant: TenantId, key: Vec<u8>, reply: oneshot::Sender<Result<VisitorId, StoreError>> },
    Barrier { reply: oneshot::Sender<Result<(), StoreError>> },
    Shutdown,
}

/// Where the outcome of an append goes.
pub(crate) enum AppendReply {
    /// A caller's future.
    Future(oneshot::Sender<Result<AppendOutcome, StoreError>>),
    /// The listener: committed messages are already reported; duplicates and failures
    /// become [`Answer`]s.
    Listener,
}

/// A reply to send once the batch is durable.
enum Reply {
    Append { reply: AppendReply, outcome: AppendOutcome, origin: u64, conversation: ConversationId, client_msg_id: u64 },
    Unit(oneshot::Sender<Result<(), StoreError>>),
    Id(oneshot::Sender<Result<u64, StoreError>>, u64),
    /// A verified visitor: the new mapping to replicate, if it was created.
    Visitor(oneshot::Sender<Result<VisitorId, StoreError>>, VisitorId, Option<(TenantId, Vec<u8>)>),
}

impl Reply {
    fn complete(self, result: Result<(), &StoreError>, answers: &mut Vec<Answer>, replicator: Option<&Arc<dyn RecordReplicator>>) {
        let fail = |e: &StoreError| StoreError::WriteFailed { reason: e.to_string() };
        match self {
            Reply::Append { reply: AppendReply::Future(tx), outcome, .. } => drop(tx.send(result.map(|_| outcome).map_err(fail))),
            Reply::Append { reply: AppendReply::Listener, outcome, origin, conversation, client_msg_id } => match (result, outcome) {
                (Ok(()), AppendOutcome::Committed { .. }) => {}
                (Ok(()), AppendOutcome::Duplicate { seq }) => answers.push(Answer { origin, conversation, client_msg_id, result: Ok(seq) }),
                (Err(e), _) => answers.push(Answer { origin, conversation, client_msg_id, result: Err(e.to_string()) }),
            },
            Reply::Unit(tx) => drop(tx.send(result.map_err(fail))),
            Reply::Id(tx, id) => drop(tx.send(result.map(|_| id).map_err(fail))),
            // A new mapping is answered once it is replicated too, so another node
            // taking the tenant over maps the user to the same visitor.
            Reply::Visitor(tx, v, Some((tenant, key))) if result.is_ok() => match replicator {
                Some(r) => {
                    let write = RecordWrite { space: RecordSpace::Directory, key, value: Some(v.0.to_be_bytes().to_vec()) };
                    r.replicate(tenant, vec![write], Box::new(move |done| drop(tx.send(done.map(|_| v)))));
                }
                None => drop(tx.send(Ok(v))),
            },
            Reply::Visitor(tx, v, _) => drop(tx.send(result.map(|_| v).map_err(fail))),
        }
    }
}

pub(crate) fn last_seq_on_disk(db: &DB, conversation: ConversationId) -> Result<u64, StoreError> {
    let cf = cf(db, CF_MESSAGES)?;
    let mut it = db.raw_iterator_cf(cf);
    it.seek_for_prev(message_key(conversation, u64::MAX));
    let found = match it.key().and_then(parse_message_key) {
        Some((c, seq)) if c == conversation => seq,
        _ => 0,
    };
    it.status().map_err(StoreError::rocks("seek last seq"))?;
    Ok(found)
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or(StoreError::Corrupt { what: "column family", reason: format!("{name} missing") })
}

pub(crate) struct Writer {
    db: Arc<DB>,
    rx: Receiver<WriteOp>,
    listener: Arc<dyn CommitListener>,
    options: StoreOptions,
    /// Last durable seq per conversation.
    last_seq: HashMap<ConversationId, u64>,
    /// Durable value of each id counter (for leased counters: the end of the block).
    counters: HashMap<&'static str, u64>,
    /// Next id to hand out from each counter's leased block.
    leased: HashMap<&'static str, u64>,
    /// Where tenants' new records are replicated, once the cluster is up.
    replicator: Arc<OnceLock<Arc<dyn RecordReplicator>>>,
}

/// Ids leased per durable counter write.
const ID_LEASE: u64 = 1000;

/// What one batch changes before it is known to be durable.
#[derive(Default)]
struct Overlay {
    seq: HashMap<ConversationId, u64>,
    idempotency: HashMap<[u8; 25], u64>,
    cursors: HashMap<[u8; 17], u64>,
    counters: HashMap<&'static str, u64>,
    leased: HashMap<&'static str, u64>,
    visitors: HashMap<Vec<u8>, VisitorId>,
}

impl Writer {
    pub(crate) fn new(
        db: Arc<DB>,
        rx: Receiver<WriteOp>,
        listener: Arc<dyn CommitListener>,
        options: StoreOptions,
        replicator: Arc<OnceLock<Arc<dyn RecordReplicator>>>,
    ) -> Self {
        Writer { db, rx, listener, options, last_seq: HashMap::new(), counters: HashMap::new(), leased: HashMap::new(), replicator }
    }

    pub(crate) fn run(mut self) {
        let max = self.options.max_batch_ops.max(1);
        loop {
            let Ok(first) = self.rx.recv() else { return };
            let mut ops = vec![first];
            while ops.len() < max {
                match self.rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if self.commit(ops) {
                tracing::debug!("store writer stopped");
                return;
            }
        }
    }

    fn counter(&mut self, overlay: &Overlay, name: &'static str) -> Result<u64, StoreError> {
        if let Some(v) = overlay.counters.get(name) {
            return Ok(*v);
        }
        if let Some(v) = self.counters.get(name) {
            return Ok(*v);
        }
        let v = match self.db.get_cf(cf(&self.db, CF_DIRECTORY)?, counter_key(name)).map_err(StoreError::rocks("read counter"))? {
            Some(b) => records::decode_u64("counter", &b)?,
            None => 0,
        };
        self.counters.insert(name, v);
        Ok(v)
    }

    fn next_seq(&mut self, overlay: &Overlay, conversation: ConversationId) -> Result<u64, StoreError> {
        if let Some(s) = overlay.seq.get(&conversation) {
            return Ok(s + 1);
        }
        if let Some(s) = self.last_seq.get(&conversation) {
            return Ok(s + 1);
        }
        let s = last_seq_on_disk(&self.db, conversation)?;
        Ok(s + 1)
    }

    /// Prepares, writes and acknowledges one batch. Returns true on shutdown.
    fn commit(&mut self, ops: Vec<WriteOp>) -> bool {
        let mut batch = WriteBatch::default();
        let mut overlay = Overlay::default();
        let mut replies = Vec::with_capacity(ops.len());
        let mut committed = Vec::new();
        let mut shutdown = false;
        let mut answers = Vec::new();
        let n_ops = ops.len();
        for op in ops {
            if let Err((op, e)) = self.prepare(op, &mut batch, &mut overlay, &mut replies, &mut committed, &mut shutdown) {
                tracing::warn!(error = %e, "store operation failed before commit");
                fail_op(op, e, &mut answers);
            }
        }
        if batch.is_empty() {
            // Nothing to write (e.g. ids served from an already durable lease).
            self.leased.extend(overlay.leased);
            self.complete(replies, Ok(()), answers);
            return shutdown;
        }
        let started = Instant::now();
        let mut wo = WriteOptions::default();
        wo.set_sync(self.options.sync);
        match self.db.write_opt(batch, &wo) {
            Ok(()) => {
                metrics::histogram!(metric_names::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(metric_names::COMMIT_BATCH_OPS).record(n_ops as f64);
                if self.last_seq.len() > SEQ_CACHE_LIMIT {
                    self.last_seq.clear();
                }
                self.last_seq.extend(overlay.seq);
                self.counters.extend(overlay.counters);
                self.leased.extend(overlay.leased);
                if !committed.is_empty() {
                    self.listener.committed(&committed);
                }
                self.complete(replies, Ok(()), answers);
            }
            Err(e) => {
                metrics::counter!(metric_names::COMMIT_ERRORS).increment(1);
                tracing::error!(error = %e, ops = n_ops, "group commit failed; nothing of the batch is acknowledged");
                let err = StoreError::Rocks { op: "write batch", source: e };
                self.complete(replies, Err(&err), answers);
            }
        }
        shutdown
    }

    /// Completes a batch's replies: the listener hears about submitted appends first,
    /// then callers' futures complete (so a `flush` after a submit sees its answer).
    fn complete(&self, replies: Vec<Reply>, result: Result<(), &StoreError>, mut answers: Vec<Answer>) {
        let (appends, others): (Vec<Reply>, Vec<Reply>) = replies.into_iter().partition(|r| matches!(r, Reply::Append { .. }));
        let mut unused = Vec::new();
        let mut futures = Vec::new();
        for r in appends {
            match r {
                Reply::Append { reply: AppendReply::Listener, .. } => r.complete(result, &mut answers, None),
                other => futures.push(other),
            }
        }
        if !answers.is_empty() {
            self.listener.answered(&answers);
        }
        let replicator = self.replicator.get();
        futures.into_iter().chain(others).for_each(|r| r.complete(result, &mut unused, replicator));
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        op: WriteOp,
        batch: &mut WriteBatch,
        overlay: &mut Overlay,
        replies: &mut Vec<Reply>,
        committed: &mut Vec<Committed>,
        shutdown: &mut bool,
    ) -> Result<(), (WriteOp, StoreError)> {
        match op {
            WriteOp::Append { request, reply } => {
                let key = idempotency_key(request.conversation, request.sender, request.client_msg_id);
                let (origin, conversation, client_msg_id) = (request.origin, request.conversation, request.client_msg_id);
                let answer = |reply, outcome| Reply::Append { reply, outcome, origin, conversation, client_msg_id };
                if let Some(seq) = overlay.idempotency.get(&key) {
                    replies.push(answer(reply, AppendOutcome::Duplicate { seq: *seq }));
                    return Ok(());
                }
                let existing = match cf(&self.db, CF_IDEMPOTENCY).and_then(|c| self.db.get_cf(c, key).map_err(StoreError::rocks("read idempotency key"))) {
                    Ok(v) => v,
                    Err(e) => return Err((WriteOp::Append { request, reply }, e)),
                };
                if let Some(v) = existing {
                    // Already durable from an earlier batch.
                    match records::decode_u64("idempotency", &v) {
                        Ok(seq) => replies.push(answer(reply, AppendOutcome::Duplicate { seq })),
                        Err(e) => return Err((WriteOp::Append { request, reply }, e)),
                    }
                    return Ok(());
                }
                let seq = match self.next_seq(overlay, request.conversation) {
                    Ok(s) => s,
                    Err(e) => return Err((WriteOp::Append { request, reply }, e)),
                };
                let (Ok(messages_cf), Ok(idem_cf)) = (cf(&self.db, CF_MESSAGES), cf(&self.db, CF_IDEMPOTENCY)) else {
                    return Err((WriteOp::Append { request, reply }, StoreError::Corrupt { what: "column family", reason: "missing".into() }));
                };
                let message = ChatMessage {
                    conversation: request.conversation,
                    seq,
                    sender: request.sender,
                    client_msg_id: request.client_msg_id,
                    sent_at_ms: request.sent_at_ms,
                    body: request.body,
                };
                batch.put_cf(messages_cf, message_key(request.conversation, seq), records::encode(&message));
                batch.put_cf(idem_cf, key, seq.to_be_bytes());
                if let Some(tenant) = request.webhook {
                    let event = WebhookEvent::MessageCreated { conversation: request.conversation, seq };
                    if let Err(e) = self.outbox(overlay, batch, tenant, event) {
                        tracing::warn!(error = %e, "cannot queue message.created webhook");
                    }
                }
                overlay.seq.insert(request.conversation, seq);
                overlay.idempotency.insert(key, seq);
                replies.push(answer(reply, AppendOutcome::Committed { seq }));
                committed.push(Committed { message, origin: request.origin, received_at: request.received_at });
            }
            WriteOp::Ack { conversation, reader, seq } => {
                let key = cursor_key(conversation, reader);
                let current = match overlay.cursors.get(&key) {
                    Some(v) => *v,
                    None => {
                        let got = cf(&self.db, CF_CURSORS)
                            .and_then(|c| self.db.get_cf(c, key).map_err(StoreError::rocks("read cursor")))
                            .and_then(|v| v.map(|b| records::decode_u64("cursor", &b)).transpose());
                        match got {
                            Ok(v) => v.unwrap_or(0),
                            Err(e) => return Err((WriteOp::Ack { conversation, reader, seq }, e)),
                        }
                    }
                };
                if seq > current {
                    if let Ok(c) = cf(&self.db, CF_CURSORS) {
                        batch.put_cf(c, key, seq.to_be_bytes());
                        overlay.cursors.insert(key, seq);
                    }
                }
            }
            WriteOp::Put { puts, bump, events, reply } => {
                for p in &puts {
                    match (cf(&self.db, p.cf), &p.value) {
                        (Ok(c), Some(v)) => batch.put_cf(c, &p.key, v),
                        (Ok(c), None) => batch.delete_cf(c, &p.key),
                        (Err(e), _) => return Err((WriteOp::Put { puts, bump, events, reply }, e)),
                    }
                }
                for (tenant, event) in &events {
                    if let Err(e) = self.outbox(overlay, batch, *tenant, event.clone()) {
                        return Err((WriteOp::Put { puts, bump, events, reply }, e));
                    }
                }
                if let Some((name, value)) = bump {
                    match self.counter(overlay, name) {
                        Ok(current) if value > current => {
                            if let Ok(c) = cf(&self.db, CF_DIRECTORY) {
                                batch.put_cf(c, counter_key(name), value.to_be_bytes());
                                overlay.counters.insert(name, value);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Err((WriteOp::Put { puts, bump, events, reply }, e)),
                    }
                }
                replies.push(Reply::Unit(reply));
            }
            WriteOp::AllocateId { counter, reply } => match self.allocate(overlay, batch, counter) {
                Ok(id) => replies.push(Reply::Id(reply, node_scoped(self.options.node, id))),
                Err(e) => return Err((WriteOp::AllocateId { counter, reply }, e)),
            },
            WriteOp::ResolveVisitor { tenant, key, reply } => {
                if let Some(v) = overlay.visitors.get(&key) {
                    replies.push(Reply::Visitor(reply, *v, None));
                    return Ok(());
                }
                let existing = cf(&self.db, CF_DIRECTORY)
                    .and_then(|c| self.db.get_cf(c, &key).map_err(StoreError::rocks("read visitor")))
                    .and_then(|v| v.map(|b| records::decode_u64("visitor", &b)).transpose());
                match existing {
                    Ok(Some(id)) => drop(reply.send(Ok(VisitorId(id)))),
                    Ok(None) => match self.allocate(overlay, batch, counters::VISITOR) {
                        Ok(id) => {
                            let id = node_scoped(self.options.node, id);
                            if let Ok(c) = cf(&self.db, CF_DIRECTORY) {
                                batch.put_cf(c, &key, id.to_be_bytes());
                            }
                            overlay.visitors.insert(key.clone(), VisitorId(id));
                            replies.push(Reply::Visitor(reply, VisitorId(id), Some((tenant, key))));
                        }
                        Err(e) => return Err((WriteOp::ResolveVisitor { tenant, key, reply }, e)),
                    },
                    Err(e) => return Err((WriteOp::ResolveVisitor { tenant, key, reply }, e)),
                }
            }
            WriteOp::Barrier { reply } => replies.push(Reply::Unit(reply)),
            WriteOp::Shutdown => *shutdown = true,
        }
        Ok(())
    }

    /// Adds a pending webhook event to the batch.
    fn outbox(&mut self, overlay: &mut Overlay, batch: &mut WriteBatch, tenant: TenantId, event: WebhookEvent) -> Result<(), StoreError> {
        let id = self.allocate(overlay, batch, counters::OUTBOX)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let record = OutboxRecord { id, tenant, event, created_at_ms: now, attempts: 0, next_attempt_at_ms: now, delivered_at_ms: None, last_error: None };
        batch.put_cf(cf(&self.db, CF_OUTBOX)?, outbox_key(false, id), records::encode(&record));
        Ok(())
    }

    /// The next id of counter `name`. Ids are leased in blocks of [`ID_LEASE`]: the
    /// counter on disk holds the end of the current block, so most allocations need no
    /// write, and after a crash the rest of a block is skipped, never reused.
    fn allocate(&mut self, overlay: &mut Overlay, batch: &mut WriteBatch, name: &'static str) -> Result<u64, StoreError> {
        let end = self.counter(overlay, name)?;
        let next = overlay.leased.get(name).or(self.leased.get(name)).copied().unwrap_or(end + 1);
        if next > end {
            let new_end = next - 1 + ID_LEASE;
            batch.put_cf(cf(&self.db, CF_DIRECTORY)?, counter_key(name), new_end.to_be_bytes());
            overlay.counters.insert(name, new_end);
        }
        overlay.leased.insert(name, next + 1);
        Ok(next)
    }
}

fn fail_op(op: WriteOp, e: StoreError, answers: &mut Vec<Answer>) {
    match op {
        WriteOp::Append { reply: AppendReply::Future(reply), .. } => drop(reply.send(Err(e))),
        WriteOp::Append { reply: AppendReply::Listener, request } => answers.push(Answer {
            origin: request.origin,
            conversation: request.conversation,
            client_msg_id: request.client_msg_id,
            result: Err(e.to_string()),
        }),
        WriteOp::Put { reply, .. } | WriteOp::Barrier { reply } => drop(reply.send(Err(e))),
        WriteOp::AllocateId { reply, .. } => drop(reply.send(Err(e))),
        WriteOp::ResolveVisitor { reply, .. } => drop(reply.send(Err(e))),
        WriteOp::Ack { .. } | WriteOp::Shutdown => {}
    }
}
