//! The Switchboard client SDK.
//!
//! Two levels:
//!
//! 1. [`connect`] opens a [`Connection`] over TCP or QUIC ([`Transport`]); it sends
//!    [`ClientFrame`](switchboard_protocol::ClientFrame)s and receives
//!    [`ServerFrame`](switchboard_protocol::ServerFrame)s with the protocol's one
//!    codec, counts frame bytes ([`ByteCounters`]), and [`Connection::login`] turns the
//!    server's first frame into a [`Welcome`](switchboard_protocol::Welcome) or a
//!    typed [`ClientError::Rejected`]. [`Connection::split`] gives a
//!    [`FrameSender`] and a cancel-safe [`FrameReceiver`].
//! 2. [`Session`] keeps one identity connected: heartbeats, acks, a cursor per
//!    conversation ([`CursorTracker`]: duplicates dropped, gaps fetched), sends kept
//!    until accepted, and reconnect-and-resume with bounded retries. The application
//!    reads [`Event`]s.
//!
//! The path of a message sent through a session: [`SessionHandle::send`] queues a
//! command -> the session task writes `Send` and keeps the message pending -> the
//! server answers `Accepted` once durable -> the task reports [`Event::Accepted`] and
//! advances the conversation's cursor -> the other party's session receives
//! `Message`, reports [`Event::Message`] and acknowledges it. If a connection drops in
//! between, the next login lists the cursors in `Hello.resume`, the server replays
//! what followed them, and the pending message is sent again under the same
//! `client_msg_id` (the server answers with the same sequence number).
#![deny(missing_docs)]

mod connect;
mod connection;
pub mod cursor;
mod error;
mod session;
pub mod tls;

pub use connect::{
    connect, connect_and_login, quic_endpoint, ConnectOptions, Transport, DEFAULT_CLIENT_MAX_FRAME_LEN,
    DEFAULT_CONNECT_TIMEOUT,
};
pub use connection::{describe, ByteCounters, Connection, FrameReceiver, FrameSender};
pub use cursor::{CursorTracker, Observation};
pub use error::ClientError;
pub use session::{
    Event, Observed, ObservedKind, Origin, ReconnectPolicy, Session, SessionConfig, SessionHandle, SessionStats, Tap,
};
pub use switchboard_protocol as protocol;

/// `Hello` for `auth` with no resume cursors, at this crate's protocol version.
pub fn hello(auth: switchboard_protocol::Auth) -> switchboard_protocol::Hello {
    switchboard_protocol::Hello { version: switchboard_protocol::PROTOCOL_VERSION, auth, resume: Vec::new() }
}

/// `Auth::Verified` for `user_id`, signed with the tenant's signing secret.
pub fn verified_auth(
    tenant: switchboard_protocol::TenantId,
    user_id: &str,
    signing_secret: &[u8],
) -> switchboard_protocol::Auth {
    let signature = switchboard_protocol::auth::sign_user_id(signing_secret, user_id).to_vec();
    switchboard_protocol::Auth::Verified { tenant, user_id: user_id.to_string(), signature }
}

#[cfg(test)]
mod test_server;
