//! Connection options per connection number: target round robin, source IP spread,
//! shared byte counters and shared QUIC endpoints.

use crate::cli::TransportArg;
use crate::job::Job;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{quic_endpoint, ByteCounters, ClientError, ConnectOptions, Transport};

/// QUIC connections sharing one client endpoint (UDP socket).
const CONNECTIONS_PER_ENDPOINT: u64 = 16;

/// Builds [`ConnectOptions`] for connection `i` of a job.
pub struct Net {
    targets: Vec<SocketAddr>,
    transport: Transport,
    source_ips: u8,
    connect_timeout: Duration,
    first_index: u64,
    /// Frame bytes of every connection of this process.
    pub counters: Arc<ByteCounters>,
    endpoints: Mutex<HashMap<(u8, u64), quinn::Endpoint>>,
}

impl Net {
    /// Options for `job` (call inside the runtime: QUIC endpoints are created lazily).
    pub fn new(job: &Job) -> Net {
        let transport = match job.transport {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Quic => {
                Transport::Quic { pinned_cert_der: job.quic_cert_der.clone(), server_name: job.server_name.clone() }
            }
        };
        Net {
            targets: job.targets.clone(),
            transport,
            source_ips: job.source_ips.max(1),
            connect_timeout: job.connect_timeout,
            first_index: job.first_index,
            counters: ByteCounters::new(),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The source IP of global connection `global` (`None`: let the OS choose,
    /// when a single source IP is asked for).
    pub fn source_ip(source_ips: u8, global: u64) -> Option<IpAddr> {
        if source_ips <= 1 {
            return None;
        }
        let last_octet = 1 + (global % source_ips as u64) as u8;
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
    }

    /// Options for this job's connection `i`.
    pub fn options(&self, i: u64) -> Result<ConnectOptions, ClientError> {
        let global = self.first_index + i;
        let addr = self.targets[(global % self.targets.len().max(1) as u64) as usize];
        let mut options = ConnectOptions::new(addr, self.transport.clone());
        options.bind_ip = Net::source_ip(self.source_ips, global);
        options.connect_timeout = self.connect_timeout;
        options.counters = Some(self.counters.clone());
        if matches!(self.transport, Transport::Quic { .. }) {
            let ip_slot = (global % self.source_ips as u64) as u8;
            let shard = (global / self.source_ips as u64) / CONNECTIONS_PER_ENDPOINT;
            let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            let endpoint = match endpoints.get(&(ip_slot, shard)) {
                Some(e) => e.clone(),
                None => {
                    let e = quic_endpoint(options.bind_ip, addr)?;
                    endpoints.insert((ip_slot, shard), e.clone());
                    e
                }
            };
            options.quic_endpoint = Some(endpoint);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ips_cycle_over_127_0_0_x() {
        assert_eq!(Net::source_ip(1, 5), None);
        assert_eq!(Net::source_ip(3, 0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(Net::source_ip(3, 2), Some("127.0.0.3".parse().unwrap()));
        assert_eq!(Net::source_ip(3, 3), Some("127.0.0.1".parse().unwrap()));
    }
}
