//! Plain TCP: one frame stream per connection.

use super::Workers;
use crate::context::Ctx;
use crate::session::{serve, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts until `stop` turns true; each connection is moved to a session arbiter.
pub async fn accept_loop(listener: TcpListener, ctx: Ctx, workers: Arc<Workers>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A tokio socket belongs to the runtime that registered it: hand the std
        // socket over and register it on the target arbiter.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot detach accepted socket");
                continue;
            }
        };
        let ctx = ctx.clone();
        workers.next().spawn_fn(move || {
            let stream = match tokio::net::TcpStream::from_std(std_stream) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "cannot register socket"),
            };
            let (reader, writer) = stream.into_split();
            actix_rt::spawn(serve(ctx, reader, writer, Transport::Tcp, peer, ()));
        });
    }
    tracing::info!("tcp listener stopped");
}
