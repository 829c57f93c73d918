//! Where each tenant's single router lives on this node.

use super::TenantRouter;
use crate::context::Ctx;
use actix::prelude::*;
use dashmap::DashMap;
use switchboard_protocol::TenantId;

/// The routers of every tenant, started on demand on one arbiter.
pub struct Routers {
    map: DashMap<TenantId, Addr<TenantRouter>>,
    arbiter: ArbiterHandle,
}

impl Routers {
    /// Routers that will run on `arbiter`.
    pub fn new(arbiter: ArbiterHandle) -> Self {
        Routers { map: DashMap::new(), arbiter }
    }

    /// The router of `tenant`, started if needed.
    pub fn get(&self, tenant: TenantId, ctx: &Ctx) -> Addr<TenantRouter> {
        if let Some(addr) = self.map.get(&tenant) {
            if addr.connected() {
                return addr.clone();
            }
        }
        self.map
            .entry(tenant)
            .and_modify(|addr| {
                if !addr.connected() {
                    let ctx = ctx.clone();
                    *addr = TenantRouter::start_in_arbiter(&self.arbiter, move |_| TenantRouter::restore(tenant, ctx));
                }
            })
            .or_insert_with(|| {
                let ctx = ctx.clone();
                TenantRouter::start_in_arbiter(&self.arbiter, move |_| TenantRouter::restore(tenant, ctx))
            })
            .clone()
    }

    /// Stops `tenant`'s router here (the tenant is served by another node now).
    pub fn retire(&self, tenant: TenantId) {
        if let Some((_, addr)) = self.map.remove(&tenant) {
            addr.do_send(Retire);
        }
    }
}

/// Stops a router at once.
#[derive(Message)]
#[rtype(result = "()")]
struct Retire;

impl Handler<Retire> for TenantRouter {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
