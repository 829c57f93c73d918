//! Stable error codes carried by [`crate::ErrorFrame`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable numeric error code. New codes may be added; existing numbers never change
/// meaning. Clients should treat an unknown code like [`ErrorCode::INTERNAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $text:literal;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($num);)*

            /// Every defined code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code's stable snake_case name, or `"unknown"`.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($num => $text,)*
                    _ => "unknown",
                }
            }
        }
    };
}

codes! {
    /// The frame's payload could not be decoded (unknown variant, bad UTF-8, trailing bytes).
    MALFORMED_FRAME = 1, "malformed_frame";
    /// The length prefix exceeds the server's maximum frame size (or is zero). Fatal.
    FRAME_TOO_LARGE = 2, "frame_too_large";
    /// `Hello.version` is not supported by this server. Fatal.
    UNSUPPORTED_VERSION = 3, "unsupported_version";
    /// A frame other than `Hello` arrived before login, or no `Hello` in time. Fatal.
    NOT_LOGGED_IN = 4, "not_logged_in";
    /// A second `Hello` on a logged-in connection.
    ALREADY_LOGGED_IN = 5, "already_logged_in";
    /// Credentials were rejected (bad token, bad signature, unknown tenant). Fatal.
    AUTH_FAILED = 6, "auth_failed";
    /// The conversation does not exist, or is not visible to this identity.
    CONVERSATION_NOT_FOUND = 7, "conversation_not_found";
    /// This identity may not do that (e.g. an agent writing to a chat not assigned to it).
    FORBIDDEN = 8, "forbidden";
    /// The message body exceeds the server's maximum message size.
    MESSAGE_TOO_LARGE = 9, "message_too_large";
    /// The conversation is closed; a visitor's next message opens a new one.
    CONVERSATION_CLOSED = 10, "conversation_closed";
    /// The request is well-formed but invalid (e.g. an agent `Send` without a conversation).
    INVALID_REQUEST = 11, "invalid_request";
    /// The client did not read fast enough; its outbound queue overflowed. Fatal; resume from the cursor.
    SLOW_CONSUMER = 12, "slow_consumer";
    /// Nothing was received for two heartbeat intervals. Fatal.
    HEARTBEAT_TIMEOUT = 13, "heartbeat_timeout";
    /// The store could not make the message durable; it was NOT accepted. Retry with the same id.
    STORAGE_UNAVAILABLE = 14, "storage_unavailable";
    /// The node is shutting down. Fatal; reconnect (to any node).
    SHUTTING_DOWN = 15, "shutting_down";
    /// An unexpected server-side failure.
    INTERNAL = 16, "internal";
    /// Every agent is busy and the queue is at its limit: the message was not stored.
    QUEUE_FULL = 17, "queue_full";
    /// The node serving this tenant cannot be reached from the node the client
    /// connected to. Fatal for the connection; reconnect after a pause (to any node).
    TENANT_UNAVAILABLE = 18, "tenant_unavailable";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_named() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.0), "duplicate code {}", code.0);
            assert_ne!(code.name(), "unknown");
        }
        assert_eq!(ErrorCode(999).name(), "unknown");
    }
}
