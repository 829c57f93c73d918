//! A connection's outbound queue: encoded frames waiting for the writer task,
//! bounded in bytes. It holds no buffer while empty, so idle connections cost nothing
//! here. Overflow means a slow consumer: the session closes the connection and the
//! client resumes from its cursor (every queued message is durable).

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The byte limit would be exceeded.
    Overflow,
    /// The queue is closed.
    Closed,
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Next {
    /// Write these frames, in order.
    Frames(Vec<Bytes>),
    /// Write this last frame (if any) and close the connection.
    Finish(Option<Bytes>),
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Set when closing: the final frame (if any) goes out after what is queued,
    /// unless `abort` dropped the queue.
    finish: Option<Option<Bytes>>,
    closed: bool,
}

/// The queue between a session actor and its connection's writer task.
pub struct Outbound {
    state: Mutex<State>,
    limit: usize,
    writer: Notify,
    drained: Notify,
    closed: Notify,
}

impl Outbound {
    /// A queue holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Outbound { state: Mutex::new(State::default()), limit, writer: Notify::new(), drained: Notify::new(), closed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-push; the data is
        // a plain queue and stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut s = self.lock();
        if s.closed || s.finish.is_some() {
            return Err(PushError::Closed);
        }
        if s.bytes + frame.len() > self.limit {
            return Err(PushError::Overflow);
        }
        s.bytes += frame.len();
        s.frames.push_back(frame);
        drop(s);
        self.writer.notify_one();
        Ok(())
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether more than half the budget is in use.
    pub fn is_congested(&self) -> bool {
        self.queued_bytes() * 2 > self.limit
    }

    /// Waits until at most half the budget is in use (or the queue closed).
    pub async fn wait_uncongested(&self) {
        loop {
            let notified = self.drained.notified();
            {
                let s = self.lock();
                if s.closed || s.bytes * 2 <= self.limit {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Sends what is queued, then `last`, then closes.
    pub fn finish(&self, last: Option<Bytes>) {
        let mut s = self.lock();
        if s.finish.is_none() && !s.closed {
            s.finish = Some(last);
        }
        drop(s);
        self.writer.notify_one();
        self.closed.notify_waiters();
    }

    /// Drops what is queued, sends `last`, then closes (slow consumer, bad stream).
    pub fn abort(&self, last: Option<Bytes>) {
        let mut s = self.lock();
        s.frames = VecDeque::new();
        s.bytes = 0;
        if !s.closed {
            s.finish = Some(last);
        }
        drop(s);
        self.writer.notify_one();
        self.drained.notify_waiters();
        self.closed.notify_waiters();
    }

    /// Marks the queue closed (the connection is gone).
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.frames = VecDeque::new();
        s.bytes = 0;
        drop(s);
        self.writer.notify_one();
        self.drained.notify_waiters();
        self.closed.notify_waiters();
    }

    /// Waits until the queue is closed or closing.
    pub async fn closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether the queue is closed or closing.
    pub fn is_closed(&self) -> bool {
        let s = self.lock();
        s.closed || s.finish.is_some()
    }

    /// The writer's next step; waits while there is nothing to do.
    pub async fn next(&self) -> Next {
        loop {
            let notified = self.writer.notified();
            {
                let mut s = self.lock();
                if s.closed {
                    return Next::Finish(None);
                }
                if !s.frames.is_empty() {
                    let frames: Vec<Bytes> = s.frames.drain(..).collect();
                    s.bytes = 0;
                    if s.frames.capacity() > 64 {
                        s.frames = VecDeque::new();
                    }
                    drop(s);
                    self.drained.notify_waiters();
                    return Next::Frames(frames);
                }
                if let Some(last) = s.finish.take() {
                    s.closed = true;
                    return Next::Finish(last);
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_then_the_final_frame() {
        let q = Outbound::new(100);
        q.push(Bytes::from_static(b"a")).unwrap();
        q.push(Bytes::from_static(b"b")).unwrap();
        q.finish(Some(Bytes::from_static(b"bye")));
        assert_eq!(q.push(Bytes::from_static(b"c")), Err(PushError::Closed));
        match q.next().await {
            Next::Frames(f) => assert_eq!(f, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(q.next().await, Next::Finish(Some(b)) if b == Bytes::from_static(b"bye")));
        assert!(matches!(q.next().await, Next::Finish(None)));
    }

    #[tokio::test]
    async fn overflow_is_reported_and_abort_drops_the_backlog() {
        let q = Outbound::new(10);
        q.push(Bytes::from(vec![0; 8])).unwrap();
        assert_eq!(q.push(Bytes::from(vec![0; 3])), Err(PushError::Overflow));
        assert!(q.is_congested());
        q.abort(Some(Bytes::from_static(b"slow")));
        assert_eq!(q.queued_bytes(), 0);
        assert!(matches!(q.next().await, Next::Finish(Some(_))));
    }

    #[tokio::test]
    async fn waiting_for_room_ends_when_the_writer_drains() {
        let q = std::sync::Arc::new(Outbound::new(10));
        q.push(Bytes::from(vec![0; 8])).unwrap();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_uncongested().await }
        });
        assert!(matches!(q.next().await, Next::Frames(_)));
        waiter.await.unwrap();
    }
}
