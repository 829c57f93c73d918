//! Test support: the real `switchboard` binary on port 0 in a temp dir, the admin
//! API, and a raw framed TCP client for precise protocol tests.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use switchboard_protocol::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `pred` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, pred: impl FnMut() -> bool) {
    wait_until_or(what, timeout, pred, String::new);
}

/// Polls `pred` until it holds; after `timeout` fails with `report()` (what the test
/// can say about why).
pub fn wait_until_or(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool, report: impl FnOnce() -> String) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", report());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tenant's open conversations, as `GET /v1/tenants/{id}/conversations` lists them.
pub fn open_conversations(node: &Node, tenant: &Tenant) -> Vec<Value> {
    let list: Value = ureq::get(&node.url(&format!("/v1/tenants/{}/conversations", tenant.id.0)))
        .set("authorization", &format!("Bearer {}", tenant.api_key))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    list.as_array().cloned().unwrap_or_default()
}

/// The HTTP status of `GET /v1/tenants/{id}/conversations` on `node` with the
/// tenant's key: 200 where the tenant is served, 421 on the other nodes.
pub fn api_status(node: &Node, tenant: &Tenant) -> u16 {
    let url = node.url(&format!("/v1/tenants/{}/conversations", tenant.id.0));
    match ureq::get(&url).set("authorization", &format!("Bearer {}", tenant.api_key)).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// A `switchboard` child process.
pub struct Node {
    child: Option<Child>,
    dir: PathBuf,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub quic: SocketAddr,
    pub peer: SocketAddr,
    pub admin_token: String,
    log: PathBuf,
}

impl Node {
    /// Starts a node on `dir` (kept across restarts) with extra flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Node {
        Node::start_in(None, dir, extra)
    }

    /// [`Node::start`] inside the network namespace `netns` (`ip netns exec`), if any.
    /// Addresses not in `extra` are `127.0.0.1:0`.
    pub fn start_in(netns: Option<&str>, dir: &Path, extra: &[&str]) -> Node {
        let ports = dir.join("ports.json");
        let _ = std::fs::remove_file(&ports);
        let log = dir.join(format!("node-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
        let logfile = std::fs::File::create(&log).unwrap();
        let binary = env!("CARGO_BIN_EXE_switchboard");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, binary]);
                c
            }
            None => Command::new(binary),
        };
        command.args(["--data-dir", dir.to_str().unwrap()]);
        for flag in ["--http-addr", "--quic-addr", "--tcp-addr", "--peer-addr"] {
            if !extra.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        let child = command
            .args(["--admin-token", "test-admin-token-0123456789"])
            .args(extra)
            .env("RUST_LOG", "info,switchboard_broker=debug")
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("spawn switchboard");
        let mut node = Node {
            child: Some(child),
            dir: dir.to_path_buf(),
            http: "0.0.0.0:0".parse().unwrap(),
            tcp: "0.0.0.0:0".parse().unwrap(),
            quic: "0.0.0.0:0".parse().unwrap(),
            peer: "0.0.0.0:0".parse().unwrap(),
            admin_token: "test-admin-token-0123456789".into(),
            log,
        };
        wait_until("ports.json", WAIT, || {
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("switchboard exited early ({status}):\n{}", node.log());
            }
            ports.exists()
        });
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&ports).unwrap()).unwrap();
        node.http = v["http"].as_str().unwrap().parse().unwrap();
        node.tcp = v["tcp"].as_str().unwrap().parse().unwrap();
        node.quic = v["quic"].as_str().unwrap().parse().unwrap();
        node.peer = v["peer"].as_str().unwrap().parse().unwrap();
        let url = format!("http://{}/readyz", node.http);
        wait_until("/readyz", WAIT, || ureq::get(&url).call().is_ok());
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Resident memory of the node, bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("node did not exit after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the log shows no panic.
    pub fn assert_no_panic(&self) {
        let log = self.log();
        assert!(!log.contains("panicked"), "node panicked:\n{log}");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The QUIC certificate the node generated.
    pub fn quic_cert(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("quic-cert.der")).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tenant made through the admin API.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub api_key: String,
    pub secret: String,
}

/// A fresh node in a temp dir (kept while the returned `TempDir` lives) with one
/// tenant, "acme".
pub fn node_with_tenant(args: &[&str]) -> (tempfile::TempDir, Node, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), args);
    let tenant = create_tenant(&node, "acme");
    (dir, node, tenant)
}

pub fn admin_post(node: &Node, path: &str, body: Value) -> Value {
    ureq::post(&node.url(path))
        .set("authorization", &format!("Bearer {}", node.admin_token))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .into_json()
        .unwrap()
}

pub fn create_tenant(node: &Node, name: &str) -> Tenant {
    let v = admin_post(node, "/v1/tenants", serde_json::json!({ "name": name }));
    Tenant {
        id: TenantId(v["id"].as_u64().unwrap()),
        api_key: v["api_key"].as_str().unwrap().into(),
        secret: v["signing_secret"].as_str().unwrap().into(),
    }
}

/// Creates an agent with `capacity` and returns (id, token).
pub fn create_agent(node: &Node, tenant: TenantId, capacity: u32) -> (AgentId, String) {
    let a = admin_post(node, &format!("/v1/tenants/{}/agents", tenant.0), serde_json::json!({ "name": "agent", "capacity": capacity }));
    let id = AgentId(a["id"].as_u64().unwrap());
    let t = admin_post(node, &format!("/v1/tenants/{}/agents/{}/tokens", tenant.0, id.0), serde_json::json!({}));
    (id, t["token"].as_str().unwrap().into())
}

pub fn hello(auth: Auth, resume: Vec<Cursor>) -> ClientFrame {
    ClientFrame::Hello(Hello { version: PROTOCOL_VERSION, auth, resume })
}

pub fn send(client_msg_id: u64, conversation: Option<ConversationId>, body: &str) -> ClientFrame {
    ClientFrame::Send(SendMessage { client_msg_id, conversation, body: body.into() })
}

/// A framed TCP client with no SDK logic: exactly what goes on the wire.
pub struct Raw {
    pub stream: TcpStream,
    codec: FrameCodec,
    /// Bytes read but not yet decoded: reads go through this buffer so a timed-out
    /// receive never loses half a frame.
    buf: bytes::BytesMut,
    /// Frames passed over by `send_accepted`, handed out again by later receives.
    held: std::collections::VecDeque<ServerFrame>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.unwrap(), codec: FrameCodec::new(1 << 20), buf: bytes::BytesMut::new(), held: Default::default() }
    }

    /// Connects and logs in; returns the client and its Welcome.
    pub async fn login(addr: SocketAddr, auth: Auth, resume: Vec<Cursor>) -> (Raw, Welcome) {
        let mut c = Raw::connect(addr).await;
        c.send(&hello(auth, resume)).await;
        match c.recv().await {
            ServerFrame::Welcome(w) => (c, w),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.codec.write_frame(&mut self.stream, frame).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame (fails the test after [`WAIT`] or if the stream ends).
    pub async fn recv(&mut self) -> ServerFrame {
        match self.try_recv(WAIT).await {
            Some(f) => f,
            None => panic!("connection ended or timed out while waiting for a frame"),
        }
    }

    /// The next frame, or None on end of stream or timeout. Cancel-safe.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<ServerFrame> {
        if let Some(f) = self.held.pop_front() {
            return Some(f);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.codec.decode::<ServerFrame>(&mut self.buf) {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(e) => panic!("undecodable server frame: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Frames until one matches `pred` (returned); the skipped ones are returned too.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> (ServerFrame, Vec<ServerFrame>) {
        let mut skipped = Vec::new();
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return (f, skipped);
            }
            skipped.push(f);
        }
    }

    /// Sends a message and waits for its Accepted; returns (conversation, seq). Other
    /// frames that arrive meanwhile stay for later receives.
    pub async fn send_accepted(&mut self, cmid: u64, conversation: Option<ConversationId>, body: &str) -> (ConversationId, u64) {
        self.send(&send(cmid, conversation, body)).await;
        let (f, skipped) = self
            .recv_until(|f| matches!(f, ServerFrame::Accepted { client_msg_id, .. } if *client_msg_id == cmid) || matches!(f, ServerFrame::Error(_)))
            .await;
        let mut skipped: std::collections::VecDeque<ServerFrame> = skipped.into();
        skipped.append(&mut self.held);
        self.held = skipped;
        match f {
            ServerFrame::Accepted { conversation, seq, .. } => (conversation, seq),
            other => panic!("expected Accepted for {cmid}, got {other:?}"),
        }
    }

    /// Collects `Message` frames of `conversation` until `n` have arrived.
    pub async fn messages(&mut self, conversation: ConversationId, n: usize) -> Vec<ChatMessage> {
        let mut out = Vec::new();
        while out.len() < n {
            if let ServerFrame::Message(m) = self.recv().await {
                if m.conversation == conversation {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Waits until the server closes the connection; returns every frame before that.
    pub async fn until_closed(&mut self) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "server did not close the connection; got {frames:?}");
            match self.codec.decode::<ServerFrame>(&mut self.buf) {
                Ok(Some(f)) => {
                    frames.push(f);
                    continue;
                }
                Ok(None) => {}
                Err(e) => panic!("undecodable server frame: {e}"),
            }
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return frames,
                Ok(Ok(_)) => {}
                Err(_) => panic!("server did not close the connection; got {frames:?}"),
            }
        }
    }
}

/// The agent's view: waits for the Conversation update assigning a chat, returns its id.
pub async fn assigned(agent: &mut Raw) -> ConversationId {
    let (f, _) = agent
        .recv_until(|f| matches!(f, ServerFrame::Conversation(u) if u.state == ConversationState::Assigned))
        .await;
    match f {
        ServerFrame::Conversation(u) => u.conversation,
        _ => unreachable!(),
    }
}

/// Asserts an error frame with `code`.
pub fn assert_error(frame: &ServerFrame, code: ErrorCode) -> &ErrorFrame {
    match frame {
        ServerFrame::Error(e) if e.code == code => e,
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// The value of the counter or gauge `series` (name and labels, as `/metrics`
/// prints them) on `node`; 0 while it has not been set yet.
pub fn metric_value(node: &Node, series: &str) -> u64 {
    let text = ureq::get(&node.url("/metrics")).call().map(|r| r.into_string().unwrap_or_default()).unwrap_or_default();
    let line = text.lines().find(|l| l.split(' ').next() == Some(series));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64
}
