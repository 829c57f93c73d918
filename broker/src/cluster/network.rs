//! openraft's network for every group of a node, over one [`PeerTransport`].

use super::rpc::{PeerRequest, PeerResponse};
use super::transport::{PeerError, PeerTransport};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::RaftTypeConfig;
use std::marker::PhantomData;
use std::sync::Arc;
use switchboard_raft_store::raft::{ControlConfig, NodeAddr, NodeId, ShardConfig};

/// How a group's raft messages are wrapped for the peer link.
pub trait GroupWire: RaftTypeConfig<NodeId = NodeId, Node = NodeAddr> {
    /// Wraps an AppendEntries.
    fn append(shard: u32, request: AppendEntriesRequest<Self>) -> PeerRequest;
    /// Wraps a RequestVote.
    fn vote(shard: u32, request: VoteRequest<NodeId>) -> PeerRequest;
    /// Wraps an InstallSnapshot chunk.
    fn snapshot(shard: u32, request: InstallSnapshotRequest<Self>) -> PeerRequest;
}

impl GroupWire for ControlConfig {
    fn append(_: u32, request: AppendEntriesRequest<Self>) -> PeerRequest {
        PeerRequest::ControlAppend(request)
    }
    fn vote(_: u32, request: VoteRequest<NodeId>) -> PeerRequest {
        PeerRequest::ControlVote(request)
    }
    fn snapshot(_: u32, request: InstallSnapshotRequest<Self>) -> PeerRequest {
        PeerRequest::ControlSnapshot(request)
    }
}

impl GroupWire for ShardConfig {
    fn append(shard: u32, request: AppendEntriesRequest<Self>) -> PeerRequest {
        PeerRequest::ShardAppend(shard, request)
    }
    fn vote(shard: u32, request: VoteRequest<NodeId>) -> PeerRequest {
        PeerRequest::ShardVote(shard, request)
    }
    fn snapshot(shard: u32, request: InstallSnapshotRequest<Self>) -> PeerRequest {
        PeerRequest::ShardSnapshot(shard, request)
    }
}

/// Creates clients of one group (the control plane, or shard `shard`).
pub struct GroupNetwork<C> {
    from: String,
    shard: u32,
    transport: Arc<dyn PeerTransport>,
    _config: PhantomData<fn() -> C>,
}

impl<C> GroupNetwork<C> {
    /// The network of group `shard` (ignored for the control plane) on the node with
    /// peer address `from`.
    pub fn new(from: String, shard: u32, transport: Arc<dyn PeerTransport>) -> Self {
        GroupNetwork { from, shard, transport, _config: PhantomData }
    }
}

impl<C: GroupWire> RaftNetworkFactory<C> for GroupNetwork<C> {
    type Network = GroupClient<C>;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> GroupClient<C> {
        GroupClient { from: self.from.clone(), target, addr: node.peer.clone(), shard: self.shard, transport: self.transport.clone(), _config: PhantomData }
    }
}

/// Sends one group's raft messages to one node.
pub struct GroupClient<C> {
    from: String,
    target: NodeId,
    addr: String,
    shard: u32,
    transport: Arc<dyn PeerTransport>,
    _config: PhantomData<fn() -> C>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>;

impl<C: GroupWire> GroupClient<C> {
    async fn send<E: std::error::Error>(&self, request: PeerRequest, option: &RPCOption) -> Result<PeerResponse, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>> {
        match tokio::time::timeout(option.hard_ttl(), self.transport.call(&self.from, &self.addr, request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e @ PeerError::Unreachable(..))) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(elapsed) => Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, response: PeerResponse) -> RPCError<NodeId, NodeAddr, RaftError<NodeId, E>> {
        let e = std::io::Error::other(format!("unexpected answer from node {}: {response:?}", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl<C: GroupWire> RaftNetwork<C> for GroupClient<C> {
    async fn append_entries(&mut self, rpc: AppendEntriesRequest<C>, option: RPCOption) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(C::append(self.shard, rpc), &option).await? {
            PeerResponse::Append(Ok(r)) => Ok(r),
            PeerResponse::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(&mut self, rpc: InstallSnapshotRequest<C>, option: RPCOption) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(C::snapshot(self.shard, rpc), &option).await? {
            PeerResponse::Snapshot(Ok(r)) => Ok(r),
            PeerResponse::Snapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(C::vote(self.shard, rpc), &option).await? {
            PeerResponse::Vote(Ok(r)) => Ok(r),
            PeerResponse::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(other)),
        }
    }
}
