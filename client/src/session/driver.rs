//! The session task: owns the connection, feeds frames, commands and timers to
//! [`SessionState`], writes what it asks for, reports events, and reconnects.

use super::state::{Command, Output, SessionState};
use super::{Event, SessionConfig, Shared};
use crate::connect::connect_and_login;
use crate::connection::{Connection, FrameReceiver, FrameSender};
use crate::error::ClientError;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::{ClientFrame, Welcome};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// A write that takes longer than this means the server stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra silence tolerated beyond two heartbeat intervals before the connection is
/// considered dead.
const SILENCE_GRACE: Duration = Duration::from_secs(5);
/// While a sent message waits for its `Accepted`, silence this long brings a `Ping`
/// (a live server answers at once, even while the message is still being made
/// durable)...
const WAITING_PING: Duration = Duration::from_secs(1);
/// ...and silence this long means the connection is dead, however long the
/// heartbeat: the message is sent again on a new connection, to another node if
/// there is one.
const WAITING_SILENCE: Duration = Duration::from_secs(4);

/// How one connection ended.
enum End {
    /// The application asked to stop, or dropped every handle.
    Shutdown,
    /// The application dropped the event receiver.
    EventsDropped,
    /// The connection failed; reconnect if `retry`.
    Lost { reason: String, retry: bool },
}

/// The background task of one session.
pub(super) struct Driver {
    state: SessionState,
    config: SessionConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    /// Rotates through the configured addresses, one per reconnect attempt,
    /// starting with the first alternate ("reconnect to any node").
    next_addr: usize,
}

impl Driver {
    pub(super) fn new(
        state: SessionState,
        config: SessionConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        shared: Arc<Shared>,
    ) -> Driver {
        Driver { state, config, commands, events, shared, next_addr: 1 }
    }

    /// Runs until shutdown or until reconnecting is given up.
    pub(super) async fn run(mut self, connection: Connection, welcome: Welcome, first_outputs: Vec<Output>) {
        let mut current = Some((connection, welcome, first_outputs));
        while let Some((connection, welcome, outputs)) = current.take() {
            let end = self.drive(connection, &welcome, outputs).await;
            let (reason, retry) = match end {
                End::Shutdown => {
                    self.emit(Event::Closed { reason: "shutdown".into() }).await;
                    break;
                }
                End::EventsDropped => break,
                End::Lost { reason, retry } => (reason, retry),
            };
            tracing::debug!(%reason, retry, "session connection lost");
            if !self.emit(Event::Disconnected { reason: reason.clone() }).await {
                break;
            }
            if !retry {
                self.emit(Event::Closed { reason }).await;
                break;
            }
            match self.reconnect().await {
                Ok(Some((connection, welcome))) => {
                    let outputs = self.on_login(&welcome);
                    let event = Event::Reconnected { connection: self.state.connection(), welcome: welcome.clone() };
                    if !self.emit(event).await {
                        break;
                    }
                    current = Some((connection, welcome, outputs));
                }
                Ok(None) => {
                    self.emit(Event::Closed { reason: "shutdown".into() }).await;
                    break;
                }
                Err(e) => {
                    self.emit(Event::Closed { reason: format!("reconnecting failed: {e}") }).await;
                    break;
                }
            }
        }
        self.shared.closed.store(true, Ordering::Relaxed);
    }

    fn on_login(&mut self, welcome: &Welcome) -> Vec<Output> {
        self.shared.stats.logins.fetch_add(1, Ordering::Relaxed);
        *self.shared.welcome.lock().unwrap_or_else(|p| p.into_inner()) = welcome.clone();
        self.state.on_login(welcome, std::time::Instant::now())
    }

    /// Reports an event; false when the application no longer listens or asked
    /// to stop while the event queue was full.
    async fn emit(&self, event: Event) -> bool {
        tokio::select! {
            sent = self.events.send(event) => sent.is_ok(),
            _ = self.shared.stop.notified() => false,
        }
    }

    /// Serves one connection until it ends.
    async fn drive(&mut self, connection: Connection, welcome: &Welcome, first: Vec<Output>) -> End {
        let (mut tx, mut rx): (FrameSender, FrameReceiver) = connection.split();
        let heartbeat = Duration::from_secs(welcome.heartbeat_secs.max(1) as u64);
        let silence_limit = heartbeat * 2 + SILENCE_GRACE;
        let mut last_write = Instant::now();
        let mut last_read = Instant::now();
        // Since when a sent message has been waiting for its answer.
        let mut waiting: Option<Instant> = None;
        let mut outputs = first;
        loop {
            if let Some(end) = self.apply(&mut tx, &mut outputs, &mut last_write).await {
                return end;
            }
            waiting = match (self.state.has_pending(), waiting) {
                (false, _) => None,
                (true, since) => since.or_else(|| Some(Instant::now())),
            };
            // Silence counts from the later of the last frame read and the start of
            // the wait.
            let quiet = waiting.map(|since| since.max(last_read));
            let timer = self.state.next_deadline().map(Instant::from_std);
            tokio::select! {
                frame = rx.recv() => match frame {
                    Ok(Some(frame)) => {
                        last_read = Instant::now();
                        outputs = self.state.on_frame(frame, std::time::Instant::now());
                    }
                    Ok(None) => return End::Lost { reason: "connection closed by the server".into(), retry: true },
                    Err(ClientError::Frame(e)) if e.is_recoverable() => {
                        tracing::warn!(error = %e, "skipping a malformed frame from the server");
                    }
                    Err(e) => return End::Lost { reason: e.to_string(), retry: true },
                },
                command = self.commands.recv() => match command {
                    None => return End::Shutdown,
                    Some(command) => outputs = self.state.on_command(command, std::time::Instant::now()),
                },
                _ = self.shared.stop.notified() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), tx.close()).await;
                    return End::Shutdown;
                }
                _ = sleep_until(last_write + heartbeat) => outputs = vec![Output::Frame(ClientFrame::Ping)],
                _ = sleep_until(quiet.map_or(last_write, |q| q.max(last_write)) + WAITING_PING), if quiet.is_some() => {
                    outputs = vec![Output::Frame(ClientFrame::Ping)];
                }
                _ = sleep_until(last_read + silence_limit) => {
                    return End::Lost { reason: format!("nothing received for {silence_limit:?}"), retry: true };
                }
                _ = sleep_until(quiet.unwrap_or(last_read) + WAITING_SILENCE), if quiet.is_some() => {
                    return End::Lost { reason: format!("nothing received for {WAITING_SILENCE:?} while a message waited for its acceptance"), retry: true };
                }
                _ = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {}
            }
        }
    }

    /// Writes the frames among `outputs` (plus due acks and retries), then reports
    /// the events. Returns how the connection ends, if it does.
    async fn apply(&mut self, tx: &mut FrameSender, outputs: &mut Vec<Output>, last_write: &mut Instant) -> Option<End> {
        let mut frames = Vec::new();
        let mut events = Vec::new();
        let mut disconnect = None;
        for output in outputs.drain(..) {
            match output {
                Output::Frame(f) if disconnect.is_none() => frames.push(f),
                Output::Frame(_) => {}
                Output::Event(e) => events.push(e),
                Output::Disconnect { reason, retry } => {
                    disconnect.get_or_insert(End::Lost { reason, retry });
                }
            }
        }
        if disconnect.is_none() {
            frames.extend(self.state.due(std::time::Instant::now()));
        }
        if !frames.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, tx.send_all(&frames)).await {
                Ok(Ok(())) => *last_write = Instant::now(),
                Ok(Err(e)) => disconnect = disconnect.or(Some(End::Lost { reason: e.to_string(), retry: true })),
                Err(_) => {
                    let e = ClientError::WriteTimeout { after: WRITE_TIMEOUT };
                    disconnect = disconnect.or(Some(End::Lost { reason: e.to_string(), retry: true }));
                }
            }
        }
        for event in events {
            if !self.emit(event).await {
                return Some(End::EventsDropped);
            }
        }
        disconnect
    }

    /// Tries to log in again, with backoff. `Ok(None)` when the application asked to
    /// stop meanwhile. Commands arriving meanwhile are kept for the new connection.
    async fn reconnect(&mut self) -> Result<Option<(Connection, Welcome)>, ClientError> {
        let policy = self.config.reconnect.clone();
        let mut addrs = vec![self.config.connect.addr];
        addrs.extend(self.config.alternate_addrs.iter().copied());
        let mut last_error = ClientError::Closed;
        for attempt in 0..policy.max_attempts.max(1) {
            let delay = backoff(&policy, attempt);
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    command = self.commands.recv() => match command {
                        None => return Ok(None),
                        Some(command) => self.state.on_command_offline(command),
                    },
                    _ = self.shared.stop.notified() => return Ok(None),
                }
            }
            let mut options = self.config.connect.clone();
            options.addr = addrs[self.next_addr % addrs.len()];
            self.next_addr = self.next_addr.wrapping_add(1);
            let login = tokio::select! {
                login = connect_and_login(&options, self.state.hello()) => login,
                _ = self.shared.stop.notified() => return Ok(None),
            };
            match login {
                Ok(ok) => return Ok(Some(ok)),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::debug!(attempt, addr = %options.addr, error = %e, "reconnect attempt failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }
}

/// Delay before reconnect attempt `attempt` (0-based): a random part of the initial
/// backoff first (so many clients do not reconnect in step), then doubling, capped,
/// with up to 25 % jitter.
fn backoff(policy: &super::ReconnectPolicy, attempt: u32) -> Duration {
    let initial = policy.initial_backoff.max(Duration::from_millis(1));
    let mut rng = rand::thread_rng();
    if attempt == 0 {
        return initial.mul_f64(rng.gen_range(0.0..1.0));
    }
    let base = initial.saturating_mul(1u32 << (attempt - 1).min(16)).min(policy.max_backoff);
    base.mul_f64(rng.gen_range(0.75..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ReconnectPolicy;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = ReconnectPolicy { max_attempts: 20, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2) };
        assert!(backoff(&p, 0) <= Duration::from_millis(100));
        let third = backoff(&p, 3);
        assert!(third >= Duration::from_millis(300) && third <= Duration::from_millis(400), "{third:?}");
        for attempt in 5..20 {
            assert!(backoff(&p, attempt) <= Duration::from_secs(2));
        }
    }
}
