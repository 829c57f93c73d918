//! Per-conversation delivery cursors: the highest sequence number received without a
//! gap, plus the few received above a gap. Pure code, no I/O.
//!
//! The server delivers every sequence number of a conversation exactly once and in
//! order on each connection, as `Accepted` (own message) or `Message`. The tracker
//! makes that checkable: an in-order number advances the cursor, a number at or
//! below it (or already seen above a gap) is a duplicate, a number above the next
//! expected one reveals a gap.

use std::collections::{BTreeSet, HashMap};
use switchboard_protocol::{ConversationId, Cursor};

/// Numbers remembered above a gap before the gap is given up on.
pub const DEFAULT_MAX_AHEAD: usize = 4096;

/// What one received sequence number meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The next expected number (possibly closing a gap); the cursor is now `cursor`.
    InOrder {
        /// The new highest contiguous sequence number.
        cursor: u64,
    },
    /// Already received: ignore it.
    Duplicate,
    /// New, but numbers from `expected` up to (excluding) this one are missing.
    Early {
        /// The first missing sequence number.
        expected: u64,
    },
}

#[derive(Clone, Debug, Default)]
struct ConversationCursor {
    contiguous: u64,
    ahead: BTreeSet<u64>,
}

/// Cursors of every conversation a session takes part in.
#[derive(Clone, Debug)]
pub struct CursorTracker {
    conversations: HashMap<ConversationId, ConversationCursor>,
    max_ahead: usize,
}

impl Default for CursorTracker {
    fn default() -> Self {
        CursorTracker::new()
    }
}

impl CursorTracker {
    /// No conversations yet.
    pub fn new() -> CursorTracker {
        CursorTracker { conversations: HashMap::new(), max_ahead: DEFAULT_MAX_AHEAD }
    }

    /// Starts from known positions (e.g. cursors saved by an app).
    pub fn from_cursors(cursors: &[Cursor]) -> CursorTracker {
        let mut tracker = CursorTracker::new();
        for c in cursors {
            tracker.conversations.entry(c.conversation).or_default().contiguous = c.seq;
        }
        tracker
    }

    /// Remembers at most `max_ahead` numbers above a gap per conversation; beyond
    /// that the oldest gap is skipped (the cursor jumps over it).
    pub fn with_max_ahead(mut self, max_ahead: usize) -> CursorTracker {
        self.max_ahead = max_ahead.max(1);
        self
    }

    /// Records `seq` of `conversation` and says what it means.
    pub fn observe(&mut self, conversation: ConversationId, seq: u64) -> Observation {
        let max_ahead = self.max_ahead;
        let c = self.conversations.entry(conversation).or_default();
        if seq <= c.contiguous || c.ahead.contains(&seq) {
            return Observation::Duplicate;
        }
        if seq == c.contiguous + 1 {
            c.contiguous = seq;
            c.drain_contiguous();
            return Observation::InOrder { cursor: c.contiguous };
        }
        let expected = c.contiguous + 1;
        c.ahead.insert(seq);
        if c.ahead.len() > max_ahead {
            if let Some(&lowest) = c.ahead.iter().next() {
                c.ahead.remove(&lowest);
                c.contiguous = lowest;
                c.drain_contiguous();
            }
        }
        Observation::Early { expected }
    }

    /// The highest contiguous sequence number of `conversation` (0 if unknown).
    pub fn cursor(&self, conversation: ConversationId) -> u64 {
        self.conversations.get(&conversation).map_or(0, |c| c.contiguous)
    }

    /// Whether `seq` of `conversation` was already received.
    pub fn has_seen(&self, conversation: ConversationId, seq: u64) -> bool {
        self.conversations.get(&conversation).is_some_and(|c| seq <= c.contiguous || c.ahead.contains(&seq))
    }

    /// Every conversation's cursor, ordered by conversation id: the `resume` list of
    /// a `Hello`.
    pub fn cursors(&self) -> Vec<Cursor> {
        let mut all: Vec<Cursor> =
            self.conversations.iter().map(|(&conversation, c)| Cursor { conversation, seq: c.contiguous }).collect();
        all.sort_by_key(|c| c.conversation);
        all
    }

    /// Starts tracking `conversation` at cursor 0 if it is not tracked yet.
    pub fn track(&mut self, conversation: ConversationId) {
        self.conversations.entry(conversation).or_default();
    }

    /// Stops tracking `conversation` (e.g. once it is closed and fully received).
    pub fn forget(&mut self, conversation: ConversationId) {
        self.conversations.remove(&conversation);
    }

    /// Number of tracked conversations.
    pub fn len(&self) -> usize {
        self.conversations.len()
    }

    /// Whether no conversation is tracked.
    pub fn is_empty(&self) -> bool {
        self.conversations.is_empty()
    }
}

impl ConversationCursor {
    fn drain_contiguous(&mut self) {
        while self.ahead.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ConversationId = ConversationId(9);

    #[test]
    fn in_order_numbers_advance_the_cursor() {
        let mut t = CursorTracker::new();
        for seq in 1..=5 {
            assert_eq!(t.observe(C, seq), Observation::InOrder { cursor: seq });
        }
        assert_eq!(t.cursor(C), 5);
        assert_eq!(t.cursors(), vec![Cursor { conversation: C, seq: 5 }]);
    }

    #[test]
    fn duplicates_are_recognised_below_and_above_a_gap() {
        let mut t = CursorTracker::new();
        t.observe(C, 1);
        t.observe(C, 2);
        assert_eq!(t.observe(C, 2), Observation::Duplicate);
        assert_eq!(t.observe(C, 1), Observation::Duplicate);
        assert_eq!(t.observe(C, 0), Observation::Duplicate);
        assert_eq!(t.observe(C, 5), Observation::Early { expected: 3 });
        assert_eq!(t.observe(C, 5), Observation::Duplicate);
        assert!(t.has_seen(C, 5) && !t.has_seen(C, 4));
    }

    #[test]
    fn a_gap_holds_the_cursor_until_it_is_filled() {
        let mut t = CursorTracker::new();
        t.observe(C, 1);
        assert_eq!(t.observe(C, 4), Observation::Early { expected: 2 });
        assert_eq!(t.observe(C, 3), Observation::Early { expected: 2 });
        assert_eq!(t.cursor(C), 1);
        assert_eq!(t.observe(C, 2), Observation::InOrder { cursor: 4 });
        assert_eq!(t.observe(C, 5), Observation::InOrder { cursor: 5 });
    }

    #[test]
    fn resumed_cursors_continue_where_they_were() {
        let mut t = CursorTracker::from_cursors(&[Cursor { conversation: C, seq: 10 }]);
        assert_eq!(t.observe(C, 10), Observation::Duplicate);
        assert_eq!(t.observe(C, 11), Observation::InOrder { cursor: 11 });
        let other = ConversationId(2);
        assert_eq!(t.observe(other, 1), Observation::InOrder { cursor: 1 });
        assert_eq!(t.cursors().first().map(|c| c.conversation), Some(other));
        t.forget(other);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_unfillable_gap_is_skipped_after_max_ahead_numbers() {
        let mut t = CursorTracker::new().with_max_ahead(3);
        t.observe(C, 1);
        for seq in 3..=5 {
            assert!(matches!(t.observe(C, seq), Observation::Early { .. }));
        }
        assert_eq!(t.cursor(C), 1);
        // a fourth number above the gap: the gap at 2 is given up
        t.observe(C, 6);
        assert_eq!(t.cursor(C), 6);
        assert_eq!(t.observe(C, 2), Observation::Duplicate);
    }
}
