//! Which agent gets a conversation: least-busy with a per-agent cap, and a FIFO queue
//! (by ticket) for when every online agent is full. One [`Pool`] per tenant, owned by
//! that tenant's single router, so the cap holds by construction.

use std::collections::{BTreeMap, HashMap};
use switchboard_protocol::{AgentId, ConversationId};

/// An agent's seat as the pool sees it.
#[derive(Clone, Debug, Default)]
struct Seat {
    capacity: u32,
    active: Vec<ConversationId>,
    connections: u32,
    /// Logical time of the last assignment (0 = never): ties go to the smallest.
    last_assigned: u64,
    /// Bumped each time the seat goes offline, so a grace timer can tell whether the
    /// absence it was started for is still the current one.
    offline_epoch: u64,
}

impl Seat {
    fn has_room(&self) -> bool {
        self.connections > 0 && (self.active.len() as u64) < self.capacity as u64
    }
}

/// What happened to a new conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Assigned at once.
    Assigned(AgentId),
    /// Waiting; 1-based position in the queue.
    Queued {
        /// Position (1 = next).
        position: usize,
    },
}

/// A conversation handed to an agent while draining the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its agent.
    pub agent: AgentId,
}

/// A tenant's seats, loads and queue.
#[derive(Debug, Default)]
pub struct Pool {
    seats: HashMap<AgentId, Seat>,
    owner: HashMap<ConversationId, AgentId>,
    queue: BTreeMap<i64, ConversationId>,
    tickets: HashMap<ConversationId, i64>,
    clock: u64,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Pool::default()
    }

    /// Makes an agent known (offline) or updates its capacity; returns assignments if
    /// the change freed room.
    pub fn set_capacity(&mut self, agent: AgentId, capacity: u32) -> Vec<Assignment> {
        self.seats.entry(agent).or_default().capacity = capacity;
        self.drain()
    }

    /// One more connection of `agent`; an agent with any connection is online.
    pub fn connect(&mut self, agent: AgentId) -> Vec<Assignment> {
        self.seats.entry(agent).or_default().connections += 1;
        self.drain()
    }

    /// One connection of `agent` fewer. Its chats stay with it (for now: see
    /// [`Pool::offline_epoch`] and [`Pool::requeue_at_head`]).
    pub fn disconnect(&mut self, agent: AgentId) {
        if let Some(seat) = self.seats.get_mut(&agent) {
            seat.connections = seat.connections.saturating_sub(1);
            if seat.connections == 0 {
                seat.offline_epoch += 1;
            }
        }
    }

    /// For an offline agent, which absence this is (None while online).
    pub fn offline_epoch(&self, agent: AgentId) -> Option<u64> {
        self.seats.get(&agent).filter(|s| s.connections == 0).map(|s| s.offline_epoch)
    }

    /// Offline agents that hold chats (after a restart every agent is offline).
    pub fn offline_holders(&self) -> Vec<(AgentId, u64)> {
        self.seats.iter().filter(|(_, s)| s.connections == 0 && !s.active.is_empty()).map(|(a, s)| (*a, s.offline_epoch)).collect()
    }

    /// Takes every chat from `agent` and puts them at the head of the queue, in the
    /// order they were assigned, ahead of every waiting conversation. Returns them with
    /// their new tickets; the caller then drains.
    pub fn requeue_at_head(&mut self, agent: AgentId) -> Vec<(ConversationId, i64)> {
        let Some(seat) = self.seats.get_mut(&agent) else { return Vec::new() };
        let chats = std::mem::take(&mut seat.active);
        let first = self.queue.keys().next().copied().unwrap_or(1).min(1) - chats.len() as i64;
        chats
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                self.owner.remove(&c);
                let ticket = first + i as i64;
                self.restore_queued(c, ticket);
                (c, ticket)
            })
            .collect()
    }

    /// Whether `agent` has a connection.
    pub fn is_online(&self, agent: AgentId) -> bool {
        self.seats.get(&agent).is_some_and(|s| s.connections > 0)
    }

    /// Agents with at least one connection.
    pub fn online_count(&self) -> usize {
        self.seats.values().filter(|s| s.connections > 0).count()
    }

    /// Rebuilds an assignment from the store (at start-up). Ignores the cap: what
    /// was durable is the truth.
    pub fn restore_assigned(&mut self, conversation: ConversationId, agent: AgentId) {
        self.seats.entry(agent).or_default().active.push(conversation);
        self.owner.insert(conversation, agent);
    }

    /// Rebuilds a queued conversation from the store.
    pub fn restore_queued(&mut self, conversation: ConversationId, ticket: i64) {
        self.queue.insert(ticket, conversation);
        self.tickets.insert(conversation, ticket);
    }

    /// The least-busy online agent with room: fewest active chats, ties to whoever
    /// has waited longest since their last assignment, then the lowest id.
    pub fn least_busy(&self) -> Option<AgentId> {
        self.seats
            .iter()
            .filter(|(_, s)| s.has_room())
            .min_by_key(|(id, s)| (s.active.len(), s.last_assigned, **id))
            .map(|(id, _)| *id)
    }

    fn assign(&mut self, conversation: ConversationId, agent: AgentId) {
        self.clock += 1;
        let seat = self.seats.entry(agent).or_default();
        seat.active.push(conversation);
        seat.last_assigned = self.clock;
        self.owner.insert(conversation, agent);
    }

    /// Places a new conversation: to an agent with room, or at the back of the queue.
    /// Newer conversations never jump a non-empty queue.
    pub fn place(&mut self, conversation: ConversationId, ticket: i64) -> Placement {
        if self.queue.is_empty() {
            if let Some(agent) = self.least_busy() {
                self.assign(conversation, agent);
                return Placement::Assigned(agent);
            }
        }
        self.restore_queued(conversation, ticket);
        Placement::Queued { position: self.position(conversation).unwrap_or(self.queue.len()) }
    }

    /// 1-based queue position of a waiting conversation.
    pub fn position(&self, conversation: ConversationId) -> Option<usize> {
        let ticket = self.tickets.get(&conversation)?;
        Some(self.queue.range(..=ticket).count())
    }

    /// A conversation ended: frees its seat (or leaves the queue) and drains the queue.
    pub fn release(&mut self, conversation: ConversationId) -> Vec<Assignment> {
        if let Some(agent) = self.owner.remove(&conversation) {
            if let Some(seat) = self.seats.get_mut(&agent) {
                seat.active.retain(|c| *c != conversation);
            }
        }
        if let Some(ticket) = self.tickets.remove(&conversation) {
            self.queue.remove(&ticket);
        }
        self.drain()
    }

    /// Assigns queued conversations, oldest first, while any agent has room.
    pub fn drain(&mut self) -> Vec<Assignment> {
        let mut out = Vec::new();
        while let Some((&ticket, &conversation)) = self.queue.iter().next() {
            let Some(agent) = self.least_busy() else { break };
            self.queue.remove(&ticket);
            self.tickets.remove(&conversation);
            self.assign(conversation, agent);
            out.push(Assignment { conversation, agent });
        }
        out
    }

    /// The agent holding `conversation`.
    pub fn owner(&self, conversation: ConversationId) -> Option<AgentId> {
        self.owner.get(&conversation).copied()
    }

    /// Conversations held by `agent`.
    pub fn assigned_to(&self, agent: AgentId) -> Vec<ConversationId> {
        self.seats.get(&agent).map(|s| s.active.clone()).unwrap_or_default()
    }

    /// (active chats, capacity) of `agent`.
    pub fn load(&self, agent: AgentId) -> Option<(usize, u32)> {
        self.seats.get(&agent).map(|s| (s.active.len(), s.capacity))
    }

    /// Conversations waiting.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.place(ConversationId(1), 1), Placement::Assigned(AgentId(1)));
        assert_eq!(p.place(ConversationId(2), 2), Placement::Assigned(AgentId(2)));
        // both have 1; agent 1 was assigned longer ago
        assert_eq!(p.place(ConversationId(3), 3), Placement::Assigned(AgentId(1)));
        assert_eq!(p.place(ConversationId(4), 4), Placement::Assigned(AgentId(2)));
        p.release(ConversationId(4));
        assert_eq!(p.place(ConversationId(5), 5), Placement::Assigned(AgentId(2)), "fewest active first");
    }

    #[test]
    fn cap_holds_and_queue_drains_oldest_first() {
        let mut p = pool(&[(1, 2)]);
        for c in 1..=5 {
            p.place(ConversationId(c), c as i64);
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
        assert_eq!(p.place(ConversationId(1), 1), Placement::Queued { position: 1 });
        let drained = p.connect(AgentId(1));
        assert_eq!(drained.len(), 1);
        p.disconnect(AgentId(1));
        assert_eq!(p.place(ConversationId(2), 2), Placement::Queued { position: 1 });
        assert_eq!(p.assigned_to(AgentId(1)), vec![ConversationId(1)], "chats stay with a disconnected agent");
    }

    #[test]
    fn new_conversations_do_not_jump_the_queue() {
        let mut p = pool(&[(1, 1)]);
        p.place(ConversationId(1), 1);
        p.place(ConversationId(2), 2);
        p.set_capacity(AgentId(1), 1);
        // agent 2 comes online with room: the queued conversation goes first
        p.set_capacity(AgentId(2), 1);
        let drained = p.connect(AgentId(2));
        assert_eq!(drained, vec![Assignment { conversation: ConversationId(2), agent: AgentId(2) }]);
        assert_eq!(p.place(ConversationId(3), 3), Placement::Queued { position: 1 });
    }

    #[test]
    fn an_absent_agents_chats_go_back_ahead_of_newer_ones() {
        let mut p = pool(&[(1, 2), (2, 1)]);
        p.place(ConversationId(1), 1); // agent 1
        p.place(ConversationId(2), 2); // agent 2
        p.place(ConversationId(3), 3); // agent 1
        p.place(ConversationId(4), 4); // queued
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
    fn raising_capacity_drains() {
        let mut p = pool(&[(1, 1)]);
        p.place(ConversationId(1), 1);
        p.place(ConversationId(2), 2);
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
                    p.place(c, step as i64 + 1);
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
            assert!(p.queue_len() == 0 || p.least_busy().is_none(), "queue waits while a seat has room (step {step})");
            for a in 1..=5 {
                let (active, _) = p.load(AgentId(a)).unwrap();
                assert!(active <= 4, "agent {a} holds {active} at step {step}");
            }
        }
    }
}
