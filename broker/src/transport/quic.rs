//! QUIC (quinn, TLS 1.3, ALPN `switchboard/1`): the client opens one bidirectional
//! stream and speaks the same frames over it as over TCP.
//!
//! Keep-alive trade-off: NAT gateways often drop idle UDP mappings after ~30 s, so
//! QUIC clients are told a short heartbeat (`quic_heartbeat_secs`, default 25 s:
//! ~144 tiny packets an hour) where TCP gets 270 s. The QUIC idle timeout is set a
//! little above two heartbeats so the application heartbeat, not QUIC, decides.

use super::Workers;
use crate::config::Config;
use crate::context::Ctx;
use crate::session::{serve, Transport};
use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Handshakes in progress at once; beyond this, new connections wait (a burst of
/// thousands overflows the UDP receive buffer and collapses the handshake rate).
const MAX_HANDSHAKES: usize = 64;
/// File names of the self-signed pair in the data dir.
pub const CERT_FILE: &str = "quic-cert.der";
const KEY_FILE: &str = "quic-key.der";

/// The certificate chain and key to serve: configured PEM files, or a self-signed
/// pair generated on first start and kept in the data dir.
pub fn load_or_create_identity(config: &Config) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use rustls::pki_types::pem::PemObject;
    if let (Some(cert), Some(key)) = (&config.quic_cert, &config.quic_key) {
        let certs = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", cert.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
        let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading key {}", key.display()))?;
        return Ok((certs, key));
    }
    let dir = &config.data_dir;
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let key = std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        return Ok((vec![CertificateDer::from(cert)], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key))));
    }
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "switchboard".to_string()])
        .context("generating a self-signed certificate")?;
    let cert = generated.cert.der().to_vec();
    let key = generated.signing_key.serialize_der();
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, &cert).with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::info!(path = %cert_path.display(), "generated a self-signed QUIC certificate");
    Ok((vec![CertificateDer::from(cert)], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key))))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// A quinn server configuration for `config`.
pub fn server_config(config: &Config) -> anyhow::Result<quinn::ServerConfig> {
    let (certs, key) = load_or_create_identity(config)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("QUIC certificate and key do not match")?;
    tls.alpn_protocols = vec![switchboard_protocol::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("QUIC TLS config")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // One stream per connection and small windows: an idle connection stays small.
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.receive_window((256u32 * 1024).into());
    transport.stream_receive_window((64u32 * 1024).into());
    transport.send_window(256 * 1024);
    let idle = Duration::from_secs(2 * config.quic_heartbeat_secs as u64 + 10);
    transport.max_idle_timeout(Some(idle.try_into().context("quic idle timeout")?));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Accepts QUIC connections until `stop` turns true.
pub async fn accept_loop(endpoint: quinn::Endpoint, ctx: Ctx, workers: Arc<Workers>, mut stop: watch::Receiver<bool>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            p = handshakes.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.wait_for(|s| *s) => break,
        };
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.wait_for(|s| *s) => break,
        };
        let ctx = ctx.clone();
        let workers = workers.clone();
        actix_rt::spawn(async move {
            let peer = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => return tracing::debug!(%peer, error = %e, "quic handshake failed"),
            };
            drop(permit);
            let stream = tokio::time::timeout(Duration::from_secs(ctx.config.login_timeout_secs as u64), connection.accept_bi()).await;
            let (send, recv) = match stream {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "quic connection closed before opening a stream"),
                Err(_) => {
                    connection.close(1u32.into(), b"no stream opened");
                    return;
                }
            };
            workers.next().spawn_fn(move || {
                actix_rt::spawn(serve(ctx, recv, send, Transport::Quic, peer, connection));
            });
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    tracing::info!("quic listener stopped");
}
