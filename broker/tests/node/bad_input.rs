//! Hostile and broken input gets a clear error; the node and other connections carry on.

use crate::support::*;
use switchboard_protocol::*;

/// A visitor/agent pair that keeps chatting between the attacks.
struct Bystander {
    visitor: Raw,
    agent: Raw,
    conv: ConversationId,
    next: u64,
}

impl Bystander {
    async fn new(node: &Node, t: &Tenant) -> Bystander {
        let (_, token) = create_agent(node, t.id, 5);
        let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
        let (mut visitor, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
        let (conv, _) = visitor.send_accepted(1, None, "hi").await;
        agent.messages(conv, 1).await;
        Bystander { visitor, agent, conv, next: 2 }
    }

    async fn still_works(&mut self) {
        let (_, seq) = self.visitor.send_accepted(self.next, Some(self.conv), "still here").await;
        assert_eq!(self.agent.messages(self.conv, 1).await[0].seq, seq);
        self.next += 1;
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_harms_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--max-message-len", "1000"]);
    let t = create_tenant(&node, "acme");
    let mut bystander = Bystander::new(&node, &t).await;

    // Random bytes instead of a Hello.
    let mut c = Raw::connect(node.tcp).await;
    c.send_bytes(&[0x00, 0x00, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x99]).await;
    let frames = c.until_closed().await;
    assert_error(frames.last().expect("an error frame"), ErrorCode::MALFORMED_FRAME);
    bystander.still_works().await;

    let mut c = Raw::connect(node.tcp).await;
    c.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let frames = c.until_closed().await;
    assert!(matches!(frames.last(), Some(ServerFrame::Error(e)) if e.fatal), "{frames:?}");

    // A 4 GiB length prefix.
    let mut c = Raw::connect(node.tcp).await;
    c.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0, 1, 2]).await;
    let frames = c.until_closed().await;
    let e = assert_error(frames.last().unwrap(), ErrorCode::FRAME_TOO_LARGE);
    assert!(e.fatal && e.message.contains("exceeds"), "{e:?}");
    bystander.still_works().await;

    // A truncated frame, then the client hangs up.
    let mut c = Raw::connect(node.tcp).await;
    c.send_bytes(&[0, 0, 0, 50, 0, 1]).await;
    drop(c);

    // A frame before login.
    let mut c = Raw::connect(node.tcp).await;
    c.send(&ClientFrame::Ping).await;
    let frames = c.until_closed().await;
    assert_error(&frames[0], ErrorCode::NOT_LOGGED_IN);

    // A forged HMAC, a wrong version, an unknown tenant.
    let mut c = Raw::connect(node.tcp).await;
    c.send(&hello(Auth::Verified { tenant: t.id, user_id: "mallory".into(), signature: vec![7; 32] }, vec![])).await;
    assert_error(&c.until_closed().await[0], ErrorCode::AUTH_FAILED);
    let mut c = Raw::connect(node.tcp).await;
    c.send(&ClientFrame::Hello(Hello { version: 99, auth: Auth::Anonymous { tenant: t.id }, resume: vec![] })).await;
    assert_error(&c.until_closed().await[0], ErrorCode::UNSUPPORTED_VERSION);
    let mut c = Raw::connect(node.tcp).await;
    c.send(&hello(Auth::Anonymous { tenant: TenantId(999_999) }, vec![])).await;
    assert_error(&c.until_closed().await[0], ErrorCode::AUTH_FAILED);
    let mut c = Raw::connect(node.tcp).await;
    c.send(&hello(Auth::Agent { token: "guess".into() }, vec![])).await;
    assert_error(&c.until_closed().await[0], ErrorCode::AUTH_FAILED);
    bystander.still_works().await;

    // After login: an unknown variant is rejected but the connection lives on.
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    v.send_bytes(&[0, 0, 0, 2, 77, 0]).await;
    let f = v.recv().await;
    assert!(!assert_error(&f, ErrorCode::MALFORMED_FRAME).fatal);
    v.send(&ClientFrame::Ping).await;
    assert_eq!(v.recv().await, ServerFrame::Pong);
    // A second Hello.
    v.send(&hello(Auth::Anonymous { tenant: t.id }, vec![])).await;
    assert_error(&v.recv().await, ErrorCode::ALREADY_LOGGED_IN);
    // An oversize message body: rejected with its id, nothing stored.
    v.send(&send(5, None, &"x".repeat(1001))).await;
    let f = v.recv().await;
    assert_eq!(assert_error(&f, ErrorCode::MESSAGE_TOO_LARGE).client_msg_id, Some(5));
    // An agent-only rule: a visitor naming a conversation that does not exist.
    v.send(&send(6, Some(ConversationId(123_456)), "x")).await;
    assert_error(&v.recv().await, ErrorCode::CONVERSATION_NOT_FOUND);
    // A frame over the maximum frame size is fatal.
    let huge = FrameCodec::new(1 << 20).encode_to_vec(&send(7, None, &"y".repeat(70 * 1024))).unwrap();
    v.send_bytes(&huge).await;
    let frames = v.until_closed().await;
    assert_error(frames.last().unwrap(), ErrorCode::FRAME_TOO_LARGE);

    // An empty frame.
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    v.send_bytes(&[0, 0, 0, 0]).await;
    assert_error(v.until_closed().await.last().unwrap(), ErrorCode::MALFORMED_FRAME);

    bystander.still_works().await;
    assert!(node.is_running());
    node.assert_no_panic();
}
