//! End-of-run verification of the delivery rule. Pure code.
//!
//! Input: for every connection and conversation, what arrived in arrival order:
//! each sequence number with the identity of its message (writer side and the
//! writer's `client_msg_id`), from `Accepted` for the connection's own sends and
//! `Message` for the rest; and for every conversation the parties (identities)
//! that must receive it: its visitor and its assigned agent.
//!
//! Checks:
//! - per connection and conversation, the numbers are contiguous from the lowest
//!   seen, and none arrives after a higher one (`stream_gaps`, `reordered`);
//! - per party and conversation, over all of the party's connections (a reconnect
//!   resumes on a new connection), every number from 1 to the highest number anyone
//!   saw arrived, each message exactly once (`lost`, `duplicated`), and it is the
//!   same message everybody else saw under that number (a number reused for two
//!   messages is `conflicting_seqs`, and the message a party missed is `lost`).
//!   Every message a sender had accepted is therefore delivered exactly once to the
//!   other party, and a conversation nobody was assigned to loses all its messages.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use switchboard_protocol::ConversationId;

/// Index of a party (one logged-in identity) in a run.
pub type PartyId = usize;

/// Anomalies kept as examples per verification.
pub const MAX_EXAMPLES: usize = 20;

/// The identity of a message within its conversation: which side wrote it (the
/// conversation has one visitor and one agent) and the writer's id for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageKey {
    /// Written by the agent (else by the visitor).
    pub from_agent: bool,
    /// The writer's `client_msg_id`.
    pub client_msg_id: u64,
}

/// One sequence-numbered frame as it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// Its sequence number.
    pub seq: u64,
    /// Which message it carried.
    pub key: MessageKey,
    /// Carried by `Accepted` (else by `Message`).
    pub accepted: bool,
}

/// What one connection received in one conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Whose connection.
    pub party: PartyId,
    /// The party's connection number (a reconnect starts a new stream).
    pub connection: u64,
    /// The conversation.
    pub conversation: ConversationId,
    /// Arrivals in order.
    pub arrivals: Vec<Arrival>,
}

/// Who must receive every message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The conversation.
    pub id: ConversationId,
    /// Its visitor and its agent (fewer than two means no agent was assigned).
    pub parties: Vec<PartyId>,
}

/// What kind of violation an [`Anomaly`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnomalyKind {
    /// Never delivered to the party.
    Lost,
    /// Delivered to the party more than once.
    Duplicated,
    /// Arrived on a connection after a higher number.
    Reordered,
    /// Missing inside a connection's range.
    StreamGap,
    /// One number carried different messages.
    Conflicting,
}

/// One example violation, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Which rule.
    pub kind: AnomalyKind,
    /// Whose delivery (none for a conflict, which is about the conversation).
    pub party: Option<PartyId>,
    /// The conversation.
    pub conversation: ConversationId,
    /// The sequence number.
    pub seq: u64,
    /// Where it arrived: `connection:accepted` or `connection:message` (the
    /// connection it is missing on, for a stream gap).
    pub arrivals: Vec<String>,
}

/// The outcome of [`verify`]; every count but `conversations`, `streams` and
/// `deliveries_checked` must be zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Deliveries that never happened (party, conversation, message).
    pub lost: u64,
    /// Deliveries beyond the first (party, conversation, message).
    pub duplicated: u64,
    /// Numbers that arrived on a connection after a higher one.
    pub reordered: u64,
    /// Numbers missing inside a connection's contiguous range.
    pub stream_gaps: u64,
    /// Numbers that carried more than one message.
    pub conflicting_seqs: u64,
    /// Conversations without an assigned agent.
    pub unassigned_conversations: u64,
    /// Conversations checked.
    pub conversations: u64,
    /// Connection streams checked.
    pub streams: u64,
    /// (party, conversation, seq) deliveries expected.
    pub deliveries_checked: u64,
    /// The first few violations.
    pub anomalies: Vec<Anomaly>,
}

impl Verdict {
    /// Whether the run delivered everything exactly once and in order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.stream_gaps == 0 && self.conflicting_seqs == 0
    }

    /// Adds another run's counts (worker processes verify their own tenants).
    pub fn merge(&mut self, o: &Verdict) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.stream_gaps += o.stream_gaps;
        self.conflicting_seqs += o.conflicting_seqs;
        self.unassigned_conversations += o.unassigned_conversations;
        self.conversations += o.conversations;
        self.streams += o.streams;
        self.deliveries_checked += o.deliveries_checked;
        let room = MAX_EXAMPLES.saturating_sub(self.anomalies.len());
        self.anomalies.extend(o.anomalies.iter().take(room).cloned());
    }

    fn note(&mut self, anomaly: Anomaly) {
        if self.anomalies.len() < MAX_EXAMPLES {
            self.anomalies.push(anomaly);
        }
    }
}

/// Per party and conversation: for each number, the messages that arrived under it
/// and on which connections.
type Received = HashMap<u64, Vec<(MessageKey, String)>>;

/// Checks `streams` against `conversations` (see the module documentation).
/// Conversations seen in `streams` but not listed are checked with the parties seen.
pub fn verify(streams: &[Stream], conversations: &[Conversation]) -> Verdict {
    let mut v = Verdict { streams: streams.len() as u64, ..Verdict::default() };
    let mut received: HashMap<(PartyId, ConversationId), Received> = HashMap::new();
    let mut highest: HashMap<ConversationId, u64> = HashMap::new();
    let mut keys_at: HashMap<ConversationId, HashMap<u64, BTreeSet<MessageKey>>> = HashMap::new();
    let mut parties: BTreeMap<ConversationId, BTreeSet<PartyId>> = BTreeMap::new();
    for stream in streams {
        check_stream(stream, &mut v);
        let got = received.entry((stream.party, stream.conversation)).or_default();
        let keys = keys_at.entry(stream.conversation).or_default();
        let top = highest.entry(stream.conversation).or_default();
        for a in &stream.arrivals {
            let via = format!("{}:{}", stream.connection, if a.accepted { "accepted" } else { "message" });
            got.entry(a.seq).or_default().push((a.key, via));
            keys.entry(a.seq).or_default().insert(a.key);
            *top = (*top).max(a.seq);
        }
        parties.entry(stream.conversation).or_default().insert(stream.party);
    }
    for c in conversations {
        parties.entry(c.id).or_default().extend(c.parties.iter().copied());
    }
    let (no_keys, nothing) = (HashMap::new(), Received::new());
    for (&conversation, members) in &parties {
        v.conversations += 1;
        let last = highest.get(&conversation).copied().unwrap_or(0);
        let keys = keys_at.get(&conversation).unwrap_or(&no_keys);
        if members.len() < 2 {
            v.unassigned_conversations += 1;
            // Nobody received these messages on the other side.
            v.lost += last;
        }
        for (&seq, at) in keys {
            if at.len() > 1 {
                v.conflicting_seqs += 1;
                v.note(Anomaly { kind: AnomalyKind::Conflicting, party: None, conversation, seq, arrivals: Vec::new() });
            }
        }
        for &party in members {
            let got = received.get(&(party, conversation)).unwrap_or(&nothing);
            v.deliveries_checked += last;
            for seq in 1..=last {
                check_delivery(&mut v, party, conversation, seq, got.get(&seq).map_or(&[], |a| a.as_slice()), keys.get(&seq));
            }
        }
    }
    v
}

/// One party's deliveries of number `seq`: something arrived, each message once,
/// and every message anyone saw under that number.
fn check_delivery(
    v: &mut Verdict,
    party: PartyId,
    conversation: ConversationId,
    seq: u64,
    arrived: &[(MessageKey, String)],
    everyone: Option<&BTreeSet<MessageKey>>,
) {
    let example = |kind| Anomaly { kind, party: Some(party), conversation, seq, arrivals: arrived.iter().map(|a| a.1.clone()).collect() };
    if arrived.is_empty() {
        v.lost += 1;
        v.note(example(AnomalyKind::Lost));
        return;
    }
    let mut per_key: BTreeMap<MessageKey, u64> = BTreeMap::new();
    for (key, _) in arrived {
        *per_key.entry(*key).or_default() += 1;
    }
    let extra: u64 = per_key.values().map(|n| n - 1).sum();
    if extra > 0 {
        v.duplicated += extra;
        v.note(example(AnomalyKind::Duplicated));
    }
    let missing = everyone.map_or(0, |all| all.iter().filter(|k| !per_key.contains_key(k)).count() as u64);
    if missing > 0 {
        v.lost += missing;
        v.note(example(AnomalyKind::Lost));
    }
}

/// Per-connection order: duplicates are left to the party-level count.
fn check_stream(stream: &Stream, v: &mut Verdict) {
    let mut seen = HashSet::with_capacity(stream.arrivals.len());
    let mut max = 0;
    let example = |kind, seq| Anomaly {
        kind,
        party: Some(stream.party),
        conversation: stream.conversation,
        seq,
        arrivals: vec![stream.connection.to_string()],
    };
    for a in &stream.arrivals {
        if !seen.insert(a.seq) {
            continue;
        }
        if a.seq < max {
            v.reordered += 1;
            v.note(example(AnomalyKind::Reordered, a.seq));
        }
        max = max.max(a.seq);
    }
    let Some(&min) = seen.iter().min() else { return };
    let gaps = (max - min + 1) - seen.len() as u64;
    if gaps > 0 {
        v.stream_gaps += gaps;
        if let Some(seq) = (min..=max).find(|s| !seen.contains(s)) {
            v.note(example(AnomalyKind::StreamGap, seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fault injected into an otherwise clean run.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        /// Remove `seq` from stream `stream`.
        Drop { stream: usize, seq: u64 },
        /// Deliver `seq` a second time at the end of stream `stream`.
        Duplicate { stream: usize, seq: u64 },
        /// Swap positions `at` and `at + 1` of stream `stream`.
        Swap { stream: usize, at: usize },
        /// The server reuses `seq` for another message: the visitor (stream 0) gets
        /// both, the agent (stream 1) only the second.
        Reuse { seq: u64 },
    }

    /// Odd numbers are visitor messages, even ones agent replies.
    fn arrival(seq: u64) -> Arrival {
        Arrival { seq, key: MessageKey { from_agent: seq & 1 == 0, client_msg_id: seq }, accepted: false }
    }

    fn stream(party: PartyId, connection: u64, conversation: u64, seqs: impl IntoIterator<Item = u64>) -> Stream {
        Stream { party, connection, conversation: ConversationId(conversation), arrivals: seqs.into_iter().map(arrival).collect() }
    }

    /// `conversations` chats of `messages` each: party 2c is the visitor, 2c + 1 the agent.
    fn clean_run(conversations: u64, messages: u64) -> (Vec<Stream>, Vec<Conversation>) {
        let mut streams = Vec::new();
        let mut convs = Vec::new();
        for c in 0..conversations {
            let (visitor, agent) = (2 * c as usize, 2 * c as usize + 1);
            for party in [visitor, agent] {
                streams.push(stream(party, 1, c, 1..=messages));
            }
            convs.push(Conversation { id: ConversationId(c), parties: vec![visitor, agent] });
        }
        (streams, convs)
    }

    fn inject(streams: &mut Vec<Stream>, fault: Fault) {
        match fault {
            Fault::Drop { stream, seq } => streams[stream].arrivals.retain(|a| a.seq != seq),
            Fault::Duplicate { stream, seq } => streams[stream].arrivals.push(arrival(seq)),
            Fault::Swap { stream, at } => streams[stream].arrivals.swap(at, at + 1),
            Fault::Reuse { seq } => {
                let other = Arrival { seq, key: MessageKey { from_agent: false, client_msg_id: 999 }, accepted: true };
                streams.push(Stream { party: 0, connection: 2, conversation: ConversationId(0), arrivals: vec![other] });
                for a in streams[1].arrivals.iter_mut().filter(|a| a.seq == seq) {
                    *a = other;
                }
            }
        }
    }

    fn run_with(fault: Fault) -> Verdict {
        let (mut streams, convs) = clean_run(3, 10);
        inject(&mut streams, fault);
        verify(&streams, &convs)
    }

    #[test]
    fn a_clean_run_is_clean() {
        let (streams, convs) = clean_run(3, 10);
        let v = verify(&streams, &convs);
        assert!(v.is_clean(), "{v:?}");
        assert_eq!((v.conversations, v.streams, v.deliveries_checked), (3, 6, 60));
        assert!(v.anomalies.is_empty());
    }

    #[test]
    fn a_dropped_message_in_the_middle_is_lost_and_a_gap() {
        let v = run_with(Fault::Drop { stream: 1, seq: 5 });
        assert_eq!((v.lost, v.stream_gaps, v.duplicated, v.reordered), (1, 1, 0, 0), "{v:?}");
        assert!(!v.is_clean());
    }

    #[test]
    fn a_dropped_last_message_is_lost() {
        let v = run_with(Fault::Drop { stream: 3, seq: 10 });
        assert_eq!((v.lost, v.stream_gaps), (1, 0), "{v:?}");
    }

    #[test]
    fn a_dropped_own_accepted_is_lost_too() {
        // the visitor's stream misses the Accepted of its own message 1
        let v = run_with(Fault::Drop { stream: 0, seq: 1 });
        assert_eq!(v.lost, 1, "{v:?}");
    }

    #[test]
    fn a_duplicate_is_counted() {
        let v = run_with(Fault::Duplicate { stream: 1, seq: 3 });
        assert_eq!((v.duplicated, v.lost, v.reordered), (1, 0, 0), "{v:?}");
        assert_eq!(
            v.anomalies,
            vec![Anomaly {
                kind: AnomalyKind::Duplicated,
                party: Some(1),
                conversation: ConversationId(0),
                seq: 3,
                arrivals: vec!["1:message".into(), "1:message".into()]
            }]
        );
    }

    #[test]
    fn a_reorder_is_counted_without_loss() {
        let v = run_with(Fault::Swap { stream: 5, at: 4 });
        assert_eq!((v.reordered, v.lost, v.duplicated, v.stream_gaps), (1, 0, 0, 0), "{v:?}");
    }

    #[test]
    fn a_reused_number_is_a_conflict_and_the_overwritten_message_is_lost() {
        let v = run_with(Fault::Reuse { seq: 5 });
        assert_eq!((v.conflicting_seqs, v.lost, v.duplicated), (1, 1, 0), "{v:?}");
        assert!(!v.is_clean());
    }

    #[test]
    fn a_resumed_connection_continues_the_party_without_loss() {
        let (mut streams, convs) = clean_run(1, 10);
        streams[1] = stream(1, 1, 0, 1..=4);
        streams.push(stream(1, 2, 0, 5..=10));
        assert!(verify(&streams, &convs).is_clean());
        // a replay that overlaps the old connection is a duplicate
        streams[2].arrivals.insert(0, arrival(4));
        assert_eq!(verify(&streams, &convs).duplicated, 1);
    }

    #[test]
    fn a_conversation_without_an_agent_loses_its_messages() {
        let streams = vec![stream(0, 1, 7, 1..=3)];
        let convs = vec![Conversation { id: ConversationId(7), parties: vec![0] }];
        let v = verify(&streams, &convs);
        assert_eq!((v.unassigned_conversations, v.lost), (1, 3), "{v:?}");
    }

    #[test]
    fn an_agent_that_received_nothing_lost_everything() {
        let (mut streams, convs) = clean_run(1, 4);
        streams.remove(1);
        assert_eq!(verify(&streams, &convs).lost, 4);
    }

    #[test]
    fn verdicts_merge_by_summing() {
        let mut a = run_with(Fault::Drop { stream: 1, seq: 5 });
        let b = run_with(Fault::Duplicate { stream: 1, seq: 3 });
        a.merge(&b);
        assert_eq!((a.lost, a.duplicated, a.conversations), (1, 1, 6));
        assert_eq!(a.anomalies.len(), 3);
    }
}
