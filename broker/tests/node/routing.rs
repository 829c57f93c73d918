//! Assignment under load: caps hold, the queue drains.

use crate::support::*;
use std::collections::HashSet;
use switchboard_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_chats_never_exceed_a_cap_of_three_and_the_queue_drains() {
    let (_dir, node, t) = node_with_tenant(&[]);
    const VISITORS: usize = 200;
    const CAP: usize = 3;

    // Five agents, each closing every chat as soon as it has answered it.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut agents = Vec::new();
    for _ in 0..5 {
        let (_, token) = create_agent(&node, t.id, CAP as u32);
        let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
        let done = done.clone();
        agents.push(tokio::spawn(async move {
            let mut active: HashSet<ConversationId> = HashSet::new();
            let (mut handled, mut max_active, mut cmid) = (0usize, 0usize, 0u64);
            while done.load(std::sync::atomic::Ordering::SeqCst) < VISITORS {
                let Some(frame) = agent.try_recv(std::time::Duration::from_millis(200)).await else { continue };
                let ServerFrame::Conversation(u) = frame else { continue };
                match u.state {
                    ConversationState::Assigned if active.insert(u.conversation) => {
                        max_active = max_active.max(active.len());
                        cmid += 1;
                        agent.send(&send(cmid, Some(u.conversation), "done")).await;
                        agent.send(&ClientFrame::Close { conversation: u.conversation }).await;
                    }
                    ConversationState::Closed if active.remove(&u.conversation) => {
                        handled += 1;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            (handled, max_active)
        }));
    }

    // Two hundred visitors write at once.
    let mut visitors = Vec::new();
    for i in 0..VISITORS {
        let addr = node.tcp;
        visitors.push(tokio::spawn(async move {
            let (mut v, _) = Raw::login(addr, Auth::Anonymous { tenant: t.id }, vec![]).await;
            // The agent may close the chat before this visitor's Accepted arrives:
            // wait for both, in either order.
            v.send(&send(1, None, &format!("visitor {i}"))).await;
            let (mut conv, mut closed) = (None, None);
            let mut seen = Vec::new();
            while conv.is_none() || closed.is_none() {
                let Some(f) = v.try_recv(WAIT).await else { panic!("visitor {i} stuck after {seen:?}") };
                seen.push(f.clone());
                match f {
                    ServerFrame::Accepted { conversation, .. } => conv = Some(conversation),
                    ServerFrame::Conversation(u) if u.state == ConversationState::Closed => closed = Some(u.conversation),
                    ServerFrame::Error(e) => panic!("visitor {i}: {e:?}"),
                    _ => {}
                }
            }
            assert_eq!(conv, closed);
            conv.unwrap()
        }));
    }
    let mut convs = HashSet::new();
    for v in visitors {
        convs.insert(v.await.unwrap());
    }
    assert_eq!(convs.len(), VISITORS, "one conversation per visitor");

    let mut total = 0;
    for a in agents {
        let (handled, max_active) = a.await.unwrap();
        assert!(max_active <= CAP, "an agent held {max_active} chats at once (cap {CAP})");
        total += handled;
    }
    assert_eq!(total, VISITORS, "every chat was assigned and closed");
    let open = open_conversations(&node, &t);
    assert!(open.is_empty(), "nothing left open or queued: {open:?}");
    node.assert_no_panic();
}

#[tokio::test]
async fn agent_figures_match_values_computed_from_the_message_log() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (agent_id, token) = create_agent(&node, t.id, 5);
    let get = |path: String| -> serde_json::Value {
        ureq::get(&node.url(&path)).set("authorization", &format!("Bearer {}", t.api_key)).call().unwrap().into_json().unwrap()
    };

    // No agent online: the chat waits in the queue.
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "anyone there?").await;
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    assert_eq!(assigned(&mut agent).await, conv);
    agent.messages(conv, 1).await;
    agent.send_accepted(1, Some(conv), "hello!").await;
    v.send_accepted(2, Some(conv), "my order is late").await;
    v.send_accepted(3, Some(conv), "order 1234").await;
    agent.messages(conv, 2).await;
    agent.send_accepted(2, Some(conv), "checking").await;
    agent.send(&ClientFrame::Close { conversation: conv }).await;
    v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.state == ConversationState::Closed)).await;

    // Hand-computed from the records and the message log.
    let records = get(format!("/v1/tenants/{}/conversations?state=all", t.id.0));
    let r = &records[0];
    let ms = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {r}"));
    let messages = get(format!("/v1/tenants/{}/conversations/{}/messages", t.id.0, conv.0));
    let at = |i: usize| messages[i]["sent_at_ms"].as_u64().unwrap();
    // messages: 0 visitor, 1 agent "hello!", 2 visitor, 3 visitor, 4 agent "checking"
    assert_eq!(messages[1]["body"], "hello!");
    let expected_wait = (ms("assigned_at_ms") - ms("queued_at_ms")) as f64;
    let expected_first = (at(1) - ms("assigned_at_ms")) as f64;
    // the first run waits from the assignment, the second from its first message
    let expected_response = ((at(1) - ms("assigned_at_ms").max(at(0))) + (at(4) - at(2))) as f64 / 2.0;
    let expected_duration = (ms("closed_at_ms") - ms("assigned_at_ms")) as f64;
    assert_eq!(ms("first_agent_reply_at_ms"), at(1), "first reply is the agent's first message");

    let stats = get(format!("/v1/tenants/{}/agents/{}/stats", t.id.0, agent_id.0));
    assert_eq!(stats["conversations"], 1);
    assert_eq!(stats["closed"], 1);
    assert_eq!(stats["avg_wait_ms"].as_f64(), Some(expected_wait));
    assert_eq!(stats["avg_first_response_ms"].as_f64(), Some(expected_first));
    assert_eq!(stats["avg_response_ms"].as_f64(), Some(expected_response));
    assert_eq!(stats["avg_duration_ms"].as_f64(), Some(expected_duration));
}

fn put(node: &Node, t: &Tenant, path: String, body: serde_json::Value) -> serde_json::Value {
    ureq::put(&node.url(&path)).set("authorization", &format!("Bearer {}", t.api_key)).send_json(body).unwrap().into_json().unwrap()
}

#[tokio::test]
async fn two_agents_taking_the_same_chat_from_a_manual_queue_exactly_one_wins() {
    let (_dir, node, t) = node_with_tenant(&[]);
    put(&node, &t, format!("/v1/tenants/{}/groups/0", t.id.0), serde_json::json!({"strategy": "manual"}));
    let (a1, tok1) = create_agent(&node, t.id, 3);
    let (a2, tok2) = create_agent(&node, t.id, 3);
    let (mut s1, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    let (mut s2, _) = Raw::login(node.tcp, Auth::Agent { token: tok2 }, vec![]).await;

    for round in 0..5u64 {
        let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
        let (conv, _) = v.send_accepted(1, None, &format!("round {round}")).await;
        let queued = |f: &ServerFrame| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Queued);
        s1.recv_until(queued).await;
        s2.recv_until(queued).await;
        // Both grab it at once.
        let take = ClientFrame::Take { conversation: conv };
        tokio::join!(s1.send(&take), s2.send(&take));
        let outcome = |f: &ServerFrame| {
            matches!(f, ServerFrame::Error(_)) || matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Assigned)
        };
        let ((f1, _), (f2, _)) = tokio::join!(s1.recv_until(outcome), s2.recv_until(outcome));
        let won = |f: &ServerFrame, me: AgentId| matches!(f, ServerFrame::Conversation(u) if u.agent == Some(me));
        let lost = |f: &ServerFrame, me: AgentId| {
            matches!(f, ServerFrame::Error(e) if e.code == ErrorCode::CONVERSATION_NOT_FOUND)
                || matches!(f, ServerFrame::Conversation(u) if u.agent.is_some() && u.agent != Some(me))
        };
        let (w1, w2) = (won(&f1, a1), won(&f2, a2));
        assert!(w1 ^ w2, "round {round}: exactly one winner: {f1:?} / {f2:?}");
        assert!(if w1 { lost(&f2, a2) } else { lost(&f1, a1) }, "round {round}: the loser is told: {f1:?} / {f2:?}");
        let (winner, conn) = if w1 { (a1, &mut s1) } else { (a2, &mut s2) };
        assert_eq!(conn.messages(conv, 1).await[0].body, format!("round {round}"), "{winner} gets the chat");
        conn.send(&ClientFrame::Close { conversation: conv }).await;
    }
}

#[tokio::test]
async fn a_vip_waits_ahead_of_visitors_who_came_earlier() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (_, token) = create_agent(&node, t.id, 1);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let (mut first, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (busy, _) = first.send_accepted(1, None, "I am being served").await;
    assert_eq!(assigned(&mut agent).await, busy);
    let (mut normal, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (normal_conv, _) = normal.send_accepted(1, None, "normal, earlier").await;
    let (mut vip, w) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let Participant::Visitor(vip_id) = w.identity else { panic!() };
    let p = put(&node, &t, format!("/v1/tenants/{}/visitors/{}/profile", t.id.0, vip_id.0), serde_json::json!({"vip": true, "attributes": {"name": "Ada"}}));
    assert_eq!(p["vip"], true);
    let (vip_conv, _) = vip.send_accepted(1, None, "vip, later").await;
    agent.send(&ClientFrame::Close { conversation: busy }).await;
    assert_eq!(assigned(&mut agent).await, vip_conv, "the VIP goes before {normal_conv}");
}

#[tokio::test]
async fn a_chat_the_agent_does_not_answer_in_time_moves_to_another_agent() {
    let (_dir, node, t) = node_with_tenant(&[]);
    put(&node, &t, format!("/v1/tenants/{}/groups/0", t.id.0), serde_json::json!({"auto_transfer_secs": 1}));
    let (a1, tok1) = create_agent(&node, t.id, 3);
    let (a2, tok2) = create_agent(&node, t.id, 3);
    let (mut s1, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "hello? anyone?").await;
    assert_eq!(assigned(&mut s1).await, conv);
    // Agent 2 arrives; agent 1 stays silent.
    let (mut s2, _) = Raw::login(node.tcp, Auth::Agent { token: tok2 }, vec![]).await;
    assert_eq!(assigned(&mut s2).await, conv, "moved to agent 2 after agent 1's silence");
    assert_eq!(s2.messages(conv, 1).await[0].body, "hello? anyone?");
    let (f, _) = s1.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.agent == Some(a2))).await;
    assert!(matches!(f, ServerFrame::Conversation(_)), "agent 1 is told the chat left it");
    // Agent 1 can no longer write to it; agent 2 can, and agent 2's reply stops the clock.
    s1.send(&send(9, Some(conv), "late")).await;
    let (f, _) = s1.recv_until(|f| matches!(f, ServerFrame::Error(_))).await;
    assert_error(&f, ErrorCode::FORBIDDEN);
    s2.send_accepted(1, Some(conv), "I'm here").await;
    let m = v.messages(conv, 1).await;
    assert_eq!((m[0].sender, m[0].body.as_str()), (Participant::Agent(a2), "I'm here"));
    let _ = a1;
}

#[tokio::test]
async fn waiting_visitors_are_told_their_position_as_it_changes() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (_, token) = create_agent(&node, t.id, 1);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let (mut v1, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c1, _) = v1.send_accepted(1, None, "served").await;
    assert_eq!(assigned(&mut agent).await, c1);
    let status = |conv: ConversationId| move |f: &ServerFrame| matches!(f, ServerFrame::QueueStatus { conversation, .. } if *conversation == conv);
    let (mut v2, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c2, _) = v2.send_accepted(1, None, "second").await;
    let (mut v3, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c3, _) = v3.send_accepted(1, None, "third").await;
    let (f, _) = v2.recv_until(status(c2)).await;
    assert!(matches!(f, ServerFrame::QueueStatus { position: 1, estimated_wait_secs, .. } if estimated_wait_secs > 0), "{f:?}");
    let (f, _) = v3.recv_until(status(c3)).await;
    assert!(matches!(f, ServerFrame::QueueStatus { position: 2, .. }), "{f:?}");
    // The agent finishes with the first visitor: the second is served, the third moves up.
    agent.send(&ClientFrame::Close { conversation: c1 }).await;
    assert_eq!(assigned(&mut agent).await, c2);
    let (f, _) = v3.recv_until(status(c3)).await;
    assert!(matches!(f, ServerFrame::QueueStatus { position: 1, .. }), "{f:?}");
}

#[tokio::test]
async fn a_full_queue_overflows_to_another_group_by_length_and_by_wait_and_then_refuses() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (sales_agent, sales_token) = create_agent(&node, t.id, 1);
    let (backup_agent, backup_token) = create_agent(&node, t.id, 1);
    let backup = admin_post(&node, &format!("/v1/tenants/{}/groups", t.id.0), serde_json::json!({"name": "backup", "members": [backup_agent.0]}));
    let backup_id = backup["id"].as_u64().unwrap();
    let sales = admin_post(
        &node,
        &format!("/v1/tenants/{}/groups", t.id.0),
        serde_json::json!({"name": "sales", "members": [sales_agent.0], "max_queue": 1, "overflow_group": backup_id, "overflow_after_secs": 1}),
    );
    let sales_id = sales["id"].as_u64().unwrap();
    // The bot's menu is the way into a group.
    ureq::put(&node.url(&format!("/v1/tenants/{}/bot", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .send_json(serde_json::json!({"enabled": true, "welcome": "Hi", "menu": [{"label": "Sales", "group": sales_id}]}))
        .unwrap();
    let (mut sales_seat, _) = Raw::login(node.tcp, Auth::Agent { token: sales_token }, vec![]).await;
    let into_sales = |i: u64| async move {
        let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
        let (c, _) = v.send_accepted(1, None, &format!("visitor {i}")).await;
        v.send(&ClientFrame::Choose { conversation: c, item: 1 }).await;
        (v, c)
    };
    let (_v1, c1) = into_sales(1).await;
    assert_eq!(assigned(&mut sales_seat).await, c1, "the sales agent is now full");
    // The next one waits in sales (queue of 1); after a second it overflows to backup
    // by waiting time, where the backup agent (once online) takes it.
    let (mut v2, c2) = into_sales(2).await;
    v2.recv_until(|f| matches!(f, ServerFrame::QueueStatus { conversation, .. } if *conversation == c2)).await;
    let (mut backup_seat, _) = Raw::login(node.tcp, Auth::Agent { token: backup_token }, vec![]).await;
    assert_eq!(assigned(&mut backup_seat).await, c2, "overflowed to backup after waiting");
    // From here on only the queue length decides (no more overflow by waiting).
    let after = put(&node, &t, format!("/v1/tenants/{}/groups/{}", t.id.0, sales_id), serde_json::json!({"overflow_after_secs": 0}));
    assert_eq!(after["overflow_after_secs"], 0);
    // Both agents are full: sales queues one, the next overflows to backup's queue by
    // length... and backup has no limit, so it waits there.
    let (_v3, c3) = into_sales(3).await;
    let (mut v4, c4) = into_sales(4).await;
    let (f, _) = v4.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == c4 && u.state == ConversationState::Queued)).await;
    let _ = f;
    let group_of = |c: ConversationId| -> u64 {
        let list: serde_json::Value = ureq::get(&node.url(&format!("/v1/tenants/{}/conversations", t.id.0)))
            .set("authorization", &format!("Bearer {}", t.api_key))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        list.as_array().unwrap().iter().find(|r| r["id"] == c.0).map(|r| r["group"].as_u64().unwrap()).unwrap_or(u64::MAX)
    };
    assert_eq!(group_of(c3), sales_id, "room in the sales queue");
    assert_eq!(group_of(c4), backup_id, "the sales queue was full: overflowed by length");
    // A queue with a limit and no overflow refuses, clearly.
    put(&node, &t, format!("/v1/tenants/{}/groups/{}", t.id.0, backup_id), serde_json::json!({"max_queue": 1}));
    let (mut v5, c5) = into_sales(5).await;
    let (f, _) = v5.recv_until(|f| matches!(f, ServerFrame::Message(m) if m.conversation == c5 && m.body.contains("queue is full"))).await;
    assert!(matches!(f, ServerFrame::Message(_)));
}

#[tokio::test]
async fn outside_business_hours_chats_wait_as_messages_and_are_served_when_the_group_opens() {
    let (_dir, node, t) = node_with_tenant(&[]);
    // No open interval at all: closed now, whatever the time.
    let g = put(&node, &t, format!("/v1/tenants/{}/groups/0", t.id.0), serde_json::json!({"hours": {"utc_offset_minutes": 480, "days": []}}));
    assert_eq!(g["hours"]["utc_offset_minutes"], 480);
    let bad = ureq::put(&node.url(&format!("/v1/tenants/{}/groups/0", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .send_json(serde_json::json!({"hours": {"utc_offset_minutes": 0, "days": [{"weekday": 7, "open_minute": 0, "close_minute": 60}]}}));
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))));
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "are you there?").await;
    let (f, _) = v.recv_until(|f| matches!(f, ServerFrame::Message(m) if m.sender == Participant::Bot)).await;
    assert!(matches!(&f, ServerFrame::Message(m) if m.body.contains("closed")), "{f:?}");
    v.send_accepted(2, Some(conv), "my order 1234 never arrived").await;
    // The agent gets nothing while closed; opening the group (always open) assigns it.
    put(&node, &t, format!("/v1/tenants/{}/groups/0", t.id.0), serde_json::json!({"hours": {"always": true}}));
    assert_eq!(assigned(&mut agent).await, conv);
    let left = agent.messages(conv, 3).await;
    assert_eq!(left[2].body, "my order 1234 never arrived", "the messages left while closed are there");
}

#[tokio::test]
async fn a_returning_visitor_goes_back_to_their_agent_and_waits_a_while_if_that_agent_is_busy() {
    // Returning right after a close would reopen the same conversation: turn that off.
    let (_dir, node, t) = node_with_tenant(&["--reopen-window-secs", "0"]);
    put(&node, &t, format!("/v1/tenants/{}/groups/0", t.id.0), serde_json::json!({"sticky_wait_secs": 2}));
    let (a1, tok1) = create_agent(&node, t.id, 2);
    let (a2, tok2) = create_agent(&node, t.id, 2);
    let (mut s1, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    let auth = Auth::Verified { tenant: t.id, user_id: "regular".into(), signature: switchboard_protocol::auth::sign_user_id(t.secret.as_bytes(), "regular").to_vec() };
    let (mut v, _) = Raw::login(node.tcp, auth.clone(), vec![]).await;
    let (first, _) = v.send_accepted(1, None, "first visit").await;
    assert_eq!(assigned(&mut s1).await, first);
    s1.send(&ClientFrame::Close { conversation: first }).await;
    v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == first && u.state == ConversationState::Closed)).await;

    // Agent 2 comes online and is idle; agent 1 takes another chat, so least-busy would
    // choose agent 2. The returning visitor still goes to agent 1.
    let (mut s2, _) = Raw::login(node.tcp, Auth::Agent { token: tok2 }, vec![]).await;
    let (mut other, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (busy1, _) = other.send_accepted(1, None, "someone else").await;
    let (f, _) = other.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == busy1 && u.state == ConversationState::Assigned)).await;
    let busy1_agent = match f { ServerFrame::Conversation(u) => u.agent.unwrap(), _ => unreachable!() };
    assert_eq!(busy1_agent, a2, "least-busy: agent 2 had nothing");
    let (second, _) = v.send_accepted(2, None, "back again").await;
    assert_ne!(second, first);
    let (f, _) = v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == second && u.state == ConversationState::Assigned)).await;
    assert!(matches!(&f, ServerFrame::Conversation(u) if u.agent == Some(a1)), "sticky to agent 1: {f:?}");
    s1.send(&ClientFrame::Close { conversation: second }).await;
    v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == second && u.state == ConversationState::Closed)).await;

    // Agent 1 goes away: the visitor's next chat waits up to 2 s for agent 1, then goes
    // to agent 2 (who has room) rather than staying stuck.
    drop(s1);
    let seats_online = || -> f64 {
        let text = ureq::get(&node.url("/metrics")).call().unwrap().into_string().unwrap();
        text.lines().find(|l| l.starts_with("switchboard_seats_online ")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
    };
    let mut last = -1.0;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        last = seats_online();
        if last == 1.0 {
            break;
        }
        std::thread::yield_now();
    }
    assert_eq!(last, 1.0, "agent 1 offline (seats online: {last})\n{}", node.log());
    let (third, _) = v.send_accepted(3, None, "third time").await;
    let (f, _) = s2.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == third && u.state == ConversationState::Assigned)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.agent == Some(a2)));
}

#[tokio::test]
async fn an_idle_conversation_closes_and_the_visitor_writing_again_soon_reopens_it() {
    let (_dir, node, t) = node_with_tenant(&["--auto-close-secs", "1"]);
    let (agent_id, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "hello").await;
    assert_eq!(assigned(&mut agent).await, conv);
    agent.send_accepted(1, Some(conv), "hi, how can I help?").await;
    // Nobody writes for a second: it closes by itself.
    v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Closed)).await;
    // The visitor writes again soon after: the same conversation reopens, seqs go on,
    // and the agent it had gets it back.
    let (again, seq) = v.send_accepted(2, None, "sorry, one more question").await;
    assert_eq!((again, seq), (conv, 3), "reopened, not a duplicate");
    let (f, _) = agent.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Assigned)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.agent == Some(agent_id)));
    let history = agent.messages(conv, 3).await;
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3], "from its acknowledged cursor (none): everything");
    assert_eq!(history[2].body, "sorry, one more question");
}
