//! Measures the CPU an idle 3-node cluster spends on raft: three `ClusterNode`s in
//! this process (64 shards, 3 replicas each, so 195 raft groups with the control
//! plane), linked by the in-process peer transport (requests are still encoded and
//! decoded as on the wire). Waits until every shard has three voters, then samples
//! this process's CPU time from /proc over the window.
//!
//! cargo run --release -p switchboard-broker --example idle_cluster -- [SECONDS] [SHARDS]

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_broker::cluster::{ClusterConfig, ClusterNode, Faults, LocalTransport, PeerHandler};
use switchboard_raft_store::raft::{NodeAddr, RaftDb};

fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let shards: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let transport = LocalTransport::new();
    let faults = Faults::new(transport.clone());
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let dir = tempfile::tempdir()?;
        let db = RaftDb::open(dir.path())?;
        let mut config = ClusterConfig::new(id, NodeAddr { peer: format!("node-{id}"), client: String::new() });
        config.bootstrap = id == 1;
        config.seeds = vec!["node-1".into()];
        config.shard_count = shards;
        let node = ClusterNode::start(config, db, Arc::new(faults.clone()), None).await?;
        let handler: Arc<dyn PeerHandler> = node.clone();
        transport.register(&node.addr().peer, Arc::downgrade(&handler));
        nodes.push(node);
        dirs.push(dir);
    }
    let started = Instant::now();
    loop {
        let replicated = nodes.iter().map(|n| n.replicas().iter().filter(|r| r.leader == Some(n.id()) && r.voters.len() == 3).count()).sum::<usize>();
        if replicated == shards as usize {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {replicated} of {shards} shards reached three voters in 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaders = |nodes: &[Arc<ClusterNode>]| -> Vec<usize> { nodes.iter().map(|n| n.replicas().iter().filter(|r| r.leader == Some(n.id())).count()).collect() };
    println!("{shards} shards x 3 replicas on 3 nodes after {:.1} s; shard leaders per node: {:?}", started.elapsed().as_secs_f64(), leaders(&nodes));
    // Let leader moves (preferred leaders claiming their shards) settle before sampling.
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!("shard leaders per node after 15 s: {:?}", leaders(&nodes));
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    println!("idle: {:.1}% of one core for the whole 3-node cluster over {wall:.0} s ({:.2} ms CPU per second per raft group)", 100.0 * cpu / wall, 1000.0 * cpu / wall / (3.0 * (shards as f64 + 1.0)));
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
