//! Operator actions on the cluster: drain a node (move every replica off it) and
//! remove a drained node. Either can be asked of any node; the control-plane leader
//! carries it out.

use super::node::ClusterNode;
use super::rpc::{PeerRequest, PeerResponse, WriteError};
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::sync::Arc;
use switchboard_raft_store::raft::{ControlCommand, ControlResponse, NodeId, NodeState};

/// Runs `request` (a ControlWrite or RemoveNode) on `node` if it leads the control
/// plane, else on its leader.
pub(super) async fn on_control_leader(node: &ClusterNode, request: PeerRequest) -> Result<ControlResponse, WriteError> {
    if node.is_control_leader() {
        return match tokio::time::timeout(node.config.write_timeout, node.lead_request(request)).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::Unavailable(format!("not done within {:?}; it may still complete", node.config.write_timeout))),
        };
    }
    node.forward_to_control_leader(request).await
}

impl ClusterNode {
    /// Marks `node` Draining. The control-plane leader then plans its replicas onto
    /// the other Active nodes, and each shard's leader moves them through membership
    /// changes. Refused if no other Active node would be left.
    pub async fn drain(&self, node: NodeId) -> Result<(), WriteError> {
        let nodes = self.tables().nodes().map_err(|e| WriteError::Unavailable(e.to_string()))?;
        let Some(record) = nodes.iter().find(|n| n.id == node) else {
            return Err(WriteError::Refused(format!("no node {node} in the cluster")));
        };
        if record.state == NodeState::Draining {
            return Ok(());
        }
        if !nodes.iter().any(|n| n.id != node && n.state == NodeState::Active) {
            return Err(WriteError::Refused(format!("node {node} is the last active node; there is nowhere to move its replicas")));
        }
        on_control_leader(self, PeerRequest::ControlWrite(ControlCommand::SetNodeState { node, state: NodeState::Draining })).await.map(|_| ())
    }

    /// Removes `node` from the node table and the control plane. Refused unless it
    /// is Draining or Down, while any shard still lists it, and while it still hosts
    /// a shard group (its replicas are still moving).
    pub async fn remove(&self, node: NodeId) -> Result<(), WriteError> {
        on_control_leader(self, PeerRequest::RemoveNode(node)).await.map(|_| ())
    }

    /// Sends `request` to the control-plane leader (another node) and waits, up to
    /// the write timeout, for its answer.
    pub(super) async fn forward_to_control_leader(&self, request: PeerRequest) -> Result<ControlResponse, WriteError> {
        let leader = self.control().metrics().borrow().current_leader;
        let Some(addr) = leader.filter(|l| *l != self.id()).and_then(|l| self.peer_addr(l)) else {
            return Err(WriteError::NotLeader(leader));
        };
        let call = self.transport.call(&self.addr().peer, &addr, request);
        match tokio::time::timeout(self.config.write_timeout, call).await {
            Ok(Ok(PeerResponse::Control(r))) => r,
            Ok(Ok(other)) => Err(WriteError::Unavailable(format!("unexpected answer {other:?}"))),
            Ok(Err(e)) => Err(WriteError::Unavailable(e.to_string())),
            Err(_) => Err(WriteError::Unavailable(format!("the control-plane leader did not answer within {:?}", self.config.write_timeout))),
        }
    }

    /// On the control-plane leader: carries out a ControlWrite or RemoveNode.
    pub(super) async fn lead_request(&self, request: PeerRequest) -> Result<ControlResponse, WriteError> {
        if !self.is_control_leader() {
            return Err(WriteError::NotLeader(self.control().metrics().borrow().current_leader));
        }
        match request {
            PeerRequest::ControlWrite(command) => self.checked_control_write(command).await,
            PeerRequest::RemoveNode(node) => self.remove_here(node).await,
            other => Err(WriteError::Refused(format!("not a control-plane request: {other:?}"))),
        }
    }

    /// A control-plane write here (the leader): a refusal by the tables is `Refused`,
    /// a raft failure `Unavailable`.
    async fn checked_control_write(&self, command: ControlCommand) -> Result<ControlResponse, WriteError> {
        match self.control().client_write(command).await {
            Ok(r) => match r.data {
                ControlResponse::Rejected(why) => Err(WriteError::Refused(why)),
                other => Ok(other),
            },
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    async fn remove_here(&self, node: NodeId) -> Result<ControlResponse, WriteError> {
        let record = self.tables().nodes().map_err(|e| WriteError::Unavailable(e.to_string()))?.into_iter().find(|n| n.id == node);
        let membership = self.control().metrics().borrow().membership_config.membership().clone();
        let member = membership.voter_ids().chain(membership.learner_ids()).any(|n| n == node);
        match &record {
            None if !member => return Err(WriteError::Refused(format!("no node {node} in the cluster"))),
            Some(r) if r.state == NodeState::Active || r.state == NodeState::Joining => {
                return Err(WriteError::Refused(format!("node {node} is {:?}; drain it first", r.state)));
            }
            _ => {}
        }
        if node == self.id() {
            // A drained control-plane leader: hand the control plane to another voter
            // and let the operator ask again.
            if let Some((_, Some(successor))) = self.led_groups().into_iter().find(|(group, _)| group.is_none()) {
                let _ = self.take_leadership_on(successor, None).await;
            }
            return Err(WriteError::Unavailable("this node leads the control plane; it is handing that over, ask again in a few seconds".into()));
        }
        // The shard table moves at once; the groups follow through membership
        // changes. A node that still hosts a group may still be needed for a quorum.
        if let Some(addr) = record.as_ref().map(|r| r.addr.peer.clone()) {
            let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::HostedShards);
            match tokio::time::timeout(std::time::Duration::from_secs(2), call).await {
                Ok(Ok(PeerResponse::Hosted(shards))) if !shards.is_empty() => {
                    return Err(WriteError::Refused(format!("node {node} still hosts {} shard group(s) (e.g. shard {}); wait until its replicas have moved", shards.len(), shards[0])));
                }
                Ok(Ok(PeerResponse::Shard(Err(e)))) => {
                    return Err(WriteError::Refused(format!("node {node} cannot say which shard groups it hosts ({e}); stop it, then remove it")));
                }
                // Hosts nothing, or does not answer (stopped).
                _ => {}
            }
        }
        // The node table (refused while a shard still lists the node), unless a
        // previous attempt already removed it.
        let response = if record.is_some() { self.checked_control_write(ControlCommand::RemoveNode(node)).await? } else { ControlResponse::Ok };
        let raft_error = |e: openraft::error::RaftError<NodeId, _>| WriteError::Unavailable(e.to_string());
        if membership.voter_ids().any(|v| v == node) {
            // Keep the number of voters: promote an active learner in its place, if any.
            let active: BTreeSet<NodeId> = self.tables().nodes().unwrap_or_default().into_iter().filter(|n| n.state == NodeState::Active).map(|n| n.id).collect();
            let mut next: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != node).collect();
            next.extend(membership.learner_ids().find(|l| *l != node && active.contains(l)));
            self.control().change_membership(ChangeMembers::ReplaceAllVoters(next), false).await.map_err(raft_error)?;
        } else if membership.learner_ids().any(|l| l == node) {
            self.control().change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node])), false).await.map_err(raft_error)?;
        }
        Ok(response)
    }

    async fn take_leadership_on(&self, node: NodeId, group: Option<u32>) -> Result<(), WriteError> {
        let addr = self.peer_addr(node).ok_or_else(|| WriteError::Unavailable(format!("no address for node {node}")))?;
        let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::TakeLeadership(group));
        match tokio::time::timeout(std::time::Duration::from_secs(1), call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(WriteError::Unavailable(e.to_string())),
            Err(_) => Err(WriteError::Unavailable(format!("node {node} did not answer"))),
        }
    }
}

impl ClusterNode {
    /// Before stopping: hands every shard this node leads to its most caught-up
    /// other voter (`cluster::handover`) and asks one to take the control plane, so
    /// leadership moves now rather than an election timeout after this node goes
    /// quiet. Waits until this node leads nothing or `within`
    /// passed; returns (groups still led, groups led at the start).
    pub async fn hand_off_leadership(self: &Arc<Self>, within: std::time::Duration) -> (usize, usize) {
        self.leaving.store(true, std::sync::atomic::Ordering::Release);
        let deadline = std::time::Instant::now() + within;
        let mut at_start = None;
        loop {
            let led = self.led_groups();
            let led_count = led.len();
            at_start.get_or_insert(led_count);
            if led.is_empty() || std::time::Instant::now() >= deadline {
                return (led_count, at_start.unwrap_or(0));
            }
            for (group, successor) in led {
                if let (Some(shard), Some(to)) = (group.filter(|s| self.can_hand_over(*s)), successor) {
                    // Without a gap in writes (`cluster::handover`).
                    let node = self.clone();
                    tokio::spawn(async move {
                        let _ = node.hand_over(shard, to).await;
                    });
                    continue;
                }
                let Some(addr) = successor.and_then(|n| self.peer_addr(n)) else { continue };
                let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::TakeLeadership(group));
                // Asked, not awaited: the vote itself shows in this node's metrics.
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), call).await;
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    /// Groups this node leads (`None`: the control plane), each with the voter best
    /// placed to take over (caught up, other than this node).
    fn led_groups(&self) -> Vec<(Option<u32>, Option<NodeId>)> {
        let successor = |m: &openraft::RaftMetrics<NodeId, switchboard_raft_store::raft::NodeAddr>| {
            let last = m.last_log_index.unwrap_or(0);
            let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
            m.replication
                .as_ref()
                .and_then(|r| r.iter().filter(|(n, _)| **n != self.id() && voters.contains(n) && !self.silent.contains_key(n)).max_by_key(|(n, matched)| (matched.map(|l| l.index).unwrap_or(0).min(last), std::cmp::Reverse(**n))).map(|(n, _)| *n))
        };
        let mut out = Vec::new();
        let control = self.control().metrics().borrow().clone();
        if control.state == openraft::ServerState::Leader && control.membership_config.membership().voter_ids().count() > 1 {
            out.push((None, successor(&control)));
        }
        for shard in self.replicas().into_iter().filter(|r| r.state == openraft::ServerState::Leader && r.voters.len() > 1).map(|r| r.shard) {
            if let Some(replica) = self.replica(shard) {
                let m = replica.raft.metrics().borrow().clone();
                out.push((Some(shard), successor(&m)));
            }
        }
        out
    }

    /// A leader about to stop asks this node to take over `group`.
    pub(super) async fn take_leadership(&self, group: Option<u32>) -> Result<ControlResponse, WriteError> {
        // A stopping node would only have to hand it on again.
        if self.leaving.load(std::sync::atomic::Ordering::Acquire) {
            return Err(WriteError::Unavailable("this node is stopping".into()));
        }
        let result = match group {
            None => self.control().trigger().elect().await,
            Some(shard) => match self.replica(shard) {
                Some(replica) => replica.raft.trigger().elect().await,
                None => return Err(WriteError::NoGroup(u64::from(shard) + 1)),
            },
        };
        result.map(|_| ControlResponse::Ok).map_err(|e| WriteError::Fatal(e.to_string()))
    }
}

impl ClusterNode {
    /// The voters and learners of the shard, as its leader knows them: `None` unless
    /// this node leads `shard` and its latest membership is applied (no change is
    /// pending).
    pub(super) fn applied_members(&self, shard: u32) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
        let m = self.replica(shard)?.raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(self.id()) || !super::node::membership_applied(&m) {
            return None;
        }
        let membership = m.membership_config.membership();
        Some((membership.voter_ids().collect(), membership.learner_ids().collect()))
    }

    /// Whether the shard's leader (the one this replica knows, or one of `record`'s
    /// replica set) has applied a membership without this node and has no change
    /// pending (asked at most once a second per shard).
    pub(super) async fn removed_elsewhere(
        &self,
        record: &switchboard_raft_store::raft::ShardRecord,
        known_leader: Option<NodeId>,
        nodes: &std::collections::BTreeMap<NodeId, switchboard_raft_store::raft::NodeAddr>,
    ) -> bool {
        if self.membership_checks.get(&record.shard).is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return false;
        }
        self.membership_checks.insert(record.shard, std::time::Instant::now());
        let mut asked = BTreeSet::new();
        for member in known_leader.into_iter().chain(record.replicas.iter().copied()).filter(|n| *n != self.id()) {
            if !asked.insert(member) {
                continue;
            }
            let Some(addr) = nodes.get(&member).map(|a| a.peer.clone()) else { continue };
            let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::ShardMembers(record.shard));
            if let Ok(Ok(PeerResponse::Members(Some((voters, learners))))) = tokio::time::timeout(std::time::Duration::from_secs(1), call).await {
                if !voters.contains(&self.id()) && !learners.contains(&self.id()) {
                    return true;
                }
            }
        }
        false
    }
}
