//! Live connections, by identity (for delivery) and by connection id (for the origin
//! of a message and for shutdown).

use crate::session::SessionEvent;
use actix::Recipient;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_protocol::{Participant, TenantId};

/// A connection's id, unique within the node's lifetime.
pub type ConnId = u64;

/// Live sessions.
#[derive(Default)]
pub struct Registry {
    by_identity: DashMap<(TenantId, Participant), Vec<(ConnId, Recipient<SessionEvent>)>>,
    by_conn: DashMap<ConnId, Recipient<SessionEvent>>,
    next: AtomicU64,
}

impl Registry {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a session; returns how many sessions the identity has now.
    pub fn register(&self, tenant: TenantId, who: Participant, conn: ConnId, addr: Recipient<SessionEvent>) -> usize {
        self.by_conn.insert(conn, addr.clone());
        // Most identities have one connection: don't reserve room for four.
        let mut list = self.by_identity.entry((tenant, who)).or_insert_with(|| Vec::with_capacity(1));
        list.push((conn, addr));
        list.len()
    }

    /// Removes a session; returns how many sessions the identity still has.
    pub fn unregister(&self, tenant: TenantId, who: Participant, conn: ConnId) -> usize {
        self.by_conn.remove(&conn);
        let key = (tenant, who);
        let left = match self.by_identity.get_mut(&key) {
            Some(mut list) => {
                list.retain(|(c, _)| *c != conn);
                list.len()
            }
            None => 0,
        };
        if left == 0 {
            self.by_identity.remove_if(&key, |_, l| l.is_empty());
        }
        left
    }

    /// Calls `f` for each live session of an identity.
    pub fn for_each(&self, tenant: TenantId, who: Participant, mut f: impl FnMut(ConnId, &Recipient<SessionEvent>)) {
        if let Some(list) = self.by_identity.get(&(tenant, who)) {
            for (conn, addr) in list.iter() {
                f(*conn, addr);
            }
        }
    }

    /// Sends `event` to every session of an identity.
    pub fn notify(&self, tenant: TenantId, who: Participant, event: SessionEvent) {
        self.for_each(tenant, who, |_, addr| addr.do_send(event.clone()));
    }

    /// A session by connection id.
    pub fn by_conn(&self, conn: ConnId) -> Option<Recipient<SessionEvent>> {
        self.by_conn.get(&conn).map(|r| r.clone())
    }

    /// Every live session of `tenant`.
    pub fn of_tenant(&self, tenant: TenantId) -> Vec<Recipient<SessionEvent>> {
        self.by_identity.iter().filter(|e| e.key().0 == tenant).flat_map(|e| e.value().iter().map(|(_, r)| r.clone()).collect::<Vec<_>>()).collect()
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Recipient<SessionEvent>> {
        self.by_conn.iter().map(|r| r.value().clone()).collect()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }
}
