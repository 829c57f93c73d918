//! Per-connection delivery state: for each conversation, the highest seq this
//! connection has been given. Live messages that continue the sequence go straight
//! out; a gap (a reconnect, a race with login, a message that arrived while a
//! catch-up read was running) triggers a read from the durable log instead. This is
//! what makes delivery exactly-once and in order per connection.

use switchboard_protocol::{ChatMessage, ConversationId};

/// Catch-up reads take at most this many messages at a time.
pub const FILL_BATCH: usize = 256;
/// ...and at most about this many bytes.
pub const FILL_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy, Debug)]
struct Sub {
    conversation: ConversationId,
    delivered: u64,
    /// A catch-up read is running.
    filling: bool,
    /// Highest seq known to exist.
    known: u64,
}

/// What to do with a live message.
#[derive(Debug, PartialEq, Eq)]
pub enum Live {
    /// It continues the sequence: send it.
    Send,
    /// Already delivered, or a catch-up read will cover it.
    Skip,
    /// Start a catch-up read after this seq.
    Fill {
        /// Read messages strictly after this seq.
        after: u64,
    },
}

/// The conversations a connection follows. A connection follows few (a visitor one,
/// an agent up to its capacity), so this is a small vector.
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: Vec<Sub>,
}

impl Subscriptions {
    fn find(&mut self, conversation: ConversationId) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.conversation == conversation)
    }

    /// Whether `conversation` is followed.
    pub fn contains(&self, conversation: ConversationId) -> bool {
        self.subs.iter().any(|s| s.conversation == conversation)
    }

    /// Highest seq given for `conversation`.
    pub fn delivered(&self, conversation: ConversationId) -> Option<u64> {
        self.subs.iter().find(|s| s.conversation == conversation).map(|s| s.delivered)
    }

    /// Follows `conversation` from `delivered` (kept if already followed); `known` is
    /// its last seq. Returns a catch-up read to start, if any.
    pub fn subscribe(&mut self, conversation: ConversationId, delivered: u64, known: u64) -> Option<u64> {
        if let Some(sub) = self.find(conversation) {
            sub.known = sub.known.max(known);
            if !sub.filling && sub.known > sub.delivered {
                sub.filling = true;
                return Some(sub.delivered);
            }
            return None;
        }
        let filling = known > delivered;
        self.subs.push(Sub { conversation, delivered, filling, known });
        filling.then_some(delivered)
    }

    /// Stops following `conversation`.
    pub fn unsubscribe(&mut self, conversation: ConversationId) {
        self.subs.retain(|s| s.conversation != conversation);
    }

    /// A live message `seq` of `conversation` arrived. An unknown conversation is
    /// followed from the start (the dispatcher only sends to participants).
    pub fn on_live(&mut self, conversation: ConversationId, seq: u64) -> Live {
        if self.find(conversation).is_none() {
            self.subs.push(Sub { conversation, delivered: 0, filling: false, known: 0 });
        }
        let Some(sub) = self.find(conversation) else { return Live::Skip };
        sub.known = sub.known.max(seq);
        if seq <= sub.delivered || sub.filling {
            return Live::Skip;
        }
        if seq == sub.delivered + 1 {
            sub.delivered = seq;
            return Live::Send;
        }
        sub.filling = true;
        Live::Fill { after: sub.delivered }
    }

    /// A catch-up read returned `messages` (in seq order). Returns those to send and,
    /// if more are known to exist, where the next read starts.
    pub fn on_filled(&mut self, conversation: ConversationId, messages: Vec<ChatMessage>) -> (Vec<ChatMessage>, Option<u64>) {
        let Some(sub) = self.find(conversation) else { return (Vec::new(), None) };
        let got_any = !messages.is_empty();
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            if m.seq == sub.delivered + 1 {
                sub.delivered = m.seq;
                out.push(m);
            }
        }
        sub.known = sub.known.max(sub.delivered);
        if got_any && sub.known > sub.delivered {
            return (out, Some(sub.delivered));
        }
        sub.filling = false;
        (out, None)
    }

    /// A catch-up read failed; a later live message will retry.
    pub fn fill_failed(&mut self, conversation: ConversationId) {
        if let Some(sub) = self.find(conversation) {
            sub.filling = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::{Participant, VisitorId};

    const C: ConversationId = ConversationId(1);

    fn msgs(range: std::ops::RangeInclusive<u64>) -> Vec<ChatMessage> {
        range
            .map(|seq| ChatMessage { conversation: C, seq, sender: Participant::Visitor(VisitorId(1)), client_msg_id: seq, sent_at_ms: 0, body: String::new() })
            .collect()
    }

    #[test]
    fn in_order_live_messages_go_straight_out_and_duplicates_are_dropped() {
        let mut s = Subscriptions::default();
        assert_eq!(s.subscribe(C, 0, 0), None);
        assert_eq!(s.on_live(C, 1), Live::Send);
        assert_eq!(s.on_live(C, 2), Live::Send);
        assert_eq!(s.on_live(C, 2), Live::Skip);
        assert_eq!(s.delivered(C), Some(2));
    }

    #[test]
    fn a_gap_reads_from_the_log_and_live_messages_wait_for_it() {
        let mut s = Subscriptions::default();
        s.subscribe(C, 3, 3);
        assert_eq!(s.on_live(C, 6), Live::Fill { after: 3 });
        assert_eq!(s.on_live(C, 7), Live::Skip, "covered by the catch-up");
        let (sent, more) = s.on_filled(C, msgs(4..=6));
        assert_eq!(sent.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(more, Some(6), "7 is known, read again");
        let (sent, more) = s.on_filled(C, msgs(7..=7));
        assert_eq!(sent.len(), 1);
        assert_eq!(more, None);
        assert_eq!(s.on_live(C, 8), Live::Send);
    }

    #[test]
    fn resume_from_a_cursor_reads_exactly_what_was_missed() {
        let mut s = Subscriptions::default();
        assert_eq!(s.subscribe(C, 5, 9), Some(5));
        let (sent, more) = s.on_filled(C, msgs(3..=9));
        assert_eq!(sent.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7, 8, 9]);
        assert_eq!(more, None);
        assert_eq!(s.on_live(C, 9), Live::Skip);
    }

    #[test]
    fn an_unknown_conversation_is_followed_from_the_start() {
        let mut s = Subscriptions::default();
        assert_eq!(s.on_live(C, 3), Live::Fill { after: 0 });
        let (sent, _) = s.on_filled(C, msgs(1..=3));
        assert_eq!(sent.len(), 3);
    }

    #[test]
    fn an_empty_read_ends_the_fill() {
        let mut s = Subscriptions::default();
        assert_eq!(s.on_live(C, 5), Live::Fill { after: 0 });
        assert_eq!(s.on_filled(C, Vec::new()), (Vec::new(), None));
        assert_eq!(s.on_live(C, 6), Live::Fill { after: 0 }, "the next live message retries");
    }
}
