//! The cluster: a Raft-replicated control plane (node table, shard table) and one
//! Raft group per shard holding that shard's message logs, all on openraft with the
//! storage in [`switchboard_raft_store::raft`].
//!
//! - [`node::ClusterNode`] runs every group a node hosts and keeps them in line with
//!   the shard table: it opens groups it should host, changes shard memberships where
//!   it leads (learner, catch up, promote, remove); [`handover`] moves a shard's
//!   leadership to its preferred replica, or off a stopping node, without a gap.
//! - [`transport`] is the peer link behind a trait, with in-process delivery and
//!   fault injection for tests; [`tcp`] is the link between processes; [`network`]
//!   adapts either to openraft.
//! - [`rpc`] lists what nodes say to each other.
//! - [`tenants`]: each tenant's home node, recorded in the control plane;
//!   [`records`] replicates a tenant's records through its shard; `homes` moves
//!   the tenants of a node that stopped answering, and [`takeover`] serves them on
//!   their new home.

mod admin;
pub mod handover;
mod homes;
pub mod log;
pub mod network;
pub mod node;
pub mod records;
pub mod rpc;
mod serve;
pub mod status;
pub mod takeover;
pub mod tcp;
pub mod tenants;
pub mod transport;

pub use node::{ClusterConfig, ClusterNode, RaftTiming};
pub use rpc::{PeerRequest, PeerResponse, WriteError};
pub use tcp::{PeerListener, TcpTransport};
pub use transport::{Faults, LocalTransport, PeerError, PeerHandler, PeerTransport};
