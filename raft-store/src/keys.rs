//! Key layouts. All integers big-endian so that RocksDB's byte order is numeric order
//! and a conversation's messages are one contiguous, seq-ordered range.

use switchboard_protocol::{AgentId, ConversationId, Participant, TenantId, VisitorId};

/// Column family of chat messages.
pub const CF_MESSAGES: &str = "messages";
/// Column family of idempotency keys.
pub const CF_IDEMPOTENCY: &str = "idempotency";
/// Column family of acknowledged cursors.
pub const CF_CURSORS: &str = "cursors";
/// Column family of conversation records.
pub const CF_CONVERSATIONS: &str = "conversations";
/// Column family of tenants, agents, tokens, verified visitors and counters.
pub const CF_DIRECTORY: &str = "directory";
/// Column family of the webhook outbox: pending events, then delivered ones.
pub const CF_OUTBOX: &str = "outbox";
/// Column family of raft log entries, every group's under its group id.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family of raft votes, purge points, snapshots and applied positions.
pub const CF_RAFT_META: &str = "raft_meta";
/// Column family of raft state machines, every group's under its group id.
pub const CF_RAFT_STATE: &str = "raft_state";
/// The raft column families.
pub const RAFT_CFS: [&str; 3] = [CF_RAFT_LOG, CF_RAFT_META, CF_RAFT_STATE];
/// Every column family, in creation order.
pub const ALL_CFS: [&str; 9] = [CF_MESSAGES, CF_IDEMPOTENCY, CF_CURSORS, CF_CONVERSATIONS, CF_DIRECTORY, CF_OUTBOX, CF_RAFT_LOG, CF_RAFT_META, CF_RAFT_STATE];

/// `outbox` key: 0 for pending, 1 for delivered, then the event id.
pub fn outbox_key(delivered: bool, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = delivered as u8;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Directory key tags.
pub(crate) mod tag {
    pub const TENANT: u8 = 1;
    pub const AGENT: u8 = 2;
    pub const AGENT_TOKEN: u8 = 3;
    pub const API_KEY: u8 = 4;
    pub const VERIFIED_VISITOR: u8 = 5;
    pub const COUNTER: u8 = 6;
    pub const GROUP: u8 = 7;
    pub const BOT: u8 = 8;
    pub const KNOWLEDGE: u8 = 9;
    pub const PROFILE: u8 = 10;
    pub const WEBHOOK: u8 = 11;
    pub const RATING: u8 = 12;
    pub const NOTE: u8 = 13;
    pub const TRAIL: u8 = 14;
    pub const VISITOR_CONVERSATION: u8 = 15;
    pub const QUICK_REPLY: u8 = 16;
    pub const CHANNEL: u8 = 17;
}

/// `messages` key: conversation, seq.
pub fn message_key(conversation: ConversationId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&conversation.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a `messages` key; `None` if it has the wrong length.
pub fn parse_message_key(key: &[u8]) -> Option<(ConversationId, u64)> {
    let conv = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    (key.len() == 16).then_some((ConversationId(conv), seq))
}

pub(crate) fn participant_bytes(p: Participant) -> [u8; 9] {
    let (kind, id) = match p {
        Participant::Visitor(VisitorId(v)) => (1u8, v),
        Participant::Agent(AgentId(a)) => (2u8, a),
        Participant::Bot => (3u8, 0),
    };
    let mut b = [0u8; 9];
    b[0] = kind;
    b[1..].copy_from_slice(&id.to_be_bytes());
    b
}

/// `idempotency` key: conversation, sender, client message id.
pub fn idempotency_key(conversation: ConversationId, sender: Participant, client_msg_id: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..8].copy_from_slice(&conversation.0.to_be_bytes());
    k[8..17].copy_from_slice(&participant_bytes(sender));
    k[17..].copy_from_slice(&client_msg_id.to_be_bytes());
    k
}

/// `cursors` key: conversation, reader.
pub fn cursor_key(conversation: ConversationId, reader: Participant) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&conversation.0.to_be_bytes());
    k[8..].copy_from_slice(&participant_bytes(reader));
    k
}

/// `conversations` key.
pub fn conversation_key(conversation: ConversationId) -> [u8; 8] {
    conversation.0.to_be_bytes()
}

/// `directory` key of a tenant.
pub fn tenant_key(tenant: TenantId) -> Vec<u8> {
    let mut k = vec![tag::TENANT];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k
}

/// `directory` key of an agent.
pub fn agent_key(tenant: TenantId, agent: AgentId) -> Vec<u8> {
    let mut k = vec![tag::AGENT];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&agent.0.to_be_bytes());
    k
}

/// `directory` key of an agent token, by the token's SHA-256.
pub fn agent_token_key(digest: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![tag::AGENT_TOKEN];
    k.extend_from_slice(digest);
    k
}

/// `directory` key of a tenant API key, by the key's SHA-256.
pub fn api_key_key(digest: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![tag::API_KEY];
    k.extend_from_slice(digest);
    k
}

/// `directory` key mapping a tenant's user id to a visitor id.
pub fn verified_visitor_key(tenant: TenantId, user_id: &str) -> Vec<u8> {
    let mut k = vec![tag::VERIFIED_VISITOR];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(user_id.as_bytes());
    k
}

/// `directory` key of a skill group.
pub fn group_key(tenant: TenantId, group: switchboard_protocol::GroupId) -> Vec<u8> {
    let mut k = vec![tag::GROUP];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&group.0.to_be_bytes());
    k
}

/// `directory` key of a tenant's bot settings.
pub fn bot_key(tenant: TenantId) -> Vec<u8> {
    let mut k = vec![tag::BOT];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k
}

/// `directory` key of a knowledge-base entry.
pub fn knowledge_key(tenant: TenantId, entry: u64) -> Vec<u8> {
    let mut k = vec![tag::KNOWLEDGE];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&entry.to_be_bytes());
    k
}

/// `directory` key of a visitor's profile.
pub fn profile_key(tenant: TenantId, visitor: VisitorId) -> Vec<u8> {
    let mut k = vec![tag::PROFILE];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&visitor.0.to_be_bytes());
    k
}

/// `directory` key of a tenant's webhook settings.
pub fn webhook_key(tenant: TenantId) -> Vec<u8> {
    let mut k = vec![tag::WEBHOOK];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k
}

/// `directory` key of a tenant's channel (its group mapping).
pub fn channel_key(tenant: TenantId, channel: &str) -> Vec<u8> {
    let mut k = vec![tag::CHANNEL];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(channel.as_bytes());
    k
}

/// `directory` key of a conversation's rating.
pub fn rating_key(tenant: TenantId, conversation: ConversationId) -> Vec<u8> {
    let mut k = vec![tag::RATING];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&conversation.0.to_be_bytes());
    k
}

/// `directory` key prefix of a conversation's internal notes.
pub fn notes_prefix(tenant: TenantId, conversation: ConversationId) -> Vec<u8> {
    let mut k = vec![tag::NOTE];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&conversation.0.to_be_bytes());
    k
}

/// `directory` key of one internal note: ordered by time, then by `order` (a
/// sequence of the writing process, so notes of one millisecond keep their order).
pub fn note_key(tenant: TenantId, conversation: ConversationId, at_ms: u64, order: u64) -> Vec<u8> {
    let mut k = notes_prefix(tenant, conversation);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(&order.to_be_bytes());
    k
}

/// `directory` key prefix of a visitor's browsing trail.
pub fn trail_prefix(tenant: TenantId, visitor: VisitorId) -> Vec<u8> {
    let mut k = vec![tag::TRAIL];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&visitor.0.to_be_bytes());
    k
}

/// `directory` key prefix of a visitor's conversations (an index, newest last).
pub fn visitor_conversations_prefix(tenant: TenantId, visitor: VisitorId) -> Vec<u8> {
    let mut k = vec![tag::VISITOR_CONVERSATION];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&visitor.0.to_be_bytes());
    k
}

/// `directory` key of a quick reply (agent 0 = the whole tenant).
pub fn quick_reply_key(tenant: TenantId, agent: Option<AgentId>, id: u64) -> Vec<u8> {
    let mut k = vec![tag::QUICK_REPLY];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.extend_from_slice(&agent.map_or(0, |a| a.0).to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `directory` key of a named id counter.
pub fn counter_key(name: &str) -> Vec<u8> {
    let mut k = vec![tag::COUNTER];
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_conversation_then_seq() {
        let mut keys = vec![
            message_key(ConversationId(2), 1),
            message_key(ConversationId(1), 256),
            message_key(ConversationId(1), 2),
            message_key(ConversationId(1), u64::MAX),
            message_key(ConversationId(256), 0),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_message_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (ConversationId(1), 2),
                (ConversationId(1), 256),
                (ConversationId(1), u64::MAX),
                (ConversationId(2), 1),
                (ConversationId(256), 0),
            ]
        );
    }

    #[test]
    fn parse_rejects_wrong_lengths() {
        assert!(parse_message_key(&[0; 15]).is_none());
        assert!(parse_message_key(&[0; 17]).is_none());
    }

    #[test]
    fn participants_do_not_collide() {
        let v = idempotency_key(ConversationId(1), Participant::Visitor(VisitorId(5)), 9);
        let a = idempotency_key(ConversationId(1), Participant::Agent(AgentId(5)), 9);
        assert_ne!(v, a);
    }
}
