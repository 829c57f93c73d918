//! A [`Job`]: one process's share of a scenario, after setup; and its [`Outcome`].
//! Both cross the pipe between a parent and its worker processes as JSON.

use crate::cli::TransportArg;
use crate::stats::Latency;
use crate::verify::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Which scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    /// Chat traffic with verification.
    Chat,
    /// Idle connections.
    Idle,
    /// Connection storm.
    Connect,
}

impl Scenario {
    /// `"chat"`, `"idle"` or `"connect"`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Chat => "chat",
            Scenario::Idle => "idle",
            Scenario::Connect => "connect",
        }
    }
}

/// An agent made by the setup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentCred {
    /// Agent id.
    pub id: u64,
    /// Its token.
    pub token: String,
}

/// Everything one process needs to run its share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The scenario.
    pub scenario: Scenario,
    /// Worker number, when run by a parent.
    pub worker: Option<usize>,
    /// Tenant of every identity of this job.
    pub tenant: u64,
    /// Agents (chat).
    pub agents: Vec<AgentCred>,
    /// Visitors (chat).
    pub visitors: u64,
    /// Connections (idle, connect).
    pub connections: u64,
    /// Visitor messages per second for this job (chat).
    pub rate: f64,
    /// Body size (chat).
    pub message_size: usize,
    /// Global number of this job's first connection (spreads targets and source IPs
    /// evenly across workers).
    pub first_index: u64,
    /// Client listener addresses.
    pub targets: Vec<SocketAddr>,
    /// Transport.
    pub transport: TransportArg,
    /// The node's QUIC certificate (DER), when the transport is QUIC.
    pub quic_cert_der: Vec<u8>,
    /// TLS server name for QUIC.
    pub server_name: String,
    /// Source IPs 127.0.0.1 ..= 127.0.0.N.
    pub source_ips: u8,
    /// Connects in flight.
    pub concurrency: u32,
    /// Measured phase.
    pub duration: Duration,
    /// Wait for in-flight messages (chat).
    pub drain: Duration,
    /// Limit per connect-and-login.
    pub connect_timeout: Duration,
    /// Limit on the whole connection phase.
    pub connect_phase: Duration,
}

impl Job {
    /// Connections this job opens.
    pub fn connection_count(&self) -> u64 {
        match self.scenario {
            Scenario::Chat => self.visitors + self.agents.len() as u64,
            Scenario::Idle | Scenario::Connect => self.connections,
        }
    }

    /// A bound on how long the job can take, used as its hard deadline.
    pub fn hard_limit(&self) -> Duration {
        self.connect_phase + self.duration + self.drain + Duration::from_secs(60)
    }
}

/// Figures of one job; a parent merges its workers' outcomes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Connections logged in.
    pub connections: u64,
    /// Connections that failed.
    pub connect_errors: u64,
    /// Failures by message (a few kinds).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Duration of the connection phase, seconds.
    pub connect_secs: f64,
    /// Transport connect latency (connect scenario).
    pub connect_latency: Latency,
    /// Login latency: `Hello` to `Welcome` (connect), connect plus login (others).
    pub login_latency: Latency,
    /// Send to `Accepted`.
    pub accept_latency: Latency,
    /// Send to delivery at the other party.
    pub deliver_latency: Latency,
    /// Messages sent.
    pub sent: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages delivered to the other party.
    pub delivered: u64,
    /// Sends refused by the server.
    pub send_failures: u64,
    /// Sends skipped because a visitor had too many unaccepted messages.
    pub throttled: u64,
    /// Error frames not about a send.
    pub error_events: u64,
    /// Reconnections made by sessions.
    pub reconnects: u64,
    /// Duplicates dropped by sessions (also counted by the verification).
    pub session_duplicates: u64,
    /// Gaps seen by sessions.
    pub session_gaps: u64,
    /// Length of the sending phase, seconds.
    pub measured_secs: f64,
    /// Frame bytes read during the measured phase and drain.
    pub wire_bytes_read: u64,
    /// Frame bytes written during the measured phase and drain.
    pub wire_bytes_written: u64,
    /// Frame bytes (both directions) during the idle phase.
    pub idle_bytes: u64,
    /// Length of the idle phase, seconds.
    pub idle_secs: f64,
    /// Heartbeat interval the node announced.
    pub heartbeat_secs: u32,
    /// Delivery verification (chat).
    pub verdict: Verdict,
    /// A few violations, described with the identities involved.
    pub anomaly_examples: Vec<String>,
}

/// Error kinds kept per outcome.
const MAX_ERROR_KINDS: usize = 10;

impl Outcome {
    /// Counts one failure of kind `message`.
    pub fn count_error(&mut self, message: &str) {
        if let Some(n) = self.errors_by_kind.get_mut(message) {
            *n += 1;
        } else if self.errors_by_kind.len() < MAX_ERROR_KINDS {
            self.errors_by_kind.insert(message.to_string(), 1);
        } else {
            *self.errors_by_kind.entry("other errors".into()).or_default() += 1;
        }
    }

    /// Adds a worker's outcome: counts and histograms add up, phase lengths take
    /// the longest.
    pub fn merge(&mut self, o: &Outcome) {
        self.connections += o.connections;
        self.connect_errors += o.connect_errors;
        for (kind, n) in &o.errors_by_kind {
            *self.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        self.connect_secs = self.connect_secs.max(o.connect_secs);
        self.connect_latency.merge(&o.connect_latency);
        self.login_latency.merge(&o.login_latency);
        self.accept_latency.merge(&o.accept_latency);
        self.deliver_latency.merge(&o.deliver_latency);
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.delivered += o.delivered;
        self.send_failures += o.send_failures;
        self.throttled += o.throttled;
        self.error_events += o.error_events;
        self.reconnects += o.reconnects;
        self.session_duplicates += o.session_duplicates;
        self.session_gaps += o.session_gaps;
        self.measured_secs = self.measured_secs.max(o.measured_secs);
        self.wire_bytes_read += o.wire_bytes_read;
        self.wire_bytes_written += o.wire_bytes_written;
        self.idle_bytes += o.idle_bytes;
        self.idle_secs = self.idle_secs.max(o.idle_secs);
        self.heartbeat_secs = self.heartbeat_secs.max(o.heartbeat_secs);
        self.verdict.merge(&o.verdict);
        let room = crate::verify::MAX_EXAMPLES.saturating_sub(self.anomaly_examples.len());
        self.anomaly_examples.extend(o.anomaly_examples.iter().take(room).cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_merge_counts_histograms_and_longest_phases() {
        let mut a = Outcome { sent: 10, measured_secs: 15.0, connections: 100, ..Outcome::default() };
        a.accept_latency.record(Duration::from_millis(2));
        a.count_error("refused");
        let mut b = Outcome { sent: 5, measured_secs: 15.5, connections: 50, ..Outcome::default() };
        b.accept_latency.record(Duration::from_millis(4));
        b.count_error("refused");
        b.verdict.lost = 1;
        let json = serde_json::to_string(&b).unwrap();
        let b: Outcome = serde_json::from_str(&json).unwrap();
        a.merge(&b);
        assert_eq!((a.sent, a.connections, a.verdict.lost), (15, 150, 1));
        assert_eq!(a.measured_secs, 15.5);
        assert_eq!(a.accept_latency.count(), 2);
        assert_eq!(a.errors_by_kind.get("refused"), Some(&2));
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut o = Outcome::default();
        for i in 0..50 {
            o.count_error(&format!("kind {i}"));
        }
        assert_eq!(o.errors_by_kind.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(o.errors_by_kind.get("other errors"), Some(&40));
    }
}
