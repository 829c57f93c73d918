//! One node of the cluster: its control-plane replica, its shard replicas, and the
//! loop that keeps them in line with the shard table.

use super::network::GroupNetwork;
use super::rpc::{PeerRequest, PeerResponse, WriteError};
use super::transport::PeerTransport;
use dashmap::{DashMap, DashSet};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_raft_store::raft::{
    group_shard, placement, shard_group, ClusterMeta, ControlCommand, ControlConfig, ControlLogic, ControlReader, ControlResponse, NodeAddr, NodeId,
    NodeRecord, NodeState, RaftDb, ShardCommand, ShardConfig, ShardListener, ShardLogic, ShardReader, ShardRecord, ShardResponse, TenantPlacement, CONTROL_GROUP,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Raft timing shared by every group of a node.
#[derive(Clone, Copy, Debug)]
pub struct RaftTiming {
    /// Leader heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms.
    pub election_min_ms: u64,
    /// Election timeout range, ms.
    pub election_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        // 64 groups per node: heartbeats every 250 ms keep an idle cluster cheap. A
        // follower that knew a leader (openraft 0.9) starts an election once it has heard
        // nothing for the leader's lease (`election_max_ms`) plus its own election
        // timeout (drawn once from the range), checked on a tick every 1.5 heartbeats:
        // a dead leader is replaced 1.6-2.4 s after its last heartbeat, and a leader is
        // only deposed after 6 or more heartbeats in a row went missing.
        RaftTiming { heartbeat_ms: 250, election_min_ms: 600, election_max_ms: 1000 }
    }
}

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (unique, never reused).
    pub id: NodeId,
    /// Where it listens.
    pub addr: NodeAddr,
    /// Peer addresses of nodes to join through (ignored once this node has state).
    pub seeds: Vec<String>,
    /// Create a new cluster if this node has no state (exactly one node should).
    pub bootstrap: bool,
    /// Control-plane voters: the first this many nodes; later ones are learners.
    pub voters: usize,
    /// Shards of a new cluster.
    pub shard_count: u32,
    /// Replicas per shard (capped by the active nodes).
    pub replication: u32,
    /// Raft timing.
    pub timing: RaftTiming,
    /// How long a write may wait for a leader before it fails.
    pub write_timeout: Duration,
}

impl ClusterConfig {
    /// A node with the defaults: 3 voters, 64 shards, 3 replicas.
    pub fn new(id: NodeId, addr: NodeAddr) -> Self {
        ClusterConfig {
            id,
            addr,
            seeds: Vec::new(),
            bootstrap: false,
            voters: 3,
            shard_count: 64,
            replication: 3,
            timing: RaftTiming::default(),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// One shard replica on this node.
#[derive(Clone)]
pub struct ShardReplica {
    /// Its raft group.
    pub raft: Raft<ShardConfig>,
    /// Reads its applied state.
    pub reader: ShardReader,
    /// Writes through this replica hold it shared until committed; a leadership
    /// handover holds it exclusively (`cluster::handover`).
    pub(super) writes: Arc<tokio::sync::RwLock<()>>,
}

/// What a node knows about one of its shard replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The shard.
    pub shard: u32,
    /// Leader, follower, learner...
    pub state: ServerState,
    /// The leader this replica knows of.
    pub leader: Option<NodeId>,
    /// The voters of its applied membership.
    pub voters: BTreeSet<NodeId>,
    /// Last log index applied here.
    pub applied: u64,
    /// On the leader: entries each other voter and learner is behind.
    pub lag: BTreeMap<NodeId, u64>,
}

/// A node of the cluster.
pub struct ClusterNode {
    pub(super) config: ClusterConfig,
    db: Arc<RaftDb>,
    pub(super) transport: Arc<dyn PeerTransport>,
    raft_config: Arc<Config>,
    pub(super) control: Raft<ControlConfig>,
    pub(super) control_changes: watch::Receiver<u64>,
    tables: ControlReader,
    shards: DashMap<u32, ShardReplica>,
    opening: tokio::sync::Mutex<()>,
    pub(super) reconfiguring: DashSet<u32>,
    pub(super) handovers: super::handover::Handovers,
    /// Nodes that have failed every probe (`cluster::homes`), since when.
    pub(super) silent: DashMap<NodeId, Instant>,
    /// True while this node cannot reach a quorum of the control plane (`cluster::homes`).
    pub(super) cut_off: watch::Sender<bool>,
    /// When each shard's membership was last asked of its new members.
    pub(super) membership_checks: DashMap<u32, Instant>,
    /// Handing its leaderships off before stopping: claims none.
    pub(super) leaving: std::sync::atomic::AtomicBool,
    listener: Mutex<Option<Arc<dyn ShardListener>>>,
    /// Tenant placements read from the control plane, with the tables' change count
    /// they were read at (valid until the tables change).
    pub(super) tenant_homes: DashMap<u64, (u64, TenantPlacement)>,
    pub(super) stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The raft configuration is invalid.
    #[error("raft config: {0}")]
    Config(String),
    /// A raft group could not start.
    #[error("raft: {0}")]
    Raft(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] switchboard_raft_store::StoreError),
}

impl ClusterNode {
    /// Starts the node's groups from `db` and its background loop. The node joins or
    /// creates the cluster in the background; callers wait on [`Self::status`]-style
    /// state. Must be called inside a tokio runtime.
    pub async fn start(config: ClusterConfig, db: Arc<RaftDb>, transport: Arc<dyn PeerTransport>, listener: Option<Arc<dyn ShardListener>>) -> Result<Arc<ClusterNode>, ClusterError> {
        let raft_config = Config {
            cluster_name: "switchboard".into(),
            heartbeat_interval: config.timing.heartbeat_ms,
            election_timeout_min: config.timing.election_min_ms,
            election_timeout_max: config.timing.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(20_000),
            max_in_snapshot_log_to_keep: 1_000,
            // Entries are batches of up to 1 MiB (see `log::MAX_BATCH_BYTES`): at most
            // this many per AppendEntries keeps each well under the peer link's 16 MiB
            // frame and quick to send within one heartbeat interval.
            max_payload_entries: 4,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(e.to_string()))?;
        let raft_config = Arc::new(raft_config);
        let logic = ControlLogic::default();
        let control_changes = logic.subscribe();
        let sm = db.state_machine::<ControlConfig, _>(CONTROL_GROUP, logic)?;
        let control = Raft::new(
            config.id,
            raft_config.clone(),
            GroupNetwork::<ControlConfig>::new(config.addr.peer.clone(), 0, transport.clone()),
            db.log_store::<ControlConfig>(CONTROL_GROUP),
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let node = Arc::new(ClusterNode {
            tables: ControlReader::new(db.clone()),
            config,
            db,
            transport,
            raft_config,
            control,
            control_changes,
            shards: DashMap::new(),
            opening: tokio::sync::Mutex::new(()),
            reconfiguring: DashSet::new(),
            handovers: Default::default(),
            silent: DashMap::new(),
            cut_off: watch::channel(false).0,
            leaving: Default::default(),
            membership_checks: DashMap::new(),
            listener: Mutex::new(listener),
            tenant_homes: DashMap::new(),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        });
        for group in node.db.groups_on_disk()? {
            if let Some(shard) = group_shard(group) {
                node.open_shard(shard).await?;
            }
        }
        let looping = node.clone();
        let handle = tokio::spawn(async move { looping.run().await });
        let watching = tokio::spawn(node.clone().watch_homes());
        if let Ok(mut tasks) = node.tasks.lock() {
            tasks.extend([handle, watching]);
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// This node's addresses.
    pub fn addr(&self) -> &NodeAddr {
        &self.config.addr
    }

    /// The control plane's raft group on this node.
    pub fn control(&self) -> &Raft<ControlConfig> {
        &self.control
    }

    /// Changes whenever the control plane's tables do.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.control_changes.clone()
    }

    /// The control plane's tables as applied on this node.
    pub fn tables(&self) -> &ControlReader {
        &self.tables
    }

    /// The local replica of `shard`, if this node hosts one.
    pub fn replica(&self, shard: u32) -> Option<ShardReplica> {
        self.shards.get(&shard).map(|s| s.clone())
    }

    /// The status of every shard replica on this node.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        let mut out: Vec<ReplicaStatus> = self
            .shards
            .iter()
            .map(|entry| {
                let m = entry.raft.metrics().borrow().clone();
                ReplicaStatus {
                    shard: *entry.key(),
                    state: m.state,
                    leader: m.current_leader,
                    voters: m.membership_config.membership().voter_ids().collect(),
                    applied: m.last_applied.map(|l| l.index).unwrap_or(0),
                    lag: lag(m.last_log_index, m.replication.as_ref()),
                }
            })
            .collect();
        out.sort_by_key(|r| r.shard);
        out
    }

    /// The shard count, once the cluster exists.
    pub fn shard_count(&self) -> Option<u32> {
        self.tables.meta().ok().flatten().map(|m| m.shard_count)
    }

    pub(super) async fn open_shard(&self, shard: u32) -> Result<ShardReplica, ClusterError> {
        let _guard = self.opening.lock().await;
        if let Some(existing) = self.replica(shard) {
            return Ok(existing);
        }
        if self.stopped() {
            // A peer's request arriving during shutdown must not start a group that
            // nothing would stop.
            return Err(ClusterError::Raft("the node is stopping".into()));
        }
        let group = shard_group(shard);
        let logic = ShardLogic::new(shard);
        if let Some(listener) = self.listener.lock().ok().and_then(|l| l.clone()) {
            logic.set_listener(listener);
        }
        let sm = self.db.state_machine::<ShardConfig, _>(group, logic)?;
        let raft = Raft::new(
            self.config.id,
            self.raft_config.clone(),
            GroupNetwork::<ShardConfig>::new(self.config.addr.peer.clone(), shard, self.transport.clone()),
            self.db.log_store::<ShardConfig>(group),
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        raft.runtime_config().elect(!self.is_cut_off());
        let replica = ShardReplica { raft, reader: ShardReader::new(self.db.clone(), group), writes: Default::default() };
        self.shards.insert(shard, replica.clone());
        Ok(replica)
    }

    /// Stops every group and the background loop. The database is released once the
    /// returned future completes and the caller drops its `Arc`s.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        // Waits out a group being opened; later opens see `stopped`.
        let _opening = self.opening.lock().await;
        let shards: Vec<u32> = self.shards.iter().map(|e| *e.key()).collect();
        for shard in shards {
            if let Some((_, replica)) = self.shards.remove(&shard) {
                let _ = replica.raft.shutdown().await;
            }
        }
        let _ = self.control.shutdown().await;
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(self: Arc<Self>) {
        let mut changes = self.control_changes.clone();
        let mut stop = self.stop.subscribe();
        let mut last_join_attempt: Option<Instant> = None;
        while !self.stopped() {
            if let Err(e) = self.step(&mut last_join_attempt).await {
                tracing::debug!(node = self.config.id, error = %e, "cluster step");
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One pass of keeping this node in line with the tables.
    async fn step(self: &Arc<Self>, last_join_attempt: &mut Option<Instant>) -> Result<(), String> {
        let initialized = self.control.is_initialized().await.map_err(|e| e.to_string())?;
        if !initialized {
            if self.config.bootstrap {
                let members = BTreeMap::from([(self.config.id, self.config.addr.clone())]);
                if let Err(e) = self.control.initialize(members).await {
                    tracing::debug!(error = %e, "initialize control plane");
                }
            } else if last_join_attempt.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                *last_join_attempt = Some(Instant::now());
                self.join().await?;
            }
            return Ok(());
        }
        if self.is_control_leader() {
            self.lead_control().await?;
        }
        self.advertise_address().await;
        self.follow_tables().await
    }

    /// After a restart on other ports: puts this node's addresses in the node table,
    /// so peers and forwarded clients find it.
    async fn advertise_address(&self) {
        let Ok(nodes) = self.tables.nodes() else { return };
        if nodes.iter().all(|n| n.id != self.config.id || n.addr == self.config.addr) {
            return;
        }
        let command = ControlCommand::SetNodeAddr { node: self.config.id, addr: self.config.addr.clone() };
        match super::admin::on_control_leader(self, PeerRequest::ControlWrite(command)).await {
            Ok(_) => tracing::info!(addr = %self.config.addr, "advertised this node's new addresses"),
            Err(e) => tracing::debug!(error = %e, "advertising this node's addresses"),
        }
    }

    async fn join(&self) -> Result<(), String> {
        let me = NodeRecord { id: self.config.id, addr: self.config.addr.clone(), state: NodeState::Active };
        for seed in &self.config.seeds {
            let call = self.transport.call(&self.config.addr.peer, seed, PeerRequest::Join(me.clone()));
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(PeerResponse::Control(Ok(_)))) => return Ok(()),
                Ok(Ok(other)) => tracing::debug!(seed, answer = ?other, "join"),
                Ok(Err(e)) => tracing::debug!(seed, error = %e, "join"),
                Err(_) => tracing::debug!(seed, "join timed out"),
            }
        }
        Err("no seed accepted the join yet".into())
    }

    pub(super) fn is_control_leader(&self) -> bool {
        let m = self.control.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.config.id)
    }

    /// As control-plane leader: create the cluster, keep every node in the control
    /// group, and plan replica sets.
    async fn lead_control(&self) -> Result<(), String> {
        let meta = self.tables.meta().map_err(|e| e.to_string())?;
        let Some(meta) = meta else {
            let command = ControlCommand::CreateCluster {
                meta: ClusterMeta { shard_count: self.config.shard_count, replication: self.config.replication },
                node: NodeRecord { id: self.config.id, addr: self.config.addr.clone(), state: NodeState::Active },
            };
            self.control_write(command).await?;
            return Ok(());
        };
        let nodes = self.tables.nodes().map_err(|e| e.to_string())?;
        let shards = self.tables.shards().map_err(|e| e.to_string())?;
        for (shard, replicas) in placement::plan_replicas(&shards, &nodes, meta.replication) {
            let expected_version = shards.iter().find(|s| s.shard == shard).map(|s| s.version).unwrap_or(0);
            self.control_write(ControlCommand::SetReplicas { shard, replicas, expected_version }).await?;
        }
        Ok(())
    }

    pub(super) async fn control_write(&self, command: ControlCommand) -> Result<ControlResponse, String> {
        match self.control.client_write(command).await {
            Ok(r) => match r.data {
                ControlResponse::Rejected(why) => Err(why),
                other => Ok(other),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    /// Opens replicas this node should host, changes memberships of shards it leads,
    /// and asks for leadership where it is the preferred leader.
    async fn follow_tables(self: &Arc<Self>) -> Result<(), String> {
        let shards = self.tables.shards().map_err(|e| e.to_string())?;
        if shards.is_empty() {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, NodeAddr> = self.tables.nodes().map_err(|e| e.to_string())?.into_iter().map(|n| (n.id, n.addr)).collect();
        for record in &shards {
            let mine = record.replicas.contains(&self.config.id);
            if mine && !self.shards.contains_key(&record.shard) {
                self.open_shard(record.shard).await.map_err(|e| e.to_string())?;
            }
            let Some(replica) = self.replica(record.shard) else { continue };
            // The node that created the cluster seeds every shard group with itself.
            if record.version == 1 && record.replicas == [self.config.id] && !replica.raft.is_initialized().await.map_err(|e| e.to_string())? {
                let members = BTreeMap::from([(self.config.id, self.config.addr.clone())]);
                if let Err(e) = replica.raft.initialize(members).await {
                    tracing::debug!(shard = record.shard, error = %e, "initialize shard");
                }
                continue;
            }
            let m = replica.raft.metrics().borrow().clone();
            let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
            let target: BTreeSet<NodeId> = record.replicas.iter().copied().collect();
            if m.state == ServerState::Leader && voters != target && !self.reconfiguring.contains(&record.shard) && !self.handing_over(record.shard) {
                self.spawn_reconfigure(record.clone(), replica.clone(), nodes.clone());
            } else if mine && voters == target {
                self.rebalance(record, &m);
            } else if !mine
                && !self.reconfiguring.contains(&record.shard)
                && m.last_applied.is_some()
                && self.removed_elsewhere(record, m.current_leader, &nodes).await
            {
                // Removed from the group and not wanted: stop it and free its data, but
                // only once the shard's leader says its membership, applied and with no
                // change pending, leaves this node out. This node's own view is not
                // enough: a replica cut out of the group often never hears of it, and a
                // new learner has not yet seen the entry adding it; deleting data the
                // leader still counts on makes its log go backwards (openraft panics).
                if let Some((_, replica)) = self.shards.remove(&record.shard) {
                    let _ = replica.raft.shutdown().await;
                    tracing::info!(shard = record.shard, "replica removed from this node");
                    if let Err(e) = self.db.remove_group(shard_group(record.shard)) {
                        tracing::warn!(shard = record.shard, error = %e, "cannot delete a removed replica's data");
                    }
                }
            }
        }
        Ok(())
    }

    fn spawn_reconfigure(self: &Arc<Self>, record: ShardRecord, replica: ShardReplica, nodes: BTreeMap<NodeId, NodeAddr>) {
        self.reconfiguring.insert(record.shard);
        let this = self.clone();
        self.spawn_task(async move {
            let shard = record.shard;
            if let Err(e) = reconfigure(&replica.raft, &record, &nodes).await {
                tracing::info!(shard, error = %e, "membership change did not complete; will retry");
            }
            this.reconfiguring.remove(&shard);
        });
    }

    /// Runs `task` until it ends or the node shuts down.
    pub(super) fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(handle);
        }
    }

    /// Appends or records through the leader of `shard`, wherever it is. Retries
    /// across leader changes until the write timeout (appends are idempotent, so a
    /// retry after an unknown outcome never duplicates).
    pub async fn write(&self, shard: u32, command: ShardCommand) -> Result<ShardResponse, WriteError> {
        let deadline = Instant::now() + self.config.write_timeout;
        let mut last = WriteError::Unavailable("no attempt".into());
        while Instant::now() < deadline {
            let leader = match self.write_local(shard, command.clone(), deadline).await {
                Ok(r) => return Ok(r),
                Err(WriteError::NotLeader(Some(leader))) if leader != self.config.id => Some(leader),
                Err(WriteError::NotLeader(_)) | Err(WriteError::NoGroup(_)) => self.preferred_replica(shard),
                Err(e @ WriteError::Fatal(_)) => return Err(e),
                Err(e) => {
                    last = e;
                    None
                }
            };
            if let Some(addr) = leader.and_then(|l| self.peer_addr(l)) {
                let call = self.transport.call(&self.config.addr.peer, &addr, PeerRequest::ShardWrite(shard, command.clone()));
                match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), call).await {
                    Ok(Ok(PeerResponse::Shard(Ok(r)))) => return Ok(r),
                    Ok(Ok(PeerResponse::Shard(Err(e)))) => last = e,
                    Ok(Ok(other)) => last = WriteError::Unavailable(format!("unexpected answer {other:?}")),
                    Ok(Err(e)) => last = WriteError::Unavailable(e.to_string()),
                    Err(_) => last = WriteError::Unavailable("timed out".into()),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }

    /// Writes through this node's replica of `shard` only if it leads it; waits until
    /// `deadline` at most for the commit.
    pub async fn write_local(&self, shard: u32, command: ShardCommand, deadline: Instant) -> Result<ShardResponse, WriteError> {
        let replica = self.replica(shard).ok_or(WriteError::NoGroup(shard_group(shard)))?;
        // Held back while a handover runs; after it, this node no longer leads.
        let _writing = tokio::time::timeout_at(deadline.into(), replica.writes.read()).await.map_err(|_| WriteError::Unavailable("the shard's leadership is being handed over".into()))?;
        let leader = replica.raft.metrics().borrow().current_leader;
        if leader != Some(self.config.id) {
            return Err(WriteError::NotLeader(leader));
        }
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), replica.raft.client_write(command)).await {
            Ok(Ok(r)) => Ok(r.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Err(WriteError::NotLeader(f.leader_id)),
            Ok(Err(RaftError::APIError(e))) => Err(WriteError::Unavailable(e.to_string())),
            Ok(Err(RaftError::Fatal(e))) => Err(WriteError::Fatal(e.to_string())),
            Err(_) => Err(WriteError::Unavailable("no quorum acknowledged the write in time".into())),
        }
    }

    fn preferred_replica(&self, shard: u32) -> Option<NodeId> {
        let shards = self.tables.shards().ok()?;
        shards.into_iter().find(|s| s.shard == shard)?.replicas.into_iter().find(|&n| n != self.config.id)
    }

    pub(super) fn peer_addr(&self, node: NodeId) -> Option<String> {
        self.tables.nodes().ok()?.into_iter().find(|n| n.id == node).map(|n| n.addr.peer)
    }

}

async fn reconfigure(raft: &Raft<ShardConfig>, record: &ShardRecord, nodes: &BTreeMap<NodeId, NodeAddr>) -> Result<(), String> {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    for node in &record.replicas {
        if voters.contains(node) || learners.contains(node) {
            continue;
        }
        let addr = nodes.get(node).ok_or_else(|| format!("node {node} is not in the node table"))?;
        // Blocking: returns once the learner has caught up with the log.
        raft.add_learner(*node, addr.clone(), true).await.map_err(|e| e.to_string())?;
    }
    let target: BTreeSet<NodeId> = record.replicas.iter().copied().collect();
    raft.change_membership(target, false).await.map_err(|e| e.to_string())?;
    tracing::info!(shard = record.shard, replicas = ?record.replicas, version = record.version, "shard membership changed");
    Ok(())
}

/// How far each replica is behind `last` (from a leader's replication metrics).
pub(super) fn lag(last: Option<u64>, replication: Option<&BTreeMap<NodeId, Option<openraft::LogId<NodeId>>>>) -> BTreeMap<NodeId, u64> {
    let last = last.unwrap_or(0);
    replication.map(|r| r.iter().map(|(n, matched)| (*n, last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)))).collect()).unwrap_or_default()
}

/// Whether the membership `m` holds is applied (so committed).
pub(super) fn membership_applied(m: &openraft::RaftMetrics<NodeId, NodeAddr>) -> bool {
    m.membership_config.log_id().map(|l| l.index) <= m.last_applied.map(|l| l.index)
}
