//! Requests from agent seats and the admin API: a first reply, group settings,
//! ratings, taking a chat from a manual queue.

use super::*;

/// How long after a close the visitor may still rate the conversation.
const RATING_WINDOW_MS: u64 = 3_600_000;

/// Sent by an `AgentSeat` when its agent's message in a conversation it holds is durable.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AgentReplied {
    /// The conversation.
    pub conversation: ConversationId,
    /// The agent.
    pub agent: AgentId,
    /// When the message was accepted, ms since the epoch.
    pub at_ms: u64,
}

impl Handler<AgentReplied> for TenantRouter {
    type Result = ();

    /// Records the first reply of the assigned agent (first-response time).
    fn handle(&mut self, msg: AgentReplied, ctx: &mut Context<Self>) {
        let Some(mut rec) = self.records.get(&msg.conversation).copied() else { return };
        if rec.agent == Some(msg.agent) && rec.first_agent_reply_at_ms.is_none() {
            rec.first_agent_reply_at_ms = Some(msg.at_ms);
            self.write_record(rec, false, &[], None, ctx);
        }
    }
}

/// Sent by the admin API after a group's members or strategy changed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct GroupChanged {
    /// The group.
    pub group: GroupId,
    /// Its members now.
    pub members: Vec<AgentId>,
    /// Its strategy now.
    pub strategy: Strategy,
    /// Its business hours now.
    pub hours: Option<BusinessHours>,
}

impl Handler<GroupChanged> for TenantRouter {
    type Result = ();

    fn handle(&mut self, msg: GroupChanged, ctx: &mut Context<Self>) {
        let mut drained = self.pool.set_members(msg.group, msg.members);
        drained.extend(self.pool.set_strategy(msg.group, msg.strategy));
        self.apply(drained, ctx);
        self.follow_hours(msg.group, msg.hours, ctx);
    }
}

/// Sent by a `VisitorSession`: the visitor rates a conversation.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RouteError>")]
pub struct RateConversation {
    /// The conversation.
    pub conversation: ConversationId,
    /// The visitor.
    pub visitor: VisitorId,
    /// 1 to 5 (checked by the session).
    pub score: u8,
    /// Free text (checked by the session).
    pub comment: String,
}

impl Handler<RateConversation> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<(), RouteError>>;

    fn handle(&mut self, msg: RateConversation, _: &mut Context<Self>) -> Self::Result {
        let conversation = msg.conversation;
        // A closed conversation may be rated for an hour after it closed.
        let hour_ago = self.now().saturating_sub(RATING_WINDOW_MS);
        let closed = self.recently_closed.get(&conversation).filter(|r| r.closed_at_ms.unwrap_or(0) >= hour_ago);
        let rec = self.records.get(&conversation).or(closed).copied();
        let Some(rec) = rec.filter(|r| r.visitor == msg.visitor) else {
            return Box::pin(fut::ready(Err(RouteError::ConversationNotFound { conversation })));
        };
        let rating = RatingRecord {
            tenant: self.tenant,
            conversation,
            visitor: msg.visitor,
            agent: rec.agent,
            score: msg.score,
            comment: msg.comment,
            at_ms: self.now(),
        };
        let write = self.ctx.store.put_rating(&rating, self.ctx.directory.webhook(self.tenant).is_some());
        Box::pin(async move { durable(write).await.map_err(|e| RouteError::Storage { reason: e.to_string() }) }.into_actor(self))
    }
}

/// Sent by an `AgentSeat`: its agent asks the visitor for a rating.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RouteError>")]
pub struct RequestRating {
    /// The conversation.
    pub conversation: ConversationId,
    /// The agent asking.
    pub agent: AgentId,
}

impl Handler<RequestRating> for TenantRouter {
    type Result = Result<(), RouteError>;

    fn handle(&mut self, msg: RequestRating, _: &mut Context<Self>) -> Self::Result {
        let conversation = msg.conversation;
        let rec = self.records.get(&conversation).copied().ok_or(RouteError::ConversationNotFound { conversation })?;
        if rec.agent != Some(msg.agent) {
            return Err(RouteError::Forbidden { conversation, who: Participant::Agent(msg.agent) });
        }
        self.ctx.registry.notify(self.tenant, Participant::Visitor(rec.visitor), SessionEvent::RatingRequested { conversation });
        Ok(())
    }
}

/// Sent by an `AgentSeat`: its agent takes a waiting conversation.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), TakeError>")]
pub struct TakeConversation {
    /// The conversation.
    pub conversation: ConversationId,
    /// The agent.
    pub agent: AgentId,
}

impl Handler<TakeConversation> for TenantRouter {
    type Result = Result<(), TakeError>;

    fn handle(&mut self, msg: TakeConversation, ctx: &mut Context<Self>) -> Self::Result {
        let mut rec = self.records.get(&msg.conversation).copied().ok_or(TakeError::NotQueued)?;
        self.pool.take(msg.conversation, msg.agent)?;
        rec.agent = Some(msg.agent);
        rec.state = ConversationState::Assigned;
        rec.assigned_at_ms = Some(self.now());
        self.persist(rec, &["conversation.assigned"], ctx);
        Ok(())
    }
}

/// Sent by an `AgentSeat`: its agent adds an internal note.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RouteError>")]
pub struct AddNote {
    /// The conversation.
    pub conversation: ConversationId,
    /// The author (must hold the conversation).
    pub agent: AgentId,
    /// The note.
    pub body: String,
}

impl TenantRouter {
    /// Stores a note and, once durable, shows it to the conversation's agent.
    fn save_note(&mut self, conversation: ConversationId, author: AgentId, body: String) -> ResponseActFuture<Self, Result<(), RouteError>> {
        let note = InternalNote { author, at_ms: self.now(), body };
        let write = self.ctx.store.put_note(self.tenant, conversation, &note);
        Box::pin(async move { durable(write).await }.into_actor(self).map(move |res, act, _| {
            res.map_err(|e| RouteError::Storage { reason: e.to_string() })?;
            if let Some(agent) = act.records.get(&conversation).and_then(|r| r.agent) {
                let event = SessionEvent::Notes { conversation, notes: vec![note] };
                act.ctx.registry.notify(act.tenant, Participant::Agent(agent), event);
            }
            Ok(())
        }))
    }
}

impl Handler<AddNote> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<(), RouteError>>;

    fn handle(&mut self, msg: AddNote, _: &mut Context<Self>) -> Self::Result {
        let conversation = msg.conversation;
        match self.records.get(&conversation) {
            Some(r) if r.agent == Some(msg.agent) => self.save_note(conversation, msg.agent, msg.body),
            Some(_) => Box::pin(fut::ready(Err(RouteError::Forbidden { conversation, who: Participant::Agent(msg.agent) }))),
            None => Box::pin(fut::ready(Err(RouteError::ConversationNotFound { conversation }))),
        }
    }
}

/// Sent by an `AgentSeat`: its agent hands the conversation to another agent or group.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), RouteError>")]
pub struct Transfer {
    /// The conversation.
    pub conversation: ConversationId,
    /// The agent holding it.
    pub from: AgentId,
    /// Where it goes.
    pub to: TransferTarget,
    /// Internal note for the next agent (may be empty).
    pub note: String,
}

impl Handler<Transfer> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<(), RouteError>>;

    fn handle(&mut self, msg: Transfer, ctx: &mut Context<Self>) -> Self::Result {
        let conversation = msg.conversation;
        let Some(mut rec) = self.records.get(&conversation).copied() else {
            return Box::pin(fut::ready(Err(RouteError::ConversationNotFound { conversation })));
        };
        if rec.agent != Some(msg.from) {
            return Box::pin(fut::ready(Err(RouteError::Forbidden { conversation, who: Participant::Agent(msg.from) })));
        }
        // The note first, so the next agent finds it when the chat arrives.
        if !msg.note.trim().is_empty() {
            let note = self.save_note(conversation, msg.from, msg.note);
            ctx.spawn(note.map(|_, _, _| ()));
        }
        let now = self.now();
        let moved = match msg.to {
            TransferTarget::Agent(to) if to == msg.from => Err(TakeError::NotMember),
            TransferTarget::Agent(to) if self.ctx.directory.agent(self.tenant, to).is_none() => Err(TakeError::NotMember),
            TransferTarget::Agent(to) => self.pool.transfer_to_agent(conversation, to).map(|_| {
                rec.agent = Some(to);
                rec.assigned_at_ms = Some(now);
                Vec::new()
            }),
            TransferTarget::Group(g) if g != DEFAULT_GROUP && self.ctx.directory.group(self.tenant, g).is_none() => Err(TakeError::NotMember),
            TransferTarget::Group(g) => self.pool.transfer_to_group(conversation, g).map(|drained| {
                rec.agent = None;
                rec.group = g;
                rec.state = ConversationState::Queued;
                rec.queued_at_ms = Some(now);
                drained
            }),
        };
        match moved {
            Ok(drained) => {
                rec.first_agent_reply_at_ms = rec.first_agent_reply_at_ms.filter(|_| rec.agent.is_none());
                let written = self.write_record(rec, true, &["conversation.transferred"], Some(msg.from), ctx);
                self.apply(drained, ctx);
                Box::pin(async move { written.await.unwrap_or(Err(RouteError::Unavailable)) }.into_actor(self))
            }
            Err(e) => Box::pin(fut::ready(Err(RouteError::Refused { reason: format!("cannot transfer: {e}") }))),
        }
    }
}

/// Sent by an `AgentSeat`: its agent invites an online visitor into a conversation.
#[derive(Message, Debug)]
#[rtype(result = "Result<ConversationId, RouteError>")]
pub struct Invite {
    /// The agent.
    pub agent: AgentId,
    /// The visitor.
    pub visitor: VisitorId,
}

impl Handler<Invite> for TenantRouter {
    type Result = ResponseActFuture<Self, Result<ConversationId, RouteError>>;

    fn handle(&mut self, msg: Invite, ctx: &mut Context<Self>) -> Self::Result {
        let refuse = |reason: &str| -> Self::Result { Box::pin(fut::ready(Err(RouteError::Refused { reason: reason.into() }))) };
        if self.open_by_visitor.contains_key(&msg.visitor) {
            return refuse("the visitor already has an open conversation");
        }
        let mut online = false;
        self.ctx.registry.for_each(self.tenant, Participant::Visitor(msg.visitor), |_, _| online = true);
        if !online {
            return refuse("the visitor is not online");
        }
        let id = self.ctx.new_conversation_id(self.tenant, msg.visitor);
        if let Err(e) = self.pool.assign_direct(id, msg.agent) {
            return refuse(&e.to_string());
        }
        let now = self.now();
        let rec = ConversationRecord {
            id,
            tenant: self.tenant,
            visitor: msg.visitor,
            agent: Some(msg.agent),
            group: DEFAULT_GROUP,
            state: ConversationState::Assigned,
            queue_ticket: 0,
            created_at_ms: now,
            queued_at_ms: None,
            assigned_at_ms: Some(now),
            first_agent_reply_at_ms: None,
            closed_at_ms: None,
        };
        let written = self.persist(rec, &["conversation.created", "conversation.assigned"], ctx);
        Box::pin(async move { written.await.unwrap_or(Err(RouteError::Unavailable)).map(|_| id) }.into_actor(self))
    }
}

/// Sent by an `AgentSeat`: its agent's presence changed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PresenceChanged {
    /// The agent.
    pub agent: AgentId,
    /// Online (takes new chats) or not.
    pub available: bool,
}

impl Handler<PresenceChanged> for TenantRouter {
    type Result = ();

    fn handle(&mut self, msg: PresenceChanged, ctx: &mut Context<Self>) {
        let drained = self.pool.set_available(msg.agent, msg.available);
        self.apply(drained, ctx);
    }
}
