//! Assignment under load: caps hold, the queue drains.

use crate::support::*;
use std::collections::HashSet;
use switchboard_protocol::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_chats_never_exceed_a_cap_of_three_and_the_queue_drains() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let t = create_tenant(&node, "acme");
    const VISITORS: usize = 200;
    const CAP: usize = 3;

    // Five agents, each closing every chat as soon as it has answered it.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut agents = Vec::new();
    for _ in 0..5 {
        let (_, token) = create_agent(&node, t.id, CAP as u32);
        let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
        let done = done.clone();
        agents.push(tokio::spawn(async move {
            let mut active: HashSet<ConversationId> = HashSet::new();
            let (mut handled, mut max_active, mut cmid) = (0usize, 0usize, 0u64);
            while done.load(std::sync::atomic::Ordering::SeqCst) < VISITORS {
                let Some(frame) = agent.try_recv(std::time::Duration::from_millis(200)).await else { continue };
                let ServerFrame::Conversation(u) = frame else { continue };
                match u.state {
                    ConversationState::Assigned if active.insert(u.conversation) => {
                        max_active = max_active.max(active.len());
                        cmid += 1;
                        agent.send(&send(cmid, Some(u.conversation), "done")).await;
                        agent.send(&ClientFrame::Close { conversation: u.conversation }).await;
                    }
                    ConversationState::Closed if active.remove(&u.conversation) => {
                        handled += 1;
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            (handled, max_active)
        }));
    }

    // Two hundred visitors write at once.
    let mut visitors = Vec::new();
    for i in 0..VISITORS {
        let addr = node.tcp;
        visitors.push(tokio::spawn(async move {
            let (mut v, _) = Raw::login(addr, Auth::Anonymous { tenant: t.id }, vec![]).await;
            // The agent may close the chat before this visitor's Accepted arrives:
            // wait for both, in either order.
            v.send(&send(1, None, &format!("visitor {i}"))).await;
            let (mut conv, mut closed) = (None, None);
            let mut seen = Vec::new();
            while conv.is_none() || closed.is_none() {
                let Some(f) = v.try_recv(WAIT).await else { panic!("visitor {i} stuck after {seen:?}") };
                seen.push(f.clone());
                match f {
                    ServerFrame::Accepted { conversation, .. } => conv = Some(conversation),
                    ServerFrame::Conversation(u) if u.state == ConversationState::Closed => closed = Some(u.conversation),
                    ServerFrame::Error(e) => panic!("visitor {i}: {e:?}"),
                    _ => {}
                }
            }
            assert_eq!(conv, closed);
            conv.unwrap()
        }));
    }
    let mut convs = HashSet::new();
    for v in visitors {
        convs.insert(v.await.unwrap());
    }
    assert_eq!(convs.len(), VISITORS, "one conversation per visitor");

    let mut total = 0;
    for a in agents {
        let (handled, max_active) = a.await.unwrap();
        assert!(max_active <= CAP, "an agent held {max_active} chats at once (cap {CAP})");
        total += handled;
    }
    assert_eq!(total, VISITORS, "every chat was assigned and closed");
    let open: serde_json::Value = ureq::get(&node.url(&format!("/v1/tenants/{}/conversations", t.id.0)))
        .set("authorization", &format!("Bearer {}", t.api_key))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(open.as_array().unwrap().len(), 0, "nothing left open or queued: {open}");
    node.assert_no_panic();
}
