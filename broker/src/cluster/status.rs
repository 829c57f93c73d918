//! What `GET /v1/cluster` and `switchboard cluster status` show: the node table, the
//! shard table, and what this node knows of each shard's leader and replication.

use super::node::ClusterNode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use switchboard_raft_store::raft::{NodeId, NodeState};

/// The cluster as one node sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node: NodeId,
    /// The control plane's leader, as this node knows it.
    pub control_leader: Option<NodeId>,
    /// Shards, once the cluster exists.
    pub shard_count: Option<u32>,
    /// Wanted replicas per shard.
    pub replication: Option<u32>,
    /// The node table.
    pub nodes: Vec<NodeStatus>,
    /// The shard table.
    pub shards: Vec<ShardStatus>,
}

/// A row of the node table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: NodeId,
    /// Its peer link address.
    pub peer: String,
    /// Its client (TCP) address.
    pub client: String,
    /// Joining, Active, Draining or Down.
    pub state: NodeState,
    /// Votes in the control plane.
    pub voter: bool,
    /// Shards it leads, among those whose leader this node knows.
    pub leads: u32,
}

/// A row of the shard table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u32,
    /// Nodes meant to hold a replica (the first is the preferred leader).
    pub replicas: Vec<NodeId>,
    /// The row's version.
    pub version: u64,
    /// Its leader, if this node holds a replica and knows it.
    pub leader: Option<NodeId>,
    /// This node's replica, if any.
    pub here: Option<LocalReplica>,
}

/// This node's replica of a shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalReplica {
    /// Leader, Follower, Learner, Candidate.
    pub state: String,
    /// Last log index applied here.
    pub applied: u64,
    /// Voters of its membership.
    pub voters: BTreeSet<NodeId>,
    /// On the leader: entries each other replica is behind.
    pub lag: BTreeMap<NodeId, u64>,
}

impl ClusterNode {
    /// The cluster as this node sees it (reads local state only).
    pub fn status(&self) -> ClusterStatus {
        let tables = self.tables();
        let meta = tables.meta().ok().flatten();
        let control = self.control().metrics().borrow().clone();
        let voters: BTreeSet<NodeId> = control.membership_config.membership().voter_ids().collect();
        let replicas: BTreeMap<u32, _> = self.replicas().into_iter().map(|r| (r.shard, r)).collect();
        let shards: Vec<ShardStatus> = tables
            .shards()
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let here = replicas.get(&row.shard);
                ShardStatus {
                    shard: row.shard,
                    replicas: row.replicas,
                    version: row.version,
                    leader: here.and_then(|r| r.leader),
                    here: here.map(|r| LocalReplica { state: format!("{:?}", r.state), applied: r.applied, voters: r.voters.clone(), lag: r.lag.clone() }),
                }
            })
            .collect();
        let nodes = tables
            .nodes()
            .unwrap_or_default()
            .into_iter()
            .map(|n| NodeStatus {
                id: n.id,
                peer: n.addr.peer,
                client: n.addr.client,
                state: n.state,
                voter: voters.contains(&n.id),
                leads: shards.iter().filter(|s| s.leader == Some(n.id)).count() as u32,
            })
            .collect();
        ClusterStatus {
            node: self.id(),
            control_leader: control.current_leader,
            shard_count: meta.map(|m| m.shard_count),
            replication: meta.map(|m| m.replication),
            nodes,
            shards,
        }
    }
}
