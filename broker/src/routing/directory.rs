//! The in-memory directory: read on every login and every message, written through
//! the store by the admin API and the tenant routers.

use dashmap::DashMap;
use std::sync::Arc;
use switchboard_protocol::{AgentId, ConversationId, ConversationState, ConversationUpdate, GroupId, Participant, QuickReply, TenantId, VisitorId};
use switchboard_raft_store::{
    AgentRecord, AgentTokenRecord, BotRecord, ChannelRecord, ConversationLog, ConversationRecord, GroupRecord, KnowledgeRecord, Store, StoreError, TenantRecord,
    VisitorProfileRecord, WebhookRecord,
};

/// A conversation that is queued or assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversationEntry {
    /// Its durable record (as last written).
    pub record: ConversationRecord,
    /// Highest committed seq.
    pub last_seq: u64,
    /// When its last message was accepted (or it was last written), ms since the epoch.
    pub last_activity_ms: u64,
}

impl ConversationEntry {
    /// Whether `who` of `tenant` takes part in it.
    pub fn has_participant(&self, tenant: TenantId, who: Participant) -> bool {
        self.record.tenant == tenant
            && match who {
                Participant::Visitor(v) => v == self.record.visitor,
                Participant::Agent(a) => Some(a) == self.record.agent,
                Participant::Bot => false,
            }
    }

    /// The update frame body for it.
    pub fn update(&self) -> ConversationUpdate {
        let r = &self.record;
        ConversationUpdate { conversation: r.id, visitor: r.visitor, agent: r.agent, state: r.state, last_seq: self.last_seq }
    }
}

/// Tenants, agents, tokens and open conversations.
#[derive(Default)]
pub struct Directory {
    tenants: DashMap<TenantId, Arc<TenantRecord>>,
    api_keys: DashMap<[u8; 32], TenantId>,
    agents: DashMap<AgentId, AgentRecord>,
    agent_tokens: DashMap<[u8; 32], AgentTokenRecord>,
    groups: DashMap<(TenantId, GroupId), GroupRecord>,
    bots: DashMap<TenantId, BotRecord>,
    knowledge: DashMap<(TenantId, u64), KnowledgeRecord>,
    profiles: DashMap<(TenantId, VisitorId), VisitorProfileRecord>,
    webhooks: DashMap<TenantId, WebhookRecord>,
    quick_replies: DashMap<(TenantId, u64), QuickReply>,
    conversations: DashMap<ConversationId, ConversationEntry>,
    visitor_open: DashMap<(TenantId, VisitorId), ConversationId>,
    /// Conversations closed within [`RECENTLY_CLOSED_MS`] before start-up, per tenant,
    /// until the tenant's router takes them.
    recently_closed: DashMap<TenantId, Vec<ConversationRecord>>,
    channels: DashMap<(TenantId, String), ChannelRecord>,
}

/// How long a tenant router remembers a closed conversation: it may still be
/// rated, reopened within the reopen window, and its agent is the visitor's sticky
/// agent.
pub const RECENTLY_CLOSED_MS: u64 = 24 * 3_600_000;

impl Directory {
    /// Loads everything from the store (start-up); `now_ms` decides which closed
    /// conversations are recent.
    pub fn load(store: &Store, log: &dyn ConversationLog, now_ms: u64) -> Result<Directory, StoreError> {
        Self::load_where(store, log, now_ms, |_| true)
    }

    /// Loads what the store holds of the tenants `keep` accepts (a tenant taken over
    /// from another node).
    pub fn load_where(store: &Store, log: &dyn ConversationLog, now_ms: u64, keep: impl Fn(TenantId) -> bool) -> Result<Directory, StoreError> {
        let dir = Directory::default();
        for t in store.tenants()?.into_iter().filter(|t| keep(t.id)) {
            dir.insert_tenant(t);
        }
        for a in store.agents()?.into_iter().filter(|a| keep(a.tenant)) {
            dir.agents.insert(a.id, a);
        }
        for g in store.groups()?.into_iter().filter(|g| keep(g.tenant)) {
            dir.groups.insert((g.tenant, g.id), g);
        }
        for (tenant, q) in store.quick_replies()?.into_iter().filter(|(t, _)| keep(*t)) {
            dir.quick_replies.insert((tenant, q.id), q);
        }
        for c in store.channels()?.into_iter().filter(|c| keep(c.tenant)) {
            dir.channels.insert((c.tenant, c.channel.clone()), c);
        }
        for w in store.webhooks()?.into_iter().filter(|w| keep(w.tenant)) {
            dir.webhooks.insert(w.tenant, w);
        }
        for p in store.profiles()?.into_iter().filter(|p| keep(p.tenant)) {
            dir.profiles.insert((p.tenant, p.visitor), p);
        }
        for b in store.bots()?.into_iter().filter(|b| keep(b.tenant)) {
            dir.bots.insert(b.tenant, b);
        }
        for k in store.knowledge()?.into_iter().filter(|k| keep(k.tenant)) {
            if !k.questions.is_empty() {
                dir.knowledge.insert((k.tenant, k.id), k);
            }
        }
        for (digest, rec) in store.agent_tokens()?.into_iter().filter(|(_, r)| keep(r.tenant)) {
            dir.agent_tokens.insert(digest, rec);
        }
        let recent = now_ms.saturating_sub(RECENTLY_CLOSED_MS);
        for c in store.conversations()?.into_iter().filter(|c| keep(c.tenant)) {
            if c.state != ConversationState::Closed {
                let last_seq = log.last_seq(c.id)?;
                dir.put_conversation(&c, last_seq);
            } else if c.closed_at_ms.is_some_and(|at| at >= recent) {
                dir.recently_closed.entry(c.tenant).or_default().push(c);
            }
        }
        Ok(dir)
    }

    /// Moves everything of `other` into this (empty) directory.
    pub fn absorb(&self, other: Directory) {
        for (k, v) in other.tenants {
            self.tenants.insert(k, v);
        }
        for (k, v) in other.api_keys {
            self.api_keys.insert(k, v);
        }
        for (k, v) in other.agents {
            self.agents.insert(k, v);
        }
        for (k, v) in other.groups {
            self.groups.insert(k, v);
        }
        for (k, v) in other.quick_replies {
            self.quick_replies.insert(k, v);
        }
        for (k, v) in other.webhooks {
            self.webhooks.insert(k, v);
        }
        for (k, v) in other.profiles {
            self.profiles.insert(k, v);
        }
        for (k, v) in other.bots {
            self.bots.insert(k, v);
        }
        for (k, v) in other.knowledge {
            self.knowledge.insert(k, v);
        }
        for (k, v) in other.agent_tokens {
            self.agent_tokens.insert(k, v);
        }
        for (k, v) in other.conversations {
            self.conversations.insert(k, v);
        }
        for (k, v) in other.visitor_open {
            self.visitor_open.insert(k, v);
        }
        for (k, v) in other.channels {
            self.channels.insert(k, v);
        }
        for (k, v) in other.recently_closed {
            self.recently_closed.insert(k, v);
        }
    }

    /// Forgets everything of `tenant` (it is served by another node now).
    pub fn remove_tenant(&self, tenant: TenantId) {
        self.tenants.remove(&tenant);
        self.api_keys.retain(|_, t| *t != tenant);
        self.agents.retain(|_, a| a.tenant != tenant);
        self.agent_tokens.retain(|_, r| r.tenant != tenant);
        self.groups.retain(|(t, _), _| *t != tenant);
        self.bots.remove(&tenant);
        self.knowledge.retain(|(t, _), _| *t != tenant);
        self.profiles.retain(|(t, _), _| *t != tenant);
        self.webhooks.remove(&tenant);
        self.quick_replies.retain(|(t, _), _| *t != tenant);
        self.conversations.retain(|_, c| c.record.tenant != tenant);
        self.visitor_open.retain(|(t, _), _| *t != tenant);
        self.recently_closed.remove(&tenant);
        self.channels.retain(|(t, _), _| *t != tenant);
    }

    /// Adds or replaces a tenant.
    pub fn insert_tenant(&self, t: TenantRecord) {
        self.api_keys.insert(t.api_key_digest, t.id);
        self.tenants.insert(t.id, Arc::new(t));
    }

    /// A tenant.
    pub fn tenant(&self, id: TenantId) -> Option<Arc<TenantRecord>> {
        self.tenants.get(&id).map(|t| t.clone())
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> Vec<Arc<TenantRecord>> {
        let mut v: Vec<_> = self.tenants.iter().map(|t| t.clone()).collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// The tenant of an API key digest.
    pub fn tenant_by_api_key(&self, digest: &[u8; 32]) -> Option<TenantId> {
        self.api_keys.get(digest).map(|t| *t)
    }

    /// Adds or replaces an agent.
    pub fn insert_agent(&self, a: AgentRecord) {
        self.agents.insert(a.id, a);
    }

    /// An agent of `tenant` (None if it belongs to another tenant).
    pub fn agent(&self, tenant: TenantId, id: AgentId) -> Option<AgentRecord> {
        self.agents.get(&id).filter(|a| a.tenant == tenant).map(|a| a.clone())
    }

    /// Every agent of `tenant`, by id.
    pub fn agents_of(&self, tenant: TenantId) -> Vec<AgentRecord> {
        let mut v: Vec<_> = self.agents.iter().filter(|a| a.tenant == tenant).map(|a| a.clone()).collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Adds or replaces a skill group.
    pub fn insert_group(&self, g: GroupRecord) {
        self.groups.insert((g.tenant, g.id), g);
    }

    /// A skill group of `tenant`.
    pub fn group(&self, tenant: TenantId, id: GroupId) -> Option<GroupRecord> {
        self.groups.get(&(tenant, id)).map(|g| g.clone())
    }

    /// Every skill group of `tenant`, by id.
    pub fn groups_of(&self, tenant: TenantId) -> Vec<GroupRecord> {
        let mut v: Vec<_> = self.groups.iter().filter(|g| g.tenant == tenant).map(|g| g.clone()).collect();
        v.sort_by_key(|g| g.id);
        v
    }

    /// Adds, replaces or (empty body) removes a quick reply.
    pub fn put_quick_reply(&self, tenant: TenantId, q: QuickReply) {
        if q.body.is_empty() {
            self.quick_replies.remove(&(tenant, q.id));
        } else {
            self.quick_replies.insert((tenant, q.id), q);
        }
    }

    /// Quick replies an agent may use (tenant-wide first), or all of the tenant's.
    pub fn quick_replies_for(&self, tenant: TenantId, agent: Option<AgentId>) -> Vec<QuickReply> {
        let mut v: Vec<QuickReply> = self
            .quick_replies
            .iter()
            .filter(|e| e.key().0 == tenant && (agent.is_none() || e.agent.is_none() || e.agent == agent))
            .map(|e| e.value().clone())
            .collect();
        v.sort_by_key(|q| (q.agent.is_some(), q.agent, q.id));
        v
    }

    /// Sets a tenant's webhook.
    pub fn set_webhook(&self, w: WebhookRecord) {
        self.webhooks.insert(w.tenant, w);
    }

    /// A tenant's webhook settings.
    pub fn webhook(&self, tenant: TenantId) -> Option<WebhookRecord> {
        self.webhooks.get(&tenant).map(|w| w.clone())
    }

    /// Sets a visitor's profile.
    pub fn set_profile(&self, p: VisitorProfileRecord) {
        self.profiles.insert((p.tenant, p.visitor), p);
    }

    /// A visitor's profile.
    pub fn profile(&self, tenant: TenantId, visitor: VisitorId) -> Option<VisitorProfileRecord> {
        self.profiles.get(&(tenant, visitor)).map(|p| p.clone())
    }

    /// Sets a tenant's bot.
    pub fn set_bot(&self, b: BotRecord) {
        self.bots.insert(b.tenant, b);
    }

    /// A tenant's bot settings.
    pub fn bot(&self, tenant: TenantId) -> Option<BotRecord> {
        self.bots.get(&tenant).map(|b| b.clone())
    }

    /// Adds, replaces or (with no questions) removes a knowledge-base entry.
    pub fn put_knowledge(&self, k: KnowledgeRecord) {
        if k.questions.is_empty() {
            self.knowledge.remove(&(k.tenant, k.id));
        } else {
            self.knowledge.insert((k.tenant, k.id), k);
        }
    }

    /// A tenant's knowledge-base entries, by id.
    pub fn knowledge_of(&self, tenant: TenantId) -> Vec<KnowledgeRecord> {
        let mut v: Vec<_> = self.knowledge.iter().filter(|k| k.tenant == tenant).map(|k| k.clone()).collect();
        v.sort_by_key(|k| k.id);
        v
    }

    /// Records an agent token.
    pub fn insert_agent_token(&self, digest: [u8; 32], rec: AgentTokenRecord) {
        self.agent_tokens.insert(digest, rec);
    }

    /// What an agent token digest stands for.
    pub fn agent_token(&self, digest: &[u8; 32]) -> Option<AgentTokenRecord> {
        self.agent_tokens.get(digest).map(|r| *r)
    }

    /// Mirrors a conversation record (closed ones are removed).
    pub fn put_conversation(&self, rec: &ConversationRecord, last_seq: u64) {
        if rec.state == ConversationState::Closed {
            self.conversations.remove(&rec.id);
            self.visitor_open.remove_if(&(rec.tenant, rec.visitor), |_, c| *c == rec.id);
            return;
        }
        let now = crate::context::now_ms();
        let (last_seq, last_activity_ms) = match self.conversations.get(&rec.id) {
            Some(e) => (e.last_seq.max(last_seq), e.last_activity_ms.max(now)),
            None => (last_seq, now),
        };
        self.conversations.insert(rec.id, ConversationEntry { record: *rec, last_seq, last_activity_ms });
        self.visitor_open.insert((rec.tenant, rec.visitor), rec.id);
    }

    /// Adds or replaces a channel's mapping.
    pub fn put_channel(&self, c: ChannelRecord) {
        self.channels.insert((c.tenant, c.channel.clone()), c);
    }

    /// Removes a channel's mapping; whether it existed.
    pub fn remove_channel(&self, tenant: TenantId, channel: &str) -> bool {
        self.channels.remove(&(tenant, channel.to_string())).is_some()
    }

    /// The group a channel's visitors enter, if the tenant mapped it.
    pub fn channel_group(&self, tenant: TenantId, channel: &str) -> Option<GroupId> {
        self.channels.get(&(tenant, channel.to_string())).map(|c| c.group)
    }

    /// A tenant's channels, by name.
    pub fn channels_of(&self, tenant: TenantId) -> Vec<ChannelRecord> {
        let mut v: Vec<ChannelRecord> = self.channels.iter().filter(|e| e.key().0 == tenant).map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.channel.cmp(&b.channel));
        v
    }

    /// The tenant's conversations closed shortly before start-up (once: its router
    /// keeps them from then on).
    pub fn take_recently_closed(&self, tenant: TenantId) -> Vec<ConversationRecord> {
        self.recently_closed.remove(&tenant).map(|(_, v)| v).unwrap_or_default()
    }

    /// An open conversation.
    pub fn conversation(&self, id: ConversationId) -> Option<ConversationEntry> {
        self.conversations.get(&id).map(|e| *e)
    }

    /// Raises the recorded last seq of a conversation; returns its entry.
    pub fn note_committed(&self, id: ConversationId, seq: u64, at_ms: u64) -> Option<ConversationEntry> {
        let mut e = self.conversations.get_mut(&id)?;
        e.last_seq = e.last_seq.max(seq);
        e.last_activity_ms = e.last_activity_ms.max(at_ms);
        Some(*e)
    }

    /// The visitor's open conversation.
    pub fn open_conversation_of(&self, tenant: TenantId, visitor: VisitorId) -> Option<ConversationId> {
        self.visitor_open.get(&(tenant, visitor)).map(|c| *c)
    }

    /// Open conversations of a tenant, by id.
    pub fn conversations_of(&self, tenant: TenantId) -> Vec<(ConversationId, ConversationEntry)> {
        let mut v: Vec<_> = self.conversations.iter().filter(|e| e.record.tenant == tenant).map(|e| (*e.key(), *e.value())).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// (queued, assigned) across every tenant.
    pub fn counts(&self) -> (usize, usize) {
        let queued = self.conversations.iter().filter(|e| e.record.state == ConversationState::Queued).count();
        (queued, self.conversations.len() - queued)
    }
}
