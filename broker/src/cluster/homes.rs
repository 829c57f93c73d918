//! Replacing a tenant's home that stopped answering. Every node probes every other
//! node over the peer link every [`PROBE_EVERY`] (so a node elected control-plane
//! leader after the old leader died already knows for how long it has been silent).
//! On the control-plane leader, a node that has failed every probe for
//! [`DOWN_AFTER`] loses its tenants: each moves to a live replica of the tenant's
//! shard (which holds the tenant's records, see `cluster::records`), preferring
//! that shard's leader, with its placement epoch bumped. The new home then takes
//! the tenant over (`cluster::takeover`). The tenants of a draining node, or of one
//! no longer in the node table, move the same way. The probes also tell a node
//! when it is the one cut off (it cannot reach a quorum of the control plane): it
//! then lets its tenants go and sends clients to other nodes.

use super::node::ClusterNode;
use super::rpc::{PeerRequest, PeerResponse};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::TenantId;
use switchboard_raft_store::raft::{placement, ControlCommand, NodeId, NodeRecord, NodeState, TenantMove};

/// How often every node probes the other nodes.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a node must fail every probe before its tenants move.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);
/// How long a node must fail every probe before clients are no longer relayed to it
/// (longer than one slow probe).
const SILENT_AFTER: Duration = Duration::from_millis(500);
/// How long writing a tenant move may take (probing stops meanwhile).
const MOVE_TIMEOUT: Duration = Duration::from_secs(2);

impl ClusterNode {
    /// Runs until the node stops: probes the other nodes and, as control-plane
    /// leader, moves the tenants of nodes that stopped answering.
    pub(super) async fn watch_homes(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.probe_and_move().await {
                tracing::debug!(error = %e, "watching tenant homes");
            }
        }
    }

    async fn probe_and_move(self: &Arc<Self>) -> Result<(), String> {
        if self.shard_count().is_none() {
            return Ok(());
        }
        let nodes = self.tables().nodes().map_err(|e| e.to_string())?;
        let probes = nodes.iter().filter(|n| n.id != self.id()).map(|n| {
            let node = self.clone();
            let (id, addr) = (n.id, n.addr.peer.clone());
            tokio::spawn(async move {
                let call = node.transport.call(&node.addr().peer, &addr, PeerRequest::HostedShards);
                (id, matches!(tokio::time::timeout(PROBE_TIMEOUT, call).await, Ok(Ok(PeerResponse::Hosted(_)))))
            })
        });
        let probes: Vec<_> = probes.collect();
        for probe in probes {
            let Ok((id, answered)) = probe.await else { continue };
            if answered {
                self.silent.remove(&id);
            } else {
                self.silent.entry(id).or_insert_with(Instant::now);
            }
        }
        self.silent.retain(|id, _| nodes.iter().any(|n| n.id == *id));
        self.note_cut_off();
        // A leader cut off from the others would plan to move their tenants here,
        // and wait on a write that cannot commit.
        if !self.is_control_leader() || self.is_cut_off() {
            return Ok(());
        }
        let down: BTreeSet<NodeId> = self.silent.iter().filter(|e| e.value().elapsed() >= DOWN_AFTER).map(|e| *e.key()).collect();
        let moves = self.plan_moves(&nodes, &down)?;
        if moves.is_empty() {
            return Ok(());
        }
        let count = moves.len();
        tokio::time::timeout(MOVE_TIMEOUT, self.control_write(ControlCommand::MoveTenants(moves))).await.map_err(|_| "moving tenants: no quorum in time".to_string())??;
        tracing::warn!(?down, tenants = count, "moved the tenants of nodes that stopped answering, drain or are gone");
        Ok(())
    }

    /// Whether this node is cut off: a quorum of the control plane's voters, itself
    /// included, cannot be reached because enough of the others have failed every
    /// probe for [`DOWN_AFTER`]. The majority moves this node's tenants after as long
    /// a silence; a cut-off node lets them go in step (`cluster::takeover`) and sends
    /// new clients elsewhere (`session::forward`).
    fn note_cut_off(&self) {
        let voters: Vec<NodeId> = self.control().metrics().borrow().membership_config.membership().voter_ids().collect();
        let reachable = voters.iter().filter(|v| **v == self.id() || !self.silent.get(v).is_some_and(|s| s.elapsed() >= DOWN_AFTER)).count();
        let cut = voters.len() > 1 && reachable <= voters.len() / 2;
        let changed = self.cut_off.send_if_modified(|was| {
            if *was == cut {
                return false;
            }
            if cut {
                tracing::warn!(reachable, voters = voters.len(), "cut off from a quorum of the cluster: letting this node's tenants go");
            } else {
                tracing::warn!(reachable, voters = voters.len(), "in touch with a quorum of the cluster again");
            }
            *was = cut;
            true
        });
        if changed {
            // A node that cannot reach a quorum cannot win an election; standing anyway
            // (openraft 0.9 has no pre-vote) only raises terms, and where some of its
            // packets still get through (a link failing one way, or flapping), a higher
            // term deposes leaders the others elected. So it does not stand while cut
            // off (a replica opened meanwhile starts the same way, `open_shard`).
            self.control().runtime_config().elect(!cut);
            for shard in self.replicas().into_iter().map(|r| r.shard) {
                if let Some(replica) = self.replica(shard) {
                    replica.raft.runtime_config().elect(!cut);
                }
            }
        }
    }

    /// True while `node` has failed every probe for [`SILENT_AFTER`].
    pub fn is_silent(&self, node: NodeId) -> bool {
        self.silent.get(&node).is_some_and(|since| since.elapsed() >= SILENT_AFTER)
    }

    /// True while this node cannot reach a quorum of the control plane.
    pub fn is_cut_off(&self) -> bool {
        *self.cut_off.borrow()
    }

    /// Changes of [`ClusterNode::is_cut_off`].
    pub fn cut_off_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.cut_off.subscribe()
    }

    /// A new home for every tenant of a node that is `down`, draining or not in the
    /// node table: an active replica of the tenant's shard that answers, its leader
    /// if this node knows it.
    fn plan_moves(&self, nodes: &[NodeRecord], down: &BTreeSet<NodeId>) -> Result<Vec<TenantMove>, String> {
        let Some(shard_count) = self.shard_count() else { return Ok(Vec::new()) };
        let state = |id: NodeId| nodes.iter().find(|n| n.id == id).map(|n| n.state);
        let leaving = |id: NodeId| down.contains(&id) || !matches!(state(id), Some(NodeState::Active | NodeState::Joining));
        // (A removed node was draining first, and its tenants moved then.)
        if down.is_empty() && nodes.iter().all(|n| !leaving(n.id)) {
            return Ok(Vec::new());
        }
        let tenants = self.tables().tenants().map_err(|e| e.to_string())?;
        let tenants: Vec<_> = tenants.into_iter().filter(|p| leaving(p.home)).collect();
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let shards = self.tables().shards().map_err(|e| e.to_string())?;
        let mut moves = Vec::new();
        for p in tenants {
            let shard = placement::tenant_shard(TenantId(p.tenant), shard_count);
            let Some(record) = shards.iter().find(|s| s.shard == shard) else { continue };
            let live: Vec<NodeId> = record.replicas.iter().copied().filter(|n| !self.silent.contains_key(n) && state(*n) == Some(NodeState::Active)).collect();
            let leader = self.replica(shard).and_then(|r| r.raft.metrics().borrow().current_leader);
            let to = leader.filter(|l| live.contains(l)).or_else(|| live.first().copied());
            match to {
                Some(to) => moves.push(TenantMove { tenant: p.tenant, from: p.home, to }),
                None => tracing::warn!(tenant = p.tenant, shard, "no live replica of the tenant's shard to move it to"),
            }
        }
        Ok(moves)
    }
}
