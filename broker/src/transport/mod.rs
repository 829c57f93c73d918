//! Transports: accept connections and hand each one's byte streams to
//! [`crate::session::serve`] on a session arbiter. Bytes only; no protocol here.

pub mod quic;
pub mod tcp;

use actix::ArbiterHandle;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The session arbiters (one thread each), used round robin.
pub struct Workers {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
}

impl Workers {
    /// Wraps started arbiters.
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        assert!(!arbiters.is_empty(), "at least one session arbiter");
        Workers { arbiters, next: AtomicUsize::new(0) }
    }

    /// The next arbiter.
    pub fn next(&self) -> &ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        &self.arbiters[i]
    }

    /// Every arbiter.
    pub fn all(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }
}
