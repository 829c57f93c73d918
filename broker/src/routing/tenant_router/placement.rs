//! Where a new (or reopened) conversation goes: a returning visitor's last agent,
//! the group's queue within its cap, or the overflow group.

use super::*;
use crate::service::placement::{self as rules, Sticky};

impl TenantRouter {
    /// A visitor writing again soon after a close reopens that conversation (same id,
    /// history and seqs) instead of starting a duplicate.
    pub(super) fn reopen(&mut self, visitor: VisitorId, ctx: &mut Context<Self>) -> Option<ResponseActFuture<Self, Result<ConversationId, RouteError>>> {
        let window_ms = self.ctx.config.reopen_window_secs as u64 * 1000;
        let latest = self.latest_closed.get(&visitor).and_then(|c| self.recently_closed.get(c));
        let id = rules::reopenable(latest, visitor, self.now(), window_ms)?;
        let mut rec = self.recently_closed.remove(&id)?;
        self.latest_closed.remove(&visitor);
        let ticket = self.next_ticket(visitor);
        let now = self.now();
        rec.closed_at_ms = None;
        rec.queued_at_ms = Some(now);
        rec.first_agent_reply_at_ms = None;
        let (group, placement) = match self.place_in(rec.id, visitor, rec.group, ticket, ctx) {
            Ok(x) => x,
            Err(e) => return Some(Box::pin(fut::ready(Err(e)))),
        };
        rec.group = group;
        rec.queue_ticket = ticket;
        match placement {
            Placement::Assigned(agent) => {
                rec.state = ConversationState::Assigned;
                rec.agent = Some(agent);
                rec.assigned_at_ms = Some(now);
            }
            Placement::Queued { .. } => {
                rec.state = ConversationState::Queued;
                rec.agent = None;
            }
        }
        let id = rec.id;
        let event = if rec.state == ConversationState::Assigned { "conversation.assigned" } else { "conversation.queued" };
        let written = self.persist(rec, &["conversation.reopened", event], ctx);
        Some(Box::pin(async move { written.await.unwrap_or(Err(RouteError::Unavailable)).map(|_| id) }.into_actor(self)))
    }

    /// The placement settings of `group` (all off for a group without a record).
    pub(super) fn rules(&self, group: GroupId) -> rules::GroupRules {
        self.ctx.directory.group(self.tenant, group).map(|g| rules::GroupRules::from(&g)).unwrap_or_default()
    }

    /// Places a conversation in `group`, or in its overflow group when the group would
    /// queue it past `max_queue`; refuses when there is no room in either.
    pub(super) fn place_in(
        &mut self,
        conversation: ConversationId,
        visitor: VisitorId,
        group: GroupId,
        ticket: i64,
        ctx: &mut Context<Self>,
    ) -> Result<(GroupId, Placement), RouteError> {
        // A returning visitor goes back to their last agent (or waits for them a while).
        let group_rules = self.rules(group);
        let forgotten = self.now().saturating_sub(crate::routing::directory::RECENTLY_CLOSED_MS);
        let last_agent = self.last_agent.get(&visitor).filter(|(_, at)| *at >= forgotten).map(|(agent, _)| *agent);
        let has_room = last_agent.is_some_and(|a| self.pool.can_take(a, group));
        if let Sticky::LastAgent { agent, hold_secs } = rules::sticky(last_agent, has_room, group_rules) {
            let placement = self.pool.place_sticky(conversation, group, ticket, agent, hold_secs > 0);
            if let Placement::Queued { .. } = placement {
                self.after(std::time::Duration::from_secs(hold_secs as u64), Timer::StickyHold { conversation }, ctx);
            }
            return Ok((group, placement));
        }
        let pool = &self.pool;
        let chosen = rules::group_with_room(group, |g| Some(self.rules(g)), |g| pool.queue_len_of(g), |g| pool.pick(g).is_some());
        if let Some(group) = chosen {
            return Ok((group, self.pool.place(conversation, group, ticket)));
        }
        ::metrics::counter!(metrics::QUEUE_FULL).increment(1);
        Err(RouteError::QueueFull)
    }
}
