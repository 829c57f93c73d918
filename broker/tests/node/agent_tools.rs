//! Agent tools: ratings, transfers and internal notes, visitor context, quick
//! replies, invitations, presence and entry points.

use crate::support::*;
use switchboard_protocol::*;

#[tokio::test]
async fn visitors_rate_conversations_and_the_agent_figures_show_it() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (agent_id, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let mut scores = Vec::new();
    for (i, score) in [5u8, 3].into_iter().enumerate() {
        let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
        let (conv, _) = v.send_accepted(1, None, "help").await;
        let (f, _) = agent.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Assigned)).await;
        let _ = f;
        if i == 1 {
            // The agent may ask during the chat.
            agent.send(&ClientFrame::RequestRating { conversation: conv }).await;
            v.recv_until(|f| matches!(f, ServerFrame::RatingRequested { conversation } if *conversation == conv)).await;
        }
        agent.send(&ClientFrame::Close { conversation: conv }).await;
        // Closing asks for a rating; the visitor answers after the close.
        v.recv_until(|f| matches!(f, ServerFrame::RatingRequested { conversation } if *conversation == conv)).await;
        v.send(&ClientFrame::Rate { conversation: conv, score: 9, comment: String::new() }).await;
        assert_error(&v.recv_until(|f| matches!(f, ServerFrame::Error(_))).await.0, ErrorCode::INVALID_REQUEST);
        v.send(&ClientFrame::Rate { conversation: conv, score, comment: "thanks".into() }).await;
        scores.push(score);
        // No error frame arrives for a valid rating: a Ping proves it was processed.
        v.send(&ClientFrame::Ping).await;
        let (f, skipped) = v.recv_until(|f| matches!(f, ServerFrame::Pong)).await;
        assert!(matches!(f, ServerFrame::Pong) && !skipped.iter().any(|f| matches!(f, ServerFrame::Error(_))), "{skipped:?}");
    }
    let stats: serde_json::Value = ureq::get(&node.url(&format!("/v1/tenants/{}/agents/{}/stats", t.id.0, agent_id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(stats["ratings"], 2);
    assert_eq!(stats["avg_rating"].as_f64(), Some(4.0));
}

#[tokio::test]
async fn an_agent_transfers_a_chat_with_a_note_the_visitor_never_sees() {
    use switchboard_protocol::TransferTarget;
    let (_dir, node, t) = node_with_tenant(&[]);
    let (a1, tok1) = create_agent(&node, t.id, 3);
    let (a2, tok2) = create_agent(&node, t.id, 3);
    let (a3, tok3) = create_agent(&node, t.id, 3);
    let g = admin_post(&node, &format!("/v1/tenants/{}/groups", t.id.0), serde_json::json!({"name": "refunds", "members": [a3.0]}));
    let refunds = GroupId(g["id"].as_u64().unwrap());
    let (mut s1, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "I want a refund").await;
    assert_eq!(assigned(&mut s1).await, conv);
    let (mut s2, _) = Raw::login(node.tcp, Auth::Agent { token: tok2 }, vec![]).await;
    let (mut s3, _) = Raw::login(node.tcp, Auth::Agent { token: tok3 }, vec![]).await;

    // An internal note, then a transfer to agent 2 with another note.
    s1.send(&ClientFrame::Note { conversation: conv, body: "customer since 2019".into() }).await;
    s1.recv_until(|f| matches!(f, ServerFrame::Notes { .. })).await;
    s1.send(&ClientFrame::Transfer { conversation: conv, to: TransferTarget::Agent(a1), note: String::new() }).await;
    assert_error(&s1.recv_until(|f| matches!(f, ServerFrame::Error(_))).await.0, ErrorCode::INVALID_REQUEST);
    s1.send(&ClientFrame::Transfer { conversation: conv, to: TransferTarget::Agent(a2), note: "refund of order 1234, please finish".into() }).await;
    let (f, _) = s2.recv_until(|f| matches!(f, ServerFrame::Notes { conversation, .. } if *conversation == conv)).await;
    let ServerFrame::Notes { notes, .. } = f else { unreachable!() };
    let bodies: Vec<&str> = notes.iter().map(|n| n.body.as_str()).collect();
    assert_eq!(bodies, vec!["customer since 2019", "refund of order 1234, please finish"]);
    assert_eq!(s2.messages(conv, 1).await[0].body, "I want a refund", "the history comes along");
    s1.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.agent == Some(a2))).await;

    // Agent 2 sends it on to the refunds group, where agent 3 gets it.
    s2.send(&ClientFrame::Transfer { conversation: conv, to: TransferTarget::Group(refunds), note: String::new() }).await;
    let (f, _) = s3.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conv && u.state == ConversationState::Assigned)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.agent == Some(a3)));
    s3.send_accepted(1, Some(conv), "Your refund is on its way.").await;

    // The visitor saw the messages and the hand-overs, never a note.
    let seen = v.messages(conv, 1).await;
    assert_eq!(seen[0].body, "Your refund is on its way.");
    v.send(&ClientFrame::Ping).await;
    let (_, before_pong) = v.recv_until(|f| matches!(f, ServerFrame::Pong)).await;
    assert!(!before_pong.iter().any(|f| matches!(f, ServerFrame::Notes { .. })), "{before_pong:?}");
    let notes: serde_json::Value = ureq::get(&node.url(&format!("/v1/tenants/{}/conversations/{}/notes", t.id.0, conv.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(notes.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_agent_sees_the_visitors_profile_trail_and_past_conversations() {
    use switchboard_protocol::PageView;
    let (_dir, node, t) = node_with_tenant(&["--reopen-window-secs", "0"]);
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let auth = Auth::Verified { tenant: t.id, user_id: "u-7".into(), signature: switchboard_protocol::auth::sign_user_id(t.secret.as_bytes(), "u-7").to_vec() };
    let (mut v, w) = Raw::login(node.tcp, auth, vec![]).await;
    let Participant::Visitor(visitor) = w.identity else { panic!() };
    // An earlier conversation.
    let (earlier, _) = v.send_accepted(1, None, "first question").await;
    assert_eq!(assigned(&mut agent).await, earlier);
    agent.send(&ClientFrame::Close { conversation: earlier }).await;
    v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == earlier && u.state == ConversationState::Closed)).await;
    // The app reports who this is and where they have been.
    v.send(&ClientFrame::SetProfile { attributes: vec![("name".into(), "Ada".into()), ("plan".into(), "gold".into())] }).await;
    for (url, title) in [("/orders", "My orders"), ("/orders/1234", "Order 1234")] {
        v.send(&ClientFrame::Track(PageView { url: url.into(), title: title.into(), referrer: String::new(), keywords: String::new(), at_ms: 0 })).await;
    }
    let (now, _) = v.send_accepted(2, None, "where is order 1234?").await;
    let (f, _) = agent.recv_until(|f| matches!(f, ServerFrame::VisitorContext(c) if c.conversation == now)).await;
    let ServerFrame::VisitorContext(c) = f else { unreachable!() };
    assert_eq!(c.visitor, visitor);
    assert!(c.attributes.contains(&("name".into(), "Ada".into())) && c.attributes.contains(&("plan".into(), "gold".into())), "{c:?}");
    assert_eq!(c.trail.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(), vec!["My orders", "Order 1234"]);
    assert_eq!(c.past_conversations, vec![earlier]);
    // The visitor never gets that frame.
    v.send(&ClientFrame::Ping).await;
    let (_, before) = v.recv_until(|f| matches!(f, ServerFrame::Pong)).await;
    assert!(!before.iter().any(|f| matches!(f, ServerFrame::VisitorContext(_))));
}

#[tokio::test]
async fn agents_list_their_quick_replies_and_invite_an_online_visitor() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (a1, tok1) = create_agent(&node, t.id, 5);
    let (a2, _) = create_agent(&node, t.id, 5);
    let qr = |body: serde_json::Value| admin_post(&node, &format!("/v1/tenants/{}/quick-replies", t.id.0), body);
    qr(serde_json::json!({"title": "greeting", "body": "Hello! How can I help?"}));
    qr(serde_json::json!({"title": "mine", "body": "Ann here.", "agent": a1.0}));
    qr(serde_json::json!({"title": "theirs", "body": "Bob here.", "agent": a2.0}));
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    agent.send(&ClientFrame::ListQuickReplies).await;
    let (f, _) = agent.recv_until(|f| matches!(f, ServerFrame::QuickReplies { .. })).await;
    let ServerFrame::QuickReplies { replies } = f else { unreachable!() };
    assert_eq!(replies.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(), vec!["greeting", "mine"], "the tenant's, then its own; not another agent's");

    // An online visitor with no conversation is invited.
    let (mut v, w) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let Participant::Visitor(visitor) = w.identity else { panic!() };
    // Welcome comes before the session registers; a Pong proves it is online.
    v.send(&ClientFrame::Ping).await;
    v.recv_until(|f| matches!(f, ServerFrame::Pong)).await;
    agent.send(&ClientFrame::Invite { visitor, body: "Need help choosing a plan?".into(), client_msg_id: 1 }).await;
    let (f, _) = agent.recv_until(|f| matches!(f, ServerFrame::Accepted { client_msg_id: 1, .. } | ServerFrame::Error(_))).await;
    let ServerFrame::Accepted { conversation, seq, .. } = f else { panic!("{f:?}") };
    assert_eq!(seq, 1);
    let (f, _) = v.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.conversation == conversation)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.agent == Some(a1)));
    assert_eq!(v.messages(conversation, 1).await[0].body, "Need help choosing a plan?");
    assert_eq!(v.send_accepted(1, None, "yes please").await, (conversation, 2), "the visitor answers in it");
    // Not twice, and not an offline visitor.
    agent.send(&ClientFrame::Invite { visitor, body: "again".into(), client_msg_id: 2 }).await;
    assert_error(&agent.recv_until(|f| matches!(f, ServerFrame::Error(_))).await.0, ErrorCode::INVALID_REQUEST);
    agent.send(&ClientFrame::Invite { visitor: VisitorId(999_999), body: "hi".into(), client_msg_id: 3 }).await;
    assert_error(&agent.recv_until(|f| matches!(f, ServerFrame::Error(_))).await.0, ErrorCode::INVALID_REQUEST);
}

#[tokio::test]
async fn a_busy_agent_gets_no_new_chats_and_a_visitor_can_enter_by_a_groups_entry_point() {
    use switchboard_protocol::Presence;
    let (_dir, node, t) = node_with_tenant(&[]);
    let (a1, tok1) = create_agent(&node, t.id, 5);
    let g = admin_post(&node, &format!("/v1/tenants/{}/groups", t.id.0), serde_json::json!({"name": "billing", "members": [a1.0]}));
    let billing = GroupId(g["id"].as_u64().unwrap());
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: tok1 }, vec![]).await;
    agent.send(&ClientFrame::SetPresence { presence: Presence::Busy }).await;
    // SetPresence has no answer. A connection's frames are handled in order and the
    // seat hands its presence to routing before it answers the next frame, so the Pong
    // means the visitor below is routed after it (without it, the chat could go to the
    // agent while its Busy was still in flight).
    agent.send(&ClientFrame::Ping).await;
    agent.recv_until(|f| matches!(f, ServerFrame::Pong)).await;
    let (mut v1, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c1, _) = v1.send_accepted(1, None, "hello").await;
    v1.recv_until(|f| matches!(f, ServerFrame::QueueStatus { conversation, .. } if *conversation == c1)).await;
    agent.send(&ClientFrame::SetPresence { presence: Presence::Online }).await;
    assert_eq!(assigned(&mut agent).await, c1, "online again: the waiting chat comes");

    // The app's billing page opens a conversation in the billing group before writing.
    let (mut v2, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    v2.send(&ClientFrame::OpenIn { group: billing }).await;
    let (f, _) = v2.recv_until(|f| matches!(f, ServerFrame::Conversation(_))).await;
    let ServerFrame::Conversation(u) = f else { unreachable!() };
    assert_eq!(v2.send_accepted(1, None, "about my invoice").await, (u.conversation, 1), "the message goes into it");
    let rec = open_conversations(&node, &t).into_iter().find(|r| r["id"] == u.conversation.0).unwrap();
    assert_eq!(rec["group"], billing.0);
}

/// Status of an admin request (`ureq` reports 4xx/5xx as errors).
fn admin_status(node: &Node, method: &str, path: &str, body: Option<serde_json::Value>) -> u16 {
    let req = ureq::request(method, &node.url(path)).set("authorization", &format!("Bearer {}", node.admin_token));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match res {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

#[tokio::test]
async fn a_visitor_from_a_mapped_channel_enters_its_group_and_bad_channels_are_refused() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (a1, _) = create_agent(&node, t.id, 5);
    let g = admin_post(&node, &format!("/v1/tenants/{}/groups", t.id.0), serde_json::json!({"name": "mini-program", "members": [a1.0]}));
    let mini = GroupId(g["id"].as_u64().unwrap());
    let channels = format!("/v1/tenants/{}/channels", t.id.0);
    assert_eq!(admin_status(&node, "PUT", &format!("{channels}/wechat-mini"), Some(serde_json::json!({"group": mini.0}))), 200);
    assert_eq!(admin_status(&node, "PUT", &format!("{channels}/Bad%20Name"), Some(serde_json::json!({"group": mini.0}))), 400);
    assert_eq!(admin_status(&node, "PUT", &format!("{channels}/web"), Some(serde_json::json!({"group": 999}))), 400, "no such group");
    let list: serde_json::Value =
        ureq::get(&node.url(&channels)).set("authorization", &format!("Bearer {}", node.admin_token)).call().unwrap().into_json().unwrap();
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "{list}");
    assert_eq!(list[0]["channel"], "wechat-mini");

    let group_of = |c: ConversationId| open_conversations(&node, &t).into_iter().find(|r| r["id"] == c.0).unwrap()["group"].clone();
    let (mut v1, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    v1.send(&ClientFrame::OpenVia { channel: "wechat-mini".into() }).await;
    let (f, _) = v1.recv_until(|f| matches!(f, ServerFrame::Conversation(_))).await;
    let ServerFrame::Conversation(u) = f else { unreachable!() };
    assert_eq!(v1.send_accepted(1, None, "from the mini program").await, (u.conversation, 1));
    assert_eq!(group_of(u.conversation), mini.0, "the channel's group");

    // A channel without a mapping goes to everyone; a malformed one is refused.
    let (mut v2, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    v2.send(&ClientFrame::OpenVia { channel: "BAD channel!".into() }).await;
    assert_error(&v2.recv_until(|f| matches!(f, ServerFrame::Error(_))).await.0, ErrorCode::INVALID_REQUEST);
    v2.send(&ClientFrame::OpenVia { channel: "android".into() }).await;
    let (f, _) = v2.recv_until(|f| matches!(f, ServerFrame::Conversation(_))).await;
    let ServerFrame::Conversation(u2) = f else { unreachable!() };
    assert_eq!(group_of(u2.conversation), 0);

    assert_eq!(admin_status(&node, "DELETE", &format!("{channels}/wechat-mini"), None), 204);
    assert_eq!(admin_status(&node, "DELETE", &format!("{channels}/wechat-mini"), None), 404);
}
