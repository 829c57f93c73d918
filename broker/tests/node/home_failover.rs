//! A tenant's home dies: the control-plane leader moves the tenant to a replica of
//! its shard, which takes it over from the replicated records (`cluster::homes`,
//! `cluster::takeover`), and the tenant's clients go on through any node.

use crate::cluster::{assert_read_back, log_tail, settled_cluster, wait_leads_some, Traffic};
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;
use switchboard_client::{connect_and_login, hello as login, ConnectOptions};
use switchboard_protocol::*;

/// Each open conversation's agent, as `node` (the tenant's home) lists them.
fn assignments(node: &Node, tenant: &Tenant) -> BTreeMap<u64, Value> {
    open_conversations(node, tenant).into_iter().map(|c| (c["id"].as_u64().unwrap_or_default(), c["agent"].clone())).collect()
}

fn takeovers(node: &Node) -> u64 {
    metric_value(node, "switchboard_tenant_takeovers_total{result=\"ok\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_tenants_home_moves_the_tenant_and_loses_nothing() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = settled_cluster(&dirs);
    wait_leads_some(&nodes, 1);
    // The tenant lives on node 1; its agent is on node 2, its visitors on all three.
    let tenant = create_tenant(&nodes[0], "acme");
    let (agent, token) = create_agent(&nodes[0], tenant.id, 20);
    let (seat, _) = connect_and_login(&ConnectOptions::tcp(nodes[1].tcp), login(Auth::Agent { token: token.clone() })).await.expect("the agent logs in");
    let traffic = Traffic::start(&nodes, tenant.id, 12);
    wait_until("every visitor's conversation is assigned to the agent", WAIT, || {
        let a = assignments(&nodes[0], &tenant);
        a.len() == 12 && a.values().all(|v| v.as_u64() == Some(agent.0))
    });
    let before = assignments(&nodes[0], &tenant);

    // The home dies with the tenant's router, its sessions and the relays to it.
    nodes[0].kill9();
    let killed = Instant::now();
    eprintln!("node 1 killed {:?} into the traffic", traffic.elapsed());
    let mut home = None;
    wait_until_or(
        "another node takes the tenant over",
        WAIT,
        || {
            home = (1..3).find(|&i| takeovers(&nodes[i]) > 0);
            home.is_some()
        },
        || format!("node 2 log:\n{}\nnode 3 log:\n{}", log_tail(&nodes[1], 40), log_tail(&nodes[2], 40)),
    );
    let home = home.expect("a new home");
    eprintln!("node {} took the tenant over {:?} after the kill", home + 1, killed.elapsed());
    let other = 3 - home;
    assert_eq!(api_status(&nodes[home], &tenant), 200, "the new home serves the tenant's API");
    assert_eq!(api_status(&nodes[other], &tenant), 421, "the other node points to it");
    // Queues, assignments and capacities come back from the replicated records: the
    // same conversations, still the agent's.
    assert_eq!(assignments(&nodes[home], &tenant), before);
    traffic.goes_on("traffic goes on without the old home", 300);

    // The agent, cut off with its relay, logs in through the node that is not the
    // home and gets its chats back; a visitor's new message reaches it.
    drop(seat);
    let (mut seat, welcome) = connect_and_login(&ConnectOptions::tcp(nodes[other].tcp), login(Auth::Agent { token })).await.expect("the agent logs in again");
    assert_eq!(welcome.identity, Participant::Agent(agent));
    let mut mine = std::collections::BTreeSet::new();
    let mut delivered = false;
    while mine.len() < before.len() || !delivered {
        match tokio::time::timeout(WAIT, seat.recv()).await.expect("the agent hears of its chats") {
            Ok(Some(ServerFrame::Conversation(u))) if u.agent == Some(agent) => {
                mine.insert(u.conversation.0);
            }
            Ok(Some(ServerFrame::Message(m))) if before.contains_key(&m.conversation.0) => delivered = true,
            Ok(Some(ServerFrame::Error(e))) => panic!("agent: {e:?}"),
            Ok(Some(_)) => {}
            other => panic!("agent: stream ended: {other:?}"),
        }
    }
    assert_eq!(mine, before.keys().copied().collect());

    // The old home comes back: it lets the tenant go and relays its clients.
    let (peer, tcp) = (nodes[0].peer.to_string(), nodes[0].tcp.to_string());
    nodes[0] = Node::start(dirs[0].path(), &["--shards", "8", "--node-id", "1", "--peer-addr", &peer, "--tcp-addr", &tcp]);
    eprintln!("node 1 back {:?} into the traffic", traffic.elapsed());
    wait_until("the old home points to the new one", WAIT, || api_status(&nodes[0], &tenant) == 421);
    traffic.goes_on("traffic goes on with the old home back", 100);
    let written = traffic.stop().await;
    for i in 1..3 { std::fs::write(format!("/tmp/hf-node{}.log", i+1), nodes[i].log()).unwrap(); }
    assert_read_back(&nodes, &tenant, &written);
    for n in &nodes {
        n.assert_no_panic();
    }
}
