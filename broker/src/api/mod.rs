//! The admin/REST API (actix-web, JSON, versioned under `/v1`), health and metrics.
//! Documented in `docs/api.md`.
//!
//! Auth: `Authorization: Bearer <token>`, either the node's admin token (everything)
//! or a tenant's API key (only that tenant).

pub mod error;

use crate::context::{now_ms, Ctx};
use crate::routing::tenant_router::{BotChanged, CapacityChanged, CloseConversation, GroupChanged};
use actix_web::{web, HttpRequest, HttpResponse};
use error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use switchboard_protocol::auth::secret_digest;
use switchboard_protocol::{AgentId, ConversationId, ConversationState, GroupId, TenantId, VisitorId};
use switchboard_raft_store::store::{durable, IdKind};
use switchboard_raft_store::{AgentRecord, AgentTokenRecord, BotRecord, ConversationLog, ConversationRecord, GroupRecord, KnowledgeRecord, MenuItemRecord, Strategy, TenantRecord, VisitorProfileRecord,
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
        state.ctx.directory.tenant_by_api_key(&digest).map(Caller::Tenant).ok_or(ApiError::Unauthorized)
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
            _ => Err(ApiError::NotFound(format!("tenant {}", tenant.0))),
        }
    }
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
        .route("/v1/tenants", web::post().to(create_tenant))
        .route("/v1/tenants", web::get().to(list_tenants))
        .route("/v1/tenants/{tenant}/agents", web::post().to(create_agent))
        .route("/v1/tenants/{tenant}/agents", web::get().to(list_agents))
        .route("/v1/tenants/{tenant}/agents/{agent}", web::patch().to(update_agent))
        .route("/v1/tenants/{tenant}/agents/{agent}/tokens", web::post().to(issue_agent_token))
        .route("/v1/tenants/{tenant}/agents/{agent}/stats", web::get().to(agent_stats))
        .route("/v1/tenants/{tenant}/groups", web::post().to(create_group))
        .route("/v1/tenants/{tenant}/groups", web::get().to(list_groups))
        .route("/v1/tenants/{tenant}/groups/{group}", web::put().to(update_group))
        .route("/v1/tenants/{tenant}/visitors/{visitor}/profile", web::put().to(put_profile))
        .route("/v1/tenants/{tenant}/visitors/{visitor}/profile", web::get().to(get_profile))
        .route("/v1/tenants/{tenant}/webhook", web::put().to(put_webhook))
        .route("/v1/tenants/{tenant}/webhook", web::get().to(get_webhook))
        .route("/v1/tenants/{tenant}/webhook/deliveries", web::get().to(webhook_deliveries))
        .route("/v1/tenants/{tenant}/bot", web::put().to(put_bot))
        .route("/v1/tenants/{tenant}/bot", web::get().to(get_bot))
        .route("/v1/tenants/{tenant}/knowledge", web::post().to(create_knowledge))
        .route("/v1/tenants/{tenant}/knowledge", web::get().to(list_knowledge))
        .route("/v1/tenants/{tenant}/knowledge/{entry}", web::put().to(update_knowledge))
        .route("/v1/tenants/{tenant}/conversations", web::get().to(list_conversations))
        .route("/v1/tenants/{tenant}/conversations/{conversation}/close", web::post().to(close_conversation))
        .route("/v1/tenants/{tenant}/conversations/{conversation}/messages", web::get().to(read_messages))
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

async fn node_info(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.node)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

#[derive(Serialize)]
struct TenantCreated {
    id: TenantId,
    name: String,
    api_key: String,
    signing_secret: String,
    created_at_ms: u64,
}

#[derive(Serialize)]
struct TenantView {
    id: TenantId,
    name: String,
    created_at_ms: u64,
}

async fn create_tenant(req: HttpRequest, state: web::Data<ApiState>, body: web::Json<CreateTenant>) -> Result<HttpResponse, ApiError> {
    Caller::admin(&req, &state)?;
    check_name(&body.name)?;
    let store = &state.ctx.store;
    let id = TenantId(durable(store.allocate_id(IdKind::Tenant)).await?);
    let api_key = random_secret();
    let signing_secret = random_secret();
    let record = TenantRecord {
        id,
        name: body.name.clone(),
        api_key_digest: secret_digest(&api_key),
        signing_secret: signing_secret.as_bytes().to_vec(),
        created_at_ms: now_ms(),
    };
    durable(store.put_tenant(&record)).await?;
    state.ctx.directory.insert_tenant(record.clone());
    tracing::info!(tenant = %id, "tenant created");
    Ok(HttpResponse::Created().json(TenantCreated { id, name: record.name, api_key, signing_secret, created_at_ms: record.created_at_ms }))
}

async fn list_tenants(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let caller = Caller::of(&req, &state)?;
    let views: Vec<TenantView> = state
        .ctx
        .directory
        .tenants()
        .into_iter()
        .filter(|t| match caller {
            Caller::Admin => true,
            Caller::Tenant(id) => t.id == id,
        })
        .map(|t| TenantView { id: t.id, name: t.name.clone(), created_at_ms: t.created_at_ms })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    name: String,
    capacity: Option<u32>,
}

async fn create_agent(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<u64>,
    body: web::Json<CreateAgent>,
) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    check_name(&body.name)?;
    let capacity = body.capacity.unwrap_or(state.ctx.config.default_agent_capacity);
    check_capacity(capacity)?;
    let id = AgentId(durable(state.ctx.store.allocate_id(IdKind::Agent)).await?);
    let record = AgentRecord { tenant: tenant.id, id, name: body.name.clone(), capacity, created_at_ms: now_ms() };
    durable(state.ctx.store.put_agent(&record)).await?;
    state.ctx.directory.insert_agent(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(CapacityChanged { agent: id, capacity });
    Ok(HttpResponse::Created().json(record))
}

async fn list_agents(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.agents_of(tenant.id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAgent {
    name: Option<String>,
    capacity: Option<u32>,
}

async fn update_agent(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, u64)>,
    body: web::Json<UpdateAgent>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, agent) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let mut record = state.ctx.directory.agent(tenant.id, AgentId(agent)).ok_or_else(|| ApiError::NotFound(format!("agent {agent}")))?;
    if let Some(name) = &body.name {
        check_name(name)?;
        record.name = name.clone();
    }
    if let Some(capacity) = body.capacity {
        check_capacity(capacity)?;
        record.capacity = capacity;
    }
    durable(state.ctx.store.put_agent(&record)).await?;
    state.ctx.directory.insert_agent(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(CapacityChanged { agent: record.id, capacity: record.capacity });
    Ok(HttpResponse::Ok().json(record))
}

async fn issue_agent_token(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, agent) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let agent = state.ctx.directory.agent(tenant.id, AgentId(agent)).ok_or_else(|| ApiError::NotFound(format!("agent {agent}")))?;
    let token = random_secret();
    let digest = secret_digest(&token);
    let record = AgentTokenRecord { tenant: tenant.id, agent: agent.id, created_at_ms: now_ms() };
    durable(state.ctx.store.put_agent_token(&digest, &record)).await?;
    state.ctx.directory.insert_agent_token(digest, record);
    Ok(HttpResponse::Created().json(serde_json::json!({ "token": token, "agent": agent.id, "tenant": tenant.id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    name: Option<String>,
    members: Option<Vec<AgentId>>,
    strategy: Option<Strategy>,
}

fn check_members(state: &ApiState, tenant: TenantId, members: &[AgentId]) -> Result<(), ApiError> {
    match members.iter().find(|a| state.ctx.directory.agent(tenant, **a).is_none()) {
        Some(a) => Err(ApiError::BadRequest(format!("agent {} is not an agent of this tenant", a.0))),
        None => Ok(()),
    }
}

async fn create_group(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<GroupBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let name = body.name.clone().ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    check_name(&name)?;
    let members = body.members.clone().unwrap_or_default();
    check_members(&state, tenant.id, &members)?;
    let id = GroupId(durable(state.ctx.store.allocate_id(IdKind::Group)).await?);
    let record = GroupRecord { tenant: tenant.id, id, name, members, strategy: body.strategy.unwrap_or_default(), created_at_ms: now_ms() };
    durable(state.ctx.store.put_group(&record)).await?;
    state.ctx.directory.insert_group(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(GroupChanged { group: id, members: record.members.clone(), strategy: record.strategy });
    Ok(HttpResponse::Created().json(record))
}

async fn list_groups(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.groups_of(tenant.id)))
}

async fn update_group(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, u64)>,
    body: web::Json<GroupBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, group) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    // Group 0 (everyone) has no record until its name or strategy is set.
    let mut record = match state.ctx.directory.group(tenant.id, GroupId(group)) {
        Some(g) => g,
        None if group == 0 => GroupRecord { tenant: tenant.id, id: GroupId(0), name: "default".into(), members: vec![], strategy: Strategy::default(), created_at_ms: now_ms() },
        None => return Err(ApiError::NotFound(format!("group {group}"))),
    };
    if let Some(strategy) = body.strategy {
        record.strategy = strategy;
    }
    if let Some(name) = &body.name {
        check_name(name)?;
        record.name = name.clone();
    }
    if let Some(members) = &body.members {
        check_members(&state, tenant.id, members)?;
        record.members = members.clone();
    }
    durable(state.ctx.store.put_group(&record)).await?;
    state.ctx.directory.insert_group(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(GroupChanged { group: record.id, members: record.members.clone(), strategy: record.strategy });
    Ok(HttpResponse::Ok().json(record))
}

/// Quality figures of one agent (see `service::reports` for the definitions).
async fn agent_stats(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, agent) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let agent = state.ctx.directory.agent(tenant.id, AgentId(agent)).ok_or_else(|| ApiError::NotFound(format!("agent {agent}")))?.id;
    let store = state.ctx.store.clone();
    let tenant_id = tenant.id;
    let stats = web::block(move || -> Result<_, switchboard_raft_store::StoreError> {
        let mut convs = Vec::new();
        for r in store.conversations()?.into_iter().filter(|r| r.tenant == tenant_id && r.agent == Some(agent)) {
            let messages = store.read(r.id, 0, usize::MAX, usize::MAX)?;
            convs.push((r, messages));
        }
        Ok(crate::service::reports::agent_stats(agent, &convs))
    })
    .await??;
    Ok(HttpResponse::Ok().json(stats))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
    push_url: Option<String>,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    if !url.starts_with("http://") || url.len() > 2000 || url.len() < 8 {
        return Err(ApiError::BadRequest(format!("{url:?}: an http:// URL is required (terminate TLS in a proxy)")));
    }
    Ok(())
}

async fn put_webhook(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<WebhookBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    check_url(&body.url)?;
    if let Some(p) = &body.push_url {
        check_url(p)?;
    }
    let record = WebhookRecord { tenant: tenant.id, url: body.url.clone(), push_url: body.push_url.clone() };
    durable(state.ctx.store.put_webhook(&record)).await?;
    state.ctx.directory.set_webhook(record.clone());
    Ok(HttpResponse::Ok().json(record))
}

async fn get_webhook(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    state.ctx.directory.webhook(tenant.id).map(|w| HttpResponse::Ok().json(w)).ok_or_else(|| ApiError::NotFound("webhook".into()))
}

async fn webhook_deliveries(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let store = state.ctx.store.clone();
    let id = tenant.id;
    let records = web::block(move || store.outbox_of(id, MAX_LIMIT)).await??;
    Ok(HttpResponse::Ok().json(records))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    vip: Option<bool>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
}

async fn put_profile(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>, body: web::Json<ProfileBody>) -> Result<HttpResponse, ApiError> {
    let (tenant, visitor) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let visitor = VisitorId(visitor);
    let mut record = state.ctx.directory.profile(tenant.id, visitor).unwrap_or_else(|| VisitorProfileRecord::new(tenant.id, visitor));
    if let Some(vip) = body.vip {
        record.vip = vip;
    }
    if let Some(attributes) = &body.attributes {
        if attributes.len() > 100 || attributes.iter().any(|(k, v)| k.is_empty() || k.len() > 100 || v.len() > 2000) {
            return Err(ApiError::BadRequest("attributes: at most 100, keys 1-100 bytes, values at most 2000 bytes".into()));
        }
        record.attributes = attributes.clone();
    }
    durable(state.ctx.store.put_profile(&record)).await?;
    state.ctx.directory.set_profile(record.clone());
    Ok(HttpResponse::Ok().json(record))
}

async fn get_profile(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, visitor) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let record = state.ctx.directory.profile(tenant.id, VisitorId(visitor)).unwrap_or_else(|| VisitorProfileRecord::new(tenant.id, VisitorId(visitor)));
    Ok(HttpResponse::Ok().json(record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotBody {
    enabled: bool,
    welcome: String,
    #[serde(default)]
    menu: Vec<MenuItemRecord>,
    confidence: Option<f32>,
    handoff_group: Option<GroupId>,
}

async fn put_bot(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<BotBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let body = body.into_inner();
    let dir = &state.ctx.directory;
    let group_ok = |g: GroupId| g == GroupId(0) || dir.group(tenant.id, g).is_some();
    let entries: Vec<u64> = dir.knowledge_of(tenant.id).iter().map(|k| k.id).collect();
    let mut problems = Vec::new();
    if body.welcome.trim().is_empty() || body.welcome.len() > 4000 {
        problems.push("welcome must be 1 to 4000 bytes".to_string());
    }
    for (i, item) in body.menu.iter().enumerate() {
        match (item.group, item.answer) {
            (Some(g), None) if group_ok(g) => {}
            (None, Some(a)) if entries.contains(&a) => {}
            (Some(g), None) => problems.push(format!("menu item {}: group {} does not exist", i + 1, g.0)),
            (None, Some(a)) => problems.push(format!("menu item {}: knowledge entry {a} does not exist", i + 1)),
            _ => problems.push(format!("menu item {}: give exactly one of group or answer", i + 1)),
        }
        if item.label.trim().is_empty() {
            problems.push(format!("menu item {}: empty label", i + 1));
        }
    }
    let confidence = body.confidence.unwrap_or(crate::service::knowledge::DEFAULT_THRESHOLD);
    if !(0.0..=1.0).contains(&confidence) {
        problems.push(format!("confidence {confidence} is not in 0..=1"));
    }
    let handoff_group = body.handoff_group.unwrap_or(GroupId(0));
    if !group_ok(handoff_group) {
        problems.push(format!("handoff_group {} does not exist", handoff_group.0));
    }
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(problems.join("; ")));
    }
    let record = BotRecord { tenant: tenant.id, enabled: body.enabled, welcome: body.welcome, menu: body.menu, confidence, handoff_group };
    durable(state.ctx.store.put_bot(&record)).await?;
    dir.set_bot(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(BotChanged);
    Ok(HttpResponse::Ok().json(record))
}

async fn get_bot(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    state.ctx.directory.bot(tenant.id).map(|b| HttpResponse::Ok().json(b)).ok_or_else(|| ApiError::NotFound("bot settings".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnowledgeBody {
    questions: Vec<String>,
    answer: String,
}

fn check_knowledge(body: &KnowledgeBody, allow_empty: bool) -> Result<(), ApiError> {
    if (!allow_empty && body.questions.is_empty()) || body.questions.len() > 50 || body.questions.iter().any(|q| q.trim().is_empty() || q.len() > 1000) {
        return Err(ApiError::BadRequest("questions: 1 to 50 non-empty strings of at most 1000 bytes".into()));
    }
    if body.answer.trim().is_empty() && !body.questions.is_empty() || body.answer.len() > 8000 {
        return Err(ApiError::BadRequest("answer must be 1 to 8000 bytes".into()));
    }
    Ok(())
}

async fn create_knowledge(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<KnowledgeBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    check_knowledge(&body, false)?;
    let id = durable(state.ctx.store.allocate_id(IdKind::Knowledge)).await?;
    let body = body.into_inner();
    let record = KnowledgeRecord { tenant: tenant.id, id, questions: body.questions, answer: body.answer };
    durable(state.ctx.store.put_knowledge(&record)).await?;
    state.ctx.directory.put_knowledge(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(BotChanged);
    Ok(HttpResponse::Created().json(record))
}

async fn list_knowledge(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.knowledge_of(tenant.id)))
}

/// Replaces an entry; an empty `questions` list deletes it.
async fn update_knowledge(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, u64)>,
    body: web::Json<KnowledgeBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, entry) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    if !state.ctx.directory.knowledge_of(tenant.id).iter().any(|k| k.id == entry) {
        return Err(ApiError::NotFound(format!("knowledge entry {entry}")));
    }
    check_knowledge(&body, true)?;
    let body = body.into_inner();
    let record = KnowledgeRecord { tenant: tenant.id, id: entry, questions: body.questions, answer: body.answer };
    durable(state.ctx.store.put_knowledge(&record)).await?;
    state.ctx.directory.put_knowledge(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(BotChanged);
    Ok(HttpResponse::Ok().json(record))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListConversations {
    #[serde(default)]
    state: StateFilter,
    limit: Option<usize>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StateFilter {
    #[default]
    Open,
    Closed,
    All,
}

#[derive(Serialize)]
struct ConversationView {
    #[serde(flatten)]
    record: ConversationRecord,
    last_seq: Option<u64>,
}

async fn list_conversations(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<u64>,
    query: web::Query<ListConversations>,
) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let views: Vec<ConversationView> = if query.state == StateFilter::Open {
        state
            .ctx
            .directory
            .conversations_of(tenant.id)
            .into_iter()
            .take(limit)
            .map(|(_, e)| ConversationView { record: e.record, last_seq: Some(e.last_seq) })
            .collect()
    } else {
        let store = state.ctx.store.clone();
        let filter = query.state;
        let records = web::block(move || store.conversations()).await??;
        records
            .into_iter()
            .filter(|r| r.tenant == tenant.id && (filter == StateFilter::All || r.state == ConversationState::Closed))
            .take(limit)
            .map(|r| ConversationView { record: r, last_seq: state.ctx.directory.conversation(r.id).map(|e| e.last_seq) })
            .collect()
    };
    Ok(HttpResponse::Ok().json(views))
}

async fn close_conversation(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, conversation) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let conversation = ConversationId(conversation);
    match state.ctx.directory.conversation(conversation) {
        Some(e) if e.record.tenant == tenant.id => {}
        _ => return Err(ApiError::NotFound(format!("open conversation {}", conversation.0))),
    }
    let router = state.ctx.routers.get(tenant.id, &state.ctx);
    match router.send(CloseConversation { conversation, by: None }).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({"closed": conversation}))),
        Ok(Err(e)) => Err(ApiError::Storage(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadMessages {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

async fn read_messages(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, u64)>,
    query: web::Query<ReadMessages>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, conversation) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let conversation = ConversationId(conversation);
    let store = state.ctx.store.clone();
    let (after, limit) = (query.after_seq.unwrap_or(0), query.limit.unwrap_or(100).clamp(1, MAX_LIMIT));
    let owner = match state.ctx.directory.conversation(conversation) {
        Some(e) => Some(e.record.tenant),
        None => {
            let store = store.clone();
            web::block(move || store.conversation(conversation)).await??.map(|r| r.tenant)
        }
    };
    if owner != Some(tenant.id) {
        return Err(ApiError::NotFound(format!("conversation {}", conversation.0)));
    }
    let messages = web::block(move || store.read(conversation, after, limit, usize::MAX)).await??;
    Ok(HttpResponse::Ok().json(messages))
}
