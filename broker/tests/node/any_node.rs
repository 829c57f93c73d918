//! Clients on any node: a tenant lives on the node that created it, and a client
//! that connects to another node is relayed there (`session::forward`).

use crate::cluster::{log_tail, settled_cluster, status};
use crate::support::*;
use switchboard_client::{connect_and_login, hello as login, Connection, ConnectOptions};
use switchboard_protocol::*;

/// The next chat message `conn` receives.
async fn next_message(conn: &mut Connection, who: &str) -> ChatMessage {
    loop {
        match tokio::time::timeout(WAIT, conn.recv()).await.unwrap_or_else(|_| panic!("{who}: no message within {WAIT:?}")) {
            Ok(Some(ServerFrame::Message(m))) => return m,
            Ok(Some(ServerFrame::Error(e))) => panic!("{who}: {e:?}"),
            Ok(Some(_)) => continue,
            other => panic!("{who}: stream ended: {other:?}"),
        }
    }
}

/// A visitor at `visitor_at` and `agent` at `agent_at` chat both ways; the conversation.
async fn chat(tenant: TenantId, visitor_at: ConnectOptions, agent_at: ConnectOptions, agent: (AgentId, String)) -> ConversationId {
    let (mut seat, welcome) = connect_and_login(&agent_at, login(Auth::Agent { token: agent.1 })).await.expect("agent logs in");
    assert_eq!((welcome.tenant, welcome.identity), (tenant, Participant::Agent(agent.0)));
    let (mut visitor, welcome) = connect_and_login(&visitor_at, login(Auth::Anonymous { tenant })).await.expect("visitor logs in");
    let Participant::Visitor(visitor_id) = welcome.identity else { panic!("{welcome:?}") };

    visitor.send(&send(1, None, "hello from the visitor")).await.unwrap();
    let m = next_message(&mut seat, "agent").await;
    assert_eq!((m.sender, m.body.as_str(), m.seq), (Participant::Visitor(visitor_id), "hello from the visitor", 1));
    let conversation = m.conversation;
    seat.send(&send(1, Some(conversation), "hello from the agent")).await.unwrap();
    loop {
        let m = next_message(&mut visitor, "visitor").await;
        if m.sender == Participant::Agent(agent.0) {
            assert_eq!((m.conversation, m.body.as_str(), m.seq), (conversation, "hello from the agent", 2));
            break;
        }
    }
    conversation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_and_agents_connected_to_different_nodes_chat_both_ways() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = settled_cluster(&dirs);
    let acme = create_tenant(&nodes[0], "acme");
    let globex = create_tenant(&nodes[1], "globex");
    assert_ne!(acme.id, globex.id, "tenant ids are unique across the cluster");
    let acme_agent = create_agent(&nodes[0], acme.id, 5);
    let globex_agent = create_agent(&nodes[1], globex.id, 5);
    assert!(acme_agent.1.starts_with(&format!("{}.", acme.id.0)), "an agent token names its tenant: {}", acme_agent.1);

    // acme lives on node 1: its visitor is on node 2 (TCP), its agent on node 3 (QUIC).
    let tcp = |n: usize| ConnectOptions::tcp(nodes[n].tcp);
    let quic = |n: usize| ConnectOptions::quic(nodes[n].quic, nodes[n].quic_cert());
    let c1 = chat(acme.id, tcp(1), quic(2), acme_agent).await;
    // globex lives on node 2: its visitor is on node 3 (QUIC), its agent on node 1 (TCP).
    let c2 = chat(globex.id, quic(2), tcp(0), globex_agent).await;
    assert_ne!(c1, c2, "conversation ids are unique across the cluster");

    // The tenant's API answers on its node; any other node says which node that is.
    assert_eq!(open_conversations(&nodes[0], &acme).len(), 1);
    for (key, what) in [(acme.api_key.as_str(), "tenant key"), (nodes[1].admin_token.as_str(), "admin token")] {
        let url = nodes[1].url(&format!("/v1/tenants/{}/conversations", acme.id.0));
        match ureq::get(&url).set("authorization", &format!("Bearer {key}")).call() {
            Err(ureq::Error::Status(421, r)) => {
                let body = r.into_string().unwrap();
                assert!(body.contains("misdirected") && body.contains("served by node 1"), "{what}: {body}");
            }
            other => panic!("{what}: expected 421, got {other:?}"),
        }
    }
    // A tenant no node has: the login fails as before.
    let (_, err) = connect_and_login(&ConnectOptions::tcp(nodes[2].tcp), login(Auth::Anonymous { tenant: TenantId(999) })).await.map(|_| ()).map_or_else(|e| ((), e.to_string()), |_| panic!("tenant 999 does not exist"));
    assert!(err.contains("auth_failed"), "{err}");
    let relayed = |n: &Node| ureq::get(&n.url("/metrics")).call().unwrap().into_string().unwrap().lines().any(|l| l.starts_with("switchboard_forwarded_connections_total{result=\"relayed\"}"));
    assert!(nodes.iter().all(relayed), "every node relayed a client to another");

    // acme's node restarts on another client port: the node table follows, and its
    // clients reach it through the other nodes again.
    let (old_tcp, peer) = (nodes[0].tcp, nodes[0].peer.to_string());
    let exit = nodes[0].terminate();
    assert!(exit.success(), "node 1: {exit}\nlog tail:\n{}", log_tail(&nodes[0], 40));
    nodes[0] = Node::start(dirs[0].path(), &["--shards", "8", "--node-id", "1", "--peer-addr", &peer]);
    assert_ne!(nodes[0].tcp, old_tcp);
    let advertised = |n: &Node| status(n).unwrap_or_default()["nodes"].as_array().cloned().unwrap_or_default().iter().any(|r| r["id"] == 1 && r["client"] == nodes[0].tcp.to_string());
    wait_until("node 2 sees node 1's new client address", WAIT, || advertised(&nodes[1]));
    let (mut visitor, _) = connect_and_login(&ConnectOptions::tcp(nodes[1].tcp), login(Auth::Anonymous { tenant: acme.id })).await.expect("a visitor reaches the restarted node through node 2");
    visitor.send(&send(1, None, "after the restart")).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, visitor.recv()).await.expect("an answer") {
            Ok(Some(ServerFrame::Accepted { client_msg_id: 1, seq: 1, .. })) => break,
            Ok(Some(ServerFrame::Error(e))) => panic!("{e:?}"),
            Ok(Some(_)) => continue,
            other => panic!("stream ended: {other:?}"),
        }
    }
    for n in &nodes {
        n.assert_no_panic();
    }
}
