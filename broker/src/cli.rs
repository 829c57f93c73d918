//! `switchboard cluster ...`: operator commands against a running node's admin API.

use crate::cluster::status::ClusterStatus;
use switchboard_raft_store::raft::NodeState;
use clap::{Args, Subcommand};

/// Where the node is and how to authenticate.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The node's admin API.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token [default: read from ./data/admin-token].
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Cluster operations.
#[derive(Subcommand, Clone, Debug)]
pub enum ClusterCommand {
    /// Nodes, their state, leaders per node, shard replica counts and replication lag.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the answer of GET /v1/cluster as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move every replica off a node so it can be removed.
    Drain {
        /// The node's id.
        node: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a drained node from the cluster (then stop its process).
    Remove {
        /// The node's id.
        node: u64,
        #[command(flatten)]
        target: Target,
    },
}

impl Target {
    fn token(&self) -> Result<String, String> {
        if let Some(t) = &self.admin_token {
            return Ok(t.clone());
        }
        std::fs::read_to_string("data/admin-token")
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("no --admin-token (or SWITCHBOARD_ADMIN_TOKEN) and cannot read data/admin-token: {e}"))
    }

    fn request(&self, method: &str, path: &str) -> Result<ureq::Response, String> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let token = self.token()?;
        match ureq::request(method, &url).set("authorization", &format!("Bearer {token}")).timeout(std::time::Duration::from_secs(10)).call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) => Err(format!("{method} {url}: {code} {}", r.into_string().unwrap_or_default())),
            Err(e) => Err(format!("{method} {url}: {e}")),
        }
    }
}

/// Runs a cluster command; the text to print, or why it failed.
pub fn run(command: ClusterCommand) -> Result<String, String> {
    match command {
        ClusterCommand::Status { target, json } => {
            let body = target.request("GET", "/v1/cluster")?.into_string().map_err(|e| e.to_string())?;
            if json {
                return Ok(body);
            }
            let status: ClusterStatus = serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
            Ok(render(&status))
        }
        ClusterCommand::Drain { node, target } => {
            target.request("POST", &format!("/v1/cluster/nodes/{node}/drain"))?;
            Ok(format!("node {node} is draining; `switchboard cluster status` shows its replicas leave"))
        }
        ClusterCommand::Remove { node, target } => {
            target.request("DELETE", &format!("/v1/cluster/nodes/{node}"))?;
            Ok(format!("node {node} removed; stop its process"))
        }
    }
}

/// The status as a table.
pub fn render(s: &ClusterStatus) -> String {
    let mut out = format!(
        "as seen by node {}: control leader {}, {} shards x {} replicas\n",
        s.node,
        s.control_leader.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()),
        s.shard_count.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        s.replication.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
    );
    out += &format!("{:>6}  {:<9} {:<7} {:>5} {:>8}  {:<22} {}\n", "node", "state", "role", "leads", "replicas", "peer", "client");
    for n in &s.nodes {
        let replicas = s.shards.iter().filter(|sh| sh.replicas.contains(&n.id)).count();
        let role = if n.voter { "voter" } else { "learner" };
        out += &format!("{:>6}  {:<9} {:<7} {:>5} {:>8}  {:<22} {}\n", n.id, format!("{:?}", n.state), role, n.leads, replicas, n.peer, n.client);
    }
    let want = s.replication.unwrap_or(1).min(s.nodes.iter().filter(|n| n.state == NodeState::Active).count().max(1) as u32) as usize;
    let short = s.shards.iter().filter(|sh| sh.replicas.len() < want).count();
    let leaderless = s.shards.iter().filter(|sh| sh.here.is_some() && sh.leader.is_none()).count();
    let lag = s.shards.iter().filter_map(|sh| sh.here.as_ref()).flat_map(|h| h.lag.values().copied()).max().unwrap_or(0);
    out += &format!("shards below {want} replicas: {short}; shards here without a known leader: {leaderless}; largest replication lag seen here: {lag} entries\n");
    out
}
