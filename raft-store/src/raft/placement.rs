//! Where things live: pure functions of ids and the shard table, no runtime.
//!
//! - A visitor's sessions and conversations: shard `hash(tenant, visitor) % shards`.
//!   A conversation id carries its shard in bits 40-51, so any node finds a
//!   conversation's shard from the id alone (and ids stay below 2^53, exact in JSON).
//! - An agent seat: `hash(tenant, agent) % shards`; a tenant's router: `hash(tenant) % shards`.
//! - A shard's leader: preferably the first node of its replica set.

use super::control::{NodeRecord, NodeState, ShardRecord};
use super::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use switchboard_protocol::{AgentId, ConversationId, TenantId, VisitorId};

/// Bits of a conversation id below its shard.
pub const CONVERSATION_SHARD_SHIFT: u32 = 40;

/// Most shards a cluster can have (the shard must fit in a conversation id).
pub const MAX_SHARDS: u32 = 1 << 12;

/// A fixed 64-bit mix (splitmix64's finalizer): stable across builds and platforms,
/// unlike `std`'s hasher.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn bucket(hash: u64, shards: u32) -> u32 {
    (hash % u64::from(shards.max(1))) as u32
}

/// The shard of a visitor's sessions and new conversations.
pub fn visitor_shard(tenant: TenantId, visitor: VisitorId, shards: u32) -> u32 {
    bucket(mix(mix(tenant.0) ^ visitor.0.rotate_left(17)), shards)
}

/// The shard of an agent's seat.
pub fn agent_shard(tenant: TenantId, agent: AgentId, shards: u32) -> u32 {
    bucket(mix(mix(tenant.0).wrapping_add(0x9e37_79b9_7f4a_7c15) ^ agent.0.rotate_left(29)), shards)
}

/// The shard of a tenant's router.
pub fn tenant_shard(tenant: TenantId, shards: u32) -> u32 {
    bucket(mix(tenant.0 ^ 0x5bd1_e995), shards)
}

/// A conversation id on `shard` (< [`MAX_SHARDS`]) with a counter value `local` (< 2^40).
pub fn conversation_id(shard: u32, local: u64) -> ConversationId {
    ConversationId((u64::from(shard % MAX_SHARDS) << CONVERSATION_SHARD_SHIFT) | (local & ((1 << CONVERSATION_SHARD_SHIFT) - 1)))
}

/// The shard of a conversation (ids from before sharding land on shard 0).
pub fn conversation_shard(conversation: ConversationId, shards: u32) -> u32 {
    bucket(conversation.0 >> CONVERSATION_SHARD_SHIFT, shards)
}

/// The replica sets that bring every shard to `min(replication, usable nodes)`
/// replicas on Active nodes, moving replicas off Draining, Down and unknown nodes,
/// and evening out both replicas and preferred leaders (the first of each set) per
/// node. Returns only the shards whose set changes. Deterministic.
pub fn plan_replicas(shards: &[ShardRecord], nodes: &[NodeRecord], replication: u32) -> Vec<(u32, Vec<NodeId>)> {
    let active: BTreeSet<NodeId> = nodes.iter().filter(|n| n.state == NodeState::Active).map(|n| n.id).collect();
    if active.is_empty() {
        return Vec::new();
    }
    let want = (replication.max(1) as usize).min(active.len());
    let mut load: BTreeMap<NodeId, usize> = active.iter().map(|&n| (n, 0)).collect();
    let mut leads: BTreeMap<NodeId, usize> = active.iter().map(|&n| (n, 0)).collect();
    // Replicas on active nodes stay where they are (up to `want`): no needless moves.
    let mut kept: Vec<Vec<NodeId>> = shards
        .iter()
        .map(|s| {
            let keep: Vec<NodeId> = s.replicas.iter().copied().filter(|n| active.contains(n)).take(want).collect();
            for n in &keep {
                *load.entry(*n).or_default() += 1;
            }
            keep
        })
        .collect();
    // A fair share is ceil(total / nodes): take replicas away from nodes above it so
    // a new node gets its share.
    let total = shards.len() * want;
    let fair = total.div_ceil(active.len());
    for set in kept.iter_mut() {
        set.retain(|n| {
            let l = load.get_mut(n).map(|l| {
                if *l > fair {
                    *l -= 1;
                    false
                } else {
                    true
                }
            });
            l.unwrap_or(false)
        });
    }
    let mut out = Vec::new();
    for (shard, set) in shards.iter().zip(kept.iter_mut()) {
        while set.len() < want {
            // The least loaded active node not yet in the set (lowest id on ties).
            let Some((&node, _)) = load.iter().filter(|(n, _)| !set.contains(n)).min_by_key(|(n, l)| (**l, **n)) else { break };
            set.push(node);
            *load.entry(node).or_default() += 1;
        }
        // Preferred leader: the member leading the fewest shards so far (keep the
        // current first member on ties, to avoid needless leader moves).
        let current_first = set.first().copied();
        if let Some(best) = set.iter().copied().min_by_key(|n| (leads.get(n).copied().unwrap_or(0), Some(*n) != current_first, *n)) {
            if let Some(pos) = set.iter().position(|n| *n == best) {
                set.swap(0, pos);
            }
            *leads.entry(best).or_default() += 1;
        }
        if *set != shard.replicas {
            out.push((shard.shard, set.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::NodeAddr;

    fn node(id: NodeId, state: NodeState) -> NodeRecord {
        NodeRecord { id, addr: NodeAddr::default(), state }
    }

    fn table(n: u32, replicas: &[NodeId]) -> Vec<ShardRecord> {
        (0..n).map(|shard| ShardRecord { shard, replicas: replicas.to_vec(), version: 1 }).collect()
    }

    fn apply(shards: &mut [ShardRecord], plan: Vec<(u32, Vec<NodeId>)>) {
        for (shard, set) in plan {
            let s = &mut shards[shard as usize];
            s.replicas = set;
            s.version += 1;
        }
    }

    const PINNED: [u32; 4] = [47, 33, 25, 34];

    #[test]
    fn placement_is_pinned_and_spread() {
        let mut per_shard = vec![0u32; 64];
        for v in 0..64_000u64 {
            per_shard[visitor_shard(TenantId(7), VisitorId(v), 64) as usize] += 1;
        }
        let (min, max) = (per_shard.iter().min().copied().unwrap_or(0), per_shard.iter().max().copied().unwrap_or(0));
        assert!(min > 800 && max < 1200, "64k visitors over 64 shards: between {min} and {max} per shard");
        // Pinned values: changing the hash would move every conversation of a live cluster.
        let pinned = [visitor_shard(TenantId(1), VisitorId(1), 64), visitor_shard(TenantId(2), VisitorId(1), 64), agent_shard(TenantId(1), AgentId(9), 64), tenant_shard(TenantId(1), 64)];
        assert_eq!(pinned, PINNED);
    }

    #[test]
    fn conversation_ids_carry_their_shard() {
        for shard in [0u32, 1, 17, 63] {
            let id = conversation_id(shard, 12_345);
            assert_eq!(conversation_shard(id, 64), shard);
            assert_eq!(id.0 & ((1 << CONVERSATION_SHARD_SHIFT) - 1), 12_345);
            assert!(conversation_id(MAX_SHARDS - 1, u64::MAX).0 < 1 << 53, "ids stay exact as JSON numbers");
        }
        assert_eq!(conversation_shard(ConversationId(42), 64), 0, "ids from before sharding live on shard 0");
    }

    #[test]
    fn a_single_node_cluster_needs_no_change() {
        let shards = table(64, &[1]);
        assert!(plan_replicas(&shards, &[node(1, NodeState::Active)], 3).is_empty());
    }

    #[test]
    fn joining_nodes_bring_every_shard_to_three_replicas_with_balanced_leaders() {
        let mut shards = table(64, &[1]);
        let nodes = [node(1, NodeState::Active), node(2, NodeState::Active), node(3, NodeState::Active)];
        let plan = plan_replicas(&shards, &nodes, 3);
        assert_eq!(plan.len(), 64);
        apply(&mut shards, plan);
        for s in &shards {
            let set: BTreeSet<_> = s.replicas.iter().collect();
            assert_eq!(set.len(), 3, "shard {} has {:?}", s.shard, s.replicas);
        }
        let mut leads = BTreeMap::new();
        for s in &shards {
            *leads.entry(s.replicas[0]).or_insert(0) += 1;
        }
        assert!(leads.values().all(|&l| (21..=22).contains(&l)), "preferred leaders per node: {leads:?}");
        assert!(plan_replicas(&shards, &nodes, 3).is_empty(), "a balanced table is a fixed point");
    }

    #[test]
    fn replication_is_capped_by_the_active_nodes_and_spread() {
        let mut shards = table(8, &[1]);
        let nodes = [node(1, NodeState::Active), node(2, NodeState::Active)];
        let plan = plan_replicas(&shards, &nodes, 3);
        apply(&mut shards, plan);
        assert!(shards.iter().all(|s| s.replicas.len() == 2));
        // A fourth and fifth node with R=1: replicas spread to the new nodes.
        let mut shards = table(8, &[1]);
        let nodes: Vec<_> = (1..=4).map(|i| node(i, NodeState::Active)).collect();
        let plan = plan_replicas(&shards, &nodes, 1);
        apply(&mut shards, plan);
        let mut per_node = BTreeMap::new();
        for s in &shards {
            *per_node.entry(s.replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2, 2, 2], "{per_node:?}");
    }

    #[test]
    fn draining_a_node_moves_its_replicas_to_the_others() {
        let mut shards = table(16, &[1, 2, 3]);
        let nodes = [node(1, NodeState::Active), node(2, NodeState::Draining), node(3, NodeState::Active), node(4, NodeState::Active)];
        let plan = plan_replicas(&shards, &nodes, 3);
        apply(&mut shards, plan);
        for s in &shards {
            assert!(!s.replicas.contains(&2), "shard {} still on the draining node", s.shard);
            assert_eq!(s.replicas.len(), 3);
        }
    }
}
