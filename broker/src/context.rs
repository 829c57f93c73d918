//! What every part of a running node shares.

use crate::config::Config;
use crate::routing::{Directory, Registry, Routers};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard_protocol::FrameCodec;
use switchboard_raft_store::{ConversationLog, Store};

/// Shared state of a node, behind one `Arc`.
pub struct NodeContext {
    /// The validated configuration.
    pub config: Config,
    /// The frame codec with the configured maximum.
    pub codec: FrameCodec,
    /// Directory records and id allocation.
    pub store: Arc<Store>,
    /// The message log (the seam the cluster replaces).
    pub log: Arc<dyn ConversationLog>,
    /// In-memory directory.
    pub directory: Arc<Directory>,
    /// Live sessions.
    pub registry: Arc<Registry>,
    /// Tenant routers.
    pub routers: Routers,
    ready: AtomicBool,
    /// Client connections being served (until their writer has flushed).
    pub connections: std::sync::atomic::AtomicUsize,
    /// Shards of the cluster (fixed when it was created).
    pub shards: u32,
    /// The time the routing rules read (the system clock, or a manual one in tests).
    pub clock: Clock,
    /// The cluster this node is part of (`None` in tests of a node's parts).
    pub cluster: Option<Arc<crate::cluster::ClusterNode>>,
    /// Turns true when the node starts shutting down (forwarded connections close).
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl NodeContext {
    /// Assembles a context (not yet ready).
    pub fn new(
        config: Config,
        store: Arc<Store>,
        log: Arc<dyn ConversationLog>,
        shards: u32,
        directory: Arc<Directory>,
        registry: Arc<Registry>,
        routers: Routers,
    ) -> Self {
        let codec = FrameCodec::new(config.max_frame_len);
        NodeContext { config, codec, store, log, directory, registry, routers, ready: AtomicBool::new(false), connections: Default::default(), shards, clock: Clock::System,
            cluster: None, stopping: tokio::sync::watch::channel(false).0 }
    }

    /// A new conversation id, on the shard of the visitor's sessions, unique in the
    /// cluster (up to 2^32 conversations per node).
    pub fn new_conversation_id(&self, tenant: switchboard_protocol::TenantId, visitor: switchboard_protocol::VisitorId) -> switchboard_protocol::ConversationId {
        use switchboard_raft_store::raft::placement::{conversation_id, visitor_shard};
        // Each node creates the conversations of its own tenants: its id in bits 32-39
        // keeps them apart from every other node's.
        let local = ((self.config.node_id & 0xff) << 32) | (self.store.next_conversation_id().0 & 0xffff_ffff);
        conversation_id(visitor_shard(tenant, visitor, self.shards), local)
    }

    /// Whether the node serves clients (false before start-up completes and while shutting down).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Where the routing rules read the time. Every deadline a tenant router keeps
/// (grace periods, auto-transfer, overflow, sticky holds, business hours) is due
/// at a time on this clock, so a test with a manual clock moves time forward by
/// hand (paused time) instead of sleeping.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Milliseconds since the epoch, moved only by [`Clock::advance`].
    Manual(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    /// A manual clock standing at `start_ms`.
    pub fn manual(start_ms: u64) -> Clock {
        Clock::Manual(Arc::new(std::sync::atomic::AtomicU64::new(start_ms)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward (the system clock moves by itself).
    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(ms) = self {
            ms.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
        }
    }
}

/// Milliseconds since the Unix epoch: the system clock read once, at the first
/// call, plus the monotonic time since. A step of the system clock (an NTP jump, an
/// operator's `date -s`) therefore moves no deadline of a running node; the node
/// picks the step up when it restarts.
pub fn now_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = ANCHOR.get_or_init(|| {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        (wall, std::time::Instant::now())
    });
    wall.saturating_add(at.elapsed().as_millis() as u64)
}

/// Shorthand.
pub type Ctx = Arc<NodeContext>;
