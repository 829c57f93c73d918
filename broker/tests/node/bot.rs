//! The bot: welcome and menu, knowledge-base answers in two languages, handoff.

use crate::support::*;
use serde_json::json;
use switchboard_protocol::*;

async fn bot_says(v: &mut Raw, conv: ConversationId, needle: &str) -> String {
    let (f, _) = v
        .recv_until(|f| matches!(f, ServerFrame::Message(m) if m.conversation == conv && m.sender == Participant::Bot && m.body.contains(needle)))
        .await;
    match f {
        ServerFrame::Message(m) => m.body,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn the_bot_routes_by_menu_answers_paraphrases_in_two_languages_and_hands_off() {
    let (_dir, node, t) = node_with_tenant(&[]);
    let (billing_agent, billing_token) = create_agent(&node, t.id, 5);
    let (_, other_token) = create_agent(&node, t.id, 5);
    let g = admin_post(&node, &format!("/v1/tenants/{}/groups", t.id.0), json!({"name": "Billing", "members": [billing_agent.0]}));
    let billing = g["id"].as_u64().unwrap();
    for (questions, answer) in [
        (vec!["How do I reset my password?", "I can't log in"], "Use 'Forgot password' on the login page."),
        (vec!["What are your opening hours?"], "9:00-18:00, Monday to Friday."),
        (vec!["怎么申请退款", "如何退款"], "在订单页点击申请退款。"),
        (vec!["运费怎么算"], "满99元包邮。"),
    ] {
        admin_post(&node, &format!("/v1/tenants/{}/knowledge", t.id.0), json!({"questions": questions, "answer": answer}));
    }
    let r = ureq::put(&node.url(&format!("/v1/tenants/{}/bot", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .send_json(json!({"enabled": true, "welcome": "Hi, I'm the Acme bot.", "menu": [{"label": "Billing", "group": billing}], "confidence": 0.25}))
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = ureq::put(&node.url(&format!("/v1/tenants/{}/bot", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .send_json(json!({"enabled": true, "welcome": "x", "menu": [{"label": "Nowhere", "group": 999}]}));
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))), "a menu pointing nowhere is refused");

    let (mut billing_seat, _) = Raw::login(node.tcp, Auth::Agent { token: billing_token }, vec![]).await;
    let (mut other_seat, _) = Raw::login(node.tcp, Auth::Agent { token: other_token }, vec![]).await;

    // Visitor 1 picks "Billing" from the menu: only the billing agent may get it,
    // although the other agent is idle too.
    let (mut v1, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c1, _) = v1.send_accepted(1, None, "hello").await;
    let welcome = bot_says(&mut v1, c1, "Acme bot").await;
    assert!(welcome.contains("1. Billing"), "{welcome}");
    v1.send(&ClientFrame::Choose { conversation: c1, item: 1 }).await;
    bot_says(&mut v1, c1, "Connecting").await;
    assert_eq!(assigned(&mut billing_seat).await, c1);
    let history = billing_seat.messages(c1, 3).await;
    assert_eq!(history[0].sender, Participant::Bot, "the agent sees what the bot said");

    // Visitor 2 asks questions the knowledge base answers, in English and Chinese.
    let (mut v2, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c2, _) = v2.send_accepted(1, None, "hi").await;
    bot_says(&mut v2, c2, "Acme bot").await;
    v2.send_accepted(2, Some(c2), "I forgot my password, how can I change it?").await;
    bot_says(&mut v2, c2, "Forgot password").await;
    v2.send_accepted(3, Some(c2), "我想退款，要怎么操作").await;
    bot_says(&mut v2, c2, "申请退款").await;
    // ...then asks for a human: the least-busy agent (the other one) gets it.
    v2.send_accepted(4, Some(c2), "转人工").await;
    bot_says(&mut v2, c2, "Connecting").await;
    assert_eq!(assigned(&mut other_seat).await, c2);
    let (f, _) = v2.recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.state == ConversationState::Assigned)).await;
    assert!(matches!(f, ServerFrame::Conversation(u) if u.conversation == c2));

    let metrics = ureq::get(&node.url("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("switchboard_bot_handoffs_total 2"), "{metrics}");
    assert!(metrics.contains("switchboard_bot_replies_total{outcome=\"answered\"} 2"), "{metrics}");
    node.assert_no_panic();
}
