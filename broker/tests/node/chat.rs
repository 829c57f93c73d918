//! Visitors and agents exchange messages; resume, idempotency and multiple devices.

use crate::support::*;
use switchboard_protocol::auth::sign_user_id;
use switchboard_protocol::*;

#[tokio::test]
async fn visitor_and_agent_chat_both_ways_over_tcp() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (agent_id, token) = create_agent(&node, t.id, 5);
    let (mut agent, aw) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    assert_eq!(aw.identity, Participant::Agent(agent_id));
    let (mut visitor, vw) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    assert_eq!(vw.resume_token.as_ref().map(Vec::len), Some(32));

    let (conv, seq) = visitor.send_accepted(1, None, "hello, I need help").await;
    assert_eq!(seq, 1);
    assert_eq!(assigned(&mut agent).await, conv);
    let got = agent.messages(conv, 1).await;
    assert_eq!(got[0].body, "hello, I need help");
    assert_eq!(got[0].sender, vw.identity);

    let (_, seq) = agent.send_accepted(1, Some(conv), "happy to help").await;
    assert_eq!(seq, 2);
    let got = visitor.messages(conv, 1).await;
    assert_eq!((got[0].seq, got[0].body.as_str(), got[0].sender), (2, "happy to help", Participant::Agent(agent_id)));
    node.assert_no_panic();
}

#[tokio::test]
async fn reconnect_with_a_cursor_gets_exactly_the_missed_messages_and_resends_keep_their_seq() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: token.clone() }, vec![]).await;
    let (mut visitor, vw) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let Participant::Visitor(visitor_id) = vw.identity else { panic!() };

    let mut conv = None;
    for i in 1..=3 {
        conv = Some(visitor.send_accepted(i, conv, &format!("m{i}")).await.0);
    }
    let conv = conv.unwrap();
    assert_eq!(agent.messages(conv, 3).await.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    drop(agent);

    for i in 4..=7 {
        visitor.send_accepted(i, Some(conv), &format!("m{i}")).await;
    }
    // The agent comes back saying it has everything up to 3.
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![Cursor { conversation: conv, seq: 3 }]).await;
    let missed = agent.messages(conv, 4).await;
    assert_eq!(missed.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
    assert_eq!(missed[0].body, "m4");

    // A resend of client message 2 is answered with its original seq and stores nothing.
    let (c, seq) = visitor.send_accepted(2, Some(conv), "m2").await;
    assert_eq!((c, seq), (conv, 2));
    // The anonymous visitor resumes as itself on a new connection, and its next
    // message is the next seq: nothing was duplicated.
    let token = vw.resume_token.unwrap();
    drop(visitor);
    let (mut visitor, w) = Raw::login(node.tcp, Auth::Resume { tenant: t.id, visitor: visitor_id, token }, vec![Cursor { conversation: conv, seq: 7 }]).await;
    assert_eq!(w.identity, Participant::Visitor(visitor_id));
    assert_eq!(visitor.send_accepted(8, None, "m8").await, (conv, 8));
    let next = agent.messages(conv, 1).await;
    assert_eq!((next[0].seq, next[0].body.as_str()), (8, "m8"), "no duplicate reached the agent first");

    let history = ureq::get(&node.url(&format!("/v1/tenants/{}/conversations/{}/messages", t.id.0, conv.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .call()
        .unwrap()
        .into_json::<serde_json::Value>()
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn both_devices_of_a_visitor_receive_the_conversation() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let auth = Auth::Verified { tenant: t.id, user_id: "user-42".into(), signature: sign_user_id(t.secret.as_bytes(), "user-42").to_vec() };
    let (mut phone, pw) = Raw::login(node.tcp, auth.clone(), vec![]).await;
    let (mut pc, cw) = Raw::login(node.tcp, auth, vec![]).await;
    assert_eq!(pw.identity, cw.identity, "one verified user is one visitor");

    let (conv, _) = phone.send_accepted(1, None, "from my phone").await;
    assert_eq!(assigned(&mut agent).await, conv);
    agent.messages(conv, 1).await;
    agent.send_accepted(1, Some(conv), "reply").await;

    let on_pc = pc.messages(conv, 2).await;
    assert_eq!(on_pc.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["from my phone", "reply"]);
    let on_phone = phone.messages(conv, 1).await;
    assert_eq!(on_phone[0].body, "reply");
    // The PC writes into the same conversation; the phone sees it.
    pc.send_accepted(2, None, "from my pc").await;
    assert_eq!(phone.messages(conv, 1).await[0].body, "from my pc");
}

#[tokio::test]
async fn an_agent_back_within_the_grace_period_keeps_its_chats_and_one_away_longer_loses_them_first_in_line() {
    let (_dir, node, t) = node_with_tenant(&["--agent-grace-secs", "1"]);
    let (a1, a1_token) = create_agent(&node, t.id, 1);
    let (mut agent1, _) = Raw::login(node.tcp, Auth::Agent { token: a1_token.clone() }, vec![]).await;
    let (mut v1, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c1, _) = v1.send_accepted(1, None, "first visitor").await;
    assert_eq!(assigned(&mut agent1).await, c1);

    // A quick reconnect: the chat is still agent 1's.
    drop(agent1);
    let (mut agent1, _) = Raw::login(node.tcp, Auth::Agent { token: a1_token }, vec![]).await;
    let (f, _) = agent1.recv_until(|f| matches!(f, ServerFrame::Conversation(_))).await;
    assert!(matches!(&f, ServerFrame::Conversation(u) if u.conversation == c1 && u.agent == Some(a1)), "{f:?}");

    // Agent 2 is busy with a second chat; a third visitor waits in the queue.
    let (_, a2_token) = create_agent(&node, t.id, 1);
    let (mut agent2, _) = Raw::login(node.tcp, Auth::Agent { token: a2_token }, vec![]).await;
    let (mut v2, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c2, _) = v2.send_accepted(1, None, "second visitor").await;
    assert_eq!(assigned(&mut agent2).await, c2);
    let (mut v3, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c3, _) = v3.send_accepted(1, None, "third visitor, newer").await;

    // Agent 1 goes away for good; after the grace period its chat is requeued ahead of
    // the newer one, so when agent 2 frees up it gets chat 1, not chat 3. (Waits on the
    // stored state: on a loaded machine the quick reconnect above can outlast the
    // grace period, and v1 would then hold an earlier Queued notice.)
    drop(agent1);
    let c1_state = || open_conversations(&node, &t).into_iter().find(|r| r["id"] == c1.0).map(|r| r["state"].to_string()).unwrap_or_default();
    wait_until("chat 1 is queued again", WAIT, || c1_state().contains("Queued"));
    let (f, _) = v1.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.state == ConversationState::Queued)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.agent.is_none()));
    agent2.send(&ClientFrame::Close { conversation: c2 }).await;
    let next = assigned(&mut agent2).await;
    assert_eq!(next, c1, "the requeued chat goes before the newer one ({c3})");
    let history = agent2.messages(c1, 1).await;
    assert_eq!(history[0].body, "first visitor", "the new agent sees the conversation so far");
}

#[tokio::test]
async fn a_visitor_over_tcp_and_an_agent_over_quic_chat_both_ways() {
    use switchboard_client::{connect_and_login, hello, ConnectOptions};
    let (_dir, node, t) = node_with_tenant(&[]);
    let (agent_id, token) = create_agent(&node, t.id, 5);

    // The agent's console speaks QUIC, pinning the node's self-signed certificate.
    let (mut agent, aw) = connect_and_login(&ConnectOptions::quic(node.quic, node.quic_cert()), hello(Auth::Agent { token }))
        .await
        .expect("agent over QUIC");
    assert_eq!(aw.identity, Participant::Agent(agent_id));
    assert_eq!(aw.heartbeat_secs, 25, "QUIC clients get the short heartbeat");
    // The visitor's app speaks TCP.
    let (mut visitor, vw) = connect_and_login(&ConnectOptions::tcp(node.tcp), hello(Auth::Anonymous { tenant: t.id })).await.unwrap();
    assert_eq!(vw.heartbeat_secs, 270);

    visitor.send(&send(1, None, "hello over tcp")).await.unwrap();
    let conv = loop {
        match agent.recv().await.unwrap().expect("agent stream open") {
            ServerFrame::Message(m) => {
                assert_eq!(m.body, "hello over tcp");
                break m.conversation;
            }
            _ => continue,
        }
    };
    agent.send(&send(1, Some(conv), "hello over quic")).await.unwrap();
    loop {
        match visitor.recv().await.unwrap().expect("visitor stream open") {
            ServerFrame::Message(m) if m.sender == Participant::Agent(agent_id) => {
                assert_eq!((m.conversation, m.body.as_str()), (conv, "hello over quic"));
                break;
            }
            _ => continue,
        }
    }
    // Heartbeat over QUIC.
    agent.send(&ClientFrame::Ping).await.unwrap();
    loop {
        if agent.recv().await.unwrap() == Some(ServerFrame::Pong) {
            break;
        }
    }
    node.assert_no_panic();
}
