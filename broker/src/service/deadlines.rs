//! Deadlines as data: what is due when, in the order it was asked for. The router
//! keeps every timer here and fires what is due against its clock, so the rules that
//! depend on time are driven by whichever clock the node runs on (a manual one in
//! tests) and never by a sleeping task.

use std::collections::BTreeMap;

/// Items due at times in ms, taken oldest deadline first (ties: first scheduled first).
#[derive(Debug)]
pub struct Deadlines<T> {
    queue: BTreeMap<(u64, u64), T>,
    next: u64,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines { queue: BTreeMap::new(), next: 0 }
    }
}

impl<T> Deadlines<T> {
    /// Adds `item`, due at `due_ms`.
    pub fn schedule(&mut self, due_ms: u64, item: T) {
        self.queue.insert((due_ms, self.next), item);
        self.next += 1;
    }

    /// Removes and returns every item due at or before `now_ms`, in deadline order.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<T> {
        let due = match now_ms.checked_add(1) {
            Some(bound) => {
                let later = self.queue.split_off(&(bound, 0));
                std::mem::replace(&mut self.queue, later)
            }
            None => std::mem::take(&mut self.queue),
        };
        due.into_values().collect()
    }

    /// The earliest deadline, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_items_come_out_in_deadline_order_then_in_scheduling_order() {
        let mut d = Deadlines::default();
        d.schedule(300, "c");
        d.schedule(100, "a");
        d.schedule(300, "d");
        d.schedule(200, "b");
        assert_eq!(d.next_due(), Some(100));
        assert_eq!(d.take_due(99), Vec::<&str>::new());
        assert_eq!(d.take_due(300), vec!["a", "b", "c", "d"]);
        assert!(d.is_empty());
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn an_item_due_exactly_now_is_due_and_later_ones_stay() {
        let mut d = Deadlines::default();
        d.schedule(1_000, 1);
        d.schedule(1_001, 2);
        assert_eq!(d.take_due(1_000), vec![1]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.next_due(), Some(1_001));
    }

    #[test]
    fn the_end_of_time_does_not_overflow() {
        let mut d = Deadlines::default();
        d.schedule(u64::MAX, 7);
        assert_eq!(d.take_due(u64::MAX), vec![7]);
    }
}
