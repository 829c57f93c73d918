//! Opening a [`Connection`] over TCP or QUIC.
//!
//! Both transports end in the same thing: a byte stream in each direction carrying
//! length-prefixed frames. Over QUIC the client opens one bidirectional stream right
//! after the handshake and everything flows over it.

use crate::connection::{BoxReader, BoxWriter, ByteCounters, Connection, Parts, QuicGuard};
use crate::error::ClientError;
use crate::tls::quic_client_config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::{FrameCodec, Hello, Welcome};
use tokio::net::TcpSocket;

/// Default limit on frames the client reads (the server's own limit applies to what
/// it accepts; see `Welcome::max_frame_len`).
pub const DEFAULT_CLIENT_MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;
/// Default limit on connecting plus logging in.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which transport carries the frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// QUIC (TLS 1.3, ALPN `switchboard/1`) with the server certificate pinned.
    Quic {
        /// The server's certificate, DER; the only one trusted.
        pinned_cert_der: Vec<u8>,
        /// Server name sent in the TLS SNI extension.
        server_name: String,
    },
}

impl Transport {
    /// QUIC with `pinned_cert_der` and the default server name `localhost`.
    pub fn quic(pinned_cert_der: Vec<u8>) -> Transport {
        Transport::Quic { pinned_cert_der, server_name: "localhost".into() }
    }

    /// `"tcp"` or `"quic"`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic { .. } => "quic",
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// The server's TCP or QUIC address.
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// Source address to bind (e.g. one of 127.0.0.x to spread many connections over
    /// several source IPs); `None` lets the OS choose.
    pub bind_ip: Option<IpAddr>,
    /// Largest frame payload the client accepts from the server.
    pub max_frame_len: u32,
    /// Limit on TCP connect or QUIC handshake, and separately on the login answer.
    pub connect_timeout: Duration,
    /// Counters to add this connection's bytes to; `None` gives it its own.
    pub counters: Option<Arc<ByteCounters>>,
    /// A QUIC endpoint (one UDP socket) to share between many connections, see
    /// [`quic_endpoint`]; `None` creates one per connection. Ignored for TCP.
    pub quic_endpoint: Option<quinn::Endpoint>,
}

impl ConnectOptions {
    /// TCP to `addr` with default limits.
    pub fn tcp(addr: SocketAddr) -> ConnectOptions {
        ConnectOptions::new(addr, Transport::Tcp)
    }

    /// QUIC to `addr`, trusting exactly `pinned_cert_der`, server name `localhost`.
    pub fn quic(addr: SocketAddr, pinned_cert_der: Vec<u8>) -> ConnectOptions {
        ConnectOptions::new(addr, Transport::quic(pinned_cert_der))
    }

    /// `transport` to `addr` with default limits.
    pub fn new(addr: SocketAddr, transport: Transport) -> ConnectOptions {
        ConnectOptions {
            addr,
            transport,
            bind_ip: None,
            max_frame_len: DEFAULT_CLIENT_MAX_FRAME_LEN,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            counters: None,
            quic_endpoint: None,
        }
    }
}

/// A client QUIC endpoint (one UDP socket) bound to `bind_ip` (or the unspecified
/// address of `server`'s family), port chosen by the OS. Must be created inside a
/// tokio runtime, which then drives it.
pub fn quic_endpoint(bind_ip: Option<IpAddr>, server: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    let ip = bind_ip.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    quinn::Endpoint::client(SocketAddr::new(ip, 0)).map_err(|e| ClientError::QuicEndpoint { reason: e.to_string() })
}

/// Connects (without logging in).
pub async fn connect(options: &ConnectOptions) -> Result<Connection, ClientError> {
    let counters = options.counters.clone().unwrap_or_default();
    let codec = FrameCodec::new(options.max_frame_len);
    let addr = options.addr;
    let after = options.connect_timeout;
    let (reader, writer, quic, local_addr): (BoxReader, BoxWriter, _, _) = match &options.transport {
        Transport::Tcp => {
            let stream = tokio::time::timeout(after, connect_tcp(addr, options.bind_ip))
                .await
                .map_err(|_| ClientError::ConnectTimeout { addr, after })??;
            let local = stream.local_addr().map_err(|source| ClientError::Connect { addr, source })?;
            let (r, w) = stream.into_split();
            (Box::new(r), Box::new(w), None, local)
        }
        Transport::Quic { pinned_cert_der, server_name } => {
            let endpoint = match &options.quic_endpoint {
                Some(e) => e.clone(),
                None => quic_endpoint(options.bind_ip, addr)?,
            };
            let config = quic_client_config(pinned_cert_der)?;
            let connecting = endpoint
                .connect_with(config, addr, server_name)
                .map_err(|e| ClientError::QuicEndpoint { reason: e.to_string() })?;
            let handshake = async {
                let connection = connecting.await?;
                let (send, recv) = connection.open_bi().await?;
                Ok::<_, quinn::ConnectionError>((connection, send, recv))
            };
            let (connection, send, recv) = tokio::time::timeout(after, handshake)
                .await
                .map_err(|_| ClientError::ConnectTimeout { addr, after })?
                .map_err(|source| ClientError::Quic { addr, source })?;
            let local = endpoint.local_addr().map_err(|source| ClientError::Connect { addr, source })?;
            let guard = Arc::new(QuicGuard { connection, _endpoint: endpoint });
            (Box::new(recv), Box::new(send), Some(guard), local)
        }
    };
    Ok(Connection::new(Parts {
        reader,
        writer,
        codec,
        counters,
        quic,
        local_addr,
        peer_addr: addr,
        login_timeout: after,
    }))
}

async fn connect_tcp(addr: SocketAddr, bind_ip: Option<IpAddr>) -> Result<tokio::net::TcpStream, ClientError> {
    let err = |source| ClientError::Connect { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    if let Some(ip) = bind_ip {
        socket.bind(SocketAddr::new(ip, 0)).map_err(err)?;
    }
    let stream = socket.connect(addr).await.map_err(err)?;
    stream.set_nodelay(true).map_err(err)?;
    Ok(stream)
}

/// [`connect`] then [`Connection::login`].
pub async fn connect_and_login(options: &ConnectOptions, hello: Hello) -> Result<(Connection, Welcome), ClientError> {
    let mut connection = connect(options).await?;
    let welcome = connection.login(hello).await?;
    Ok((connection, welcome))
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
