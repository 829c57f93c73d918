//! Clients of tenants served by another node. A tenant lives on its home node
//! (`cluster::tenants`); a client that lands on any other node is relayed there:
//! this node opens a TCP connection to the home's client listener, sends the
//! client's `Hello`, and from then on copies bytes both ways. The home runs the
//! session (login, routing, delivery); the client sees no redirect.
//!
//! Flow control is end to end: bytes from the home wait for room in the client's
//! outbound queue, so a client that does not read stalls the home's socket and the
//! home's own slow-consumer rule applies.

use super::outbound::Outbound;
use crate::cluster::tenants::{tenant_of_auth, Home, RemoteHome};
use crate::context::Ctx;
use crate::metrics;
use bytes::Bytes;
use std::time::Duration;
use switchboard_protocol::{ClientFrame, Hello};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long dialling the home may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes read from the home at a time.
const CHUNK: usize = 16 * 1024;

/// The home of the tenant `hello` logs in to, if it is another node. `Err`: nobody
/// can serve it right now (retry).
pub(super) async fn remote_home(ctx: &Ctx, hello: &Hello) -> Result<Option<RemoteHome>, String> {
    let (Some(cluster), Some(tenant)) = (ctx.cluster.as_ref(), tenant_of_auth(&hello.auth)) else {
        return Ok(None);
    };
    if cluster.is_cut_off() {
        return Err("this node is cut off from the rest of the cluster; connect to another node".into());
    }
    match cluster.locate_tenant(tenant).await.map_err(|e| format!("cannot tell which node serves tenant {} now: {e}", tenant.0))? {
        // Dialling a node cut off by the network would only wait out the timeout.
        Home::Remote(home) if cluster.is_silent(home.node) => {
            Err(format!("the node serving tenant {} (node {}) is not answering; it is moving to another node, retry in a moment", tenant.0, home.node))
        }
        Home::Remote(home) => Ok(Some(home)),
        // Placed here but not loaded: being taken over (moved here, or served again
        // after this node was cut off), or just created.
        Home::Here { .. } if ctx.directory.tenant(tenant).is_none() => Err(format!("tenant {} is being taken over by this node; retry in a moment", tenant.0)),
        Home::Here { .. } | Home::Unknown => Ok(None),
    }
}

/// Relays the connection to `home` until either side ends or the node stops.
/// `Err` (nothing was relayed yet): the home could not be reached.
pub(super) async fn relay<R>(ctx: &Ctx, hello: &Hello, mut reader: R, out: &Outbound, home: &RemoteHome) -> Result<(), String>
where
    R: AsyncRead + Unpin,
{
    let unreachable = |why: String| {
        ::metrics::counter!(metrics::FORWARDED, "result" => "unreachable").increment(1);
        format!("the node serving this tenant (node {} at {}) cannot be reached: {why}", home.node, home.client_addr)
    };
    let hello = ctx.codec.encode_to_vec(&ClientFrame::Hello(hello.clone())).map_err(|e| e.to_string())?;
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&home.client_addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    };
    let _ = upstream.set_nodelay(true);
    let (mut from_home, mut to_home) = upstream.into_split();
    to_home.write_all(&hello).await.map_err(|e| unreachable(e.to_string()))?;
    ::metrics::counter!(metrics::FORWARDED, "result" => "relayed").increment(1);
    let gauge = ::metrics::gauge!(metrics::FORWARDED_OPEN);
    gauge.increment(1.0);
    tracing::debug!(home = home.node, addr = %home.client_addr, "relaying to the tenant's node");

    // Client to home: until the client stops sending; then the home sees the end too.
    let upward = async {
        let _ = tokio::io::copy(&mut reader, &mut to_home).await;
        let _ = to_home.shutdown().await;
    };
    // Home to client: until the home closes (or the client's socket failed).
    let downward = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            out.wait_uncongested().await;
            match from_home.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.push(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::pin!(upward, downward);
    let mut stopping = ctx.stopping.subscribe();
    let mut client_done = false;
    loop {
        tokio::select! {
            _ = &mut upward, if !client_done => client_done = true,
            _ = &mut downward => break,
            // The client reconnects, to another node.
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    gauge.decrement(1.0);
    Ok(())
}
