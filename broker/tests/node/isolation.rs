//! Nothing crosses tenants, on the wire or through REST.

use crate::support::*;
use switchboard_protocol::auth::sign_user_id;
use switchboard_protocol::*;

#[tokio::test]
async fn tenant_a_credentials_cannot_touch_tenant_b() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let a = create_tenant(&node, "a");
    let b = create_tenant(&node, "b");
    let (_, a_token) = create_agent(&node, a.id, 5);
    let (b_agent, b_token) = create_agent(&node, b.id, 5);
    let (mut b_agent_conn, _) = Raw::login(node.tcp, Auth::Agent { token: b_token }, vec![]).await;
    let (mut b_visitor, bw) = Raw::login(node.tcp, Auth::Anonymous { tenant: b.id }, vec![]).await;
    let (b_conv, _) = b_visitor.send_accepted(1, None, "secret of b").await;
    assert_eq!(assigned(&mut b_agent_conn).await, b_conv);

    // Protocol: tenant A's agent cannot write, read, ack or close B's conversation.
    let (mut a_agent, _) = Raw::login(node.tcp, Auth::Agent { token: a_token }, vec![Cursor { conversation: b_conv, seq: 0 }]).await;
    a_agent.send(&send(9, Some(b_conv), "intrusion")).await;
    let (f, _) = a_agent.recv_until(|f| matches!(f, ServerFrame::Error(_))).await;
    assert_error(&f, ErrorCode::CONVERSATION_NOT_FOUND);
    a_agent.send(&ClientFrame::Fetch { conversation: b_conv, after_seq: 0, limit: 10 }).await;
    assert_error(&a_agent.recv().await, ErrorCode::CONVERSATION_NOT_FOUND);
    a_agent.send(&ClientFrame::Close { conversation: b_conv }).await;
    assert_error(&a_agent.recv().await, ErrorCode::CONVERSATION_NOT_FOUND);

    // A's signing secret does not make a B visitor; B's resume token does not work for A.
    let mut c = Raw::connect(node.tcp).await;
    c.send(&hello(Auth::Verified { tenant: b.id, user_id: "u".into(), signature: sign_user_id(a.secret.as_bytes(), "u").to_vec() }, vec![])).await;
    assert_error(&c.recv().await, ErrorCode::AUTH_FAILED);
    let Participant::Visitor(bv) = bw.identity else { panic!() };
    let mut c = Raw::connect(node.tcp).await;
    c.send(&hello(Auth::Resume { tenant: a.id, visitor: bv, token: bw.resume_token.clone().unwrap() }, vec![])).await;
    assert_error(&c.recv().await, ErrorCode::AUTH_FAILED);

    // An A visitor cannot write into B's conversation.
    let (mut a_visitor, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: a.id }, vec![]).await;
    a_visitor.send(&send(1, Some(b_conv), "x")).await;
    assert_error(&a_visitor.recv().await, ErrorCode::CONVERSATION_NOT_FOUND);

    // REST: A's API key sees nothing of B.
    let get = |path: String, key: &str| {
        match ureq::get(&node.url(&path)).set("authorization", &format!("Bearer {key}")).call() {
            Ok(r) => (r.status(), r.into_json::<serde_json::Value>().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_json::<serde_json::Value>().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let (s, body) = get(format!("/v1/tenants/{}/conversations/{}/messages", b.id.0, b_conv.0), &a.api_key);
    assert_eq!((s, body["code"].as_str()), (404, Some("not_found")));
    // even naming its own tenant in the path with B's conversation
    let (s, _) = get(format!("/v1/tenants/{}/conversations/{}/messages", a.id.0, b_conv.0), &a.api_key);
    assert_eq!(s, 404);
    let (s, _) = get(format!("/v1/tenants/{}/agents", b.id.0), &a.api_key);
    assert_eq!(s, 404);
    let (s, body) = get("/v1/tenants".into(), &a.api_key);
    assert_eq!(s, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "a tenant key lists only its tenant: {body}");
    let r = ureq::patch(&node.url(&format!("/v1/tenants/{}/agents/{}", a.id.0, b_agent.0)))
        .set("authorization", &format!("Bearer {}", a.api_key))
        .send_json(serde_json::json!({"capacity": 1}));
    assert!(matches!(r, Err(ureq::Error::Status(404, _))), "{r:?}");
    let r = ureq::post(&node.url("/v1/tenants")).set("authorization", &format!("Bearer {}", a.api_key)).send_json(serde_json::json!({"name": "x"}));
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "{r:?}");
    // B's own key does see it.
    let (s, body) = get(format!("/v1/tenants/{}/conversations/{}/messages", b.id.0, b_conv.0), &b.api_key);
    assert_eq!((s, body[0]["body"].as_str()), (200, Some("secret of b")));
    node.assert_no_panic();
}
