//! Webhooks from the durable outbox, and push requests for visitors who did not read.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_protocol::auth::verify_hmac_sha256;
use switchboard_protocol::*;

/// A webhook receiver on 127.0.0.1:0 that answers 500 while `failing` is above zero
/// (counting down per request), then 200, and keeps every event it answered 200 to.
struct Receiver {
    url: String,
    failing: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<(u64, Value, bool)>>>, // (event id, body, signature ok)
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(secret: &str, failing: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let failing = Arc::new(AtomicUsize::new(failing));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (f, a, n, secret) = (failing.clone(), accepted.clone(), attempts.clone(), secret.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut len, mut sig, mut line) = (0usize, String::new(), String::new());
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("x-switchboard-signature: sha256=") {
                        sig = v.trim().to_string();
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                n.fetch_add(1, Ordering::SeqCst);
                let fail = f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| x.checked_sub(1)).is_ok();
                let status = if fail { "500 Internal Server Error" } else { "200 OK" };
                if !fail {
                    let ok = hex::decode(&sig).is_ok_and(|s| verify_hmac_sha256(secret.as_bytes(), &body, &s));
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    a.lock().unwrap().push((v["id"].as_u64().unwrap(), v, ok));
                }
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Receiver { url, failing, accepted, attempts }
    }

    fn events(&self) -> Vec<(u64, Value, bool)> {
        self.accepted.lock().unwrap().clone()
    }
}

fn configure(node: &Node, t: &Tenant, body: Value) {
    let r = ureq::put(&node.url(&format!("/v1/tenants/{}/webhook", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .send_json(body)
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn every_event_reaches_a_flaky_receiver_exactly_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--webhook-retry-base-ms", "50"]);
    let t = create_tenant(&node, "acme");
    // Fails until told otherwise (a huge count), so events pile up in the outbox.
    let receiver = Receiver::start(&t.secret, usize::MAX);
    configure(&node, &t, json!({"url": receiver.url}));
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: token.clone() }, vec![]).await;
    let (mut v, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = v.send_accepted(1, None, "one").await;
    v.send_accepted(2, Some(conv), "two").await;
    assert_eq!(assigned(&mut agent).await, conv);
    agent.send_accepted(1, Some(conv), "three").await;
    wait_until("some failed attempts", WAIT, || receiver.attempts.load(Ordering::SeqCst) >= 3);
    node.kill9();
    drop((agent, v));

    let node = Node::start(dir.path(), &["--webhook-retry-base-ms", "50"]);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![Cursor { conversation: conv, seq: 3 }]).await;
    agent.send(&ClientFrame::Close { conversation: conv }).await;
    // The receiver recovers after two more failures.
    receiver.failing.store(2, Ordering::SeqCst);
    // created, assigned, 3 x message.created, closed
    let deliveries = || -> Value {
        ureq::get(&node.url(&format!("/v1/tenants/{}/webhook/deliveries", t.id.0)))
            .set("authorization", &format!("Bearer {}", t.api_key))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    // Done when the outbox holds six events and none is pending: nothing more can come.
    wait_until("all six events delivered", Duration::from_secs(30), || {
        let d = deliveries();
        let d = d.as_array().unwrap();
        d.len() == 6 && d.iter().all(|r| r["delivered_at_ms"].is_u64())
    });
    let events = receiver.events();
    let mut ids: Vec<u64> = events.iter().map(|(id, _, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "each event accepted exactly once: {events:?}");
    assert!(events.iter().all(|(_, _, sig)| *sig), "every signature verifies");
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for (_, body, _) in &events {
        *kinds.entry(body["type"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(kinds.get("message.created"), Some(&3), "{kinds:?}");
    for k in ["conversation.created", "conversation.assigned", "conversation.closed"] {
        assert_eq!(kinds.get(k), Some(&1), "{k}: {kinds:?}");
    }
    let bodies: Vec<&str> = events.iter().filter_map(|(_, b, _)| b["data"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["one", "two", "three"], "a tenant's events arrive in order");
    let status = deliveries();
    assert!(status.as_array().unwrap().iter().any(|r| r["attempts"].as_u64() > Some(1)), "retries are visible: {status}");
}

#[tokio::test]
async fn a_push_is_requested_for_an_unread_message_and_not_for_a_read_one() {
    let (_dir, node, t) = node_with_tenant(&["--push-after-secs", "1", "--webhook-retry-base-ms", "50"]);
    let receiver = Receiver::start(&t.secret, 0);
    configure(&node, &t, json!({"url": receiver.url}));
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;

    // The reader acknowledges at once.
    let (mut reader, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c_read, _) = reader.send_accepted(1, None, "hi").await;
    assert_eq!(assigned(&mut agent).await, c_read);
    // The other visitor writes, then closes the app.
    let (mut away, aw) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (c_away, _) = away.send_accepted(1, None, "hello?").await;
    assert_eq!(assigned(&mut agent).await, c_away);
    drop(away);

    let (_, seq_read) = agent.send_accepted(1, Some(c_read), "answer for the reader").await;
    let m = reader.messages(c_read, 1).await;
    reader.send(&ClientFrame::Ack { conversation: c_read, seq: m[0].seq }).await;
    assert_eq!(m[0].seq, seq_read);
    // Sent after the reader's message, so its check is due later.
    let (_, seq_away) = agent.send_accepted(2, Some(c_away), "answer for the absent one").await;

    let Participant::Visitor(away_id) = aw.identity else { panic!() };
    let pushes = || -> Vec<Value> {
        receiver.events().into_iter().map(|(_, b, _)| b).filter(|b| b["type"] == "push.requested").collect()
    };
    wait_until("push.requested", Duration::from_secs(20), || !pushes().is_empty());
    let p = pushes();
    assert_eq!(p.len(), 1, "only the unread message asks for a push: {p:?}");
    assert_eq!(p[0]["data"]["visitor"].as_u64(), Some(away_id.0));
    assert_eq!(p[0]["data"]["conversation"].as_u64(), Some(c_away.0));
    assert_eq!(p[0]["data"]["seq"].as_u64(), Some(seq_away));
}
