//! The session rules without a server: frames in, frames and events out.

use super::*;
use crate::test_server::{message, visitor_welcome};
use std::sync::Mutex;

const C: ConversationId = ConversationId(4);
const AGENT: Participant = Participant::Agent(switchboard_protocol::AgentId(8));

fn settings(ack_delay: Duration) -> Settings {
    Settings { ack_delay, max_send_attempts: 3, retry_backoff: Duration::from_millis(100) }
}

fn logged_in(ack_delay: Duration) -> (SessionState, Instant) {
    let auth = Auth::Anonymous { tenant: switchboard_protocol::TenantId(1) };
    let mut s = SessionState::new(auth, &[], settings(ack_delay), None, Arc::new(SharedStats::default()));
    let now = Instant::now();
    assert!(s.on_login(&visitor_welcome(3, 30), now).is_empty());
    (s, now)
}

fn frames(out: &[Output]) -> Vec<&ClientFrame> {
    out.iter().filter_map(|o| if let Output::Frame(f) = o { Some(f) } else { None }).collect()
}

fn events(out: &[Output]) -> Vec<&Event> {
    out.iter().filter_map(|o| if let Output::Event(e) = o { Some(e) } else { None }).collect()
}

fn send(id: u64, body: &str) -> Command {
    Command::Send(SendMessage { client_msg_id: id, conversation: None, body: body.into() })
}

#[test]
fn an_anonymous_visitor_resumes_with_its_token_after_the_first_login() {
    let (s, _) = logged_in(Duration::ZERO);
    match s.auth() {
        Auth::Resume { visitor, token, .. } => {
            assert_eq!(visitor.0, 3);
            assert_eq!(token, &vec![7; 32]);
        }
        other => panic!("expected Resume, got {other:?}"),
    }
    assert_eq!(s.connection(), 1);
}

#[test]
fn messages_are_delivered_once_and_acked() {
    let (mut s, now) = logged_in(Duration::ZERO);
    let out = s.on_frame(message(4, 1, AGENT, "a"), now);
    assert!(matches!(events(&out)[..], [Event::Message { origin: Origin::Live, .. }]));
    assert_eq!(s.due(now), vec![ClientFrame::Ack { conversation: C, seq: 1 }]);
    // the same number again is dropped and not acked again
    let out = s.on_frame(message(4, 1, AGENT, "a"), now);
    assert!(out.is_empty());
    assert!(s.due(now).is_empty());
    assert_eq!(s.stats.duplicates.load(Ordering::Relaxed), 1);
}

#[test]
fn acks_wait_for_the_delay_and_carry_the_highest_contiguous_seq() {
    let (mut s, now) = logged_in(Duration::from_millis(200));
    for seq in 1..=3 {
        s.on_frame(message(4, seq, AGENT, "x"), now);
    }
    assert!(s.due(now).is_empty());
    assert_eq!(s.next_deadline(), Some(now + Duration::from_millis(200)));
    assert_eq!(s.due(now + Duration::from_millis(200)), vec![ClientFrame::Ack { conversation: C, seq: 3 }]);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn a_send_is_pending_until_accepted_and_resent_after_a_reconnect() {
    let (mut s, now) = logged_in(Duration::ZERO);
    let out = s.on_command(send(10, "hello"), now);
    assert!(matches!(frames(&out)[..], [ClientFrame::Send(m)] if m.client_msg_id == 10));
    // the connection drops before the answer: the next login resends it
    let out = s.on_login(&visitor_welcome(3, 30), now);
    assert!(matches!(frames(&out)[..], [ClientFrame::Send(m)] if m.client_msg_id == 10 && m.body == "hello"));
    assert_eq!(s.connection(), 2);
    let out = s.on_frame(ServerFrame::Accepted { client_msg_id: 10, conversation: C, seq: 1 }, now);
    assert_eq!(events(&out), vec![&Event::Accepted { client_msg_id: 10, conversation: C, seq: 1 }]);
    assert_eq!(s.cursor(C), 1);
    assert!(frames(&s.on_login(&visitor_welcome(3, 30), now)).is_empty(), "nothing left to resend");
}

#[test]
fn the_echo_of_a_resend_after_its_replay_is_not_a_duplicate() {
    let (mut s, now) = logged_in(Duration::ZERO);
    s.on_command(send(10, "hello"), now);
    s.on_login(&visitor_welcome(3, 30), now);
    // the server replays the message (it was durable), then answers the resend
    let me = Participant::Visitor(switchboard_protocol::VisitorId(3));
    let out = s.on_frame(message(4, 1, me, "hello"), now);
    assert_eq!(events(&out).len(), 1);
    let out = s.on_frame(ServerFrame::Accepted { client_msg_id: 10, conversation: C, seq: 1 }, now);
    assert_eq!(events(&out), vec![&Event::Accepted { client_msg_id: 10, conversation: C, seq: 1 }]);
    assert_eq!(s.stats.duplicates.load(Ordering::Relaxed), 0);
}

#[test]
fn a_gap_is_reported_fetched_and_filled_from_history() {
    let (mut s, now) = logged_in(Duration::ZERO);
    s.on_frame(message(4, 1, AGENT, "1"), now);
    let out = s.on_frame(message(4, 4, AGENT, "4"), now);
    assert!(events(&out).contains(&&Event::Gap { conversation: C, expected: 2, got: 4 }));
    assert_eq!(frames(&out), vec![&ClientFrame::Fetch { conversation: C, after_seq: 1, limit: 2 }]);
    assert_eq!(s.cursor(C), 1);
    // a second early number does not fetch again
    let out = s.on_frame(message(4, 5, AGENT, "5"), now);
    assert!(frames(&out).is_empty());
    let history = ServerFrame::History {
        conversation: C,
        messages: [2, 3, 4]
            .iter()
            .map(|&seq| match message(4, seq, AGENT, "h") {
                ServerFrame::Message(m) => m,
                _ => unreachable!(),
            })
            .collect(),
    };
    let out = s.on_frame(history, now);
    let filled: Vec<u64> = events(&out)
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, origin: Origin::History } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(filled, vec![2, 3], "4 was already delivered live");
    assert_eq!(s.cursor(C), 5);
}

#[test]
fn storage_failures_are_retried_with_the_same_id_then_given_up() {
    let (mut s, now) = logged_in(Duration::ZERO);
    s.on_command(send(10, "x"), now);
    let storage = |id| {
        ServerFrame::Error(ErrorFrame {
            code: ErrorCode::STORAGE_UNAVAILABLE,
            message: "disk".into(),
            client_msg_id: Some(id),
            fatal: false,
        })
    };
    assert!(s.on_frame(storage(10), now).is_empty());
    assert!(s.due(now).is_empty());
    let retry_at = s.next_deadline().expect("a retry is scheduled");
    assert!(matches!(&s.due(retry_at)[..], [ClientFrame::Send(m)] if m.client_msg_id == 10));
    s.on_frame(storage(10), now);
    let out = s.on_frame(storage(10), now);
    assert!(matches!(events(&out)[..], [Event::SendFailed { client_msg_id: 10, .. }]));
    assert_eq!(s.stats.pending.load(Ordering::Relaxed), 0);
}

#[test]
fn fatal_errors_disconnect_and_only_auth_failures_are_final() {
    let (mut s, now) = logged_in(Duration::ZERO);
    let out = s.on_frame(ServerFrame::error(ErrorCode::SLOW_CONSUMER, "too slow", true), now);
    assert!(matches!(out.last(), Some(Output::Disconnect { retry: true, .. })));
    let out = s.on_frame(ServerFrame::error(ErrorCode::AUTH_FAILED, "revoked", true), now);
    assert!(matches!(out.last(), Some(Output::Disconnect { retry: false, .. })));
    let out = s.on_frame(ServerFrame::error(ErrorCode::FORBIDDEN, "not yours", false), now);
    assert!(matches!(events(&out)[..], [Event::Error { fatal: false, .. }]));
    let out = s.on_frame(ServerFrame::GoAway { reason: "drain".into() }, now);
    assert!(matches!(out.last(), Some(Output::Disconnect { retry: true, .. })));
}

#[test]
fn an_oversized_body_fails_locally() {
    let (mut s, now) = logged_in(Duration::ZERO);
    let out = s.on_command(send(1, &"x".repeat(5000)), now);
    assert!(frames(&out).is_empty());
    assert!(matches!(events(&out)[..], [Event::SendFailed { code: ErrorCode::MESSAGE_TOO_LARGE, .. }]));
}

#[test]
fn resume_lists_cursors_and_a_closed_conversation_is_forgotten() {
    let (mut s, now) = logged_in(Duration::ZERO);
    s.on_frame(message(4, 1, AGENT, "a"), now);
    s.on_frame(message(4, 2, AGENT, "b"), now);
    assert_eq!(s.hello().resume, vec![Cursor { conversation: C, seq: 2 }]);
    let closed = switchboard_protocol::ConversationUpdate {
        conversation: C,
        visitor: switchboard_protocol::VisitorId(3),
        agent: None,
        state: ConversationState::Closed,
        last_seq: 2,
    };
    let out = s.on_frame(ServerFrame::Conversation(closed), now);
    assert!(matches!(events(&out)[..], [Event::Conversation(_)]));
    assert!(s.hello().resume.is_empty());
}

#[test]
fn the_tap_sees_every_numbered_frame_including_duplicates() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let tap: Tap = Arc::new(move |o: &Observed| sink.lock().unwrap().push((o.connection, o.seq)));
    let auth = Auth::Agent { token: "t".into() };
    let mut s = SessionState::new(auth, &[], settings(Duration::ZERO), Some(tap), Arc::new(SharedStats::default()));
    let now = Instant::now();
    s.on_login(&visitor_welcome(3, 30), now);
    s.on_frame(message(4, 1, AGENT, "a"), now);
    s.on_frame(message(4, 1, AGENT, "a"), now);
    s.on_frame(ServerFrame::Accepted { client_msg_id: 99, conversation: C, seq: 2 }, now);
    assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (1, 1), (1, 2)]);
}

#[test]
fn commands_made_while_offline_go_out_after_login() {
    let (mut s, now) = logged_in(Duration::ZERO);
    s.on_command_offline(send(5, "queued"));
    s.on_command_offline(Command::Close { conversation: C });
    let out = s.on_login(&visitor_welcome(3, 30), now);
    let f = frames(&out);
    assert!(matches!(f[..], [ClientFrame::Send(_), ClientFrame::Close { .. }]), "{f:?}");
}
