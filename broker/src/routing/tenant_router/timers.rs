//! The router's clocks: the grace period of an absent agent, auto-transfer of an
//! unanswered chat, overflow after a long wait, a sticky agent's hold, business
//! hours, the inactivity sweep. Every timer is a [`Timer`] due at a time on the
//! node's [`Clock`](crate::context::Clock), kept in one [`Deadlines`] queue; one
//! wake-up is armed for the earliest. A test on a manual clock advances it and sends
//! [`Tick`].

use super::*;
use crate::service::hours::{is_open, next_change_ms};
use crate::service::placement as rules;

/// Something the router must do at a time.
#[derive(Debug)]
pub(super) enum Timer {
    /// A queued conversation waited `overflow_after_secs` in `from`.
    Overflow { conversation: ConversationId, from: GroupId, queued_at: Option<u64> },
    /// An assigned agent had `auto_transfer_secs` to reply.
    CheckReply { conversation: ConversationId, assigned_at: Option<u64> },
    /// A group's business hours open or close.
    Hours { group: GroupId, generation: u64, hours: Option<BusinessHours> },
    /// An agent's absence reached the grace period.
    Grace { agent: AgentId, epoch: u64 },
    /// A returning visitor waited `sticky_wait_secs` for their last agent.
    StickyHold { conversation: ConversationId },
    /// Time to close inactive conversations.
    Sweep,
}

/// Fires every timer due on the router's clock (tests on a manual clock send it after
/// advancing the clock).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Tick;

impl Handler<Tick> for TenantRouter {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.fire_due(ctx);
    }
}

impl TenantRouter {
    /// Now, on the node's clock.
    pub(super) fn now(&self) -> u64 {
        self.ctx.clock.now_ms()
    }

    /// Schedules `timer` after `delay` on the router's clock.
    pub(super) fn after(&mut self, delay: std::time::Duration, timer: Timer, ctx: &mut Context<Self>) {
        let due = self.now().saturating_add(delay.as_millis() as u64);
        self.timers.schedule(due, timer);
        self.arm(ctx);
    }

    /// Makes sure a wake-up is armed no later than the earliest deadline.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.timers.next_due() else { return };
        if let Some((armed, handle)) = self.wake {
            // An armed wake-up still ahead and no later than `next` will do. One whose
            // deadline has passed (its timers were fired by a `Tick`) is replaced, so it
            // cannot hold back a nearer deadline.
            if armed <= next && armed > self.now() {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = std::time::Duration::from_millis(next.saturating_sub(self.now()));
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.fire_due(ctx);
        });
        self.wake = Some((next, handle));
    }

    /// Runs every timer due now, oldest deadline first, then arms the next wake-up.
    pub(super) fn fire_due(&mut self, ctx: &mut Context<Self>) {
        for timer in self.timers.take_due(self.now()) {
            match timer {
                Timer::Overflow { conversation, from, queued_at } => self.overflow(conversation, from, queued_at, ctx),
                Timer::CheckReply { conversation, assigned_at } => self.check_reply(conversation, assigned_at, ctx),
                Timer::Hours { group, generation, hours } => {
                    if self.hours_generation.get(&group) == Some(&generation) {
                        self.follow_hours(group, hours, ctx);
                    }
                }
                Timer::Grace { agent, epoch } => self.grace_expired(agent, epoch, ctx),
                Timer::StickyHold { conversation } => {
                    let drained = self.pool.release_hold(conversation);
                    self.apply(drained, ctx);
                }
                Timer::Sweep => self.sweep_inactive(ctx),
            }
        }
        self.arm(ctx);
    }

    /// If the conversation's group overflows by waiting time, moves it on once it has
    /// waited that long.
    pub(super) fn watch_wait(&mut self, rec: &ConversationRecord, ctx: &mut Context<Self>) {
        let Some(secs) = rules::overflow_wait_secs(self.rules(rec.group)) else { return };
        let timer = Timer::Overflow { conversation: rec.id, from: rec.group, queued_at: rec.queued_at_ms };
        self.after(std::time::Duration::from_secs(secs as u64), timer, ctx);
    }

    /// A conversation still queued in `from` since `queued_at` moves to the overflow group.
    fn overflow(&mut self, conversation: ConversationId, from: GroupId, queued_at: Option<u64>, ctx: &mut Context<Self>) {
        let Some(mut rec) = self.records.get(&conversation).copied() else { return };
        let Some(to) = rules::overflow_due(&rec, from, queued_at, self.rules(from)) else { return };
        let (moved, drained) = self.pool.move_queued(conversation, to);
        if moved {
            tracing::info!(tenant = %self.tenant, %conversation, from = %from, to = %to, "waited too long: overflowed");
            rec.group = to;
            self.persist(rec, &["conversation.queued"], ctx);
            self.apply(drained, ctx);
        }
    }

    /// If the conversation's group auto-transfers, checks after its delay that the
    /// agent replied.
    pub(super) fn watch_reply(&mut self, rec: &ConversationRecord, ctx: &mut Context<Self>) {
        let secs = self.ctx.directory.group(self.tenant, rec.group).map(|g| g.auto_transfer_secs).unwrap_or(0);
        if secs == 0 {
            return;
        }
        let timer = Timer::CheckReply { conversation: rec.id, assigned_at: rec.assigned_at_ms };
        self.after(std::time::Duration::from_secs(secs as u64), timer, ctx);
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
                rec.assigned_at_ms = Some(self.now());
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
        let now = self.now();
        let open = hours.as_ref().is_none_or(|h| is_open(h, now));
        let drained = self.pool.set_open(group, open);
        self.apply(drained, ctx);
        let Some(next) = hours.as_ref().and_then(|h| next_change_ms(h, now)) else { return };
        let delay = std::time::Duration::from_millis(next.saturating_sub(now) + 100);
        self.after(delay, Timer::Hours { group, generation, hours }, ctx);
    }

    /// Outside business hours: tells the visitor the chat waits (leave a message).
    pub(super) fn after_hours_notice(&mut self, conversation: ConversationId, group: GroupId, ctx: &mut Context<Self>) {
        if !self.pool.is_closed(group) {
            return;
        }
        let now = self.now();
        let opens = self
            .ctx
            .directory
            .group(self.tenant, group)
            .and_then(|g| g.hours)
            .and_then(|h| next_change_ms(&h, now))
            .map(|t| {
                let mins = t.saturating_sub(now) / 60_000;
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
        self.after(grace, Timer::Grace { agent, epoch }, ctx);
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
        let now = self.now();
        let directory = &self.ctx.directory;
        let activity = self.records.keys().filter_map(|c| directory.conversation(*c).map(|e| (*c, e.last_activity_ms)));
        let stale = rules::inactive(now, limit_ms, activity);
        for conversation in stale {
            let Some(mut rec) = self.records.get(&conversation).copied() else { continue };
            tracing::debug!(tenant = %self.tenant, %conversation, "inactive: auto-closed");
            rec.state = ConversationState::Closed;
            rec.closed_at_ms = Some(now);
            let freed = self.pool.release(conversation);
            self.persist(rec, &["conversation.closed"], ctx);
            self.apply(freed, ctx);
        }
        let every = std::time::Duration::from_millis(rules::sweep_every_ms(limit_ms));
        self.after(every, Timer::Sweep, ctx);
    }
}
