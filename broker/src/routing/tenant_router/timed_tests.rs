//! The router's time-driven rules on a manual clock (paused time): each test moves
//! the clock by hand and sends `Tick`; nothing sleeps. The router runs for real: its
//! records go through a store in a temporary directory and it answers through the
//! same messages the sessions send.

use super::*;
use crate::context::{Clock, NodeContext};
use crate::routing::{Dispatcher, Registry};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::FrameCodec;
use switchboard_raft_store::{AgentRecord, DayHours, GroupRecord, Store, StoreOptions, VisitorProfileRecord};

const TENANT: TenantId = TenantId(1);
const A1: AgentId = AgentId(1);
const A2: AgentId = AgentId(2);
const SUPPORT: GroupId = GroupId(1);
const SALES: GroupId = GroupId(2);
/// Monday 2024-01-01 08:59:00 UTC.
const MONDAY_0859_MS: u64 = 1_704_099_540_000;

struct Harness {
    ctx: Ctx,
    router: Addr<TenantRouter>,
    capacity: u32,
    groups: Vec<GroupRecord>,
    _dir: Arc<tempfile::TempDir>,
}

/// A group of `members` with every option off; tests switch on what they test.
fn group(id: GroupId, members: &[AgentId]) -> GroupRecord {
    GroupRecord::new(TENANT, id, format!("group {id}"), members.to_vec(), 0)
}

/// A router for `TENANT` with agents `A1` and `A2` (capacity `capacity`) and
/// `groups`, on a manual clock standing at `start_ms`.
fn harness(capacity: u32, groups: Vec<GroupRecord>, start_ms: u64) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = crate::config::Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.auto_close_secs = 0;
    config.reopen_window_secs = 0;
    config.agent_grace_secs = 60;
    let directory = Arc::new(crate::routing::Directory::default());
    let registry = Arc::new(Registry::default());
    let (push, _) = std::sync::mpsc::channel();
    let dispatcher = Arc::new(Dispatcher::new(directory.clone(), registry.clone(), FrameCodec::new(config.max_frame_len), push, 0));
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreOptions { max_batch_ops: 64, sync: false, node: 0 }, dispatcher).expect("store"));
    assemble(config, store, directory, registry, Clock::manual(start_ms), capacity, groups, Arc::new(dir))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    config: crate::config::Config,
    store: Arc<Store>,
    directory: Arc<crate::routing::Directory>,
    registry: Arc<Registry>,
    clock: Clock,
    capacity: u32,
    groups: Vec<GroupRecord>,
    dir: Arc<tempfile::TempDir>,
) -> Harness {
    for agent in [A1, A2] {
        directory.insert_agent(AgentRecord { tenant: TENANT, id: agent, name: format!("agent {agent}"), capacity, created_at_ms: 0 });
    }
    for g in &groups {
        directory.insert_group(g.clone());
    }
    let routers = crate::routing::Routers::new(actix::Arbiter::current());
    let log: Arc<dyn switchboard_raft_store::ConversationLog> = store.clone();
    let mut node = NodeContext::new(config, store, log, 64, directory, registry, routers);
    node.clock = clock;
    let ctx: Ctx = Arc::new(node);
    let router = TenantRouter::restore(TENANT, ctx.clone()).start();
    Harness { ctx, router, capacity, groups, _dir: dir }
}

impl Harness {
    /// A new router over a directory loaded from the same store, as after a restart.
    async fn restart(self) -> Harness {
        self.settle().await;
        let ctx = self.ctx.clone();
        let directory = crate::routing::Directory::load(&ctx.store, ctx.log.as_ref(), ctx.clock.now_ms()).expect("load");
        let registry = Arc::new(Registry::default());
        assemble(ctx.config.clone(), ctx.store.clone(), Arc::new(directory), registry, ctx.clock.clone(), self.capacity, self.groups.clone(), self._dir.clone())
    }

    async fn online(&self, agent: AgentId) {
        self.router.send(SeatOnline { agent }).await.expect("router");
        self.settle().await;
    }

    async fn open(&self, visitor: u64, group: Option<GroupId>) -> ConversationId {
        let id = self.router.send(OpenConversation { visitor: VisitorId(visitor), group }).await.expect("router").expect("opened");
        self.settle().await;
        id
    }

    async fn close(&self, conversation: ConversationId) {
        self.router.send(CloseConversation { conversation, by: None }).await.expect("router").expect("closed");
        self.settle().await;
    }

    /// Moves the clock forward and lets the router act on what fell due.
    async fn advance(&self, by: Duration) {
        self.ctx.clock.advance(by);
        self.router.send(Tick).await.expect("router");
        self.settle().await;
    }

    async fn settle(&self) {
        self.router.send(Settled).await.expect("router");
    }

    /// The conversation's durable state and agent.
    fn state(&self, conversation: ConversationId) -> (ConversationState, Option<AgentId>, GroupId) {
        let rec = self.ctx.directory.conversation(conversation).expect("published").record;
        (rec.state, rec.agent, rec.group)
    }
}

/// Support (A1, A2; capacity 1; a returning visitor waits 30 s for their last agent)
/// after A1 served visitor 10 and the chat closed: A1 is visitor 10's last agent.
async fn visitor_10_served_by_a1() -> (Harness, ConversationId) {
    let mut support = group(SUPPORT, &[A1, A2]);
    support.sticky_wait_secs = 30;
    let h = harness(1, vec![support], MONDAY_0859_MS);
    h.online(A1).await;
    let first = h.open(10, Some(SUPPORT)).await;
    assert_eq!(h.state(first).1, Some(A1));
    h.close(first).await;
    (h, first)
}

#[actix_rt::test]
async fn a_returning_visitor_waits_for_their_last_agent_then_goes_to_the_group() {
    let (h, _) = visitor_10_served_by_a1().await;
    // A1 is busy with someone else; A2 has room.
    let other = h.open(11, Some(SUPPORT)).await;
    assert_eq!(h.state(other).1, Some(A1));
    h.online(A2).await;

    let back = h.open(10, Some(SUPPORT)).await;
    assert_eq!(h.state(back), (ConversationState::Queued, None, SUPPORT), "held for A1 although A2 has room");
    h.advance(Duration::from_secs(29)).await;
    assert_eq!(h.state(back).0, ConversationState::Queued, "still within the sticky wait");
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state(back), (ConversationState::Assigned, Some(A2), SUPPORT), "after the wait anyone in the group");
}

#[actix_rt::test]
async fn a_returning_visitor_gets_their_last_agent_back_when_it_frees_within_the_wait() {
    let (h, _) = visitor_10_served_by_a1().await;
    let other = h.open(11, Some(SUPPORT)).await;
    h.online(A2).await;
    let back = h.open(10, Some(SUPPORT)).await;
    h.advance(Duration::from_secs(10)).await;
    h.close(other).await;
    assert_eq!(h.state(back), (ConversationState::Assigned, Some(A1), SUPPORT));
}

#[actix_rt::test]
async fn a_vip_is_served_ahead_of_visitors_who_waited_longer() {
    let h = harness(1, vec![group(SUPPORT, &[A1])], MONDAY_0859_MS);
    let normal = h.open(10, Some(SUPPORT)).await;
    h.advance(Duration::from_secs(120)).await;
    let mut profile = VisitorProfileRecord::new(TENANT, VisitorId(20));
    profile.vip = true;
    h.ctx.directory.set_profile(profile);
    let vip = h.open(20, Some(SUPPORT)).await;
    assert_eq!(h.state(normal).0, ConversationState::Queued);
    assert_eq!(h.state(vip).0, ConversationState::Queued);

    h.online(A1).await;
    assert_eq!(h.state(vip).1, Some(A1), "the VIP first");
    assert_eq!(h.state(normal).0, ConversationState::Queued);
    h.close(vip).await;
    assert_eq!(h.state(normal).1, Some(A1), "then the one who waited");
}

#[actix_rt::test]
async fn a_full_queue_overflows_at_once_and_a_long_wait_overflows_when_it_is_due() {
    let mut support = group(SUPPORT, &[A1]);
    support.max_queue = 2;
    support.overflow_group = Some(SALES);
    support.overflow_after_secs = 60;
    let h = harness(1, vec![support, group(SALES, &[A2])], MONDAY_0859_MS);
    // Nobody of support is online; sales has A2, busy with one chat.
    h.online(A2).await;
    let busy = h.open(1, Some(SALES)).await;
    assert_eq!(h.state(busy).1, Some(A2));

    let waiting = h.open(10, Some(SUPPORT)).await;
    h.advance(Duration::from_secs(20)).await;
    let second = h.open(11, Some(SUPPORT)).await;
    let third = h.open(12, Some(SUPPORT)).await;
    assert_eq!(h.state(waiting), (ConversationState::Queued, None, SUPPORT));
    assert_eq!(h.state(second), (ConversationState::Queued, None, SUPPORT));
    assert_eq!(h.state(third), (ConversationState::Queued, None, SALES), "support's queue holds 2: the third overflows at once");

    h.advance(Duration::from_secs(39)).await;
    assert_eq!(h.state(waiting).2, SUPPORT, "59 s: not yet");
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state(waiting), (ConversationState::Queued, None, SALES), "61 s: moved to sales");
    assert_eq!(h.state(second).2, SUPPORT, "41 s: stays");
    h.close(busy).await;
    assert_eq!(h.state(waiting).1, Some(A2), "sales serves the one who has waited longest, wherever it queued first");
    assert_eq!(h.state(third).0, ConversationState::Queued);
}

#[actix_rt::test]
async fn an_unanswered_chat_moves_to_another_agent_and_an_answered_one_stays() {
    let mut support = group(SUPPORT, &[A1, A2]);
    support.auto_transfer_secs = 30;
    let h = harness(2, vec![support], MONDAY_0859_MS);
    h.online(A1).await;
    let silent = h.open(10, Some(SUPPORT)).await;
    let answered = h.open(11, Some(SUPPORT)).await;
    assert_eq!((h.state(silent).1, h.state(answered).1), (Some(A1), Some(A1)));
    h.online(A2).await;
    h.advance(Duration::from_secs(10)).await;
    h.router.send(AgentReplied { conversation: answered, agent: A1, at_ms: h.ctx.clock.now_ms() }).await.expect("router");
    h.settle().await;

    h.advance(Duration::from_secs(19)).await;
    assert_eq!(h.state(silent).1, Some(A1), "29 s: A1 still has time");
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state(silent), (ConversationState::Assigned, Some(A2), SUPPORT), "31 s without a reply: transferred");
    assert_eq!(h.state(answered).1, Some(A1), "A1 replied: stays");
}

#[actix_rt::test]
async fn outside_business_hours_chats_wait_with_a_leave_a_message_notice_and_are_served_at_opening() {
    let mut support = group(SUPPORT, &[A1]);
    // Monday to Friday 09:00-17:00 UTC.
    support.hours = Some(BusinessHours {
        utc_offset_minutes: 0,
        days: (0..5).map(|weekday| DayHours { weekday, open_minute: 9 * 60, close_minute: 17 * 60 }).collect(),
    });
    let h = harness(5, vec![support], MONDAY_0859_MS);
    h.online(A1).await;
    let early = h.open(10, Some(SUPPORT)).await;
    assert_eq!(h.state(early).0, ConversationState::Queued, "08:59: closed");
    let said = h.ctx.log.read(early, 0, 10, 1 << 20).expect("read");
    assert!(said.iter().any(|m| m.sender == Participant::Bot && m.body.contains("Leave your message")), "{said:?}");

    h.advance(Duration::from_secs(59)).await;
    assert_eq!(h.state(early).0, ConversationState::Queued, "08:59:59: still closed");
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state(early), (ConversationState::Assigned, Some(A1), SUPPORT), "09:00: served");

    // Eight hours later the group closes again: a new chat waits.
    h.advance(Duration::from_secs(8 * 3600)).await;
    let late = h.open(11, Some(SUPPORT)).await;
    assert_eq!(h.state(late).0, ConversationState::Queued, "17:00: closed");
}

#[actix_rt::test]
async fn two_agents_taking_the_same_chat_at_once_exactly_one_wins() {
    let mut manual = group(SUPPORT, &[A1, A2]);
    manual.strategy = Strategy::Manual;
    let h = harness(5, vec![manual], MONDAY_0859_MS);
    h.online(A1).await;
    h.online(A2).await;
    for round in 0..20u64 {
        let chat = h.open(100 + round, Some(SUPPORT)).await;
        assert_eq!(h.state(chat).0, ConversationState::Queued, "a manual group assigns nobody");
        let (first, second) = (A1, A2);
        // Both requests are in the router's mailbox before either is answered.
        let a = h.router.send(TakeConversation { conversation: chat, agent: first });
        let b = h.router.send(TakeConversation { conversation: chat, agent: second });
        let (a, b) = (a.await.expect("router"), b.await.expect("router"));
        h.settle().await;
        assert!(a.is_ok() != b.is_ok(), "round {round}: exactly one winner: {a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert_eq!(loser, Err(TakeError::NotQueued));
        let winner = if h.state(chat).1 == Some(first) { first } else { second };
        assert_eq!(h.state(chat), (ConversationState::Assigned, Some(winner), SUPPORT));
        h.close(chat).await;
    }
}

#[actix_rt::test]
async fn an_agent_away_past_the_grace_period_loses_their_chats_to_the_head_of_the_queue() {
    let h = harness(1, vec![group(SUPPORT, &[A1, A2])], MONDAY_0859_MS);
    h.online(A1).await;
    let held = h.open(10, Some(SUPPORT)).await;
    let newer = h.open(11, Some(SUPPORT)).await;
    assert_eq!(h.state(newer).0, ConversationState::Queued);
    h.router.send(SeatOffline { agent: A1 }).await.expect("router");
    h.advance(Duration::from_secs(59)).await;
    assert_eq!(h.state(held).1, Some(A1), "within the grace period the chat stays");
    h.advance(Duration::from_secs(2)).await;
    assert_eq!(h.state(held), (ConversationState::Queued, None, SUPPORT), "past it, requeued");
    h.online(A2).await;
    assert_eq!(h.state(held).1, Some(A2), "at the head: served before the newer chat");
    assert_eq!(h.state(newer).0, ConversationState::Queued);
}

#[actix_rt::test]
async fn after_a_restart_a_returning_visitor_still_has_their_last_agent_and_can_rate_the_closed_chat() {
    let (h, first) = visitor_10_served_by_a1().await;
    h.advance(Duration::from_secs(600)).await;

    let h = h.restart().await;
    let rated = h.router.send(RateConversation { conversation: first, visitor: VisitorId(10), score: 5, comment: String::new() }).await.expect("router");
    assert_eq!(rated, Ok(()), "rated 10 minutes after the close, across the restart");
    h.online(A2).await;
    let back = h.open(10, Some(SUPPORT)).await;
    assert_eq!(h.state(back), (ConversationState::Queued, None, SUPPORT), "held for A1, not given to A2");
    h.online(A1).await;
    assert_eq!(h.state(back).1, Some(A1));
}
