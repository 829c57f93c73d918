//! `VisitorSession`: one connection (one device) of a visitor.

use super::core::{self, SessionActor, SessionCore};
use super::{FromReader, SessionEvent};
use crate::routing::tenant_router::OpenConversation;
use crate::routing::RouteError;
use actix::prelude::*;
use switchboard_protocol::{ErrorCode, SendMessage, VisitorId};

/// A visitor's connection.
pub struct VisitorSession {
    core: SessionCore,
    visitor: VisitorId,
}

impl VisitorSession {
    /// A session for `visitor` over the connection in `core`.
    pub fn new(core: SessionCore, visitor: VisitorId) -> Self {
        VisitorSession { core, visitor }
    }
}

impl Actor for VisitorSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        core::register(self, ctx);
        let open = self.core.ctx.directory.open_conversation_of(self.core.tenant, self.visitor);
        let updates = open.and_then(|c| self.core.ctx.directory.conversation(c)).map(|e| e.update());
        core::follow(self, updates.into_iter().collect(), ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.core.unregister();
    }
}

impl SessionActor for VisitorSession {
    fn core(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    /// A visitor writes to its open conversation; its first message opens one.
    fn on_send(&mut self, msg: SendMessage, ctx: &mut Context<Self>) {
        let target = msg.conversation.or_else(|| self.core.ctx.directory.open_conversation_of(self.core.tenant, self.visitor));
        if let Some(conversation) = target {
            return match self.core.entry(conversation) {
                Ok(_) => core::append(self, conversation, msg, ctx),
                Err((code, message)) => self.core.reject(code, message, Some(msg.client_msg_id)),
            };
        }
        // Open one. The mailbox waits meanwhile, so this connection's messages keep
        // their order.
        let router = self.core.ctx.routers.get(self.core.tenant, &self.core.ctx);
        let open = router.send(OpenConversation { visitor: self.visitor, group: None });
        ctx.wait(open.into_actor(self).map(move |res, act, ctx| match res.unwrap_or(Err(RouteError::Unavailable)) {
            Ok(conversation) => core::append(act, conversation, msg, ctx),
            Err(RouteError::QueueFull) => act.core.reject(ErrorCode::QUEUE_FULL, RouteError::QueueFull.to_string(), Some(msg.client_msg_id)),
            Err(e) => act.core.reject(
                ErrorCode::STORAGE_UNAVAILABLE,
                format!("cannot open a conversation ({e}); retry with the same client_msg_id"),
                Some(msg.client_msg_id),
            ),
        }));
    }
}

impl Handler<FromReader> for VisitorSession {
    type Result = ();

    fn handle(&mut self, msg: FromReader, ctx: &mut Context<Self>) {
        core::on_reader(self, msg, ctx)
    }
}

impl Handler<SessionEvent> for VisitorSession {
    type Result = ();

    fn handle(&mut self, msg: SessionEvent, ctx: &mut Context<Self>) {
        core::on_event(self, msg, ctx)
    }
}
