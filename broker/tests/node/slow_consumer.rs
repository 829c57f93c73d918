//! A client that stops reading is cut off with a reason; memory stays bounded; it
//! resumes and loses nothing.

use crate::support::*;
use std::time::Duration;
use switchboard_protocol::*;

fn slow_consumer_count(node: &Node) -> u64 {
    let text = ureq::get(&node.url("/metrics")).call().unwrap().into_string().unwrap();
    text.lines()
        .find(|l| l.starts_with("switchboard_slow_consumer_disconnects_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_and_later_gets_everything() {
    let (_dir, node, t) = node_with_tenant(&["--outbound-queue-bytes", "262144"]);
    let (_, token) = create_agent(&node, t.id, 5);
    // The agent logs in, learns its conversation, then stops reading.
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: token.clone() }, vec![]).await;
    let (mut visitor, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = visitor.send_accepted(1, None, "start").await;
    assert_eq!(agent.messages(conv, 1).await[0].seq, 1);
    let rss_before = node.rss();

    // Up to ~40 MB towards the agent, which reads nothing. The node must give up on
    // it once its queue (256 KiB) and the kernel's socket buffers are full.
    let body = "z".repeat(8000);
    let limit = 5000u64;
    let mut cmid = 2;
    let mut cut_off_at = None;
    while cmid <= limit {
        // pipeline 50 sends, then collect their Accepted frames
        let batch: Vec<u64> = (cmid..(cmid + 50).min(limit + 1)).collect();
        for &i in &batch {
            visitor.send(&send(i, Some(conv), &body)).await;
        }
        let mut accepted = 0;
        while accepted < batch.len() {
            if let ServerFrame::Accepted { .. } = visitor.recv().await {
                accepted += 1;
            }
        }
        cmid += batch.len() as u64;
        if cut_off_at.is_none() && slow_consumer_count(&node) > 0 {
            cut_off_at = Some(cmid - 1);
        }
        // Keep writing a little after the cut-off: nothing may pile up for the agent.
        if cut_off_at.is_some_and(|at| cmid > at + 500) {
            break;
        }
    }
    let cut_off_at = cut_off_at.expect("the node never disconnected the non-reading agent");
    let pending_at_cut_off = (cut_off_at - 1) * body.len() as u64;
    assert!(pending_at_cut_off < 32 << 20, "{pending_at_cut_off} bytes were pending before the cut-off");
    let sent = cmid - 1;
    let rss_growth = node.rss().saturating_sub(rss_before);
    assert!(rss_growth < 64 << 20, "node grew by {rss_growth} bytes");

    // The agent now reads what the kernel buffered, then the reason, then EOF.
    let frames = agent.until_closed().await;
    let e = assert_error(frames.last().expect("frames"), ErrorCode::SLOW_CONSUMER);
    assert!(e.fatal);
    let last_seen = frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Message(m) => Some(m.seq),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    assert!(last_seen < sent, "some messages were still undelivered when the agent was cut off");

    // It resumes from its cursor and gets every remaining message, in order, once.
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![Cursor { conversation: conv, seq: last_seen }]).await;
    let rest = agent.messages(conv, (sent - last_seen) as usize).await;
    assert_eq!(rest.iter().map(|m| m.seq).collect::<Vec<_>>(), ((last_seen + 1)..=sent).collect::<Vec<_>>());
    assert!(agent.try_recv(Duration::from_millis(200)).await.is_none(), "nothing more");
    node.assert_no_panic();
}
