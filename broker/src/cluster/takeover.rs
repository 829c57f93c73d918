//! Keeping a node's tenants in line with the tenant table: a tenant moved here
//! (`cluster::homes`) is taken over, a tenant moved away is let go.
//!
//! Taking a tenant over at epoch E:
//! 1. write an empty record batch at E through the tenant's shard: from then on the
//!    shard refuses records from the old home (it writes at a lower epoch);
//! 2. wait until this node's replica of the shard has applied that write, so it
//!    holds every record the old home got acknowledged;
//! 3. copy the tenant's records from the replica into the local store;
//! 4. load them into the directory. The tenant's router rebuilds its queues, seats'
//!    loads and assignments from the directory on first use, and its clients, which
//!    reconnect to any node, are served here.
//!
//! Until step 4, logins for the tenant here are answered `tenant_unavailable`
//! (retryable). Letting a tenant go drops it from the directory, stops its router,
//! and tells its sessions to go away (they reconnect and are relayed to the new home).
//!
//! While this node is cut off from a quorum (`cluster::homes`), it lets go of every
//! tenant it is home to the same way, since the majority moves them; once back in
//! touch it takes over again those that did not move.
//!
//! A tenant whose home is this node at epoch 0 (never moved) is trusted as the
//! store has it; one at a higher epoch is taken over again after every start, so a
//! record replicated but not yet written locally before a crash is not missed.

use super::node::ClusterNode;
use crate::context::Ctx;
use crate::routing::Directory;
use crate::session::SessionEvent;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::TenantId;
use switchboard_raft_store::raft::{placement, NodeId, ShardCommand, ShardResponse, TenantWrites};
use switchboard_raft_store::store::durable;
use tokio::sync::watch;

/// How long the local replica may take to apply the fencing write.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Runs until `stop`: reconciles on every change of the tables, and every second
/// (to retry a takeover that failed).
pub async fn run(ctx: Ctx, node: Arc<ClusterNode>, mut stop: watch::Receiver<bool>) {
    let (mut changes, mut cut_off) = (node.changes(), node.cut_off_changes());
    let mut tenants = Tenants::default();
    loop {
        if let Err(e) = reconcile(&ctx, &node, &mut tenants).await {
            tracing::warn!(error = %e, "reconciling this node's tenants");
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = cut_off.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What the loop knows of this node's tenants.
#[derive(Default)]
struct Tenants {
    /// Tenants taken over here, at the epoch they were taken at.
    taken: HashMap<TenantId, u64>,
    /// Tenants let go while this node was cut off, at the epoch they had: served
    /// again from the local store once it is not, if still placed here at that epoch.
    released: HashMap<TenantId, u64>,
}

async fn reconcile(ctx: &Ctx, node: &Arc<ClusterNode>, state: &mut Tenants) -> Result<(), String> {
    let placements = node.off_thread(|n| n.tables().tenants()).await?.map_err(|e| e.to_string())?;
    let me = node.id();
    if node.is_cut_off() {
        // The majority moves these tenants away; their clients must go there too.
        // A tenant whose shard has no replica elsewhere cannot move: it stays.
        let shards = node.off_thread(|n| n.tables().shards()).await?.map_err(|e| e.to_string())?;
        for p in placements.iter().filter(|p| p.home == me) {
            let tenant = TenantId(p.tenant);
            let shard = placement::tenant_shard(tenant, ctx.shards);
            let movable = shards.iter().any(|s| s.shard == shard && s.replicas.iter().any(|r| *r != me));
            if movable && ctx.directory.tenant(tenant).is_some() {
                state.taken.remove(&tenant);
                let sessions = release(ctx, tenant, "this node is cut off from the rest of the cluster; reconnect to another node");
                state.released.insert(tenant, p.epoch);
                tracing::warn!(tenant = tenant.0, sessions, "let the tenant go: this node is cut off");
            }
        }
        return Ok(());
    }
    let back: Vec<(TenantId, u64)> =
        placements.iter().filter(|p| p.home == me && state.released.get(&TenantId(p.tenant)) == Some(&p.epoch)).map(|p| (TenantId(p.tenant), p.epoch)).collect();
    if !back.is_empty() {
        serve_again(ctx, node, &back, state).await?;
    }
    let Tenants { taken, released } = state;
    for p in &placements {
        if node.is_cut_off() {
            break;
        }
        let tenant = TenantId(p.tenant);
        if p.home != me {
            taken.remove(&tenant);
            released.remove(&tenant);
            if ctx.directory.tenant(tenant).is_some() {
                let_go(ctx, tenant, p.home);
            }
        } else if (p.epoch > 0 || released.contains_key(&tenant)) && taken.get(&tenant) != Some(&p.epoch) && released.get(&tenant) != Some(&p.epoch) {
            let started = Instant::now();
            match take_over(ctx, node, tenant, p.epoch).await {
                Ok(records) => {
                    taken.insert(tenant, p.epoch);
                    released.remove(&tenant);
                    ::metrics::counter!(crate::metrics::TENANT_TAKEOVERS, "result" => "ok").increment(1);
                    tracing::info!(tenant = tenant.0, epoch = p.epoch, records, took_ms = started.elapsed().as_millis() as u64, "took the tenant over");
                }
                Err(e) => {
                    ::metrics::counter!(crate::metrics::TENANT_TAKEOVERS, "result" => "failed").increment(1);
                    tracing::warn!(tenant = tenant.0, epoch = p.epoch, error = %e, "taking the tenant over failed; retrying");
                }
            }
        }
    }
    Ok(())
}

/// Serves again, from the local store, tenants let go while this node was cut off
/// and still placed here at the epoch they had. Nobody else served them meanwhile
/// (a move raises the epoch), so nothing needs copying; one fencing write per shard
/// makes sure: a tenant whose epoch its shard has passed moved after all, and is
/// left to the tables.
async fn serve_again(ctx: &Ctx, node: &Arc<ClusterNode>, back: &[(TenantId, u64)], state: &mut Tenants) -> Result<(), String> {
    let mut by_shard: BTreeMap<u32, Vec<TenantWrites>> = BTreeMap::new();
    for &(tenant, epoch) in back {
        by_shard.entry(placement::tenant_shard(tenant, ctx.shards)).or_default().push(TenantWrites { tenant, epoch, writes: Vec::new() });
    }
    let mut ready = HashMap::new();
    for (shard, fences) in by_shard {
        let tenants: Vec<(TenantId, u64)> = fences.iter().map(|f| (f.tenant, f.epoch)).collect();
        match node.write(shard, ShardCommand::Records(fences)).await.map_err(|e| e.to_string())? {
            ShardResponse::Batch(results) if results.len() == tenants.len() => {
                for ((tenant, epoch), result) in tenants.into_iter().zip(results) {
                    if result == ShardResponse::Done {
                        ready.insert(tenant, epoch);
                    } else {
                        state.released.remove(&tenant);
                    }
                }
            }
            other => return Err(format!("unexpected answer to the fencing write: {other:?}")),
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let (loading, wanted) = (ctx.clone(), ready.clone());
    let dir = node
        .off_thread(move |_| Directory::load_where(&loading.store, loading.log.as_ref(), crate::context::now_ms(), |t| wanted.contains_key(&t)))
        .await?
        .map_err(|e| e.to_string())?;
    ctx.directory.absorb(dir);
    tracing::info!(tenants = ready.len(), "serving again the tenants let go while this node was cut off");
    for (tenant, epoch) in ready {
        state.released.remove(&tenant);
        state.taken.insert(tenant, epoch);
    }
    Ok(())
}

/// Drops `tenant`, now served by `home`, from this node.
fn let_go(ctx: &Ctx, tenant: TenantId, home: NodeId) {
    let sessions = release(ctx, tenant, &format!("tenant {} is served by node {home} now; reconnect", tenant.0));
    tracing::info!(tenant = tenant.0, home, sessions, "let the tenant go to its new home");
}

/// Drops `tenant` from the directory, stops its router and sends its sessions
/// `GoAway` with `reason`; the number of sessions told.
fn release(ctx: &Ctx, tenant: TenantId, reason: &str) -> usize {
    ctx.directory.remove_tenant(tenant);
    ctx.routers.retire(tenant);
    let sessions = ctx.registry.of_tenant(tenant);
    for s in &sessions {
        s.do_send(SessionEvent::GoAway { reason: reason.to_string() });
    }
    sessions.len()
}

/// Takes `tenant` over at `epoch`; the number of records copied.
async fn take_over(ctx: &Ctx, node: &Arc<ClusterNode>, tenant: TenantId, epoch: u64) -> Result<usize, String> {
    // A stale copy (the tenant lived here before) must not be served meanwhile.
    if ctx.directory.tenant(tenant).is_some() {
        let_go(ctx, tenant, node.id());
    }
    let shard = placement::tenant_shard(tenant, ctx.shards);
    let fence = ShardCommand::Records(vec![TenantWrites { tenant, epoch, writes: Vec::new() }]);
    match node.write(shard, fence).await.map_err(|e| e.to_string())? {
        ShardResponse::Batch(r) if r == [ShardResponse::Done] => {}
        ShardResponse::Batch(r) if matches!(r.as_slice(), [ShardResponse::Fenced { .. }]) => {
            return Err(format!("the tenant moved on past epoch {epoch}"));
        }
        other => return Err(format!("unexpected answer to the fencing write: {other:?}")),
    }
    let replica = node.replica(shard).ok_or_else(|| format!("this node holds no replica of shard {shard}"))?;
    // Each entry the replica applies changes its metrics: check after each.
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    let mut applied_changes = replica.raft.metrics();
    loop {
        let reader = replica.reader.clone();
        if node.off_thread(move |_| reader.tenant_epoch(tenant)).await?.map_err(|e| e.to_string())? >= epoch {
            break;
        }
        match tokio::time::timeout_at(deadline, applied_changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(format!("the local replica of shard {shard} stopped")),
            Err(_) => return Err(format!("the local replica of shard {shard} did not apply the fencing write within {CATCH_UP:?}")),
        }
    }
    let reader = replica.reader.clone();
    let records = node.off_thread(move |_| reader.tenant_records(tenant)).await?.map_err(|e| e.to_string())?;
    let count = records.len();
    durable(ctx.store.restore_records(records)).await.map_err(|e| e.to_string())?;
    let loading = ctx.clone();
    let dir = node
        .off_thread(move |_| Directory::load_where(&loading.store, loading.log.as_ref(), crate::context::now_ms(), |t| t == tenant))
        .await?
        .map_err(|e| e.to_string())?;
    ctx.directory.absorb(dir);
    Ok(count)
}
