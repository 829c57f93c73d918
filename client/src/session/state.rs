//! The session's rules as plain synchronous code: frames and commands in, frames to
//! write and events to report out. No I/O and no clock of its own (`now` is passed
//! in), so every rule is unit-tested without a server.

use super::{Event, Observed, ObservedKind, Origin, SharedStats, Tap};
use crate::cursor::{CursorTracker, Observation};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::{
    Auth, ClientFrame, ConversationId, ConversationState, Cursor, ErrorCode, ErrorFrame, Hello, Participant,
    SendMessage, ServerFrame, Welcome, PROTOCOL_VERSION,
};

/// Largest `limit` of a gap-filling `Fetch`.
const MAX_GAP_FETCH: u64 = 1000;

/// What the application asked the session to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a message (kept until accepted, resent after a reconnect).
    Send(SendMessage),
    /// Read history; the answer comes as [`Event::History`].
    Fetch { conversation: ConversationId, after_seq: u64, limit: u32 },
    /// End a conversation.
    Close { conversation: ConversationId },
}

/// What the driver must do after the state handled an input.
#[derive(Debug)]
pub(crate) enum Output {
    /// Write this frame.
    Frame(ClientFrame),
    /// Report this to the application.
    Event(Event),
    /// Drop the connection (after writing the frames before this output); reconnect
    /// if `retry`.
    Disconnect { reason: String, retry: bool },
}

/// Tunables of [`SessionState`].
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Delay before acknowledging received messages (acks are batched per conversation).
    pub ack_delay: Duration,
    /// Attempts per message when the server answers `STORAGE_UNAVAILABLE`.
    pub max_send_attempts: u32,
    /// First retry delay after `STORAGE_UNAVAILABLE` (doubles per attempt).
    pub retry_backoff: Duration,
}

#[derive(Debug)]
struct Pending {
    conversation: Option<ConversationId>,
    body: String,
    /// Storage failures so far.
    failures: u32,
}

/// Identity, cursors, unacknowledged sends and acks of one session.
pub(crate) struct SessionState {
    auth: Auth,
    identity: Option<Participant>,
    max_message_len: u32,
    tracker: CursorTracker,
    pending: BTreeMap<u64, Pending>,
    /// Resends scheduled after storage failures: (when, client_msg_id).
    retries: BTreeSet<(Instant, u64)>,
    offline: Vec<Command>,
    ack_dirty: BTreeSet<ConversationId>,
    ack_due: Option<Instant>,
    connection: u64,
    app_fetches: HashMap<ConversationId, u32>,
    gap_fetches: HashSet<ConversationId>,
    tap: Option<Tap>,
    settings: Settings,
    stats: Arc<SharedStats>,
}

impl SessionState {
    pub(crate) fn new(auth: Auth, resume: &[Cursor], settings: Settings, tap: Option<Tap>, stats: Arc<SharedStats>) -> Self {
        SessionState {
            auth,
            identity: None,
            max_message_len: u32::MAX,
            tracker: CursorTracker::from_cursors(resume),
            pending: BTreeMap::new(),
            retries: BTreeSet::new(),
            offline: Vec::new(),
            ack_dirty: BTreeSet::new(),
            ack_due: None,
            connection: 0,
            app_fetches: HashMap::new(),
            gap_fetches: HashSet::new(),
            tap,
            settings,
            stats,
        }
    }

    /// The login frame for the next connection: current credentials and cursors.
    pub(crate) fn hello(&self) -> Hello {
        Hello { version: PROTOCOL_VERSION, auth: self.auth.clone(), resume: self.tracker.cursors() }
    }

    /// The credentials the next login will use.
    #[cfg(test)]
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Numbers the connections: the first login is connection 1.
    pub(crate) fn connection(&self) -> u64 {
        self.connection
    }

    /// The highest contiguous sequence number received in `conversation`.
    #[cfg(test)]
    pub(crate) fn cursor(&self, conversation: ConversationId) -> u64 {
        self.tracker.cursor(conversation)
    }

    /// A login succeeded: remember the identity, switch a new anonymous visitor to
    /// `Auth::Resume`, and resend everything not yet accepted.
    pub(crate) fn on_login(&mut self, welcome: &Welcome, now: Instant) -> Vec<Output> {
        self.connection += 1;
        self.identity = Some(welcome.identity);
        self.max_message_len = welcome.max_message_len;
        if let (Auth::Anonymous { tenant }, Some(token), Participant::Visitor(visitor)) =
            (&self.auth, &welcome.resume_token, welcome.identity)
        {
            self.auth = Auth::Resume { tenant: *tenant, visitor, token: token.clone() };
        }
        // Answers to fetches made on the old connection will never come.
        self.app_fetches.clear();
        self.gap_fetches.clear();
        self.retries.clear();
        let mut out: Vec<Output> = self
            .pending
            .iter()
            .map(|(&client_msg_id, p)| {
                Output::Frame(ClientFrame::Send(SendMessage {
                    client_msg_id,
                    conversation: p.conversation,
                    body: p.body.clone(),
                }))
            })
            .collect();
        for command in std::mem::take(&mut self.offline) {
            out.extend(self.on_command(command, now));
        }
        self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
        out
    }

    /// A command arriving while disconnected: kept for the next connection.
    /// Whether a sent message waits for its acceptance.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub(crate) fn on_command_offline(&mut self, command: Command) {
        match command {
            Command::Send(m) => {
                self.pending.insert(m.client_msg_id, Pending { conversation: m.conversation, body: m.body, failures: 0 });
                self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
            }
            other => self.offline.push(other),
        }
    }

    /// A command on a live connection.
    pub(crate) fn on_command(&mut self, command: Command, _now: Instant) -> Vec<Output> {
        match command {
            Command::Send(m) => {
                if m.body.len() as u64 > self.max_message_len as u64 {
                    return vec![Output::Event(Event::SendFailed {
                        client_msg_id: m.client_msg_id,
                        code: ErrorCode::MESSAGE_TOO_LARGE,
                        message: format!("body of {} bytes exceeds {}", m.body.len(), self.max_message_len),
                    })];
                }
                self.pending.insert(
                    m.client_msg_id,
                    Pending { conversation: m.conversation, body: m.body.clone(), failures: 0 },
                );
                self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
                vec![Output::Frame(ClientFrame::Send(m))]
            }
            Command::Fetch { conversation, after_seq, limit } => {
                *self.app_fetches.entry(conversation).or_default() += 1;
                vec![Output::Frame(ClientFrame::Fetch { conversation, after_seq, limit })]
            }
            Command::Close { conversation } => vec![Output::Frame(ClientFrame::Close { conversation })],
        }
    }

    /// A frame from the server.
    pub(crate) fn on_frame(&mut self, frame: ServerFrame, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match frame {
            ServerFrame::Pong => {}
            ServerFrame::Welcome(_) => {
                tracing::warn!(connection = self.connection, "ignoring a second welcome");
            }
            ServerFrame::Accepted { client_msg_id, conversation, seq } => {
                self.tap(conversation, seq, ObservedKind::Accepted { client_msg_id });
                let was_pending = self.pending.remove(&client_msg_id).is_some();
                self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
                match self.tracker.observe(conversation, seq) {
                    Observation::InOrder { .. } => self.mark_ack(conversation, now),
                    // The echo of a resend (the message was already delivered here):
                    // the server repeats the number, which is not a delivery.
                    Observation::Duplicate if was_pending || self.connection > 1 => {}
                    Observation::Duplicate => {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Observation::Early { expected } => self.on_gap(conversation, expected, seq, &mut out),
                }
                if was_pending {
                    out.push(Output::Event(Event::Accepted { client_msg_id, conversation, seq }));
                }
            }
            ServerFrame::Message(message) => {
                let kind = ObservedKind::Message { sender: message.sender, client_msg_id: message.client_msg_id };
                self.tap(message.conversation, message.seq, kind);
                match self.tracker.observe(message.conversation, message.seq) {
                    Observation::InOrder { .. } => {
                        self.mark_ack(message.conversation, now);
                        out.push(Output::Event(Event::Message { message, origin: Origin::Live }));
                    }
                    // The replay of an own message whose resend was answered first.
                    Observation::Duplicate if self.connection > 1 && Some(message.sender) == self.identity => {}
                    Observation::Duplicate => {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Observation::Early { expected } => {
                        self.on_gap(message.conversation, expected, message.seq, &mut out);
                        out.push(Output::Event(Event::Message { message, origin: Origin::Live }));
                    }
                }
            }
            ServerFrame::History { conversation, messages } => {
                if self.gap_fetches.remove(&conversation) {
                    for message in &messages {
                        if message.conversation != conversation {
                            continue;
                        }
                        match self.tracker.observe(conversation, message.seq) {
                            Observation::Duplicate => {}
                            Observation::InOrder { .. } | Observation::Early { .. } => {
                                self.mark_ack(conversation, now);
                                out.push(Output::Event(Event::Message { message: message.clone(), origin: Origin::History }));
                            }
                        }
                    }
                }
                match self.app_fetches.get_mut(&conversation) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            self.app_fetches.remove(&conversation);
                        }
                        out.push(Output::Event(Event::History { conversation, messages }));
                    }
                    _ => {}
                }
            }
            ServerFrame::RatingRequested { conversation } => out.push(Output::Event(Event::RatingRequested { conversation })),
            ServerFrame::Notes { conversation, notes } => out.push(Output::Event(Event::Notes { conversation, notes })),
            ServerFrame::VisitorContext(context) => out.push(Output::Event(Event::VisitorContext(context))),
            ServerFrame::QuickReplies { replies } => out.push(Output::Event(Event::QuickReplies(replies))),
            ServerFrame::QueueStatus { conversation, position, estimated_wait_secs } => {
                out.push(Output::Event(Event::Queue { conversation, position, estimated_wait_secs }));
            }
            ServerFrame::Conversation(update) => {
                match update.state {
                    ConversationState::Closed if self.tracker.cursor(update.conversation) >= update.last_seq => {
                        self.tracker.forget(update.conversation);
                        self.ack_dirty.remove(&update.conversation);
                    }
                    ConversationState::Closed => {}
                    _ => self.tracker.track(update.conversation),
                }
                out.push(Output::Event(Event::Conversation(update)));
            }
            ServerFrame::Error(e) => self.on_error(e, now, &mut out),
            ServerFrame::GoAway { reason } => {
                out.push(Output::Disconnect { reason: format!("server going away: {reason}"), retry: true });
            }
        }
        out
    }

    fn on_error(&mut self, e: ErrorFrame, now: Instant, out: &mut Vec<Output>) {
        let ErrorFrame { code, message, client_msg_id, fatal } = e;
        match client_msg_id {
            Some(id) if code == ErrorCode::STORAGE_UNAVAILABLE && self.pending.contains_key(&id) => {
                let max = self.settings.max_send_attempts;
                let backoff = self.settings.retry_backoff;
                if let Some(p) = self.pending.get_mut(&id) {
                    p.failures += 1;
                    if p.failures < max {
                        let factor = 1u32 << (p.failures - 1).min(10);
                        self.retries.insert((now + backoff.saturating_mul(factor), id));
                    } else {
                        self.pending.remove(&id);
                        out.push(Output::Event(Event::SendFailed { client_msg_id: id, code, message: message.clone() }));
                    }
                }
            }
            Some(id) => {
                self.pending.remove(&id);
                out.push(Output::Event(Event::SendFailed { client_msg_id: id, code, message: message.clone() }));
            }
            None => out.push(Output::Event(Event::Error { code, message: message.clone(), fatal })),
        }
        self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
        if fatal {
            let retry = !matches!(code, ErrorCode::AUTH_FAILED | ErrorCode::UNSUPPORTED_VERSION);
            out.push(Output::Disconnect { reason: format!("fatal error {code}: {message}"), retry });
        }
    }

    fn on_gap(&mut self, conversation: ConversationId, expected: u64, got: u64, out: &mut Vec<Output>) {
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        out.push(Output::Event(Event::Gap { conversation, expected, got }));
        if self.gap_fetches.insert(conversation) {
            let limit = got.saturating_sub(expected).clamp(1, MAX_GAP_FETCH) as u32;
            out.push(Output::Frame(ClientFrame::Fetch { conversation, after_seq: expected - 1, limit }));
        }
    }

    fn tap(&self, conversation: ConversationId, seq: u64, kind: ObservedKind) {
        if let Some(tap) = &self.tap {
            tap(&Observed { connection: self.connection, conversation, seq, kind });
        }
    }

    fn mark_ack(&mut self, conversation: ConversationId, now: Instant) {
        self.ack_dirty.insert(conversation);
        if self.ack_due.is_none() {
            self.ack_due = Some(now + self.settings.ack_delay);
        }
    }

    /// The next instant at which [`Self::due`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let retry = self.retries.first().map(|&(at, _)| at);
        match (self.ack_due, retry) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// Acks and storage retries that are due at `now`.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<ClientFrame> {
        let mut frames = Vec::new();
        if self.ack_due.is_some_and(|at| at <= now) {
            self.ack_due = None;
            for conversation in std::mem::take(&mut self.ack_dirty) {
                frames.push(ClientFrame::Ack { conversation, seq: self.tracker.cursor(conversation) });
            }
        }
        while let Some(&(at, client_msg_id)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            if let Some(p) = self.pending.get(&client_msg_id) {
                frames.push(ClientFrame::Send(SendMessage { client_msg_id, conversation: p.conversation, body: p.body.clone() }));
            }
        }
        frames
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
