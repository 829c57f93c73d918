//! What `VisitorSession` and `AgentSeat` share: the outbound queue, subscriptions,
//! live delivery, catch-up reads, acks, history and closing. Role-specific rules
//! (who may send where) stay in the two actors.

use super::subscriptions::{Live, Subscriptions, FILL_BATCH, FILL_BYTES};
use super::{FromReader, SessionEvent};
use crate::context::Ctx;
use crate::metrics;
use crate::routing::tenant_router::{AgentReplied, BotInput, BotTurn, CloseConversation};
use crate::routing::{ConnId, ConversationEntry, RouteError};
use actix::prelude::*;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use switchboard_protocol::{
    ChatMessage, ClientFrame, ConversationId, ConversationState, VisitorContext, ConversationUpdate, Cursor, ErrorCode, ErrorFrame, Participant, SendMessage, ServerFrame, TenantId,
};
use switchboard_raft_store::AppendRequest;

/// Most messages one `Fetch` returns.
pub const MAX_FETCH: u32 = 500;

/// State every session actor has.
pub struct SessionCore {
    /// The node.
    pub ctx: Ctx,
    /// This connection.
    pub conn: ConnId,
    /// The identity's tenant.
    pub tenant: TenantId,
    /// The identity.
    pub me: Participant,
    /// Frames to the client.
    pub out: Arc<super::outbound::Outbound>,
    /// What this connection has been given.
    pub subs: Subscriptions,
    /// Cursors the client stated in its `Hello`.
    pub resume: Vec<Cursor>,
    /// Set once the connection is being closed; the actor stops.
    pub closing: bool,
    /// This connection's sends not yet answered: (conversation, client_msg_id). Its
    /// own message is answered with `Accepted` even when it arrives by a catch-up read.
    pub in_flight: Vec<(ConversationId, u64)>,
}

/// Implemented by the two session actors.
pub trait SessionActor: Actor<Context = Context<Self>> {
    /// The shared state.
    fn core(&mut self) -> &mut SessionCore;
    /// A `Send` frame (rules differ for visitors and agents).
    fn on_send(&mut self, msg: SendMessage, ctx: &mut Context<Self>);
}

impl SessionCore {
    /// Encodes and queues a frame; on overflow closes the connection as a slow consumer.
    pub fn push(&mut self, frame: &ServerFrame) {
        match self.ctx.codec.encode_to_vec(frame) {
            Ok(bytes) => self.push_bytes(Bytes::from(bytes)),
            Err(e) => tracing::error!(error = %e, "cannot encode server frame"),
        }
    }

    /// Queues an encoded frame.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if self.closing {
            return;
        }
        if let Err(super::outbound::PushError::Overflow) = self.out.push(bytes) {
            ::metrics::counter!(metrics::SLOW_CONSUMERS).increment(1);
            tracing::info!(queued = self.out.queued_bytes(), "slow consumer: closing connection");
            let frame = ServerFrame::error(
                ErrorCode::SLOW_CONSUMER,
                "outbound queue full: the client is not reading; reconnect and resume from your cursors",
                true,
            );
            self.out.abort(self.ctx.codec.encode_to_vec(&frame).ok().map(Bytes::from));
            self.closing = true;
        }
    }

    /// Sends a non-fatal error.
    pub fn reject(&mut self, code: ErrorCode, message: impl Into<String>, client_msg_id: Option<u64>) {
        ::metrics::counter!(metrics::FRAMES_REJECTED, "code" => code.name()).increment(1);
        self.push(&ServerFrame::Error(ErrorFrame { code, message: message.into(), client_msg_id, fatal: false }));
    }

    /// Sends a fatal error after what is queued and closes.
    pub fn fatal(&mut self, code: ErrorCode, message: impl Into<String>) {
        ::metrics::counter!(metrics::FRAMES_REJECTED, "code" => code.name()).increment(1);
        let frame = ServerFrame::error(code, message, true);
        self.out.finish(self.ctx.codec.encode_to_vec(&frame).ok().map(Bytes::from));
        self.closing = true;
    }

    fn take_in_flight(&mut self, conversation: ConversationId, client_msg_id: u64) -> bool {
        match self.in_flight.iter().position(|p| *p == (conversation, client_msg_id)) {
            Some(i) => {
                self.in_flight.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Queues a delivered message: `Accepted` if this connection sent it and is
    /// waiting for the answer, else `Message`.
    fn deliver(&mut self, message: ChatMessage) {
        if message.sender == self.me && self.take_in_flight(message.conversation, message.client_msg_id) {
            self.push(&ServerFrame::Accepted { client_msg_id: message.client_msg_id, conversation: message.conversation, seq: message.seq });
            self.after_own_message(&message);
        } else {
            self.push(&ServerFrame::Message(message));
            ::metrics::counter!(metrics::MESSAGES_DELIVERED).increment(1);
        }
    }

    /// The open conversation if this identity takes part in it.
    pub fn entry(&self, conversation: ConversationId) -> Result<ConversationEntry, (ErrorCode, String)> {
        match self.ctx.directory.conversation(conversation) {
            Some(e) if e.has_participant(self.tenant, self.me) => Ok(e),
            Some(e) if e.record.tenant == self.tenant => {
                Err((ErrorCode::FORBIDDEN, format!("{} does not take part in conversation {conversation}", self.me)))
            }
            _ => Err((ErrorCode::CONVERSATION_NOT_FOUND, format!("conversation {conversation} is not open for you"))),
        }
    }

    /// Registers the session so deliveries and notifications reach it.
    pub fn register(&self, addr: Recipient<SessionEvent>) -> usize {
        self.ctx.registry.register(self.tenant, self.me, self.conn, addr)
    }

    /// Removes the session from the registry and closes the queue (after what is pending).
    pub fn unregister(&mut self) -> usize {
        self.out.finish(None);
        self.ctx.registry.unregister(self.tenant, self.me, self.conn)
    }
}

/// Registers a starting session; if the node is already shutting down (its broadcast
/// may have run before this registration), says goodbye at once. Shutdown clears
/// readiness before broadcasting, so no session slips between the two.
pub fn register<A: SessionActor + Handler<SessionEvent>>(act: &mut A, ctx: &mut Context<A>) {
    let core = act.core();
    core.register(ctx.address().recipient());
    if !core.ctx.is_ready() {
        on_event(act, SessionEvent::GoAway { reason: "node shutting down".into() }, ctx);
    }
}

/// Handles a frame (or the end of the stream) from the reader task.
pub fn on_reader<A: SessionActor>(act: &mut A, msg: FromReader, ctx: &mut Context<A>) {
    match msg {
        FromReader::Frame(frame) => on_frame(act, frame, ctx),
        FromReader::Rejected { code, message } => act.core().reject(code, message, None),
        FromReader::Closed { error } => {
            let core = act.core();
            match error {
                Some((code, message)) => core.fatal(code, message),
                None => core.closing = true,
            }
        }
    }
    stop_if_closing(act, ctx);
}

pub(super) fn stop_if_closing<A: SessionActor>(act: &mut A, ctx: &mut Context<A>) {
    if act.core().closing {
        ctx.stop();
    }
}

fn on_frame<A: SessionActor>(act: &mut A, frame: ClientFrame, ctx: &mut Context<A>) {
    let core = act.core();
    match frame {
        ClientFrame::Ping => core.push(&ServerFrame::Pong),
        ClientFrame::Hello(_) => core.reject(ErrorCode::ALREADY_LOGGED_IN, "this connection is already logged in", None),
        ClientFrame::Send(m) => {
            let max = core.ctx.config.max_message_len as usize;
            if m.body.len() > max {
                let len = m.body.len();
                core.reject(ErrorCode::MESSAGE_TOO_LARGE, format!("message body of {len} bytes exceeds the maximum of {max}"), Some(m.client_msg_id));
                return;
            }
            act.on_send(m, ctx)
        }
        ClientFrame::Ack { conversation, seq } => match core.entry(conversation) {
            Ok(e) => core.ctx.log.ack(conversation, core.me, seq.min(e.last_seq)),
            Err((code, message)) => core.reject(code, message, None),
        },
        ClientFrame::Fetch { conversation, after_seq, limit } => {
            if let Err((code, message)) = core.entry(conversation) {
                return core.reject(code, message, None);
            }
            let log = core.ctx.log.clone();
            let limit = limit.clamp(1, MAX_FETCH) as usize;
            // Leave room for the frame around the bodies.
            let budget = (core.ctx.config.max_frame_len as usize).saturating_sub(1024) / 2;
            let read = tokio::task::spawn_blocking(move || log.read(conversation, after_seq, limit, budget));
            ctx.spawn(read.into_actor(act).map(move |res, act, ctx| {
                let core = act.core();
                match res {
                    Ok(Ok(messages)) => core.push(&ServerFrame::History { conversation, messages }),
                    Ok(Err(e)) => core.reject(ErrorCode::STORAGE_UNAVAILABLE, format!("cannot read history: {e}"), None),
                    Err(e) => core.reject(ErrorCode::INTERNAL, format!("history read failed: {e}"), None),
                }
                stop_if_closing(act, ctx);
            }));
        }
        ClientFrame::Close { conversation } => {
            let router = core.ctx.routers.get(core.tenant, &core.ctx);
            let close = router.send(CloseConversation { conversation, by: Some(core.me) });
            reply_errors(act, close, ctx);
        }
        other => super::tools::on_tool_frame(act, other, ctx),
    }
}

/// Awaits a router request and reports its error, if any, to the client.
pub(super) fn reply_errors<A, F>(act: &mut A, request: F, ctx: &mut Context<A>)
where
    A: SessionActor,
    F: std::future::Future<Output = Result<Result<(), RouteError>, actix::MailboxError>> + 'static,
{
    ctx.spawn(request.into_actor(act).map(|res, act, ctx| {
        if let Err(e) = res.unwrap_or(Err(RouteError::Unavailable)) {
            let code = route_error_code(&e);
            act.core().reject(code, e.to_string(), None);
        }
        stop_if_closing(act, ctx);
    }));
}

/// The protocol code for a routing error (the one place they are mapped).
pub fn route_error_code(e: &RouteError) -> ErrorCode {
    match e {
        RouteError::ConversationNotFound { .. } => ErrorCode::CONVERSATION_NOT_FOUND,
        RouteError::Forbidden { .. } => ErrorCode::FORBIDDEN,
        RouteError::Storage { .. } => ErrorCode::STORAGE_UNAVAILABLE,
        RouteError::Unavailable => ErrorCode::SHUTTING_DOWN,
        RouteError::QueueFull => ErrorCode::QUEUE_FULL,
        RouteError::Refused { .. } => ErrorCode::INVALID_REQUEST,
    }
}

/// Submits a message to the log. The answer comes back as an event, in seq order with
/// the conversation's other messages: `Deliver` from this connection (answered with
/// `Accepted`), or `Answer` for a duplicate or a failure. Nothing per message waits in
/// the actor.
pub fn append<A: SessionActor>(act: &mut A, conversation: ConversationId, msg: SendMessage, _ctx: &mut Context<A>) {
    let core = act.core();
    core.subs.subscribe(conversation, core.subs.delivered(conversation).unwrap_or(0), 0);
    let client_msg_id = msg.client_msg_id;
    core.in_flight.push((conversation, client_msg_id));
    core.ctx.log.submit(AppendRequest {
        conversation,
        sender: core.me,
        client_msg_id,
        body: msg.body,
        sent_at_ms: crate::context::now_ms(),
        origin: core.conn,
        received_at: Instant::now(),
        webhook: core.ctx.directory.webhook(core.tenant).map(|_| core.tenant),
    });
}

impl SessionCore {
    /// This connection's own message is durable (and was just answered with
    /// `Accepted`): the bot answers a visitor it is in charge of; an agent's first reply
    /// is recorded for reports.
    fn after_own_message(&mut self, message: &ChatMessage) {
        let Some(rec) = self.ctx.directory.conversation(message.conversation).map(|e| e.record) else { return };
        let router = || self.ctx.routers.get(self.tenant, &self.ctx);
        match self.me {
            Participant::Visitor(_) if rec.state == ConversationState::Bot => router().do_send(BotTurn {
                conversation: message.conversation,
                seq: message.seq,
                input: BotInput::Text(message.body.clone()),
            }),
            Participant::Agent(a) if rec.agent == Some(a) && rec.first_agent_reply_at_ms.is_none() => {
                router().do_send(AgentReplied { conversation: message.conversation, agent: a, at_ms: message.sent_at_ms })
            }
            _ => {}
        }
    }
}

/// Handles an event from the dispatcher, a router or the node.
pub fn on_event<A: SessionActor>(act: &mut A, event: SessionEvent, ctx: &mut Context<A>) {
    let core = act.core();
    match event {
        SessionEvent::Deliver { message, origin, frame, received_at } => {
            if !core.subs.contains(message.conversation) {
                // First news of this conversation on this connection (e.g. a message
                // that beat the router's assignment notice): announce it first.
                if let Some(e) = core.ctx.directory.conversation(message.conversation) {
                    core.push(&ServerFrame::Conversation(e.update()));
                }
            }
            match core.subs.on_live(message.conversation, message.seq) {
                Live::Send if origin == core.conn => {
                    core.take_in_flight(message.conversation, message.client_msg_id);
                    core.after_own_message(&message);
                    let accepted = ServerFrame::Accepted {
                        client_msg_id: message.client_msg_id,
                        conversation: message.conversation,
                        seq: message.seq,
                    };
                    core.push(&accepted);
                    ::metrics::histogram!(metrics::ACCEPT_SECONDS).record(received_at.elapsed().as_secs_f64());
                }
                Live::Send => {
                    core.push_bytes(frame);
                    ::metrics::counter!(metrics::MESSAGES_DELIVERED).increment(1);
                }
                Live::Skip => {}
                Live::Fill { after } => fill(act, message.conversation, after, ctx),
            }
        }
        SessionEvent::Conversation(update) => {
            if update.state == switchboard_protocol::ConversationState::Closed {
                core.push(&ServerFrame::Conversation(update.clone()));
                core.subs.unsubscribe(update.conversation);
            } else if core.subs.contains(update.conversation) {
                let lost = matches!(core.me, Participant::Agent(_)) && update.agent.map(Participant::Agent) != Some(core.me);
                let conversation = update.conversation;
                core.push(&ServerFrame::Conversation(update));
                if lost {
                    // transferred (or requeued) away from this agent
                    core.subs.unsubscribe(conversation);
                }
            } else if matches!(core.me, Participant::Agent(_)) && update.agent.map(Participant::Agent) != Some(core.me) {
                // A queue notice for a member of a manual group: nothing to follow yet.
                core.push(&ServerFrame::Conversation(update));
            } else {
                // follow() announces it, then catches up.
                follow(act, vec![update], ctx);
            }
        }
        SessionEvent::Answer { conversation, client_msg_id, result } => match result {
            Ok(seq) => {
                ::metrics::counter!(metrics::MESSAGES_DUPLICATE).increment(1);
                // Unless a catch-up read on this connection already answered it.
                if core.take_in_flight(conversation, client_msg_id) {
                    core.push(&ServerFrame::Accepted { client_msg_id, conversation, seq });
                }
            }
            Err(reason) => {
                core.take_in_flight(conversation, client_msg_id);
                core.reject(
                    ErrorCode::STORAGE_UNAVAILABLE,
                    format!("message not accepted ({reason}); retry with the same client_msg_id"),
                    Some(client_msg_id),
                );
            }
        },
        SessionEvent::RatingRequested { conversation } => core.push(&ServerFrame::RatingRequested { conversation }),
        SessionEvent::Notes { conversation, notes } => {
            // A conversation not followed yet gets all its notes when it is followed.
            if matches!(core.me, Participant::Agent(_)) && core.subs.contains(conversation) {
                core.push(&ServerFrame::Notes { conversation, notes });
            }
        }
        SessionEvent::Queue { conversation, position, estimated_wait_secs } => {
            if core.subs.contains(conversation) {
                core.push(&ServerFrame::QueueStatus { conversation, position, estimated_wait_secs });
            }
        }
        SessionEvent::GoAway { reason } => {
            core.push(&ServerFrame::GoAway { reason });
            core.out.finish(None);
            core.closing = true;
        }
    }
    stop_if_closing(act, ctx);
}

/// Starts following conversations: tells the client about each, then delivers what it
/// is missing (after its stated cursor, else after the identity's acknowledged one).
/// Runs with the mailbox paused so no live delivery races the set-up.
pub fn follow<A: SessionActor>(act: &mut A, updates: Vec<ConversationUpdate>, ctx: &mut Context<A>) {
    let core = act.core();
    for u in &updates {
        core.push(&ServerFrame::Conversation(u.clone()));
    }
    let resume = core.resume.clone();
    let log = core.ctx.log.clone();
    let store = core.ctx.store.clone();
    let directory = core.ctx.directory.clone();
    let (me, tenant) = (core.me, core.tenant);
    // Cursors (and, for an agent, the conversation's notes and who the visitor is), off
    // the actor thread.
    let read = tokio::task::spawn_blocking(move || {
        updates
            .into_iter()
            .map(|u| {
                let from = match resume.iter().find(|c| c.conversation == u.conversation) {
                    Some(c) => Ok(c.seq),
                    None => log.cursor(u.conversation, me),
                };
                let agent_view = match me {
                    Participant::Agent(_) => {
                        let notes = store.notes_of(tenant, u.conversation).unwrap_or_default();
                        let profile = directory.profile(tenant, u.visitor);
                        let context = VisitorContext {
                            conversation: u.conversation,
                            visitor: u.visitor,
                            vip: profile.as_ref().is_some_and(|p| p.vip),
                            attributes: profile.map(|p| p.attributes.into_iter().collect()).unwrap_or_default(),
                            trail: store.trail(tenant, u.visitor, 20).unwrap_or_default(),
                            past_conversations: store
                                .visitor_conversations(tenant, u.visitor, 11)
                                .unwrap_or_default()
                                .into_iter()
                                .filter(|c| *c != u.conversation)
                                .take(10)
                                .collect(),
                        };
                        Some((notes, context))
                    }
                    _ => None,
                };
                (u, from, agent_view)
            })
            .collect::<Vec<_>>()
    });
    ctx.wait(read.into_actor(act).map(|res, act, ctx| {
        let Ok(list) = res else {
            act.core().fatal(ErrorCode::INTERNAL, "cannot read cursors");
            return stop_if_closing(act, ctx);
        };
        for (update, from, agent_view) in list {
            let from = match from {
                Ok(seq) => seq,
                Err(e) => {
                    act.core().fatal(ErrorCode::STORAGE_UNAVAILABLE, format!("cannot read cursor: {e}"));
                    break;
                }
            };
            if let Some((notes, context)) = agent_view {
                act.core().push(&ServerFrame::VisitorContext(context));
                if !notes.is_empty() {
                    act.core().push(&ServerFrame::Notes { conversation: update.conversation, notes });
                }
            }
            if let Some(after) = act.core().subs.subscribe(update.conversation, from, update.last_seq) {
                fill(act, update.conversation, after, ctx);
            }
        }
        stop_if_closing(act, ctx);
    }));
}

/// Reads messages after `after` from the durable log and delivers them, in chunks,
/// pacing itself by the outbound queue so catch-up never overflows it.
pub fn fill<A: SessionActor>(act: &mut A, conversation: ConversationId, after: u64, ctx: &mut Context<A>) {
    let core = act.core();
    let log = core.ctx.log.clone();
    let out = core.out.clone();
    let read = async move {
        out.wait_uncongested().await;
        tokio::task::spawn_blocking(move || log.read(conversation, after, FILL_BATCH, FILL_BYTES)).await
    };
    ctx.spawn(read.into_actor(act).map(move |res, act, ctx| {
        let core = act.core();
        match res {
            Ok(Ok(messages)) => {
                let (send, more) = core.subs.on_filled(conversation, messages);
                for m in send {
                    core.deliver(m);
                }
                if let (Some(after), false) = (more, core.closing) {
                    fill(act, conversation, after, ctx);
                }
            }
            Ok(Err(e)) => {
                core.subs.fill_failed(conversation);
                core.fatal(ErrorCode::STORAGE_UNAVAILABLE, format!("cannot read conversation {conversation}: {e}; reconnect and resume"));
            }
            Err(e) => {
                core.subs.fill_failed(conversation);
                core.fatal(ErrorCode::INTERNAL, format!("catch-up read failed: {e}"));
            }
        }
        stop_if_closing(act, ctx);
    }));
}
