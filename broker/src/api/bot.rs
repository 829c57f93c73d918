//! The bot's settings, the knowledge base, and agents' quick replies.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BotBody {
    enabled: bool,
    welcome: String,
    #[serde(default)]
    menu: Vec<MenuItemRecord>,
    confidence: Option<f32>,
    handoff_group: Option<GroupId>,
}

pub(super) async fn put_bot(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<BotBody>) -> Result<HttpResponse, ApiError> {
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

pub(super) async fn get_bot(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    state.ctx.directory.bot(tenant.id).map(|b| HttpResponse::Ok().json(b)).ok_or_else(|| ApiError::NotFound("bot settings".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KnowledgeBody {
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

pub(super) async fn create_knowledge(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<KnowledgeBody>) -> Result<HttpResponse, ApiError> {
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

pub(super) async fn list_knowledge(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.knowledge_of(tenant.id)))
}

/// Replaces an entry; an empty `questions` list deletes it.
pub(super) async fn update_knowledge(
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
pub(super) struct QuickReplyBody {
    title: String,
    body: String,
    /// Personal to this agent; absent: the whole tenant's.
    agent: Option<AgentId>,
}

fn check_quick_reply(state: &ApiState, tenant: TenantId, body: &QuickReplyBody, allow_empty: bool) -> Result<(), ApiError> {
    if body.title.len() > 200 || body.body.len() > 4000 || (!allow_empty && (body.title.trim().is_empty() || body.body.trim().is_empty())) {
        return Err(ApiError::BadRequest("title 1-200 bytes, body 1-4000 bytes".into()));
    }
    if let Some(a) = body.agent {
        if state.ctx.directory.agent(tenant, a).is_none() {
            return Err(ApiError::BadRequest(format!("agent {} is not an agent of this tenant", a.0)));
        }
    }
    Ok(())
}

pub(super) async fn create_quick_reply(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<QuickReplyBody>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    check_quick_reply(&state, tenant.id, &body, false)?;
    let id = durable(state.ctx.store.allocate_id(IdKind::QuickReply)).await?;
    let body = body.into_inner();
    let reply = QuickReply { id, agent: body.agent, title: body.title, body: body.body };
    durable(state.ctx.store.put_quick_reply(tenant.id, &reply)).await?;
    state.ctx.directory.put_quick_reply(tenant.id, reply.clone());
    Ok(HttpResponse::Created().json(reply))
}

pub(super) async fn list_quick_replies(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    Ok(HttpResponse::Ok().json(state.ctx.directory.quick_replies_for(tenant.id, None)))
}

/// Replaces a quick reply; an empty body deletes it.
pub(super) async fn update_quick_reply(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(u64, u64)>,
    body: web::Json<QuickReplyBody>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let existing = state.ctx.directory.quick_replies_for(tenant.id, None).into_iter().find(|q| q.id == id);
    let Some(existing) = existing else { return Err(ApiError::NotFound(format!("quick reply {id}"))) };
    check_quick_reply(&state, tenant.id, &body, true)?;
    if body.agent != existing.agent {
        // The key includes the owner: remove the old one first.
        durable(state.ctx.store.put_quick_reply(tenant.id, &QuickReply { body: String::new(), ..existing.clone() })).await?;
    }
    let body = body.into_inner();
    let reply = QuickReply { id, agent: body.agent, title: body.title, body: body.body };
    durable(state.ctx.store.put_quick_reply(tenant.id, &reply)).await?;
    state.ctx.directory.put_quick_reply(tenant.id, reply.clone());
    Ok(HttpResponse::Ok().json(reply))
}
