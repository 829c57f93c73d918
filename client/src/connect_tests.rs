//! Connection-level tests against in-test servers (TCP and QUIC, port 0).

use super::*;
use crate::test_server::{message, visitor_welcome, TestServer, WAIT};
use switchboard_protocol::*;
use tokio::io::AsyncWriteExt;

fn anonymous() -> Hello {
    crate::hello(Auth::Anonymous { tenant: TenantId(1) })
}

#[tokio::test]
async fn tcp_login_returns_the_welcome_and_frames_flow_both_ways() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let serving = tokio::spawn(async move {
        let mut conn = server.accept().await;
        let hello = conn.login(visitor_welcome(5, 30)).await;
        conn.send(&message(1, 1, Participant::Agent(AgentId(2)), "hi")).await;
        let ping = conn.recv().await;
        (hello, ping)
    });
    let counters = ByteCounters::new();
    let mut options = ConnectOptions::tcp(addr);
    options.counters = Some(counters.clone());
    options.bind_ip = Some("127.0.0.1".parse().unwrap());
    let (mut conn, welcome) = connect_and_login(&options, anonymous()).await.unwrap();
    assert_eq!(welcome.identity, Participant::Visitor(VisitorId(5)));
    assert_eq!(conn.local_addr().ip(), options.bind_ip.unwrap());
    match conn.recv().await.unwrap() {
        Some(ServerFrame::Message(m)) => assert_eq!((m.seq, m.body.as_str()), (1, "hi")),
        other => panic!("unexpected {other:?}"),
    }
    conn.send(&ClientFrame::Ping).await.unwrap();
    let (hello, ping) = serving.await.unwrap();
    assert_eq!(hello.auth, Auth::Anonymous { tenant: TenantId(1) });
    assert_eq!(ping, Some(ClientFrame::Ping));
    let codec = FrameCodec::default();
    let hello_len = codec.encode_to_vec(&ClientFrame::Hello(anonymous())).unwrap().len() as u64;
    assert_eq!(counters.written(), hello_len + 5, "Hello plus a 5-byte Ping");
    assert!(counters.read() > 0);
}

#[tokio::test]
async fn an_error_frame_at_login_is_a_typed_rejection() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.hello().await;
        conn.send(&ServerFrame::error(ErrorCode::AUTH_FAILED, "bad token", true)).await;
    });
    match connect_and_login(&ConnectOptions::tcp(addr), anonymous()).await {
        Err(ClientError::Rejected { code, message }) => {
            assert_eq!(code, ErrorCode::AUTH_FAILED);
            assert_eq!(message, "bad token");
        }
        other => panic!("expected a rejection, got {:?}", other.map(|(_, w)| w)),
    }
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error_naming_the_address() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = connect(&ConnectOptions::tcp(addr)).await.err().expect("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test]
async fn recv_survives_cancellation_in_the_middle_of_a_frame() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        let bytes = FrameCodec::default().encode_to_vec(&message(1, 1, Participant::Agent(AgentId(2)), "split")).unwrap();
        conn.stream.write_all(&bytes[..3]).await.unwrap();
        let _ = go_rx.await;
        conn.stream.write_all(&bytes[3..]).await.unwrap();
        conn.recv().await
    });
    let (_tx, mut rx) = connect(&ConnectOptions::tcp(addr)).await.unwrap().split();
    // The first bytes arrive, then the read is cancelled by the timeout.
    let early = tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await;
    assert!(early.is_err(), "no whole frame yet");
    go_tx.send(()).unwrap();
    match tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap() {
        Some(ServerFrame::Message(m)) => assert_eq!(m.body, "split"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_frame_cut_by_the_server_is_truncated_not_clean() {
    let server = TestServer::bind().await;
    let addr = server.addr;
    tokio::spawn(async move {
        let mut conn = server.accept().await;
        conn.stream.write_all(&[0, 0, 0, 9, 2]).await.unwrap();
    });
    let (_tx, mut rx) = connect(&ConnectOptions::tcp(addr)).await.unwrap().split();
    let err = rx.recv().await.expect_err("truncated");
    assert!(matches!(err, ClientError::Frame(FrameError::Truncated { got: 5, expected: 13 })), "{err:?}");
}

/// A one-connection QUIC server with a fresh self-signed certificate.
fn quic_server() -> (quinn::Endpoint, Vec<u8>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = generated.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.clone())], key)
        .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(std::sync::Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    (endpoint, cert)
}

#[tokio::test]
async fn quic_login_over_one_bidirectional_stream_with_a_pinned_certificate() {
    let (endpoint, cert) = quic_server();
    let addr = endpoint.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let incoming = endpoint.accept().await.unwrap();
        let connection = incoming.await.unwrap();
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let codec = FrameCodec::default();
        let hello: Option<ClientFrame> = codec.read_frame(&mut recv).await.unwrap();
        codec.write_frame(&mut send, &ServerFrame::Welcome(visitor_welcome(9, 25))).await.unwrap();
        let ping: Option<ClientFrame> = codec.read_frame(&mut recv).await.unwrap();
        codec.write_frame(&mut send, &ServerFrame::Pong).await.unwrap();
        // Keep the connection until the client has read the Pong.
        let _ = tokio::time::timeout(WAIT, connection.closed()).await;
        (hello, ping)
    });
    let options = ConnectOptions::quic(addr, cert);
    let (mut conn, welcome) = connect_and_login(&options, anonymous()).await.unwrap();
    assert_eq!(welcome.identity, Participant::Visitor(VisitorId(9)));
    conn.send(&ClientFrame::Ping).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some(ServerFrame::Pong));
    drop(conn);
    let (hello, ping) = serving.await.unwrap();
    assert!(matches!(hello, Some(ClientFrame::Hello(_))));
    assert_eq!(ping, Some(ClientFrame::Ping));
}

#[tokio::test]
async fn quic_refuses_a_server_whose_certificate_is_not_the_pinned_one() {
    let (endpoint, _cert) = quic_server();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        if let Some(incoming) = endpoint.accept().await {
            let _ = incoming.await;
        }
    });
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap().cert.der().to_vec();
    let err = connect(&ConnectOptions::quic(addr, other)).await.err().expect("pin mismatch");
    assert!(matches!(err, ClientError::Quic { .. }), "{err:?}");
}
