//! Operator actions on the cluster: drain a node (move every replica off it) and
//! remove a drained node. Either can be asked of any node; the control-plane leader
//! carries it out.

use super::node::ClusterNode;
use super::rpc::{PeerRequest, PeerResponse, WriteError};
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use switchboard_raft_store::raft::{ControlCommand, ControlResponse, NodeId, NodeState};

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
        self.on_control_leader(PeerRequest::ControlWrite(ControlCommand::SetNodeState { node, state: NodeState::Draining })).await.map(|_| ())
    }

    /// Removes `node` from the node table and the control plane. Refused while any
    /// shard still lists it as a replica (drain it first).
    pub async fn remove(&self, node: NodeId) -> Result<(), WriteError> {
        if node == self.id() {
            return Err(WriteError::Refused("a node cannot remove itself; ask another node".into()));
        }
        self.on_control_leader(PeerRequest::RemoveNode(node)).await.map(|_| ())
    }

    /// Runs `request` (a ControlWrite or RemoveNode) here if this node leads the
    /// control plane, else on its leader.
    async fn on_control_leader(&self, request: PeerRequest) -> Result<ControlResponse, WriteError> {
        if self.is_control_leader() {
            return self.lead_request(request).await;
        }
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
        if node == self.id() {
            return Err(WriteError::Refused("the control-plane leader cannot remove itself; drain it and ask again once another node leads".into()));
        }
        // The node table first: refused while a shard still lists the node.
        let response = self.checked_control_write(ControlCommand::RemoveNode(node)).await?;
        let membership = self.control().metrics().borrow().membership_config.membership().clone();
        let raft_error = |e: openraft::error::RaftError<NodeId, _>| WriteError::Unavailable(e.to_string());
        if membership.voter_ids().any(|v| v == node) {
            let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != node).collect();
            // Keep the number of voters: promote a learner in its place, if there is one.
            let learner = membership.learner_ids().find(|l| *l != node);
            let mut next = voters.clone();
            next.extend(learner);
            self.control().change_membership(ChangeMembers::ReplaceAllVoters(next), false).await.map_err(raft_error)?;
        } else if membership.learner_ids().any(|l| l == node) {
            self.control().change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node])), false).await.map_err(raft_error)?;
        }
        Ok(response)
    }
}

impl ClusterNode {
    /// Before stopping: asks an up-to-date voter of every group this node leads to
    /// start an election, so leadership moves now rather than an election timeout
    /// after this node goes quiet. Waits until this node leads nothing or `within`
    /// passed; returns (groups still led, groups led at the start).
    pub async fn hand_off_leadership(&self, within: std::time::Duration) -> (usize, usize) {
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
                .and_then(|r| r.iter().filter(|(n, _)| **n != self.id() && voters.contains(n)).max_by_key(|(n, matched)| (matched.map(|l| l.index).unwrap_or(0).min(last), std::cmp::Reverse(**n))).map(|(n, _)| *n))
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
