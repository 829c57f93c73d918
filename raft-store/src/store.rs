//! The single-node store: RocksDB plus the group-commit writer.

use crate::error::StoreError;
use crate::keys::*;
use crate::log::{AppendFuture, AppendRequest, CommitListener, ConversationLog};
use crate::records::{
    self, AgentRecord, AgentTokenRecord, BotRecord, ConversationRecord, GroupRecord, KnowledgeRecord, OutboxRecord, RatingRecord, TenantRecord,
    VisitorProfileRecord,
    WebhookEvent, WebhookRecord, ChannelRecord,
};
use crate::writer::{AppendReply, Put, WriteOp, Writer};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use crate::raft::{RecordSpace, RecordWrite};
use std::thread::JoinHandle;
use switchboard_protocol::{ChatMessage, ConversationId, InternalNote, PageView, Participant, QuickReply, TenantId, VisitorId};
use tokio::sync::oneshot;

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most operations folded into one write batch.
    pub max_batch_ops: usize,
    /// fsync each batch before acknowledging (turn off only in throwaway tests).
    pub sync: bool,
    /// The node's id (1-255), put in every id the store hands out, so ids of
    /// different nodes never collide when a tenant moves; 0 puts nothing.
    pub node: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_batch_ops: 4096, sync: true, node: 0 }
    }
}

/// Counter names in the directory.
pub(crate) mod counters {
    pub const CONVERSATION: &str = "conversation";
    pub const VISITOR: &str = "visitor";
    pub const AGENT: &str = "agent";
    pub const GROUP: &str = "group";
    pub const KNOWLEDGE: &str = "knowledge";
    pub const OUTBOX: &str = "outbox";
    pub const QUICK_REPLY: &str = "quick_reply";
}

/// Kinds of id the store hands out durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// Agents (unique across tenants).
    Agent,
    /// Anonymous and verified visitors (unique across tenants).
    Visitor,
    /// Skill groups (unique across tenants).
    Group,
    /// Knowledge-base entries (unique across tenants).
    Knowledge,
    /// Quick replies.
    QuickReply,
}

impl IdKind {
    fn counter(self) -> &'static str {
        match self {
            IdKind::Agent => counters::AGENT,
            IdKind::Visitor => counters::VISITOR,
            IdKind::Group => counters::GROUP,
            IdKind::Knowledge => counters::KNOWLEDGE,
            IdKind::QuickReply => counters::QUICK_REPLY,
        }
    }
}

/// `n`, the `n`th id of a node's counter, made unique across nodes: bits 32-39 hold
/// the node id, the counter's low 32 bits stay below them and its higher bits go
/// above (ids stay under 2^53, exact in JSON numbers).
pub fn node_scoped(node: u64, n: u64) -> u64 {
    ((n >> 32) << 40) | ((node & 0xff) << 32) | (n & 0xffff_ffff)
}

/// Makes a tenant's record writes durable on the nodes that could take the tenant
/// over, before the store writes them locally (the cluster's record pipeline).
pub trait RecordReplicator: Send + Sync + 'static {
    /// Replicates `writes` of `tenant`, then calls `done` with the outcome. Writes of
    /// one tenant complete in the order they were handed in.
    fn replicate(&self, tenant: TenantId, writes: Vec<RecordWrite>, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>);
}

/// Resolves when a write is durable.
pub type Durable<T> = oneshot::Receiver<Result<T, StoreError>>;

/// Awaits a [`Durable`], mapping a dead writer to [`StoreError::Closed`].
pub async fn durable<T>(rx: Durable<T>) -> Result<T, StoreError> {
    rx.await.unwrap_or(Err(StoreError::Closed))
}

/// Opens (creating if needed) a RocksDB at `path` with the column families `cfs`.
pub(crate) fn open_db(path: &Path, cfs: &[&str]) -> Result<DB, StoreError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(2);
    db_opts.set_keep_log_file_num(4);
    let cfs = cfs.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })
}

/// RocksDB with a group-commit writer thread.
pub struct Store {
    db: Arc<DB>,
    tx: mpsc::Sender<WriteOp>,
    writer: Mutex<Option<JoinHandle<()>>>,
    next_conversation: AtomicU64,
    /// Orders records written in the same millisecond (notes, page views).
    order: AtomicU64,
    replicator: Arc<OnceLock<Arc<dyn RecordReplicator>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `path` and starts its writer thread.
    pub fn open(path: &Path, options: StoreOptions, listener: Arc<dyn CommitListener>) -> Result<Store, StoreError> {
        let db = Arc::new(open_db(path, &ALL_CFS)?);
        let max_conv = read_counter(&db, counters::CONVERSATION)?;
        let (tx, rx) = mpsc::channel();
        let replicator = Arc::new(OnceLock::new());
        let writer = Writer::new(db.clone(), rx, listener, options, replicator.clone());
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Store {
            db,
            tx,
            writer: Mutex::new(Some(handle)),
            next_conversation: AtomicU64::new(max_conv + 1),
            order: AtomicU64::new(0),
            replicator,
        })
    }

    /// The RocksDB behind the store (raft groups share it: [`crate::raft::RaftDb::on`]).
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    fn send(&self, op: WriteOp) {
        // If the writer is gone the op (and its reply sender) is dropped, and the
        // caller's future resolves to `StoreError::Closed`.
        let _ = self.tx.send(op);
    }

    /// From now on, a tenant's directory and conversation records are replicated
    /// through `replicator` before they are written here (set once; later calls do
    /// nothing).
    pub fn set_replicator(&self, replicator: Arc<dyn RecordReplicator>) {
        let _ = self.replicator.set(replicator);
    }

    /// Writes records of a tenant taken over from another node, as replicated, here
    /// only.
    pub fn restore_records(&self, writes: Vec<RecordWrite>) -> Durable<()> {
        let puts = writes.into_iter().map(|w| Put { cf: space_cf(w.space), key: w.key, value: w.value }).collect();
        self.put_with_events(None, puts, None, Vec::new())
    }

    /// Waits until every write submitted before it is durable.
    pub fn flush(&self) -> Durable<()> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteOp::Barrier { reply });
        rx
    }

    /// Commits what is pending, stops the writer thread and waits for it.
    pub fn shutdown(&self) {
        self.send(WriteOp::Shutdown);
        let handle = self.writer.lock().map(|mut h| h.take()).unwrap_or(None);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // Everything written so far (the raft groups' unsynced state-machine writes
        // too) reaches the disk, and no flush or compaction still runs in RocksDB's
        // own threads when the process exits.
        if let Err(e) = self.db.flush_wal(true) {
            tracing::warn!(error = %e, "syncing the WAL at shutdown");
        }
        self.db.cancel_all_background_work(true);
    }

    /// A new id of `kind`, durable before it is returned (never handed out twice).
    pub fn allocate_id(&self, kind: IdKind) -> Durable<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteOp::AllocateId { counter: kind.counter(), reply });
        rx
    }

    /// The visitor id of a tenant's verified user, created on first use.
    pub fn resolve_verified_visitor(&self, tenant: TenantId, user_id: &str) -> Durable<VisitorId> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteOp::ResolveVisitor { tenant, key: verified_visitor_key(tenant, user_id), reply });
        rx
    }

    /// A fresh conversation id. Ids are only reused if nothing durable ever named them.
    pub fn next_conversation_id(&self) -> ConversationId {
        ConversationId(self.next_conversation.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes `tenant`'s records (replicated first, once a replicator is set).
    fn put(&self, tenant: TenantId, puts: Vec<Put>, bump: Option<(&'static str, u64)>) -> Durable<()> {
        self.put_with_events(Some(tenant), puts, bump, Vec::new())
    }

    /// Writes `puts` (of `tenant`: replicated first, once a replicator is set; `None`:
    /// here only) with `events` queued in the outbox, in one batch.
    fn put_with_events(&self, tenant: Option<TenantId>, puts: Vec<Put>, bump: Option<(&'static str, u64)>, events: Vec<(TenantId, WebhookEvent)>) -> Durable<()> {
        let (reply, rx) = oneshot::channel();
        let replicated = |puts: &[Put]| -> Vec<RecordWrite> {
            puts.iter().filter_map(|p| record_space(p.cf).map(|space| RecordWrite { space, key: p.key.clone(), value: p.value.clone() })).collect()
        };
        let writes = match (tenant, self.replicator.get()) {
            (Some(tenant), Some(replicator)) => Some((tenant, replicator, replicated(&puts))),
            _ => None,
        };
        let op = WriteOp::Put { puts, bump, events, reply };
        match writes {
            Some((tenant, replicator, writes)) if !writes.is_empty() => {
                let tx = self.tx.clone();
                replicator.replicate(
                    tenant,
                    writes,
                    Box::new(move |done| match (done, op) {
                        // If the writer is gone, `op` is dropped and the caller sees Closed.
                        (Ok(()), op) => drop(tx.send(op)),
                        (Err(e), WriteOp::Put { reply, .. }) => drop(reply.send(Err(e))),
                        (Err(_), _) => {}
                    }),
                );
            }
            _ => self.send(op),
        }
        rx
    }

    /// Queues webhook events durably (each gets the next event id).
    pub fn enqueue_events(&self, events: Vec<(TenantId, WebhookEvent)>) -> Durable<()> {
        self.put_with_events(None, Vec::new(), None, events)
    }

    /// Pending webhook events, oldest first.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut v = self.scan_prefix(CF_OUTBOX, &[0], |_, v| records::decode("outbox", v))?;
        v.truncate(limit);
        Ok(v)
    }

    /// A tenant's webhook events, pending first, then delivered, oldest first.
    pub fn outbox_of(&self, tenant: TenantId, limit: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        let mut all: Vec<OutboxRecord> = self.scan_prefix(CF_OUTBOX, &[], |_, v| records::decode("outbox", v))?;
        all.retain(|r| r.tenant == tenant);
        all.truncate(limit);
        Ok(all)
    }

    /// Records an attempt: a delivered event moves to the delivered part of the outbox.
    pub fn update_outbox(&self, record: &OutboxRecord) -> Durable<()> {
        let delivered = record.delivered_at_ms.is_some();
        let mut puts = vec![Put { cf: CF_OUTBOX, key: outbox_key(delivered, record.id).to_vec(), value: Some(records::encode(record)) }];
        if delivered {
            puts.push(Put { cf: CF_OUTBOX, key: outbox_key(false, record.id).to_vec(), value: None });
        }
        self.put_with_events(None, puts, None, Vec::new())
    }

    /// Writes a rating durably (a later rating of the same conversation replaces it),
    /// with its webhook event if any.
    pub fn put_rating(&self, record: &RatingRecord, webhook: bool) -> Durable<()> {
        let put = Put { cf: CF_DIRECTORY, key: rating_key(record.tenant, record.conversation), value: Some(records::encode(record)) };
        let events = if webhook { vec![(record.tenant, WebhookEvent::RatingSubmitted { rating: record.clone() })] } else { Vec::new() };
        self.put_with_events(Some(record.tenant), vec![put], None, events)
    }

    /// A tenant's ratings.
    pub fn ratings_of(&self, tenant: TenantId) -> Result<Vec<RatingRecord>, StoreError> {
        let mut prefix = vec![tag::RATING];
        prefix.extend_from_slice(&tenant.0.to_be_bytes());
        self.scan_prefix(CF_DIRECTORY, &prefix, |_, v| records::decode("rating", v))
    }

    /// Writes an internal note durably.
    pub fn put_note(&self, tenant: TenantId, conversation: ConversationId, note: &InternalNote) -> Durable<()> {
        let key = note_key(tenant, conversation, note.at_ms, self.order.fetch_add(1, Ordering::Relaxed));
        self.put(tenant, vec![Put { cf: CF_DIRECTORY, key, value: Some(records::encode(note)) }], None)
    }

    /// A conversation's internal notes, oldest first. Blocking.
    pub fn notes_of(&self, tenant: TenantId, conversation: ConversationId) -> Result<Vec<InternalNote>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &notes_prefix(tenant, conversation), |_, v| records::decode("note", v))
    }

    /// Writes (or, with an empty body, deletes) a quick reply durably.
    pub fn put_quick_reply(&self, tenant: TenantId, reply: &QuickReply) -> Durable<()> {
        let key = quick_reply_key(tenant, reply.agent, reply.id);
        let value = (!reply.body.is_empty()).then(|| records::encode(reply));
        self.put(tenant, vec![Put { cf: CF_DIRECTORY, key, value }], None)
    }

    /// Every quick reply of every tenant, with its tenant.
    pub fn quick_replies(&self) -> Result<Vec<(TenantId, QuickReply)>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::QUICK_REPLY], |k, v| {
            let tenant = k.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).map(TenantId);
            let tenant = tenant.ok_or(StoreError::Corrupt { what: "quick reply key", reason: format!("{} bytes", k.len()) })?;
            Ok((tenant, records::decode("quick reply", v)?))
        })
    }

    /// Writes a channel's group mapping durably.
    pub fn put_channel(&self, record: &ChannelRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: channel_key(record.tenant, &record.channel), value: Some(records::encode(record)) }], None)
    }

    /// Removes a channel's group mapping durably.
    pub fn delete_channel(&self, tenant: TenantId, channel: &str) -> Durable<()> {
        self.put(tenant, vec![Put { cf: CF_DIRECTORY, key: channel_key(tenant, channel), value: None }], None)
    }

    /// Every tenant's channels.
    pub fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::CHANNEL], |_, v| records::decode("channel", v))
    }

    /// Writes a tenant's webhook settings durably.
    pub fn put_webhook(&self, record: &WebhookRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: webhook_key(record.tenant), value: Some(records::encode(record)) }], None)
    }

    /// Every tenant's webhook settings.
    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::WEBHOOK], |_, v| records::decode("webhook", v))
    }

    /// Writes a conversation record and queues webhook events with it, atomically.
    pub fn put_conversation_with_events(&self, record: &ConversationRecord, events: Vec<(TenantId, WebhookEvent)>) -> Durable<()> {
        let put = Put { cf: CF_CONVERSATIONS, key: conversation_key(record.id).to_vec(), value: Some(records::encode(record)) };
        let mut index_key = visitor_conversations_prefix(record.tenant, record.visitor);
        index_key.extend_from_slice(&record.id.0.to_be_bytes());
        let index = Put { cf: CF_DIRECTORY, key: index_key, value: Some(Vec::new()) };
        self.put_with_events(Some(record.tenant), vec![put, index], Some((counters::CONVERSATION, record.id.0)), events)
    }

    /// A visitor's conversations, newest first, at most `limit`. Blocking.
    pub fn visitor_conversations(&self, tenant: TenantId, visitor: VisitorId, limit: usize) -> Result<Vec<ConversationId>, StoreError> {
        let prefix = visitor_conversations_prefix(tenant, visitor);
        let mut ids = self.scan_prefix(CF_DIRECTORY, &prefix, |k, _| {
            let raw: [u8; 8] = k[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "visitor conversation key", reason: format!("{} bytes", k.len()) })?;
            Ok(ConversationId(u64::from_be_bytes(raw)))
        })?;
        ids.reverse();
        ids.truncate(limit);
        Ok(ids)
    }

    /// Adds a page view to a visitor's trail (durable with the next batch; not awaited).
    pub fn track(&self, tenant: TenantId, visitor: VisitorId, view: &PageView) -> Durable<()> {
        let mut key = trail_prefix(tenant, visitor);
        key.extend_from_slice(&view.at_ms.to_be_bytes());
        key.extend_from_slice(&self.order.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        self.put(tenant, vec![Put { cf: CF_DIRECTORY, key, value: Some(records::encode(view)) }], None)
    }

    /// A visitor's most recent page views, oldest first, at most `limit`. Blocking.
    pub fn trail(&self, tenant: TenantId, visitor: VisitorId, limit: usize) -> Result<Vec<PageView>, StoreError> {
        let mut all: Vec<PageView> = self.scan_prefix(CF_DIRECTORY, &trail_prefix(tenant, visitor), |_, v| records::decode("page view", v))?;
        let skip = all.len().saturating_sub(limit);
        Ok(all.split_off(skip))
    }

    /// Writes a conversation record durably.
    pub fn put_conversation(&self, record: &ConversationRecord) -> Durable<()> {
        self.put_conversation_with_events(record, Vec::new())
    }

    /// Writes a tenant and its API key digest durably.
    pub fn put_tenant(&self, record: &TenantRecord) -> Durable<()> {
        self.put(
            record.id,
            vec![
                Put { cf: CF_DIRECTORY, key: tenant_key(record.id), value: Some(records::encode(record)) },
                Put { cf: CF_DIRECTORY, key: api_key_key(&record.api_key_digest), value: Some(record.id.0.to_be_bytes().to_vec()) },
            ],
            None,
        )
    }

    /// Writes an agent durably.
    pub fn put_agent(&self, record: &AgentRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: agent_key(record.tenant, record.id), value: Some(records::encode(record)) }], None)
    }

    /// Writes a skill group durably.
    pub fn put_group(&self, record: &GroupRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: group_key(record.tenant, record.id), value: Some(records::encode(record)) }], None)
    }

    /// Every skill group of every tenant.
    pub fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::GROUP], |_, v| records::decode("group", v))
    }

    /// Writes a tenant's bot settings durably.
    pub fn put_bot(&self, record: &BotRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: bot_key(record.tenant), value: Some(records::encode(record)) }], None)
    }

    /// Every tenant's bot settings.
    pub fn bots(&self) -> Result<Vec<BotRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::BOT], |_, v| records::decode("bot", v))
    }

    /// Writes a knowledge-base entry durably.
    pub fn put_knowledge(&self, record: &KnowledgeRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: knowledge_key(record.tenant, record.id), value: Some(records::encode(record)) }], None)
    }

    /// Every knowledge-base entry of every tenant.
    pub fn knowledge(&self) -> Result<Vec<KnowledgeRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::KNOWLEDGE], |_, v| records::decode("knowledge", v))
    }

    /// Writes a visitor profile durably.
    pub fn put_profile(&self, record: &VisitorProfileRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: profile_key(record.tenant, record.visitor), value: Some(records::encode(record)) }], None)
    }

    /// Every visitor profile.
    pub fn profiles(&self) -> Result<Vec<VisitorProfileRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::PROFILE], |_, v| records::decode("profile", v))
    }

    /// Writes an agent token (by digest) durably.
    pub fn put_agent_token(&self, digest: &[u8; 32], record: &AgentTokenRecord) -> Durable<()> {
        self.put(record.tenant, vec![Put { cf: CF_DIRECTORY, key: agent_token_key(digest), value: Some(records::encode(record)) }], None)
    }

    fn scan_prefix<T>(&self, cf: &'static str, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
        let handle = self.cf(cf)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(StoreError::rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(f(&k, &v)?);
        }
        Ok(out)
    }

    /// Every tenant.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::TENANT], |_, v| records::decode("tenant", v))
    }

    /// Every agent of every tenant.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::AGENT], |_, v| records::decode("agent", v))
    }

    /// Every agent token digest with what it stands for.
    pub fn agent_tokens(&self) -> Result<Vec<([u8; 32], AgentTokenRecord)>, StoreError> {
        self.scan_prefix(CF_DIRECTORY, &[tag::AGENT_TOKEN], |k, v| {
            let digest: [u8; 32] = k[1..]
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "agent token key", reason: format!("{} bytes", k.len()) })?;
            Ok((digest, records::decode("agent token", v)?))
        })
    }

    /// One conversation record.
    pub fn conversation(&self, id: ConversationId) -> Result<Option<ConversationRecord>, StoreError> {
        match self.db.get_cf(self.cf(CF_CONVERSATIONS)?, conversation_key(id)).map_err(StoreError::rocks("read conversation"))? {
            Some(v) => Ok(Some(records::decode("conversation", &v)?)),
            None => Ok(None),
        }
    }

    /// Every conversation record (open and closed), in id order.
    pub fn conversations(&self) -> Result<Vec<ConversationRecord>, StoreError> {
        self.scan_prefix(CF_CONVERSATIONS, &[], |_, v| records::decode("conversation", v))
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::Corrupt { what: "column family", reason: format!("{name} missing") })
    }
}

/// The replicated space of a column family (`None`: not a tenant record).
fn record_space(cf: &str) -> Option<RecordSpace> {
    match cf {
        CF_DIRECTORY => Some(RecordSpace::Directory),
        CF_CONVERSATIONS => Some(RecordSpace::Conversations),
        _ => None,
    }
}

fn space_cf(space: RecordSpace) -> &'static str {
    match space {
        RecordSpace::Directory => CF_DIRECTORY,
        RecordSpace::Conversations => CF_CONVERSATIONS,
    }
}

fn read_counter(db: &DB, name: &str) -> Result<u64, StoreError> {
    let cf = db
        .cf_handle(CF_DIRECTORY)
        .ok_or(StoreError::Corrupt { what: "column family", reason: "directory missing".into() })?;
    match db.get_cf(cf, counter_key(name)).map_err(StoreError::rocks("read counter"))? {
        Some(v) => records::decode_u64("counter", &v),
        None => Ok(0),
    }
}

impl ConversationLog for Store {
    fn append(&self, request: AppendRequest) -> AppendFuture {
        let (reply, rx) = oneshot::channel();
        self.send(WriteOp::Append { request, reply: AppendReply::Future(reply) });
        AppendFuture::new(rx)
    }

    fn submit(&self, request: AppendRequest) {
        self.send(WriteOp::Append { request, reply: AppendReply::Listener });
    }

    fn read(&self, conversation: ConversationId, after_seq: u64, limit: usize, max_bytes: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
        let cf = self.cf(CF_MESSAGES)?;
        let start = message_key(conversation, first);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(StoreError::rocks("read messages"))?;
            match parse_message_key(&k) {
                Some((c, _)) if c == conversation => {}
                _ => break,
            }
            if out.len() >= limit || (!out.is_empty() && bytes + v.len() > max_bytes) {
                break;
            }
            bytes += v.len();
            out.push(records::decode::<ChatMessage>("message", &v)?);
        }
        Ok(out)
    }

    fn last_seq(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        crate::writer::last_seq_on_disk(&self.db, conversation)
    }

    fn ack(&self, conversation: ConversationId, reader: Participant, seq: u64) {
        self.send(WriteOp::Ack { conversation, reader, seq });
    }

    fn cursor(&self, conversation: ConversationId, reader: Participant) -> Result<u64, StoreError> {
        match self.db.get_cf(self.cf(CF_CURSORS)?, cursor_key(conversation, reader)).map_err(StoreError::rocks("read cursor"))? {
            Some(v) => records::decode_u64("cursor", &v),
            None => Ok(0),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}
