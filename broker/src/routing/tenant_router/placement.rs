//! Where a new (or reopened) conversation goes: a returning visitor's last agent,
//! the group's queue within its cap, or the overflow group.

use super::*;

impl TenantRouter {
    /// A visitor writing again soon after a close reopens that conversation (same id,
    /// history and seqs) instead of starting a duplicate.
    pub(super) fn reopen(&mut self, visitor: VisitorId, ctx: &mut Context<Self>) -> Option<ResponseActFuture<Self, Result<ConversationId, RouteError>>> {
        let window_ms = self.ctx.config.reopen_window_secs as u64 * 1000;
        let since = now_ms().saturating_sub(window_ms);
        let mut rec = self
            .recently_closed
            .values()
            .filter(|r| window_ms > 0 && r.visitor == visitor && r.closed_at_ms.unwrap_or(0) >= since)
            .max_by_key(|r| r.closed_at_ms)
            .copied()?;
        self.recently_closed.remove(&rec.id);
        let ticket = self.next_ticket(visitor);
        let now = now_ms();
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
        if let Some(agent) = self.last_agent.get(&visitor).copied() {
            let wait = self.ctx.directory.group(self.tenant, group).map_or(0, |g| g.sticky_wait_secs);
            if self.pool.can_take(agent, group) || wait > 0 {
                let placement = self.pool.place_sticky(conversation, group, ticket, agent, wait > 0);
                if let Placement::Queued { .. } = placement {
                    ctx.run_later(std::time::Duration::from_secs(wait as u64), move |act, ctx| {
                        let drained = act.pool.release_hold(conversation);
                        act.apply(drained, ctx);
                    });
                }
                return Ok((group, placement));
            }
        }
        let mut group = group;
        for _ in 0..2 {
            let rec = self.ctx.directory.group(self.tenant, group);
            let limit = rec.as_ref().map_or(0, |g| g.max_queue) as usize;
            let would_queue = self.pool.queue_len_of(group) > 0 || self.pool.pick(group).is_none();
            if limit == 0 || !would_queue || self.pool.queue_len_of(group) < limit {
                return Ok((group, self.pool.place(conversation, group, ticket)));
            }
            match rec.and_then(|g| g.overflow_group).filter(|g| *g != group) {
                Some(next) => group = next,
                None => break,
            }
        }
        ::metrics::counter!(metrics::QUEUE_FULL).increment(1);
        Err(RouteError::QueueFull)
    }
}
