//! Node configuration: embedded defaults, an optional TOML file, then flags and
//! environment variables (clap), validated once with every problem reported together.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use switchboard_protocol::codec::MAX_CONFIGURABLE_FRAME_LEN;

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where RocksDB, the QUIC certificate, the admin token and ports.json live.
    pub data_dir: PathBuf,
    /// Admin/REST API, health and metrics.
    pub http_addr: String,
    /// Client TCP listener.
    pub tcp_addr: String,
    /// Client QUIC listener (UDP).
    pub quic_addr: String,
    /// Bootstrap admin token. When unset, one is generated into `DATA_DIR/admin-token`.
    pub admin_token: Option<String>,
    /// Heartbeat interval announced to TCP clients, seconds. Long, for mobile battery.
    pub tcp_heartbeat_secs: u32,
    /// Heartbeat interval announced to QUIC clients, seconds. Short: NAT UDP mappings
    /// often expire after ~30 s of silence.
    pub quic_heartbeat_secs: u32,
    /// Time a new connection has to send its `Hello`, seconds.
    pub login_timeout_secs: u32,
    /// Largest frame payload accepted, bytes.
    pub max_frame_len: u32,
    /// Largest chat message body accepted, bytes.
    pub max_message_len: u32,
    /// Bytes that may wait in one connection's outbound queue before it is closed as a
    /// slow consumer.
    pub outbound_queue_bytes: usize,
    /// Chats an agent holds at once unless set per agent.
    pub default_agent_capacity: u32,
    /// Seconds an agent whose last connection dropped keeps its chats before they are
    /// requeued at the head of the queue (absorbs reconnects).
    pub agent_grace_secs: u32,
    /// PEM certificate for QUIC; when unset a self-signed one is kept in the data dir.
    pub quic_cert: Option<PathBuf>,
    /// PEM private key for `quic_cert`.
    pub quic_key: Option<PathBuf>,
    /// Most store operations in one group commit.
    pub store_max_batch_ops: usize,
    /// Session arbiters (threads); 0 means one per core.
    pub workers: usize,
    /// A conversation without a message for this long is closed, seconds (0 = never).
    pub auto_close_secs: u32,
    /// A visitor writing again within this long after a close reopens that conversation
    /// instead of starting a new one, seconds (0 = never).
    pub reopen_window_secs: u32,
    /// First webhook retry delay, ms (doubles per attempt).
    pub webhook_retry_base_ms: u64,
    /// Longest webhook retry delay, ms.
    pub webhook_retry_max_ms: u64,
    /// Timeout of one webhook request, seconds.
    pub webhook_timeout_secs: u32,
    /// How often the outbox is scanned, ms.
    pub webhook_poll_ms: u32,
    /// A message to a visitor unacknowledged this long triggers `push.requested`, seconds.
    pub push_after_secs: u32,
    /// Seconds to drain connections on SIGTERM before exiting.
    pub shutdown_grace_secs: u32,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
    /// This node's id in the cluster (unique, never reused).
    pub node_id: u64,
    /// Shards of a new cluster (fixed once it is created; the stored value wins).
    pub shards: u32,
    /// Replicas per shard (capped by the number of nodes).
    pub replication: u32,
    /// Peer link listener (raft and node-to-node traffic), TCP.
    pub peer_addr: String,
    /// The peer address other nodes dial; unset: the bound `peer_addr`.
    pub advertise_peer_addr: Option<String>,
    /// Peer addresses (`host:port`) of nodes to join through. A node without seeds
    /// and without state creates a cluster of one; seeds are ignored once it has state.
    pub seeds: Vec<String>,
    /// Create a new cluster even though seeds are set (exactly one node of a new
    /// cluster should).
    pub bootstrap: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_addr: "127.0.0.1:8080".into(),
            tcp_addr: "127.0.0.1:7000".into(),
            quic_addr: "127.0.0.1:7001".into(),
            admin_token: None,
            tcp_heartbeat_secs: 270,
            quic_heartbeat_secs: 25,
            login_timeout_secs: 10,
            max_frame_len: switchboard_protocol::DEFAULT_MAX_FRAME_LEN,
            max_message_len: 16 * 1024,
            outbound_queue_bytes: 1024 * 1024,
            default_agent_capacity: 20,
            agent_grace_secs: 60,
            quic_cert: None,
            quic_key: None,
            store_max_batch_ops: 4096,
            workers: 0,
            auto_close_secs: 1800,
            reopen_window_secs: 600,
            webhook_retry_base_ms: 1000,
            webhook_retry_max_ms: 300_000,
            webhook_timeout_secs: 5,
            webhook_poll_ms: 200,
            push_after_secs: 30,
            shutdown_grace_secs: 10,
            // openraft warns about routine events (votes, membership changes).
            log: "info,openraft=error".into(),
            node_id: 1,
            shards: 64,
            replication: 3,
            peer_addr: "127.0.0.1:7002".into(),
            advertise_peer_addr: None,
            seeds: Vec::new(),
            bootstrap: false,
        }
    }
}

/// Flags (each with an environment variable) that override the file and defaults.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (keys as printed by `print-default-config`).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin/REST/metrics address; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Client TCP address; port 0 picks a free port [default: 127.0.0.1:7000].
    #[arg(long, env = "SWITCHBOARD_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// Client QUIC (UDP) address; port 0 picks a free port [default: 127.0.0.1:7001].
    #[arg(long, env = "SWITCHBOARD_QUIC_ADDR")]
    pub quic_addr: Option<String>,
    /// Bootstrap admin token [default: generated into DATA_DIR/admin-token].
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// TCP heartbeat interval, seconds [default: 270].
    #[arg(long, env = "SWITCHBOARD_TCP_HEARTBEAT_SECS")]
    pub tcp_heartbeat_secs: Option<u32>,
    /// QUIC heartbeat interval, seconds [default: 25].
    #[arg(long, env = "SWITCHBOARD_QUIC_HEARTBEAT_SECS")]
    pub quic_heartbeat_secs: Option<u32>,
    /// Maximum frame payload, bytes [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_LEN")]
    pub max_frame_len: Option<u32>,
    /// Maximum message body, bytes [default: 16384].
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_LEN")]
    pub max_message_len: Option<u32>,
    /// Outbound queue limit per connection, bytes [default: 1048576].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Seconds an offline agent keeps its chats [default: 60].
    #[arg(long, env = "SWITCHBOARD_AGENT_GRACE_SECS")]
    pub agent_grace_secs: Option<u32>,
    /// Seconds without a message before a conversation closes, 0 = never [default: 1800].
    #[arg(long, env = "SWITCHBOARD_AUTO_CLOSE_SECS")]
    pub auto_close_secs: Option<u32>,
    /// Seconds after a close during which the visitor's next message reopens it [default: 600].
    #[arg(long, env = "SWITCHBOARD_REOPEN_WINDOW_SECS")]
    pub reopen_window_secs: Option<u32>,
    /// First webhook retry delay, ms [default: 1000].
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Seconds before an unread message to a visitor triggers push.requested [default: 30].
    #[arg(long, env = "SWITCHBOARD_PUSH_AFTER_SECS")]
    pub push_after_secs: Option<u32>,
    /// Session worker threads, 0 = one per core [default: 0].
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    pub workers: Option<usize>,
    /// Log filter [default: info,openraft=error].
    #[arg(long, env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
    /// This node's id in the cluster, unique and never reused [default: 1].
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<u64>,
    /// Peer link address; port 0 picks a free port [default: 127.0.0.1:7002].
    #[arg(long, env = "SWITCHBOARD_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// Peer address other nodes dial [default: the bound peer address].
    #[arg(long, env = "SWITCHBOARD_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,
    /// Comma-separated peer addresses of nodes to join through [default: none].
    #[arg(long, env = "SWITCHBOARD_SEEDS", value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Create a new cluster even though seeds are set.
    #[arg(long, env = "SWITCHBOARD_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Shards of a new cluster (fixed once it exists) [default: 64].
    #[arg(long, env = "SWITCHBOARD_SHARDS")]
    pub shards: Option<u32>,
    /// Replicas per shard, capped by the node count [default: 3].
    #[arg(long, env = "SWITCHBOARD_REPLICATION")]
    pub replication: Option<u32>,
}

/// One problem with a configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct ConfigProblem {
    /// The key.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// One or more values are invalid.
    #[error("invalid configuration:\n  - {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<ConfigProblem>),
}

/// Addresses parsed from a valid [`Config`].
#[derive(Clone, Copy, Debug)]
pub struct ListenAddrs {
    /// HTTP.
    pub http: SocketAddr,
    /// TCP.
    pub tcp: SocketAddr,
    /// QUIC.
    pub quic: SocketAddr,
    /// Peer link.
    pub peer: SocketAddr,
}

impl Config {
    /// The embedded defaults as TOML.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Config::default()).unwrap_or_default();
        format!(
            "# Switchboard node configuration: the embedded defaults.\n\
             # Every key can also be set by a flag or SWITCHBOARD_* environment variable.\n\
             # admin_token = \"...\"   # unset: generated into DATA_DIR/admin-token\n\
             # quic_cert = \"cert.pem\"; quic_key = \"key.pem\"   # unset: self-signed, kept in DATA_DIR\n\n{body}"
        )
    }

    /// Defaults, then the file named by `args.config`, then the flags/env in `args`.
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let a = args.clone();
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = a.$field { cfg.$field = v; })* };
        }
        set!(data_dir, http_addr, tcp_addr, quic_addr, tcp_heartbeat_secs, quic_heartbeat_secs, max_frame_len,
             max_message_len, outbound_queue_bytes, agent_grace_secs, auto_close_secs, reopen_window_secs, webhook_retry_base_ms,
             push_after_secs, workers, log, node_id, peer_addr, seeds, shards, replication);
        if a.admin_token.is_some() {
            cfg.admin_token = a.admin_token;
        }
        if a.advertise_peer_addr.is_some() {
            cfg.advertise_peer_addr = a.advertise_peer_addr;
        }
        cfg.bootstrap |= a.bootstrap;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML file (unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// A config for tests: everything on loopback port 0 in `data_dir`, short timers.
    pub fn for_test(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            http_addr: "127.0.0.1:0".into(),
            tcp_addr: "127.0.0.1:0".into(),
            quic_addr: "127.0.0.1:0".into(),
            peer_addr: "127.0.0.1:0".into(),
            admin_token: Some("test-admin-token".into()),
            workers: 2,
            shutdown_grace_secs: 2,
            ..Config::default()
        }
    }

    /// Checks every value and returns every problem at once.
    pub fn validate(&self) -> Result<ListenAddrs, ConfigError> {
        let mut problems = Vec::new();
        let mut addr = |field: &'static str, value: &str| -> Option<SocketAddr> {
            match value.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(ConfigProblem { field, problem: format!("{value:?} is not ip:port ({e})") });
                    None
                }
            }
        };
        let http = addr("http_addr", &self.http_addr);
        let tcp = addr("tcp_addr", &self.tcp_addr);
        let quic = addr("quic_addr", &self.quic_addr);
        let peer = addr("peer_addr", &self.peer_addr);
        let mut check = |ok: bool, field: &'static str, problem: String| {
            if !ok {
                problems.push(ConfigProblem { field, problem });
            }
        };
        check(self.data_dir.as_os_str().len() > 0, "data_dir", "must not be empty".into());
        check((1..=3600).contains(&self.tcp_heartbeat_secs), "tcp_heartbeat_secs", format!("{} is not in 1..=3600", self.tcp_heartbeat_secs));
        check((1..=3600).contains(&self.quic_heartbeat_secs), "quic_heartbeat_secs", format!("{} is not in 1..=3600", self.quic_heartbeat_secs));
        check((1..=600).contains(&self.login_timeout_secs), "login_timeout_secs", format!("{} is not in 1..=600", self.login_timeout_secs));
        check(
            (1024..=MAX_CONFIGURABLE_FRAME_LEN).contains(&self.max_frame_len),
            "max_frame_len",
            format!("{} is not in 1024..={MAX_CONFIGURABLE_FRAME_LEN}", self.max_frame_len),
        );
        check(
            self.max_message_len >= 1 && self.max_message_len as u64 + 64 <= self.max_frame_len as u64,
            "max_message_len",
            format!("{} must be at least 1 and 64 bytes below max_frame_len ({})", self.max_message_len, self.max_frame_len),
        );
        check(
            self.outbound_queue_bytes >= self.max_frame_len as usize,
            "outbound_queue_bytes",
            format!("{} must be at least max_frame_len ({})", self.outbound_queue_bytes, self.max_frame_len),
        );
        check((1..=10_000).contains(&self.default_agent_capacity), "default_agent_capacity", format!("{} is not in 1..=10000", self.default_agent_capacity));
        check(self.agent_grace_secs <= 86_400, "agent_grace_secs", format!("{} is more than a day", self.agent_grace_secs));
        check(
            (10..=3_600_000).contains(&self.webhook_retry_base_ms) && self.webhook_retry_base_ms <= self.webhook_retry_max_ms,
            "webhook_retry_base_ms",
            format!("{} must be in 10..=3600000 and at most webhook_retry_max_ms", self.webhook_retry_base_ms),
        );
        check((1..=120).contains(&self.webhook_timeout_secs), "webhook_timeout_secs", format!("{} is not in 1..=120", self.webhook_timeout_secs));
        check((10..=60_000).contains(&self.webhook_poll_ms), "webhook_poll_ms", format!("{} is not in 10..=60000", self.webhook_poll_ms));
        check(self.auto_close_secs <= 30 * 86_400, "auto_close_secs", format!("{} is more than 30 days", self.auto_close_secs));
        check(self.reopen_window_secs <= 86_400, "reopen_window_secs", format!("{} is more than a day", self.reopen_window_secs));
        check((1..=86_400).contains(&self.push_after_secs), "push_after_secs", format!("{} is not in 1..=86400", self.push_after_secs));
        check(self.store_max_batch_ops >= 1, "store_max_batch_ops", "must be at least 1".into());
        check(self.workers <= 256, "workers", format!("{} is more than 256", self.workers));
        check((1..=255).contains(&self.node_id), "node_id", format!("{} is not in 1..=255 (conversation ids carry it)", self.node_id));
        let max_shards = switchboard_raft_store::raft::placement::MAX_SHARDS;
        check((1..=max_shards).contains(&self.shards), "shards", format!("{} is not in 1..={max_shards}", self.shards));
        check((1..=7).contains(&self.replication), "replication", format!("{} is not in 1..=7", self.replication));
        check(self.quic_cert.is_some() == self.quic_key.is_some(), "quic_cert", "quic_cert and quic_key must be set together".into());
        for seed in self.seeds.iter().chain(&self.advertise_peer_addr) {
            let port = seed.rsplit_once(':').and_then(|(host, port)| port.parse::<u16>().ok().filter(|p| *p > 0 && !host.is_empty()));
            check(port.is_some(), if self.seeds.contains(seed) { "seeds" } else { "advertise_peer_addr" }, format!("{seed:?} is not host:port"));
        }
        if let Some(token) = &self.admin_token {
            check(token.len() >= 16, "admin_token", "must be at least 16 characters".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            problems.push(ConfigProblem { field: "log", problem: e.to_string() });
        }
        match (http, tcp, quic, peer, problems.is_empty()) {
            (Some(http), Some(tcp), Some(quic), Some(peer), true) => Ok(ListenAddrs { http, tcp, quic, peer }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }

    /// Session worker count after resolving 0 to the core count.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_print_as_parseable_toml() {
        Config::default().validate().unwrap();
        let text = Config::default_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = Config {
            http_addr: "nonsense".into(),
            tcp_heartbeat_secs: 0,
            max_frame_len: 10,
            admin_token: Some("short".into()),
            ..Config::default()
        };
        let ConfigError::Invalid(problems) = cfg.validate().unwrap_err() else { panic!("expected Invalid") };
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        for f in ["http_addr", "tcp_heartbeat_secs", "max_frame_len", "max_message_len", "admin_token"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn unknown_keys_in_a_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "tcp_adr = \"1.2.3.4:5\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("tcp_adr"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "tcp_addr = \"127.0.0.1:9000\"\nworkers = 3\n").unwrap();
        let args = ConfigArgs { config: Some(path), workers: Some(1), ..Default::default() };
        let cfg = Config::load(&args).unwrap();
        assert_eq!(cfg.tcp_addr, "127.0.0.1:9000");
        assert_eq!(cfg.workers, 1);
    }

    #[test]
    fn cluster_settings_come_from_flags_and_bad_seeds_are_named() {
        let args = ConfigArgs { node_id: Some(2), seeds: Some(vec!["10.0.0.1:7002".into(), "sb-0.sb:7002".into()]), ..Default::default() };
        let cfg = Config::load(&args).unwrap();
        assert_eq!((cfg.node_id, cfg.seeds.len(), cfg.bootstrap), (2, 2, false));
        let cfg = Config { seeds: vec!["no-port".into(), "host:0".into()], advertise_peer_addr: Some(":7002".into()), ..Config::default() };
        let ConfigError::Invalid(problems) = cfg.validate().unwrap_err() else { panic!("expected Invalid") };
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["seeds", "seeds", "advertise_peer_addr"], "{problems:?}");
    }
}
