//! Where tenants live. A tenant is served by one node at a time, its home (first
//! the node that created it): its directory records, its router and its sessions
//! are there. The control plane records every tenant's home and hands out tenant
//! ids, so ids are unique across the cluster and every node can forward a tenant's
//! clients to its home (`session::forward`). A home that stops answering is
//! replaced (`cluster::homes`), and the placement's epoch goes up with each move.
//!
//! Secrets that clients and callers present carry their tenant in front
//! (`TENANT.SECRET`), so a node can tell where to forward an agent's login or where
//! to send an API call without knowing the secret.

use super::admin::on_control_leader;
use super::node::ClusterNode;
use super::rpc::{PeerRequest, PeerResponse, WriteError};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::{Auth, TenantId};
use switchboard_raft_store::raft::{ControlCommand, ControlResponse, NodeId, TenantPlacement};
use switchboard_raft_store::StoreError;

/// A tenant served by another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteHome {
    /// The home node.
    pub node: NodeId,
    /// Its client (TCP) address, as it advertises it.
    pub client_addr: String,
}

/// Where a tenant is served, as far as this node can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Home {
    /// Here, at this placement epoch.
    Here {
        /// The placement's epoch (0: never moved).
        epoch: u64,
    },
    /// On another node.
    Remote(RemoteHome),
    /// No node's tables place it.
    Unknown,
}

impl ClusterNode {
    /// Places a new tenant on this node: its cluster-wide id, at least `min_id`.
    pub async fn place_tenant(&self, min_id: u64) -> Result<TenantId, WriteError> {
        let command = ControlCommand::PlaceTenant { home: self.id(), min_id };
        match on_control_leader(self, PeerRequest::ControlWrite(command)).await? {
            ControlResponse::Tenant(id) => Ok(TenantId(id)),
            other => Err(WriteError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// The home of `tenant` if it is another node; `None` if this node is its home or
    /// this node's tables do not place it. Reads RocksDB: call it off the actor
    /// threads.
    pub fn remote_home(&self, tenant: TenantId) -> Result<Option<RemoteHome>, StoreError> {
        match self.placement(tenant)? {
            Some(p) => self.home_at(p.home),
            None => Ok(None),
        }
    }

    /// `tenant`'s placement if read since the tables last changed (no I/O).
    fn cached_placement(&self, tenant: TenantId) -> Option<TenantPlacement> {
        let version = *self.control_changes.borrow();
        self.tenant_homes.get(&tenant.0).filter(|c| c.0 == version).map(|c| c.1)
    }

    /// `tenant`'s placement as this node's tables have it. Remembered until the
    /// tables next change.
    pub fn placement(&self, tenant: TenantId) -> Result<Option<TenantPlacement>, StoreError> {
        if let Some(p) = self.cached_placement(tenant) {
            return Ok(Some(p));
        }
        let version = *self.control_changes.borrow();
        let placement = self.tables().tenant_placement(tenant.0)?;
        if let Some(p) = placement {
            self.tenant_homes.insert(tenant.0, (version, p));
        }
        Ok(placement)
    }

    /// The epoch this node writes `tenant`'s records with: its placement's (0 for a
    /// tenant not placed yet, as a new one is).
    pub fn tenant_epoch(&self, tenant: TenantId) -> u64 {
        self.placement(tenant).ok().flatten().map(|p| p.epoch).unwrap_or(0)
    }

    fn home_at(&self, home: NodeId) -> Result<Option<RemoteHome>, StoreError> {
        if home == self.id() {
            return Ok(None);
        }
        Ok(self.tables().nodes()?.into_iter().find(|n| n.id == home).map(|n| RemoteHome { node: home, client_addr: n.addr.client }))
    }

    /// Where `tenant` is served. A tenant this node's tables do not place yet (it was
    /// created a moment ago on another node) is asked of the control-plane leader.
    /// `Err`: no leader answered, so nobody can tell now. Its reads of RocksDB run on
    /// the blocking pool, so actors may await it.
    pub async fn locate_tenant(self: &Arc<Self>, tenant: TenantId) -> Result<Home, String> {
        let cached = self.cached_placement(tenant);
        if let Some(p) = cached.filter(|p| p.home == self.id()) {
            return Ok(Home::Here { epoch: p.epoch });
        }
        let placement = match cached {
            Some(p) => Some(p),
            None => self.off_thread(move |n| n.placement(tenant)).await?.map_err(|e| e.to_string())?,
        };
        let (home, epoch) = match placement {
            Some(p) => (p.home, p.epoch),
            None => match self.ask_leader_for_home(tenant).await? {
                Some(home) => (home, 0),
                None => return Ok(Home::Unknown),
            },
        };
        if home == self.id() {
            return Ok(Home::Here { epoch });
        }
        match self.off_thread(move |n| n.home_at(home)).await?.map_err(|e| e.to_string())? {
            Some(remote) => Ok(Home::Remote(remote)),
            None => Err(format!("node {home} serves tenant {} but is not in the node table", tenant.0)),
        }
    }

    /// Runs `f` on the blocking pool.
    pub(super) async fn off_thread<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&ClusterNode) -> T + Send + 'static) -> Result<T, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || f(&node)).await.map_err(|e| e.to_string())
    }

    async fn ask_leader_for_home(self: &Arc<Self>, tenant: TenantId) -> Result<Option<NodeId>, String> {
        let leader = self.control().metrics().borrow().current_leader;
        let Some(leader) = leader else { return Err("the control plane has no leader".into()) };
        if leader == self.id() {
            return Ok(None);
        }
        let addr = self.off_thread(move |n| n.peer_addr(leader)).await?.ok_or_else(|| format!("no address for node {leader}"))?;
        let call = self.transport.call(&self.addr().peer, &addr, PeerRequest::TenantHome(tenant.0));
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(PeerResponse::TenantHome(home))) => Ok(home),
            Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the control-plane leader (node {leader}) did not answer")),
        }
    }
}

/// `TENANT.SECRET`: a secret that names its tenant.
pub fn tenant_secret(tenant: TenantId, secret: &str) -> String {
    format!("{}.{secret}", tenant.0)
}

/// The tenant a `TENANT.SECRET` names (`None` for a secret without one).
pub fn tenant_of_secret(secret: &str) -> Option<TenantId> {
    let (tenant, rest) = secret.split_once('.')?;
    // Digits only (`parse` alone would take a sign); too many overflow and fail.
    if rest.is_empty() || !tenant.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tenant.parse().ok().map(TenantId)
}

/// The tenant a login is for, as far as it says before it is checked.
pub fn tenant_of_auth(auth: &Auth) -> Option<TenantId> {
    match auth {
        Auth::Anonymous { tenant } | Auth::Resume { tenant, .. } | Auth::Verified { tenant, .. } => Some(*tenant),
        Auth::Agent { token } => tenant_of_secret(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_name_their_tenant_and_anything_else_names_none() {
        let secret = tenant_secret(TenantId(42), "ab12");
        assert_eq!(secret, "42.ab12");
        assert_eq!(tenant_of_secret(&secret), Some(TenantId(42)));
        for bad in ["ab12", ".ab12", "42.", "4x.ab", "-1.ab", "99999999999999999999999.ab", "18446744073709551616.ab", ""] {
            assert_eq!(tenant_of_secret(bad), None, "{bad:?}");
        }
        assert_eq!(tenant_of_auth(&Auth::Agent { token: "7.zz".into() }), Some(TenantId(7)));
        assert_eq!(tenant_of_auth(&Auth::Anonymous { tenant: TenantId(3) }), Some(TenantId(3)));
    }
}
