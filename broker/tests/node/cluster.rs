//! Three `switchboard` processes on loopback form one cluster over the TCP peer link.

use crate::support::{create_tenant, metric_value, wait_until, wait_until_or, Node, Raw};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::{Auth, Cursor, Participant};

const WAIT: Duration = Duration::from_secs(60);

pub(crate) fn status(node: &Node) -> Option<Value> {
    ureq::get(&node.url("/v1/cluster")).set("authorization", &format!("Bearer {}", node.admin_token)).call().ok()?.into_json().ok()
}

/// As `node` sees it: every node in `ids` is Active, every shard has `replicas` nodes in
/// the table and a leader among `ids`.
pub(crate) fn settled(node: &Node, ids: &[u64], replicas: usize) -> bool {
    let Some(s) = status(node) else { return false };
    let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
    let active = ids.iter().all(|id| nodes.iter().any(|n| n["id"] == *id && n["state"] == "Active"));
    let shards = s["shards"].as_array().cloned().unwrap_or_default();
    active
        && !shards.is_empty()
        && shards.iter().all(|sh| {
            sh["replicas"].as_array().is_some_and(|r| r.len() == replicas) && sh["leader"].as_u64().is_some_and(|l| ids.contains(&l))
        })
}

/// Waits until [`settled`]; on timeout fails with what `node` sees, its log's tail and
/// any panic in the logs of `all`.
pub(crate) fn wait_settled(what: &str, node: &Node, all: &[Node], ids: &[u64], replicas: usize) {
    wait_until_or(what, WAIT, || settled(node, ids, replicas), || {
        let seen = status(node).unwrap_or_default();
        let shards: Vec<String> = seen["shards"].as_array().cloned().unwrap_or_default().iter().map(|s| format!("{} {} leader {} here {}", s["shard"], s["replicas"], s["leader"], s["here"])).collect();
        let log = strip_ansi(&node.log());
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!("nodes: {}\n{}\nlog tail:\n{}\npanics:\n{}", seen["nodes"], shards.join("\n"), tail.into_iter().rev().collect::<Vec<_>>().join("\n"), panics_in(all))
    });
}

/// The first panics in the logs of `nodes`, with some context.
pub(crate) fn panics_in(nodes: &[Node]) -> String {
    let mut out = String::new();
    for (i, n) in nodes.iter().enumerate() {
        let log = strip_ansi(&n.log());
        let lines: Vec<&str> = log.lines().collect();
        for (k, _) in lines.iter().enumerate().filter(|(_, l)| l.contains("panicked at")).take(2) {
            out += &format!("node {}:\n{}\n", i + 1, lines[k.saturating_sub(2)..(k + 12).min(lines.len())].join("\n"));
        }
    }
    out
}

/// As `node` sees it, no replica of a shard it leads is behind.
pub(crate) fn no_lag(node: &Node) -> bool {
    let s = status(node).unwrap_or_default();
    s["shards"].as_array().cloned().unwrap_or_default().iter().all(|sh| sh["here"]["lag"].as_object().is_none_or(|lag| lag.values().all(|v| v == 0)))
}

pub(crate) fn leaders(node: &Node) -> Vec<(u64, u64)> {
    let s = status(node).unwrap_or_default();
    s["nodes"].as_array().cloned().unwrap_or_default().iter().map(|n| (n["id"].as_u64().unwrap_or(0), n["leads"].as_u64().unwrap_or(0))).collect()
}

/// Waits until node `id` leads some shards, as another of `nodes` sees it.
pub(crate) fn wait_leads_some(nodes: &[Node], id: u64) {
    let other = if id == 1 { &nodes[1] } else { &nodes[0] };
    wait_until(&format!("node {id} leads some shards"), WAIT, || leaders(other).iter().any(|(n, count)| *n == id && *count > 0));
}

#[test]
fn three_processes_form_a_cluster_survive_a_kill_9_take_the_node_back_and_hand_off_leaders_on_sigterm() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let common = ["--shards", "8", "--log", "info,openraft=error,switchboard_broker=debug"];
    let mut nodes = vec![Node::start(dirs[0].path(), &[&common[..], &["--node-id", "1"]].concat())];
    let seed = nodes[0].peer.to_string();
    for id in 2..=3u64 {
        let id_s = id.to_string();
        // Node 3 comes back on its peer address after the kill: one no outgoing
        // connection can take meanwhile.
        let peer = stable_addr();
        nodes.push(Node::start(dirs[id as usize - 1].path(), &[&common[..], &["--node-id", &id_s, "--seeds", &seed, "--peer-addr", &peer]].concat()));
    }
    for (i, n) in nodes.iter().enumerate() {
        wait_settled(&format!("node {} sees three active nodes and a leader for every shard", i + 1), n, &nodes, &[1, 2, 3], 3);
    }
    // Leaders are spread: every node leads some of the 8 shards.
    wait_until("every node leads a shard", WAIT, || {
        let l = leaders(&nodes[0]);
        l.iter().all(|(_, n)| *n > 0) && l.iter().map(|(_, n)| n).sum::<u64>() == 8
    });

    // kill -9 node 3: the two others elect leaders for its shards.
    let peer3 = nodes[2].peer.to_string();
    nodes[2].kill9();
    let killed = Instant::now();
    for n in &nodes[..2] {
        wait_settled("the survivors lead every shard", n, &nodes, &[1, 2], 3);
    }
    eprintln!("every shard had a leader again {:?} after the kill", killed.elapsed());
    for n in &nodes[..2] {
        n.assert_no_panic();
    }

    // Node 3 restarts from its data dir on its old peer address (no seeds needed: it
    // has state) and catches up.
    nodes[2] = Node::start(dirs[2].path(), &[&common[..], &["--node-id", "3", "--peer-addr", &peer3]].concat());
    wait_settled("node 3 is back with every shard's leader known", &nodes[2], &nodes, &[1, 2, 3], 3);
    wait_until("no replica lags", WAIT, || no_lag(&nodes[0]));
    // The leaders of the shards node 3 is the preferred replica of hand them back.
    wait_until("node 3 leads shards again", WAIT, || leaders(&nodes[0]).iter().any(|(id, n)| *id == 3 && *n > 0));
    let handed: u64 = nodes[..2].iter().map(|n| metric_value(n, "switchboard_raft_handovers_total{result=\"ok\"}")).sum();
    assert!(handed > 0, "the shards went back to node 3 by handover");
    for n in &nodes {
        n.assert_no_panic();
    }

    // SIGTERM node 1: it hands its leaderships to the others before it exits.
    let status = nodes[0].terminate();
    assert!(status.success(), "{status}");
    let log = nodes[0].log();
    let line = log.lines().find(|l| l.contains("leaderships handed off")).unwrap_or_else(|| panic!("no hand-off logged:\n{log}"));
    let line = strip_ansi(line);
    eprintln!("{line}");
    let field = |name: &str| -> u64 {
        let rest = &line[line.find(&format!("{name}=")).map(|i| i + name.len() + 1).unwrap_or(line.len())..];
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap_or(0)
    };
    assert!(field("led") > 0 && field("handed_off") == field("led"), "{line}");
    for n in &nodes[1..] {
        wait_settled("nodes 2 and 3 lead every shard", n, &nodes, &[2, 3], 3);
    }
}

/// The last `lines` lines of `node`'s log, without colour codes.
pub(crate) fn log_tail(node: &Node, lines: usize) -> String {
    let log = strip_ansi(&node.log());
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// `text` without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in text.chars() {
        match (escaped, c) {
            (false, '\x1b') => escaped = true,
            (false, c) => out.push(c),
            (true, 'm') => escaped = false,
            (true, _) => {}
        }
    }
    out
}

/// A free loopback address below the kernel's ephemeral port range, so no outgoing
/// connection can take its port while its node restarts on it.
fn stable_addr() -> String {
    use rand::Rng;
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768);
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(low.saturating_sub(12_000).max(1024)..low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("no free port below {low}");
}

/// Starts node 1 and, joined through it, nodes 2..=count (8 shards), each with peer
/// and TCP addresses that stay theirs across restarts ([`stable_addr`]).
fn cluster(dirs: &[tempfile::TempDir]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let (id, peer, tcp) = ((i + 1).to_string(), stable_addr(), stable_addr());
        let mut args = vec!["--shards", "8", "--node-id", &id, "--peer-addr", &peer, "--tcp-addr", &tcp];
        let seed = nodes.first().map(|n| n.peer.to_string());
        if let Some(seed) = &seed {
            args.extend(["--seeds", seed.as_str()]);
        }
        nodes.push(Node::start(dir.path(), &args));
    }
    nodes
}

/// `switchboard cluster ARGS --url <node> --admin-token ...`: (success, stdout + stderr).
fn cli(node: &Node, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("cluster")
        .args(args)
        .args(["--url", &node.url(""), "--admin-token", &node.admin_token])
        .output()
        .expect("run switchboard cluster");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_under_traffic_hands_over_its_replicas_and_is_removed() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = settled_cluster(&dirs);
    let (ok, text) = cli(&nodes[1], &["status"]);
    assert!(ok && text.contains("shards below 3 replicas: 0"), "{text}");
    // Not before it is drained.
    let (ok, text) = cli(&nodes[0], &["remove", "3"]);
    assert!(!ok && text.contains("409") && text.contains("drain it first"), "{text}");

    // A visitor on node 1 keeps writing while node 3 drains.
    let tenant = create_tenant(&nodes[0], "acme");
    let (mut visitor, _) = Raw::login(nodes[0].tcp, Auth::Anonymous { tenant: tenant.id }, vec![]).await;
    let (conversation, _) = visitor.send_accepted(1, None, "m1").await;
    let drained = Arc::new(AtomicBool::new(false));
    let writing = drained.clone();
    let progress = Arc::new(AtomicU64::new(1));
    let written = progress.clone();
    let writer = tokio::spawn(async move {
        let mut sent = 1;
        let mut slowest = Duration::ZERO;
        // Until the drain is over (at most 20 000 messages).
        while !writing.load(Ordering::Acquire) && sent < 20_000 {
            sent += 1;
            let started = Instant::now();
            let (_, seq) = visitor.send_accepted(sent, Some(conversation), &format!("m{sent}")).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(seq, sent, "every message accepted in order");
            written.store(sent, Ordering::Release);
        }
        (sent, slowest)
    });
    let count = || progress.load(Ordering::Acquire);
    wait_until("the visitor is writing", WAIT, || count() >= 50);
    let (ok, text) = cli(&nodes[1], &["drain", "3"]);
    assert!(ok, "{text}");
    wait_until("node 3 holds no replica and every shard has two", WAIT, || {
        let s = status(&nodes[0]).unwrap_or_default();
        let shards = s["shards"].as_array().cloned().unwrap_or_default();
        let draining = s["nodes"].as_array().cloned().unwrap_or_default().iter().any(|n| n["id"] == 3 && n["state"] == "Draining");
        draining && shards.iter().all(|sh| sh["replicas"].as_array().is_some_and(|r| r.len() == 2 && !r.contains(&Value::from(3))) && sh["leader"].as_u64().is_some_and(|l| l != 3))
    });
    let at_drained = count();
    wait_until("the visitor writes on after the drain", WAIT, || count() >= at_drained + 50);
    drained.store(true, Ordering::Release);
    let (sent, slowest) = writer.await.expect("writer");
    eprintln!("{sent} messages accepted before, during and after the drain; the slowest took {slowest:?}");
    // Refused while node 3 still hosts a group whose membership is changing.
    let last = std::cell::RefCell::new(String::new());
    wait_until_or("node 3 can be removed", WAIT, || {
        let (ok, text) = cli(&nodes[0], &["remove", "3"]);
        assert!(if ok { text.contains("removed") } else { text.contains("still hosts") || text.contains("still holds") }, "{text}");
        *last.borrow_mut() = text;
        ok
    }, || format!("last answer: {}\nnode 3 sees: {:#}\npanics:\n{}", last.borrow(), status(&nodes[2]).unwrap_or_default(), panics_in(&nodes)));
    let (ok, text) = cli(&nodes[0], &["remove", "77"]);
    assert!(!ok && text.contains("404"), "an unknown node: {text}");
    wait_until("node 3 is gone from the node table", WAIT, || settled(&nodes[1], &[1, 2], 2) && status(&nodes[1]).is_some_and(|s| s["nodes"].as_array().is_some_and(|n| n.len() == 2)));

    // Every accepted message is there, once, in order.
    assert_eq!(bodies(&nodes[0], &tenant, conversation), (1..=sent).map(|i| format!("m{i}")).collect::<Vec<_>>());
    for n in &nodes {
        n.assert_no_panic();
    }
}

/// What one visitor's writer saw: messages accepted (each with seq = its number) and
/// the longest wait for an acceptance.
pub(crate) struct Written {
    conversation: switchboard_protocol::ConversationId,
    sent: u64,
    pub(crate) longest: Duration,
    /// When that longest wait began, measured from the start of the traffic.
    longest_from: Duration,
    pub(crate) logins: u64,
    /// The visitor's identity, to resume as the same visitor later.
    welcome: switchboard_protocol::Welcome,
}

/// A visitor on `addrs[0]` (through the client library, which reconnects, to the
/// other `addrs` in turn, and resends what was not accepted with the same id) writes `v{visitor}-m{n}` every 20 ms
/// until `stop` (at most 20 000 messages), each only after the previous one was
/// accepted.
async fn write_until(addrs: Vec<std::net::SocketAddr>, tenant: switchboard_protocol::TenantId, visitor: u32, began: Instant, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> Written {
    use switchboard_client::{ConnectOptions, Event, ReconnectPolicy, Session, SessionConfig};
    let mut config = SessionConfig::new(ConnectOptions::tcp(addrs[0]), Auth::Anonymous { tenant });
    config.alternate_addrs = addrs[1..].to_vec();
    config.reconnect = ReconnectPolicy { max_attempts: 200, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_millis(500) };
    config.first_client_msg_id = Some(1);
    let mut session = Session::connect(config).await.expect("visitor connects");
    let handle = session.handle();
    let (mut conversation, mut sent, mut longest, mut longest_from) = (None, 0u64, Duration::ZERO, Duration::ZERO);
    while !stop.load(Ordering::Acquire) && sent < 20_000 {
        let n = sent + 1;
        let started = Instant::now();
        handle.send_with_id(n, conversation, format!("v{visitor}-m{n}")).await.expect("send");
        loop {
            let event = tokio::time::timeout(WAIT, session.next_event()).await.unwrap_or_else(|_| panic!("visitor {visitor}: message {n} not accepted within {WAIT:?}"));
            match event {
                Some(Event::Accepted { client_msg_id, conversation: c, seq }) if client_msg_id == n => {
                    assert_eq!(seq, n, "visitor {visitor}: accepted in order, once");
                    conversation = Some(c);
                    break;
                }
                Some(Event::Closed { reason }) => panic!("visitor {visitor}: session closed: {reason}"),
                _ => {}
            }
        }
        if started.elapsed() > longest {
            (longest, longest_from) = (started.elapsed(), started - began);
        }
        sent = n;
        progress.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (logins, welcome) = (session.stats().logins, session.welcome());
    session.shutdown().await;
    Written { conversation: conversation.expect("at least one message"), sent, longest, longest_from, logins, welcome }
}

/// Every message of `conversation`, read through `node`'s API.
fn bodies(node: &Node, tenant: &crate::support::Tenant, conversation: switchboard_protocol::ConversationId) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let url = node.url(&format!("/v1/tenants/{}/conversations/{}/messages?after_seq={}&limit=1000", tenant.id.0, conversation.0, out.len()));
        let page: Value = ureq::get(&url).set("authorization", &format!("Bearer {}", tenant.api_key)).call().unwrap().into_json().unwrap();
        let page = page.as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        out.extend(page.iter().map(|m| m["body"].as_str().unwrap_or_default().to_string()));
    }
}

/// Restarts node `id` (1-based) from its data dir on its old peer address and TCP
/// address (so its clients find it again), both from [`cluster`].
fn restart(nodes: &mut [Node], dirs: &[tempfile::TempDir], id: usize) {
    let (peer, tcp) = (nodes[id - 1].peer.to_string(), nodes[id - 1].tcp.to_string());
    let id_s = id.to_string();
    nodes[id - 1] = Node::start(dirs[id - 1].path(), &["--shards", "8", "--node-id", &id_s, "--peer-addr", &peer, "--tcp-addr", &tcp]);
}

/// Three nodes started by [`cluster`], each seeing all three active and a leader for
/// every shard.
pub(crate) fn settled_cluster(dirs: &[tempfile::TempDir]) -> Vec<Node> {
    let nodes = cluster(dirs);
    for n in &nodes {
        wait_settled("three active nodes, a leader for every shard", n, &nodes, &[1, 2, 3], 3);
    }
    nodes
}

/// Visitors writing through [`write_until`] until [`Traffic::stop`].
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    writers: Vec<tokio::task::JoinHandle<Written>>,
    began: Instant,
}

impl Traffic {
    /// `visitors` visitors of `tenant`, spread over the client addresses of `nodes`
    /// (visitor v connects to node v mod 3 and fails over to the others), started
    /// once they have written 100.
    pub(crate) fn start(nodes: &[Node], tenant: switchboard_protocol::TenantId, visitors: u32) -> Traffic {
        let (stop, progress) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.tcp).collect();
        let began = Instant::now();
        let writers = (0..visitors)
            .map(|v| {
                let mut mine = addrs.clone();
                mine.rotate_left(v as usize % addrs.len());
                tokio::spawn(write_until(mine, tenant, v, began, stop.clone(), progress.clone()))
            })
            .collect();
        let traffic = Traffic { stop, progress, writers, began };
        traffic.goes_on("the visitors are writing", 100);
        traffic
    }

    /// How long the traffic has been running (to place an event among the waits
    /// [`Traffic::stop`] reports).
    pub(crate) fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// Waits until `more` further messages have been accepted.
    pub(crate) fn goes_on(&self, what: &str, more: u64) {
        let at = self.progress.load(Ordering::Acquire);
        wait_until(what, WAIT, || self.progress.load(Ordering::Acquire) >= at + more);
    }

    /// Stops the writers; what each wrote, with a summary printed.
    pub(crate) async fn stop(self) -> Vec<Written> {
        self.stop.store(true, Ordering::Release);
        let mut written = Vec::new();
        for w in self.writers {
            written.push(w.await.expect("writer"));
        }
        let total: u64 = written.iter().map(|w| w.sent).sum();
        let (v, slowest) = written.iter().enumerate().max_by_key(|(_, w)| w.longest).expect("at least one writer");
        let logins: Vec<u64> = written.iter().map(|w| w.logins).collect();
        eprintln!(
            "{total} messages accepted in {} conversations over {:.1?} ({:.0}/s); the longest any conversation waited for an acceptance: {:?} (visitor {v}, from {:?} into the traffic); logins per visitor {logins:?}",
            written.len(),
            self.began.elapsed(),
            total as f64 / self.began.elapsed().as_secs_f64(),
            slowest.longest,
            slowest.longest_from
        );
        written
    }
}

/// Asserts that every visitor [`Traffic::start`] put on node `node` (1-based) logged
/// in again (on another node, or on it once it was back).
pub(crate) fn assert_logged_in_again(written: &[Written], node: usize) {
    for (v, w) in written.iter().enumerate().filter(|(v, _)| v % 3 == node - 1) {
        assert!(w.logins >= 2, "visitor {v}, connected to node {node}, logged in again: {}", w.logins);
    }
}

/// What visitor `v` wrote, in order.
fn expected(v: usize, w: &Written) -> Vec<String> {
    (1..=w.sent).map(|i| format!("v{v}-m{i}")).collect()
}

/// The node serving `tenant` (its API answers there; the others answer 421), once
/// one does.
pub(crate) fn home_of<'a>(nodes: &'a [Node], tenant: &crate::support::Tenant) -> &'a Node {
    let serves = |n: &Node| crate::support::api_status(n, tenant) == 200;
    wait_until("a node serves the tenant", WAIT, || nodes.iter().any(serves));
    nodes.iter().find(|n| serves(n)).expect("a node serves the tenant")
}

/// Every visitor's accepted messages read back through the node serving the tenant,
/// once each and in order.
pub(crate) fn assert_read_back(nodes: &[Node], tenant: &crate::support::Tenant, written: &[Written]) {
    let node = home_of(nodes, tenant);
    for (v, w) in written.iter().enumerate() {
        assert_eq!(bodies(node, tenant, w.conversation), expected(v, w), "visitor {v}: every accepted message once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_traffic_loses_and_repeats_nothing_and_a_whole_cluster_restart_keeps_every_message() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = settled_cluster(&dirs);
    // The tenant lives on node 1; its visitors are on all three nodes.
    let tenant = create_tenant(&nodes[0], "acme");
    let traffic = Traffic::start(&nodes, tenant.id, 12);

    // Rolling restart: each node in turn gets SIGTERM (handing its leaderships over),
    // comes back from its data dir, and catches up before the next goes.
    let rolling = Instant::now();
    for id in [2, 3, 1] {
        let status = nodes[id - 1].terminate();
        assert!(status.success(), "node {id}: {status}\nlog tail:\n{}", log_tail(&nodes[id - 1], 60));
        restart(&mut nodes, &dirs, id);
        for n in &nodes {
            wait_settled(&format!("node {id} is back and every shard has a leader"), n, &nodes, &[1, 2, 3], 3);
        }
        traffic.goes_on(&format!("traffic goes on after node {id} restarted"), 100);
    }
    eprintln!("rolling restart of 3 nodes took {:?}", rolling.elapsed());
    let written = traffic.stop().await;
    let logins: Vec<u64> = written.iter().map(|w| w.logins).collect();
    assert!(logins.iter().all(|l| *l >= 2), "node 1's restart made every visitor reconnect: {logins:?}");
    assert_read_back(&nodes, &tenant, &written);

    // Whole-cluster restart: all three stop, all three come back from their data dirs.
    for id in [3, 2, 1] {
        let status = nodes[id - 1].terminate();
        assert!(status.success(), "node {id}: {status}\nlog tail:\n{}", log_tail(&nodes[id - 1], 60));
    }
    for id in 1..=3 {
        restart(&mut nodes, &dirs, id);
    }
    for n in &nodes {
        wait_settled("the restarted cluster has a leader for every shard", n, &nodes, &[1, 2, 3], 3);
    }
    assert_read_back(&nodes, &tenant, &written);
    // And deliverable: the visitor's device resuming from the start is sent it all
    // again, in order, by every node's log.
    let first = &written[0];
    let (Participant::Visitor(visitor), Some(token)) = (first.welcome.identity, first.welcome.resume_token.clone()) else {
        panic!("an anonymous visitor gets an id and a resume token: {:?}", first.welcome)
    };
    let auth = Auth::Resume { tenant: tenant.id, visitor, token };
    let (mut device, _) = Raw::login(nodes[0].tcp, auth, vec![Cursor { conversation: first.conversation, seq: 0 }]).await;
    let replayed: Vec<String> = device.messages(first.conversation, first.sent as usize).await.into_iter().map(|m| m.body).collect();
    assert_eq!(replayed, expected(0, first));
    for n in &nodes {
        n.assert_no_panic();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_traffic_loses_and_repeats_no_accepted_message() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = settled_cluster(&dirs);
    wait_leads_some(&nodes, 2);
    // The tenant lives on node 1; its visitors are on all three nodes.
    let tenant = create_tenant(&nodes[0], "acme");
    let traffic = Traffic::start(&nodes, tenant.id, 30);
    traffic.goes_on("the visitors are writing", 100);

    // Node 2 dies mid-traffic with the leaderships it holds and the connections of a
    // third of the visitors; nothing is flushed.
    nodes[1].kill9();
    let killed = Instant::now();
    for n in [&nodes[0], &nodes[2]] {
        wait_settled("the survivors lead every shard", n, &nodes, &[1, 3], 3);
    }
    eprintln!("every shard had a leader again {:?} after the kill", killed.elapsed());
    traffic.goes_on("traffic goes on without node 2", 300);
    restart(&mut nodes, &dirs, 2);
    wait_settled("node 2 is back", &nodes[1], &nodes, &[1, 2, 3], 3);
    traffic.goes_on("traffic goes on with node 2 back", 100);
    let written = traffic.stop().await;
    assert_logged_in_again(&written, 2);
    assert_read_back(&nodes, &tenant, &written);
    for n in &nodes {
        n.assert_no_panic();
    }
}
