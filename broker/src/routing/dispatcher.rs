//! From the store's commit to every live connection that should see the message.

use crate::routing::{Directory, Registry};
use crate::integration::webhooks::PushCheck;
use crate::session::SessionEvent;
use bytes::Bytes;
use std::sync::Arc;
use switchboard_protocol::{FrameCodec, Participant, ServerFrame};
use switchboard_raft_store::{Answer, CommitListener, Committed};

/// The store's [`CommitListener`]: runs on the writer thread, so it only looks up
/// recipients and posts to their mailboxes, in commit order (which is what keeps
/// each connection's stream in seq order).
pub struct Dispatcher {
    directory: Arc<Directory>,
    registry: Arc<Registry>,
    codec: FrameCodec,
    push: std::sync::Mutex<std::sync::mpsc::Sender<PushCheck>>,
    push_after_ms: u64,
}

impl Dispatcher {
    /// A dispatcher over the node's directory and registry.
    pub fn new(
        directory: Arc<Directory>,
        registry: Arc<Registry>,
        codec: FrameCodec,
        push: std::sync::mpsc::Sender<PushCheck>,
        push_after_ms: u64,
    ) -> Self {
        Dispatcher { directory, registry, codec, push: std::sync::Mutex::new(push), push_after_ms }
    }
}

impl CommitListener for Dispatcher {
    fn answered(&self, answers: &[Answer]) {
        for a in answers {
            if let Some(addr) = self.registry.by_conn(a.origin) {
                addr.do_send(SessionEvent::Answer { conversation: a.conversation, client_msg_id: a.client_msg_id, result: a.result.clone() });
            }
        }
    }

    fn committed(&self, batch: &[Committed]) {
        ::metrics::counter!(crate::metrics::MESSAGES_ACCEPTED).increment(batch.len() as u64);
        for c in batch {
            let msg = &c.message;
            // Raise last_seq before looking up sessions: a session registers before it
            // reads last_seq, so every message is either seen there or delivered here.
            let entry = self.directory.note_committed(msg.conversation, msg.seq, msg.sent_at_ms);
            let frame = match self.codec.encode_to_vec(&ServerFrame::Message(msg.clone())) {
                Ok(f) => Bytes::from(f),
                Err(e) => {
                    tracing::error!(error = %e, conversation = %msg.conversation, seq = msg.seq, "cannot encode committed message");
                    continue;
                }
            };
            let event = SessionEvent::Deliver { message: Arc::new(msg.clone()), origin: c.origin, frame, received_at: c.received_at };
            let mut origin_seen = false;
            if let Some(e) = entry.filter(|e| msg.sender != Participant::Visitor(e.record.visitor)) {
                // Someone wrote to the visitor: if the tenant takes push requests, check
                // later whether any of the visitor's devices read it.
                if self.directory.webhook(e.record.tenant).is_some() {
                    let check = PushCheck {
                        due_ms: crate::context::now_ms() + self.push_after_ms,
                        tenant: e.record.tenant,
                        conversation: msg.conversation,
                        visitor: e.record.visitor,
                        seq: msg.seq,
                    };
                    if let Ok(tx) = self.push.lock() {
                        let _ = tx.send(check);
                    }
                }
            }
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
