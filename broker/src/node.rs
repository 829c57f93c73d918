//! Starting and stopping a node: open the store, load the directory, bind listeners,
//! start arbiters, serve, and shut down gracefully.

use crate::api::{self, Addresses, ApiState, NodeInfo};
use crate::config::Config;
use crate::context::{Ctx, NodeContext};
use crate::routing::{Directory, Dispatcher, Registry, Routers};
use crate::session::SessionEvent;
use crate::integration::webhooks::WebhookWorker;
use crate::transport::{quic, tcp, Workers};
use anyhow::Context as _;
use rand::RngCore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::auth::secret_digest;
use switchboard_protocol::FrameCodec;
use crate::cluster::log::{ClusterCommits, ClusterLog};
use crate::cluster::records::RecordPipeline;
use crate::cluster::{ClusterConfig, ClusterNode, PeerHandler, PeerListener, TcpTransport};
use switchboard_raft_store::raft::{NodeAddr, RaftDb, ShardListener};
use switchboard_raft_store::{CommitListener, ConversationLog, Store, StoreOptions};
use tokio::sync::watch;

/// The addresses a node actually bound.
#[derive(Clone, Copy, Debug)]
pub struct BoundAddrs {
    /// HTTP.
    pub http: SocketAddr,
    /// TCP.
    pub tcp: SocketAddr,
    /// QUIC.
    pub quic: SocketAddr,
    /// Peer link.
    pub peer: SocketAddr,
}

/// A started node.
pub struct RunningNode {
    /// Shared state.
    pub ctx: Ctx,
    /// Bound addresses.
    pub addrs: BoundAddrs,
    /// The admin token in force.
    pub admin_token: String,
    stop: watch::Sender<bool>,
    http: actix_web::dev::ServerHandle,
    arbiters: Vec<actix::Arbiter>,
    webhooks: WebhookWorker,
    cluster: Cluster,
}

/// The node's raft side: its groups, their runtime and the peer link.
struct Cluster {
    node: Arc<ClusterNode>,
    runtime: RaftRuntime,
    listener: PeerListener,
    dialer: Arc<TcpTransport>,
}

/// The raft groups' runtime. Dropping it shuts it down in the background: dropping a
/// tokio runtime inside the actix system (as on an error later in start-up) would
/// panic and hide the error.
struct RaftRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for RaftRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the raft runtime runs until dropped")
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The admin token: configured, or kept in `DATA_DIR/admin-token` (created on first start).
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(t) = &config.admin_token {
        return Ok(t.clone());
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        anyhow::ensure!(t.len() >= 16, "{} holds a token shorter than 16 characters", path.display());
        return Ok(t);
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    write_file_private(&path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated an admin token");
    Ok(token)
}

fn write_file_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Starts a node. Must be called inside an actix `System`.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    let listen = config.validate()?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let metrics = crate::metrics::install();
    let admin_token = admin_token(&config)?;

    // The dispatcher is the store's commit listener and reads the directory, which is
    // loaded from that store: open with an empty directory, then fill it.
    let directory = Arc::new(Directory::default());
    let registry = Arc::new(Registry::default());
    let (push_tx, push_rx) = std::sync::mpsc::channel();
    let push_after_ms = config.push_after_secs as u64 * 1000;
    let dispatcher = Arc::new(Dispatcher::new(directory.clone(), registry.clone(), FrameCodec::new(config.max_frame_len), push_tx, push_after_ms));
    let db_path: PathBuf = config.data_dir.join("db");
    let store = Store::open(&db_path, StoreOptions { max_batch_ops: config.store_max_batch_ops, sync: true, node: config.node_id }, dispatcher.clone())
        .with_context(|| format!("opening store {}", db_path.display()))?;
    let store = Arc::new(store);
    // The client listener is bound first: the node table advertises its address, so
    // other nodes can forward this node's tenants' clients to it.
    let tcp_listener = tokio::net::TcpListener::bind(listen.tcp).await.with_context(|| format!("binding tcp {}", listen.tcp))?;
    let client_addr = advertised_client_addr(&config, tcp_listener.local_addr()?);
    let (cluster, log) = start_cluster(&config, &store, dispatcher.clone(), client_addr).await?;
    directory.absorb(Directory::load(&store, log.as_ref(), crate::context::now_ms()).context("loading the directory")?);
    let shards = cluster.node.shard_count().unwrap_or(config.shards);

    let router_arbiter = actix::Arbiter::new();
    let routers = Routers::new(router_arbiter.handle());
    let mut ctx = NodeContext::new(config.clone(), store, log, shards, directory, registry, routers);
    ctx.cluster = Some(cluster.node.clone());
    let ctx: Ctx = Arc::new(ctx);
    crate::metrics::set_conversation_gauges(&ctx.directory);

    let mut arbiters: Vec<actix::Arbiter> = (0..config.worker_count()).map(|_| actix::Arbiter::new()).collect();
    let workers = Arc::new(Workers::new(arbiters.iter().map(|a| a.handle()).collect()));
    arbiters.push(router_arbiter);

    // Listeners.
    let quic_config = quic::server_config(&config)?;
    let quic_endpoint = quinn::Endpoint::server(quic_config, listen.quic).with_context(|| format!("binding quic {}", listen.quic))?;
    let http_listener = std::net::TcpListener::bind(listen.http).with_context(|| format!("binding http {}", listen.http))?;
    let addrs = BoundAddrs { http: http_listener.local_addr()?, tcp: tcp_listener.local_addr()?, quic: quic_endpoint.local_addr()?, peer: cluster.listener.local_addr() };

    let cert = std::fs::read(config.data_dir.join(quic::CERT_FILE)).ok().or_else(|| {
        quic::load_or_create_identity(&config).ok().and_then(|(c, _)| c.first().map(|c| c.to_vec()))
    });
    let state = actix_web::web::Data::new(ApiState {
        ctx: ctx.clone(),
        admin_digest: secret_digest(&admin_token),
        metrics: metrics.clone(),
        node: NodeInfo {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            addresses: Addresses { http: addrs.http.to_string(), tcp: addrs.tcp.to_string(), quic: addrs.quic.to_string(), peer: addrs.peer.to_string() },
            quic_cert_der_hex: cert.map(hex::encode).unwrap_or_default(),
        },
        cluster: cluster.node.clone(),
    });
    let http = actix_web::HttpServer::new(move || actix_web::App::new().app_data(state.clone()).configure(api::configure))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace_secs as u64)
        .listen(http_listener)?
        .run();
    let http_handle = http.handle();
    actix_rt::spawn(http);

    let webhooks = WebhookWorker::start(ctx.clone(), push_rx).context("starting the webhook worker")?;
    let (stop, stop_rx) = watch::channel(false);
    cluster.runtime.spawn(crate::cluster::takeover::run(ctx.clone(), cluster.node.clone(), stop_rx.clone()));
    actix_rt::spawn(tcp::accept_loop(tcp_listener, ctx.clone(), workers.clone(), stop_rx.clone()));
    actix_rt::spawn(quic::accept_loop(quic_endpoint, ctx.clone(), workers.clone(), stop_rx.clone()));
    let upkeep = metrics.clone();
    let upkeep_ctx = ctx.clone();
    let upkeep_cluster = cluster.node.clone();
    let mut upkeep_stop = stop_rx;
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Counting conversations walks the directory: here, every few
                    // seconds, not on every record write.
                    crate::metrics::set_conversation_gauges(&upkeep_ctx.directory);
                    crate::metrics::set_cluster_gauges(&upkeep_cluster);
                    upkeep.run_upkeep();
                }
                _ = upkeep_stop.wait_for(|s| *s) => break,
            }
        }
    });

    let ports = serde_json::json!({"http": addrs.http.to_string(), "tcp": addrs.tcp.to_string(), "quic": addrs.quic.to_string(), "peer": addrs.peer.to_string()});
    write_file_private(&config.data_dir.join("ports.json"), ports.to_string().as_bytes())?;
    ctx.set_ready(true);
    tracing::info!(http = %addrs.http, tcp = %addrs.tcp, quic = %addrs.quic, peer = %addrs.peer, data_dir = %config.data_dir.display(), "switchboard node ready");
    Ok(RunningNode { ctx, addrs, admin_token, stop, http: http_handle, arbiters, webhooks, cluster })
}

/// The client address other nodes dial to forward this node's tenants' clients: the
/// bound TCP address, or, when that is every interface, the host this node
/// advertises for its peer link with the bound port.
fn advertised_client_addr(config: &Config, bound: std::net::SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    match config.advertise_peer_addr.as_deref().and_then(|a| a.rsplit_once(':')) {
        Some((host, _)) => format!("{host}:{}", bound.port()),
        None => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port()).to_string(),
    }
}

/// Starts this node's raft groups on their own runtime, in the same RocksDB as the
/// store, with the peer link listening. A node without seeds and without state
/// creates a cluster of one and waits until its shards have leaders; a node with
/// seeds waits until it has joined (shards that have no leader yet answer
/// "unavailable, retry" meanwhile).
async fn start_cluster(config: &Config, store: &Arc<Store>, listener: Arc<dyn CommitListener>, client_addr: String) -> anyhow::Result<(Cluster, Arc<dyn ConversationLog>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("raft").enable_all().build().context("starting the raft runtime")?;
    match start_groups(config, store, listener, client_addr, runtime.handle()).await {
        Ok((node, listener, dialer, log)) => Ok((Cluster { node, runtime: RaftRuntime(Some(runtime)), listener, dialer }, log)),
        Err(e) => {
            // Dropping a runtime inside an async context panics.
            runtime.shutdown_background();
            Err(e)
        }
    }
}

type Started = (Arc<ClusterNode>, PeerListener, Arc<TcpTransport>, Arc<dyn ConversationLog>);

async fn start_groups(config: &Config, store: &Arc<Store>, listener: Arc<dyn CommitListener>, client_addr: String, runtime: &tokio::runtime::Handle) -> anyhow::Result<Started> {
    let peer_bind = config.peer_addr.clone();
    let peer_socket = runtime
        .spawn(async move { tokio::net::TcpListener::bind(&peer_bind).await })
        .await
        .context("raft runtime")?
        .with_context(|| format!("binding the peer link {}", config.peer_addr))?;
    let bound = peer_socket.local_addr()?;
    let advertised = config.advertise_peer_addr.clone().unwrap_or_else(|| bound.to_string());
    if config.advertise_peer_addr.is_none() && bound.ip().is_unspecified() && !config.seeds.is_empty() {
        tracing::warn!(%bound, "the peer link listens on every interface and advertises {advertised}; set advertise_peer_addr to an address other nodes can dial");
    }
    let raft_db = RaftDb::on(store.db().clone(), true);
    let commits = ClusterCommits::new(listener, store.clone());
    let mut cluster_config = ClusterConfig::new(config.node_id, NodeAddr { peer: advertised, client: client_addr });
    cluster_config.bootstrap = config.bootstrap || config.seeds.is_empty();
    cluster_config.seeds = config.seeds.clone();
    cluster_config.shard_count = config.shards;
    cluster_config.replication = config.replication;
    let dialer = TcpTransport::new();
    let shard_listener: Arc<dyn ShardListener> = commits.clone();
    let node = runtime
        .spawn(ClusterNode::start(cluster_config, raft_db, dialer.clone(), Some(shard_listener)))
        .await
        .context("raft runtime")?
        .context("starting the raft groups")?;
    let handler: Arc<dyn PeerHandler> = node.clone();
    let weak = Arc::downgrade(&handler);
    let peer_listener = runtime.spawn(async move { PeerListener::serve(peer_socket, weak) }).await.context("raft runtime")??;
    let deadline = Instant::now() + Duration::from_secs(60);
    let shards = loop {
        if let Some(n) = node.shard_count() {
            let alone = node.tables().nodes().map(|nodes| nodes.len() <= 1).unwrap_or(true);
            let replicas = node.replicas();
            if !alone || (replicas.len() == n as usize && replicas.iter().all(|r| r.leader.is_some())) {
                break n;
            }
        }
        if Instant::now() >= deadline {
            match node.shard_count() {
                None => anyhow::bail!("could not join a cluster through the seeds {:?} within 60 s", config.seeds),
                Some(_) => anyhow::bail!("the raft groups did not elect leaders within 60 s"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if shards != config.shards {
        tracing::warn!(configured = config.shards, stored = shards, "the cluster was created with a different shard count; using the stored one");
    }
    let log: Arc<dyn ConversationLog> = Arc::new(ClusterLog::new(node.clone(), runtime.clone(), shards, commits));
    // From here on a tenant's records are replicated through its shard before the
    // store writes them, so another node can take the tenant over.
    store.set_replicator(Arc::new(RecordPipeline::new(node.clone(), runtime.clone(), shards)));
    Ok((node, peer_listener, dialer, log))
}

impl RunningNode {
    /// Graceful shutdown: stop accepting, tell every client to go away, wait for the
    /// connections to drain (bounded by `shutdown_grace_secs`), flush the store.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.ctx.set_ready(false);
        let _ = self.stop.send(true);
        self.ctx.stopping.send_replace(true);
        for session in self.ctx.registry.all() {
            session.do_send(SessionEvent::GoAway { reason: "node shutting down".into() });
        }
        let deadline = Instant::now() + Duration::from_secs(self.ctx.config.shutdown_grace_secs as u64);
        // Connections end once their writer flushed the GoAway.
        while self.ctx.connections.load(std::sync::atomic::Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.http.stop(true).await;
        let mut webhooks = self.webhooks;
        let _ = tokio::task::spawn_blocking(move || webhooks.stop()).await;
        let Cluster { node, mut runtime, listener, dialer } = self.cluster;
        // Leaderships move to other nodes now, not an election timeout after this
        // node goes quiet (the peers still reach it meanwhile).
        let handing = node.clone();
        if let Ok((left, led)) = runtime.spawn(async move { handing.hand_off_leadership(Duration::from_secs(5)).await }).await {
            if led > 0 {
                tracing::info!(handed_off = led - left, led, "leaderships handed off");
            }
        }
        // No more peer requests, so none reopens a group being stopped.
        drop(listener);
        let _ = runtime.spawn(async move { node.shutdown().await }).await;
        dialer.close_all();
        // Let the raft tasks and their RocksDB work end before the store closes (a
        // background shutdown let them run on while the process exited).
        if let Some(raft) = runtime.0.take() {
            let _ = tokio::task::spawn_blocking(move || raft.shutdown_timeout(Duration::from_secs(2))).await;
        }
        let store = self.ctx.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        for a in &self.arbiters {
            a.stop();
        }
        tracing::info!("stopped");
    }
}

/// Runs a node until SIGTERM or SIGINT, then shuts it down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let node = start(config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    node.shutdown().await;
    Ok(())
}
