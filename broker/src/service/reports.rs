//! Quality figures per agent, computed from conversation records and message logs.
//!
//! Definitions (every figure is an average over the conversations where both of its
//! events happened, in milliseconds):
//! - **wait**: from entering a queue (`queued_at`) to being assigned (`assigned_at`);
//! - **first response**: from being assigned to the agent's first message in the
//!   conversation (`first_agent_reply_at`, the `sent_at_ms` of that message);
//! - **response**: from each run of visitor messages to the agent's next message; a
//!   run that began before the assignment counts from the assignment (the agent could
//!   not answer earlier);
//! - **duration**: from being assigned to being closed.

use serde::Serialize;
use switchboard_protocol::{AgentId, ChatMessage, Participant};
use switchboard_raft_store::ConversationRecord;

/// An agent's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AgentStats {
    /// The agent.
    pub agent: u64,
    /// Conversations assigned to the agent (open or closed).
    pub conversations: usize,
    /// Of which closed.
    pub closed: usize,
    /// Average wait, ms.
    pub avg_wait_ms: Option<f64>,
    /// Average first-response time, ms.
    pub avg_first_response_ms: Option<f64>,
    /// Average response time, ms.
    pub avg_response_ms: Option<f64>,
    /// Average duration, ms.
    pub avg_duration_ms: Option<f64>,
    /// Ratings received.
    pub ratings: usize,
    /// Average rating (1-5).
    pub avg_rating: Option<f64>,
}

impl AgentStats {
    /// Adds the agent's ratings (scores 1-5).
    pub fn with_ratings(mut self, scores: &[u8]) -> Self {
        self.ratings = scores.len();
        self.avg_rating = (!scores.is_empty()).then(|| scores.iter().map(|s| *s as f64).sum::<f64>() / scores.len() as f64);
        self
    }
}

fn mean(values: &[u64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<u64>() as f64 / values.len() as f64)
}

/// Response delays of `agent` in one conversation's messages (in seq order): for each
/// run of visitor messages, from its first message (or `assigned_at`, if later) to the
/// agent's next message.
pub fn response_delays(messages: &[ChatMessage], agent: AgentId, assigned_at: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut waiting_since: Option<u64> = None;
    for m in messages {
        match m.sender {
            Participant::Visitor(_) => {
                waiting_since.get_or_insert(m.sent_at_ms.max(assigned_at));
            }
            Participant::Agent(a) if a == agent => {
                if let Some(since) = waiting_since.take() {
                    out.push(m.sent_at_ms.saturating_sub(since));
                }
            }
            _ => {}
        }
    }
    out
}

/// Figures for `agent` from the records of its conversations and, for each, its
/// messages since the assignment.
pub fn agent_stats(agent: AgentId, conversations: &[(ConversationRecord, Vec<ChatMessage>)]) -> AgentStats {
    let mine: Vec<_> = conversations.iter().filter(|(r, _)| r.agent == Some(agent)).collect();
    let (mut wait, mut first, mut resp, mut dur) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, messages) in &mine {
        if let (Some(q), Some(a)) = (r.queued_at_ms, r.assigned_at_ms) {
            wait.push(a.saturating_sub(q));
        }
        if let (Some(a), Some(f)) = (r.assigned_at_ms, r.first_agent_reply_at_ms) {
            first.push(f.saturating_sub(a));
        }
        if let (Some(a), Some(c)) = (r.assigned_at_ms, r.closed_at_ms) {
            dur.push(c.saturating_sub(a));
        }
        resp.extend(response_delays(messages, agent, r.assigned_at_ms.unwrap_or(0)));
    }
    AgentStats {
        agent: agent.0,
        conversations: mine.len(),
        closed: mine.iter().filter(|(r, _)| r.closed_at_ms.is_some()).count(),
        avg_wait_ms: mean(&wait),
        avg_first_response_ms: mean(&first),
        avg_response_ms: mean(&resp),
        avg_duration_ms: mean(&dur),
        ratings: 0,
        avg_rating: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::{ConversationId, ConversationState, GroupId, TenantId, VisitorId};

    fn msg(seq: u64, sender: Participant, at: u64) -> ChatMessage {
        ChatMessage { conversation: ConversationId(1), seq, sender, client_msg_id: seq, sent_at_ms: at, body: String::new() }
    }

    const V: Participant = Participant::Visitor(VisitorId(1));
    const A: Participant = Participant::Agent(AgentId(9));

    #[test]
    fn figures_match_a_hand_computed_scenario() {
        let rec = |id, queued, assigned, first, closed| ConversationRecord {
            id: ConversationId(id),
            tenant: TenantId(1),
            visitor: VisitorId(id),
            agent: Some(AgentId(9)),
            group: GroupId(0),
            state: ConversationState::Closed,
            queue_ticket: 0,
            created_at_ms: queued,
            queued_at_ms: Some(queued),
            assigned_at_ms: Some(assigned),
            first_agent_reply_at_ms: first,
            closed_at_ms: closed,
        };
        // Conversation 1: queued at 1000, assigned at 4000, visitor wrote at 1000 and
        // 6000, agent replied at 5000 and 9000, closed at 20000.
        let c1 = (rec(1, 1000, 4000, Some(5000), Some(20_000)), vec![msg(1, V, 1000), msg(2, A, 5000), msg(3, V, 6000), msg(4, V, 7000), msg(5, A, 9000)]);
        // Conversation 2: queued at 0, assigned at 1000, the agent never replied, open.
        let c2 = (rec(2, 0, 1000, None, None), vec![msg(1, V, 0)]);
        // Someone else's conversation does not count.
        let mut other = rec(3, 0, 99_999, Some(100_000), Some(200_000));
        other.agent = Some(AgentId(1));
        let stats = agent_stats(AgentId(9), &[c1, c2, (other, vec![])]);
        assert_eq!(stats.conversations, 2);
        assert_eq!(stats.closed, 1);
        assert_eq!(stats.avg_wait_ms, Some((3000.0 + 1000.0) / 2.0));
        assert_eq!(stats.avg_first_response_ms, Some(1000.0));
        // The visitor's first message (1000) waits from the assignment (4000) to 5000,
        // the run 6000-7000 waits until 9000: (1000 + 3000) / 2.
        assert_eq!(stats.avg_response_ms, Some(2000.0));
        assert_eq!(stats.avg_duration_ms, Some(16_000.0));
    }

    #[test]
    fn response_delays_count_each_run_of_visitor_messages_once() {
        let m = [msg(1, V, 0), msg(2, V, 10), msg(3, A, 30), msg(4, A, 40), msg(5, V, 50), msg(6, A, 55)];
        assert_eq!(response_delays(&m, AgentId(9), 0), vec![30, 5]);
        assert_eq!(response_delays(&m, AgentId(9), 20), vec![10, 5], "a run begun before the assignment counts from it");
    }
}
