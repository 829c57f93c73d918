//! The router's clocks: the grace period of an absent agent, auto-transfer of an
//! unanswered chat, overflow after a long wait, business hours.

use super::*;
use crate::service::hours::{is_open, next_change_ms};

impl TenantRouter {
    /// If the conversation's group overflows by waiting time, moves it on once it has
    /// waited that long.
    pub(super) fn watch_wait(&self, rec: &ConversationRecord, ctx: &mut Context<Self>) {
        let Some(g) = self.ctx.directory.group(self.tenant, rec.group) else { return };
        let (Some(to), secs) = (g.overflow_group, g.overflow_after_secs) else { return };
        if secs == 0 {
            return;
        }
        let (conversation, from, queued_at) = (rec.id, rec.group, rec.queued_at_ms);
        ctx.run_later(std::time::Duration::from_secs(secs as u64), move |act, ctx| {
            let Some(mut rec) = act.records.get(&conversation).copied() else { return };
            if rec.state != ConversationState::Queued || rec.group != from || rec.queued_at_ms != queued_at {
                return;
            }
            let (moved, drained) = act.pool.move_queued(conversation, to);
            if moved {
                tracing::info!(tenant = %act.tenant, %conversation, from = %from, to = %to, "waited too long: overflowed");
                rec.group = to;
                act.persist(rec, &["conversation.queued"], ctx);
                act.apply(drained, ctx);
            }
        });
    }

    /// If the conversation's group auto-transfers, checks after its delay that the
    /// agent replied.
    pub(super) fn watch_reply(&self, rec: &ConversationRecord, ctx: &mut Context<Self>) {
        let secs = self.ctx.directory.group(self.tenant, rec.group).map(|g| g.auto_transfer_secs).unwrap_or(0);
        if secs == 0 {
            return;
        }
        let (conversation, assigned_at) = (rec.id, rec.assigned_at_ms);
        ctx.run_later(std::time::Duration::from_secs(secs as u64), move |act, ctx| act.check_reply(conversation, assigned_at, ctx));
    }

    /// The agent had the whole delay to reply: move the chat to a member with room
    /// (or, if nobody has room, look again after another delay).
    pub(super) fn check_reply(&mut self, conversation: ConversationId, assigned_at: Option<u64>, ctx: &mut Context<Self>) {
        let Some(mut rec) = self.records.get(&conversation).copied() else { return };
        if rec.state != ConversationState::Assigned || rec.assigned_at_ms != assigned_at || rec.first_agent_reply_at_ms.is_some() {
            return;
        }
        let previous = rec.agent;
        match self.pool.reassign_away(conversation) {
            Some(next) => {
                tracing::info!(tenant = %self.tenant, %conversation, from = ?previous, to = %next, "no reply in time: chat transferred");
                ::metrics::counter!(metrics::AUTO_TRANSFERS).increment(1);
                rec.agent = Some(next);
                rec.assigned_at_ms = Some(now_ms());
                self.write_record(rec, true, &["conversation.transferred"], previous, ctx);
                let drained = self.pool.drain();
                self.apply(drained, ctx);
            }
            None => self.watch_reply(&rec, ctx),
        }
    }

    /// Opens or closes a group by its business hours now, and again at each change.
    pub(super) fn follow_hours(&mut self, group: GroupId, hours: Option<BusinessHours>, ctx: &mut Context<Self>) {
        let generation = self.hours_generation.entry(group).or_default();
        *generation += 1;
        let generation = *generation;
        let now = now_ms();
        let open = hours.as_ref().is_none_or(|h| is_open(h, now));
        let drained = self.pool.set_open(group, open);
        self.apply(drained, ctx);
        let Some(next) = hours.as_ref().and_then(|h| next_change_ms(h, now)) else { return };
        let delay = std::time::Duration::from_millis(next.saturating_sub(now) + 100);
        ctx.run_later(delay, move |act, ctx| {
            if act.hours_generation.get(&group) == Some(&generation) {
                act.follow_hours(group, hours, ctx);
            }
        });
    }

    /// Outside business hours: tells the visitor the chat waits (leave a message).
    pub(super) fn after_hours_notice(&mut self, conversation: ConversationId, group: GroupId, ctx: &mut Context<Self>) {
        if !self.pool.is_closed(group) {
            return;
        }
        let opens = self
            .ctx
            .directory
            .group(self.tenant, group)
            .and_then(|g| g.hours)
            .and_then(|h| next_change_ms(&h, now_ms()))
            .map(|t| {
                let mins = t.saturating_sub(now_ms()) / 60_000;
                format!(" We open again in {}h{:02}m.", mins / 60, mins % 60)
            })
            .unwrap_or_default();
        self.bot_says(
            conversation,
            format!("We are closed right now. Leave your message here and an agent will answer when we open.{opens} 当前非工作时间，请留言。"),
            ctx,
        );
    }

    pub(super) fn start_grace(&mut self, agent: AgentId, epoch: u64, ctx: &mut Context<Self>) {
        let grace = std::time::Duration::from_secs(self.ctx.config.agent_grace_secs as u64);
        ctx.run_later(grace, move |act, ctx| act.grace_expired(agent, epoch, ctx));
    }

    /// The agent has been away for the whole grace period of this absence: its chats
    /// go back to the head of the queue and to whoever has room.
    pub(super) fn grace_expired(&mut self, agent: AgentId, epoch: u64, ctx: &mut Context<Self>) {
        if self.pool.offline_epoch(agent) != Some(epoch) {
            return; // came back (and maybe left again: that absence has its own timer)
        }
        let requeued = self.pool.requeue_at_head(agent);
        if !requeued.is_empty() {
            tracing::info!(tenant = %self.tenant, %agent, chats = requeued.len(), "agent away past the grace period: chats requeued");
        }
        for (conversation, ticket) in requeued {
            let Some(mut rec) = self.records.get(&conversation).copied() else { continue };
            rec.agent = None;
            rec.state = ConversationState::Queued;
            rec.queue_ticket = ticket;
            self.persist(rec, &["conversation.queued"], ctx);
        }
        let drained = self.pool.drain();
        self.apply(drained, ctx);
    }

    /// Closes conversations without a message for `auto_close_secs`; runs every tenth
    /// of that period (at least every second).
    pub(super) fn sweep_inactive(&mut self, ctx: &mut Context<Self>) {
        let limit_ms = self.ctx.config.auto_close_secs as u64 * 1000;
        if limit_ms == 0 {
            return;
        }
        let now = now_ms();
        let stale: Vec<ConversationId> = self
            .records
            .keys()
            .filter(|c| self.ctx.directory.conversation(**c).is_some_and(|e| now.saturating_sub(e.last_activity_ms) >= limit_ms))
            .copied()
            .collect();
        for conversation in stale {
            let Some(mut rec) = self.records.get(&conversation).copied() else { continue };
            tracing::debug!(tenant = %self.tenant, %conversation, "inactive: auto-closed");
            rec.state = ConversationState::Closed;
            rec.closed_at_ms = Some(now);
            let freed = self.pool.release(conversation);
            self.persist(rec, &["conversation.closed"], ctx);
            self.apply(freed, ctx);
        }
        let every = std::time::Duration::from_millis((limit_ms / 10).clamp(1000, 60_000));
        ctx.run_later(every, |act, ctx| act.sweep_inactive(ctx));
    }
}
