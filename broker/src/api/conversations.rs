//! Conversations, their messages, and agents' quality figures.

use super::*;

/// Quality figures of one agent (see `service::reports` for the definitions).
pub(super) async fn agent_stats(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, agent) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let agent = state.ctx.directory.agent(tenant.id, AgentId(agent)).ok_or_else(|| ApiError::NotFound(format!("agent {agent}")))?.id;
    let store = state.ctx.store.clone();
    let log = state.ctx.log.clone();
    let tenant_id = tenant.id;
    let stats = web::block(move || -> Result<_, switchboard_raft_store::StoreError> {
        let mut convs = Vec::new();
        for r in store.conversations()?.into_iter().filter(|r| r.tenant == tenant_id && r.agent == Some(agent)) {
            let messages = log.read(r.id, 0, usize::MAX, usize::MAX)?;
            convs.push((r, messages));
        }
        let scores: Vec<u8> = store.ratings_of(tenant_id)?.iter().filter(|r| r.agent == Some(agent)).map(|r| r.score).collect();
        Ok(crate::service::reports::agent_stats(agent, &convs).with_ratings(&scores))
    })
    .await??;
    Ok(HttpResponse::Ok().json(stats))
}


#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListConversations {
    #[serde(default)]
    state: StateFilter,
    limit: Option<usize>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StateFilter {
    #[default]
    Open,
    Closed,
    All,
}

#[derive(Serialize)]
pub(super) struct ConversationView {
    #[serde(flatten)]
    record: ConversationRecord,
    last_seq: Option<u64>,
}

pub(super) async fn list_conversations(
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

pub(super) async fn close_conversation(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
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
pub(super) struct ReadMessages {
    after_seq: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn read_messages(
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
    let log = state.ctx.log.clone();
    let messages = web::block(move || log.read(conversation, after, limit, usize::MAX)).await??;
    Ok(HttpResponse::Ok().json(messages))
}

/// A conversation's internal notes (open or closed).
pub(super) async fn read_notes(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<(u64, u64)>) -> Result<HttpResponse, ApiError> {
    let (tenant, conversation) = path.into_inner();
    let tenant = Caller::for_tenant(&req, &state, TenantId(tenant))?;
    let store = state.ctx.store.clone();
    let id = tenant.id;
    let notes = web::block(move || store.notes_of(id, ConversationId(conversation))).await??;
    Ok(HttpResponse::Ok().json(notes))
}
