//! The control plane's state machine: the node table and the shard table.
//!
//! Keys under the control group's prefix:
//!
//! | tag | rest | value |
//! |-----|------|-------|
//! | 1 | - | bincode [`ClusterMeta`] |
//! | 2 | node id u64 | bincode [`NodeRecord`] |
//! | 3 | shard u32 | bincode [`ShardRecord`] |
//! | 4 | tenant u64 | bincode [`TenantPlacement`] |
//! | 5 | - | the highest tenant id placed, u64 big-endian |

use super::machine::{Logic, Overlay};
use super::{group_end, group_key, ControlConfig, NodeAddr, NodeId, RaftDb, CONTROL_GROUP};
use crate::error::StoreError;
use crate::keys::CF_RAFT_STATE;
use crate::records;
use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::watch;

mod tag {
    pub const META: u8 = 1;
    pub const NODE: u8 = 2;
    pub const SHARD: u8 = 3;
    pub const TENANT: u8 = 4;
    pub const LAST_TENANT: u8 = 5;
}

/// Facts fixed when the cluster was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMeta {
    /// Number of shards (never changes).
    pub shard_count: u32,
    /// Wanted replicas per shard (capped by the number of active nodes).
    pub replication: u32,
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Known, not yet holding replicas.
    Joining,
    /// Serving.
    Active,
    /// Its replicas are being moved away.
    Draining,
    /// Not responding.
    Down,
}

/// A row of the node table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: NodeAddr,
    /// Its state.
    pub state: NodeState,
}

/// A row of the shard table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// The shard.
    pub shard: u32,
    /// The nodes meant to hold a replica, in preference order (the first is the
    /// preferred leader).
    pub replicas: Vec<NodeId>,
    /// Bumped on every change, so stale routing can be detected.
    pub version: u64,
}

/// A row of the tenant table: which node serves a tenant's sessions and router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPlacement {
    /// The tenant.
    pub tenant: u64,
    /// The node that keeps its directory, router and sessions (first the one that
    /// created it).
    pub home: NodeId,
    /// Bumped on every move: the home writes the tenant's records with it, and a
    /// shard refuses records written with an older one.
    pub epoch: u64,
}

/// A placement as stored before tenants could move (no epoch).
#[derive(Deserialize)]
struct PlacementV1 {
    tenant: u64,
    home: NodeId,
}

/// Decodes a stored placement, either form.
fn decode_placement(v: &[u8]) -> Result<TenantPlacement, StoreError> {
    records::decode("tenant placement", v).or_else(|e| match records::decode::<PlacementV1>("tenant placement", v) {
        Ok(old) => Ok(TenantPlacement { tenant: old.tenant, home: old.home, epoch: 0 }),
        Err(_) => Err(e),
    })
}

/// Moves a tenant whose home is `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMove {
    /// The tenant.
    pub tenant: u64,
    /// Its home as the mover saw it (a tenant already moved elsewhere stays).
    pub from: NodeId,
    /// Its new home.
    pub to: NodeId,
}

/// A write to the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Create the cluster: its meta, its first node, and every shard on that node.
    /// Rejected if the cluster exists.
    CreateCluster {
        /// The fixed facts.
        meta: ClusterMeta,
        /// The first node.
        node: NodeRecord,
    },
    /// Add a node or change its address or state.
    PutNode(NodeRecord),
    /// Change a node's state (rejected for an unknown node).
    SetNodeState {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
    },
    /// Forget a node (rejected while it holds a replica).
    RemoveNode(NodeId),
    /// Set a shard's replica set if its version is still `expected_version`.
    SetReplicas {
        /// The shard.
        shard: u32,
        /// The new replica set.
        replicas: Vec<NodeId>,
        /// The version the change was computed from.
        expected_version: u64,
    },
    /// Change a node's advertised addresses (it restarted on other ports), keeping
    /// its state. Rejected for an unknown node.
    SetNodeAddr {
        /// The node.
        node: NodeId,
        /// Its addresses now.
        addr: NodeAddr,
    },
    /// Give a new tenant a cluster-wide unique id (the highest placed so far plus
    /// one, at least `min_id`) and record `home` as its node. Rejected if `home` is
    /// not in the node table.
    PlaceTenant {
        /// The node creating the tenant.
        home: NodeId,
        /// The lowest id it may get (above ids the node handed out on its own before).
        min_id: u64,
    },
    /// Move tenants to new homes (their home stopped answering), bumping each one's
    /// epoch. A move whose `from` is no longer the tenant's home, or whose `to` is not
    /// in the node table, is skipped.
    MoveTenants(Vec<TenantMove>),
}

/// The result of a [`ControlCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Done.
    Ok,
    /// A shard's new version.
    Version(u64),
    /// A placed tenant's id.
    Tenant(u64),
    /// Not applied, and why.
    Rejected(String),
}

/// The rules of the control plane. Every applied batch bumps a watch counter, so
/// whoever manages the cluster can wait for the tables to change.
pub struct ControlLogic {
    changed: watch::Sender<u64>,
}

impl Default for ControlLogic {
    fn default() -> Self {
        ControlLogic { changed: watch::channel(0).0 }
    }
}

impl ControlLogic {
    /// Resolves whenever the tables change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

fn node_key(id: NodeId) -> Vec<u8> {
    let mut k = vec![tag::NODE];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn shard_key(shard: u32) -> Vec<u8> {
    let mut k = vec![tag::SHARD];
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

fn tenant_key(tenant: u64) -> Vec<u8> {
    let mut k = vec![tag::TENANT];
    k.extend_from_slice(&tenant.to_be_bytes());
    k
}

fn get<T: serde::de::DeserializeOwned>(state: &Overlay<'_>, key: &[u8], what: &'static str) -> Result<Option<T>, StoreError> {
    state.get(key)?.map(|v| records::decode(what, &v)).transpose()
}

impl Logic<ControlConfig> for ControlLogic {
    fn apply(&self, state: &mut Overlay<'_>, command: &ControlCommand) -> Result<ControlResponse, StoreError> {
        Ok(match command {
            ControlCommand::CreateCluster { meta, node } => {
                if get::<ClusterMeta>(state, &[tag::META], "cluster meta")?.is_some() {
                    return Ok(ControlResponse::Rejected("the cluster already exists".into()));
                }
                if meta.shard_count == 0 || meta.replication == 0 {
                    return Ok(ControlResponse::Rejected("shard count and replication must be at least 1".into()));
                }
                state.put(vec![tag::META], records::encode(meta));
                state.put(node_key(node.id), records::encode(node));
                for shard in 0..meta.shard_count {
                    state.put(shard_key(shard), records::encode(&ShardRecord { shard, replicas: vec![node.id], version: 1 }));
                }
                ControlResponse::Ok
            }
            ControlCommand::PutNode(node) => {
                state.put(node_key(node.id), records::encode(node));
                ControlResponse::Ok
            }
            ControlCommand::SetNodeState { node, state: new_state } => match get::<NodeRecord>(state, &node_key(*node), "node")? {
                Some(mut record) => {
                    record.state = *new_state;
                    state.put(node_key(*node), records::encode(&record));
                    ControlResponse::Ok
                }
                None => ControlResponse::Rejected(format!("no node {node}")),
            },
            ControlCommand::RemoveNode(node) => {
                let meta = get::<ClusterMeta>(state, &[tag::META], "cluster meta")?;
                for shard in 0..meta.map(|m| m.shard_count).unwrap_or(0) {
                    if let Some(record) = get::<ShardRecord>(state, &shard_key(shard), "shard")? {
                        if record.replicas.contains(node) {
                            return Ok(ControlResponse::Rejected(format!("node {node} still holds a replica of shard {shard}")));
                        }
                    }
                }
                state.delete(node_key(*node));
                ControlResponse::Ok
            }
            ControlCommand::SetReplicas { shard, replicas, expected_version } => match get::<ShardRecord>(state, &shard_key(*shard), "shard")? {
                Some(record) if record.version == *expected_version => {
                    if replicas.is_empty() {
                        return Ok(ControlResponse::Rejected("a shard needs at least one replica".into()));
                    }
                    let version = record.version + 1;
                    state.put(shard_key(*shard), records::encode(&ShardRecord { shard: *shard, replicas: replicas.clone(), version }));
                    ControlResponse::Version(version)
                }
                Some(record) => ControlResponse::Rejected(format!("shard {shard} is at version {}, not {expected_version}", record.version)),
                None => ControlResponse::Rejected(format!("no shard {shard}")),
            },
            ControlCommand::SetNodeAddr { node, addr } => match get::<NodeRecord>(state, &node_key(*node), "node")? {
                Some(mut record) => {
                    record.addr = addr.clone();
                    state.put(node_key(*node), records::encode(&record));
                    ControlResponse::Ok
                }
                None => ControlResponse::Rejected(format!("no node {node}")),
            },
            ControlCommand::PlaceTenant { home, min_id } => {
                if get::<NodeRecord>(state, &node_key(*home), "node")?.is_none() {
                    return Ok(ControlResponse::Rejected(format!("no node {home}")));
                }
                let last = state.get(&[tag::LAST_TENANT])?.map(|v| records::decode_u64("last tenant id", &v)).transpose()?.unwrap_or(0);
                let Some(tenant) = last.checked_add(1).map(|next| next.max(*min_id)) else {
                    return Ok(ControlResponse::Rejected("tenant ids are exhausted".into()));
                };
                state.put(vec![tag::LAST_TENANT], tenant.to_be_bytes().to_vec());
                state.put(tenant_key(tenant), records::encode(&TenantPlacement { tenant, home: *home, epoch: 0 }));
                ControlResponse::Tenant(tenant)
            }
            ControlCommand::MoveTenants(moves) => {
                for m in moves {
                    let Some(v) = state.get(&tenant_key(m.tenant))? else { continue };
                    let mut placement = decode_placement(&v)?;
                    if placement.home != m.from || get::<NodeRecord>(state, &node_key(m.to), "node")?.is_none() {
                        continue;
                    }
                    placement.home = m.to;
                    placement.epoch += 1;
                    state.put(tenant_key(m.tenant), records::encode(&placement));
                }
                ControlResponse::Ok
            }
        })
    }

    fn empty_response(&self) -> ControlResponse {
        ControlResponse::Ok
    }

    fn applied(&self, _results: &[(ControlCommand, ControlResponse)]) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn reset(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Reads the control plane's applied tables on this node.
#[derive(Clone)]
pub struct ControlReader {
    db: Arc<RaftDb>,
}

impl ControlReader {
    /// Reads the tables in `db`.
    pub fn new(db: Arc<RaftDb>) -> Self {
        ControlReader { db }
    }

    fn scan<T: serde::de::DeserializeOwned>(&self, tag: u8, what: &'static str) -> Result<Vec<T>, StoreError> {
        self.scan_with(tag, |v| records::decode(what, v))
    }

    fn scan_with<T>(&self, tag: u8, decode: impl Fn(&[u8]) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        let start = group_key(CONTROL_GROUP, &[tag]);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(match tag.checked_add(1) {
            Some(t) => group_key(CONTROL_GROUP, &[t]),
            None => group_end(CONTROL_GROUP),
        });
        let mut out = Vec::new();
        for item in self.db.db().iterator_cf_opt(cf, opts, IteratorMode::From(&start, Direction::Forward)) {
            let (_, v) = item.map_err(StoreError::rocks("read control plane"))?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// The cluster's fixed facts, once it is created.
    pub fn meta(&self) -> Result<Option<ClusterMeta>, StoreError> {
        Ok(self.scan(tag::META, "cluster meta")?.into_iter().next())
    }

    /// The node table, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.scan(tag::NODE, "node")
    }

    /// The shard table, by shard.
    pub fn shards(&self) -> Result<Vec<ShardRecord>, StoreError> {
        self.scan(tag::SHARD, "shard")
    }

    /// Where `tenant` is served, if it was placed through the control plane.
    pub fn tenant_placement(&self, tenant: u64) -> Result<Option<TenantPlacement>, StoreError> {
        let cf = self.db.db().cf_handle(CF_RAFT_STATE).ok_or(StoreError::Closed)?;
        let value = self.db.db().get_cf(cf, group_key(CONTROL_GROUP, &tenant_key(tenant))).map_err(StoreError::rocks("read control plane"))?;
        value.map(|v| decode_placement(&v)).transpose()
    }

    /// The node serving `tenant`, if it was placed through the control plane.
    pub fn tenant_home(&self, tenant: u64) -> Result<Option<NodeId>, StoreError> {
        Ok(self.tenant_placement(tenant)?.map(|p| p.home))
    }

    /// Every placed tenant, by id.
    pub fn tenants(&self) -> Result<Vec<TenantPlacement>, StoreError> {
        self.scan_with(tag::TENANT, decode_placement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::machine::Overlay;

    fn add_nodes(logic: &ControlLogic, state: &mut Overlay<'_>, ids: &[NodeId]) {
        let addr = NodeAddr { peer: "p".into(), client: "c".into() };
        for &id in ids {
            logic.apply(state, &ControlCommand::PutNode(NodeRecord { id, addr: addr.clone(), state: NodeState::Active })).expect("apply");
        }
    }

    fn place(logic: &ControlLogic, state: &mut Overlay<'_>, home: NodeId, min_id: u64) -> ControlResponse {
        logic.apply(state, &ControlCommand::PlaceTenant { home, min_id }).expect("apply")
    }

    #[test]
    fn tenants_get_unique_ids_above_the_floor_and_only_on_known_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::store::open_db(dir.path(), &crate::keys::ALL_CFS).expect("open");
        let logic = ControlLogic::default();
        let mut state = Overlay::for_test(&db, CONTROL_GROUP);
        add_nodes(&logic, &mut state, &[1, 2]);
        assert_eq!(place(&logic, &mut state, 1, 1), ControlResponse::Tenant(1));
        assert_eq!(place(&logic, &mut state, 2, 1), ControlResponse::Tenant(2));
        // A node that handed out tenant ids on its own asks for ids above them.
        assert_eq!(place(&logic, &mut state, 2, 10), ControlResponse::Tenant(10));
        assert_eq!(place(&logic, &mut state, 1, 3), ControlResponse::Tenant(11));
        assert!(matches!(place(&logic, &mut state, 9, 1), ControlResponse::Rejected(why) if why.contains("no node 9")));
        let homes: Vec<(u64, NodeId)> = [1, 2, 10, 11].iter().map(|t| {
            let v = state.get(&tenant_key(*t)).expect("read").expect("placed");
            let p = decode_placement(&v).expect("decode");
            (p.tenant, p.home)
        }).collect();
        assert_eq!(homes, vec![(1, 1), (2, 2), (10, 2), (11, 1)]);
    }

    #[test]
    fn moving_tenants_bumps_their_epoch_and_skips_stale_moves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::store::open_db(dir.path(), &crate::keys::ALL_CFS).expect("open");
        let logic = ControlLogic::default();
        let mut state = Overlay::for_test(&db, CONTROL_GROUP);
        add_nodes(&logic, &mut state, &[1, 2, 3]);
        assert_eq!(place(&logic, &mut state, 1, 1), ControlResponse::Tenant(1));
        assert_eq!(place(&logic, &mut state, 1, 1), ControlResponse::Tenant(2));
        // A placement stored before epochs existed still reads (epoch 0) and moves.
        #[derive(Serialize)]
        struct Old {
            tenant: u64,
            home: NodeId,
        }
        state.put(tenant_key(5), records::encode(&Old { tenant: 5, home: 1 }));
        let moves = vec![
            TenantMove { tenant: 1, from: 1, to: 2 },
            TenantMove { tenant: 2, from: 3, to: 2 },  // stale: its home is 1
            TenantMove { tenant: 5, from: 1, to: 3 },
            TenantMove { tenant: 9, from: 1, to: 2 },  // unknown tenant
        ];
        assert_eq!(logic.apply(&mut state, &ControlCommand::MoveTenants(moves)).expect("apply"), ControlResponse::Ok);
        let moved = ControlCommand::MoveTenants(vec![TenantMove { tenant: 1, from: 2, to: 3 }, TenantMove { tenant: 2, from: 1, to: 7 }]);
        logic.apply(&mut state, &moved).expect("apply");
        let read = |t: u64| decode_placement(&state.get(&tenant_key(t)).expect("read").expect("placed")).expect("decode");
        assert_eq!(read(1), TenantPlacement { tenant: 1, home: 3, epoch: 2 });
        assert_eq!(read(2), TenantPlacement { tenant: 2, home: 1, epoch: 0 }, "no node 7: stays");
        assert_eq!(read(5), TenantPlacement { tenant: 5, home: 3, epoch: 1 });
        assert!(state.get(&tenant_key(9)).expect("read").is_none());
    }
}
