//! One framed connection, whatever the transport: send [`ClientFrame`]s, receive
//! [`ServerFrame`]s, count the bytes, and log in.

use crate::error::ClientError;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::codec::LENGTH_PREFIX_LEN;
use switchboard_protocol::{ClientFrame, FrameCodec, FrameError, Hello, ServerFrame, Welcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Free space kept in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// A buffer that grew beyond this (one big frame) is released once empty.
const KEEP_BUFFER: usize = 64 * 1024;

/// The read half of a transport stream.
pub(crate) type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a transport stream.
pub(crate) type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Frame bytes (length prefixes included) written and read. One instance may be
/// shared by many connections to get totals; transport overhead (TCP/IP headers,
/// QUIC packets and keep-alives, TLS) is not counted.
#[derive(Debug, Default)]
pub struct ByteCounters {
    read: AtomicU64,
    written: AtomicU64,
}

impl ByteCounters {
    /// Fresh zeroed counters.
    pub fn new() -> Arc<ByteCounters> {
        Arc::new(ByteCounters::default())
    }

    /// Bytes read from the server so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes written to the server so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Both directions.
    pub fn total(&self) -> u64 {
        self.read() + self.written()
    }

    fn add_read(&self, n: usize) {
        self.read.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn add_written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Keeps a QUIC connection (and its endpoint) alive while either half lives;
/// closes the connection when the last half is dropped.
#[derive(Debug)]
pub(crate) struct QuicGuard {
    pub(crate) connection: quinn::Connection,
    pub(crate) _endpoint: quinn::Endpoint,
}

impl Drop for QuicGuard {
    fn drop(&mut self) {
        self.connection.close(0u32.into(), b"client closed");
    }
}

/// The write half: encodes and writes frames.
pub struct FrameSender {
    writer: BoxWriter,
    codec: FrameCodec,
    counters: Arc<ByteCounters>,
    buf: Vec<u8>,
    _quic: Option<Arc<QuicGuard>>,
}

impl FrameSender {
    /// Writes one frame. Not cancel-safe: a cancelled send may leave half a frame on
    /// the stream, after which the connection must be dropped.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.send_all(std::slice::from_ref(frame)).await
    }

    /// Writes several frames with one write. Same cancellation caveat as [`Self::send`].
    pub async fn send_all(&mut self, frames: &[ClientFrame]) -> Result<(), ClientError> {
        self.buf.clear();
        for frame in frames {
            self.codec.encode(frame, &mut self.buf)?;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.writer.write_all(&self.buf).await.map_err(FrameError::Io)?;
        self.writer.flush().await.map_err(FrameError::Io)?;
        self.counters.add_written(self.buf.len());
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Ends the stream in the client-to-server direction (TCP FIN, QUIC stream finish).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.writer.shutdown().await.map_err(FrameError::Io)?;
        Ok(())
    }

    /// The byte counters this half adds to.
    pub fn counters(&self) -> &Arc<ByteCounters> {
        &self.counters
    }
}

/// The read half: reads and decodes frames.
pub struct FrameReceiver {
    reader: BoxReader,
    codec: FrameCodec,
    counters: Arc<ByteCounters>,
    buf: BytesMut,
    _quic: Option<Arc<QuicGuard>>,
}

impl FrameReceiver {
    /// The next frame; `Ok(None)` when the server ended the stream at a frame boundary.
    ///
    /// Cancel-safe: bytes already read stay buffered, so this can be a branch of
    /// `tokio::select!`. After [`FrameError::Malformed`] (see
    /// [`FrameError::is_recoverable`]) the connection may continue; after any other
    /// error it must be dropped.
    pub async fn recv(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        loop {
            if let Some(frame) = self.codec.decode::<ServerFrame>(&mut self.buf)? {
                if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
                    self.buf = BytesMut::new();
                }
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let n = self.reader.read_buf(&mut self.buf).await.map_err(FrameError::Io)?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Truncated { got: self.buf.len(), expected: self.expected_len() }.into());
            }
            self.counters.add_read(n);
        }
    }

    /// The length of the frame being received (prefix included), as far as known.
    fn expected_len(&self) -> usize {
        match self.buf.get(..LENGTH_PREFIX_LEN) {
            Some(p) => LENGTH_PREFIX_LEN + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            None => LENGTH_PREFIX_LEN,
        }
    }

    /// The byte counters this half adds to.
    pub fn counters(&self) -> &Arc<ByteCounters> {
        &self.counters
    }
}

/// A connected, not yet split, framed connection.
pub struct Connection {
    sender: FrameSender,
    receiver: FrameReceiver,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    login_timeout: Duration,
}

/// What [`Connection::new`] needs besides the stream halves.
pub(crate) struct Parts {
    pub(crate) reader: BoxReader,
    pub(crate) writer: BoxWriter,
    pub(crate) codec: FrameCodec,
    pub(crate) counters: Arc<ByteCounters>,
    pub(crate) quic: Option<Arc<QuicGuard>>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) login_timeout: Duration,
}

impl Connection {
    pub(crate) fn new(parts: Parts) -> Connection {
        Connection {
            sender: FrameSender {
                writer: parts.writer,
                codec: parts.codec,
                counters: parts.counters.clone(),
                buf: Vec::new(),
                _quic: parts.quic.clone(),
            },
            receiver: FrameReceiver {
                reader: parts.reader,
                codec: parts.codec,
                counters: parts.counters,
                buf: BytesMut::new(),
                _quic: parts.quic,
            },
            local_addr: parts.local_addr,
            peer_addr: parts.peer_addr,
            login_timeout: parts.login_timeout,
        }
    }

    /// Writes one frame (see [`FrameSender::send`]).
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.sender.send(frame).await
    }

    /// Reads the next frame (see [`FrameReceiver::recv`]).
    pub async fn recv(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        self.receiver.recv().await
    }

    /// Sends `hello` and waits (up to the connect timeout) for the server's first
    /// frame. A `Welcome` is returned; an `Error` frame becomes
    /// [`ClientError::Rejected`]; anything else is [`ClientError::UnexpectedFrame`].
    pub async fn login(&mut self, hello: Hello) -> Result<Welcome, ClientError> {
        self.sender.send(&ClientFrame::Hello(hello)).await?;
        let after = self.login_timeout;
        match tokio::time::timeout(after, self.receiver.recv()).await {
            Err(_) => Err(ClientError::LoginTimeout { after }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => Err(ClientError::Closed),
            Ok(Ok(Some(ServerFrame::Welcome(welcome)))) => Ok(welcome),
            Ok(Ok(Some(ServerFrame::Error(e)))) => Err(ClientError::Rejected { code: e.code, message: e.message }),
            Ok(Ok(Some(other))) => Err(ClientError::UnexpectedFrame { expected: "Welcome", got: describe(&other) }),
        }
    }

    /// Separates the halves so reading and writing can happen in different tasks.
    pub fn split(self) -> (FrameSender, FrameReceiver) {
        (self.sender, self.receiver)
    }

    /// The byte counters of this connection (possibly shared with others).
    pub fn counters(&self) -> &Arc<ByteCounters> {
        &self.sender.counters
    }

    /// The local socket address (source IP and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
}

/// A short description of a frame for errors and logs (never the message body).
pub fn describe(frame: &ServerFrame) -> String {
    match frame {
        ServerFrame::Welcome(_) => "Welcome".into(),
        ServerFrame::Pong => "Pong".into(),
        ServerFrame::Accepted { conversation, seq, .. } => format!("Accepted({conversation}, seq {seq})"),
        ServerFrame::Message(m) => format!("Message({}, seq {})", m.conversation, m.seq),
        ServerFrame::History { conversation, messages } => format!("History({conversation}, {} messages)", messages.len()),
        ServerFrame::Conversation(u) => format!("Conversation({}, {:?})", u.conversation, u.state),
        ServerFrame::Error(e) => format!("Error({}: {})", e.code, e.message),
        ServerFrame::GoAway { reason } => format!("GoAway({reason})"),
        ServerFrame::QueueStatus { conversation, position, .. } => format!("QueueStatus({conversation}, position {position})"),
        ServerFrame::RatingRequested { conversation } => format!("RatingRequested({conversation})"),
        ServerFrame::Notes { conversation, notes } => format!("Notes({conversation}, {} notes)", notes.len()),
        ServerFrame::VisitorContext(c) => format!("VisitorContext({}, {})", c.conversation, c.visitor),
        ServerFrame::QuickReplies { replies } => format!("QuickReplies({})", replies.len()),
    }
}
