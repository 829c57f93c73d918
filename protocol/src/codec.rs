//! The one frame codec: a 4-byte big-endian payload length, then the payload, a value
//! encoded with bincode 2 in its `standard()` configuration (little-endian, variable
//! length integers). Used by every transport and by node-to-node links.
//!
//! Reading allocates exactly the announced payload (after checking it against the
//! maximum) and nothing while waiting for the next header, so an idle connection
//! holds no buffer.

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Default maximum payload length: 64 KiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 64 * 1024;
/// Largest maximum a configuration may choose: 16 MiB.
pub const MAX_CONFIGURABLE_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// bincode's limit on what one decode may claim; frames are checked against the
/// configured maximum before decoding, so this is only a second fence.
const DECODE_LIMIT: usize = MAX_CONFIGURABLE_FRAME_LEN as usize;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announced more than the maximum. The stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// A zero length prefix. The stream cannot be trusted.
    #[error("empty frame (length prefix 0)")]
    Empty,
    /// The payload is not a valid value. The stream is still at a frame boundary.
    #[error("malformed frame payload: {reason}")]
    Malformed {
        /// What the decoder said.
        reason: String,
    },
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed mid-frame after {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The value could not be encoded (only a bug or a too large value causes this).
    #[error("cannot encode frame: {reason}")]
    Encode {
        /// What the encoder said.
        reason: String,
    },
    /// The underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the stream is still positioned at a frame boundary after this error,
    /// so the connection may continue.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::Malformed { .. })
    }
}

/// Encodes and decodes length-prefixed bincode frames with a maximum payload size.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_frame_len: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    /// A codec that rejects payloads larger than `max_frame_len` bytes (clamped to
    /// [`MAX_CONFIGURABLE_FRAME_LEN`]).
    pub fn new(max_frame_len: u32) -> Self {
        FrameCodec { max_frame_len: max_frame_len.min(MAX_CONFIGURABLE_FRAME_LEN) }
    }

    /// The maximum payload length.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Appends the frame for `value` (prefix and payload) to `dst`.
    pub fn encode<T: Serialize>(&self, value: &T, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = dst.len();
        dst.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
        if let Err(e) = bincode::serde::encode_into_std_write(value, dst, bincode_config()) {
            dst.truncate(start);
            return Err(FrameError::Encode { reason: e.to_string() });
        }
        let len = dst.len() - start - LENGTH_PREFIX_LEN;
        if len > self.max_frame_len as usize {
            dst.truncate(start);
            return Err(FrameError::TooLarge { len: len as u64, max: self.max_frame_len });
        }
        dst[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    /// The frame for `value` as a fresh buffer.
    pub fn encode_to_vec<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, FrameError> {
        let mut buf = Vec::new();
        self.encode(value, &mut buf)?;
        Ok(buf)
    }

    /// Decodes one payload (without its prefix). Trailing bytes are an error.
    pub fn decode_payload<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T, FrameError> {
        let (value, used) = bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| FrameError::Malformed { reason: e.to_string() })?;
        if used != payload.len() {
            return Err(FrameError::Malformed {
                reason: format!("{} trailing bytes after the value", payload.len() - used),
            });
        }
        Ok(value)
    }

    fn check_len(&self, len: u32) -> Result<usize, FrameError> {
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame_len {
            return Err(FrameError::TooLarge { len: len as u64, max: self.max_frame_len });
        }
        Ok(len as usize)
    }

    /// Decodes the next frame from an in-memory buffer, consuming its bytes.
    /// `Ok(None)` means more bytes are needed. A malformed payload is consumed too,
    /// so decoding can continue with the next frame.
    pub fn decode<T: DeserializeOwned>(&self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        if src.len() < LENGTH_PREFIX_LEN {
            return Ok(None);
        }
        let len = self.check_len(u32::from_be_bytes([src[0], src[1], src[2], src[3]]))?;
        if src.len() < LENGTH_PREFIX_LEN + len {
            src.reserve(LENGTH_PREFIX_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_LEN);
        let payload = src.split_to(len);
        self.decode_payload(&payload).map(Some)
    }

    /// Reads the next frame's payload. `Ok(None)` on a clean end of stream at a frame
    /// boundary.
    pub async fn read_payload<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        let mut got = 0;
        while got < LENGTH_PREFIX_LEN {
            let n = reader.read(&mut prefix[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(FrameError::Truncated { got, expected: LENGTH_PREFIX_LEN });
            }
            got += n;
        }
        let len = self.check_len(u32::from_be_bytes(prefix))?;
        let mut payload = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = reader.read(&mut payload[got..]).await?;
            if n == 0 {
                return Err(FrameError::Truncated { got: LENGTH_PREFIX_LEN + got, expected: LENGTH_PREFIX_LEN + len });
            }
            got += n;
        }
        Ok(Some(payload))
    }

    /// Reads and decodes the next frame. `Ok(None)` on a clean end of stream.
    pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
    ) -> Result<Option<T>, FrameError> {
        match self.read_payload(reader).await? {
            None => Ok(None),
            Some(payload) => self.decode_payload(&payload).map(Some),
        }
    }

    /// Encodes and writes one frame (not flushed).
    pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        value: &T,
    ) -> Result<(), FrameError> {
        let buf = self.encode_to_vec(value)?;
        writer.write_all(&buf).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn hello() -> ClientFrame {
        ClientFrame::Hello(Hello {
            version: PROTOCOL_VERSION,
            auth: Auth::Verified { tenant: TenantId(7), user_id: "u-1".into(), signature: vec![9; 32] },
            resume: vec![Cursor { conversation: ConversationId(3), seq: 41 }],
        })
    }

    #[test]
    fn round_trip_every_client_frame() {
        let codec = FrameCodec::default();
        let frames = vec![
            hello(),
            ClientFrame::Ping,
            ClientFrame::Send(SendMessage { client_msg_id: 1, conversation: None, body: "你好".into() }),
            ClientFrame::Ack { conversation: ConversationId(1), seq: 300 },
            ClientFrame::Fetch { conversation: ConversationId(1), after_seq: 0, limit: 50 },
            ClientFrame::Close { conversation: ConversationId(1) },
        ];
        for frame in frames {
            let mut buf = BytesMut::from(&codec.encode_to_vec(&frame).unwrap()[..]);
            let back: ClientFrame = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(back, frame);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn documented_byte_layout_holds() {
        // These exact bytes are the examples in docs/protocol.md.
        let codec = FrameCodec::default();
        assert_eq!(codec.encode_to_vec(&ClientFrame::Ping).unwrap(), [0, 0, 0, 1, 1]);
        let send = ClientFrame::Send(SendMessage { client_msg_id: 300, conversation: Some(ConversationId(5)), body: "hi".into() });
        assert_eq!(codec.encode_to_vec(&send).unwrap(), [0, 0, 0, 9, 2, 251, 0x2c, 0x01, 1, 5, 2, b'h', b'i']);
        let hello = ClientFrame::Hello(Hello { version: 1, auth: Auth::Anonymous { tenant: TenantId(1) }, resume: vec![] });
        assert_eq!(codec.encode_to_vec(&hello).unwrap(), [0, 0, 0, 5, 0, 1, 0, 1, 0]);
        let err = ServerFrame::Error(ErrorFrame { code: ErrorCode::SLOW_CONSUMER, message: "x".into(), client_msg_id: None, fatal: true });
        assert_eq!(codec.encode_to_vec(&err).unwrap(), [0, 0, 0, 6, 6, 12, 1, b'x', 0, 1]);
        let big = ClientFrame::Ack { conversation: ConversationId(70_000), seq: 5_000_000_000 };
        assert_eq!(
            codec.encode_to_vec(&big).unwrap(),
            [0, 0, 0, 15, 3, 252, 0x70, 0x11, 0x01, 0x00, 253, 0x00, 0xf2, 0x05, 0x2a, 0x01, 0x00, 0x00, 0x00]
        );
        let accepted = ServerFrame::Accepted { client_msg_id: 7, conversation: ConversationId(5), seq: 1 };
        assert_eq!(codec.encode_to_vec(&accepted).unwrap(), [0, 0, 0, 4, 2, 7, 5, 1]);
    }

    /// Framing overhead of a delivered chat message: every byte of the `Message` frame
    /// that is not the body. Prints the figures docs/performance.md quotes
    /// (`cargo test -p switchboard-protocol framing_overhead -- --nocapture`).
    #[test]
    fn framing_overhead_of_a_chat_message() {
        let codec = FrameCodec::default();
        let body = "x".repeat(64);
        let frame = |conversation: u64, seq: u64, visitor: u64, cmid: u64| {
            let m = ServerFrame::Message(ChatMessage {
                conversation: ConversationId(conversation),
                seq,
                sender: Participant::Visitor(VisitorId(visitor)),
                client_msg_id: cmid,
                sent_at_ms: 1_795_000_000_000,
                body: body.clone(),
            });
            codec.encode_to_vec(&m).unwrap().len() - body.len()
        };
        let small = frame(1_000, 10, 1_000, 10);
        let typical = frame(5_000_000, 1_000, 5_000_000, 1_000);
        let random_ids = frame(5_000_000, 1_000, 5_000_000, u64::MAX);
        let send = codec
            .encode_to_vec(&ClientFrame::Send(SendMessage { client_msg_id: 1_000, conversation: Some(ConversationId(5_000_000)), body: body.clone() }))
            .unwrap()
            .len()
            - body.len();
        let accepted = codec
            .encode_to_vec(&ServerFrame::Accepted { client_msg_id: 1_000, conversation: ConversationId(5_000_000), seq: 1_000 })
            .unwrap()
            .len();
        println!("framing overhead: Message {small} (small ids) / {typical} (typical) / {random_ids} (random u64 client ids); Send {send}; Accepted {accepted}");
        assert_eq!((small, typical, random_ids, send, accepted), (24, 32, 38, 15, 16));
    }

    #[test]
    fn partial_frame_waits_for_more_bytes() {
        let codec = FrameCodec::default();
        let bytes = codec.encode_to_vec(&hello()).unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert!(codec.decode::<ClientFrame>(&mut buf).unwrap().is_none(), "decoded early at {i}");
            buf.extend_from_slice(&[*b]);
        }
        assert_eq!(codec.decode::<ClientFrame>(&mut buf).unwrap().unwrap(), hello());
    }

    #[test]
    fn oversize_prefix_is_rejected_before_allocating() {
        let codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        match codec.decode::<ClientFrame>(&mut buf) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as u64);
                assert_eq!(max, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(buf.capacity() < 4096);
    }

    #[test]
    fn encoding_over_the_maximum_fails_cleanly() {
        let codec = FrameCodec::new(16);
        let frame = ClientFrame::Send(SendMessage { client_msg_id: 1, conversation: None, body: "x".repeat(100) });
        let mut buf = vec![1, 2, 3];
        assert!(matches!(codec.encode(&frame, &mut buf), Err(FrameError::TooLarge { .. })));
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn unknown_variant_and_trailing_bytes_are_malformed_and_recoverable() {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 42][..]);
        let err = codec.decode::<ClientFrame>(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }) && err.is_recoverable(), "{err:?}");
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 1, 0][..]);
        assert!(codec.decode::<ClientFrame>(&mut buf).unwrap_err().is_recoverable());
        // the stream continues at the next frame
        buf.extend_from_slice(&[0, 0, 0, 1, 1]);
        assert_eq!(codec.decode::<ClientFrame>(&mut buf).unwrap(), Some(ClientFrame::Ping));
    }

    #[test]
    fn huge_inner_length_does_not_allocate() {
        // A Send whose body claims u64::MAX bytes inside a small frame.
        let codec = FrameCodec::default();
        let payload = [2u8, 1, 0, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(matches!(codec.decode_payload::<ClientFrame>(&payload), Err(FrameError::Malformed { .. })));
    }

    #[test]
    fn zero_length_is_rejected() {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(matches!(codec.decode::<ClientFrame>(&mut buf), Err(FrameError::Empty)));
    }

    #[tokio::test]
    async fn async_read_detects_truncation_and_clean_eof() {
        let codec = FrameCodec::default();
        let bytes = codec.encode_to_vec(&hello()).unwrap();
        let mut whole = &bytes[..];
        assert_eq!(codec.read_frame::<ClientFrame, _>(&mut whole).await.unwrap(), Some(hello()));
        assert!(codec.read_frame::<ClientFrame, _>(&mut whole).await.unwrap().is_none());
        let mut cut = &bytes[..bytes.len() - 1];
        assert!(matches!(codec.read_frame::<ClientFrame, _>(&mut cut).await, Err(FrameError::Truncated { .. })));
        let mut cut_prefix = &bytes[..2];
        assert!(matches!(codec.read_frame::<ClientFrame, _>(&mut cut_prefix).await, Err(FrameError::Truncated { .. })));
    }
}
