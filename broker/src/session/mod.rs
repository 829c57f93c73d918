//! Sessions: one actor per connection ([`VisitorSession`], [`AgentSeat`]) and the
//! transport-agnostic driver [`serve`] that runs a connection: login, a reader task
//! feeding the actor, a writer task draining its [`outbound::Outbound`] queue.
//! A transport hands `serve` an `AsyncRead` and an `AsyncWrite` and nothing else.

pub mod agent;
pub mod core;
mod forward;
pub mod login;
pub mod outbound;
pub mod subscriptions;
mod tools;
pub mod visitor;

pub use agent::AgentSeat;
pub use visitor::VisitorSession;
pub use tools::check_channel;

use crate::context::Ctx;
use crate::metrics;
use crate::routing::ConnId;
use actix::prelude::*;
use bytes::Bytes;
use outbound::{Next, Outbound};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::{ChatMessage, ClientFrame, ConversationUpdate, ErrorCode, FrameError, Participant, ServerFrame, Welcome, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

/// Which transport carried a connection (for metrics and the heartbeat interval only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// QUIC.
    Quic,
}

impl Transport {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// Sent to a session by the dispatcher, its tenant router, or the node.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// A message became durable in a conversation this identity takes part in.
    Deliver {
        /// The message.
        message: Arc<ChatMessage>,
        /// The connection that sent it.
        origin: ConnId,
        /// `ServerFrame::Message(message)`, encoded once for every recipient.
        frame: Bytes,
        /// When the node received it.
        received_at: Instant,
    },
    /// A conversation was opened, queued, assigned or closed.
    Conversation(ConversationUpdate),
    /// A submitted message was a duplicate (`Ok(original seq)`) or was not stored.
    Answer {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
        /// The client's id for the message.
        client_msg_id: u64,
        /// `Ok(seq)` of the original, or why it failed.
        result: Result<u64, String>,
    },
    /// Internal notes of a conversation (agent sessions).
    Notes {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
        /// The notes.
        notes: Vec<switchboard_protocol::InternalNote>,
    },
    /// Please rate this conversation (visitor sessions).
    RatingRequested {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
    },
    /// A waiting conversation's place in its queue changed.
    Queue {
        /// The conversation.
        conversation: switchboard_protocol::ConversationId,
        /// 1 = next.
        position: u32,
        /// Rough estimate, seconds.
        estimated_wait_secs: u32,
    },
    /// The node is shutting down.
    GoAway {
        /// Why.
        reason: String,
    },
}

/// Sent to a session by its connection's reader task.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum FromReader {
    /// A decoded frame.
    Frame(ClientFrame),
    /// An undecodable frame; the stream is still usable.
    Rejected {
        /// Code.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// The stream ended (with the fatal error to report, if any).
    Closed {
        /// Code and message.
        error: Option<(ErrorCode, String)>,
    },
}

/// Runs one client connection to its end. `guard` is held until then (e.g. the QUIC
/// connection handle). Must run on an actix arbiter.
pub async fn serve<R, W, G>(ctx: Ctx, reader: R, writer: W, transport: Transport, peer: SocketAddr, guard: G)
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
    G: 'static,
{
    let conn = ctx.registry.next_conn_id();
    let span = tracing::info_span!("conn", conn, %peer, transport = transport.as_str());
    ::metrics::counter!(metrics::CONNECTIONS_OPENED, "transport" => transport.as_str()).increment(1);
    let gauge = ::metrics::gauge!(metrics::CONNECTIONS, "transport" => transport.as_str());
    gauge.increment(1.0);
    ctx.connections.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    run_connection(ctx.clone(), conn, reader, writer, transport).instrument(span).await;
    ctx.connections.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    gauge.decrement(1.0);
    drop(guard);
}

fn heartbeat_secs(ctx: &Ctx, transport: Transport) -> u32 {
    match transport {
        Transport::Tcp => ctx.config.tcp_heartbeat_secs,
        Transport::Quic => ctx.config.quic_heartbeat_secs,
    }
}

async fn run_connection<R, W>(ctx: Ctx, conn: ConnId, mut reader: R, writer: W, transport: Transport)
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let out = Arc::new(Outbound::new(ctx.config.outbound_queue_bytes));
    let writer_task = actix_rt::spawn(write_loop(writer, out.clone()));
    let heartbeat = heartbeat_secs(&ctx, transport);
    let reject = |code: ErrorCode, message: String| {
        ::metrics::counter!(metrics::FRAMES_REJECTED, "code" => code.name()).increment(1);
        tracing::debug!(%code, %message, "connection rejected before login");
        let frame = ServerFrame::error(code, message, true);
        out.finish(ctx.codec.encode_to_vec(&frame).ok().map(Bytes::from));
    };

    // 1. Login: the first frame must be a Hello, within the login timeout.
    let login_timeout = Duration::from_secs(ctx.config.login_timeout_secs as u64);
    let hello = match tokio::time::timeout(login_timeout, ctx.codec.read_frame::<ClientFrame, _>(&mut reader)).await {
        Err(_) => Err(Some((ErrorCode::NOT_LOGGED_IN, format!("no Hello within {} s", login_timeout.as_secs())))),
        Ok(Ok(Some(ClientFrame::Hello(hello)))) => Ok(hello),
        Ok(Ok(Some(_))) => Err(Some((ErrorCode::NOT_LOGGED_IN, "the first frame must be Hello".to_string()))),
        Ok(Ok(None)) => Err(None),
        Ok(Err(e)) => Err(fatal_frame_error(&e)),
    };
    let hello = match hello {
        Ok(h) if h.version != PROTOCOL_VERSION => {
            reject(ErrorCode::UNSUPPORTED_VERSION, format!("protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}", h.version));
            return finish(writer_task).await;
        }
        Ok(h) => h,
        Err(error) => {
            if let Some((code, message)) = error {
                reject(code, message);
            } else {
                out.finish(None);
            }
            return finish(writer_task).await;
        }
    };
    // A tenant served by another node: relay the connection there.
    match forward::remote_home(&ctx, &hello).await {
        Ok(Some(home)) => {
            if let Err(why) = forward::relay(&ctx, &hello, reader, &out, &home).await {
                reject(ErrorCode::TENANT_UNAVAILABLE, why);
            } else {
                out.finish(None);
            }
            return finish(writer_task).await;
        }
        Ok(None) => {}
        Err(why) => {
            reject(ErrorCode::TENANT_UNAVAILABLE, why);
            return finish(writer_task).await;
        }
    }
    let kind = if matches!(hello.auth, switchboard_protocol::Auth::Agent { .. }) { "agent" } else { "visitor" };
    let principal = match login::authenticate(&ctx, hello.auth).await {
        Ok(p) => p,
        Err(e) => {
            ::metrics::counter!(metrics::LOGINS, "kind" => kind, "result" => "rejected").increment(1);
            let code = match e {
                login::LoginError::Storage(_) => ErrorCode::STORAGE_UNAVAILABLE,
                _ => ErrorCode::AUTH_FAILED,
            };
            reject(code, e.to_string());
            return finish(writer_task).await;
        }
    };
    ::metrics::counter!(metrics::LOGINS, "kind" => kind, "result" => "ok").increment(1);
    tracing::Span::current().record("conn", conn);
    tracing::debug!(tenant = %principal.tenant, who = %principal.who, "logged in");

    // 2. Welcome, then the session actor takes over what goes out.
    let welcome = ServerFrame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        tenant: principal.tenant,
        identity: principal.who,
        resume_token: principal.resume_token.clone(),
        heartbeat_secs: heartbeat,
        max_frame_len: ctx.codec.max_frame_len(),
        max_message_len: ctx.config.max_message_len,
    });
    if let Ok(bytes) = ctx.codec.encode_to_vec(&welcome) {
        let _ = out.push(Bytes::from(bytes));
    }
    let core = core::SessionCore {
        ctx: ctx.clone(),
        conn,
        tenant: principal.tenant,
        me: principal.who,
        out: out.clone(),
        subs: Default::default(),
        resume: hello.resume,
        closing: false,
        in_flight: Vec::new(),
    };
    let session: Recipient<FromReader> = match principal.who {
        Participant::Visitor(v) => VisitorSession::new(core, v).start().recipient(),
        Participant::Agent(a) => AgentSeat::new(core, a).start().recipient(),
        Participant::Bot => {
            // login never yields the bot; refuse rather than guess
            core.out.finish(None);
            return finish(writer_task).await;
        }
    };

    // 3. Read until the stream ends, the client falls silent, or the session closes.
    let silence = Duration::from_secs(2 * heartbeat as u64);
    // `Ping` is answered here, not by the actor: a client waiting for `Accepted`
    // pings to tell a dead connection from a slow write, and the actor may be busy
    // with that write (a first message waits for its conversation to be created).
    let pong = ctx.codec.encode_to_vec(&ServerFrame::Pong).map(Bytes::from).ok();
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(silence, ctx.codec.read_payload(&mut reader)) => r,
            _ = out_closed(&out) => {
                // The writer gave up (the peer reset the connection, or a slow consumer
                // was cut off): the session must end too, or an agent whose socket
                // died mid-write would stay online with nobody behind it.
                let _ = session.send(FromReader::Closed { error: None }).await;
                break;
            }
        };
        let msg = match next {
            Err(_) => FromReader::Closed {
                error: Some((ErrorCode::HEARTBEAT_TIMEOUT, format!("nothing received for {} s (two heartbeat intervals)", silence.as_secs()))),
            },
            Ok(Ok(None)) => FromReader::Closed { error: None },
            Ok(Ok(Some(payload))) => match ctx.codec.decode_payload::<ClientFrame>(&payload) {
                // Queued as is; if it cannot be (overflow), the actor applies its
                // slow-consumer rule.
                Ok(ClientFrame::Ping) if pong.as_ref().is_some_and(|p| out.push(p.clone()).is_ok()) => continue,
                Ok(frame) => FromReader::Frame(frame),
                Err(e) => FromReader::Rejected { code: ErrorCode::MALFORMED_FRAME, message: e.to_string() },
            },
            Ok(Err(e)) => FromReader::Closed { error: fatal_frame_error(&e) },
        };
        let closed = matches!(msg, FromReader::Closed { .. });
        if session.send(msg).await.is_err() || closed {
            break;
        }
    }
    // The session may already be gone; make sure the writer ends either way.
    out.finish(None);
    finish(writer_task).await;
}

async fn out_closed(out: &Outbound) {
    out.closed().await
}

async fn finish(writer_task: actix_rt::task::JoinHandle<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
}

/// The error frame for a read error that ends the stream (`None`: nothing to say).
fn fatal_frame_error(e: &FrameError) -> Option<(ErrorCode, String)> {
    match e {
        FrameError::TooLarge { .. } => Some((ErrorCode::FRAME_TOO_LARGE, e.to_string())),
        FrameError::Empty | FrameError::Malformed { .. } => Some((ErrorCode::MALFORMED_FRAME, e.to_string())),
        FrameError::Truncated { .. } | FrameError::Io(_) | FrameError::Encode { .. } => None,
    }
}

/// Drains the outbound queue into the stream, a batch of frames per write.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, out: Arc<Outbound>) {
    loop {
        match out.next().await {
            Next::Frames(frames) => {
                let result = if frames.len() == 1 {
                    writer.write_all(&frames[0]).await
                } else {
                    let mut buf = Vec::with_capacity(frames.iter().map(|f| f.len()).sum());
                    frames.iter().for_each(|f| buf.extend_from_slice(f));
                    writer.write_all(&buf).await
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "write failed; closing");
                    out.close();
                    return;
                }
            }
            Next::Finish(last) => {
                if let Some(frame) = last {
                    // A slow reader gets a while to drain its socket and see why.
                    let _ = tokio::time::timeout(Duration::from_secs(10), writer.write_all(&frame)).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), writer.shutdown()).await;
                out.close();
                return;
            }
        }
    }
}
