//! A scripted in-test server speaking the codec over TCP on port 0, for the SDK's
//! own tests. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;
use switchboard_protocol::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Longest any single wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct TestServer {
    listener: TcpListener,
    pub(crate) addr: SocketAddr,
}

impl TestServer {
    pub(crate) async fn bind() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        TestServer { listener, addr }
    }

    pub(crate) async fn accept(&self) -> ServerConn {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept()).await.expect("accept in time").expect("accept");
        ServerConn { stream, codec: FrameCodec::default() }
    }
}

/// The server side of one accepted connection.
pub(crate) struct ServerConn {
    pub(crate) stream: TcpStream,
    codec: FrameCodec,
}

impl ServerConn {
    /// The next client frame; `None` on end of stream or error.
    pub(crate) async fn recv(&mut self) -> Option<ClientFrame> {
        tokio::time::timeout(WAIT, self.codec.read_frame::<ClientFrame, _>(&mut self.stream))
            .await
            .expect("client frame in time")
            .ok()
            .flatten()
    }

    /// The next client frame other than `Ping` and `Ack`.
    pub(crate) async fn recv_skipping_control(&mut self) -> Option<ClientFrame> {
        loop {
            match self.recv().await? {
                ClientFrame::Ping | ClientFrame::Ack { .. } => continue,
                other => return Some(other),
            }
        }
    }

    pub(crate) async fn send(&mut self, frame: &ServerFrame) {
        let bytes = self.codec.encode_to_vec(frame).expect("encode");
        self.stream.write_all(&bytes).await.expect("write to client");
    }

    /// Reads the `Hello`.
    pub(crate) async fn hello(&mut self) -> Hello {
        match self.recv().await {
            Some(ClientFrame::Hello(h)) => h,
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    /// Reads the `Hello` and answers with `welcome`.
    pub(crate) async fn login(&mut self, welcome: Welcome) -> Hello {
        let hello = self.hello().await;
        self.send(&ServerFrame::Welcome(welcome)).await;
        hello
    }
}

pub(crate) fn visitor_welcome(visitor: u64, heartbeat_secs: u32) -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        tenant: TenantId(1),
        identity: Participant::Visitor(VisitorId(visitor)),
        resume_token: Some(vec![7; 32]),
        heartbeat_secs,
        max_frame_len: DEFAULT_MAX_FRAME_LEN,
        max_message_len: 4096,
    }
}

pub(crate) fn message(conversation: u64, seq: u64, sender: Participant, body: &str) -> ServerFrame {
    ServerFrame::Message(ChatMessage {
        conversation: ConversationId(conversation),
        seq,
        sender,
        client_msg_id: seq,
        sent_at_ms: 0,
        body: body.into(),
    })
}
