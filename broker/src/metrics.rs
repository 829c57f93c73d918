//! Every metric the node exports, declared once, and the Prometheus exporter.
//!
//! Latency and size metrics are real Prometheus histograms with explicit buckets (the
//! exporter's default would be a summary, which cannot be aggregated across pods).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use switchboard_raft_store::metric_names as store;

/// Gauge: open client connections, by `transport`.
pub const CONNECTIONS: &str = "switchboard_connections";
/// Counter: client connections accepted, by `transport`.
pub const CONNECTIONS_OPENED: &str = "switchboard_connections_opened_total";
/// Counter: clients relayed to their tenant's node, by `result` (relayed, unreachable).
pub const FORWARDED: &str = "switchboard_forwarded_connections_total";
/// Gauge: client connections being relayed to their tenant's node.
pub const FORWARDED_OPEN: &str = "switchboard_forwarded_connections";
/// Counter: tenants this node took over from a home that stopped answering, by result.
pub const TENANT_TAKEOVERS: &str = "switchboard_tenant_takeovers_total";
/// Counter: shard leaderships this node handed to another voter, by `result`.
pub const HANDOVERS: &str = "switchboard_raft_handovers_total";
/// Counter: logins, by `kind` (visitor, agent) and `result` (ok, rejected).
pub const LOGINS: &str = "switchboard_logins_total";
/// Counter: messages made durable and acknowledged.
pub const MESSAGES_ACCEPTED: &str = "switchboard_messages_accepted_total";
/// Counter: resent messages answered with their original seq.
pub const MESSAGES_DUPLICATE: &str = "switchboard_messages_duplicate_total";
/// Counter: message frames queued to connections (live and catch-up).
pub const MESSAGES_DELIVERED: &str = "switchboard_messages_delivered_total";
/// Histogram: seconds from a `Send` arriving to its `Accepted` being queued.
pub const ACCEPT_SECONDS: &str = "switchboard_message_accept_seconds";
/// Counter: frames rejected, by `code`.
pub const FRAMES_REJECTED: &str = "switchboard_frames_rejected_total";
/// Counter: connections closed because their outbound queue overflowed.
pub const SLOW_CONSUMERS: &str = "switchboard_slow_consumer_disconnects_total";
/// Gauge: conversations queued or assigned.
pub const CONVERSATIONS_ACTIVE: &str = "switchboard_conversations_active";
/// Gauge: conversations waiting for an agent.
pub const CONVERSATIONS_QUEUED: &str = "switchboard_conversations_queued";
/// Counter: bot replies, by `outcome` (answered, suggested, no_match, handed_off).
pub const BOT_REPLIES: &str = "switchboard_bot_replies_total";
/// Counter: conversations closed while only the bot had talked (resolved by the bot).
pub const BOT_RESOLVED: &str = "switchboard_bot_resolved_conversations_total";
/// Counter: conversations the bot handed to a human.
pub const BOT_HANDOFFS: &str = "switchboard_bot_handoffs_total";
/// Counter: chats moved to another agent because the assigned one did not reply in time.
pub const AUTO_TRANSFERS: &str = "switchboard_auto_transfers_total";
/// Counter: conversations refused because the queue (and its overflow) was full.
pub const QUEUE_FULL: &str = "switchboard_queue_full_total";
/// Gauge: agents with at least one connection.
pub const SEATS_ONLINE: &str = "switchboard_seats_online";
/// Gauge: shard replicas this node hosts.
pub const SHARDS_HOSTED: &str = "switchboard_raft_shards_hosted";
/// Gauge: shards this node leads.
pub const SHARDS_LED: &str = "switchboard_raft_shards_led";
/// Gauge: hosted shard replicas that know of no leader.
pub const SHARDS_LEADERLESS: &str = "switchboard_raft_shards_leaderless";
/// Gauge: the most entries any replica is behind, over the shards this node leads.
pub const REPLICATION_LAG: &str = "switchboard_raft_replication_lag_max_entries";
/// Gauge: 1 while this node leads the control plane.
pub const CONTROL_LEADER: &str = "switchboard_raft_control_leader";
/// Gauge: 1 while this node cannot reach a quorum of the control plane (it then
/// serves none of its tenants).
pub const CUT_OFF: &str = "switchboard_cluster_cut_off";
/// Counter: peer links closed, by reason (`closed`, `silent`, `refused`, `error`).
pub const PEER_LINKS_CLOSED: &str = crate::cluster::tcp::PEER_LINKS_CLOSED;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4096.0];

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(store::COMMIT_BATCH_OPS.into()), BATCH_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(store::RAFT_SYNC_APPENDS.into()), BATCH_BUCKETS))
                .map(|b| b.build_recorder())
                .expect("bucket lists are non-empty constants");
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(CONNECTIONS, "Open client connections.");
    describe_counter!(CONNECTIONS_OPENED, "Client connections accepted.");
    describe_counter!(FORWARDED, "Clients relayed to the node serving their tenant, by result.");
    describe_gauge!(FORWARDED_OPEN, "Client connections being relayed to the node serving their tenant.");
    describe_counter!(TENANT_TAKEOVERS, "Tenants this node took over after their home stopped answering, by result.");
    describe_gauge!(CUT_OFF, "1 while this node cannot reach a quorum of the control plane and serves none of its tenants.");
    describe_counter!(HANDOVERS, "Shard leaderships this node handed to another voter (to the preferred replica, or before stopping), by result.");
    describe_counter!(LOGINS, "Login attempts by kind and result.");
    describe_counter!(MESSAGES_ACCEPTED, "Chat messages made durable and acknowledged.");
    describe_counter!(MESSAGES_DUPLICATE, "Resent chat messages answered with their original sequence number.");
    describe_counter!(MESSAGES_DELIVERED, "Chat message frames queued to client connections.");
    describe_histogram!(ACCEPT_SECONDS, Unit::Seconds, "Time from a Send frame arriving to its Accepted frame being queued.");
    describe_counter!(FRAMES_REJECTED, "Client frames rejected, by error code.");
    describe_counter!(SLOW_CONSUMERS, "Connections closed because the client did not read.");
    describe_gauge!(CONVERSATIONS_ACTIVE, "Conversations queued or assigned.");
    describe_gauge!(CONVERSATIONS_QUEUED, "Conversations waiting for an agent.");
    describe_counter!(BOT_REPLIES, "Bot replies by outcome.");
    describe_counter!(BOT_RESOLVED, "Conversations closed while the bot was in charge.");
    describe_counter!(BOT_HANDOFFS, "Conversations the bot handed to a human.");
    describe_counter!(AUTO_TRANSFERS, "Chats moved because the assigned agent did not reply in time.");
    describe_counter!(QUEUE_FULL, "Conversations refused because the queue was full.");
    describe_gauge!(SEATS_ONLINE, "Agents with at least one open connection.");
    describe_gauge!(SHARDS_HOSTED, "Shard replicas this node hosts.");
    describe_gauge!(SHARDS_LED, "Shards this node leads.");
    describe_gauge!(SHARDS_LEADERLESS, "Shard replicas on this node that know of no leader (writes to them wait).");
    describe_gauge!(REPLICATION_LAG, "Most entries any replica is behind, over the shards this node leads.");
    describe_gauge!(CONTROL_LEADER, "1 while this node leads the control plane.");
    describe_counter!(PEER_LINKS_CLOSED, "Peer links (to other nodes) closed, by reason.");
    describe_histogram!(store::COMMIT_BATCH_OPS, "Operations per group-commit batch.");
    describe_histogram!(store::COMMIT_SECONDS, Unit::Seconds, "Time to write and fsync one group-commit batch.");
    describe_histogram!(store::RAFT_SYNC_SECONDS, Unit::Seconds, "Time to fsync the write-ahead log for raft log appends.");
    describe_histogram!(store::RAFT_SYNC_APPENDS, "Raft log appends (of any shard) made durable by one fsync.");
    describe_counter!(store::COMMIT_ERRORS, "Group-commit batches that failed.");
}

/// Sets the conversation gauges from the directory (walks it: call periodically).
pub fn set_conversation_gauges(directory: &crate::routing::Directory) {
    let (queued, assigned) = directory.counts();
    ::metrics::gauge!(CONVERSATIONS_QUEUED).set(queued as f64);
    ::metrics::gauge!(CONVERSATIONS_ACTIVE).set((queued + assigned) as f64);
}

/// Sets the raft gauges from the node's replicas (call periodically).
pub fn set_cluster_gauges(node: &crate::cluster::ClusterNode) {
    let replicas = node.replicas();
    let led: Vec<_> = replicas.iter().filter(|r| r.state == openraft::ServerState::Leader).collect();
    ::metrics::gauge!(SHARDS_HOSTED).set(replicas.len() as f64);
    ::metrics::gauge!(SHARDS_LED).set(led.len() as f64);
    ::metrics::gauge!(SHARDS_LEADERLESS).set(replicas.iter().filter(|r| r.leader.is_none()).count() as f64);
    ::metrics::gauge!(REPLICATION_LAG).set(led.iter().flat_map(|r| r.lag.values().copied()).max().unwrap_or(0) as f64);
    let control = node.control().metrics().borrow().clone();
    ::metrics::gauge!(CONTROL_LEADER).set(if control.current_leader == Some(node.id()) { 1.0 } else { 0.0 });
    ::metrics::gauge!(CUT_OFF).set(if node.is_cut_off() { 1.0 } else { 0.0 });
}

/// The exporter's text plus process figures read from /proc.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    if let Some((rss, cpu)) = process_stats() {
        out.push_str(&format!(
            "# HELP switchboard_process_resident_memory_bytes Resident memory of the node process.\n\
             # TYPE switchboard_process_resident_memory_bytes gauge\n\
             switchboard_process_resident_memory_bytes {rss}\n\
             # HELP switchboard_process_cpu_seconds_total CPU time used by the node process.\n\
             # TYPE switchboard_process_cpu_seconds_total counter\n\
             switchboard_process_cpu_seconds_total {cpu:.3}\n"
        ));
    }
    out
}

/// (resident bytes, cpu seconds) of this process, from /proc (Linux only).
pub fn process_stats() -> Option<(u64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((rss_kb * 1024, ticks / hz.max(1.0)))
}
