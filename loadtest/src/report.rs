//! The final figures: one [`Report`] serialized to `--json` and printed as a table.

use crate::admin::RssSource;
use crate::cli::TransportArg;
use crate::job::{Outcome, Scenario};
use crate::stats::LatencySummary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_protocol::{ClientFrame, FrameCodec, ServerFrame};

/// The broker's memory around the idle phase.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// RSS before connecting, bytes.
    pub before: u64,
    /// RSS half-way through the idle phase, bytes.
    pub after: u64,
    /// Where it was read.
    pub source: RssSource,
}

/// What the report says about the run besides the outcome.
pub struct Context {
    /// Scenario.
    pub scenario: Scenario,
    /// Transport.
    pub transport: TransportArg,
    /// Processes that ran the load.
    pub workers: u64,
    /// Client listener addresses.
    pub targets: Vec<SocketAddr>,
    /// `--duration`.
    pub duration: Duration,
    /// The node's version.
    pub node_version: String,
    /// Idle only.
    pub memory: Option<Memory>,
    /// CPU used over the run: (broker cores, this process's cores), and broker RSS at the end.
    pub cpu: Option<(f64, f64)>,
    /// Broker RSS at the end of the run.
    pub rss_bytes_end: Option<u64>,
}

/// Every figure of a run. Keys are stable: scripts read the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `chat`, `idle` or `connect`.
    pub scenario: &'static str,
    /// `tcp` or `quic`.
    pub transport: &'static str,
    /// Processes that ran the load (1 = no worker processes).
    pub workers: u64,
    /// The node's version from `/v1/node`.
    pub node_version: String,
    /// Client listener addresses used.
    pub targets: Vec<String>,
    /// `--duration`.
    pub duration_secs: f64,
    /// Connections logged in.
    pub connections: u64,
    /// Connections (or logins) that failed.
    pub connect_errors: u64,
    /// Length of the connection phase.
    pub connect_secs: f64,
    /// Transport connects per second during the connection phase.
    pub connects_per_sec: f64,
    /// Completed logins per second during the connection phase.
    pub logins_per_sec: f64,
    /// Deliveries that never happened (see `verify`).
    pub lost: u64,
    /// Deliveries beyond the first.
    pub duplicated: u64,
    /// Numbers that arrived on a connection after a higher one.
    pub reordered: u64,
    /// Numbers missing inside one connection's range.
    pub stream_gaps: u64,
    /// Numbers that carried two different messages.
    pub conflicting_seqs: u64,
    /// Conversations no agent was assigned to.
    pub unassigned_conversations: u64,
    /// Conversations checked.
    pub conversations_verified: u64,
    /// (party, conversation, seq) deliveries checked.
    pub deliveries_checked: u64,
    /// Messages sent (visitor messages plus agent replies).
    pub sent: u64,
    /// Messages accepted (durable).
    pub accepted: u64,
    /// Messages delivered to the other party.
    pub delivered: u64,
    /// Sends the server refused for good.
    pub send_failures: u64,
    /// Sends skipped because a visitor had too many unaccepted messages.
    pub throttled: u64,
    /// Error frames not about a send.
    pub error_events: u64,
    /// Reconnections made by sessions.
    pub reconnects: u64,
    /// Duplicates the sessions dropped.
    pub session_duplicates_dropped: u64,
    /// Gaps the sessions saw.
    pub session_gaps: u64,
    /// Length of the sending phase (the per-second rates divide by it).
    pub measured_secs: f64,
    /// `sent` per second.
    pub sent_per_sec: f64,
    /// `accepted` per second.
    pub accepted_per_sec: f64,
    /// `delivered` per second.
    pub delivered_per_sec: f64,
    /// Send to `Accepted`, milliseconds.
    pub accept_latency_ms: LatencySummary,
    /// Send (time stamped in the body) to delivery at the other party, milliseconds.
    pub deliver_latency_ms: LatencySummary,
    /// TCP connect or QUIC handshake (connect scenario), milliseconds.
    pub connect_latency_ms: LatencySummary,
    /// `Hello` to `Welcome` (connect), connect plus login (idle), milliseconds.
    pub login_latency_ms: LatencySummary,
    /// Frame bytes the clients read during sending and drain.
    pub wire_bytes_read: u64,
    /// Frame bytes the clients wrote during sending and drain.
    pub wire_bytes_written: u64,
    /// Frame bytes in both directions per accepted message (transport overhead excluded).
    pub wire_bytes_per_message: f64,
    /// Failures by message.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first few verification failures.
    pub anomaly_examples: Vec<String>,
    /// Where the broker's memory was read: `proc` or `metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_source: Option<&'static str>,
    /// Broker RSS before connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes_before: Option<u64>,
    /// Broker RSS half-way through the idle phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes_after: Option<u64>,
    /// (after - before) / connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes_per_connection: Option<f64>,
    /// Broker CPU over the run, in cores (1.0 = one core busy).
    pub broker_cpu_cores: Option<f64>,
    /// This load generator's CPU over the run (workers not included), in cores.
    pub loadtest_cpu_cores: Option<f64>,
    /// Broker RSS at the end of the run.
    pub broker_rss_bytes_end: Option<u64>,
    /// Heartbeat interval the node announced.
    pub heartbeat_secs: u32,
    /// Length of the idle phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<f64>,
    /// Frame bytes per connection during the idle phase, scaled to an hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_bytes_per_connection_hour: Option<f64>,
    /// One Ping and one Pong per heartbeat interval, for an hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_bytes_per_connection_hour_expected: Option<f64>,
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round2(count as f64 / secs)
    } else {
        0.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Frame bytes of one heartbeat: a `Ping` and its `Pong`.
pub fn heartbeat_frame_bytes() -> u64 {
    let codec = FrameCodec::default();
    let ping = codec.encode_to_vec(&ClientFrame::Ping).map_or(5, |b| b.len());
    let pong = codec.encode_to_vec(&ServerFrame::Pong).map_or(5, |b| b.len());
    (ping + pong) as u64
}

/// Computes every figure.
pub fn build(c: &Context, o: &Outcome) -> Report {
    let v = &o.verdict;
    let idle = c.scenario == Scenario::Idle;
    let wire = o.wire_bytes_read + o.wire_bytes_written;
    let connections = o.connections.max(1) as f64;
    Report {
        scenario: c.scenario.name(),
        transport: c.transport.name(),
        workers: c.workers,
        node_version: c.node_version.clone(),
        targets: c.targets.iter().map(|t| t.to_string()).collect(),
        duration_secs: c.duration.as_secs_f64(),
        connections: o.connections,
        connect_errors: o.connect_errors,
        connect_secs: round2(o.connect_secs),
        connects_per_sec: match c.scenario {
            Scenario::Connect => per_sec(o.connect_latency.count(), o.connect_secs),
            _ => per_sec(o.connections, o.connect_secs),
        },
        logins_per_sec: per_sec(o.connections, o.connect_secs),
        lost: v.lost,
        duplicated: v.duplicated,
        reordered: v.reordered,
        stream_gaps: v.stream_gaps,
        conflicting_seqs: v.conflicting_seqs,
        unassigned_conversations: v.unassigned_conversations,
        conversations_verified: v.conversations,
        deliveries_checked: v.deliveries_checked,
        sent: o.sent,
        accepted: o.accepted,
        delivered: o.delivered,
        send_failures: o.send_failures,
        throttled: o.throttled,
        error_events: o.error_events,
        reconnects: o.reconnects,
        session_duplicates_dropped: o.session_duplicates,
        session_gaps: o.session_gaps,
        measured_secs: round2(o.measured_secs),
        sent_per_sec: per_sec(o.sent, o.measured_secs),
        accepted_per_sec: per_sec(o.accepted, o.measured_secs),
        delivered_per_sec: per_sec(o.delivered, o.measured_secs),
        accept_latency_ms: o.accept_latency.summary(),
        deliver_latency_ms: o.deliver_latency.summary(),
        connect_latency_ms: o.connect_latency.summary(),
        login_latency_ms: o.login_latency.summary(),
        wire_bytes_read: o.wire_bytes_read,
        wire_bytes_written: o.wire_bytes_written,
        wire_bytes_per_message: if o.accepted > 0 { round2(wire as f64 / o.accepted as f64) } else { 0.0 },
        errors_by_kind: o.errors_by_kind.clone(),
        anomaly_examples: o.anomaly_examples.clone(),
        rss_source: c.memory.map(|m| m.source.name()),
        rss_bytes_before: c.memory.map(|m| m.before),
        rss_bytes_after: c.memory.map(|m| m.after),
        rss_bytes_per_connection: c.memory.map(|m| round2((m.after as f64 - m.before as f64) / connections)),
        broker_cpu_cores: c.cpu.map(|(b, _)| round2(b)),
        loadtest_cpu_cores: c.cpu.map(|(_, l)| round2(l)),
        broker_rss_bytes_end: c.rss_bytes_end,
        heartbeat_secs: o.heartbeat_secs,
        idle_secs: idle.then_some(round2(o.idle_secs)),
        heartbeat_bytes_per_connection_hour: (idle && o.idle_secs > 0.0)
            .then(|| round2(o.idle_bytes as f64 / connections / o.idle_secs * 3600.0)),
        heartbeat_bytes_per_connection_hour_expected: (idle && o.heartbeat_secs > 0)
            .then(|| round2(heartbeat_frame_bytes() as f64 * 3600.0 / o.heartbeat_secs as f64)),
    }
}

fn latency_row(out: &mut String, name: &str, l: &LatencySummary) {
    if l.count > 0 {
        let _ = writeln!(
            out,
            "  {name:<22} p50 {:>9.3}  p99 {:>9.3}  p999 {:>9.3}  max {:>9.3}  (n={})",
            l.p50, l.p99, l.p999, l.max, l.count
        );
    }
}

/// The human summary printed on stdout.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "loadtest {} over {} ({} worker{}), node {}", r.scenario, r.transport, r.workers, if r.workers == 1 { "" } else { "s" }, r.node_version);
    let _ = writeln!(out, "  {:<22} {} ok, {} failed in {:.2} s ({:.1}/s)", "connections", r.connections, r.connect_errors, r.connect_secs, r.connects_per_sec);
    if r.scenario == "chat" {
        let _ = writeln!(out, "  {:<22} {:>10} {:>12} {:>12}", "", "count", "per sec", "");
        for (name, n, rate) in [("sent", r.sent, r.sent_per_sec), ("accepted", r.accepted, r.accepted_per_sec), ("delivered", r.delivered, r.delivered_per_sec)] {
            let _ = writeln!(out, "  {name:<22} {n:>10} {rate:>12.1}");
        }
        let _ = writeln!(out, "  latency (ms)");
    }
    latency_row(&mut out, "send -> accepted", &r.accept_latency_ms);
    latency_row(&mut out, "send -> delivered", &r.deliver_latency_ms);
    latency_row(&mut out, "connect", &r.connect_latency_ms);
    latency_row(&mut out, "login", &r.login_latency_ms);
    if r.scenario == "chat" {
        let _ = writeln!(out, "  {:<22} {:.1}", "wire bytes / message", r.wire_bytes_per_message);
        let verdict = if r.lost + r.duplicated + r.reordered + r.stream_gaps + r.conflicting_seqs == 0 { "OK" } else { "FAILED" };
        let _ = writeln!(
            out,
            "  {:<22} {verdict}: lost {} duplicated {} reordered {} stream gaps {} conflicting seqs {}",
            "verification", r.lost, r.duplicated, r.reordered, r.stream_gaps, r.conflicting_seqs
        );
        let _ = writeln!(
            out,
            "  {:<22} {} conversations ({} unassigned), {} deliveries checked",
            "", r.conversations_verified, r.unassigned_conversations, r.deliveries_checked
        );
        let _ = writeln!(out, "  {:<22} failed sends {} throttled {} error frames {} reconnects {}", "other", r.send_failures, r.throttled, r.error_events, r.reconnects);
    }
    if let (Some(before), Some(after), Some(per)) = (r.rss_bytes_before, r.rss_bytes_after, r.rss_bytes_per_connection) {
        let _ = writeln!(out, "  {:<22} {} -> {} bytes ({}), {:.0} bytes per connection", "broker rss", before, after, r.rss_source.unwrap_or("?"), per);
    }
    if let (Some(b), Some(l)) = (r.broker_cpu_cores, r.loadtest_cpu_cores) {
        let _ = writeln!(out, "  {:<22} broker {b:.2} cores, loadtest {l:.2} cores (over the whole run)", "cpu");
    }
    if let Some(rss) = r.broker_rss_bytes_end {
        let _ = writeln!(out, "  {:<22} {rss} bytes at the end", "broker rss");
    }
    if let (Some(measured), Some(expected)) = (r.heartbeat_bytes_per_connection_hour, r.heartbeat_bytes_per_connection_hour_expected) {
        let _ = writeln!(
            out,
            "  {:<22} {measured:.0} bytes/connection-hour measured over {:.1} s, {expected:.0} expected at a {} s heartbeat",
            "heartbeat traffic", r.idle_secs.unwrap_or(0.0), r.heartbeat_secs
        );
    }
    for example in &r.anomaly_examples {
        let _ = writeln!(out, "  anomaly: {example}");
    }
    for (kind, n) in &r.errors_by_kind {
        let _ = writeln!(out, "  error x{n}: {kind}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(scenario: Scenario, memory: Option<Memory>) -> Context {
        Context {
            scenario,
            transport: TransportArg::Tcp,
            workers: 1,
            targets: vec!["127.0.0.1:7000".parse().unwrap()],
            duration: Duration::from_secs(10),
            node_version: "0.1.0".into(),
            memory,
            cpu: Some((0.5, 0.25)),
            rss_bytes_end: Some(1 << 20),
        }
    }

    #[test]
    fn the_json_has_every_documented_key() {
        let mut o = Outcome { sent: 100, accepted: 100, delivered: 99, measured_secs: 10.0, connections: 10, ..Outcome::default() };
        o.accept_latency.record(Duration::from_millis(3));
        o.wire_bytes_read = 5000;
        o.wire_bytes_written = 5000;
        let json = serde_json::to_value(build(&context(Scenario::Chat, None), &o)).unwrap();
        for key in [
            "scenario", "transport", "workers", "lost", "duplicated", "reordered", "sent", "accepted", "delivered",
            "accepted_per_sec", "delivered_per_sec", "accept_latency_ms", "deliver_latency_ms", "wire_bytes_per_message",
            "connects_per_sec",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["accepted_per_sec"], 10.0);
        assert_eq!(json["wire_bytes_per_message"], 100.0);
        for q in ["p50", "p99", "p999", "max"] {
            assert!(json["accept_latency_ms"][q].is_number(), "{q}");
        }
        assert!(table(&build(&context(Scenario::Chat, None), &o)).contains("verification"));
    }

    #[test]
    fn idle_reports_memory_and_heartbeat_per_connection_hour() {
        let o = Outcome { connections: 1000, idle_bytes: 10_000, idle_secs: 36.0, heartbeat_secs: 270, ..Outcome::default() };
        let memory = Memory { before: 50_000_000, after: 60_000_000, source: RssSource::Proc };
        let r = build(&context(Scenario::Idle, Some(memory)), &o);
        assert_eq!(r.rss_bytes_per_connection, Some(10_000.0));
        assert_eq!(r.heartbeat_bytes_per_connection_hour, Some(1000.0));
        assert_eq!(heartbeat_frame_bytes(), 10);
        assert_eq!(r.heartbeat_bytes_per_connection_hour_expected, Some(round2(10.0 * 3600.0 / 270.0)));
        let json = serde_json::to_value(&r).unwrap();
        for key in ["connections", "rss_bytes_per_connection", "heartbeat_bytes_per_connection_hour"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert!(table(&r).contains("bytes per connection"));
    }
}
