//! What operators rely on: metrics, health, config errors, graceful shutdown.

use crate::support::*;
use std::process::Command;
use switchboard_protocol::*;

#[tokio::test]
async fn metrics_pass_promtool_after_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let t = create_tenant(&node, "acme");
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![]).await;
    let (mut visitor, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = visitor.send_accepted(1, None, "hi").await;
    agent.messages(conv, 1).await;
    let mut bad = Raw::connect(node.tcp).await;
    bad.send(&ClientFrame::Ping).await;
    bad.until_closed().await;

    let text = ureq::get(&node.url("/metrics")).call().unwrap().into_string().unwrap();
    for name in [
        "switchboard_connections{transport=\"tcp\"}",
        "switchboard_logins_total",
        "switchboard_messages_accepted_total",
        "switchboard_messages_delivered_total",
        "switchboard_message_accept_seconds_bucket",
        "switchboard_store_commit_batch_ops_bucket",
        "switchboard_store_commit_seconds_bucket",
        "switchboard_conversations_active",
        "switchboard_seats_online",
        "switchboard_process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // A cluster of one hosts and leads its 64 shards and the control plane.
    for line in ["switchboard_raft_shards_hosted 64", "switchboard_raft_shards_led 64", "switchboard_raft_shards_leaderless 0", "switchboard_raft_control_leader 1", "switchboard_cluster_cut_off 0"] {
        assert!(text.lines().any(|l| l == line), "{line} missing from /metrics:\n{text}");
    }
    let path = dir.path().join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    assert!(out.status.success(), "promtool: {}{}\n{text}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn sigterm_says_goaway_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let health = ureq::get(&node.url("/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);
    let t = create_tenant(&node, "acme");
    let (mut visitor, _) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let status = node.terminate();
    assert!(status.success(), "exit status {status}:\n{}", node.log());
    let frames = visitor.until_closed().await;
    assert!(frames.iter().any(|f| matches!(f, ServerFrame::GoAway { .. })), "{frames:?}\n{}", node.log());
    node.assert_no_panic();
}

#[test]
fn invalid_configuration_is_reported_whole_and_defaults_print() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--tcp-addr", "nowhere", "--max-frame-len", "5", "--tcp-heartbeat-secs", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["tcp_addr", "max_frame_len", "tcp_heartbeat_secs"] {
        assert!(err.contains(field), "{field} not reported: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("print-default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tcp_heartbeat_secs = 270"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "bogus_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_key"));
}
