//! From the store's commit to every live connection that should see the message.

use crate::routing::{Directory, Registry};
use crate::session::SessionEvent;
use bytes::Bytes;
use std::sync::Arc;
use switchboard_protocol::{FrameCodec, Participant, ServerFrame};
use switchboard_raft_store::{CommitListener, Committed};

/// The store's [`CommitListener`]: runs on the writer thread, so it only looks up
/// recipients and posts to their mailboxes, in commit order (which is what keeps
/// each connection's stream in seq order).
pub struct Dispatcher {
    directory: Arc<Directory>,
    registry: Arc<Registry>,
    codec: FrameCodec,
}

impl Dispatcher {
    /// A dispatcher over the node's directory and registry.
    pub fn new(directory: Arc<Directory>, registry: Arc<Registry>, codec: FrameCodec) -> Self {
        Dispatcher { directory, registry, codec }
    }
}

impl CommitListener for Dispatcher {
    fn committed(&self, batch: &[Committed]) {
        ::metrics::counter!(crate::metrics::MESSAGES_ACCEPTED).increment(batch.len() as u64);
        for c in batch {
            let msg = &c.message;
            // Raise last_seq before looking up sessions: a session registers before it
            // reads last_seq, so every message is either seen there or delivered here.
            let entry = self.directory.note_committed(msg.conversation, msg.seq);
            let frame = match self.codec.encode_to_vec(&ServerFrame::Message(msg.clone())) {
                Ok(f) => Bytes::from(f),
                Err(e) => {
                    tracing::error!(error = %e, conversation = %msg.conversation, seq = msg.seq, "cannot encode committed message");
                    continue;
                }
            };
            let event = SessionEvent::Deliver { message: Arc::new(msg.clone()), origin: c.origin, frame, received_at: c.received_at };
            let mut origin_seen = false;
            if let Some(entry) = entry {
                let mut participants = vec![Participant::Visitor(entry.record.visitor)];
                participants.extend(entry.record.agent.map(Participant::Agent));
                for who in participants {
                    self.registry.for_each(entry.record.tenant, who, |conn, addr| {
                        origin_seen |= conn == c.origin;
                        addr.do_send(event.clone());
                    });
                }
            }
            if !origin_seen {
                // The sender must learn its message is durable even if the
                // conversation closed or moved meanwhile.
                if let Some(addr) = self.registry.by_conn(c.origin) {
                    addr.do_send(event);
                }
            }
        }
    }
}
