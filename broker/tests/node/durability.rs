//! Acknowledged messages survive a crash.

use crate::support::*;
use switchboard_protocol::*;

#[tokio::test]
async fn accepted_messages_survive_kill_9_and_reach_the_agent_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let t = create_tenant(&node, "acme");
    let (_, token) = create_agent(&node, t.id, 5);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token: token.clone() }, vec![]).await;
    let (mut visitor, vw) = Raw::login(node.tcp, Auth::Anonymous { tenant: t.id }, vec![]).await;
    let (conv, _) = visitor.send_accepted(1, None, "first").await;
    assert_eq!(agent.messages(conv, 1).await[0].seq, 1);
    drop(agent);
    // These are acknowledged while the agent is away, then the node is killed.
    for i in 2..=20 {
        assert_eq!(visitor.send_accepted(i, Some(conv), &format!("m{i}")).await.1, i);
    }
    node.kill9();
    drop(visitor);

    let node = Node::start(dir.path(), &[]);
    let (mut agent, _) = Raw::login(node.tcp, Auth::Agent { token }, vec![Cursor { conversation: conv, seq: 1 }]).await;
    let got = agent.messages(conv, 19).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (2..=20).collect::<Vec<_>>());
    assert_eq!(got[18].body, "m20");
    // Exactly once: the next thing the agent gets is a new message, seq 21.
    let Participant::Visitor(v) = vw.identity else { panic!() };
    let (mut visitor, _) = Raw::login(node.tcp, Auth::Resume { tenant: t.id, visitor: v, token: vw.resume_token.unwrap() }, vec![]).await;
    assert_eq!(visitor.send_accepted(21, None, "after restart").await, (conv, 21));
    assert_eq!(agent.messages(conv, 1).await[0].seq, 21);
    node.assert_no_panic();
}
