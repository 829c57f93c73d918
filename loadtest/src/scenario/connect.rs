//! `connect`: a connection and login storm. Every connection is held until the
//! storm ends, so the node sees them all at once.

use super::connect_many;
use crate::job::{Job, Outcome};
use crate::net::Net;
use crate::stats::Live;
use anyhow::{bail, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchboard_client::{connect, hello, Connection};
use switchboard_protocol::{Auth, TenantId};
use tokio::time::Instant;

/// One connection of the storm.
struct Attempt {
    /// Held open until the storm ends.
    _connection: Connection,
    /// TCP connect or QUIC handshake time.
    connected: Duration,
    /// `Hello` to `Welcome` time, or why the login failed.
    login: Result<Duration, String>,
}

/// Runs the connect scenario for `job`. The storm is bounded by the connection
/// count and by the shorter of `--duration` and `--connect-phase`.
pub async fn run(job: &Job, net: Arc<Net>, live: Arc<Live>) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let tenant = TenantId(job.tenant);
    let limit = job.duration.min(job.connect_phase);
    let storm = connect_many(job.connections, job.concurrency, limit, |i| {
        let (net, live) = (net.clone(), live.clone());
        async move {
            let options = net.options(i)?;
            let started = Instant::now();
            let mut connection = connect(&options).await?;
            let connected = started.elapsed();
            let login_started = Instant::now();
            let login = match connection.login(hello(Auth::Anonymous { tenant })).await {
                Ok(_) => {
                    Live::bump(&live.connections);
                    Ok(login_started.elapsed())
                }
                Err(e) => Err(e.to_string()),
            };
            Ok(Attempt { _connection: connection, connected, login })
        }
    })
    .await;
    outcome.connect_secs = storm.elapsed.as_secs_f64();
    outcome.measured_secs = outcome.connect_secs;
    outcome.connect_errors = storm.errors.len() as u64;
    live.errors.fetch_add(outcome.connect_errors, Ordering::Relaxed);
    for e in &storm.errors {
        outcome.count_error(e);
    }
    if storm.ok.is_empty() {
        bail!("no connection could be made: {}", storm.errors.first().map_or("nothing to connect", |e| e.as_str()));
    }
    outcome.wire_bytes_read = net.counters.read();
    outcome.wire_bytes_written = net.counters.written();
    for (_, attempt) in &storm.ok {
        outcome.connect_latency.record(attempt.connected);
        match &attempt.login {
            Ok(took) => {
                outcome.connections += 1;
                outcome.login_latency.record(*took);
            }
            Err(e) => {
                outcome.connect_errors += 1;
                outcome.count_error(e);
                Live::bump(&live.errors);
            }
        }
    }
    if outcome.connections == 0 {
        bail!("no connection could log in: {}", outcome.errors_by_kind.keys().next().map_or("", |e| e.as_str()));
    }
    live.connections.fetch_sub(outcome.connections, Ordering::Relaxed);
    drop(storm);
    Ok(outcome)
}
