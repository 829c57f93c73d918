//! `TenantRouter`: the single owner of one tenant's queue, seat loads and open
//! conversation records. Caps hold by construction because only this actor decides.
//! Decisions are made synchronously in the handler (rules in `service::assignment`);
//! the record is written through the store and participants are told once it is
//! durable. The bot's turns are in [`bot`].


mod agent_requests;
mod bot;
mod placement;
mod routers;
mod timers;
#[cfg(test)]
mod timed_tests;
pub use agent_requests::{
    AddNote, AgentReplied, GroupChanged, Invite, PresenceChanged, RateConversation, RequestRating, TakeConversation, Transfer,
};
pub use bot::{BotChanged, BotInput, BotTurn};
pub use routers::Routers;
pub use timers::Tick;
use timers::Timer;
use crate::service::deadlines::Deadlines;
use bot::knowledge_base;
use crate::context::Ctx;
use crate::metrics;
use crate::service::assignment::{self, Assignment, Placement, Pool, Strategy, TakeError, DEFAULT_GROUP, VIP_SHIFT};
use crate::service::knowledge::KnowledgeBase;
use crate::service::queue::{estimated_wait_secs, HandlingTime};
use crate::session::SessionEvent;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use switchboard_protocol::{
    AgentId, ConversationId, ConversationState, ConversationUpdate, GroupId, InternalNote, Participant, TenantId, TransferTarget, VisitorId,
};
use switchboard_raft_store::store::durable;
use switchboard_raft_store::{AppendRequest, BusinessHours, ConversationRecord, RatingRecord, WebhookEvent};
use tokio::sync::oneshot;

/// Why a routing request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// No such open conversation in this tenant.
    #[error("conversation {conversation} not found")]
    ConversationNotFound {
        /// The conversation.
        conversation: ConversationId,
    },
    /// The requester does not take part in the conversation.
    #[error("{who} does not take part in conversation {conversation}")]
    Forbidden {
        /// The conversation.
        conversation: ConversationId,
        /// The requester.
        who: Participant,
    },
    /// The store could not make the change durable.
    #[error("store: {reason}")]
    Storage {
        /// Why.
        reason: String,
    },
    /// The router is gone (node shutting down).
    #[error("router unavailable")]
    Unavailable,
    /// The request cannot be done now (a transfer target unknown, offline or full; an
    /// invitation to a visitor who is offline or already chatting).
    #[error("{reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// The group's queue (and its overflow's) is at its limit.
    #[error("all agents are busy and the queue is full; please try again later")]
    QueueFull,
}

/// Sent by a `VisitorSession`: the visitor's open conversation, opened if needed.
#[derive(Message, Debug)]
#[rtype(result = "Result<ConversationId, RouteError>")]
pub struct OpenConversation {
    /// The visitor.
    pub visitor: VisitorId,
    /// The skill group to queue in (`None`: the default group).
    pub group: Option<GroupId>,
}

/// Sent by an `AgentSeat` when a connection of the agent logs in; answers the
/// conversations the agent holds.
#[derive(Message, Debug)]
#[rtype(result = "Vec<ConversationUpdate>")]
pub struct SeatOnline {
    /// The agent.
    pub agent: AgentId,
}

/// Sent by an `AgentSeat` when a connection of the agent ends.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SeatOffline {
    /// The agent.
    pub agent: AgentId,
}

/// Sent by a session (or the API) to end a conversation.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RouteError>")]
pub struct CloseConversation {
    /// The conversation.
    pub conversation: ConversationId,
    /// Who asks (must take part), or `None` for the tenant's own API.
    pub by: Option<Participant>,
}

/// Sent by the admin API after an agent's capacity changed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CapacityChanged {
    /// The agent.
    pub agent: AgentId,
    /// New capacity.
    pub capacity: u32,
}

/// One tenant's router.
pub struct TenantRouter {
    tenant: TenantId,
    ctx: Ctx,
    pool: Pool,
    records: HashMap<ConversationId, ConversationRecord>,
    next_ticket: i64,
    kb: KnowledgeBase,
    /// Bot replies sent, to make each reply's id unique.
    bot_replies: u64,
    /// Conversations closed within `RECENTLY_CLOSED_MS` (they may still be rated or
    /// reopened), also across restarts.
    recently_closed: HashMap<ConversationId, ConversationRecord>,
    /// Each visitor's agent in their last conversation closed within
    /// `RECENTLY_CLOSED_MS` (sticky routing), and when it closed.
    last_agent: HashMap<VisitorId, (AgentId, u64)>,
    /// When `recently_closed` and `last_agent` last dropped what is too old.
    pruned_at_ms: u64,
    /// The open conversation of each visitor, including ones not yet durable.
    open_by_visitor: HashMap<VisitorId, ConversationId>,
    /// Bumped when a group's hours change, so stale opening/closing timers do nothing.
    hours_generation: HashMap<GroupId, u64>,
    /// Queue status last sent per waiting conversation: (position, estimate).
    queue_sent: HashMap<ConversationId, (u32, u32)>,
    handling: HandlingTime,
    /// Record writes and bot messages in submission order, announced in that order.
    writes: BTreeMap<u64, Slot>,
    next_write: u64,
    /// Everything due later on the node's clock.
    timers: Deadlines<Timer>,
    /// The armed wake-up: its deadline and handle.
    wake: Option<(u64, SpawnHandle)>,
    /// Callers waiting until every write started before they asked is announced
    /// ([`Settled`]): the first write number they do not wait for.
    settle_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Each visitor's latest conversation in `recently_closed` (what a reopen looks at).
    latest_closed: HashMap<VisitorId, ConversationId>,
}

/// A write waiting for its turn to be announced. Record writes and bot messages go
/// to different logs (the node store and the shard groups), so the router orders
/// them itself: a record is announced only after the bot messages submitted before it
/// are committed (and so delivered).
enum Slot {
    /// Not yet durable.
    Pending,
    /// A durable (or failed) record write.
    Record(Written),
    /// A committed (or failed) bot message: nothing to announce.
    Message,
}

/// A durable (or failed) record write waiting for its turn to be announced.
struct Written {
    rec: ConversationRecord,
    result: Result<(), RouteError>,
    reply: oneshot::Sender<Result<(), RouteError>>,
    announce: bool,
    /// An agent who lost the conversation and must hear of it.
    previous: Option<AgentId>,
}

impl Actor for TenantRouter {
    type Context = Context<Self>;

    /// After a restart every agent is offline: their chats get the same grace period
    /// as after a disconnect, so none stays stuck on an agent who never returns.
    fn started(&mut self, ctx: &mut Context<Self>) {
        for (agent, epoch) in self.pool.offline_holders() {
            self.start_grace(agent, epoch, ctx);
        }
        for group in self.ctx.directory.groups_of(self.tenant) {
            self.follow_hours(group.id, group.hours, ctx);
        }
        self.sweep_inactive(ctx);
    }
}

impl TenantRouter {
    /// Rebuilds a router from the directory (which mirrors the durable records).
    pub fn restore(tenant: TenantId, ctx: Ctx) -> Self {
        let mut pool = Pool::new();
        for agent in ctx.directory.agents_of(tenant) {
            pool.set_capacity(agent.id, agent.capacity);
        }
        for group in ctx.directory.groups_of(tenant) {
            pool.set_members(group.id, group.members);
            pool.set_strategy(group.id, group.strategy);
        }
        let mut records = HashMap::new();
        let mut next_ticket: i64 = 1;
        let mut open_by_visitor = HashMap::new();
        for (id, entry) in ctx.directory.conversations_of(tenant) {
            let rec = entry.record;
            match (rec.state, rec.agent) {
                (ConversationState::Assigned, Some(agent)) => pool.restore_assigned(id, rec.group, agent),
                (ConversationState::Bot, _) => {}
                _ => pool.restore_queued(id, rec.group, rec.queue_ticket),
            }
            let counter = if rec.queue_ticket <= -VIP_SHIFT / 2 { rec.queue_ticket + VIP_SHIFT } else { rec.queue_ticket };
            next_ticket = next_ticket.max(counter + 1);
            open_by_visitor.insert(rec.visitor, id);
            records.insert(id, rec);
        }
        let kb = knowledge_base(&ctx, tenant);
        let mut recently_closed = HashMap::new();
        let mut last_agent = HashMap::new();
        let mut closed = ctx.directory.take_recently_closed(tenant);
        closed.sort_by_key(|r| r.closed_at_ms);
        let mut latest_closed = HashMap::new();
        for rec in closed {
            if let (Some(agent), Some(at)) = (rec.agent, rec.closed_at_ms) {
                last_agent.insert(rec.visitor, (agent, at));
            }
            latest_closed.insert(rec.visitor, rec.id);
            recently_closed.insert(rec.id, rec);
        }
        let pruned_at_ms = ctx.clock.now_ms();
        TenantRouter { tenant, ctx, pool, records, next_ticket, kb, bot_replies: 0, open_by_visitor, recently_closed, last_agent, pruned_at_ms, hours_generation: HashMap::new(), queue_sent: HashMap::new(), handling: HandlingTime::default(), writes: BTreeMap::new(), next_write: 0, timers: Deadlines::default(), wake: None, settle_waiters: Vec::new(), latest_closed }
    }


    /// Mirrors `rec` in the directory now, writes it, and tells its participants once
    /// durable. Notifications are released strictly in the order of `persist` calls
    /// (an agent always hears of a closed chat before the chat that replaces it), even
    /// though the context may poll the write futures in any order.
    fn persist(&mut self, rec: ConversationRecord, events: &[&'static str], ctx: &mut Context<Self>) -> oneshot::Receiver<Result<(), RouteError>> {
        self.write_record(rec, true, events, None, ctx)
    }

    /// [`Self::persist`], optionally without telling the participants (a change they
    /// cannot see, such as a report timestamp).
    /// `events` are the webhook events (`conversation.*`) this write stands for; they
    /// are queued in the same batch as the record.
    fn write_record(
        &mut self,
        rec: ConversationRecord,
        announce: bool,
        events: &[&'static str],
        previous: Option<AgentId>,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<(), RouteError>> {
        if rec.state == ConversationState::Closed {
            self.records.remove(&rec.id);
            self.open_by_visitor.remove(&rec.visitor);
        } else {
            self.records.insert(rec.id, rec);
            self.open_by_visitor.insert(rec.visitor, rec.id);
        }
        let events = match self.ctx.directory.webhook(self.tenant) {
            Some(_) => events.iter().map(|kind| (self.tenant, WebhookEvent::Conversation { kind: (*kind).into(), record: rec })).collect(),
            None => Vec::new(),
        };
        let write = self.ctx.store.put_conversation_with_events(&rec, events);
        let (tx, rx) = oneshot::channel();
        let seq = self.next_write;
        self.next_write += 1;
        self.writes.insert(seq, Slot::Pending);
        ctx.spawn(async move { durable(write).await }.into_actor(self).map(move |res, act, ctx| {
            let result = res.map_err(|e| {
                tracing::error!(error = %e, conversation = %rec.id, "conversation record not durable");
                RouteError::Storage { reason: e.to_string() }
            });
            act.writes.insert(seq, Slot::Record(Written { rec, result, reply: tx, announce, previous }));
            act.release_written(ctx);
        }));
        rx
    }

    /// Notifies and answers every completed write that has no earlier write pending.
    fn release_written(&mut self, ctx: &mut Context<Self>) {
        while let Some(entry) = self.writes.first_entry() {
            if matches!(entry.get(), Slot::Pending) {
                break;
            }
            let Slot::Record(done) = entry.remove() else { continue };
            if done.result.is_ok() {
                // Only durable state is published: the dispatcher and sessions read
                // the directory, so nobody acts on a change before it is announced.
                let last_seq = self.ctx.directory.conversation(done.rec.id).map(|e| e.last_seq).unwrap_or(0);
                self.ctx.directory.put_conversation(&done.rec, last_seq);
                if done.announce {
                    self.notify(&done.rec, last_seq);
                    if let Some(previous) = done.previous {
                        let update = ConversationUpdate {
                            conversation: done.rec.id,
                            visitor: done.rec.visitor,
                            agent: done.rec.agent,
                            state: done.rec.state,
                            last_seq,
                        };
                        self.ctx.registry.notify(self.tenant, Participant::Agent(previous), SessionEvent::Conversation(update));
                    }
                    if done.rec.state == ConversationState::Assigned && done.rec.first_agent_reply_at_ms.is_none() {
                        self.watch_reply(&done.rec, ctx);
                    }
                    if done.rec.state == ConversationState::Queued {
                        self.watch_wait(&done.rec, ctx);
                    }
                }
                if let (ConversationState::Closed, Some(a), Some(c)) = (done.rec.state, done.rec.assigned_at_ms, done.rec.closed_at_ms) {
                    self.handling.observe(c.saturating_sub(a));
                }
                if let (ConversationState::Closed, Some(agent), Some(at)) = (done.rec.state, done.rec.agent, done.rec.closed_at_ms) {
                    self.last_agent.insert(done.rec.visitor, (agent, at));
                }
                if done.rec.state == ConversationState::Closed {
                    self.prune_closed();
                    self.recently_closed.insert(done.rec.id, done.rec);
                    self.latest_closed.insert(done.rec.visitor, done.rec.id);
                    if done.announce && done.rec.agent.is_some() {
                        let event = SessionEvent::RatingRequested { conversation: done.rec.id };
                        self.ctx.registry.notify(self.tenant, Participant::Visitor(done.rec.visitor), event);
                    }
                }
            }
            let _ = done.reply.send(done.result);
        }
        self.push_queue_status();
        let oldest_pending = self.writes.keys().next().copied().unwrap_or(self.next_write);
        let (done, waiting): (Vec<_>, Vec<_>) = self.settle_waiters.drain(..).partition(|(upto, _)| oldest_pending >= *upto);
        self.settle_waiters = waiting;
        for (_, waiter) in done {
            let _ = waiter.send(());
        }
    }

    /// Forgets closed conversations (and sticky agents) older than
    /// `RECENTLY_CLOSED_MS`; at most once a minute.
    fn prune_closed(&mut self) {
        let now = self.now();
        if now.saturating_sub(self.pruned_at_ms) < 60_000 {
            return;
        }
        self.pruned_at_ms = now;
        let oldest = now.saturating_sub(crate::routing::directory::RECENTLY_CLOSED_MS);
        self.recently_closed.retain(|_, r| r.closed_at_ms.unwrap_or(0) >= oldest);
        self.last_agent.retain(|_, (_, at)| *at >= oldest);
        let kept = &self.recently_closed;
        self.latest_closed.retain(|_, c| kept.contains_key(c));
    }

    /// Tells each waiting visitor its position and estimated wait when they changed.
    /// Only conversations whose queued state is durable (and so announced) are told.
    fn push_queue_status(&mut self) {
        let mut still_queued = HashMap::new();
        for (conversation, group, position) in self.pool.queued() {
            let Some(rec) = self.ctx.directory.conversation(conversation).map(|e| e.record).filter(|r| r.state == ConversationState::Queued) else {
                continue;
            };
            let capacity = self.ctx.config.default_agent_capacity;
            let estimate = estimated_wait_secs(position, self.pool.online_members(group), capacity, self.handling.avg_ms());
            let status = (position as u32, estimate);
            if self.queue_sent.get(&conversation) != Some(&status) {
                let event = SessionEvent::Queue { conversation, position: status.0, estimated_wait_secs: status.1 };
                self.ctx.registry.notify(self.tenant, Participant::Visitor(rec.visitor), event);
            }
            still_queued.insert(conversation, status);
        }
        self.queue_sent = still_queued;
    }

    fn notify(&self, rec: &ConversationRecord, last_seq: u64) {
        let last_seq = self.ctx.directory.conversation(rec.id).map(|e| e.last_seq).unwrap_or(last_seq);
        let update = ConversationUpdate { conversation: rec.id, visitor: rec.visitor, agent: rec.agent, state: rec.state, last_seq };
        let registry = &self.ctx.registry;
        registry.notify(self.tenant, Participant::Visitor(rec.visitor), SessionEvent::Conversation(update.clone()));
        if let Some(agent) = rec.agent {
            registry.notify(self.tenant, Participant::Agent(agent), SessionEvent::Conversation(update.clone()));
        }
        // In a manual group every member watches the queue, to take from it.
        let manual = self.ctx.directory.group(self.tenant, rec.group).is_some_and(|g| g.strategy == Strategy::Manual);
        if manual && rec.state != ConversationState::Bot {
            let members: Vec<AgentId> = match rec.group {
                DEFAULT_GROUP => self.ctx.directory.agents_of(self.tenant).into_iter().map(|a| a.id).collect(),
                g => self.ctx.directory.group(self.tenant, g).map(|g| g.members).unwrap_or_default(),
            };
            for member in members.into_iter().filter(|m| Some(*m) != rec.agent) {
                registry.notify(self.tenant, Participant::Agent(member), SessionEvent::Conversation(update.clone()));
            }
        }
    }


    /// The next queue ticket for a visitor's conversation (VIPs ahead).
    fn next_ticket(&mut self, visitor: VisitorId) -> i64 {
        let counter = self.next_ticket;
        self.next_ticket += 1;
        let vip = self.ctx.directory.profile(self.tenant, visitor).is_some_and(|p| p.vip);
        assignment::ticket(counter, vip)
    }

    fn apply(&mut self, assignments: Vec<Assignment>, ctx: &mut Context<Self>) {
        for a in assignments {
            let Some(mut rec) = self.records.get(&a.conversation).copied() else { continue };
            rec.agent = Some(a.agent);
            rec.state = ConversationState::Assigned;
            rec.assigned_at_ms = Some(self.now());
            self.persist(rec, &["conversation.assigned"], ctx);
        }
    }
}

impl Handler<OpenConversation> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<ConversationId, RouteError>>;

    fn handle(&mut self, msg: OpenConversation, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(existing) = self.open_by_visitor.get(&msg.visitor).copied() {
            return Box::pin(fut::ready(Ok(existing)));
        }
        if let Some(reopened) = self.reopen(msg.visitor, ctx) {
            return reopened;
        }
        let id = self.ctx.new_conversation_id(self.tenant, msg.visitor);
        let ticket = self.next_ticket(msg.visitor);
        let now = self.now();
        let group = msg.group.filter(|g| self.ctx.directory.group(self.tenant, *g).is_some()).unwrap_or(DEFAULT_GROUP);
        let bot = self.ctx.directory.bot(self.tenant).filter(|b| b.enabled);
        let (group, placement) = if bot.is_some() {
            (group, None)
        } else {
            match self.place_in(id, msg.visitor, group, ticket, ctx) {
                Ok((g, p)) => (g, Some(p)),
                Err(e) => return Box::pin(fut::ready(Err(e))),
            }
        };
        let (state, agent) = match placement {
            None => (ConversationState::Bot, None),
            Some(Placement::Assigned(agent)) => (ConversationState::Assigned, Some(agent)),
            Some(Placement::Queued { .. }) => (ConversationState::Queued, None),
        };
        tracing::debug!(tenant = %self.tenant, conversation = %id, ?placement, "conversation opened");
        let rec = ConversationRecord {
            id,
            tenant: self.tenant,
            visitor: msg.visitor,
            agent,
            group,
            state,
            queue_ticket: ticket,
            created_at_ms: now,
            queued_at_ms: placement.map(|_| now),
            assigned_at_ms: agent.map(|_| now),
            first_agent_reply_at_ms: None,
            closed_at_ms: None,
        };
        let events: &[&'static str] = match state {
            ConversationState::Assigned => &["conversation.created", "conversation.assigned"],
            ConversationState::Queued => &["conversation.created", "conversation.queued"],
            _ => &["conversation.created"],
        };
        let written = self.persist(rec, events, ctx);
        if let Some(bot) = bot {
            self.bot_says(id, crate::service::bot::welcome(&bot), ctx);
        } else {
            self.after_hours_notice(id, group, ctx);
        }
        Box::pin(async move { written.await.unwrap_or(Err(RouteError::Unavailable)) }.into_actor(self).map(move |res, act, ctx| match res {
            Ok(()) => Ok(id),
            Err(e) => {
                // Not durable: forget it, so the visitor's retry opens a fresh one.
                act.records.remove(&id);
                act.open_by_visitor.remove(&rec.visitor);
                let freed = act.pool.release(id);
                act.apply(freed, ctx);
                Err(e)
            }
        }))
    }
}

impl Handler<SeatOnline> for TenantRouter {
    type Result = Vec<ConversationUpdate>;

    fn handle(&mut self, msg: SeatOnline, ctx: &mut Context<Self>) -> Self::Result {
        let capacity = self
            .ctx
            .directory
            .agent(self.tenant, msg.agent)
            .map(|a| a.capacity)
            .unwrap_or(self.ctx.config.default_agent_capacity);
        let was_online = self.pool.is_online(msg.agent);
        let mut drained = self.pool.set_capacity(msg.agent, capacity);
        drained.extend(self.pool.connect(msg.agent));
        if !was_online {
            ::metrics::gauge!(metrics::SEATS_ONLINE).increment(1.0);
        }
        self.apply(drained, ctx);
        // Only what is durably this agent's; chats just drained to it are announced
        // when their assignment is durable.
        self.pool
            .assigned_to(msg.agent)
            .into_iter()
            .filter_map(|c| self.ctx.directory.conversation(c))
            .filter(|e| e.record.agent == Some(msg.agent))
            .map(|e| e.update())
            .collect()
    }
}

impl Handler<SeatOffline> for TenantRouter {
    type Result = ();

    fn handle(&mut self, msg: SeatOffline, ctx: &mut Context<Self>) {
        self.pool.disconnect(msg.agent);
        if let Some(epoch) = self.pool.offline_epoch(msg.agent) {
            ::metrics::gauge!(metrics::SEATS_ONLINE).decrement(1.0);
            self.start_grace(msg.agent, epoch, ctx);
        }
    }
}

impl Handler<CloseConversation> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<(), RouteError>>;

    fn handle(&mut self, msg: CloseConversation, ctx: &mut Context<Self>) -> Self::Result {
        let conversation = msg.conversation;
        let Some(mut rec) = self.records.get(&conversation).copied() else {
            return Box::pin(fut::ready(Err(RouteError::ConversationNotFound { conversation })));
        };
        if let Some(who) = msg.by {
            let takes_part = match who {
                Participant::Visitor(v) => v == rec.visitor,
                Participant::Agent(a) => Some(a) == rec.agent,
                Participant::Bot => false,
            };
            if !takes_part {
                return Box::pin(fut::ready(Err(RouteError::Forbidden { conversation, who })));
            }
        }
        if rec.state == ConversationState::Bot {
            ::metrics::counter!(metrics::BOT_RESOLVED).increment(1);
        }
        rec.state = ConversationState::Closed;
        rec.closed_at_ms = Some(self.now());
        let freed = self.pool.release(conversation);
        let written = self.persist(rec, &["conversation.closed"], ctx);
        self.apply(freed, ctx);
        Box::pin(async move { written.await.unwrap_or(Err(RouteError::Unavailable)) }.into_actor(self))
    }
}

/// Answers once every record write and bot message the router started before it
/// is durable and announced (tests wait on it instead of sleeping).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Settled;

impl Handler<Settled> for TenantRouter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Settled, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.writes.is_empty() {
            let _ = tx.send(());
        } else {
            self.settle_waiters.push((self.next_write, tx));
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<CapacityChanged> for TenantRouter {
    type Result = ();

    fn handle(&mut self, msg: CapacityChanged, ctx: &mut Context<Self>) {
        let drained = self.pool.set_capacity(msg.agent, msg.capacity);
        self.apply(drained, ctx);
    }
}
