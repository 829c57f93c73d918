//! Webhook settings and delivery status.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookBody {
    url: String,
    push_url: Option<String>,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    if !url.starts_with("http://") || url.len() > 2000 || url.len() < 8 {
        return Err(ApiError::BadRequest(format!("{url:?}: an http:// URL is required (terminate TLS in a proxy)")));
    }
    Ok(())
}

pub(super) async fn put_webhook(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>, body: web::Json<WebhookBody>) -> Result<HttpResponse, ApiError> {
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

pub(super) async fn get_webhook(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    state.ctx.directory.webhook(tenant.id).map(|w| HttpResponse::Ok().json(w)).ok_or_else(|| ApiError::NotFound("webhook".into()))
}

pub(super) async fn webhook_deliveries(req: HttpRequest, state: web::Data<ApiState>, path: web::Path<u64>) -> Result<HttpResponse, ApiError> {
    let tenant = Caller::for_tenant(&req, &state, TenantId(path.into_inner()))?;
    let store = state.ctx.store.clone();
    let id = tenant.id;
    let records = web::block(move || store.outbox_of(id, MAX_LIMIT)).await??;
    Ok(HttpResponse::Ok().json(records))
}
