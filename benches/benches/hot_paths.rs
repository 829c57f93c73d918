//! Hot paths: frame encode/decode, the assignment decision, group-commit appends.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use std::time::Instant;
use switchboard_broker::service::assignment::Pool;
use switchboard_protocol::*;
use switchboard_raft_store::{log::NoListener, AppendRequest, ConversationLog, Store, StoreOptions};

fn chat_message(len: usize) -> ServerFrame {
    ServerFrame::Message(ChatMessage {
        conversation: ConversationId(123_456),
        seq: 42,
        sender: Participant::Visitor(VisitorId(987_654)),
        client_msg_id: 0x1234_5678_9abc,
        sent_at_ms: 1_795_000_000_000,
        body: "x".repeat(len),
    })
}

fn codec(c: &mut Criterion) {
    let codec = FrameCodec::default();
    let mut g = c.benchmark_group("codec");
    for len in [32usize, 512] {
        let frame = chat_message(len);
        let bytes = codec.encode_to_vec(&frame).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("encode_message", len), &frame, |b, f| {
            let mut buf = Vec::with_capacity(1024);
            b.iter(|| {
                buf.clear();
                codec.encode(f, &mut buf).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("decode_message", len), &bytes, |b, bytes| {
            b.iter(|| codec.decode_payload::<ServerFrame>(&bytes[4..]).unwrap())
        });
    }
    let send = ClientFrame::Send(SendMessage { client_msg_id: 77, conversation: Some(ConversationId(123_456)), body: "x".repeat(32) });
    let bytes = codec.encode_to_vec(&send).unwrap();
    g.bench_function("decode_send_32", |b| b.iter(|| codec.decode_payload::<ClientFrame>(&bytes[4..]).unwrap()));
    g.finish();
}

fn assignment(c: &mut Criterion) {
    let mut g = c.benchmark_group("assignment");
    g.bench_function("place_and_release_1k_agents", |b| {
        b.iter_batched_ref(
            || {
                let mut pool = Pool::new();
                for a in 0..1000 {
                    pool.set_capacity(AgentId(a), 20);
                    pool.connect(AgentId(a));
                }
                // half full, unevenly
                for c in 0..10_000u64 {
                    pool.place(ConversationId(c), GroupId(0), c as i64);
                }
                pool
            },
            |pool| {
                pool.place(ConversationId(1_000_000), GroupId(0), 1_000_000);
                pool.release(ConversationId(1_000_000));
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("group_commit_append");
    g.sample_size(10);
    for batch in [1usize, 10, 100, 1000] {
        let store = Arc::new(Store::open(&dir.path().join(format!("b{batch}")), StoreOptions { max_batch_ops: batch, sync: true, node: 0 }, Arc::new(NoListener)).unwrap());
        let mut next = 0u64;
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new("fsync_batch", batch), |b| {
            b.iter(|| {
                let futs: Vec<_> = (0..batch)
                    .map(|i| {
                        next += 1;
                        store.append(AppendRequest {
                            conversation: ConversationId(i as u64 % 64),
                            sender: Participant::Visitor(VisitorId(1)),
                            client_msg_id: next,
                            body: "x".repeat(200),
                            sent_at_ms: 0,
                            origin: 0,
                            received_at: Instant::now(),
                            webhook: None,
                        })
                    })
                    .collect();
                rt.block_on(async {
                    for f in futs {
                        f.await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, assignment, group_commit);
criterion_main!(benches);
