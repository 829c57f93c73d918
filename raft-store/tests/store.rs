//! Store behaviour against a real RocksDB in a temp dir.

use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchboard_protocol::{AgentId, ConversationId, Participant, TenantId, VisitorId};
use switchboard_raft_store::store::{durable, IdKind};
use switchboard_raft_store::*;

#[derive(Default)]
struct Recorder(Mutex<Vec<(u64, u64)>>);

impl CommitListener for Recorder {
    fn committed(&self, batch: &[Committed]) {
        let mut seen = self.0.lock().unwrap();
        seen.extend(batch.iter().map(|c| (c.message.conversation.0, c.message.seq)));
    }
}

fn request(conv: u64, sender: Participant, cmid: u64, body: &str) -> AppendRequest {
    AppendRequest {
        conversation: ConversationId(conv),
        sender,
        client_msg_id: cmid,
        body: body.to_string(),
        sent_at_ms: 1,
        origin: 0,
        received_at: Instant::now(),
        webhook: None,
    }
}

const V: Participant = Participant::Visitor(VisitorId(1));
const A: Participant = Participant::Agent(AgentId(2));

fn open(dir: &std::path::Path, listener: Arc<dyn CommitListener>) -> Store {
    Store::open(dir, StoreOptions::default(), listener).unwrap()
}

#[tokio::test]
async fn appends_get_consecutive_seqs_per_conversation_and_the_listener_sees_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), rec.clone());
    let futs: Vec<_> = (0..100u64).map(|i| store.append(request(1 + i % 2, V, i, "m"))).collect();
    let mut outcomes = Vec::new();
    for f in futs {
        outcomes.push(f.await.unwrap());
    }
    let conv1: Vec<u64> = outcomes.iter().step_by(2).map(|o| o.seq()).collect();
    assert_eq!(conv1, (1..=50).collect::<Vec<_>>());
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 100);
    for conv in [1, 2] {
        let seqs: Vec<u64> = seen.iter().filter(|(c, _)| *c == conv).map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_resent_client_msg_id_returns_the_same_seq_in_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), rec.clone());
    // same batch (submitted back to back)
    let a = store.append(request(7, V, 42, "hello"));
    let b = store.append(request(7, V, 42, "hello"));
    assert_eq!(a.await.unwrap(), AppendOutcome::Committed { seq: 1 });
    assert_eq!(b.await.unwrap(), AppendOutcome::Duplicate { seq: 1 });
    // a later batch, and the same id from another sender is a different message
    assert_eq!(store.append(request(7, V, 42, "hello")).await.unwrap(), AppendOutcome::Duplicate { seq: 1 });
    assert_eq!(store.append(request(7, A, 42, "hi")).await.unwrap(), AppendOutcome::Committed { seq: 2 });
    assert_eq!(store.read(ConversationId(7), 0, 100, usize::MAX).unwrap().len(), 2);
    assert_eq!(rec.0.lock().unwrap().len(), 2, "duplicates are not announced again");
}

#[tokio::test]
async fn everything_acknowledged_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Arc::new(log::NoListener));
        for i in 0..10 {
            store.append(request(3, V, i, &format!("m{i}"))).await.unwrap();
        }
        store.ack(ConversationId(3), A, 7);
        store.flush().await.unwrap().unwrap();
        assert_eq!(durable(store.allocate_id(IdKind::Visitor)).await.unwrap(), 1);
        // dropped without shutdown() beyond Drop: like a process exit after acks
    }
    let store = open(dir.path(), Arc::new(log::NoListener));
    let msgs = store.read(ConversationId(3), 0, 100, usize::MAX).unwrap();
    assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(msgs[4].body, "m4");
    assert_eq!(store.cursor(ConversationId(3), A).unwrap(), 7);
    assert_eq!(store.last_seq(ConversationId(3)).unwrap(), 10);
    assert_eq!(store.append(request(3, V, 3, "m3")).await.unwrap(), AppendOutcome::Duplicate { seq: 4 });
    assert_eq!(store.append(request(3, V, 99, "new")).await.unwrap(), AppendOutcome::Committed { seq: 11 });
    let next = durable(store.allocate_id(IdKind::Visitor)).await.unwrap();
    assert!(next > 1, "ids are never reused after a restart (got {next})");
}

#[tokio::test]
async fn ids_are_unique_and_increasing_within_and_across_leases() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let store = open(dir.path(), Arc::new(log::NoListener));
        // Many at once (one batch), then one at a time (batches that write nothing).
        let futs: Vec<_> = (0..1500).map(|_| store.allocate_id(IdKind::Agent)).collect();
        for f in futs {
            seen.push(durable(f).await.unwrap());
        }
        for _ in 0..1000 {
            seen.push(durable(store.allocate_id(IdKind::Agent)).await.unwrap());
        }
        store.shutdown();
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing, so unique, across a reopen");
    assert_eq!(seen[0], 1);
}

#[tokio::test]
async fn read_honours_range_limit_and_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Arc::new(log::NoListener));
    for i in 0..20 {
        store.append(request(5, V, i, &"x".repeat(100))).await.unwrap();
    }
    store.append(request(6, V, 0, "other")).await.unwrap();
    let after = store.read(ConversationId(5), 15, 100, usize::MAX).unwrap();
    assert_eq!(after.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![16, 17, 18, 19, 20]);
    assert_eq!(store.read(ConversationId(5), 0, 3, usize::MAX).unwrap().len(), 3);
    let budget = store.read(ConversationId(5), 0, 100, 350).unwrap();
    assert!(budget.len() >= 2 && budget.len() <= 3, "{}", budget.len());
    assert_eq!(store.read(ConversationId(5), 0, 100, 1).unwrap().len(), 1, "always at least one");
    assert!(store.read(ConversationId(5), u64::MAX, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(store.last_seq(ConversationId(4)).unwrap(), 0);
}

#[tokio::test]
async fn cursors_never_move_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Arc::new(log::NoListener));
    store.ack(ConversationId(1), V, 5);
    store.ack(ConversationId(1), V, 3);
    store.flush().await.unwrap().unwrap();
    store.ack(ConversationId(1), V, 4);
    store.flush().await.unwrap().unwrap();
    assert_eq!(store.cursor(ConversationId(1), V).unwrap(), 5);
}

#[tokio::test]
async fn verified_visitors_keep_their_id_and_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Arc::new(log::NoListener));
        let a = store.resolve_verified_visitor(TenantId(1), "alice");
        let a2 = store.resolve_verified_visitor(TenantId(1), "alice");
        let b = store.resolve_verified_visitor(TenantId(2), "alice");
        let (a, a2, b) = (durable(a).await.unwrap(), durable(a2).await.unwrap(), durable(b).await.unwrap());
        assert_eq!(a, a2);
        assert_ne!(a, b, "the same user id in another tenant is another visitor");
        let conv = conversation(&store, TenantId(1), a);
        durable(store.put_conversation(&conv)).await.unwrap();
        store.shutdown();
    }
    let store = open(dir.path(), Arc::new(log::NoListener));
    let alice = durable(store.resolve_verified_visitor(TenantId(1), "alice")).await.unwrap();
    assert_eq!(alice, VisitorId(1));
    let convs = store.conversations().unwrap();
    assert_eq!(convs.len(), 1);
    assert!(store.next_conversation_id().0 > convs[0].id.0, "conversation ids move past what is on disk");
}

#[tokio::test]
async fn after_shutdown_writes_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Arc::new(log::NoListener));
    store.shutdown();
    assert!(matches!(store.append(request(1, V, 1, "x")).await, Err(StoreError::Closed)));
}

#[derive(Default)]
struct Answers(Mutex<Vec<(u64, Result<u64, String>)>>, Mutex<Vec<u64>>);

impl CommitListener for Answers {
    fn committed(&self, batch: &[Committed]) {
        self.1.lock().unwrap().extend(batch.iter().map(|c| c.message.seq));
    }
    fn answered(&self, answers: &[Answer]) {
        self.0.lock().unwrap().extend(answers.iter().map(|a| (a.client_msg_id, a.result.clone())));
    }
}

#[tokio::test]
async fn submitted_appends_are_answered_through_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Arc::new(Answers::default());
    let store = open(dir.path(), listener.clone());
    store.submit(request(1, V, 10, "a"));
    store.submit(request(1, V, 10, "a")); // a duplicate in the same batch or the next
    store.flush().await.unwrap().unwrap();
    store.submit(request(1, V, 10, "a")); // a duplicate of a durable message
    store.submit(request(1, V, 11, "b"));
    store.flush().await.unwrap().unwrap();
    assert_eq!(*listener.1.lock().unwrap(), vec![1, 2], "new messages go to committed()");
    assert_eq!(*listener.0.lock().unwrap(), vec![(10, Ok(1)), (10, Ok(1))], "duplicates are answered with the original seq");
    store.shutdown();
    store.submit(request(1, V, 12, "c"));
    assert_eq!(listener.0.lock().unwrap().len(), 2, "after shutdown nothing is answered (the writer is gone)");
}

/// Replicates by recording, or refuses everything.
struct FakeReplicator {
    seen: Mutex<Vec<(TenantId, Vec<raft::RecordWrite>)>>,
    refuse: bool,
}

impl RecordReplicator for FakeReplicator {
    fn replicate(&self, tenant: TenantId, writes: Vec<raft::RecordWrite>, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        self.seen.lock().unwrap().push((tenant, writes));
        done(if self.refuse { Err(StoreError::WriteFailed { reason: "refused".into() }) } else { Ok(()) });
    }
}

/// A queued conversation record of `visitor`.
fn conversation(store: &Store, tenant: TenantId, visitor: VisitorId) -> ConversationRecord {
    ConversationRecord {
        id: store.next_conversation_id(),
        tenant,
        visitor,
        agent: None,
        group: switchboard_protocol::GroupId(0),
        state: switchboard_protocol::ConversationState::Queued,
        queue_ticket: 1,
        created_at_ms: 5,
        queued_at_ms: Some(5),
        assigned_at_ms: None,
        first_agent_reply_at_ms: None,
        closed_at_ms: None,
    }
}

#[tokio::test]
async fn tenant_records_are_replicated_before_they_are_written_and_a_refused_one_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { node: 3, ..StoreOptions::default() };
    let store = Store::open(dir.path(), options, Arc::new(log::NoListener)).unwrap();
    // Before a replicator is set (a node starting), records are written here only.
    let early = conversation(&store, TenantId(7), VisitorId(1));
    durable(store.put_conversation(&early)).await.unwrap();
    let replicator = Arc::new(FakeReplicator { seen: Mutex::new(Vec::new()), refuse: false });
    store.set_replicator(replicator.clone());

    let conv = conversation(&store, TenantId(7), VisitorId(2));
    durable(store.put_conversation(&conv)).await.unwrap();
    let alice = durable(store.resolve_verified_visitor(TenantId(7), "alice")).await.unwrap();
    assert_eq!(alice.0 >> 32 & 0xff, 3, "the node id is in bits 32-39: {:#x}", alice.0);
    let agent = durable(store.allocate_id(IdKind::Agent)).await.unwrap();
    assert_eq!((agent >> 32 & 0xff, agent & 0xffff_ffff), (3, 1));
    durable(store.enqueue_events(Vec::new())).await.unwrap();

    let seen = replicator.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the conversation (with its visitor index) and the new verified visitor: {seen:?}");
    assert!(seen.iter().all(|(t, _)| *t == TenantId(7)));
    let (_, writes) = &seen[0];
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].space, raft::RecordSpace::Conversations);
    assert_eq!(writes[0].key, conv.id.0.to_be_bytes().to_vec());
    assert_eq!(seen[1].1[0].value, Some(alice.0.to_be_bytes().to_vec()));
    assert_eq!(store.conversation(conv.id).unwrap(), Some(conv));

    // A refused replication (the tenant moved on) fails the write and writes nothing.
    let refusing = Store::open(&dir.path().join("other"), StoreOptions::default(), Arc::new(log::NoListener)).unwrap();
    refusing.set_replicator(Arc::new(FakeReplicator { seen: Mutex::new(Vec::new()), refuse: true }));
    let lost = conversation(&refusing, TenantId(7), VisitorId(3));
    assert!(durable(refusing.put_conversation(&lost)).await.is_err());
    assert_eq!(refusing.conversation(lost.id).unwrap(), None);
    // Restoring a taken-over tenant writes here only.
    let restored = raft::RecordWrite { space: raft::RecordSpace::Conversations, key: lost.id.0.to_be_bytes().to_vec(), value: seen[0].1[0].value.clone() };
    durable(refusing.restore_records(vec![restored])).await.unwrap();
    assert!(refusing.conversation(lost.id).unwrap().is_some());
}
