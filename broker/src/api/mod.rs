//! The admin/REST API (actix-web, JSON, versioned under `/v1`), health and metrics.
//! Documented in `docs/api.md`.
//!
//! Auth: `Authorization: Bearer <token>`, either the node's admin token (everything)
//! or a tenant's API key (only that tenant).

mod bot;
mod conversations;
mod directory;
pub mod error;
mod webhooks;

use crate::cluster::tenants::{tenant_of_secret, tenant_secret};
use crate::context::{now_ms, Ctx};
use crate::routing::tenant_router::{BotChanged, CapacityChanged, CloseConversation, GroupChanged};
use actix_web::{web, HttpRequest, HttpResponse};
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use switchboard_protocol::auth::secret_digest;
use switchboard_protocol::{AgentId, ConversationId, ConversationState, GroupId, QuickReply, TenantId, VisitorId};
use switchboard_raft_store::store::{durable, IdKind};
use switchboard_raft_store::{AgentRecord, AgentTokenRecord, BotRecord, ChannelRecord, ConversationRecord, GroupRecord, BusinessHours, KnowledgeRecord, MenuItemRecord, Strategy, TenantRecord, VisitorProfileRecord,
    WebhookRecord};

/// Longest display name accepted.
const MAX_NAME_LEN: usize = 200;
/// Most items one list or read returns.
const MAX_LIMIT: usize = 1000;

/// What the API handlers share.
pub struct ApiState {
    /// The node.
    pub ctx: Ctx,
    /// SHA-256 of the admin token.
    pub admin_digest: [u8; 32],
    /// The metrics exporter.
    pub metrics: PrometheusHandle,
    /// Facts about this node for `GET /v1/node`.
    pub node: NodeInfo,
    /// The node's raft side, for `GET /v1/cluster`.
    pub cluster: std::sync::Arc<crate::cluster::ClusterNode>,
}

/// `GET /v1/node`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// Crate version.
    pub version: &'static str,
    /// OS process id.
    pub pid: u32,
    /// Bound addresses.
    pub addresses: Addresses,
    /// The QUIC server certificate (DER, hex) for clients to pin in development.
    pub quic_cert_der_hex: String,
}

/// Bound addresses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Addresses {
    /// HTTP.
    pub http: String,
    /// TCP.
    pub tcp: String,
    /// QUIC.
    pub quic: String,
    /// Peer link.
    pub peer: String,
}

enum Caller {
    Admin,
    Tenant(TenantId),
}

impl Caller {
    fn of(req: &HttpRequest, state: &ApiState) -> Result<Caller, ApiError> {
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
        let token = header.strip_prefix("Bearer ").ok_or(ApiError::Unauthorized)?.trim();
        let digest = secret_digest(token);
        if digest == state.admin_digest {
            return Ok(Caller::Admin);
        }
        match state.ctx.directory.tenant_by_api_key(&digest) {
            Some(tenant) => Ok(Caller::Tenant(tenant)),
            None => {
                // A key of a tenant served elsewhere cannot be checked here.
                if let Some(tenant) = tenant_of_secret(token) {
                    misdirected(state, tenant)?;
                }
                Err(ApiError::Unauthorized)
            }
        }
    }

    fn admin(req: &HttpRequest, state: &ApiState) -> Result<(), ApiError> {
        match Caller::of(req, state)? {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden("this needs the admin token".into())),
        }
    }

    /// The caller may act for `tenant`, which exists. Another tenant's key gets 404,
    /// so keys cannot probe which tenants exist.
    fn for_tenant(req: &HttpRequest, state: &ApiState, tenant: TenantId) -> Result<TenantRecord, ApiError> {
        let allowed = match Caller::of(req, state)? {
            Caller::Admin => true,
            Caller::Tenant(t) => t == tenant,
        };
        match state.ctx.directory.tenant(tenant) {
            Some(t) if allowed => Ok((*t).clone()),
            None if allowed => {
                misdirected(state, tenant)?;
                Err(ApiError::NotFound(format!("tenant {}", tenant.0)))
            }
            _ => Err(ApiError::NotFound(format!("tenant {}", tenant.0))),
        }
    }
}

/// `Misdirected` if another node serves `tenant`; `Unavailable` while this node is
/// cut off from the cluster (its tenants are moving to the majority).
fn misdirected(state: &ApiState, tenant: TenantId) -> Result<(), ApiError> {
    if state.cluster.is_cut_off() {
        return Err(ApiError::Unavailable("this node is cut off from the rest of the cluster; send the call to another node".into()));
    }
    match state.cluster.remote_home(tenant)? {
        Some(home) => Err(ApiError::Misdirected(format!(
            "tenant {} is served by node {} (clients: {}); send its API calls to that node",
            tenant.0, home.node, home.client_addr
        ))),
        None => Ok(()),
    }
}

/// A new secret of `tenant`, naming it (`TENANT.HEX`): API keys and agent tokens.
fn tenant_random_secret(tenant: TenantId) -> String {
    tenant_secret(tenant, &random_secret())
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ApiError::BadRequest(format!("name must be 1 to {MAX_NAME_LEN} bytes")));
    }
    Ok(())
}

fn check_capacity(capacity: u32) -> Result<(), ApiError> {
    if !(1..=10_000).contains(&capacity) {
        return Err(ApiError::BadRequest(format!("capacity {capacity} is not in 1..=10000")));
    }
    Ok(())
}

/// Routes of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(64 * 1024).error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(e.to_string()).into()))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/node", web::get().to(node_info))
        .route("/v1/cluster", web::get().to(cluster_status))
        .route("/v1/cluster/nodes/{node}/drain", web::post().to(drain_node))
        .route("/v1/cluster/nodes/{node}", web::delete().to(remove_node))
        .route("/v1/tenants", web::post().to(directory::create_tenant))
        .route("/v1/tenants", web::get().to(directory::list_tenants))
        .route("/v1/tenants/{tenant}/agents", web::post().to(directory::create_agent))
        .route("/v1/tenants/{tenant}/agents", web::get().to(directory::list_agents))
        .route("/v1/tenants/{tenant}/agents/{agent}", web::patch().to(directory::update_agent))
        .route("/v1/tenants/{tenant}/agents/{agent}/tokens", web::post().to(directory::issue_agent_token))
        .route("/v1/tenants/{tenant}/agents/{agent}/stats", web::get().to(conversations::agent_stats))
        .route("/v1/tenants/{tenant}/groups", web::post().to(directory::create_group))
        .route("/v1/tenants/{tenant}/groups", web::get().to(directory::list_groups))
        .route("/v1/tenants/{tenant}/groups/{group}", web::put().to(directory::update_group))
        .route("/v1/tenants/{tenant}/channels", web::get().to(directory::list_channels))
        .route("/v1/tenants/{tenant}/channels/{channel}", web::put().to(directory::put_channel))
        .route("/v1/tenants/{tenant}/channels/{channel}", web::delete().to(directory::delete_channel))
        .route("/v1/tenants/{tenant}/visitors/{visitor}/profile", web::put().to(directory::put_profile))
        .route("/v1/tenants/{tenant}/visitors/{visitor}/profile", web::get().to(directory::get_profile))
        .route("/v1/tenants/{tenant}/webhook", web::put().to(webhooks::put_webhook))
        .route("/v1/tenants/{tenant}/webhook", web::get().to(webhooks::get_webhook))
        .route("/v1/tenants/{tenant}/webhook/deliveries", web::get().to(webhooks::webhook_deliveries))
        .route("/v1/tenants/{tenant}/quick-replies", web::post().to(bot::create_quick_reply))
        .route("/v1/tenants/{tenant}/quick-replies", web::get().to(bot::list_quick_replies))
        .route("/v1/tenants/{tenant}/quick-replies/{id}", web::put().to(bot::update_quick_reply))
        .route("/v1/tenants/{tenant}/bot", web::put().to(bot::put_bot))
        .route("/v1/tenants/{tenant}/bot", web::get().to(bot::get_bot))
        .route("/v1/tenants/{tenant}/knowledge", web::post().to(bot::create_knowledge))
        .route("/v1/tenants/{tenant}/knowledge", web::get().to(bot::list_knowledge))
        .route("/v1/tenants/{tenant}/knowledge/{entry}", web::put().to(bot::update_knowledge))
        .route("/v1/tenants/{tenant}/conversations", web::get().to(conversations::list_conversations))
        .route("/v1/tenants/{tenant}/conversations/{conversation}/close", web::post().to(conversations::close_conversation))
        .route("/v1/tenants/{tenant}/conversations/{conversation}/messages", web::get().to(conversations::read_messages))
        .route("/v1/tenants/{tenant}/conversations/{conversation}/notes", web::get().to(conversations::read_notes))
        .default_service(web::to(|| async { Err::<HttpResponse, _>(ApiError::NotFound("route".into())) }));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    if state.ctx.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({"ready": true}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"ready": false}))
    }
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render(&state.metrics))
}

/// `GET /v1/cluster` (admin): nodes, shards, leaders and replication lag as this
/// node sees them.
async fn cluster_status(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    Caller::admin(&req, &state)?;
    Ok(HttpResponse::Ok().json(state.cluster.status()))
}

/// `POST /v1/cluster/nodes/{node}/drain` (admin): move every replica off `node`.
async fn drain_node(req: HttpRequest, state: web::Data<ApiState>, node: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Caller::admin(&req, &state)?;
    state.cluster.drain(*node).await.map_err(cluster_error)?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"node": *node, "state": "Draining"})))
}

/// `DELETE /v1/cluster/nodes/{node}` (admin): remove a drained node.
async fn remove_node(req: HttpRequest, state: web::Data<ApiState>, node: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    Caller::admin(&req, &state)?;
    state.cluster.remove(*node).await.map_err(cluster_error)?;
    Ok(HttpResponse::NoContent().finish())
}

fn cluster_error(e: crate::cluster::WriteError) -> ApiError {
    use crate::cluster::WriteError;
    match e {
        WriteError::Refused(why) if why.starts_with("no node") => ApiError::NotFound(why),
        WriteError::Refused(why) => ApiError::Conflict(why),
        other => ApiError::Unavailable(other.to_string()),
    }
}

async fn node_info(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.node)
}
