//! What nodes say to each other over the peer link.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use serde::{Deserialize, Serialize};
use switchboard_raft_store::raft::{ControlCommand, ControlConfig, ControlResponse, NodeId, NodeRecord, ShardCommand, ShardConfig, ShardResponse};

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Raft AppendEntries for the control plane.
    ControlAppend(AppendEntriesRequest<ControlConfig>),
    /// Raft RequestVote for the control plane.
    ControlVote(VoteRequest<NodeId>),
    /// Raft InstallSnapshot (one chunk) for the control plane.
    ControlSnapshot(InstallSnapshotRequest<ControlConfig>),
    /// Raft AppendEntries for a shard.
    ShardAppend(u32, AppendEntriesRequest<ShardConfig>),
    /// Raft RequestVote for a shard.
    ShardVote(u32, VoteRequest<NodeId>),
    /// Raft InstallSnapshot (one chunk) for a shard.
    ShardSnapshot(u32, InstallSnapshotRequest<ShardConfig>),
    /// "Add me to the cluster": handled by the control-plane leader.
    Join(NodeRecord),
    /// A control-plane write, for its leader.
    ControlWrite(ControlCommand),
    /// A shard write, for that shard's leader.
    ShardWrite(u32, ShardCommand),
    /// "Remove this drained node": for the control-plane leader.
    RemoveNode(NodeId),
    /// "Start an election for this group" (`None`: the control plane), from a leader
    /// about to stop.
    TakeLeadership(Option<u32>),
    /// "Which shard groups do you host?"
    HostedShards,
    /// "As this shard's leader, what is its membership?"
    ShardMembers(u32),
    /// "Which node is this tenant's home?" (asked of the control-plane leader by a
    /// node whose own tables may not have the placement yet).
    TenantHome(u64),
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// To an AppendEntries.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To a RequestVote.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To an InstallSnapshot.
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// To a Join or a ControlWrite.
    Control(Result<ControlResponse, WriteError>),
    /// To a ShardWrite.
    Shard(Result<ShardResponse, WriteError>),
    /// To HostedShards.
    Hosted(Vec<u32>),
    /// To ShardMembers: voters and learners of the shard's membership, from its
    /// leader with no membership change pending; `None` from any other node, or
    /// while a change is pending.
    Members(Option<(Vec<NodeId>, Vec<NodeId>)>),
    /// To TenantHome: the home, if the answering node's tables place the tenant.
    TenantHome(Option<NodeId>),
}

/// Why a replicated write did not happen (or may not have).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// This node does not host the group.
    #[error("group {0} is not hosted here")]
    NoGroup(u64),
    /// This node is not the leader; the leader, if known.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// No leader could take the write in time; it may or may not be committed
    /// (retrying is safe: appends carry an idempotency key).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The group stopped.
    #[error("raft group stopped: {0}")]
    Fatal(String),
    /// The state does not allow it (e.g. the node still holds replicas).
    #[error("refused: {0}")]
    Refused(String),
}
