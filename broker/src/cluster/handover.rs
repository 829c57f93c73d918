//! Handing a shard's leadership to another voter without a leaderless gap.
//!
//! openraft 0.9 has no leadership transfer: a voter takes over by starting an
//! election. That only works if its log is at least as long as the leader's; if
//! not, it loses, yet its higher term still makes the leader step down, and the
//! shard has no leader until an election timeout (or more) later. Under write
//! traffic a follower is often an entry or two behind, so asking it to elect at a
//! random moment breaks writes for seconds.
//!
//! So the leader hands over: it holds new writes back (they wait on the replica's
//! write gate, then go to the new leader), waits until the successor has every
//! entry, asks it to elect (`PeerRequest::TakeLeadership`), and opens the gate
//! again once it no longer leads, or after [`HANDOVER`] if the successor did not
//! take over. Writes pause for the time of one vote.
//!
//! The leader of a shard hands it to the shard's preferred replica (the first in
//! the shard table) once that one is back and caught up, so leaders spread again
//! after a restart; a node stopping hands over everything it leads.

use super::node::ClusterNode;
use super::rpc::PeerRequest;
use dashmap::{DashMap, DashSet};
use openraft::ServerState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_raft_store::raft::{NodeId, NodeState, ShardRecord};

/// How long writes may be held back for one handover, at most.
pub const HANDOVER: Duration = Duration::from_secs(1);
/// How far behind (entries) the preferred replica may be for the leader to start
/// a handover to it (it must catch up fully, within [`HANDOVER`], before it is asked
/// to elect).
const CLOSE_ENOUGH: u64 = 64;
/// How long a leader leads before it hands over to the preferred replica (so
/// leadership does not move back and forth while a cluster settles).
const SETTLED: Duration = Duration::from_secs(2);
/// At most one handover attempt per shard this often.
const RETRY: Duration = Duration::from_secs(10);
/// The successor wins with its own vote and the old leader's (whose lease has run
/// out); the other voters still hear the leader and refuse. Two votes are a
/// majority of at most three voters.
pub const MAX_VOTERS: usize = 3;

/// Per-shard handover bookkeeping of a node.
#[derive(Default)]
pub(super) struct Handovers {
    /// For each shard this node leads: the term, and when it was first seen leading in it.
    led_since: DashMap<u32, (u64, Instant)>,
    /// When a handover of each shard was last started.
    last: DashMap<u32, Instant>,
    /// Shards with a handover under way.
    running: DashSet<u32>,
}

impl ClusterNode {
    /// Called on every pass over the shard table: if this node leads `record`'s
    /// shard, is not its preferred replica, has led it for [`SETTLED`], and the
    /// preferred replica is an active voter close to caught up, hands the shard
    /// over to it (in the background).
    pub(super) fn rebalance(self: &Arc<Self>, record: &ShardRecord, m: &openraft::RaftMetrics<NodeId, switchboard_raft_store::raft::NodeAddr>) {
        let me = self.id();
        if m.state != ServerState::Leader {
            self.handovers.led_since.remove(&record.shard);
            return;
        }
        let since = self.leading_since(record.shard, m.current_term);
        let Some(&preferred) = record.replicas.first() else { return };
        if preferred == me || since.elapsed() < SETTLED || self.leaving.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if self.handovers.last.get(&record.shard).is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        if !voters.contains(&preferred) || voters.len() > MAX_VOTERS || self.reconfiguring.contains(&record.shard) {
            return;
        }
        // Not to a node that does not answer: the handover would hold writes back
        // for nothing.
        let behind = super::node::lag(m.last_log_index, m.replication.as_ref()).get(&preferred).copied();
        if self.silent.contains_key(&preferred) || behind.is_none_or(|b| b > CLOSE_ENOUGH) {
            return;
        }
        let active = self.tables().nodes().map(|n| n.iter().any(|n| n.id == preferred && n.state == NodeState::Active)).unwrap_or(false);
        if !active {
            return;
        }
        self.handovers.last.insert(record.shard, Instant::now());
        let (node, shard) = (self.clone(), record.shard);
        self.spawn_task(async move {
            match node.hand_over(shard, preferred).await {
                Ok(true) => tracing::info!(shard, to = preferred, "handed the shard's leadership to its preferred replica"),
                Ok(false) => {}
                Err(e) => tracing::info!(shard, to = preferred, error = %e, "handing the shard's leadership over did not complete; will retry"),
            }
        });
    }

    /// Whether `shard` has few enough voters for a handover ([`MAX_VOTERS`]).
    pub(super) fn can_hand_over(&self, shard: u32) -> bool {
        self.replica(shard).is_some_and(|r| r.raft.metrics().borrow().membership_config.membership().voter_ids().count() <= MAX_VOTERS)
    }

    /// Whether a handover of `shard` is under way here.
    pub(super) fn handing_over(&self, shard: u32) -> bool {
        self.handovers.running.contains(&shard)
    }

    /// When this node was first seen leading `shard` in `term`.
    fn leading_since(&self, shard: u32, term: u64) -> Instant {
        let mut entry = self.handovers.led_since.entry(shard).or_insert((term, Instant::now()));
        if entry.0 != term {
            *entry = (term, Instant::now());
        }
        entry.1
    }

    /// Hands the leadership of `shard` to `to`, holding new writes back meanwhile.
    /// `Ok(false)`: another handover of the shard is running, or this node does not
    /// lead it.
    pub async fn hand_over(&self, shard: u32, to: NodeId) -> Result<bool, String> {
        if !self.handovers.running.insert(shard) {
            return Ok(false);
        }
        let result = self.hand_over_once(shard, to).await;
        self.handovers.running.remove(&shard);
        match &result {
            Ok(true) => ::metrics::counter!(crate::metrics::HANDOVERS, "result" => "ok").increment(1),
            Err(_) => ::metrics::counter!(crate::metrics::HANDOVERS, "result" => "failed").increment(1),
            Ok(false) => {}
        }
        result
    }

    async fn hand_over_once(&self, shard: u32, to: NodeId) -> Result<bool, String> {
        let replica = self.replica(shard).ok_or_else(|| format!("no replica of shard {shard} here"))?;
        let addr = self.peer_addr(to).ok_or_else(|| format!("no address for node {to}"))?;
        let mut metrics = replica.raft.metrics();
        let leads = |m: &openraft::RaftMetrics<NodeId, _>| m.state == ServerState::Leader;
        let term = {
            let m = metrics.borrow_and_update();
            if !leads(&m) || self.reconfiguring.contains(&shard) {
                return Ok(false);
            }
            if m.membership_config.membership().voter_ids().count() > MAX_VOTERS {
                return Err(format!("a handover needs at most {MAX_VOTERS} voters"));
            }
            m.current_term
        };
        // A leader refuses to vote for another until its own lease (the longest
        // election timeout) from its election has run out; the other voters refuse
        // while they hear from it. Wait that out before holding writes back.
        let lease = Duration::from_millis(self.config.timing.election_max_ms) + Duration::from_millis(50);
        tokio::time::sleep_until((self.leading_since(shard, term) + lease).into()).await;
        let deadline = tokio::time::Instant::now() + HANDOVER;
        // Writes under way finish (each holds the gate shared until committed); new
        // ones wait.
        let _gate = tokio::time::timeout_at(deadline, replica.writes.write()).await.map_err(|_| "writes under way did not finish in time".to_string())?;
        // Every entry on the successor: its vote must not lose on the log.
        let caught_up = |m: &openraft::RaftMetrics<NodeId, _>| super::node::lag(m.last_log_index, m.replication.as_ref()).get(&to) == Some(&0);
        let still_leads = match tokio::time::timeout_at(deadline, metrics.wait_for(|m| !leads(m) || m.current_term != term || caught_up(m))).await {
            Ok(Ok(m)) => leads(&m) && m.current_term == term,
            Ok(Err(_)) => return Err("the replica stopped".into()),
            Err(_) => return Err(format!("node {to} did not catch up in time")),
        };
        if !still_leads {
            return Ok(false);
        }
        let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::TakeLeadership(Some(shard)));
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("node {to} did not answer")),
        }
        let took_over = match tokio::time::timeout_at(deadline, metrics.wait_for(|m| m.current_leader == Some(to))).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(_)) => Err("the replica stopped".into()),
            Err(_) => Err(format!("node {to} did not take over in time")),
        };
        took_over
    }
}
