//! The one error type of the SDK.

use std::net::SocketAddr;
use std::time::Duration;
use switchboard_protocol::{ErrorCode, FrameError};

/// Why a connection, a login or a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection (or the local bind before it) failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Connecting (TCP connect, or QUIC handshake and stream opening) took too long.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The server address.
        addr: SocketAddr,
        /// The configured limit.
        after: Duration,
    },
    /// The local QUIC endpoint could not be created or could not start a connection.
    #[error("quic endpoint: {reason}")]
    QuicEndpoint {
        /// What quinn or the operating system said.
        reason: String,
    },
    /// The QUIC connection failed or was closed (handshake failure, bad certificate, idle timeout).
    #[error("quic connection to {addr}: {source}")]
    Quic {
        /// The server address.
        addr: SocketAddr,
        /// What quinn said.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The TLS configuration could not be built.
    #[error("tls configuration: {reason}")]
    Tls {
        /// What rustls or quinn said.
        reason: String,
    },
    /// A frame could not be read or written (i/o failure, oversize or malformed frame).
    /// Only [`FrameError::Malformed`] leaves the connection usable.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server refused the login with an error frame.
    #[error("login rejected: {code}: {message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server sent a frame that makes no sense at this point of the protocol.
    #[error("unexpected frame: expected {expected}, got {got}")]
    UnexpectedFrame {
        /// What the client waited for.
        expected: &'static str,
        /// A short description of what arrived.
        got: String,
    },
    /// The server did not answer the login in time.
    #[error("no answer to the login within {after:?}")]
    LoginTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// A write did not complete in time (the server stopped reading).
    #[error("write timed out after {after:?}")]
    WriteTimeout {
        /// The limit.
        after: Duration,
    },
    /// The session's background task has ended; no more operations are possible.
    #[error("session closed")]
    SessionClosed,
}

impl ClientError {
    /// Whether retrying the same login later can succeed. Bad credentials and an
    /// unsupported protocol version cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Rejected { code, .. } => {
                !matches!(*code, ErrorCode::AUTH_FAILED | ErrorCode::UNSUPPORTED_VERSION)
            }
            ClientError::Tls { .. } | ClientError::SessionClosed => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_final_and_transport_failures_are_not() {
        let auth = ClientError::Rejected { code: ErrorCode::AUTH_FAILED, message: "bad token".into() };
        assert!(!auth.is_retryable());
        let busy = ClientError::Rejected { code: ErrorCode::SHUTTING_DOWN, message: "drain".into() };
        assert!(busy.is_retryable());
        assert!(ClientError::Closed.is_retryable());
        assert!(auth.to_string().contains("auth_failed"));
    }
}
