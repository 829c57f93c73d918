//! `AgentSeat`: one connection of an agent. The seat counts as online while any of
//! the agent's connections is; its tenant's router decides what it gets.

use super::core::{self, SessionActor, SessionCore};
use super::{FromReader, SessionEvent};
use crate::routing::tenant_router::{SeatOffline, SeatOnline};
use actix::prelude::*;
use switchboard_protocol::{AgentId, ErrorCode, SendMessage};

/// An agent's connection.
pub struct AgentSeat {
    core: SessionCore,
    agent: AgentId,
}

impl AgentSeat {
    /// A seat for `agent` over the connection in `core`.
    pub fn new(core: SessionCore, agent: AgentId) -> Self {
        AgentSeat { core, agent }
    }
}

impl Actor for AgentSeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        core::register(self, ctx);
        let router = self.core.ctx.routers.get(self.core.tenant, &self.core.ctx);
        let online = router.send(SeatOnline { agent: self.agent });
        ctx.wait(online.into_actor(self).map(|res, act, ctx| match res {
            Ok(updates) => core::follow(act, updates, ctx),
            Err(_) => {
                act.core.fatal(ErrorCode::SHUTTING_DOWN, "router unavailable");
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.core.unregister();
        let router = self.core.ctx.routers.get(self.core.tenant, &self.core.ctx);
        router.do_send(SeatOffline { agent: self.agent });
    }
}

impl SessionActor for AgentSeat {
    fn core(&mut self) -> &mut SessionCore {
        &mut self.core
    }

    /// An agent writes only to conversations assigned to it.
    fn on_send(&mut self, msg: SendMessage, ctx: &mut Context<Self>) {
        let Some(conversation) = msg.conversation else {
            return self.core.reject(ErrorCode::INVALID_REQUEST, "an agent must name the conversation", Some(msg.client_msg_id));
        };
        match self.core.entry(conversation) {
            Ok(_) => core::append(self, conversation, msg, ctx),
            Err((code, message)) => self.core.reject(code, message, Some(msg.client_msg_id)),
        }
    }
}

impl Handler<FromReader> for AgentSeat {
    type Result = ();

    fn handle(&mut self, msg: FromReader, ctx: &mut Context<Self>) {
        core::on_reader(self, msg, ctx)
    }
}

impl Handler<SessionEvent> for AgentSeat {
    type Result = ();

    fn handle(&mut self, msg: SessionEvent, ctx: &mut Context<Self>) {
        core::on_event(self, msg, ctx)
    }
}
