//! The placement rules around the pool: a returning visitor's last agent (sticky),
//! the queue cap and its overflow group, overflow after a long wait, reopening a
//! conversation closed moments ago, and closing inactive ones. The router asks
//! these, then places in the [`Pool`](super::assignment::Pool).

use switchboard_protocol::{AgentId, ConversationId, ConversationState, GroupId, VisitorId};
use switchboard_raft_store::{ConversationRecord, GroupRecord};

/// A group's placement settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupRules {
    /// Most conversations waiting in its queue (0 = no limit).
    pub max_queue: u32,
    /// Where conversations overflow to.
    pub overflow_group: Option<GroupId>,
    /// A conversation waiting this long moves to `overflow_group` (0 = never).
    pub overflow_after_secs: u32,
    /// How long a returning visitor waits for their last agent (0 = not at all).
    pub sticky_wait_secs: u32,
}

impl From<&GroupRecord> for GroupRules {
    fn from(g: &GroupRecord) -> Self {
        GroupRules {
            max_queue: g.max_queue,
            overflow_group: g.overflow_group,
            overflow_after_secs: g.overflow_after_secs,
            sticky_wait_secs: g.sticky_wait_secs,
        }
    }
}

/// Where a returning visitor's conversation goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sticky {
    /// To the group, like anyone's.
    Group,
    /// To their last agent: now if it has room, else held for it `hold_secs`
    /// (then to the group).
    LastAgent {
        /// The agent.
        agent: AgentId,
        /// How long to hold the conversation for it (0 when it takes it now).
        hold_secs: u32,
    },
}

/// Sticky routing: the last agent takes the visitor back if it has room, or the
/// conversation waits for it when the group says so.
pub fn sticky(last_agent: Option<AgentId>, has_room: bool, rules: GroupRules) -> Sticky {
    match last_agent {
        Some(agent) if has_room => Sticky::LastAgent { agent, hold_secs: 0 },
        Some(agent) if rules.sticky_wait_secs > 0 => Sticky::LastAgent { agent, hold_secs: rules.sticky_wait_secs },
        _ => Sticky::Group,
    }
}

/// The group that takes a new conversation: `group` unless it would have to queue
/// it past its cap, then its overflow group (one hop), under the same test. `None`:
/// both are full. `queue_len` is a group's queue now, `serves_now` whether a member
/// has room now.
pub fn group_with_room(
    group: GroupId,
    rules: impl Fn(GroupId) -> Option<GroupRules>,
    queue_len: impl Fn(GroupId) -> usize,
    serves_now: impl Fn(GroupId) -> bool,
) -> Option<GroupId> {
    let mut group = group;
    for _ in 0..2 {
        let r = rules(group).unwrap_or_default();
        let len = queue_len(group);
        let would_queue = len > 0 || !serves_now(group);
        if r.max_queue == 0 || !would_queue || len < r.max_queue as usize {
            return Some(group);
        }
        match r.overflow_group.filter(|g| *g != group) {
            Some(next) => group = next,
            None => return None,
        }
    }
    None
}

/// How long a conversation queued in a group may wait before it overflows, if the
/// group overflows by waiting time.
pub fn overflow_wait_secs(rules: GroupRules) -> Option<u32> {
    (rules.overflow_group.is_some() && rules.overflow_after_secs > 0).then_some(rules.overflow_after_secs)
}

/// When an overflow timer set for `rec` queued in `from` since `queued_at` fires:
/// where it moves, if it is still waiting there since then.
pub fn overflow_due(rec: &ConversationRecord, from: GroupId, queued_at: Option<u64>, rules: GroupRules) -> Option<GroupId> {
    let still_waiting = rec.state == ConversationState::Queued && rec.group == from && rec.queued_at_ms == queued_at;
    // The group's settings when the timer fires count: overflow switched off since
    // moves nothing, a new overflow group gets the chat.
    overflow_wait_secs(rules).and(rules.overflow_group).filter(|to| still_waiting && *to != from)
}

/// The visitor's conversation to reopen instead of starting a new one: the latest
/// closed no longer than `window_ms` before `now_ms`.
pub fn reopenable<'a>(closed: impl IntoIterator<Item = &'a ConversationRecord>, visitor: VisitorId, now_ms: u64, window_ms: u64) -> Option<ConversationId> {
    if window_ms == 0 {
        return None;
    }
    let since = now_ms.saturating_sub(window_ms);
    closed
        .into_iter()
        .filter(|r| r.visitor == visitor && r.closed_at_ms.is_some_and(|c| c >= since))
        .max_by_key(|r| r.closed_at_ms)
        .map(|r| r.id)
}

/// Conversations whose last activity is at least `limit_ms` before `now_ms`.
pub fn inactive(now_ms: u64, limit_ms: u64, last_activity: impl IntoIterator<Item = (ConversationId, u64)>) -> Vec<ConversationId> {
    if limit_ms == 0 {
        return Vec::new();
    }
    last_activity.into_iter().filter(|(_, at)| now_ms.saturating_sub(*at) >= limit_ms).map(|(c, _)| c).collect()
}

/// How often to look for inactive conversations: a tenth of the limit, between
/// one second and one minute.
pub fn sweep_every_ms(limit_ms: u64) -> u64 {
    (limit_ms / 10).clamp(1000, 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::TenantId;

    const SUPPORT: GroupId = GroupId(1);
    const SALES: GroupId = GroupId(2);

    fn record(id: u64, visitor: u64, state: ConversationState, closed_at_ms: Option<u64>) -> ConversationRecord {
        ConversationRecord {
            id: ConversationId(id),
            tenant: TenantId(1),
            visitor: VisitorId(visitor),
            agent: None,
            group: SUPPORT,
            state,
            queue_ticket: 1,
            created_at_ms: 0,
            queued_at_ms: Some(10),
            assigned_at_ms: None,
            first_agent_reply_at_ms: None,
            closed_at_ms,
        }
    }

    #[test]
    fn the_last_agent_takes_the_visitor_back_now_or_holds_for_it_when_the_group_waits() {
        let waits = GroupRules { sticky_wait_secs: 30, ..Default::default() };
        assert_eq!(sticky(Some(AgentId(7)), true, GroupRules::default()), Sticky::LastAgent { agent: AgentId(7), hold_secs: 0 });
        assert_eq!(sticky(Some(AgentId(7)), false, waits), Sticky::LastAgent { agent: AgentId(7), hold_secs: 30 });
        assert_eq!(sticky(Some(AgentId(7)), false, GroupRules::default()), Sticky::Group);
        assert_eq!(sticky(None, true, waits), Sticky::Group);
    }

    #[test]
    fn a_full_queue_sends_new_chats_to_its_overflow_group_and_refuses_when_both_are_full() {
        let rules = |g: GroupId| {
            Some(match g {
                SUPPORT => GroupRules { max_queue: 2, overflow_group: Some(SALES), ..Default::default() },
                _ => GroupRules { max_queue: 1, overflow_group: Some(SUPPORT), ..Default::default() },
            })
        };
        let nobody = |_| false;
        assert_eq!(group_with_room(SUPPORT, rules, |_| 1, nobody), Some(SUPPORT), "room left in support");
        assert_eq!(group_with_room(SUPPORT, rules, |g| if g == SUPPORT { 2 } else { 0 }, nobody), Some(SALES));
        assert_eq!(group_with_room(SUPPORT, rules, |g| if g == SUPPORT { 2 } else { 1 }, nobody), None, "both full; no loop back");
        assert_eq!(group_with_room(SUPPORT, rules, |_| 0, |_| true), Some(SUPPORT), "an agent with room: no queueing");
        assert_eq!(group_with_room(SUPPORT, |_| None, |_| 1000, nobody), Some(SUPPORT), "no limit");
    }

    #[test]
    fn a_chat_overflows_by_wait_only_if_still_queued_where_and_since_it_was() {
        let rules = GroupRules { overflow_group: Some(SALES), overflow_after_secs: 60, ..Default::default() };
        assert_eq!(overflow_wait_secs(rules), Some(60));
        assert_eq!(overflow_wait_secs(GroupRules { overflow_after_secs: 60, ..Default::default() }), None);
        let queued = record(1, 1, ConversationState::Queued, None);
        assert_eq!(overflow_due(&queued, SUPPORT, Some(10), rules), Some(SALES));
        assert_eq!(overflow_due(&queued, SUPPORT, Some(11), rules), None, "queued again since");
        assert_eq!(overflow_due(&queued, SALES, Some(10), rules), None, "moved since");
        let assigned = record(1, 1, ConversationState::Assigned, None);
        assert_eq!(overflow_due(&assigned, SUPPORT, Some(10), rules), None);
        let switched_off = GroupRules { overflow_after_secs: 0, ..rules };
        assert_eq!(overflow_due(&queued, SUPPORT, Some(10), switched_off), None, "overflow by wait turned off since");
    }

    #[test]
    fn the_latest_conversation_closed_within_the_window_reopens() {
        let closed = [
            record(1, 5, ConversationState::Closed, Some(1_000)),
            record(2, 5, ConversationState::Closed, Some(5_000)),
            record(3, 6, ConversationState::Closed, Some(9_000)),
        ];
        assert_eq!(reopenable(&closed, VisitorId(5), 10_000, 6_000), Some(ConversationId(2)));
        assert_eq!(reopenable(&closed, VisitorId(5), 12_000, 6_000), None, "closed too long ago");
        assert_eq!(reopenable(&closed, VisitorId(5), 10_000, 0), None, "reopening off");
        assert_eq!(reopenable(&closed, VisitorId(7), 10_000, 60_000), None);
    }

    #[test]
    fn conversations_quiet_for_the_limit_are_inactive() {
        let activity = [(ConversationId(1), 1_000), (ConversationId(2), 4_000), (ConversationId(3), 4_001)];
        assert_eq!(inactive(10_000, 6_000, activity), vec![ConversationId(1), ConversationId(2)]);
        assert_eq!(inactive(10_000, 0, activity), vec![], "auto-close off");
        assert_eq!(sweep_every_ms(1_800_000), 60_000);
        assert_eq!(sweep_every_ms(2_000), 1_000);
        assert_eq!(sweep_every_ms(100_000), 10_000);
    }
}
