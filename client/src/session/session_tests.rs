//! Sessions against the scripted in-test server.

use super::*;
use crate::test_server::{message, visitor_welcome, TestServer, WAIT};
use switchboard_protocol::{AgentId, ClientFrame, ServerFrame, TenantId, VisitorId};

const C: ConversationId = ConversationId(4);

fn config(addr: SocketAddr) -> SessionConfig {
    let mut config = SessionConfig::new(ConnectOptions::tcp(addr), Auth::Anonymous { tenant: TenantId(1) });
    config.reconnect = ReconnectPolicy { max_attempts: 5, initial_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(50) };
    config.ack_delay = Duration::ZERO;
    config.first_client_msg_id = Some(100);
    config
}

async fn next(session: &mut Session) -> Event {
    tokio::time::timeout(WAIT, session.next_event()).await.expect("event in time").expect("session open")
}

#[tokio::test]
async fn an_idle_session_pings_every_heartbeat() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.login(visitor_welcome(3, 1)).await;
        let first = conn.recv().await;
        conn.send(&ServerFrame::Pong).await;
        let second = conn.recv().await;
        (first, second)
    });
    let session = Session::connect(config(addr)).await.unwrap();
    assert_eq!(session.identity(), Participant::Visitor(VisitorId(3)));
    let (first, second) = serving.await.unwrap();
    assert_eq!(first, Some(ClientFrame::Ping));
    assert_eq!(second, Some(ClientFrame::Ping));
    session.shutdown().await;
}

#[tokio::test]
async fn a_lost_connection_resumes_with_token_cursors_and_the_unaccepted_send() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        let agent = Participant::Agent(AgentId(8));
        conn.send(&message(4, 1, agent, "one")).await;
        conn.send(&message(4, 2, agent, "two")).await;
        let send = conn.recv_skipping_control().await;
        drop(conn); // lost before the Accepted
        let mut conn = server.accept().await;
        let hello = conn.login(visitor_welcome(3, 30)).await;
        let resent = conn.recv_skipping_control().await;
        if let Some(ClientFrame::Send(m)) = &resent {
            conn.send(&ServerFrame::Accepted { client_msg_id: m.client_msg_id, conversation: C, seq: 3 }).await;
        }
        let ack = loop {
            match conn.recv().await {
                Some(ClientFrame::Ack { conversation, seq }) if seq == 3 => break Some((conversation, seq)),
                Some(_) => continue,
                None => break None,
            }
        };
        (send, hello, resent, ack)
    });
    let mut session = Session::connect(config(addr)).await.unwrap();
    for expected in ["one", "two"] {
        match next(&mut session).await {
            Event::Message { message, origin: Origin::Live } => assert_eq!(message.body, expected),
            other => panic!("unexpected {other:?}"),
        }
    }
    let id = session.send(None, "pending").await.unwrap();
    assert_eq!(id, 100);
    assert!(matches!(next(&mut session).await, Event::Disconnected { .. }));
    match next(&mut session).await {
        Event::Reconnected { connection, .. } => assert_eq!(connection, 2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(next(&mut session).await, Event::Accepted { client_msg_id: 100, conversation: C, seq: 3 });
    let (send, hello, resent, ack) = serving.await.unwrap();
    assert_eq!(send, resent, "the same frame, same client_msg_id");
    assert_eq!(hello.auth, Auth::Resume { tenant: TenantId(1), visitor: VisitorId(3), token: vec![7; 32] });
    assert_eq!(hello.resume, vec![Cursor { conversation: C, seq: 2 }]);
    assert_eq!(ack, Some((C, 3)));
    assert_eq!(session.stats().logins, 2);
    session.shutdown().await;
}

#[tokio::test]
async fn go_away_moves_the_session_to_an_alternate_address() {
    let first = TestServer::bind().await;
    let second = TestServer::bind().await;
    let mut cfg = config(first.addr);
    cfg.alternate_addrs = vec![second.addr];
    let serving = tokio::spawn(async move {
        let mut conn = first.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        conn.send(&ServerFrame::GoAway { reason: "drain".into() }).await;
        let mut conn = second.accept().await;
        conn.login(visitor_welcome(3, 30)).await
    });
    let mut session = Session::connect(cfg).await.unwrap();
    assert!(matches!(next(&mut session).await, Event::Disconnected { reason } if reason.contains("drain")));
    assert!(matches!(next(&mut session).await, Event::Reconnected { connection: 2, .. }));
    let hello = serving.await.unwrap();
    assert!(matches!(hello.auth, Auth::Resume { .. }));
    session.shutdown().await;
}

/// A server that takes a `Send` and then answers nothing (a node cut off by the
/// network, say) is given up after seconds, not after two 30 s heartbeats: the
/// client pings while it waits, and the message goes out again on another server.
#[tokio::test]
async fn a_send_met_with_silence_moves_the_session_well_before_the_heartbeat_limit() {
    let first = TestServer::bind().await;
    let second = TestServer::bind().await;
    let mut cfg = config(first.addr);
    cfg.alternate_addrs = vec![second.addr];
    let serving = tokio::spawn(async move {
        let mut silent = first.accept().await;
        silent.login(visitor_welcome(3, 30)).await;
        let send = silent.recv().await;
        // Read on (so the client's writes go through) but never answer.
        let probe = silent.recv().await;
        let mut conn = second.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        let resent = conn.recv_skipping_control().await;
        if let Some(ClientFrame::Send(m)) = &resent {
            conn.send(&ServerFrame::Accepted { client_msg_id: m.client_msg_id, conversation: C, seq: 1 }).await;
        }
        while silent.recv().await.is_some() {}
        (send, probe, resent, conn)
    });
    let mut session = Session::connect(cfg).await.unwrap();
    session.send(None, "anyone there?").await.unwrap();
    match next(&mut session).await {
        Event::Disconnected { reason } => assert!(reason.contains("waited for its acceptance"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next(&mut session).await, Event::Reconnected { connection: 2, .. }));
    assert!(matches!(next(&mut session).await, Event::Accepted { client_msg_id: 100, seq: 1, .. }));
    let (send, probe, resent, _conn) = serving.await.unwrap();
    assert!(matches!(send, Some(ClientFrame::Send(_))), "{send:?}");
    assert_eq!(probe, Some(ClientFrame::Ping), "the client pings while it waits");
    assert!(matches!(resent, Some(ClientFrame::Send(m)) if m.client_msg_id == 100 && m.body == "anyone there?"));
    session.shutdown().await;
}

#[tokio::test]
async fn a_rejected_first_login_is_returned_by_connect() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.hello().await;
        conn.send(&ServerFrame::error(ErrorCode::AUTH_FAILED, "unknown tenant", true)).await;
    });
    match Session::connect(config(addr)).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::AUTH_FAILED),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("login should fail"),
    }
}

#[tokio::test]
async fn a_session_gives_up_after_its_reconnect_attempts() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let mut cfg = config(addr);
    cfg.reconnect.max_attempts = 2;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        drop(server); // nothing listens any more
    });
    let mut session = Session::connect(cfg).await.unwrap();
    serving.await.unwrap();
    assert!(matches!(next(&mut session).await, Event::Disconnected { .. }));
    assert!(matches!(next(&mut session).await, Event::Closed { reason } if reason.contains("reconnecting failed")));
    assert!(tokio::time::timeout(WAIT, session.next_event()).await.unwrap().is_none());
    assert!(session.handle().is_closed());
    assert!(matches!(session.send(None, "late").await, Err(ClientError::SessionClosed)));
}

#[tokio::test]
async fn shutdown_from_a_handle_reports_closed_and_ends_the_events() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        // the client closes its side
        loop {
            if conn.recv().await.is_none() {
                break;
            }
        }
    });
    let mut session = Session::connect(config(addr)).await.unwrap();
    session.handle().shutdown();
    assert_eq!(next(&mut session).await, Event::Closed { reason: "shutdown".into() });
    assert!(tokio::time::timeout(WAIT, session.next_event()).await.unwrap().is_none());
    tokio::time::timeout(WAIT, serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_completes_while_unread_events_fill_the_queue() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let mut cfg = config(addr);
    cfg.event_capacity = 2;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.login(visitor_welcome(3, 30)).await;
        for seq in 1..=50 {
            conn.send(&message(4, seq, Participant::Agent(AgentId(8)), "unread")).await;
        }
        conn
    });
    let session = Session::connect(cfg).await.unwrap();
    let _conn = serving.await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), session.shutdown()).await.expect("shutdown does not hang");
}
