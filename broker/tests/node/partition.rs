//! Real network partitions: three nodes, each in its own network namespace, joined
//! by a bridge in the test's namespace (veth pairs). Cutting node 3's link isolates
//! it from the other nodes and from its clients, and moves the tenant it is home to
//! onto the majority. With a second bridge for the peer link alone, node 3 loses
//! only its peers, or only its connections out to them. Needs root (`ip netns`).

use crate::cluster::{assert_logged_in_again, assert_read_back, no_lag, panics_in, settled, status, wait_leads_some, wait_settled, Traffic, Written};
use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Three namespaces on a bridge that carries everything, or (`split`) on two
/// bridges: one for clients and one for the peer link. Everything is deleted on drop.
struct Net {
    tag: String,
    /// Client (and, unless split, peer) addresses: `{subnet}.{i}`.
    subnet: String,
    /// Peer-link addresses when split.
    peer_subnet: Option<String>,
}

impl Net {
    /// `kind` keeps the interface names of tests running at once apart, `octet` their
    /// subnets (`10.{octet}.x.0/24`, and `10.{octet + 1}.x.0/24` for the peer link).
    fn new(kind: char, octet: u8, split: bool) -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("sb{}{kind}", pid % 100_000),
            subnet: format!("10.{octet}.{}", pid % 250),
            peer_subnet: split.then(|| format!("10.{}.{}", octet + 1, pid % 250)),
        };
        net.bridge_up(&net.bridge(), &net.subnet, "v");
        if let Some(peer) = &net.peer_subnet {
            net.bridge_up(&format!("{}pb", net.tag), peer, "w");
        }
        net
    }

    /// A bridge on `subnet` (this namespace is `.254` on it) with a veth pair
    /// `{tag}{prefix}{i}` into each node's namespace.
    fn bridge_up(&self, bridge: &str, subnet: &str, prefix: &str) {
        ip(&["link", "add", bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{subnet}.254/24"), "dev", bridge]);
        ip(&["link", "set", bridge, "up"]);
        for i in 1..=3 {
            let (ns, outside) = (self.ns(i), format!("{}{prefix}{i}", self.tag));
            let inside = format!("{outside}p");
            if prefix == "v" {
                ip(&["netns", "add", &ns]);
                ip(&["-n", &ns, "link", "set", "lo", "up"]);
            }
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["-n", &ns, "addr", "add", &format!("{subnet}.{i}/24"), "dev", &inside]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["link", "set", &outside, "master", bridge]);
            ip(&["link", "set", &outside, "up"]);
        }
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    /// Node `i`'s client address.
    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Node `i`'s peer-link address.
    fn peer_addr(&self, i: usize) -> String {
        format!("{}.{i}", self.peer_subnet.as_ref().unwrap_or(&self.subnet))
    }

    /// Cuts (or restores) node `i`'s client link (its only link unless split).
    fn link(&self, i: usize, up: bool) {
        ip(&["link", "set", &format!("{}v{i}", self.tag), if up { "up" } else { "down" }]);
    }

    /// Cuts (or restores) node `i`'s peer link (split only).
    fn peer_link(&self, i: usize, up: bool) {
        ip(&["link", "set", &format!("{}w{i}", self.tag), if up { "up" } else { "down" }]);
    }

    /// Holds back (or stops holding back) every packet node `i` sends to a peer port
    /// (7002) on its peer link: its own connections out fail, while connections in
    /// still work (their answers leave from port 7002, not to it). Split only. (These
    /// kernels have no tc drop action: such packets go to an HTB class of 8 bit/s.)
    fn drop_peer_egress(&self, i: usize, on: bool) {
        let dev = format!("{}w{i}p", self.tag);
        let tc = |args: &[&str]| {
            let out = Command::new("ip").args(["netns", "exec", &self.ns(i), "tc"]).args(args).output().expect("run tc");
            assert!(out.status.success(), "tc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        };
        if on {
            tc(&["qdisc", "add", "dev", &dev, "root", "handle", "1:", "htb", "default", "10"]);
            tc(&["class", "add", "dev", &dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
            tc(&["class", "add", "dev", &dev, "parent", "1:", "classid", "1:20", "htb", "rate", "8bit", "ceil", "8bit", "burst", "1", "cburst", "1"]);
            tc(&["filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dport", "7002", "0xffff", "flowid", "1:20"]);
        } else {
            tc(&["qdisc", "del", "dev", &dev, "root"]);
        }
    }

    /// Three nodes, one in each namespace, node 1 the seed; returns once every
    /// shard has three replicas and a leader, and node 3 leads some.
    fn start_nodes(&self, dirs: &[tempfile::TempDir]) -> Vec<Node> {
        let nodes: Vec<Node> = (1..=3)
            .map(|i| {
                // Fixed ports are safe here: each namespace has its own port space.
                let (a, p) = (self.addr(i), self.peer_addr(i));
                let (http, tcp, quic, peer, seed) = (format!("{a}:7080"), format!("{a}:7000"), format!("{a}:7001"), format!("{p}:7002"), format!("{}:7002", self.peer_addr(1)));
                let id = i.to_string();
                let mut args = vec!["--shards", "8", "--node-id", &id, "--http-addr", &http, "--tcp-addr", &tcp, "--quic-addr", &quic, "--peer-addr", &peer];
                // Clients notice a silent link within seconds.
                args.extend(["--tcp-heartbeat-secs", "1"]);
                if i > 1 {
                    args.extend(["--seeds", &seed]);
                }
                Node::start_in(Some(&self.ns(i)), dirs[i - 1].path(), &args)
            })
            .collect();
        for n in &nodes {
            wait_settled("three active nodes, a leader for every shard", n, &nodes, &[1, 2, 3], 3);
        }
        wait_leads_some(&nodes, 3);
        nodes
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=3 {
            // Deleting a namespace deletes its ends of the veth pairs, and so the pairs.
            let _ = Command::new("ip").args(["netns", "del", &self.ns(i)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
        let _ = Command::new("ip").args(["link", "del", &format!("{}pb", self.tag)]).output();
    }
}

/// Every visitor of a tenant whose home was cut off lost its session there and
/// logged in again.
fn assert_all_logged_in_again(written: &[Written]) {
    assert!(written.iter().all(|w| w.logins >= 2), "{:?}", written.iter().map(|w| w.logins).collect::<Vec<_>>());
}

/// Network namespaces need root; without it the test says so and passes (the
/// in-process partition tests in tests/cluster still run).
fn root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: network namespaces need root (the in-process partition test in tests/cluster still runs)");
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_from_the_others_loses_its_clients_to_the_majority_and_after_healing_nothing_is_lost_or_repeated() {
    if !root() {
        return;
    }
    let net = Net::new('a', 213, false);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = net.start_nodes(&dirs);

    // acme lives on node 1, globex on node 3; a third of each one's visitors are on
    // node 3.
    let tenant = create_tenant(&nodes[0], "acme");
    let globex = create_tenant(&nodes[2], "globex");
    let traffic = Traffic::start(&nodes, tenant.id, 12);
    let traffic3 = Traffic::start(&nodes, globex.id, 6);

    net.link(3, false);
    let cut = Instant::now();
    for n in &nodes[..2] {
        wait_settled("the majority leads every shard", n, &nodes, &[1, 2], 3);
    }
    eprintln!("the majority led every shard {:?} after the cut", cut.elapsed());
    traffic.goes_on("traffic goes on on the majority side", 300);
    // globex's home is cut off: the majority moves it to one of them.
    traffic3.goes_on("globex's traffic goes on on the majority side", 100);
    eprintln!("globex's traffic went on {:?} after the cut", cut.elapsed());

    net.link(3, true);
    let healed = Instant::now();
    wait_settled("node 3 is back and sees a leader for every shard", &nodes[2], &nodes, &[1, 2, 3], 3);
    wait_until_or("node 3 has caught up", WAIT, || {
settled(&nodes[0], &[1, 2, 3], 3) && no_lag(&nodes[0])
    }, || format!("{:#}\n{}", status(&nodes[0]).unwrap_or_default(), panics_in(&nodes)));
    eprintln!("node 3 caught up {:?} after healing", healed.elapsed());
    traffic.goes_on("traffic goes on after healing", 100);
    traffic3.goes_on("globex's traffic goes on after healing", 50);
    // Back, node 3 learns that globex moved and lets it go.
    wait_until("node 3 points to globex's new home", WAIT, || api_status(&nodes[2], &globex) == 421);
    let written = traffic.stop().await;
    let written3 = traffic3.stop().await;
    // Cut off, node 3 could not serve its visitors: they had to log in again.
    assert_logged_in_again(&written, 3);
    assert_read_back(&nodes, &tenant, &written);
    // Every globex visitor lost its home's connection and logged in again.
    assert_all_logged_in_again(&written3);
    assert_read_back(&nodes, &globex, &written3);
    for n in &nodes {
        n.assert_no_panic();
    }
}

/// Node 3 loses its peer link only: its clients still reach it, and it can still
/// relay them to other nodes' client ports. It notices it is cut off from a quorum,
/// lets go of the tenant it is home to (whose clients it sends away) and turns new
/// logins away, while the majority moves that tenant; nothing is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_peers_but_not_its_clients_sends_them_to_the_majority() {
    if !root() {
        return;
    }
    let net = Net::new('b', 215, true);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = net.start_nodes(&dirs);
    let tenant = create_tenant(&nodes[0], "acme");
    let globex = create_tenant(&nodes[2], "globex");
    let traffic = Traffic::start(&nodes, tenant.id, 12);
    let traffic3 = Traffic::start(&nodes, globex.id, 6);

    net.peer_link(3, false);
    let cut = Instant::now();
    for n in &nodes[..2] {
        wait_settled("the majority leads every shard", n, &nodes, &[1, 2], 3);
    }
    traffic.goes_on("traffic goes on on the majority side", 300);
    // Without the cut-off rule, globex's visitors would stay on node 3 (or be
    // relayed to it), where nothing can commit.
    traffic3.goes_on("globex's traffic goes on on the majority side", 100);
    eprintln!("globex's traffic went on {:?} after the cut", cut.elapsed());
    assert_eq!(api_status(&nodes[2], &globex), 503, "node 3 does not serve globex while cut off");
    wait_until("node 3 reports itself cut off", WAIT, || metric_value(&nodes[2], "switchboard_cluster_cut_off") == 1);

    net.peer_link(3, true);
    wait_settled("node 3 is back and sees a leader for every shard", &nodes[2], &nodes, &[1, 2, 3], 3);
    wait_until("node 3 has caught up", WAIT, || settled(&nodes[0], &[1, 2, 3], 3) && no_lag(&nodes[0]));
    traffic.goes_on("traffic goes on after healing", 100);
    traffic3.goes_on("globex's traffic goes on after healing", 50);
    wait_until("node 3 points to globex's new home", WAIT, || api_status(&nodes[2], &globex) == 421);
    wait_until("node 3 no longer reports itself cut off", WAIT, || metric_value(&nodes[2], "switchboard_cluster_cut_off") == 0);
    let written = traffic.stop().await;
    let written3 = traffic3.stop().await;
    assert_read_back(&nodes, &tenant, &written);
    // Every globex visitor lost its session on node 3 and logged in again.
    assert_all_logged_in_again(&written3);
    assert_read_back(&nodes, &globex, &written3);
    for n in &nodes {
        n.assert_no_panic();
    }
}

/// Node 3's connections out to its peers fail while theirs to it work: it finds
/// itself cut off and says so to the probes of the others, so the majority moves
/// the tenant it is home to although it still answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_links_out_fail_hands_its_tenant_to_the_majority() {
    if !root() {
        return;
    }
    let net = Net::new('c', 217, true);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = net.start_nodes(&dirs);
    let globex = create_tenant(&nodes[2], "globex");
    let traffic = Traffic::start(&nodes, globex.id, 6);

    net.drop_peer_egress(3, true);
    let cut = Instant::now();
    traffic.goes_on("globex's traffic goes on on the majority side", 100);
    eprintln!("globex's traffic went on {:?} after node 3's links out failed", cut.elapsed());
    wait_until("the majority serves globex", WAIT, || api_status(&nodes[0], &globex) == 200 || api_status(&nodes[1], &globex) == 200);
    wait_until("node 3 reports itself cut off", WAIT, || metric_value(&nodes[2], "switchboard_cluster_cut_off") == 1);

    net.drop_peer_egress(3, false);
    wait_until("node 3 points to globex's new home", WAIT, || api_status(&nodes[2], &globex) == 421);
    traffic.goes_on("globex's traffic goes on after the repair", 50);
    let written = traffic.stop().await;
    assert_all_logged_in_again(&written);
    assert_read_back(&nodes, &globex, &written);
    for n in &nodes {
        n.assert_no_panic();
    }
}
