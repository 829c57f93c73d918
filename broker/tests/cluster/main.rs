//! In-process cluster tests: replication, failover, partitions, growth, restart.
//! Every wait is on state; no test sleeps for a fixed time.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{append, seq_of, TestCluster};
use switchboard_protocol::{ConversationId, Participant, VisitorId};
use switchboard_raft_store::raft::placement::conversation_id;
use switchboard_raft_store::raft::ShardCommand;

const WAIT: Duration = Duration::from_secs(60);

async fn three_nodes(mut cluster: TestCluster) -> TestCluster {
    for id in 1..=3 {
        cluster.start(id).await;
    }
    cluster.wait_until("every shard has three voters", WAIT, |c| c.fully_replicated(3)).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_agree_and_a_new_leader_continues_the_sequence() {
    failover(three_nodes(TestCluster::new(8, 3)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_tcp_replicas_agree_and_a_new_leader_continues_the_sequence() {
    failover(three_nodes(TestCluster::over_tcp(8, 3)).await).await;
}

async fn failover(mut cluster: TestCluster) {
    let shard = 0;
    let conv = conversation_id(shard, 1);
    let leader = cluster.leader_of(shard).expect("a leader");
    for i in 1..=20u64 {
        let seq = seq_of(cluster.node(leader).write(shard, append(conv, i, &format!("m{i}"))).await.expect("append"));
        assert_eq!(seq, i);
    }
    cluster.wait_until("every replica has the 20 messages", WAIT, |c| (1..=3).all(|n| c.messages(n, shard, conv).len() == 20)).await;
    let reference = cluster.messages(leader, shard, conv);
    for n in 1..=3 {
        assert_eq!(cluster.messages(n, shard, conv), reference, "replica on node {n} differs");
    }

    cluster.stop(leader).await;
    cluster.wait_until("a remaining node leads the shard", WAIT, |c| c.leader_of(shard).is_some()).await;
    let survivor = *cluster.nodes.keys().next().expect("a survivor");
    // A slow link (every peer request delayed) slows replication but loses nothing.
    cluster.faults.set_delay(Some(Duration::from_millis(5)));
    for i in 21..=40u64 {
        let seq = seq_of(cluster.node(survivor).write(shard, append(conv, i, &format!("m{i}"))).await.expect("append after failover"));
        assert_eq!(seq, i, "the sequence continues without a gap or fork");
    }
    cluster.faults.set_delay(None);
    let alive: Vec<_> = cluster.nodes.keys().copied().collect();
    cluster.wait_until("both survivors have 40 messages", WAIT, |c| alive.iter().all(|&n| c.messages(n, shard, conv).len() == 40)).await;
    for &n in &alive {
        let all = cluster.messages(n, shard, conv);
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
        assert_eq!(&all[..20], &reference[..], "history before the failover is unchanged on node {n}");
        assert!(all.iter().all(|m| m.body == format!("m{}", m.client_msg_id) && m.seq == m.client_msg_id));
    }
    // A retried append (same idempotency key) is not appended twice.
    let again = cluster.node(survivor).write(shard, append(conv, 40, "m40")).await.expect("retry");
    assert_eq!(again, switchboard_raft_store::raft::ShardResponse::Duplicate { seq: 40 });
    for id in alive {
        cluster.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_cannot_acknowledge_and_converges_after_healing() {
    partition(three_nodes(TestCluster::new(8, 3)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_tcp_a_partitioned_leader_cannot_acknowledge_and_converges_after_healing() {
    partition(three_nodes(TestCluster::over_tcp(8, 3)).await).await;
}

async fn partition(mut cluster: TestCluster) {
    let shard = 1;
    let conv = conversation_id(shard, 7);
    let old = cluster.leader_of(shard).expect("a leader");
    for i in 1..=10u64 {
        cluster.node(old).write(shard, append(conv, i, "before")).await.expect("append");
    }
    let others: Vec<u64> = (1..=3).filter(|&n| n != old).collect();
    let other_peers: Vec<String> = others.iter().map(|&n| cluster.peer(n)).collect();
    cluster.faults.isolate(&cluster.peer(old), &other_peers.iter().map(String::as_str).collect::<Vec<_>>());

    // The isolated leader takes the write into its log but cannot commit it.
    let lost = cluster.node(old).write_local(shard, append(conv, 1_000, "never acknowledged"), Instant::now() + Duration::from_secs(2)).await;
    assert!(lost.is_err(), "an isolated leader acknowledged a write: {lost:?}");

    cluster
        .wait_until("the majority elects a leader", WAIT, |c| {
            others.iter().any(|&n| c.node(n).replicas().iter().any(|r| r.shard == shard && r.leader == Some(n) && r.state == openraft::ServerState::Leader))
        })
        .await;
    for i in 11..=20u64 {
        let seq = seq_of(cluster.node(others[0]).write(shard, append(conv, i, "majority")).await.expect("majority append"));
        assert_eq!(seq, i);
    }

    cluster.faults.heal();
    cluster
        .wait_until("the old leader converges to the majority's log", WAIT, |c| {
            let reference = c.messages(others[0], shard, conv);
            reference.len() == 20 && (1..=3).all(|n| c.messages(n, shard, conv) == reference)
        })
        .await;
    let log = cluster.messages(old, shard, conv);
    assert!(log.iter().all(|m| m.body != "never acknowledged"), "the unacknowledged write survived");
    assert_eq!(log.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_from_one_node_to_three_replicates_every_shard_while_appending() {
    let shards = 8;
    let mut cluster = TestCluster::new(shards, 3);
    cluster.start(1).await;
    cluster.wait_until("node 1 leads every shard", WAIT, |c| (0..shards).all(|s| c.leader_of(s) == Some(1))).await;

    let node1 = cluster.node(1).clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        let mut acked: BTreeMap<ConversationId, Vec<u64>> = BTreeMap::new();
        let started = Instant::now();
        let mut i = 0u64;
        // Bounded in count and time; stops earlier when the test says so.
        while !writer_stop.load(Ordering::Relaxed) && i < 5_000 && started.elapsed() < Duration::from_secs(90) {
            i += 1;
            let shard = (i % u64::from(shards)) as u32;
            let conv = conversation_id(shard, 1 + i % 3);
            match node1.write(shard, append(conv, i, "grow")).await {
                Ok(r) => acked.entry(conv).or_default().push(seq_of(r)),
                Err(e) => panic!("append {i} failed while the cluster grew: {e}"),
            }
        }
        acked
    });

    cluster.start(2).await;
    cluster.start(3).await;
    cluster.wait_until("every shard reaches three replicas", Duration::from_secs(90), |c| c.fully_replicated(3)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total > 0, "no append went through while the cluster grew");
    eprintln!("{total} appends acknowledged while the cluster grew from one node to three");
    for (conv, seqs) in &acked {
        assert_eq!(seqs, &(1..=seqs.len() as u64).collect::<Vec<_>>(), "acknowledged seqs of {conv:?}");
    }
    let shard_of = |conv: ConversationId| switchboard_raft_store::raft::placement::conversation_shard(conv, shards);
    cluster
        .wait_until("every replica holds every acknowledged message", WAIT, |c| {
            acked.iter().all(|(conv, seqs)| (1..=3).all(|n| c.messages(n, shard_of(*conv), *conv).len() == seqs.len()))
        })
        .await;
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}

/// A leader hands a shard to another voter while appends keep coming through every
/// node: the other voter leads one term later (no election was lost on the way), and
/// every append is acknowledged, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handover_under_appends_moves_the_leader_in_one_term_and_fails_no_append() {
    let shard = 0;
    let cluster = three_nodes(TestCluster::new(8, 3)).await;
    let leader = cluster.leader_of(shard).expect("a leader");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=3u64)
        .map(|n| {
            let (node, stop) = (cluster.node(n).clone(), stop.clone());
            tokio::spawn(async move {
                let conv = conversation_id(shard, 100 + n);
                let mut seqs = Vec::new();
                // Bounded in count; stops earlier when the test says so.
                while !stop.load(Ordering::Relaxed) && seqs.len() < 5_000 {
                    let i = seqs.len() as u64 + 1;
                    let r = node.write(shard, append(conv, i, "handover")).await.unwrap_or_else(|e| panic!("append {i} through node {n}: {e}"));
                    seqs.push(seq_of(r));
                }
                (conv, seqs)
            })
        })
        .collect();
    let to = (1..=3).find(|&n| n != leader).expect("another voter");
    let term = |n: u64| cluster.node(n).replica(shard).map(|r| r.raft.metrics().borrow().current_term).unwrap_or(0);
    cluster.wait_until("appends are under way", WAIT, |c| c.node(leader).replica(shard).is_some_and(|r| r.raft.metrics().borrow().last_log_index > Some(50))).await;
    let before = term(leader);
    assert_eq!(cluster.node(leader).hand_over(shard, to).await, Ok(true), "the handover completes");
    cluster.wait_until("every node sees the new leader", WAIT, |c| c.leader_of(shard) == Some(to)).await;
    assert_eq!(term(to), before + 1, "one election, won at the first try");
    let more = cluster.node(to).replica(shard).and_then(|r| r.raft.metrics().borrow().last_log_index).unwrap_or(0) + 50;
    cluster.wait_until("appends go on through the new leader", WAIT, |c| c.node(to).replica(shard).is_some_and(|r| r.raft.metrics().borrow().last_log_index > Some(more))).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let (conv, seqs) = w.await.expect("writer");
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "acknowledged seqs of {conv:?}");
        cluster.wait_until("every replica holds every acknowledged append", WAIT, |c| (1..=3).all(|n| c.messages(n, shard, conv).len() == seqs.len())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_restart_keeps_messages_cursors_and_conversations() {
    let shards = 8;
    let mut cluster = three_nodes(TestCluster::new(shards, 3)).await;
    let visitor = Participant::Visitor(VisitorId(5));
    let mut expected = Vec::new();
    for shard in 0..shards {
        let conv = conversation_id(shard, 42);
        let writer = cluster.leader_of(shard).expect("leader");
        for i in 1..=5u64 {
            cluster.node(writer).write(shard, append(conv, i, &format!("s{shard} m{i}"))).await.expect("append");
        }
        cluster.node(writer).write(shard, ShardCommand::AckBatch(vec![(conv, visitor, 3)])).await.expect("ack");
        let record = switchboard_raft_store::ConversationRecord {
            id: conv,
            tenant: switchboard_protocol::TenantId(1),
            visitor: VisitorId(5),
            agent: Some(switchboard_protocol::AgentId(2)),
            group: switchboard_protocol::GroupId(0),
            state: switchboard_protocol::ConversationState::Assigned,
            queue_ticket: 0,
            created_at_ms: 1_700_000_000_000,
            queued_at_ms: Some(1_700_000_000_001),
            assigned_at_ms: Some(1_700_000_000_002),
            first_agent_reply_at_ms: None,
            closed_at_ms: None,
        };
        cluster.node(writer).write(shard, ShardCommand::PutConversation(record)).await.expect("conversation");
        expected.push((shard, conv, record));
    }
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    cluster.wait_until("every shard has a leader again", WAIT, |c| (0..shards).all(|s| c.leader_of(s).is_some())).await;
    for (shard, conv, record) in &expected {
        cluster
            .wait_until("every replica has applied its log again", WAIT, |c| (1..=3).all(|n| c.messages(n, *shard, *conv).len() == 5))
            .await;
        for n in 1..=3 {
            let reader = cluster.node(n).replica(*shard).expect("replica").reader;
            let bodies: Vec<String> = reader.read(*conv, 0, 100, usize::MAX).expect("read").into_iter().map(|m| m.body).collect();
            assert_eq!(bodies, (1..=5).map(|i| format!("s{shard} m{i}")).collect::<Vec<_>>());
            assert_eq!(reader.cursor(*conv, visitor).expect("cursor"), 3, "cursor on node {n}");
            assert_eq!(reader.conversation(*conv).expect("conversation").as_ref(), Some(record));
        }
        let seq = seq_of(cluster.node(1).write(*shard, append(*conv, 6, "after restart")).await.expect("append after restart"));
        assert_eq!(seq, 6);
    }
    for id in 1..=3 {
        cluster.stop(id).await;
    }
}
