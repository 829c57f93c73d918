//! The node's admin REST API (blocking `ureq` on tokio's blocking pool), the
//! `/v1/node` description, and the broker's resident memory.

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Limit on every admin request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// GET /v1/node.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeInfo {
    /// Broker version.
    pub version: String,
    /// Broker process id.
    pub pid: u32,
    /// Listener addresses.
    pub addresses: NodeAddresses,
    /// The QUIC certificate, DER as hex.
    pub quic_cert_der_hex: String,
}

/// Listener addresses of a node.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeAddresses {
    /// Client TCP.
    pub tcp: SocketAddr,
    /// Client QUIC.
    pub quic: SocketAddr,
}

/// POST /v1/tenants answer (the fields used here).
#[derive(Clone, Debug, Deserialize)]
pub struct TenantCreated {
    /// Tenant id.
    pub id: u64,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[derive(Deserialize)]
struct TokenOnly {
    token: String,
}

#[derive(Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

/// A client of one node's admin API.
#[derive(Clone)]
pub struct Admin {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Admin {
    /// `base` like `http://127.0.0.1:8080` (a trailing slash is ignored).
    pub fn new(base: &str, token: &str) -> Result<Admin> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--admin-url must start with http:// (got `{base}`)");
        }
        let agent = ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).build();
        Ok(Admin { base, token: token.to_string(), agent })
    }

    /// The host part of the base URL.
    pub fn host(&self) -> &str {
        let rest = self.base.trim_start_matches("http://");
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or(v6);
        }
        authority.split(':').next().unwrap_or(authority)
    }

    /// GET /v1/node.
    pub async fn node(&self) -> Result<NodeInfo> {
        self.get_json("/v1/node").await
    }

    /// POST /v1/tenants; returns the tenant id.
    pub async fn create_tenant(&self, name: &str) -> Result<u64> {
        let t: TenantCreated = self.post_json("/v1/tenants", serde_json::json!({ "name": name })).await?;
        Ok(t.id)
    }

    /// Creates an agent with `capacity` and a token for it; returns (agent id, token).
    pub async fn create_agent(&self, tenant: u64, name: &str, capacity: u32) -> Result<(u64, String)> {
        let path = format!("/v1/tenants/{tenant}/agents");
        let agent: IdOnly = self.post_json(&path, serde_json::json!({ "name": name, "capacity": capacity })).await?;
        let path = format!("/v1/tenants/{tenant}/agents/{}/tokens", agent.id);
        let token: TokenOnly = self.post_json(&path, serde_json::json!({})).await?;
        Ok((agent.id, token.token))
    }

    /// GET /metrics as text.
    pub async fn metrics(&self) -> Result<String> {
        let (agent, url) = (self.agent.clone(), format!("{}/metrics", self.base));
        blocking(move || {
            let response = agent.get(&url).call().map_err(|e| http_error("GET", &url, e))?;
            response.into_string().with_context(|| format!("reading GET {url}"))
        })
        .await
    }

    async fn get_json<T: DeserializeOwned + Send + 'static>(&self, path: &str) -> Result<T> {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base));
        blocking(move || {
            let response = agent.get(&url).call().map_err(|e| http_error("GET", &url, e))?;
            response.into_json::<T>().with_context(|| format!("decoding the answer of GET {url}"))
        })
        .await
    }

    async fn post_json<T: DeserializeOwned + Send + 'static>(&self, path: &str, body: serde_json::Value) -> Result<T> {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base));
        let auth = format!("Bearer {}", self.token);
        blocking(move || {
            let response = agent
                .post(&url)
                .set("Authorization", &auth)
                .send_json(body)
                .map_err(|e| http_error("POST", &url, e))?;
            response.into_json::<T>().with_context(|| format!("decoding the answer of POST {url}"))
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| anyhow!("admin request task failed: {e}"))?
}

/// One line saying what went wrong with an admin request.
fn http_error(method: &str, url: &str, error: ureq::Error) -> anyhow::Error {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            match serde_json::from_str::<ApiError>(&body) {
                Ok(e) => anyhow!("{method} {url}: HTTP {status} {}: {}", e.code, e.message),
                Err(_) => anyhow!("{method} {url}: HTTP {status} {}", body.chars().take(200).collect::<String>()),
            }
        }
        ureq::Error::Transport(t) => anyhow!("admin API unreachable ({method} {url}): {t}"),
    }
}

/// Where the broker's resident memory was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RssSource {
    /// `/proc/<pid>/status` (the broker runs on this machine).
    Proc,
    /// The `switchboard_process_resident_memory_bytes` gauge.
    Metrics,
}

impl RssSource {
    /// `"proc"` or `"metrics"`.
    pub fn name(self) -> &'static str {
        match self {
            RssSource::Proc => "proc",
            RssSource::Metrics => "metrics",
        }
    }
}

/// The broker's resident memory in bytes: VmRSS of its pid when the admin host is
/// this machine and the pid is visible, else the metrics gauge.
pub async fn broker_rss(admin: &Admin, pid: u32) -> Result<(u64, RssSource)> {
    let host = admin.host();
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if local {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(bytes) = vm_rss_bytes(&status) {
                return Ok((bytes, RssSource::Proc));
            }
        }
    }
    let text = admin.metrics().await?;
    let bytes = metric_value(&text, "switchboard_process_resident_memory_bytes")
        .context("the node's /metrics has no switchboard_process_resident_memory_bytes")?;
    Ok((bytes as u64, RssSource::Metrics))
}

/// CPU seconds used so far by process `pid` (`/proc/<pid>/stat` when the node is
/// local, else the node's `switchboard_process_cpu_seconds_total`).
pub async fn process_cpu_secs(admin: &Admin, pid: u32) -> Option<f64> {
    let host = admin.host();
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if local {
        if let Some(secs) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| stat_cpu_secs(&s)) {
            return Some(secs);
        }
    }
    let text = admin.metrics().await.ok()?;
    metric_value(&text, "switchboard_process_cpu_seconds_total")
}

/// CPU seconds of this process.
pub fn own_cpu_secs() -> Option<f64> {
    stat_cpu_secs(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds.
pub fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn stat_cpu_secs_reads_utime_and_stime() {
        let stat = "123 (my (odd) prog) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(super::stat_cpu_secs(stat), Some(400.0 / hz));
        assert_eq!(super::stat_cpu_secs("garbage"), None);
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The value of the first sample of `name` (any labels) in Prometheus text format.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = match rest.chars().next()? {
            '{' => &rest[rest.find('}')? + 1..],
            ' ' => rest,
            _ => return None,
        };
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\tswitchboard\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads: 4\n";
        assert_eq!(vm_rss_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_rss_bytes("Name: x\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss_bytes(&own).unwrap() > 0);
    }

    #[test]
    fn metric_values_are_found_with_or_without_labels() {
        let text = "# HELP switchboard_process_resident_memory_bytes rss\n\
                    # TYPE switchboard_process_resident_memory_bytes gauge\n\
                    switchboard_process_resident_memory_bytes 1.5e6\n\
                    switchboard_process_resident_memory_bytes_other 7\n\
                    switchboard_connections{transport=\"tcp\"} 42\n";
        assert_eq!(metric_value(text, "switchboard_process_resident_memory_bytes"), Some(1.5e6));
        assert_eq!(metric_value(text, "switchboard_connections"), Some(42.0));
        assert_eq!(metric_value(text, "switchboard_missing"), None);
    }

    #[test]
    fn the_admin_host_is_taken_from_the_url() {
        assert_eq!(Admin::new("http://127.0.0.1:8080/", "t").unwrap().host(), "127.0.0.1");
        assert_eq!(Admin::new("http://localhost", "t").unwrap().host(), "localhost");
        assert_eq!(Admin::new("http://[::1]:80", "t").unwrap().host(), "::1");
        assert!(Admin::new("127.0.0.1:8080", "t").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_admin_api_is_a_one_line_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let admin = Admin::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
        let err = admin.node().await.unwrap_err().to_string();
        assert!(err.contains("unreachable") && !err.contains('\n'), "{err}");
    }
}
