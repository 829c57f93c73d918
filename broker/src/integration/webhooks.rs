//! Webhook delivery from the durable outbox (RocksDB, written in the same batch as the
//! change it reports), and the offline-push watch.
//!
//! - At least once: an event leaves the pending part of the outbox only after the
//!   receiver answered 2xx; a crash or restart resumes from the outbox.
//! - Signed: `X-Switchboard-Signature: sha256=<hex HMAC-SHA256(tenant signing secret, body)>`;
//!   `X-Switchboard-Event-Id` carries the event id, which receivers use to deduplicate.
//! - Retried with exponential backoff (`webhook_retry_base_ms` doubling up to
//!   `webhook_retry_max_ms`); a tenant's events go out in order, so one failing event
//!   holds back the tenant's later ones (never another tenant's).
//! - Push: for every message to a visitor from an agent or the bot, a check runs after
//!   `push_after_secs`; if no device of the visitor acknowledged it by then, a
//!   `push.requested` event is queued (once per unread stretch of a conversation).
//!
//! Plain `http://` receivers only: put a TLS-terminating proxy in front for https.

use crate::context::{now_ms, Ctx};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::cmp::Reverse;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use switchboard_protocol::auth::hmac_sha256;
use switchboard_protocol::{ConversationId, Participant, TenantId, VisitorId};
use switchboard_raft_store::{OutboxRecord, WebhookEvent};

/// A message a visitor should read: checked for an acknowledgement at `due_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PushCheck {
    /// When to check.
    pub due_ms: u64,
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The message.
    pub seq: u64,
}

/// The running worker.
pub struct WebhookWorker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl WebhookWorker {
    /// Starts the worker thread.
    pub fn start(ctx: Ctx, push_rx: Receiver<PushCheck>) -> std::io::Result<WebhookWorker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new().name("webhooks".into()).spawn(move || run(ctx, push_rx, flag))?;
        Ok(WebhookWorker { stop, handle: Some(handle) })
    }

    /// Stops the worker (after its current attempt).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Backoff before attempt `attempts + 1`.
pub fn backoff_ms(base_ms: u64, max_ms: u64, attempts: u32) -> u64 {
    base_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30)).min(max_ms)
}

fn run(ctx: Ctx, push_rx: Receiver<PushCheck>, stop: Arc<AtomicBool>) {
    let poll = Duration::from_millis(ctx.config.webhook_poll_ms as u64);
    let mut checks: BinaryHeap<Reverse<PushCheck>> = BinaryHeap::new();
    let mut pushed: HashMap<ConversationId, u64> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        // Collect push checks until the poll interval passes.
        match push_rx.recv_timeout(poll) {
            Ok(c) => {
                checks.push(Reverse(c));
                while let Ok(c) = push_rx.try_recv() {
                    checks.push(Reverse(c));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        run_push_checks(&ctx, &mut checks, &mut pushed);
        if let Err(e) = deliver_due(&ctx) {
            tracing::warn!(error = %e, "webhook outbox pass failed");
        }
    }
}

fn run_push_checks(ctx: &Ctx, checks: &mut BinaryHeap<Reverse<PushCheck>>, pushed: &mut HashMap<ConversationId, u64>) {
    let now = now_ms();
    let mut events = Vec::new();
    while checks.peek().is_some_and(|Reverse(c)| c.due_ms <= now) {
        let Some(Reverse(c)) = checks.pop() else { break };
        let acked = ctx.log.cursor(c.conversation, Participant::Visitor(c.visitor)).unwrap_or(0);
        if acked >= c.seq {
            continue;
        }
        // One push per unread stretch: skip if one was requested after the last ack.
        if pushed.get(&c.conversation).is_some_and(|p| *p > acked) {
            continue;
        }
        pushed.insert(c.conversation, c.seq);
        events.push((c.tenant, WebhookEvent::PushRequested { conversation: c.conversation, visitor: c.visitor, seq: c.seq }));
    }
    if !events.is_empty() {
        let rx = ctx.store.enqueue_events(events);
        if let Err(e) = futures_block(rx) {
            tracing::warn!(error = %e, "cannot queue push.requested");
        }
    }
    if pushed.len() > 100_000 {
        pushed.clear();
    }
}

fn futures_block<T>(rx: switchboard_raft_store::store::Durable<T>) -> Result<T, switchboard_raft_store::StoreError> {
    rx.blocking_recv().unwrap_or(Err(switchboard_raft_store::StoreError::Closed))
}

fn deliver_due(ctx: &Ctx) -> Result<(), switchboard_raft_store::StoreError> {
    let now = now_ms();
    let mut held: HashSet<TenantId> = HashSet::new();
    for mut rec in ctx.store.outbox_pending(512)? {
        if held.contains(&rec.tenant) {
            continue;
        }
        if rec.next_attempt_at_ms > now {
            held.insert(rec.tenant);
            continue;
        }
        rec.attempts += 1;
        match deliver(ctx, &rec) {
            Ok(()) => {
                rec.delivered_at_ms = Some(now_ms());
                rec.last_error = None;
            }
            Err(reason) => {
                tracing::debug!(event = rec.id, tenant = %rec.tenant, attempts = rec.attempts, %reason, "webhook attempt failed");
                rec.next_attempt_at_ms = now_ms() + backoff_ms(ctx.config.webhook_retry_base_ms, ctx.config.webhook_retry_max_ms, rec.attempts);
                rec.last_error = Some(reason);
                held.insert(rec.tenant);
            }
        }
        futures_block(ctx.store.update_outbox(&rec))?;
    }
    Ok(())
}

/// The JSON body of an event.
pub fn body(ctx: &Ctx, rec: &OutboxRecord) -> Result<String, String> {
    let (kind, data) = match &rec.event {
        WebhookEvent::Conversation { kind, record } => (kind.clone(), serde_json::to_value(record).map_err(|e| e.to_string())?),
        WebhookEvent::MessageCreated { conversation, seq } => {
            let m = ctx
                .log
                .read(*conversation, seq.saturating_sub(1), 1, usize::MAX)
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or_else(|| format!("message {conversation}/{seq} missing"))?;
            ("message.created".to_string(), serde_json::to_value(m).map_err(|e| e.to_string())?)
        }
        WebhookEvent::RatingSubmitted { rating } => ("rating.submitted".to_string(), serde_json::to_value(rating).map_err(|e| e.to_string())?),
        WebhookEvent::PushRequested { conversation, visitor, seq } => {
            ("push.requested".to_string(), serde_json::json!({"conversation": conversation, "visitor": visitor, "seq": seq}))
        }
    };
    let body = serde_json::json!({"id": rec.id, "type": kind, "tenant": rec.tenant, "created_at_ms": rec.created_at_ms, "data": data});
    Ok(body.to_string())
}

fn deliver(ctx: &Ctx, rec: &OutboxRecord) -> Result<(), String> {
    let hook = ctx.directory.webhook(rec.tenant).ok_or("no webhook configured")?;
    let tenant = ctx.directory.tenant(rec.tenant).ok_or("tenant gone")?;
    let url = match (&rec.event, &hook.push_url) {
        (WebhookEvent::PushRequested { .. }, Some(push)) => push.clone(),
        _ => hook.url.clone(),
    };
    let body = body(ctx, rec)?;
    let signature = hex::encode(hmac_sha256(&tenant.signing_secret, body.as_bytes()));
    let response = ureq::post(&url)
        .timeout(Duration::from_secs(ctx.config.webhook_timeout_secs as u64))
        .set("content-type", "application/json")
        .set("x-switchboard-event-id", &rec.id.to_string())
        .set("x-switchboard-signature", &format!("sha256={signature}"))
        .send_string(&body);
    match response {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("status {code}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_ms(1000, 10_000, a)).collect();
        assert_eq!(got, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff_ms(1000, 300_000, 200), 300_000, "no overflow");
    }
}
