//! Command-line flags. Every flag has an environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Load generator for a Switchboard node: chat traffic with end-to-end verification,
/// idle connections with memory per connection, and connection storms.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Visitors send at a fixed total rate, agents reply to every message; measures
    /// accept and delivery latency and verifies exactly-once, in-order delivery.
    Chat(ChatArgs),
    /// Holds logged-in idle visitors; measures broker memory per connection and
    /// heartbeat traffic.
    Idle(IdleArgs),
    /// Connects and logs in as fast as allowed; measures connects per second and
    /// latency.
    Connect(ConnectArgs),
    /// Internal: runs one share of a scenario for a parent `loadtest` (job on stdin,
    /// result on stdout).
    #[command(hide = true)]
    Worker,
}

/// Transport flag values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum TransportArg {
    /// Plain TCP.
    Tcp,
    /// QUIC with the node's pinned self-signed certificate.
    Quic,
}

impl TransportArg {
    /// Default connects in flight for this transport.
    pub fn default_concurrency(self) -> u32 {
        match self {
            TransportArg::Tcp => 64,
            TransportArg::Quic => 32,
        }
    }

    /// `"tcp"` or `"quic"`.
    pub fn name(self) -> &'static str {
        match self {
            TransportArg::Tcp => "tcp",
            TransportArg::Quic => "quic",
        }
    }
}

/// Flags shared by every scenario.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Base URL of the node's admin API, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "LOADTEST_ADMIN_URL")]
    pub admin_url: String,
    /// Admin bearer token.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Client listener address (repeatable, or comma separated); default: the node's
    /// own address for the transport, from GET /v1/node.
    #[arg(long = "target", env = "LOADTEST_TARGETS", value_delimiter = ',')]
    pub targets: Vec<SocketAddr>,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp", env = "LOADTEST_TRANSPORT")]
    pub transport: TransportArg,
    /// How long the measured phase lasts (e.g. 500ms, 15s, 2m).
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "LOADTEST_DURATION")]
    pub duration: Duration,
    /// Write every figure as JSON to this file.
    #[arg(long, env = "LOADTEST_JSON")]
    pub json: Option<PathBuf>,
    /// Spread client sockets over source IPs 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254), env = "LOADTEST_SOURCE_IPS")]
    pub source_ips: u8,
    /// Connections (or logins) in flight at once while connecting [default: 64 for
    /// TCP, 32 for QUIC, whose handshakes lose packets when too many are in flight].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), env = "LOADTEST_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// Largest number of TCP connections one process holds; above it the load is
    /// split over worker processes (the open-file limit is 20,000).
    #[arg(long, default_value_t = 18_000, value_parser = clap::value_parser!(u32).range(1..), env = "LOADTEST_PER_PROCESS")]
    pub per_process: u32,
    /// Limit on each connect-and-login.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "LOADTEST_CONNECT_TIMEOUT")]
    pub connect_timeout: Duration,
    /// Limit on the whole connection phase; connections not made by then count as errors.
    #[arg(long, default_value = "3m", value_parser = parse_duration, env = "LOADTEST_CONNECT_PHASE")]
    pub connect_phase: Duration,
    /// TLS server name for QUIC.
    #[arg(long, default_value = "localhost", env = "LOADTEST_SERVER_NAME")]
    pub server_name: String,
}

/// Flags of `chat`.
#[derive(Clone, Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Visitors (one conversation each).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), env = "LOADTEST_VISITORS")]
    pub visitors: u32,
    /// Agents; each gets capacity ceil(visitors / agents).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), env = "LOADTEST_AGENTS")]
    pub agents: u32,
    /// Total visitor messages per second, spread over the visitors (agents add one
    /// reply each).
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate, env = "LOADTEST_RATE")]
    pub rate: f64,
    /// Message body size in bytes (at least the 20-digit send timestamp).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(20..=60_000), env = "LOADTEST_MESSAGE_SIZE")]
    pub message_size: u32,
    /// After sending stops, how long to wait for messages still in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "LOADTEST_DRAIN")]
    pub drain: Duration,
}

/// Flags of `idle`.
#[derive(Clone, Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Logged-in idle visitors to hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), env = "LOADTEST_CONNECTIONS")]
    pub connections: u32,
}

/// Flags of `connect`.
#[derive(Clone, Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open and log in (no new ones are started after the shorter of
    /// --duration and --connect-phase).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), env = "LOADTEST_CONNECTIONS")]
    pub connections: u32,
}

/// Parses `500ms`, `15s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 500ms, 15s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 86_400.0 {
        return Err(format!("`{text}` must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
        return Err(format!("rate `{text}` must be above 0 and at most 10,000,000"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn humane_durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn targets_repeat_and_defaults_apply() {
        let cli = Cli::try_parse_from([
            "loadtest", "chat", "--admin-url", "http://127.0.0.1:8080", "--admin-token", "t",
            "--target", "127.0.0.1:7000", "--target", "127.0.0.1:7002", "--rate", "250",
        ])
        .unwrap();
        let Command::Chat(chat) = cli.command else { panic!("chat expected") };
        assert_eq!(chat.common.targets.len(), 2);
        assert_eq!(chat.common.transport, TransportArg::Tcp);
        assert_eq!(chat.common.duration, Duration::from_secs(15));
        assert_eq!(chat.rate, 250.0);
        assert!(Cli::try_parse_from(["loadtest", "idle", "--admin-url", "x", "--admin-token", "t", "--source-ips", "0"]).is_err());
    }
}
