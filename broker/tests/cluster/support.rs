//! An in-process cluster: every node a real `ClusterNode` on its own RocksDB in a
//! temp dir, linked either by the in-process transport or by real TCP connections on
//! loopback, with fault injection in front of either.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_broker::cluster::node::ReplicaStatus;
use switchboard_broker::cluster::{ClusterConfig, ClusterNode, Faults, LocalTransport, PeerHandler, PeerListener, RaftTiming, TcpTransport};
use switchboard_protocol::{ChatMessage, ConversationId, Participant, VisitorId};
use switchboard_raft_store::raft::{AppendCommand, NodeAddr, NodeId, RaftDb, ShardCommand, ShardResponse};
use tempfile::TempDir;

/// How nodes reach each other.
pub enum Links {
    /// In-process calls (still encoded as on the wire).
    Local(Arc<LocalTransport>),
    /// TCP on loopback: each node listens on its own port and dials the others.
    Tcp {
        addrs: BTreeMap<NodeId, String>,
        /// Ports bound at creation, held until the node first starts.
        reserved: BTreeMap<NodeId, std::net::TcpListener>,
        listeners: BTreeMap<NodeId, PeerListener>,
        dialers: BTreeMap<NodeId, Arc<TcpTransport>>,
    },
}

pub struct TestCluster {
    pub links: Links,
    pub faults: Faults,
    pub nodes: BTreeMap<NodeId, Arc<ClusterNode>>,
    dbs: BTreeMap<NodeId, Arc<RaftDb>>,
    dirs: BTreeMap<NodeId, TempDir>,
    pub shards: u32,
    pub replication: u32,
}

/// Node ids a test may use.
const MAX_NODES: NodeId = 5;

impl TestCluster {
    /// Nodes linked in-process.
    pub fn new(shards: u32, replication: u32) -> Self {
        let transport = LocalTransport::new();
        let faults = Faults::new(transport.clone());
        TestCluster { links: Links::Local(transport), faults, nodes: BTreeMap::new(), dbs: BTreeMap::new(), dirs: BTreeMap::new(), shards, replication }
    }

    /// Nodes linked by TCP on loopback (a port per node, bound now, held until the
    /// node starts and reused when it restarts).
    pub fn over_tcp(shards: u32, replication: u32) -> Self {
        let reserved: BTreeMap<NodeId, std::net::TcpListener> =
            (1..=MAX_NODES).map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").expect("bind a peer port"))).collect();
        let addrs = reserved.iter().map(|(id, l)| (*id, l.local_addr().expect("local addr").to_string())).collect();
        let links = Links::Tcp { addrs, reserved, listeners: BTreeMap::new(), dialers: BTreeMap::new() };
        TestCluster { links, faults: Faults::new(LocalTransport::new()), nodes: BTreeMap::new(), dbs: BTreeMap::new(), dirs: BTreeMap::new(), shards, replication }
    }

    /// Node `id`'s peer address.
    pub fn peer(&self, id: NodeId) -> String {
        match &self.links {
            Links::Local(_) => format!("node-{id}"),
            Links::Tcp { addrs, .. } => addrs[&id].clone(),
        }
    }

    /// Starts node `id` (node 1 bootstraps; the others join through every other
    /// known node). Reuses the node's data dir if it ran before.
    pub async fn start(&mut self, id: NodeId) {
        let dir = self.dirs.entry(id).or_insert_with(|| tempfile::tempdir().expect("temp dir"));
        let db = RaftDb::open(dir.path()).expect("open raft db");
        let mut config = ClusterConfig::new(id, NodeAddr { peer: self.peer(id), client: format!("client-{id}") });
        config.bootstrap = id == 1;
        config.seeds = (1..=MAX_NODES).filter(|&n| n != id).map(|n| self.peer(n)).collect();
        config.shard_count = self.shards;
        config.replication = self.replication;
        config.timing = RaftTiming { heartbeat_ms: 50, election_min_ms: 300, election_max_ms: 600 };
        let transport = match &mut self.links {
            Links::Local(_) => Arc::new(self.faults.clone()),
            Links::Tcp { dialers, .. } => {
                let dialer = TcpTransport::new();
                dialers.insert(id, dialer.clone());
                Arc::new(self.faults.sharing(dialer))
            }
        };
        let node = ClusterNode::start(config, db.clone(), transport, None).await.expect("start node");
        let handler: Arc<dyn PeerHandler> = node.clone();
        match &mut self.links {
            Links::Local(t) => t.register(&format!("node-{id}"), Arc::downgrade(&handler)),
            Links::Tcp { addrs, reserved, listeners, .. } => {
                let listener = match reserved.remove(&id) {
                    Some(held) => {
                        held.set_nonblocking(true).expect("nonblocking listener");
                        tokio::net::TcpListener::from_std(held).expect("adopt the reserved port")
                    }
                    None => tokio::net::TcpListener::bind(&addrs[&id]).await.expect("bind the node's peer port again"),
                };
                listeners.insert(id, PeerListener::serve(listener, Arc::downgrade(&handler)).expect("serve peers"));
            }
        }
        self.nodes.insert(id, node);
        self.dbs.insert(id, db);
    }

    /// Stops node `id` and waits until its database is closed (its data dir stays).
    pub async fn stop(&mut self, id: NodeId) {
        match &mut self.links {
            Links::Local(t) => t.unregister(&format!("node-{id}")),
            Links::Tcp { listeners, dialers, .. } => {
                listeners.remove(&id);
                if let Some(d) = dialers.remove(&id) {
                    d.close_all();
                }
            }
        }
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
            drop(node);
        }
        if let Some(db) = self.dbs.remove(&id) {
            let started = Instant::now();
            while Arc::strong_count(&db) > 1 {
                assert!(started.elapsed() < Duration::from_secs(20), "node {id}'s database is still referenced after shutdown");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub fn node(&self, id: NodeId) -> &Arc<ClusterNode> {
        self.nodes.get(&id).unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// The running node that leads `shard`, as its own replica says.
    pub fn leader_of(&self, shard: u32) -> Option<NodeId> {
        self.nodes.iter().find(|(id, node)| node.replicas().iter().any(|r| r.shard == shard && r.leader == Some(**id) && r.state == openraft::ServerState::Leader)).map(|(id, _)| *id)
    }

    pub fn status(&self) -> String {
        let mut out = String::new();
        for (id, node) in &self.nodes {
            let replicas: Vec<ReplicaStatus> = node.replicas();
            out += &format!("node {id}: shards table {:?}\n", node.tables().shards().map(|s| s.iter().map(|r| (r.shard, r.replicas.clone())).collect::<Vec<_>>()));
            for r in replicas {
                out += &format!("  shard {} {:?} leader {:?} voters {:?} applied {}\n", r.shard, r.state, r.leader, r.voters, r.applied);
            }
        }
        out
    }

    /// Every shard has `replicas` voters in its table and in its leader's membership.
    pub fn fully_replicated(&self, replicas: usize) -> bool {
        (0..self.shards).all(|shard| {
            let Some(leader) = self.leader_of(shard) else { return false };
            let node = self.node(leader);
            let table = node.tables().shards().ok().and_then(|t| t.into_iter().find(|s| s.shard == shard));
            let Some(table) = table else { return false };
            let status = node.replicas().into_iter().find(|r| r.shard == shard);
            table.replicas.len() == replicas && status.is_some_and(|s| s.voters.len() == replicas && s.voters == table.replicas.iter().copied().collect())
        })
    }

    pub async fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !f(self) {
            assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}\n{}", self.status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message of `conversation` on `node`'s replica of `shard`.
    pub fn messages(&self, node: NodeId, shard: u32, conversation: ConversationId) -> Vec<ChatMessage> {
        match self.node(node).replica(shard) {
            Some(r) => r.reader.read(conversation, 0, usize::MAX, usize::MAX).expect("read replica"),
            None => Vec::new(),
        }
    }
}

pub fn append(conversation: ConversationId, client_msg_id: u64, body: &str) -> ShardCommand {
    ShardCommand::Append(AppendCommand {
        conversation,
        sender: Participant::Visitor(VisitorId(conversation.0)),
        client_msg_id,
        body: body.to_string(),
        sent_at_ms: 1_700_000_000_000 + client_msg_id,
        webhook: None,
    })
}

pub fn seq_of(response: ShardResponse) -> u64 {
    match response {
        ShardResponse::Appended { seq } => seq,
        other => panic!("expected a new append, got {other:?}"),
    }
}
