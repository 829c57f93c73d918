//! Tests of the assignment rules.
use super::*;
const G: GroupId = DEFAULT_GROUP;

fn pool(agents: &[(u64, u32)]) -> Pool {
    let mut p = Pool::new();
    for (a, cap) in agents {
        p.set_capacity(AgentId(*a), *cap);
        p.connect(AgentId(*a));
    }
    p
}

#[test]
fn least_busy_wins_and_ties_go_to_who_waited_longest() {
    let mut p = pool(&[(1, 5), (2, 5)]);
    assert_eq!(p.place(ConversationId(1), G, 1), Placement::Assigned(AgentId(1)));
    assert_eq!(p.place(ConversationId(2), G, 2), Placement::Assigned(AgentId(2)));
    // both have 1; agent 1 was assigned longer ago
    assert_eq!(p.place(ConversationId(3), G, 3), Placement::Assigned(AgentId(1)));
    assert_eq!(p.place(ConversationId(4), G, 4), Placement::Assigned(AgentId(2)));
    p.release(ConversationId(4));
    assert_eq!(p.place(ConversationId(5), G, 5), Placement::Assigned(AgentId(2)), "fewest active first");
}

#[test]
fn cap_holds_and_queue_drains_oldest_first() {
    let mut p = pool(&[(1, 2)]);
    for c in 1..=5 {
        p.place(ConversationId(c), G, c as i64);
    }
    assert_eq!(p.load(AgentId(1)), Some((2, 2)));
    assert_eq!(p.queue_len(), 3);
    assert_eq!(p.position(ConversationId(5)), Some(3));
    let drained = p.release(ConversationId(1));
    assert_eq!(drained, vec![Assignment { conversation: ConversationId(3), agent: AgentId(1) }]);
    assert_eq!(p.position(ConversationId(5)), Some(2));
    assert_eq!(p.load(AgentId(1)), Some((2, 2)));
}

#[test]
fn offline_agents_get_nothing_and_coming_online_drains() {
    let mut p = Pool::new();
    p.set_capacity(AgentId(1), 3);
    assert_eq!(p.place(ConversationId(1), G, 1), Placement::Queued { position: 1 });
    let drained = p.connect(AgentId(1));
    assert_eq!(drained.len(), 1);
    p.disconnect(AgentId(1));
    assert_eq!(p.place(ConversationId(2), G, 2), Placement::Queued { position: 1 });
    assert_eq!(p.assigned_to(AgentId(1)), vec![ConversationId(1)], "chats stay with a disconnected agent");
}

#[test]
fn new_conversations_do_not_jump_the_queue() {
    let mut p = pool(&[(1, 1)]);
    p.place(ConversationId(1), G, 1);
    p.place(ConversationId(2), G, 2);
    p.set_capacity(AgentId(1), 1);
    // agent 2 comes online with room: the queued conversation goes first
    p.set_capacity(AgentId(2), 1);
    let drained = p.connect(AgentId(2));
    assert_eq!(drained, vec![Assignment { conversation: ConversationId(2), agent: AgentId(2) }]);
    assert_eq!(p.place(ConversationId(3), G, 3), Placement::Queued { position: 1 });
}

#[test]
fn an_absent_agents_chats_go_back_ahead_of_newer_ones() {
    let mut p = pool(&[(1, 2), (2, 1)]);
    p.place(ConversationId(1), G, 1); // agent 1
    p.place(ConversationId(2), G, 2); // agent 2
    p.place(ConversationId(3), G, 3); // agent 1
    p.place(ConversationId(4), G, 4); // queued
    p.disconnect(AgentId(1));
    let epoch = p.offline_epoch(AgentId(1)).unwrap();
    assert_eq!(p.offline_holders(), vec![(AgentId(1), epoch)]);
    let requeued = p.requeue_at_head(AgentId(1));
    assert_eq!(requeued.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![ConversationId(1), ConversationId(3)]);
    assert_eq!(p.position(ConversationId(1)), Some(1));
    assert_eq!(p.position(ConversationId(3)), Some(2));
    assert_eq!(p.position(ConversationId(4)), Some(3));
    // agent 2 frees up: the oldest requeued chat goes first
    let drained = p.release(ConversationId(2));
    assert_eq!(drained, vec![Assignment { conversation: ConversationId(1), agent: AgentId(2) }]);
    // a later requeue goes ahead of the earlier ones still waiting
    p.connect(AgentId(1));
    p.disconnect(AgentId(1));
    assert_ne!(p.offline_epoch(AgentId(1)), Some(epoch), "a new absence");
}

#[test]
fn groups_share_seats_and_queue_separately() {
    let billing = GroupId(1);
    let mut p = pool(&[(1, 1), (2, 1)]);
    p.set_members(billing, [AgentId(2)]);
    // a billing chat only goes to agent 2, even though agent 1 is idle
    assert_eq!(p.place(ConversationId(1), billing, 1), Placement::Assigned(AgentId(2)));
    assert_eq!(p.place(ConversationId(2), billing, 2), Placement::Queued { position: 1 });
    // the default group takes anyone: agent 1
    assert_eq!(p.place(ConversationId(3), G, 3), Placement::Assigned(AgentId(1)));
    assert_eq!(p.place(ConversationId(4), G, 4), Placement::Queued { position: 1 });
    // agent 2 frees up: both queues could use it; the older ticket (billing) wins
    assert_eq!(p.release(ConversationId(1)), vec![Assignment { conversation: ConversationId(2), agent: AgentId(2) }]);
    assert_eq!(p.group_of(ConversationId(2)), Some(billing));
    // agent 1 frees up: it is not in billing, but the default queue is its
    assert_eq!(p.release(ConversationId(3)), vec![Assignment { conversation: ConversationId(4), agent: AgentId(1) }]);
}

#[test]
fn vips_wait_ahead_of_everyone_but_requeued_chats() {
    let mut p = pool(&[(1, 1)]);
    p.place(ConversationId(1), G, ticket(1, false)); // assigned
    p.place(ConversationId(2), G, ticket(2, false));
    p.place(ConversationId(3), G, ticket(3, true));
    p.place(ConversationId(4), G, ticket(4, false));
    p.place(ConversationId(5), G, ticket(5, true));
    assert_eq!(p.position(ConversationId(3)), Some(1));
    assert_eq!(p.position(ConversationId(5)), Some(2));
    assert_eq!(p.position(ConversationId(2)), Some(3));
    assert_eq!(p.release(ConversationId(1)), vec![Assignment { conversation: ConversationId(3), agent: AgentId(1) }]);
    p.disconnect(AgentId(1));
    p.requeue_at_head(AgentId(1));
    assert_eq!(p.position(ConversationId(3)), Some(1), "requeued ahead of the waiting VIP");
}

#[test]
fn round_robin_takes_turns_and_skips_full_members() {
    let mut p = pool(&[(1, 5), (2, 5), (3, 1)]);
    p.set_strategy(G, Strategy::RoundRobin);
    let order: Vec<_> = (1..=5)
        .map(|c| match p.place(ConversationId(c), G, c as i64) {
            Placement::Assigned(a) => a.0,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, vec![1, 2, 3, 1, 2], "agent 3 (capacity 1) is skipped once full");
}

#[test]
fn manual_groups_wait_to_be_taken_and_only_one_agent_wins() {
    let mut p = pool(&[(1, 2), (2, 2)]);
    p.set_strategy(G, Strategy::Manual);
    assert_eq!(p.place(ConversationId(1), G, 1), Placement::Queued { position: 1 });
    assert!(p.drain().is_empty(), "nobody is assigned automatically");
    assert_eq!(p.take(ConversationId(1), AgentId(2)), Ok(()));
    assert_eq!(p.take(ConversationId(1), AgentId(1)), Err(TakeError::NotQueued));
    assert_eq!(p.owner(ConversationId(1)), Some(AgentId(2)));
    let billing = GroupId(4);
    p.set_members(billing, [AgentId(1)]);
    p.set_strategy(billing, Strategy::Manual);
    p.place(ConversationId(2), billing, 2);
    assert_eq!(p.take(ConversationId(2), AgentId(2)), Err(TakeError::NotMember));
    p.set_capacity(AgentId(1), 0);
    assert_eq!(p.take(ConversationId(2), AgentId(1)), Err(TakeError::NoRoom));
}

#[test]
fn an_unanswered_chat_moves_to_another_member_with_room_or_stays() {
    let mut p = pool(&[(1, 2), (2, 1)]);
    p.place(ConversationId(1), G, 1); // agent 1
    p.place(ConversationId(2), G, 2); // agent 2 (now full)
    assert_eq!(p.reassign_away(ConversationId(1)), None, "agent 2 is full: it stays");
    assert_eq!(p.owner(ConversationId(1)), Some(AgentId(1)));
    p.release(ConversationId(2));
    assert_eq!(p.reassign_away(ConversationId(1)), Some(AgentId(2)));
    assert_eq!(p.assigned_to(AgentId(1)), vec![]);
    assert_eq!(p.load(AgentId(2)), Some((1, 1)));
}

#[test]
fn an_overflowed_chat_keeps_its_age_in_the_new_queue() {
    let (a, b) = (GroupId(1), GroupId(2));
    let mut p = pool(&[(1, 1), (2, 1)]);
    p.set_members(a, [AgentId(1)]);
    p.set_members(b, [AgentId(2)]);
    p.place(ConversationId(1), a, 1);
    p.place(ConversationId(2), b, 2);
    p.place(ConversationId(3), a, 3); // waits in a
    p.place(ConversationId(4), b, 4); // waits in b
    assert_eq!(p.queue_len_of(a), 1);
    let (moved, drained) = p.move_queued(ConversationId(3), b);
    assert!(moved && drained.is_empty());
    assert_eq!(p.position(ConversationId(3)), Some(1), "older than the chat already waiting in b");
    assert_eq!(p.group_of(ConversationId(3)), Some(b));
    assert!(!p.move_queued(ConversationId(1), b).0, "an assigned chat does not move");
}

#[test]
fn a_closed_group_keeps_its_chats_waiting_until_it_opens() {
    let mut p = pool(&[(1, 5)]);
    p.set_open(G, false);
    assert_eq!(p.place(ConversationId(1), G, 1), Placement::Queued { position: 1 });
    assert_eq!(p.set_open(G, true), vec![Assignment { conversation: ConversationId(1), agent: AgentId(1) }]);
}

#[test]
fn a_returning_visitor_goes_back_to_their_agent_or_waits_for_them_without_blocking_others() {
    let mut p = pool(&[(1, 2), (2, 2)]);
    p.place(ConversationId(1), G, 1); // agent 1 (tie, lowest id)
    // Least-busy would pick agent 2 now; the returning visitor goes to agent 1.
    assert_eq!(p.place_sticky(ConversationId(2), G, 2, AgentId(1), true), Placement::Assigned(AgentId(1)));
    // Agent 1 is full: held for agent 1; agent 2, with room, does not get it...
    assert_eq!(p.place_sticky(ConversationId(3), G, 3, AgentId(1), true), Placement::Queued { position: 1 });
    assert!(p.drain().is_empty());
    // ...but a newer, unheld chat behind it is not blocked.
    assert_eq!(p.place(ConversationId(4), G, 4), Placement::Queued { position: 2 });
    assert_eq!(p.drain(), vec![Assignment { conversation: ConversationId(4), agent: AgentId(2) }]);
    // Agent 1 frees a seat: the held chat goes to it.
    assert_eq!(p.release(ConversationId(1)), vec![Assignment { conversation: ConversationId(3), agent: AgentId(1) }]);
    // A hold that expires hands the chat to the group.
    p.place(ConversationId(5), G, 5); // agent 2 (now full)
    assert_eq!(p.place_sticky(ConversationId(6), G, 6, AgentId(1), true), Placement::Queued { position: 1 });
    p.set_capacity(AgentId(2), 3);
    assert!(p.drain().is_empty(), "still held");
    assert_eq!(p.release_hold(ConversationId(6)), vec![Assignment { conversation: ConversationId(6), agent: AgentId(2) }]);
}

#[test]
fn raising_capacity_drains() {
    let mut p = pool(&[(1, 1)]);
    p.place(ConversationId(1), G, 1);
    p.place(ConversationId(2), G, 2);
    assert_eq!(p.set_capacity(AgentId(1), 2).len(), 1);
}

#[test]
fn cap_holds_for_any_interleaving_of_operations() {
    // A deterministic pseudo-random walk over place/release/connect/disconnect/capacity.
    let mut p = pool(&[(1, 3), (2, 3), (3, 3), (4, 3), (5, 3)]);
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut open: Vec<ConversationId> = Vec::new();
    for step in 0..20_000u64 {
        match next() % 10 {
            0..=4 => {
                let c = ConversationId(step + 1);
                p.place(c, G, step as i64 + 1);
                open.push(c);
            }
            5..=7 if !open.is_empty() => {
                let i = (next() as usize) % open.len();
                p.release(open.swap_remove(i));
            }
            8 => {
                let a = AgentId(1 + next() % 5);
                if p.is_online(a) { p.disconnect(a) } else { p.connect(a); }
            }
            _ => {
                p.set_capacity(AgentId(1 + next() % 5), 1 + (next() % 4) as u32);
            }
        }
        assert!(!p.can_drain(), "queue waits while a seat has room (step {step})");
        for a in 1..=5 {
            let (active, _) = p.load(AgentId(a)).unwrap();
            assert!(active <= 4, "agent {a} holds {active} at step {step}");
        }
    }
}

#[test]
fn a_busy_agent_keeps_its_chats_and_gets_no_new_ones_until_online() {
    let mut p = pool(&[(1, 5), (2, 5)]);
    p.place(ConversationId(1), G, 1); // agent 1
    p.set_available(AgentId(1), false);
    assert_eq!(p.place(ConversationId(2), G, 2), Placement::Assigned(AgentId(2)));
    p.set_available(AgentId(2), false);
    assert_eq!(p.place(ConversationId(3), G, 3), Placement::Queued { position: 1 });
    assert_eq!(p.assigned_to(AgentId(1)), vec![ConversationId(1)], "chats stay");
    assert_eq!(p.set_available(AgentId(1), true), vec![Assignment { conversation: ConversationId(3), agent: AgentId(1) }]);
}
