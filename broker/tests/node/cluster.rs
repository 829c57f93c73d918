//! Three `switchboard` processes on loopback form one cluster over the TCP peer link.

use crate::support::{wait_until, Node};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn status(node: &Node) -> Option<Value> {
    ureq::get(&node.url("/v1/cluster")).set("authorization", &format!("Bearer {}", node.admin_token)).call().ok()?.into_json().ok()
}

/// As `node` sees it: every node in `ids` is Active, every shard has `replicas` nodes in
/// the table and a leader among `ids`.
fn settled(node: &Node, ids: &[u64], replicas: usize) -> bool {
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

fn leaders(node: &Node) -> Vec<(u64, u64)> {
    let s = status(node).unwrap_or_default();
    s["nodes"].as_array().cloned().unwrap_or_default().iter().map(|n| (n["id"].as_u64().unwrap_or(0), n["leads"].as_u64().unwrap_or(0))).collect()
}

#[test]
fn three_processes_form_a_cluster_survive_a_kill_9_and_take_the_node_back() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let common = ["--shards", "8", "--log", "info,openraft=error,switchboard_broker=debug"];
    let mut nodes = vec![Node::start(dirs[0].path(), &[&common[..], &["--node-id", "1"]].concat())];
    let seed = nodes[0].peer.to_string();
    for id in 2..=3u64 {
        let id_s = id.to_string();
        nodes.push(Node::start(dirs[id as usize - 1].path(), &[&common[..], &["--node-id", &id_s, "--seeds", &seed]].concat()));
    }
    for (i, n) in nodes.iter().enumerate() {
        wait_until(&format!("node {} sees three active nodes and a leader for every shard", i + 1), WAIT, || settled(n, &[1, 2, 3], 3));
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
        wait_until("the survivors lead every shard", WAIT, || settled(n, &[1, 2], 3));
    }
    eprintln!("every shard had a leader again {:?} after the kill", killed.elapsed());
    assert!(nodes.iter().take(2).all(|n| n.log().matches("panicked").count() == 0));

    // Node 3 restarts from its data dir on its old peer address (no seeds needed: it
    // has state) and catches up.
    nodes[2] = Node::start(dirs[2].path(), &[&common[..], &["--node-id", "3", "--peer-addr", &peer3]].concat());
    wait_until("node 3 is back with every shard's leader known", WAIT, || settled(&nodes[2], &[1, 2, 3], 3));
    wait_until("no replica lags", WAIT, || {
        let s = status(&nodes[0]).unwrap_or_default();
        s["shards"].as_array().cloned().unwrap_or_default().iter().all(|sh| sh["here"]["lag"].as_object().is_none_or(|lag| lag.values().all(|v| v == 0)))
    });
    for n in &nodes {
        n.assert_no_panic();
    }
}
