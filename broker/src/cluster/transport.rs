//! The peer link behind a trait, so tests can cut, delay and heal links in-process.
//!
//! [`LocalTransport`] delivers requests between nodes of one process (serialising
//! them as the wire would); [`Faults`] sits in front of any transport and drops or
//! delays traffic between chosen node pairs.

use super::rpc::{PeerRequest, PeerResponse};
use dashmap::DashMap;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The node cannot be reached (no link, link cut, node stopped).
    #[error("node at {0} unreachable: {1}")]
    Unreachable(String, String),
    /// The request or answer could not be encoded or decoded.
    #[error("peer codec: {0}")]
    Codec(String),
}

/// Serves requests from peers.
pub trait PeerHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(self: Arc<Self>, request: PeerRequest) -> BoxFuture<PeerResponse>;
}

/// Carries requests to other nodes.
pub trait PeerTransport: Send + Sync + 'static {
    /// Sends `request` from the node with peer address `from` to the node with peer
    /// address `to` and waits for its answer (the caller applies its own timeout).
    fn call(&self, from: &str, to: &str, request: PeerRequest) -> BoxFuture<Result<PeerResponse, PeerError>>;
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<T, PeerError> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| PeerError::Codec(e.to_string()))?;
    bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).map(|(v, _)| v).map_err(|e| PeerError::Codec(e.to_string()))
}

/// Nodes of one process calling each other directly. Requests and answers go
/// through the wire encoding, so what works here works over a socket.
#[derive(Default)]
pub struct LocalTransport {
    nodes: DashMap<String, Weak<dyn PeerHandler>>,
}

impl LocalTransport {
    /// An empty switchboard of nodes.
    pub fn new() -> Arc<Self> {
        Arc::new(LocalTransport::default())
    }

    /// Makes the node with peer address `addr` reachable.
    pub fn register(&self, addr: &str, handler: Weak<dyn PeerHandler>) {
        self.nodes.insert(addr.to_string(), handler);
    }

    /// Makes the node with peer address `addr` unreachable (it stopped).
    pub fn unregister(&self, addr: &str) {
        self.nodes.remove(addr);
    }
}

impl PeerTransport for LocalTransport {
    fn call(&self, _from: &str, to: &str, request: PeerRequest) -> BoxFuture<Result<PeerResponse, PeerError>> {
        let handler = self.nodes.get(to).and_then(|h| h.upgrade());
        let to = to.to_string();
        Box::pin(async move {
            let handler = handler.ok_or_else(|| PeerError::Unreachable(to, "not running".into()))?;
            let request = roundtrip(&request)?;
            let response = handler.handle(request).await;
            roundtrip(&response)
        })
    }
}

/// Link faults between node pairs (by peer address), in front of another
/// transport. Clones share the faults.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<dyn PeerTransport>,
    cut: Arc<Mutex<HashSet<(String, String)>>>,
    delay: Arc<Mutex<Option<Duration>>>,
}

impl Faults {
    /// No faults yet, in front of `inner`.
    pub fn new(inner: Arc<dyn PeerTransport>) -> Self {
        Faults { inner, cut: Arc::default(), delay: Arc::default() }
    }

    /// The same faults in front of another transport (each node's own, over TCP).
    pub fn sharing(&self, inner: Arc<dyn PeerTransport>) -> Self {
        Faults { inner, cut: self.cut.clone(), delay: self.delay.clone() }
    }

    /// Cuts every link between `node` and the `others`, both ways.
    pub fn isolate(&self, node: &str, others: &[&str]) {
        if let Ok(mut cut) = self.cut.lock() {
            for o in others {
                cut.insert((node.to_string(), o.to_string()));
                cut.insert((o.to_string(), node.to_string()));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        if let Ok(mut cut) = self.cut.lock() {
            cut.clear();
        }
    }

    /// Delays every request by `delay` (`None`: no delay).
    pub fn set_delay(&self, delay: Option<Duration>) {
        if let Ok(mut d) = self.delay.lock() {
            *d = delay;
        }
    }

    fn is_cut(&self, from: &str, to: &str) -> bool {
        self.cut.lock().map(|c| c.contains(&(from.to_string(), to.to_string()))).unwrap_or(false)
    }
}

impl PeerTransport for Faults {
    fn call(&self, from: &str, to: &str, request: PeerRequest) -> BoxFuture<Result<PeerResponse, PeerError>> {
        let this = self.clone();
        let (from, to) = (from.to_string(), to.to_string());
        Box::pin(async move {
            let delay = this.delay.lock().ok().and_then(|d| *d);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if this.is_cut(&from, &to) {
                return Err(PeerError::Unreachable(to, "link cut".into()));
            }
            let response = this.inner.call(&from, &to, request).await;
            // A cut made while the request was in flight loses the answer too.
            if this.is_cut(&to, &from) {
                return Err(PeerError::Unreachable(to, "link cut".into()));
            }
            response
        })
    }
}
