//! Which agent gets a conversation. A tenant's agents (seats, with their loads and
//! caps) are shared by its skill groups; each group has its own FIFO queue (by
//! ticket). A conversation waits in its group's queue and goes to the least-busy
//! online member with room. One [`Pool`] per tenant, owned by that tenant's single
//! router, so caps hold by construction.

use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_protocol::{AgentId, ConversationId, GroupId};

/// The default group: every agent is a member.
pub const DEFAULT_GROUP: GroupId = GroupId(0);

/// VIP tickets are shifted by this much, so every VIP waits ahead of every normal
/// visitor (and chats requeued from an absent agent go ahead of both).
pub const VIP_SHIFT: i64 = 1 << 40;

/// The queue ticket of a conversation: `counter` in arrival order, VIPs first.
pub fn ticket(counter: i64, vip: bool) -> i64 {
    if vip {
        counter - VIP_SHIFT
    } else {
        counter
    }
}

pub use switchboard_raft_store::Strategy;

/// Why an agent could not take a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// It is not waiting in a queue (someone else took it, or it closed).
    #[error("the conversation is not waiting in a queue")]
    NotQueued,
    /// The agent is not a member of its group.
    #[error("the agent is not a member of the conversation's group")]
    NotMember,
    /// The agent is at its capacity (or offline).
    #[error("the agent has no room")]
    NoRoom,
}

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
    /// Set busy or away by the agent: keeps its chats, takes no new ones.
    unavailable: bool,
}

impl Seat {
    fn has_room(&self) -> bool {
        self.connections > 0 && !self.unavailable && (self.active.len() as u64) < self.capacity as u64
    }
}

/// What happened to a new conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Assigned at once.
    Assigned(AgentId),
    /// Waiting; 1-based position in its group's queue.
    Queued {
        /// Position (1 = next).
        position: usize,
    },
}

/// A conversation handed to an agent while draining a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its agent.
    pub agent: AgentId,
}

/// A tenant's seats, loads, groups and queues.
#[derive(Debug, Default)]
pub struct Pool {
    seats: HashMap<AgentId, Seat>,
    /// Explicit members of each group other than the default one.
    members: HashMap<GroupId, HashSet<AgentId>>,
    queues: HashMap<GroupId, BTreeMap<i64, ConversationId>>,
    owner: HashMap<ConversationId, AgentId>,
    /// Group of every conversation the pool knows (queued or assigned).
    group_of: HashMap<ConversationId, GroupId>,
    tickets: HashMap<ConversationId, i64>,
    strategies: HashMap<GroupId, Strategy>,
    /// Groups outside their business hours: their conversations wait.
    closed: HashSet<GroupId>,
    /// Waiting conversations held for one agent (sticky), until released.
    reserved: HashMap<ConversationId, AgentId>,
    /// Round robin: the member assigned last, per group.
    last_turn: HashMap<GroupId, AgentId>,
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

    /// Sets a group's members (the default group needs none: it has every agent).
    pub fn set_members(&mut self, group: GroupId, agents: impl IntoIterator<Item = AgentId>) -> Vec<Assignment> {
        if group != DEFAULT_GROUP {
            self.members.insert(group, agents.into_iter().collect());
        }
        self.drain()
    }

    /// Sets how a group hands out conversations.
    pub fn set_strategy(&mut self, group: GroupId, strategy: Strategy) -> Vec<Assignment> {
        self.strategies.insert(group, strategy);
        self.drain()
    }

    fn strategy(&self, group: GroupId) -> Strategy {
        self.strategies.get(&group).copied().unwrap_or_default()
    }

    /// Opens or closes a group (business hours); opening drains its queue.
    pub fn set_open(&mut self, group: GroupId, open: bool) -> Vec<Assignment> {
        if open {
            self.closed.remove(&group);
        } else {
            self.closed.insert(group);
        }
        self.drain()
    }

    /// Whether a group is outside its business hours.
    pub fn is_closed(&self, group: GroupId) -> bool {
        self.closed.contains(&group)
    }

    /// Who gets the next conversation of `group` automatically, if anyone.
    pub fn pick(&self, group: GroupId) -> Option<AgentId> {
        if self.closed.contains(&group) {
            return None;
        }
        match self.strategy(group) {
            Strategy::LeastBusy => self.least_busy(group),
            Strategy::Manual => None,
            Strategy::RoundRobin => {
                let mut candidates: Vec<AgentId> =
                    self.seats.iter().filter(|(id, s)| s.has_room() && self.is_member(group, **id)).map(|(id, _)| *id).collect();
                candidates.sort();
                let last = self.last_turn.get(&group);
                candidates.iter().find(|a| last.is_none_or(|l| *a > l)).or(candidates.first()).copied()
            }
        }
    }

    /// An agent takes a waiting conversation from its group's queue. The router
    /// serialises takes, so of two agents taking the same chat exactly one wins.
    pub fn take(&mut self, conversation: ConversationId, agent: AgentId) -> Result<(), TakeError> {
        let ticket = *self.tickets.get(&conversation).ok_or(TakeError::NotQueued)?;
        let group = self.group_of.get(&conversation).copied().unwrap_or(DEFAULT_GROUP);
        if !self.is_member(group, agent) {
            return Err(TakeError::NotMember);
        }
        if !self.seats.get(&agent).is_some_and(|s| s.has_room()) {
            return Err(TakeError::NoRoom);
        }
        if let Some(q) = self.queues.get_mut(&group) {
            q.remove(&ticket);
        }
        self.tickets.remove(&conversation);
        self.reserved.remove(&conversation);
        self.assign(conversation, group, agent);
        Ok(())
    }

    fn is_member(&self, group: GroupId, agent: AgentId) -> bool {
        group == DEFAULT_GROUP || self.members.get(&group).is_some_and(|m| m.contains(&agent))
    }

    /// One more connection of `agent`; an agent with any connection is online.
    pub fn connect(&mut self, agent: AgentId) -> Vec<Assignment> {
        let seat = self.seats.entry(agent).or_default();
        if seat.connections == 0 {
            seat.unavailable = false; // a new login starts online
        }
        seat.connections += 1;
        self.drain()
    }

    /// The agent says whether it takes new chats (online) or not (busy, away).
    pub fn set_available(&mut self, agent: AgentId, available: bool) -> Vec<Assignment> {
        if let Some(seat) = self.seats.get_mut(&agent) {
            seat.unavailable = !available;
        }
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

    /// Takes every chat from `agent` and puts each at the head of its group's queue,
    /// in the order they were assigned, ahead of every waiting conversation. Returns
    /// them with their new tickets; the caller then drains.
    pub fn requeue_at_head(&mut self, agent: AgentId) -> Vec<(ConversationId, i64)> {
        let Some(seat) = self.seats.get_mut(&agent) else { return Vec::new() };
        let chats = std::mem::take(&mut seat.active);
        let head = self.queues.values().filter_map(|q| q.keys().next().copied()).min().unwrap_or(1).min(1);
        let first = head - chats.len() as i64;
        chats
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                self.owner.remove(&c);
                let ticket = first + i as i64;
                let group = self.group_of.get(&c).copied().unwrap_or(DEFAULT_GROUP);
                self.restore_queued(c, group, ticket);
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
    pub fn restore_assigned(&mut self, conversation: ConversationId, group: GroupId, agent: AgentId) {
        self.seats.entry(agent).or_default().active.push(conversation);
        self.owner.insert(conversation, agent);
        self.group_of.insert(conversation, group);
    }

    /// Rebuilds a queued conversation from the store.
    pub fn restore_queued(&mut self, conversation: ConversationId, group: GroupId, ticket: i64) {
        self.queues.entry(group).or_default().insert(ticket, conversation);
        self.tickets.insert(conversation, ticket);
        self.group_of.insert(conversation, group);
    }

    /// The least-busy online member of `group` with room: fewest active chats, ties to
    /// whoever has waited longest since their last assignment, then the lowest id.
    pub fn least_busy(&self, group: GroupId) -> Option<AgentId> {
        self.seats
            .iter()
            .filter(|(id, s)| s.has_room() && self.is_member(group, **id))
            .min_by_key(|(id, s)| (s.active.len(), s.last_assigned, **id))
            .map(|(id, _)| *id)
    }

    fn assign(&mut self, conversation: ConversationId, group: GroupId, agent: AgentId) {
        self.clock += 1;
        self.last_turn.insert(group, agent);
        let seat = self.seats.entry(agent).or_default();
        seat.active.push(conversation);
        seat.last_assigned = self.clock;
        self.owner.insert(conversation, agent);
    }

    /// Places a new conversation of `group`: to a member with room, or at the back of
    /// the group's queue. Newer conversations never jump a non-empty queue.
    pub fn place(&mut self, conversation: ConversationId, group: GroupId, ticket: i64) -> Placement {
        self.group_of.insert(conversation, group);
        if self.queues.get(&group).is_none_or(|q| q.is_empty()) {
            if let Some(agent) = self.pick(group) {
                self.assign(conversation, group, agent);
                return Placement::Assigned(agent);
            }
        }
        self.restore_queued(conversation, group, ticket);
        Placement::Queued { position: self.position(conversation).unwrap_or(1) }
    }

    /// 1-based position of a waiting conversation in its group's queue.
    pub fn position(&self, conversation: ConversationId) -> Option<usize> {
        let ticket = self.tickets.get(&conversation)?;
        let group = self.group_of.get(&conversation)?;
        Some(self.queues.get(group)?.range(..=ticket).count())
    }

    /// A conversation ended: frees its seat (or leaves its queue) and drains.
    pub fn release(&mut self, conversation: ConversationId) -> Vec<Assignment> {
        if let Some(agent) = self.owner.remove(&conversation) {
            if let Some(seat) = self.seats.get_mut(&agent) {
                seat.active.retain(|c| *c != conversation);
            }
        }
        self.reserved.remove(&conversation);
        let group = self.group_of.remove(&conversation);
        if let (Some(ticket), Some(group)) = (self.tickets.remove(&conversation), group) {
            if let Some(q) = self.queues.get_mut(&group) {
                q.remove(&ticket);
            }
        }
        self.drain()
    }

    /// Assigns queued conversations while any member of their group has room; across
    /// groups, the conversation with the lowest ticket goes first.
    pub fn drain(&mut self) -> Vec<Assignment> {
        let mut out = Vec::new();
        loop {
            let next = self.queues.keys().filter_map(|g| self.first_assignable(*g)).min_by_key(|(t, ..)| *t);
            let Some((ticket, conversation, group, agent)) = next else { break };
            if let Some(q) = self.queues.get_mut(&group) {
                q.remove(&ticket);
            }
            self.tickets.remove(&conversation);
            self.reserved.remove(&conversation);
            self.assign(conversation, group, agent);
            out.push(Assignment { conversation, agent });
        }
        out
    }

    /// Whether `agent` could take a conversation of `group` now.
    pub fn can_take(&self, agent: AgentId, group: GroupId) -> bool {
        !self.closed.contains(&group) && self.is_member(group, agent) && self.seats.get(&agent).is_some_and(|s| s.has_room())
    }

    /// The oldest conversation of `group` that someone can take now: a held one by its
    /// agent, any other by the group's strategy. Held conversations never block the ones
    /// behind them.
    fn first_assignable(&self, group: GroupId) -> Option<(i64, ConversationId, GroupId, AgentId)> {
        let pick = self.pick(group);
        self.queues.get(&group)?.iter().find_map(|(t, c)| match self.reserved.get(c) {
            Some(a) => self.can_take(*a, group).then_some((*t, *c, group, *a)),
            None => pick.map(|a| (*t, *c, group, a)),
        })
    }

    /// Places a returning visitor's conversation with `preferred` (their last agent) if
    /// that agent can take it now; otherwise, with `hold`, keeps it waiting for that
    /// agent alone until [`Pool::release_hold`]; without, places it normally.
    pub fn place_sticky(&mut self, conversation: ConversationId, group: GroupId, ticket: i64, preferred: AgentId, hold: bool) -> Placement {
        self.group_of.insert(conversation, group);
        if self.can_take(preferred, group) {
            self.assign(conversation, group, preferred);
            return Placement::Assigned(preferred);
        }
        if !hold {
            return self.place(conversation, group, ticket);
        }
        self.restore_queued(conversation, group, ticket);
        self.reserved.insert(conversation, preferred);
        Placement::Queued { position: self.position(conversation).unwrap_or(1) }
    }

    /// Stops holding a conversation for one agent; it goes to whoever can take it.
    pub fn release_hold(&mut self, conversation: ConversationId) -> Vec<Assignment> {
        if self.reserved.remove(&conversation).is_none() {
            return Vec::new();
        }
        self.drain()
    }

    /// Moves an assigned conversation away from its agent (who did not reply) to the
    /// least-busy other member of its group with room. Returns the new agent, or `None`
    /// (nothing changes) if no one else has room.
    pub fn reassign_away(&mut self, conversation: ConversationId) -> Option<AgentId> {
        let current = self.owner(conversation)?;
        let group = self.group_of(conversation).unwrap_or(DEFAULT_GROUP);
        let next = self
            .seats
            .iter()
            .filter(|(id, s)| **id != current && s.has_room() && self.is_member(group, **id))
            .min_by_key(|(id, s)| (s.active.len(), s.last_assigned, **id))
            .map(|(id, _)| *id)?;
        if let Some(seat) = self.seats.get_mut(&current) {
            seat.active.retain(|c| *c != conversation);
        }
        self.assign(conversation, group, next);
        Some(next)
    }

    /// Hands an assigned conversation to `to` (an agent with room; any group). Errors
    /// if it is not assigned or `to` has no room.
    pub fn transfer_to_agent(&mut self, conversation: ConversationId, to: AgentId) -> Result<(), TakeError> {
        let from = self.owner(conversation).ok_or(TakeError::NotQueued)?;
        if !self.seats.get(&to).is_some_and(|s| s.has_room()) {
            return Err(TakeError::NoRoom);
        }
        if let Some(seat) = self.seats.get_mut(&from) {
            seat.active.retain(|c| *c != conversation);
        }
        let group = self.group_of(conversation).unwrap_or(DEFAULT_GROUP);
        self.assign(conversation, group, to);
        Ok(())
    }

    /// Moves an assigned conversation to the head of `group`'s queue (it has waited
    /// already) and drains. Errors if it is not assigned.
    pub fn transfer_to_group(&mut self, conversation: ConversationId, group: GroupId) -> Result<Vec<Assignment>, TakeError> {
        let from = self.owner.remove(&conversation).ok_or(TakeError::NotQueued)?;
        if let Some(seat) = self.seats.get_mut(&from) {
            seat.active.retain(|c| *c != conversation);
        }
        let head = self.queues.get(&group).and_then(|q| q.keys().next().copied()).unwrap_or(1).min(1) - 1;
        self.restore_queued(conversation, group, head);
        Ok(self.drain())
    }

    /// Assigns a new conversation straight to `agent` (an agent's own invitation).
    pub fn assign_direct(&mut self, conversation: ConversationId, agent: AgentId) -> Result<(), TakeError> {
        if !self.seats.get(&agent).is_some_and(|s| s.has_room()) {
            return Err(TakeError::NoRoom);
        }
        self.group_of.insert(conversation, DEFAULT_GROUP);
        self.assign(conversation, DEFAULT_GROUP, agent);
        Ok(())
    }

    /// The group of a conversation the pool knows.
    pub fn group_of(&self, conversation: ConversationId) -> Option<GroupId> {
        self.group_of.get(&conversation).copied()
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

    /// Waiting conversations of one group.
    pub fn queue_len_of(&self, group: GroupId) -> usize {
        self.queues.get(&group).map_or(0, |q| q.len())
    }

    /// Moves a waiting conversation to another group's queue, keeping its ticket (so
    /// its age), and drains. False if it is not waiting.
    pub fn move_queued(&mut self, conversation: ConversationId, to: GroupId) -> (bool, Vec<Assignment>) {
        let (Some(ticket), Some(from)) = (self.tickets.get(&conversation).copied(), self.group_of(conversation)) else {
            return (false, Vec::new());
        };
        if let Some(q) = self.queues.get_mut(&from) {
            q.remove(&ticket);
        }
        self.restore_queued(conversation, to, ticket);
        (true, self.drain())
    }

    /// Every waiting conversation with its group and 1-based position.
    pub fn queued(&self) -> Vec<(ConversationId, GroupId, usize)> {
        let mut out = Vec::new();
        for (group, q) in &self.queues {
            out.extend(q.values().enumerate().map(|(i, c)| (*c, *group, i + 1)));
        }
        out
    }

    /// Online members of a group.
    pub fn online_members(&self, group: GroupId) -> usize {
        self.seats.iter().filter(|(id, s)| s.connections > 0 && self.is_member(group, **id)).count()
    }

    /// Conversations waiting, in every group.
    pub fn queue_len(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }

    /// Whether some queued conversation could be assigned now (always false after
    /// [`Pool::drain`]).
    pub fn can_drain(&self) -> bool {
        self.queues.iter().any(|(g, q)| !q.is_empty() && self.pick(*g).is_some())
    }
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
