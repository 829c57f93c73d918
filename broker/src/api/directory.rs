//! Tenants, agents and their tokens, skill groups, visitor profiles.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    name: String,
}

#[derive(Serialize)]
pub(super) struct TenantCreated {
    id: TenantId,
    name: String,
    api_key: String,
    signing_secret: String,
    created_at_ms: u64,
}

#[derive(Serialize)]
pub(super) struct TenantView {
    id: TenantId,
    name: String,
    created_at_ms: u64,
}

pub(super) async fn create_tenant(req: HttpRequest, state: web::Data<ApiState>, body: web::Json<CreateTenant>) -> Result<HttpResponse, ApiError> {
    Caller::admin(&req, &state)?;
    check_name(&body.name)?;
    let store = &state.ctx.store;
    // Ids come from the control plane (unique across nodes), above any this node's
    // store handed out on its own before.
    let floor = state.ctx.directory.tenants().iter().map(|t| t.id.0).max().unwrap_or(0) + 1;
    let id = state.cluster.place_tenant(floor).await.map_err(|e| ApiError::Unavailable(format!("placing the tenant: {e}")))?;
    let api_key = tenant_random_secret(id);
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

pub(super) async fn list_tenants(req: HttpRequest, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
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
pub(super) struct CreateAgent {
    name: String,
    capacity: Option<u32>,
}

pub(super) async fn create_agent(
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

pub(super) async fn list_agents(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.agents_of(tenant.id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateAgent {
    name: Option<String>,
    capacity: Option<u32>,
}

pub(super) async fn update_agent(
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

pub(super) async fn issue_agent_token(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, agent) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let agent = state.ctx.directory.agent(tenant.id, AgentId(agent)).ok_or_else(|| ApiError::NotFound(format!("agent {agent}")))?;
    let token = tenant_random_secret(tenant.id);
    let digest = secret_digest(&token);
    let record = AgentTokenRecord { tenant: tenant.id, agent: agent.id, created_at_ms: now_ms() };
    durable(state.ctx.store.put_agent_token(&digest, &record)).await?;
    state.ctx.directory.insert_agent_token(digest, record);
    Ok(HttpResponse::Created().json(serde_json::json!({ "token": token, "agent": agent.id, "tenant": tenant.id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupBody {
    name: Option<String>,
    members: Option<Vec<AgentId>>,
    strategy: Option<Strategy>,
    auto_transfer_secs: Option<u32>,
    max_queue: Option<u32>,
    overflow_group: Option<GroupId>,
    overflow_after_secs: Option<u32>,
    /// `null` or absent: unchanged; `{"utc_offset_minutes": 480, "days": []}` etc. An
    /// object with `"always": true` removes the hours.
    hours: Option<HoursBody>,
    sticky_wait_secs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum HoursBody {
    Always { always: bool },
    Weekly(BusinessHours),
}

/// Applies the optional routing settings of `body` to `record`, checking them.
fn apply_group_settings(state: &ApiState, tenant: TenantId, record: &mut GroupRecord, body: &GroupBody) -> Result<(), ApiError> {
    if let Some(strategy) = body.strategy {
        record.strategy = strategy;
    }
    if let Some(secs) = body.auto_transfer_secs {
        record.auto_transfer_secs = secs;
    }
    if let Some(secs) = body.sticky_wait_secs {
        record.sticky_wait_secs = secs;
    }
    if let Some(n) = body.max_queue {
        record.max_queue = n;
    }
    if let Some(secs) = body.overflow_after_secs {
        record.overflow_after_secs = secs;
    }
    if let Some(to) = body.overflow_group {
        if to == record.id || (to != GroupId(0) && state.ctx.directory.group(tenant, to).is_none()) {
            return Err(ApiError::BadRequest(format!("overflow_group {} is not another group of this tenant", to.0)));
        }
        record.overflow_group = Some(to);
    }
    match &body.hours {
        None => {}
        Some(HoursBody::Always { always: true }) => record.hours = None,
        Some(HoursBody::Always { always: false }) => return Err(ApiError::BadRequest("hours: give weekly hours, or {\"always\": true}".into())),
        Some(HoursBody::Weekly(h)) => {
            if !(-14 * 60..=14 * 60).contains(&h.utc_offset_minutes) {
                return Err(ApiError::BadRequest("hours.utc_offset_minutes must be within ±840".into()));
            }
            if let Some(d) = h.days.iter().find(|d| d.weekday > 6 || d.open_minute >= d.close_minute || d.close_minute > 1440) {
                return Err(ApiError::BadRequest(format!("hours: weekday {} {}-{} is not a valid interval (weekday 0-6, minutes 0-1440, open < close)", d.weekday, d.open_minute, d.close_minute)));
            }
            record.hours = Some(h.clone());
        }
    }
    if record.auto_transfer_secs > 86_400 || record.overflow_after_secs > 86_400 || record.sticky_wait_secs > 86_400 {
        return Err(ApiError::BadRequest("auto_transfer_secs, overflow_after_secs and sticky_wait_secs must be at most 86400".into()));
    }
    Ok(())
}

fn check_members(state: &ApiState, tenant: TenantId, members: &[AgentId]) -> Result<(), ApiError> {
    match members.iter().find(|a| state.ctx.directory.agent(tenant, **a).is_none()) {
        Some(a) => Err(ApiError::BadRequest(format!("agent {} is not an agent of this tenant", a.0))),
        None => Ok(()),
    }
}

pub(super) async fn create_group(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<GroupBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let name = body.name.clone().ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    check_name(&name)?;
    let members = body.members.clone().unwrap_or_default();
    check_members(&state, tenant.id, &members)?;
    let id = GroupId(durable(state.ctx.store.allocate_id(IdKind::Group)).await?);
    let mut record = GroupRecord::new(tenant.id, id, name, members, now_ms());
    apply_group_settings(&state, tenant.id, &mut record, &body)?;
    durable(state.ctx.store.put_group(&record)).await?;
    state.ctx.directory.insert_group(record.clone());
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(GroupChanged { group: id, members: record.members.clone(), strategy: record.strategy, hours: record.hours.clone() });
    Ok(HttpResponse::Created().json(record))
}

pub(super) async fn list_groups(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.groups_of(tenant.id)))
}

pub(super) async fn update_group(
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
        None if group == 0 => GroupRecord::new(tenant.id, GroupId(0), "default".into(), vec![], now_ms()),
        None => return Err(ApiError::NotFound(format!("group {group}"))),
    };
    apply_group_settings(&state, tenant.id, &mut record, &body)?;
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
    state.ctx.routers.get(tenant.id, &state.ctx).do_send(GroupChanged { group: record.id, members: record.members.clone(), strategy: record.strategy, hours: record.hours.clone() });
    Ok(HttpResponse::Ok().json(record))
}


#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileBody {
    vip: Option<bool>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
}

pub(super) async fn put_profile(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>, body: web::Json<ProfileBody>) -> Result<HttpResponse, ApiError> {
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

pub(super) async fn get_profile(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, visitor) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let record = state.ctx.directory.profile(tenant.id, VisitorId(visitor)).unwrap_or_else(|| VisitorProfileRecord::new(tenant.id, VisitorId(visitor)));
    Ok(HttpResponse::Ok().json(record))
}

/// Most channels one tenant maps.
const MAX_CHANNELS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelBody {
    group: u64,
}

pub(super) async fn put_channel(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, String)>,
    body: web::Json<ChannelBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, channel) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    crate::session::check_channel(&channel).map_err(ApiError::BadRequest)?;
    let group = GroupId(body.group);
    if group != GroupId(0) && state.ctx.directory.group(tenant.id, group).is_none() {
        return Err(ApiError::BadRequest(format!("group {} is not a group of this tenant", group.0)));
    }
    let existing = state.ctx.directory.channels_of(tenant.id);
    if existing.len() >= MAX_CHANNELS && !existing.iter().any(|c| c.channel == channel) {
        return Err(ApiError::BadRequest(format!("a tenant has at most {MAX_CHANNELS} channels")));
    }
    let record = ChannelRecord { tenant: tenant.id, channel, group, updated_at_ms: now_ms() };
    durable(state.ctx.store.put_channel(&record)).await?;
    state.ctx.directory.put_channel(record.clone());
    Ok(HttpResponse::Ok().json(record))
}

pub(super) async fn list_channels(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.channels_of(tenant.id)))
}

pub(super) async fn delete_channel(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, String)>) -> Result<HttpResponse, ApiError> {
    let (tenant, channel) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    if state.ctx.directory.channel_group(tenant.id, &channel).is_none() {
        return Err(ApiError::NotFound(format!("channel {channel:?}")));
    }
    durable(state.ctx.store.delete_channel(tenant.id, &channel)).await?;
    state.ctx.directory.remove_channel(tenant.id, &channel);
    Ok(HttpResponse::NoContent().finish())
}
