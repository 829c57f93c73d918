//! The peer link over TCP.
//!
//! A node keeps one connection to each peer it sends requests to. That connection
//! carries the requests of every raft group on the node (and joins and forwarded
//! writes), each tagged with an id; answers come back on it in any order. Frames are
//! the client protocol's (a 4-byte big-endian length, then bincode), with a
//! [`PeerFrame`] inside. A writer task puts everything queued for a connection into
//! one write, so requests of many groups that fall due together leave together.
//!
//! A link that fails is dropped, its waiting requests fail as unreachable, and the
//! next request dials again (at most every [`REDIAL_AFTER`]). A link on which callers
//! give up while nothing has been read for [`SILENT_AFTER`] is taken for dead (a peer
//! that froze or a network that drops packets without a reset) and closed too. A
//! request whose caller gave up before it was written is not written.

use super::rpc::{PeerRequest, PeerResponse};
use super::transport::{BoxFuture, PeerError, PeerHandler, PeerTransport};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use switchboard_protocol::codec::{FrameCodec, MAX_CONFIGURABLE_FRAME_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// Counter of closed peer links, by `reason`.
pub const PEER_LINKS_CLOSED: &str = "switchboard_peer_links_closed_total";

/// Version of the peer link; a node refuses a link of another version.
pub const PEER_LINK_VERSION: u32 = 1;
/// After a failed dial, requests to that peer fail at once for this long.
pub const REDIAL_AFTER: Duration = Duration::from_millis(200);
/// A link with callers giving up and nothing read for this long is closed.
pub const SILENT_AFTER: Duration = Duration::from_secs(2);
/// Largest Hello accepted (read before the peer is known).
const MAX_HELLO_LEN: u32 = 4096;
/// How long a dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new connection has to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes put into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// What goes over a peer connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerFrame {
    /// First frame from the dialling node: the link version and its peer address.
    Hello {
        /// [`PEER_LINK_VERSION`] of the dialling node.
        version: u32,
        /// The dialling node's advertised peer address.
        from: String,
    },
    /// A request; answered by a `Response` with the same id.
    Request {
        /// Chosen by the caller, unique per connection.
        id: u64,
        /// What is asked.
        request: PeerRequest,
    },
    /// The answer to the request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        response: PeerResponse,
    },
    /// The listening node refuses the link (then closes it).
    Refused {
        /// Why.
        reason: String,
    },
}

fn codec() -> FrameCodec {
    FrameCodec::new(MAX_CONFIGURABLE_FRAME_LEN)
}

type Waiter = oneshot::Sender<Result<PeerResponse, PeerError>>;

/// A frame queued for a connection's writer: a request (skipped if its caller gave
/// up meanwhile) or anything else.
struct Outgoing {
    request: Option<u64>,
    bytes: Vec<u8>,
}

/// One live connection to a peer.
struct Link {
    to: String,
    out: mpsc::UnboundedSender<Outgoing>,
    /// Requests waiting for their answer; `None` once the link is closed.
    pending: Mutex<Option<HashMap<u64, Waiter>>>,
    next_id: AtomicU64,
    born: Instant,
    /// When a frame was last read, in ms since `born`.
    last_read_ms: AtomicU64,
    /// The reader and writer tasks, stopped when the link closes.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Link {
    fn is_open(&self) -> bool {
        self.pending.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    fn is_pending(&self, id: u64) -> bool {
        self.pending.lock().map(|p| p.as_ref().is_some_and(|p| p.contains_key(&id))).unwrap_or(false)
    }

    /// Closes the link: every waiting request fails with `reason`, the socket closes.
    /// `kind` labels the metric: `closed`, `silent`, `refused` or `error`.
    fn close(&self, kind: &'static str, reason: &str) {
        let waiting = self.pending.lock().ok().and_then(|mut p| p.take());
        if waiting.is_some() {
            ::metrics::counter!(PEER_LINKS_CLOSED, "reason" => kind).increment(1);
        }
        for (_, waiter) in waiting.into_iter().flatten() {
            let _ = waiter.send(Err(PeerError::Unreachable(self.to.clone(), reason.to_string())));
        }
        for task in self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default() {
            task.abort();
        }
    }

    fn heard(&self) {
        self.last_read_ms.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.born.elapsed().saturating_sub(Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed)))
    }

    fn answer(&self, id: u64, response: PeerResponse) {
        let waiter = self.pending.lock().ok().and_then(|mut p| p.as_mut().and_then(|p| p.remove(&id)));
        if let Some(waiter) = waiter {
            let _ = waiter.send(Ok(response));
        }
    }

    /// Registers a waiter for `id`, unless the link is closed.
    fn wait_for(&self, id: u64) -> Option<oneshot::Receiver<Result<PeerResponse, PeerError>>> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().ok()?;
        pending.as_mut()?.insert(id, tx);
        Some(rx)
    }

    /// Drops the waiter of `id`; true if it was still waiting (its caller gave up).
    fn forget(&self, id: u64) -> bool {
        self.pending.lock().ok().and_then(|mut p| p.as_mut().and_then(|p| p.remove(&id))).is_some()
    }
}

/// Removes a request's waiter when its caller stops waiting (timeout, cancel), and
/// closes a link that has gone silent.
struct Forget<'a>(&'a Link, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.0.forget(self.1) && self.0.silent_for() > SILENT_AFTER {
            tracing::debug!(to = %self.0.to, "peer link silent; closing it");
            self.0.close("silent", &format!("nothing heard for more than {SILENT_AFTER:?}"));
        }
    }
}

#[derive(Default)]
struct Slot {
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    failed_at: Mutex<Option<Instant>>,
}

/// Dials peers over TCP and multiplexes requests on one connection per peer.
#[derive(Default)]
pub struct TcpTransport {
    slots: DashMap<String, Arc<Slot>>,
}

impl TcpTransport {
    /// No links yet; they are dialled on first use.
    pub fn new() -> Arc<Self> {
        Arc::new(TcpTransport::default())
    }

    /// Closes every link (waiting requests fail as unreachable).
    pub fn close_all(&self) {
        for slot in self.slots.iter() {
            // A slot in the middle of a dial is left to it (its link has no waiters yet).
            if let Ok(guard) = slot.link.try_lock() {
                if let Some(link) = guard.as_ref() {
                    link.close("closed", "transport closed");
                }
            }
        }
        self.slots.clear();
    }

    fn slot(&self, to: &str) -> Arc<Slot> {
        if let Some(s) = self.slots.get(to) {
            return s.clone();
        }
        self.slots.entry(to.to_string()).or_default().clone()
    }
}

impl Slot {
    /// The open link to `to`, dialling it if needed.
    async fn link(&self, from: &str, to: &str) -> Result<Arc<Link>, PeerError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref().filter(|l| l.is_open()) {
            return Ok(link.clone());
        }
        if let Some(at) = self.failed_at.lock().ok().and_then(|f| *f) {
            if at.elapsed() < REDIAL_AFTER {
                return Err(PeerError::Unreachable(to.to_string(), "dial failed moments ago".into()));
            }
        }
        match dial(from, to).await {
            Ok(link) => {
                *guard = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                if let Ok(mut f) = self.failed_at.lock() {
                    *f = Some(Instant::now());
                }
                *guard = None;
                Err(e)
            }
        }
    }
}

async fn dial(from: &str, to: &str) -> Result<Arc<Link>, PeerError> {
    let unreachable = |reason: String| PeerError::Unreachable(to.to_string(), reason);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no connection within {CONNECT_TIMEOUT:?}"))),
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let hello = codec().encode_to_vec(&PeerFrame::Hello { version: PEER_LINK_VERSION, from: from.to_string() }).map_err(|e| PeerError::Codec(e.to_string()))?;
    let (out, rx) = mpsc::unbounded_channel();
    let _ = out.send(Outgoing { request: None, bytes: hello });
    let link = Arc::new(Link {
        to: to.to_string(),
        out,
        pending: Mutex::new(Some(HashMap::new())),
        next_id: AtomicU64::new(1),
        born: Instant::now(),
        last_read_ms: AtomicU64::new(0),
        tasks: Mutex::new(Vec::new()),
    });
    let weak = Arc::downgrade(&link);
    let keep_weak = weak.clone();
    let keep = move |id: u64| keep_weak.upgrade().is_some_and(|l| l.is_pending(id));
    let writer_task = tokio::spawn(async move {
        let (kind, reason) = match write_loop(writer, rx, keep).await {
            Ok(()) => ("closed", "link dropped".to_string()),
            Err(e) => ("error", format!("write failed: {e}")),
        };
        if let Some(link) = weak.upgrade() {
            link.close(kind, &reason);
        }
    });
    let weak = Arc::downgrade(&link);
    let reader_task = tokio::spawn(async move {
        let codec = codec();
        let (kind, reason) = loop {
            match codec.read_frame::<PeerFrame, _>(&mut reader).await {
                Ok(Some(PeerFrame::Response { id, response })) => match weak.upgrade() {
                    Some(link) => {
                        link.heard();
                        link.answer(id, response);
                    }
                    None => break ("closed", "link dropped".to_string()),
                },
                Ok(Some(PeerFrame::Refused { reason })) => break ("refused", format!("refused: {reason}")),
                Ok(Some(other)) => break ("error", format!("unexpected frame from a listener: {other:?}")),
                Ok(None) => break ("closed", "connection closed by the peer".to_string()),
                Err(e) => break ("error", format!("read failed: {e}")),
            }
        };
        if let Some(link) = weak.upgrade() {
            tracing::debug!(to = %link.to, %reason, "peer link closed");
            link.close(kind, &reason);
        }
    });
    if let Ok(mut tasks) = link.tasks.lock() {
        tasks.push(writer_task.abort_handle());
        tasks.push(reader_task.abort_handle());
    }
    Ok(link)
}

/// Writes what is queued, many frames per write, until the queue closes. Requests
/// for which `keep` says no (their caller gave up) are skipped.
async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Outgoing>, keep: impl Fn(u64) -> bool) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if frame.request.is_none_or(&keep) {
                buf.extend_from_slice(&frame.bytes);
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            writer.write_all(&buf).await?;
        }
    }
    Ok(())
}

impl PeerTransport for TcpTransport {
    fn call(&self, from: &str, to: &str, request: PeerRequest) -> BoxFuture<Result<PeerResponse, PeerError>> {
        let slot = self.slot(to);
        let (from, to) = (from.to_string(), to.to_string());
        Box::pin(async move {
            let link = slot.link(&from, &to).await?;
            let id = link.next_id.fetch_add(1, Ordering::Relaxed);
            let frame = codec().encode_to_vec(&PeerFrame::Request { id, request }).map_err(|e| PeerError::Codec(e.to_string()))?;
            let Some(answer) = link.wait_for(id) else {
                return Err(PeerError::Unreachable(to, "link closed".into()));
            };
            let _forget = Forget(&link, id);
            if link.out.send(Outgoing { request: Some(id), bytes: frame }).is_err() {
                link.close("error", "writer stopped");
            }
            answer.await.unwrap_or_else(|_| Err(PeerError::Unreachable(to, "link closed".into())))
        })
    }
}

/// Accepts peer connections and answers their requests until dropped.
pub struct PeerListener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl PeerListener {
    /// Serves `listener` with `handler` (held weakly: once the node is gone, its
    /// connections close).
    pub fn serve(listener: TcpListener, handler: Weak<dyn PeerHandler>) -> std::io::Result<PeerListener> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let mut accept_stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = accept_stop.changed() => return,
                };
                match accepted {
                    Ok((stream, remote)) => {
                        tokio::spawn(serve_connection(stream, remote, handler.clone(), stopped.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors, most likely: wait rather than spin.
                        tracing::warn!(error = %e, "peer accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(PeerListener { addr, stop })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve_connection(stream: TcpStream, remote: SocketAddr, handler: Weak<dyn PeerHandler>, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let codec = codec();
    let (out, rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer_task = tokio::spawn(write_loop(writer, rx, |_| true));
    let refuse = |reason: String| {
        tracing::warn!(%remote, %reason, "peer link refused");
        if let Ok(bytes) = codec.encode_to_vec(&PeerFrame::Refused { reason }) {
            let _ = out.send(Outgoing { request: None, bytes });
        }
    };
    let hello_codec = FrameCodec::new(MAX_HELLO_LEN);
    let hello = hello_codec.read_frame::<PeerFrame, _>(&mut reader);
    let from = match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
        Ok(Ok(Some(PeerFrame::Hello { version, from }))) if version == PEER_LINK_VERSION => from,
        Ok(Ok(Some(PeerFrame::Hello { version, .. }))) => {
            refuse(format!("peer link version {version} is not supported; this node speaks {PEER_LINK_VERSION}"));
            drop(out);
            let _ = writer_task.await;
            return;
        }
        Ok(Ok(Some(_))) => {
            refuse("the first frame must be Hello".into());
            drop(out);
            let _ = writer_task.await;
            return;
        }
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
    };
    tracing::debug!(%remote, %from, "peer link accepted");
    loop {
        let frame = tokio::select! {
            f = codec.read_frame::<PeerFrame, _>(&mut reader) => f,
            _ = stop.changed() => break,
        };
        match frame {
            Ok(Some(PeerFrame::Request { id, request })) => {
                let Some(handler) = handler.upgrade() else { break };
                let out = out.clone();
                tokio::spawn(async move {
                    let response = handler.handle(request).await;
                    match codec.encode_to_vec(&PeerFrame::Response { id, response }) {
                        Ok(bytes) => {
                            let _ = out.send(Outgoing { request: None, bytes });
                        }
                        Err(e) => tracing::error!(%e, "cannot encode a peer answer; the caller will time out"),
                    }
                });
            }
            Ok(Some(other)) => {
                tracing::warn!(%from, frame = ?other, "unexpected peer frame; closing the link");
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(%from, error = %e, "unreadable peer frame; closing the link");
                break;
            }
        }
    }
    writer_task.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rpc::WriteError;
    use switchboard_raft_store::raft::{ControlCommand, ControlResponse};

    /// Answers `RemoveNode(n)` with `NotLeader(Some(n))`, later requests sooner, so
    /// answers come back out of order.
    struct Echo;

    impl PeerHandler for Echo {
        fn handle(self: Arc<Self>, request: PeerRequest) -> BoxFuture<PeerResponse> {
            Box::pin(async move {
                match request {
                    PeerRequest::ControlWrite(ControlCommand::RemoveNode(id)) => {
                        // Later requests are answered first.
                        tokio::time::sleep(Duration::from_millis(50u64.saturating_sub(id * 10))).await;
                        PeerResponse::Control(Err(WriteError::NotLeader(Some(id))))
                    }
                    _ => PeerResponse::Control(Ok(ControlResponse::Ok)),
                }
            })
        }
    }

    async fn listener() -> (PeerListener, Arc<dyn PeerHandler>) {
        let handler: Arc<dyn PeerHandler> = Arc::new(Echo);
        let l = PeerListener::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), Arc::downgrade(&handler)).unwrap();
        (l, handler)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_link_and_each_gets_its_own_answer() {
        let (l, _handler) = listener().await;
        let to = l.local_addr().to_string();
        let transport = TcpTransport::new();
        let calls = (0..5u64).map(|id| transport.call("me", &to, PeerRequest::ControlWrite(ControlCommand::RemoveNode(id))));
        let answers: Vec<_> = {
            let tasks: Vec<_> = calls.map(tokio::spawn).collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        };
        for (id, a) in answers.into_iter().enumerate() {
            match a {
                Ok(PeerResponse::Control(Err(WriteError::NotLeader(Some(n))))) => assert_eq!(n, id as u64),
                other => panic!("request {id}: {other:?}"),
            }
        }
        assert_eq!(transport.slots.len(), 1, "one link to the peer");
    }

    #[tokio::test]
    async fn a_stopped_peer_is_unreachable_and_a_restarted_one_is_dialled_again() {
        let (l, handler) = listener().await;
        let addr = l.local_addr();
        let transport = TcpTransport::new();
        let ask = || transport.call("me", &addr.to_string(), PeerRequest::ControlWrite(ControlCommand::RemoveNode(1)));
        assert!(ask().await.is_ok());
        drop(l);
        drop(handler);
        match ask().await {
            Err(PeerError::Unreachable(to, _)) => assert_eq!(to, addr.to_string()),
            other => panic!("expected unreachable, got {other:?}"),
        }
        // Back on the same port: the next dial after REDIAL_AFTER works.
        let handler: Arc<dyn PeerHandler> = Arc::new(Echo);
        let _l = PeerListener::serve(TcpListener::bind(addr).await.unwrap(), Arc::downgrade(&handler)).unwrap();
        let started = Instant::now();
        while ask().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "never dialled again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_peer_that_accepts_but_never_answers_is_dropped_and_dialled_again() {
        // A frozen peer: the kernel accepts, nothing ever answers.
        let frozen = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = frozen.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = frozen.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let transport = TcpTransport::new();
        let started = Instant::now();
        while accepted.load(Ordering::SeqCst) < 2 {
            assert!(started.elapsed() < Duration::from_secs(30), "the silent link was never replaced");
            let call = transport.call("me", &addr, PeerRequest::ControlWrite(ControlCommand::RemoveNode(1)));
            assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err(), "a frozen peer cannot answer");
        }
        assert!(started.elapsed() >= SILENT_AFTER, "closed only after {SILENT_AFTER:?} of silence");
        holder.abort();
    }

    #[tokio::test]
    async fn garbage_and_a_wrong_version_are_refused_without_harm() {
        let (l, _handler) = listener().await;
        let addr = l.local_addr();
        // Garbage: the listener closes that connection and keeps serving others.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
        let mut wrong = TcpStream::connect(addr).await.unwrap();
        codec().write_frame(&mut wrong, &PeerFrame::Hello { version: 99, from: "x".into() }).await.unwrap();
        match codec().read_frame::<PeerFrame, _>(&mut wrong).await {
            Ok(Some(PeerFrame::Refused { reason })) => assert!(reason.contains("version 99"), "{reason}"),
            other => panic!("expected Refused, got {other:?}"),
        }
        let transport = TcpTransport::new();
        assert!(transport.call("me", &addr.to_string(), PeerRequest::ControlWrite(ControlCommand::RemoveNode(2))).await.is_ok());
    }
}
