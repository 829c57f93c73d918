//! Switchboard's wire protocol: the types that cross a connection and the one codec
//! that frames them.
//!
//! Every connection — a visitor's app over TCP or QUIC, an agent's console, and later
//! the links between nodes — carries the same thing: a stream of frames, each a
//! 4-byte big-endian length followed by that many bytes of a bincode-encoded value
//! ([`codec::FrameCodec`]). Clients send [`ClientFrame`]s, the server answers with
//! [`ServerFrame`]s. `docs/protocol.md` documents the byte layout for implementers in
//! other languages.
//!
//! This crate has no runtime: it only encodes, decodes and reads/writes frames over
//! any `AsyncRead`/`AsyncWrite`.
#![deny(missing_docs)]

pub mod auth;
pub mod codec;
pub mod error;
pub mod frame;
pub mod ids;

pub use codec::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_LEN};
pub use error::ErrorCode;
pub use frame::*;
pub use ids::*;

/// The protocol version this crate speaks; sent in [`Hello::version`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The ALPN identifier of the QUIC transport.
pub const ALPN: &[u8] = b"switchboard/1";
