//! `chat`: agents and visitors log in, visitors send at the total rate for the
//! duration, agents reply once to each visitor message; then sending stops, messages
//! in flight get a bounded time to arrive, and delivery is verified.

use super::party::{self, PartyResult, Phase, Recorder, Role};
use super::{connect_many, Connected};
use crate::job::{Job, Outcome};
use crate::net::Net;
use crate::stats::Live;
use crate::verify::{self, Conversation};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{Session, SessionConfig};
use switchboard_protocol::{Auth, ConversationId, Participant, TenantId};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long participant tasks get to finish after `Stop`.
const COLLECT_LIMIT: Duration = Duration::from_secs(30);

type Logged = (Session, Arc<Mutex<Recorder>>);

/// Logs in `auths` as sessions with recording taps; connection numbers start at `base`.
async fn log_in(job: &Job, net: &Arc<Net>, live: &Arc<Live>, base: u64, auths: Vec<Auth>, agent: bool) -> Connected<Logged> {
    let auths = Arc::new(auths);
    let count = auths.len() as u64;
    connect_many(count, job.concurrency, job.connect_phase, |i| {
        let (net, live, auths) = (net.clone(), live.clone(), auths.clone());
        async move {
            let options = net.options(base + i)?;
            let (recorder, tap) = Recorder::tap(agent);
            let mut config = SessionConfig::new(options, auths[i as usize].clone());
            config.tap = Some(tap);
            config.event_capacity = 4096;
            let session = Session::connect(config).await?;
            Live::bump(&live.connections);
            Ok((session, recorder))
        }
    })
    .await
}

/// Runs the chat scenario for `job`.
pub async fn run(job: &Job, net: Arc<Net>, live: Arc<Live>) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let started = Instant::now();
    let agent_auths: Vec<Auth> = job.agents.iter().map(|a| Auth::Agent { token: a.token.clone() }).collect();
    let agents = log_in(job, &net, &live, 0, agent_auths, true).await;
    count_failures(&mut outcome, &agents, &live);
    if agents.ok.is_empty() {
        bail!("no agent could log in: {}", first_error(&agents));
    }
    let tenant = TenantId(job.tenant);
    let visitor_auths = vec![Auth::Anonymous { tenant }; job.visitors as usize];
    let visitors = log_in(job, &net, &live, job.agents.len() as u64, visitor_auths, false).await;
    count_failures(&mut outcome, &visitors, &live);
    if visitors.ok.is_empty() {
        bail!("no visitor could log in: {}", first_error(&visitors));
    }
    outcome.connections = (agents.ok.len() + visitors.ok.len()) as u64;
    outcome.connect_secs = started.elapsed().as_secs_f64();
    if let Some((_, (first_agent, _))) = agents.ok.first() {
        outcome.heartbeat_secs = first_agent.welcome().heartbeat_secs;
    }

    // Each visitor's mean interval so that all of them together send `rate` per second.
    let interval = Duration::from_secs_f64(visitors.ok.len() as f64 / job.rate.max(1e-6));
    let hard_stop = Instant::now() + job.duration + job.drain + COLLECT_LIMIT;
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let mut tasks = JoinSet::new();
    let roles = agents.ok.into_iter().map(|p| (p, Role::Agent));
    let roles = roles.chain(visitors.ok.into_iter().map(|p| (p, Role::Visitor { interval })));
    for ((_, (session, recorder)), role) in roles {
        let (live, phase) = (live.clone(), phase_rx.clone());
        tasks.spawn(party::run(session, recorder, role, job.message_size, live, phase, hard_stop));
    }

    let bytes_before = (net.counters.read(), net.counters.written());
    let sending = Instant::now();
    tokio::time::sleep(job.duration).await;
    let _ = phase_tx.send(Phase::Drain);
    outcome.measured_secs = sending.elapsed().as_secs_f64();
    drain(&live, job.drain).await;
    let _ = phase_tx.send(Phase::Stop);
    outcome.wire_bytes_read = net.counters.read() - bytes_before.0;
    outcome.wire_bytes_written = net.counters.written() - bytes_before.1;

    let mut results = Vec::new();
    let collect_until = Instant::now() + COLLECT_LIMIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(collect_until, tasks.join_next()).await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => outcome.count_error(&format!("participant task failed: {e}")),
        }
    }
    if !tasks.is_empty() {
        outcome.count_error("participant task did not stop in time");
        tasks.abort_all();
    }
    let snapshot = live.snapshot();
    outcome.sent = snapshot.sent;
    outcome.accepted = snapshot.accepted;
    outcome.delivered = snapshot.delivered;
    for r in &results {
        outcome.accept_latency.merge(&r.accept);
        outcome.deliver_latency.merge(&r.deliver);
        outcome.send_failures += r.send_failures;
        outcome.throttled += r.throttled;
        outcome.error_events += r.error_events;
        outcome.reconnects += r.stats.logins.saturating_sub(1);
        outcome.session_duplicates += r.stats.duplicates;
        outcome.session_gaps += r.stats.gaps;
    }
    let mut verdict = verify_results(&results);
    outcome.anomaly_examples = std::mem::take(&mut verdict.anomalies)
        .iter()
        .map(|a| {
            let who = match a.party.and_then(|p| results.get(p)) {
                Some(r) => r.identity.to_string(),
                None => "everyone".to_string(),
            };
            format!("{:?}: {who} {} seq {} (arrived {})", a.kind, a.conversation, a.seq, a.arrivals.join(", "))
        })
        .collect();
    outcome.verdict = verdict;
    Ok(outcome)
}

/// Waits until every send is answered and every accepted message delivered, or
/// `limit` passes.
async fn drain(live: &Live, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let s = live.snapshot();
        let failed = live.failed.load(Ordering::Relaxed);
        if s.accepted + failed >= s.sent && s.delivered >= s.accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count_failures<T>(outcome: &mut Outcome, connected: &Connected<T>, live: &Live) {
    outcome.connect_errors += connected.errors.len() as u64;
    live.errors.fetch_add(connected.errors.len() as u64, Ordering::Relaxed);
    for e in &connected.errors {
        outcome.count_error(e);
    }
}

fn first_error<T>(connected: &Connected<T>) -> String {
    connected.errors.first().cloned().unwrap_or_else(|| "nothing to connect".into())
}

/// Builds the verification input from every participant's records.
fn verify_results(results: &[PartyResult]) -> verify::Verdict {
    let party_of: HashMap<Participant, usize> = results.iter().enumerate().map(|(i, r)| (r.identity, i)).collect();
    let mut members: BTreeMap<ConversationId, Vec<usize>> = BTreeMap::new();
    let mut add = |conversation: ConversationId, who: Participant| {
        if let Some(&party) = party_of.get(&who) {
            let list = members.entry(conversation).or_default();
            if !list.contains(&party) {
                list.push(party);
            }
        }
    };
    let mut streams = Vec::new();
    for (i, r) in results.iter().enumerate() {
        streams.extend(r.recorder.lock().unwrap_or_else(|p| p.into_inner()).streams(i));
        for &c in &r.own_conversations {
            add(c, r.identity);
        }
        for &(c, visitor, agent) in &r.assignments {
            add(c, Participant::Visitor(visitor));
            if let Some(agent) = agent {
                add(c, Participant::Agent(agent));
            }
        }
    }
    let conversations: Vec<Conversation> =
        members.into_iter().map(|(id, parties)| Conversation { id, parties }).collect();
    verify::verify(&streams, &conversations)
}
