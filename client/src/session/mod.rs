//! The high-level client: a [`Session`] keeps one identity connected.
//!
//! A background task owns the connection. It sends `Ping` when nothing else was
//! written for a heartbeat interval (and after 1 s of silence while a `Send` waits
//! for its `Accepted`, giving the connection up after 4 s of it), acknowledges
//! received messages, tracks a cursor
//! per conversation (dropping duplicates, fetching gaps), keeps every `Send` until
//! it is accepted, and on disconnect, `GoAway` or a fatal error reconnects with
//! bounded retries and backoff, resuming from its cursors (anonymous visitors switch
//! to `Auth::Resume` after their first login). The application reads
//! [`Event`]s with [`Session::next_event`] and acts through a [`SessionHandle`].

mod driver;
mod state;

use crate::connect::{connect_and_login, ConnectOptions};
use crate::connection::ByteCounters;
use crate::error::ClientError;
use state::{Command, SessionState, Settings};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_protocol::{
    Auth, ChatMessage, ConversationId, ConversationUpdate, Cursor, ErrorCode, Participant, SendMessage, Welcome,
};
use tokio::sync::mpsc;

/// How a session retries after losing its connection.
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// Attempts per outage before the session gives up ([`Event::Closed`]).
    pub max_attempts: u32,
    /// Delay before the second attempt (the first waits a random part of it); doubles
    /// per attempt.
    pub initial_backoff: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy { max_attempts: 10, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

/// One sequence-numbered frame as it arrived on a connection, before any
/// de-duplication: what a verifier needs to check the delivery rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Which connection of the session (1 = the first login).
    pub connection: u64,
    /// The conversation.
    pub conversation: ConversationId,
    /// The sequence number.
    pub seq: u64,
    /// Which frame carried it.
    pub kind: ObservedKind,
}

/// The frame behind an [`Observed`] number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedKind {
    /// `Accepted` for one of this session's sends.
    Accepted {
        /// The id the session gave the message.
        client_msg_id: u64,
    },
    /// A `Message`.
    Message {
        /// Who wrote it.
        sender: Participant,
        /// The sender's id for it.
        client_msg_id: u64,
    },
}

/// Called by the session task for every `Accepted` and `Message` frame; keep it cheap.
pub type Tap = Arc<dyn Fn(&Observed) + Send + Sync>;

/// Where a delivered message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Pushed by the server on the live connection.
    Live,
    /// Fetched by the session to fill a gap.
    History,
}

/// What a session reports to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message received for the first time (duplicates are dropped). Includes the
    /// session's own messages when the server replays them after a reconnect.
    Message {
        /// The message.
        message: ChatMessage,
        /// How it arrived.
        origin: Origin,
    },
    /// One of this session's sends is durable. Reported once per `client_msg_id`.
    Accepted {
        /// The id returned by [`SessionHandle::send`].
        client_msg_id: u64,
        /// The conversation it went into.
        conversation: ConversationId,
        /// Its sequence number.
        seq: u64,
    },
    /// A conversation of this identity was opened, queued, assigned or closed.
    Conversation(ConversationUpdate),
    /// The agent's quick replies.
    QuickReplies(Vec<switchboard_protocol::QuickReply>),
    /// Who the visitor of a conversation is (agents only).
    VisitorContext(switchboard_protocol::VisitorContext),
    /// Internal notes of a conversation (agents only).
    Notes {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
        /// The notes.
        notes: Vec<switchboard_protocol::InternalNote>,
    },
    /// The agent (or the end of the chat) asks for a rating.
    RatingRequested {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
    },
    /// A waiting conversation's place in the queue and the estimated wait.
    Queue {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
        /// 1 = next.
        position: u32,
        /// Rough estimate, seconds.
        estimated_wait_secs: u32,
    },
    /// The answer to [`SessionHandle::fetch`].
    History {
        /// The conversation.
        conversation: ConversationId,
        /// The messages, in sequence order.
        messages: Vec<ChatMessage>,
    },
    /// The server refused a send for good (or kept failing to store it).
    SendFailed {
        /// The id of the refused message.
        client_msg_id: u64,
        /// The server's code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// An error frame not about a particular send.
    Error {
        /// The server's code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// Whether the server closes the connection after it (the session reconnects).
        fatal: bool,
    },
    /// Sequence numbers `expected..got` of a conversation were skipped by the server;
    /// the session fetches them and delivers them with [`Origin::History`].
    Gap {
        /// The conversation.
        conversation: ConversationId,
        /// The first missing sequence number.
        expected: u64,
        /// The number that arrived instead.
        got: u64,
    },
    /// The connection was lost; the session is reconnecting.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The session logged in again and resumed from its cursors.
    Reconnected {
        /// The connection's number (1 = the first login).
        connection: u64,
        /// The server's welcome.
        welcome: Welcome,
    },
    /// The session has ended; no more events follow.
    Closed {
        /// Why (`"shutdown"` after [`Session::shutdown`]).
        reason: String,
    },
}

/// How a session is set up.
#[derive(Clone)]
pub struct SessionConfig {
    /// Where and how to connect (shared byte counters go here too).
    pub connect: ConnectOptions,
    /// Credentials for the first login.
    pub auth: Auth,
    /// Cursors to resume from (e.g. saved by the app); empty for a fresh device.
    pub resume: Vec<Cursor>,
    /// Other addresses to try, in turn, when reconnecting.
    pub alternate_addrs: Vec<SocketAddr>,
    /// Reconnection limits.
    pub reconnect: ReconnectPolicy,
    /// Delay before acknowledging received messages; acks within it are merged.
    pub ack_delay: Duration,
    /// Attempts per message when the server answers `STORAGE_UNAVAILABLE`.
    pub max_send_attempts: u32,
    /// Events buffered for the application; when full the session stops reading
    /// the connection (the server may then drop it as a slow consumer, and the
    /// session resumes).
    pub event_capacity: usize,
    /// Sees every sequence-numbered frame before de-duplication.
    pub tap: Option<Tap>,
    /// The first `client_msg_id` [`SessionHandle::send`] uses (default: the current
    /// time in microseconds, so a restarted app does not reuse ids).
    pub first_client_msg_id: Option<u64>,
}

impl SessionConfig {
    /// Defaults for everything but the connection and the credentials.
    pub fn new(connect: ConnectOptions, auth: Auth) -> SessionConfig {
        SessionConfig {
            connect,
            auth,
            resume: Vec::new(),
            alternate_addrs: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            ack_delay: Duration::from_millis(200),
            max_send_attempts: 5,
            event_capacity: 1024,
            tap: None,
            first_client_msg_id: None,
        }
    }
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("connect", &self.connect)
            .field("resume", &self.resume)
            .field("alternate_addrs", &self.alternate_addrs)
            .field("reconnect", &self.reconnect)
            .field("ack_delay", &self.ack_delay)
            .field("tap", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Successful logins (1 + reconnections).
    pub logins: u64,
    /// Sequence numbers received more than once (dropped).
    pub duplicates: u64,
    /// Gaps detected.
    pub gaps: u64,
    /// Sends not yet accepted.
    pub pending: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    logins: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    pending: AtomicU64,
}

/// State shared by the task and the handles.
struct Shared {
    welcome: Mutex<Welcome>,
    stats: Arc<SharedStats>,
    next_msg_id: AtomicU64,
    closed: AtomicBool,
    counters: Arc<ByteCounters>,
    /// Signalled by [`SessionHandle::shutdown`]; a permit is kept if the task is busy.
    stop: tokio::sync::Notify,
}

/// A cloneable handle to act on a session from any task.
#[derive(Clone)]
pub struct SessionHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl SessionHandle {
    /// Sends `body` (to the visitor's own conversation when `conversation` is
    /// `None`); returns the `client_msg_id` that the matching [`Event::Accepted`]
    /// carries. Waits only for room in the command queue.
    pub async fn send(&self, conversation: Option<ConversationId>, body: impl Into<String>) -> Result<u64, ClientError> {
        let id = self.shared.next_msg_id.fetch_add(1, Ordering::Relaxed);
        self.send_with_id(id, conversation, body).await?;
        Ok(id)
    }

    /// Like [`Self::send`] with an id of the caller's choosing (unique per sender and
    /// conversation; reusing one returns the earlier message's sequence number).
    pub async fn send_with_id(
        &self,
        client_msg_id: u64,
        conversation: Option<ConversationId>,
        body: impl Into<String>,
    ) -> Result<(), ClientError> {
        let message = SendMessage { client_msg_id, conversation, body: body.into() };
        self.command(Command::Send(message)).await
    }

    /// Asks for up to `limit` messages after `after_seq`; answered by [`Event::History`].
    pub async fn fetch(&self, conversation: ConversationId, after_seq: u64, limit: u32) -> Result<(), ClientError> {
        self.command(Command::Fetch { conversation, after_seq, limit }).await
    }

    /// Ends a conversation.
    pub async fn close_conversation(&self, conversation: ConversationId) -> Result<(), ClientError> {
        self.command(Command::Close { conversation }).await
    }

    /// Asks the session to stop: it closes the connection and reports
    /// [`Event::Closed`] (if the application still reads events).
    pub fn shutdown(&self) {
        self.shared.stop.notify_one();
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).await.map_err(|_| ClientError::SessionClosed)
    }

    /// The welcome of the latest login.
    pub fn welcome(&self) -> Welcome {
        self.shared.welcome.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Who the server knows this session as.
    pub fn identity(&self) -> Participant {
        self.welcome().identity
    }

    /// Counters so far.
    pub fn stats(&self) -> SessionStats {
        let s = &self.shared.stats;
        SessionStats {
            logins: s.logins.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
            pending: s.pending.load(Ordering::Relaxed),
        }
    }

    /// Frame bytes of all this session's connections.
    pub fn counters(&self) -> Arc<ByteCounters> {
        self.shared.counters.clone()
    }

    /// Whether the session task has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }
}

/// A logged-in identity kept connected by a background task.
pub struct Session {
    handle: SessionHandle,
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Connects and logs in once (errors, e.g. rejected credentials, are returned
    /// as they are), then starts the background task. Later losses are retried
    /// according to [`SessionConfig::reconnect`].
    pub async fn connect(mut config: SessionConfig) -> Result<Session, ClientError> {
        let counters = config.connect.counters.get_or_insert_with(ByteCounters::new).clone();
        let stats = Arc::new(SharedStats::default());
        let settings = Settings {
            ack_delay: config.ack_delay,
            max_send_attempts: config.max_send_attempts.max(1),
            retry_backoff: Duration::from_millis(100),
        };
        let mut state = SessionState::new(config.auth.clone(), &config.resume, settings, config.tap.clone(), stats.clone());
        let (connection, welcome) = connect_and_login(&config.connect, state.hello()).await?;
        stats.logins.fetch_add(1, Ordering::Relaxed);
        let first_outputs = state.on_login(&welcome, Instant::now());
        let first_id = config.first_client_msg_id.unwrap_or_else(default_first_msg_id);
        let shared = Arc::new(Shared {
            welcome: Mutex::new(welcome.clone()),
            stats,
            next_msg_id: AtomicU64::new(first_id),
            closed: AtomicBool::new(false),
            counters,
            stop: tokio::sync::Notify::new(),
        });
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let driver = driver::Driver::new(state, config, commands_rx, events_tx, shared.clone());
        let task = tokio::spawn(driver.run(connection, welcome, first_outputs));
        Ok(Session { handle: SessionHandle { commands: commands_tx, shared }, events: events_rx, task })
    }

    /// The next event; `None` once the session has ended and every event was read.
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// A handle for sending from other tasks.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// See [`SessionHandle::send`].
    pub async fn send(&self, conversation: Option<ConversationId>, body: impl Into<String>) -> Result<u64, ClientError> {
        self.handle.send(conversation, body).await
    }

    /// See [`SessionHandle::welcome`].
    pub fn welcome(&self) -> Welcome {
        self.handle.welcome()
    }

    /// See [`SessionHandle::identity`].
    pub fn identity(&self) -> Participant {
        self.handle.identity()
    }

    /// See [`SessionHandle::stats`].
    pub fn stats(&self) -> SessionStats {
        self.handle.stats()
    }

    /// Stops the session: closes the connection and waits (at most 5 s) for the task.
    /// Events not yet read are discarded.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        self.events.close();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

fn default_first_msg_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
        .max(1)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
