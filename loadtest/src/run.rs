//! The parent's path: discover the node, set up a tenant and agents, split the load
//! into jobs (one per process), run them here or in workers, merge, report.

use crate::admin::{broker_rss, own_cpu_secs, process_cpu_secs, Admin};
use crate::cli::{ChatArgs, Command, CommonArgs, TransportArg};
use crate::job::{AgentCred, Job, Outcome, Scenario};
use crate::net::Net;
use crate::report::{Context as ReportContext, Memory};
use crate::scenario::{self, Barrier};
use crate::stats::{Live, Progress};
use crate::worker::Workers;
use anyhow::{bail, Context, Result};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// File descriptors kept free for everything but client connections.
const FD_RESERVE: u64 = 300;

/// Runs one process's job.
pub async fn run_job(job: &Job, live: Arc<Live>, barrier: &mut Barrier) -> Result<Outcome> {
    let net = Arc::new(Net::new(job));
    match job.scenario {
        Scenario::Chat => scenario::chat::run(job, net, live).await,
        Scenario::Idle => scenario::idle::run(job, net, live, barrier).await,
        Scenario::Connect => scenario::connect::run(job, net, live).await,
    }
}

/// What the scenario flags ask for, independent of how it is split.
struct Request {
    scenario: Scenario,
    common: CommonArgs,
    visitors: u64,
    agents: u64,
    connections: u64,
    rate: f64,
    message_size: usize,
    drain: Duration,
}

impl Request {
    fn from(command: Command) -> Result<Request> {
        let base = |scenario, common| Request {
            scenario,
            common,
            visitors: 0,
            agents: 0,
            connections: 0,
            rate: 0.0,
            message_size: 0,
            drain: Duration::ZERO,
        };
        Ok(match command {
            Command::Chat(ChatArgs { common, visitors, agents, rate, message_size, drain }) => Request {
                visitors: visitors as u64,
                agents: agents as u64,
                rate,
                message_size: message_size as usize,
                drain,
                ..base(Scenario::Chat, common)
            },
            Command::Idle(a) => Request { connections: a.connections as u64, ..base(Scenario::Idle, a.common) },
            Command::Connect(a) => Request { connections: a.connections as u64, ..base(Scenario::Connect, a.common) },
            Command::Worker => bail!("the worker subcommand is internal"),
        })
    }

    fn total_connections(&self) -> u64 {
        match self.scenario {
            Scenario::Chat => self.visitors + self.agents,
            _ => self.connections,
        }
    }
}

/// Splits `total` into `parts` shares differing by at most one.
pub fn shares(total: u64, parts: u64) -> Vec<u64> {
    let parts = parts.max(1);
    (0..parts).map(|i| total / parts + u64::from(i < total % parts)).collect()
}

/// Worker processes needed for `total` connections.
pub fn worker_count(transport: TransportArg, total: u64, per_process: u64) -> u64 {
    match transport {
        // QUIC connections share a few UDP sockets: no file limit to split for.
        TransportArg::Quic => 1,
        TransportArg::Tcp => total.div_ceil(per_process.max(1)).max(1),
    }
}

/// Runs the scenario; returns whether delivery verified clean.
pub async fn run(command: Command, nofile: u64) -> Result<bool> {
    let req = Request::from(command)?;
    let common = req.common.clone();
    let admin = Admin::new(&common.admin_url, &common.admin_token)?;
    let node = admin.node().await?;
    let targets = if common.targets.is_empty() {
        vec![match common.transport {
            TransportArg::Tcp => node.addresses.tcp,
            TransportArg::Quic => node.addresses.quic,
        }]
    } else {
        common.targets.clone()
    };
    let quic_cert_der = match common.transport {
        TransportArg::Quic => hex::decode(node.quic_cert_der_hex.trim()).context("the node's quic_cert_der_hex is not hex")?,
        TransportArg::Tcp => Vec::new(),
    };
    let per_process = (common.per_process as u64).min(nofile.saturating_sub(FD_RESERVE).max(1));
    let workers = worker_count(common.transport, req.total_connections(), per_process);
    if req.scenario == Scenario::Chat && req.agents < workers {
        bail!("{} connections need {workers} worker processes, and each needs an agent: use --agents {workers} or more", req.total_connections());
    }

    let concurrency = common.concurrency.unwrap_or(common.transport.default_concurrency());
    let run_id: u32 = rand::thread_rng().gen();
    let mut jobs = Vec::new();
    let mut first_index = 0;
    let (visitor_shares, agent_shares, connection_shares) =
        (shares(req.visitors, workers), shares(req.agents, workers), shares(req.connections, workers));
    let shared_tenant = match req.scenario {
        Scenario::Chat => None,
        _ => Some(admin.create_tenant(&format!("loadtest-{run_id:08x}")).await?),
    };
    for w in 0..workers as usize {
        let (tenant, agents, visitors) = match shared_tenant {
            Some(t) => (t, Vec::new(), 0),
            None => {
                let name = if workers > 1 { format!("loadtest-{run_id:08x}-w{w}") } else { format!("loadtest-{run_id:08x}") };
                let tenant = admin.create_tenant(&name).await?;
                let capacity = visitor_shares[w].div_ceil(agent_shares[w].max(1)).max(1) as u32;
                let mut agents = Vec::new();
                for a in 0..agent_shares[w] {
                    let (id, token) = admin.create_agent(tenant, &format!("lt-agent-{a}"), capacity).await?;
                    agents.push(AgentCred { id, token });
                }
                (tenant, agents, visitor_shares[w])
            }
        };
        let job = Job {
            scenario: req.scenario,
            worker: (workers > 1).then_some(w),
            tenant,
            agents,
            visitors,
            connections: connection_shares[w],
            rate: if req.visitors > 0 { req.rate * visitors as f64 / req.visitors as f64 } else { 0.0 },
            message_size: req.message_size,
            first_index,
            targets: targets.clone(),
            transport: common.transport,
            quic_cert_der: quic_cert_der.clone(),
            server_name: common.server_name.clone(),
            source_ips: common.source_ips,
            concurrency: (concurrency as u64).div_ceil(workers).max(1) as u32,
            duration: common.duration,
            drain: req.drain,
            connect_timeout: common.connect_timeout,
            connect_phase: common.connect_phase,
        };
        first_index += job.connection_count();
        jobs.push(job);
    }
    let hard_limit = jobs[0].hard_limit() + Duration::from_secs(30);

    let rss_before = match req.scenario {
        Scenario::Idle => Some(broker_rss(&admin, node.pid).await?),
        _ => None,
    };
    let cpu_start = (std::time::Instant::now(), process_cpu_secs(&admin, node.pid).await, own_cpu_secs());
    let (outcome, rss_after) = if workers == 1 {
        run_here(&jobs[0], &admin, node.pid, rss_before.is_some(), hard_limit).await?
    } else {
        run_in_workers(&jobs, &admin, node.pid, rss_before.is_some(), hard_limit).await?
    };
    let memory = match (rss_before, rss_after) {
        (Some((before, source)), Some(after)) => Some(Memory { before, after, source }),
        _ => None,
    };
    let wall = cpu_start.0.elapsed().as_secs_f64().max(1e-3);
    let cpu = match (cpu_start.1, process_cpu_secs(&admin, node.pid).await, cpu_start.2, own_cpu_secs()) {
        (Some(b0), Some(b1), Some(l0), Some(l1)) => Some(((b1 - b0) / wall, (l1 - l0) / wall)),
        _ => None,
    };
    let rss_bytes_end = broker_rss(&admin, node.pid).await.ok().map(|(bytes, _)| bytes);
    let context = ReportContext {
        scenario: req.scenario,
        transport: common.transport,
        workers,
        targets,
        duration: common.duration,
        node_version: node.version.clone(),
        memory,
        cpu,
        rss_bytes_end,
    };
    let report = crate::report::build(&context, &outcome);
    println!("{}", crate::report::table(&report));
    if let Some(path) = &common.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(outcome.verdict.is_clean())
}

/// Samples the broker's memory half-way through the idle phase.
async fn sample_plateau(admin: Admin, pid: u32, duration: Duration) -> Option<u64> {
    tokio::time::sleep(duration / 2).await;
    broker_rss(&admin, pid).await.ok().map(|(bytes, _source)| bytes)
}

async fn run_here(job: &Job, admin: &Admin, pid: u32, sample: bool, limit: Duration) -> Result<(Outcome, Option<u64>)> {
    let live = Live::new();
    let progress = Progress::start({ let live = live.clone(); move || live.snapshot() }, limit);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut barrier = Barrier::Local(Some(tx));
    let sampler = {
        let (admin, duration) = (admin.clone(), job.duration);
        tokio::spawn(async move {
            match (sample, rx.await) {
                (true, Ok(())) => sample_plateau(admin, pid, duration).await,
                _ => None,
            }
        })
    };
    let outcome = tokio::time::timeout(limit, run_job(job, live, &mut barrier))
        .await
        .with_context(|| format!("the run exceeded its hard limit of {limit:?}"))??;
    drop(barrier);
    drop(progress);
    let rss_after = tokio::time::timeout(Duration::from_secs(20), sampler).await.ok().and_then(|r| r.ok()).flatten();
    Ok((outcome, rss_after))
}

async fn run_in_workers(jobs: &[Job], admin: &Admin, pid: u32, sample: bool, limit: Duration) -> Result<(Outcome, Option<u64>)> {
    let workers = Workers::start(jobs).await?;
    let progress_source = workers.progress.clone();
    let progress = Progress::start(move || Workers::total(&progress_source), limit);
    let mut sampler = None;
    let duration = jobs[0].duration;
    let outcomes = workers
        .collect(limit, || {
            if sample {
                sampler = Some(tokio::spawn(sample_plateau(admin.clone(), pid, duration)));
            }
        })
        .await?;
    drop(progress);
    let mut total = Outcome::default();
    for o in &outcomes {
        total.merge(o);
    }
    let rss_after = match sampler {
        Some(task) => tokio::time::timeout(Duration::from_secs(20), task).await.ok().and_then(|r| r.ok()).flatten(),
        None => None,
    };
    Ok((total, rss_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(shares(7, 1), vec![7]);
        assert_eq!(shares(40_000, 3).iter().sum::<u64>(), 40_000);
    }

    #[test]
    fn only_large_tcp_runs_use_workers() {
        assert_eq!(worker_count(TransportArg::Tcp, 18_000, 18_000), 1);
        assert_eq!(worker_count(TransportArg::Tcp, 18_001, 18_000), 2);
        assert_eq!(worker_count(TransportArg::Tcp, 50_000, 18_000), 3);
        assert_eq!(worker_count(TransportArg::Quic, 50_000, 18_000), 1);
    }
}
