//! `idle`: log in many anonymous visitors, then hold them idle (each session pings
//! on the node's heartbeat) while the frame bytes are counted.

use super::{connect_many, Barrier};
use crate::job::{Job, Outcome};
use crate::net::Net;
use crate::stats::Live;
use anyhow::{bail, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchboard_client::{Session, SessionConfig};
use switchboard_protocol::{Auth, TenantId};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Limit on closing every session at the end.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Runs the idle scenario for `job`; `barrier` is passed once everyone is connected.
pub async fn run(job: &Job, net: Arc<Net>, live: Arc<Live>, barrier: &mut Barrier) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let tenant = TenantId(job.tenant);
    let connected = connect_many(job.connections, job.concurrency, job.connect_phase, |i| {
        let (net, live) = (net.clone(), live.clone());
        async move {
            let options = net.options(i)?;
            let mut config = SessionConfig::new(options, Auth::Anonymous { tenant });
            config.event_capacity = 16;
            let started = Instant::now();
            let session = Session::connect(config).await?;
            let took = started.elapsed();
            Live::bump(&live.connections);
            Ok((session, took))
        }
    })
    .await;
    outcome.connect_errors = connected.errors.len() as u64;
    live.errors.fetch_add(outcome.connect_errors, Ordering::Relaxed);
    for e in &connected.errors {
        outcome.count_error(e);
    }
    if connected.ok.is_empty() {
        bail!("no visitor could log in: {}", connected.errors.first().map_or("nothing to connect", |e| e.as_str()));
    }
    outcome.connect_secs = connected.elapsed.as_secs_f64();
    outcome.connections = connected.ok.len() as u64;
    let mut sessions = Vec::with_capacity(connected.ok.len());
    for (_, (session, took)) in connected.ok {
        outcome.login_latency.record(took);
        sessions.push(session);
    }
    outcome.heartbeat_secs = sessions[0].welcome().heartbeat_secs;

    barrier.connected(job.connect_phase + Duration::from_secs(30)).await;
    let bytes_before = net.counters.total();
    let idle_start = Instant::now();
    tokio::time::sleep(job.duration).await;
    outcome.idle_secs = idle_start.elapsed().as_secs_f64();
    outcome.idle_bytes = net.counters.total() - bytes_before;

    for s in &sessions {
        let stats = s.stats();
        outcome.reconnects += stats.logins.saturating_sub(1);
        if s.handle().is_closed() {
            outcome.count_error("session closed during the idle phase");
        }
    }
    shutdown_all(sessions, &live).await;
    Ok(outcome)
}

/// Closes sessions, 256 at a time, within [`SHUTDOWN_LIMIT`].
pub async fn shutdown_all(sessions: Vec<Session>, live: &Live) {
    let until = Instant::now() + SHUTDOWN_LIMIT;
    let mut set = JoinSet::new();
    for session in sessions {
        while set.len() >= 256 {
            if tokio::time::timeout_at(until, set.join_next()).await.is_err() {
                set.abort_all();
                return;
            }
        }
        set.spawn(session.shutdown());
        live.connections.fetch_sub(1, Ordering::Relaxed);
    }
    while let Ok(Some(_)) = tokio::time::timeout_at(until, set.join_next()).await {}
    set.abort_all();
}
