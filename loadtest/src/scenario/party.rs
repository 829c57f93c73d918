//! One chat participant: a visitor that sends at its share of the rate, or an
//! agent that replies once to every visitor message; plus the tap that records,
//! per connection and conversation, the sequence numbers that arrived.

use super::{body_stamp, now_nanos, stamped_body};
use crate::stats::{Latency, Live};
use crate::verify::{Arrival, MessageKey, Stream};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{Event, Observed, ObservedKind, Session, SessionHandle, Tap};
use switchboard_protocol::{AgentId, ConversationId, Participant, VisitorId};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// Unaccepted messages a visitor may have before it skips sends.
const MAX_IN_FLIGHT: usize = 10_000;

/// The phases of a chat run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Visitors send.
    Run,
    /// Visitors stopped; agents still reply; in-flight messages arrive.
    Drain,
    /// Everyone stops.
    Stop,
}

/// What one session's connections received, before any de-duplication.
#[derive(Debug, Default)]
pub struct Recorder {
    agent: bool,
    streams: HashMap<(u64, ConversationId), Vec<Arrival>>,
    /// Own messages seen on resumed connections (2 and up), by (connection,
    /// conversation, seq, message): whether a `Message` carried it (else only `Accepted`).
    own_resumed: HashMap<(u64, ConversationId, u64, MessageKey), bool>,
}

impl Recorder {
    /// A recorder for an agent's (or a visitor's) session, as a [`Tap`].
    pub fn tap(agent: bool) -> (Arc<Mutex<Recorder>>, Tap) {
        let recorder = Arc::new(Mutex::new(Recorder { agent, ..Recorder::default() }));
        let sink = recorder.clone();
        let tap: Tap = Arc::new(move |o: &Observed| sink.lock().unwrap_or_else(|p| p.into_inner()).observe(o));
        (recorder, tap)
    }

    /// Records one numbered frame.
    ///
    /// After a reconnect the session resends what was not yet accepted. When the
    /// original had been stored, the server delivers it once (as `Accepted`, or as
    /// a replayed `Message`) and also answers the resend with an `Accepted` that
    /// repeats the number, which is not a delivery. So on connections after the
    /// first, an own message counts once however many `Accepted` frames repeat it,
    /// whichever comes first; only a second `Message` is a duplicate.
    pub fn observe(&mut self, o: &Observed) {
        let key = match o.kind {
            ObservedKind::Accepted { client_msg_id } => MessageKey { from_agent: self.agent, client_msg_id },
            ObservedKind::Message { sender, client_msg_id } => {
                MessageKey { from_agent: matches!(sender, Participant::Agent(_)), client_msg_id }
            }
        };
        if o.connection > 1 && key.from_agent == self.agent {
            let is_message = matches!(o.kind, ObservedKind::Message { .. });
            match self.own_resumed.get_mut(&(o.connection, o.conversation, o.seq, key)) {
                None => {
                    self.own_resumed.insert((o.connection, o.conversation, o.seq, key), is_message);
                }
                // A repeated Accepted, or the Message after an echoed Accepted.
                Some(message_seen) if !is_message || !*message_seen => {
                    *message_seen |= is_message;
                    return;
                }
                Some(_) => {}
            }
        }
        self.streams.entry((o.connection, o.conversation)).or_default().push(Arrival { seq: o.seq, key, accepted: matches!(o.kind, ObservedKind::Accepted { .. }) });
    }

    /// The recorded streams of party `party`.
    pub fn streams(&self, party: usize) -> Vec<Stream> {
        self.streams
            .iter()
            .map(|(&(connection, conversation), arrivals)| Stream { party, connection, conversation, arrivals: arrivals.clone() })
            .collect()
    }
}

/// What a participant does.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// Sends one message per `interval` on average.
    Visitor {
        /// Mean time between sends.
        interval: Duration,
    },
    /// Replies to every visitor message.
    Agent,
}

/// What a participant task returns.
pub struct PartyResult {
    /// Who it was.
    pub identity: Participant,
    /// What its connections received.
    pub recorder: Arc<Mutex<Recorder>>,
    /// (conversation, visitor, agent) from conversation updates.
    pub assignments: Vec<(ConversationId, VisitorId, Option<AgentId>)>,
    /// Conversations its own messages went into.
    pub own_conversations: BTreeSet<ConversationId>,
    /// Send to `Accepted`.
    pub accept: Latency,
    /// Send to delivery here.
    pub deliver: Latency,
    /// Sends refused.
    pub send_failures: u64,
    /// Sends skipped (too many unaccepted).
    pub throttled: u64,
    /// Error frames.
    pub error_events: u64,
    /// Session counters at the end.
    pub stats: switchboard_client::SessionStats,
}

/// One participant's loop state.
struct Party {
    handle: SessionHandle,
    role: Role,
    agent: bool,
    live: Arc<Live>,
    message_size: usize,
    sent_at: HashMap<u64, Instant>,
    result: PartyResult,
}

/// Runs a participant until the phase is `Stop`, its session ends, or `hard_stop`.
pub async fn run(
    mut session: Session,
    recorder: Arc<Mutex<Recorder>>,
    role: Role,
    message_size: usize,
    live: Arc<Live>,
    mut phase: watch::Receiver<Phase>,
    hard_stop: Instant,
) -> PartyResult {
    let identity = session.identity();
    let agent = matches!(identity, Participant::Agent(_));
    let mut party = Party {
        handle: session.handle(),
        role,
        agent,
        live,
        message_size,
        sent_at: HashMap::new(),
        result: PartyResult {
            identity,
            recorder,
            assignments: Vec::new(),
            own_conversations: BTreeSet::new(),
            accept: Latency::new(),
            deliver: Latency::new(),
            send_failures: 0,
            throttled: 0,
            error_events: 0,
            stats: Default::default(),
        },
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut next_send = match role {
        Role::Visitor { interval } => Some(Instant::now() + interval.mul_f64(rng.gen_range(0.0..1.0))),
        Role::Agent => None,
    };
    let mut connected = true;
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Stop {
            break;
        }
        let send_at = next_send.filter(|_| now_phase == Phase::Run);
        tokio::select! {
            _ = sleep_until(send_at.unwrap_or(hard_stop)), if send_at.is_some() => {
                if let (Role::Visitor { interval }, Some(at)) = (role, next_send) {
                    if !party.send(None).await {
                        break;
                    }
                    let next = at + interval.mul_f64(rng.gen_range(0.5..1.5));
                    // After a stall, do not burst to catch up.
                    let floor = Instant::now().checked_sub(interval).unwrap_or(at);
                    next_send = Some(next.max(floor));
                }
            }
            changed = phase.changed() => if changed.is_err() { break },
            event = session.next_event() => match event {
                None => break,
                Some(event) => {
                    if !party.on_event(event, &mut connected, now_phase).await {
                        break;
                    }
                }
            },
            _ = sleep_until(hard_stop) => break,
        }
    }
    if connected {
        party.live.connections.fetch_sub(1, Ordering::Relaxed);
    }
    party.result.stats = session.stats();
    session.shutdown().await;
    party.result
}

impl Party {
    /// Sends a stamped message; false when the session is gone.
    async fn send(&mut self, conversation: Option<ConversationId>) -> bool {
        if self.sent_at.len() >= MAX_IN_FLIGHT {
            self.result.throttled += 1;
            return true;
        }
        let started = Instant::now();
        match self.handle.send(conversation, stamped_body(self.message_size)).await {
            Ok(id) => {
                self.sent_at.insert(id, started);
                Live::bump(&self.live.sent);
                true
            }
            Err(_) => false,
        }
    }

    /// Handles one session event; false when the session has ended.
    async fn on_event(&mut self, event: Event, connected: &mut bool, phase: Phase) -> bool {
        match event {
            Event::Accepted { client_msg_id, conversation, .. } => {
                if let Some(started) = self.sent_at.remove(&client_msg_id) {
                    self.result.accept.record(started.elapsed());
                }
                self.result.own_conversations.insert(conversation);
                Live::bump(&self.live.accepted);
            }
            Event::Message { message, .. } => {
                let from_agent = matches!(message.sender, Participant::Agent(_));
                if from_agent == self.agent {
                    return true; // own message replayed after a reconnect
                }
                Live::bump(&self.live.delivered);
                if let Some(stamp) = body_stamp(&message.body) {
                    self.result.deliver.record_micros(now_nanos().saturating_sub(stamp) / 1000);
                }
                if matches!(self.role, Role::Agent) && phase != Phase::Stop {
                    return self.send(Some(message.conversation)).await;
                }
            }
            Event::Conversation(update) => {
                self.result.assignments.push((update.conversation, update.visitor, update.agent));
            }
            Event::SendFailed { client_msg_id, .. } => {
                self.sent_at.remove(&client_msg_id);
                self.result.send_failures += 1;
                Live::bump(&self.live.failed);
                Live::bump(&self.live.errors);
            }
            Event::Error { .. } => {
                self.result.error_events += 1;
                Live::bump(&self.live.errors);
            }
            Event::Disconnected { .. } => {
                if std::mem::replace(connected, false) {
                    self.live.connections.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Event::Reconnected { .. } => {
                if !std::mem::replace(connected, true) {
                    Live::bump(&self.live.connections);
                }
            }
            Event::Closed { .. } => return false,
            Event::History { .. } | Event::Gap { .. } | Event::Queue { .. } | Event::RatingRequested { .. } | Event::Notes { .. } | Event::VisitorContext(_) | Event::QuickReplies(_) => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(connection: u64, seq: u64, kind: ObservedKind) -> Observed {
        Observed { connection, conversation: ConversationId(1), seq, kind }
    }

    #[test]
    fn the_echo_of_a_resend_after_its_replay_is_not_recorded() {
        let (recorder, tap) = Recorder::tap(false);
        let me = Participant::Visitor(VisitorId(3));
        let agent = Participant::Agent(AgentId(1));
        tap(&observed(1, 1, ObservedKind::Accepted { client_msg_id: 10 }));
        tap(&observed(1, 2, ObservedKind::Message { sender: agent, client_msg_id: 1 }));
        // reconnect: message 3 (own, sent before the drop) is replayed, then its resend is answered
        tap(&observed(2, 3, ObservedKind::Message { sender: me, client_msg_id: 11 }));
        tap(&observed(2, 3, ObservedKind::Accepted { client_msg_id: 11 }));
        let mut streams = recorder.lock().unwrap().streams(0);
        streams.sort_by_key(|s| s.connection);
        let seqs = |s: &Stream| s.arrivals.iter().map(|a| a.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&streams[0]), vec![1, 2]);
        assert_eq!(seqs(&streams[1]), vec![3]);
        assert_eq!(streams[1].arrivals[0].key, MessageKey { from_agent: false, client_msg_id: 11 });
    }

    #[test]
    fn the_echo_before_the_replay_is_recorded_once_too() {
        let (recorder, tap) = Recorder::tap(true);
        let me = Participant::Agent(AgentId(1));
        tap(&observed(2, 7, ObservedKind::Accepted { client_msg_id: 5 }));
        tap(&observed(2, 7, ObservedKind::Message { sender: me, client_msg_id: 5 }));
        assert_eq!(recorder.lock().unwrap().streams(0)[0].arrivals.len(), 1);
        // on the first connection both frames are a real duplicate
        tap(&observed(1, 3, ObservedKind::Accepted { client_msg_id: 4 }));
        tap(&observed(1, 3, ObservedKind::Message { sender: me, client_msg_id: 4 }));
        let streams = recorder.lock().unwrap().streams(0);
        let first = streams.iter().find(|s| s.connection == 1).unwrap();
        assert_eq!(first.arrivals.len(), 2);
    }

    #[test]
    fn a_repeated_accepted_after_a_reconnect_is_an_echo() {
        let (recorder, tap) = Recorder::tap(true);
        let me = Participant::Agent(AgentId(1));
        tap(&observed(2, 4, ObservedKind::Accepted { client_msg_id: 8 }));
        tap(&observed(2, 4, ObservedKind::Accepted { client_msg_id: 8 }));
        assert_eq!(recorder.lock().unwrap().streams(0)[0].arrivals.len(), 1);
        // but a message replayed twice is a duplicate
        tap(&observed(2, 5, ObservedKind::Message { sender: me, client_msg_id: 9 }));
        tap(&observed(2, 5, ObservedKind::Message { sender: me, client_msg_id: 9 }));
        assert_eq!(recorder.lock().unwrap().streams(0)[0].arrivals.len(), 3);
    }

    #[test]
    fn a_repeated_message_from_the_other_party_is_recorded_twice() {
        let (recorder, tap) = Recorder::tap(true);
        let visitor = Participant::Visitor(VisitorId(3));
        tap(&observed(1, 1, ObservedKind::Message { sender: visitor, client_msg_id: 1 }));
        tap(&observed(1, 1, ObservedKind::Message { sender: visitor, client_msg_id: 1 }));
        assert_eq!(recorder.lock().unwrap().streams(0)[0].arrivals.len(), 2);
    }
}
