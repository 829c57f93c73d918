//! Records kept in the `conversations` and `directory` column families.

use crate::error::StoreError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use switchboard_protocol::{AgentId, ConversationId, ConversationState, GroupId, TenantId, VisitorId};

/// A tenant (a business).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// SHA-256 of its API key (the key itself is shown once, at creation).
    pub api_key_digest: [u8; 32],
    /// Secret for verifying visitor identities and signing resume tokens and webhooks.
    pub signing_secret: Vec<u8>,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
}

/// An agent of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// Its id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// How many chats it may hold at once.
    pub capacity: u32,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
}

/// How a group hands out its conversations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest active chats; ties to whoever waited longest since their last assignment.
    #[default]
    LeastBusy,
    /// Members in turn (by id), skipping those without room.
    RoundRobin,
    /// Nobody is assigned automatically: members take chats from the queue.
    Manual,
}

/// Weekly opening hours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    /// Local time = UTC + this many minutes.
    pub utc_offset_minutes: i32,
    /// Open intervals.
    pub days: Vec<DayHours>,
}

/// Opening hours of one weekday.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayHours {
    /// 0 = Monday ... 6 = Sunday.
    pub weekday: u8,
    /// Opens at this minute of the local day (0..1440).
    pub open_minute: u16,
    /// Closes at this minute (exclusive; up to 1440).
    pub close_minute: u16,
}

/// What a tenant's backend (or SDK) says about a visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorProfileRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// The visitor.
    pub visitor: VisitorId,
    /// Served ahead of normal visitors.
    pub vip: bool,
    /// Name, phone, tags, custom fields.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl VisitorProfileRecord {
    /// An empty profile.
    pub fn new(tenant: TenantId, visitor: VisitorId) -> Self {
        VisitorProfileRecord { tenant, visitor, vip: false, attributes: Default::default() }
    }
}

/// A skill group of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// Its id (never 0: that is the implicit default group).
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Member agents (ignored for the default group 0, which has every agent).
    pub members: Vec<AgentId>,
    /// How it hands out conversations.
    pub strategy: Strategy,
    /// Seconds an assigned agent has to reply before the chat moves to another member
    /// (0 = never).
    pub auto_transfer_secs: u32,
    /// Most conversations waiting in its queue (0 = no limit). Past it a new
    /// conversation overflows (if `overflow_group` is set) or is refused.
    pub max_queue: u32,
    /// Where conversations overflow to.
    pub overflow_group: Option<GroupId>,
    /// A conversation waiting this long moves to `overflow_group` (0 = only by length).
    pub overflow_after_secs: u32,
    /// A returning visitor whose last agent has no room now waits this long for that
    /// agent before going to anyone in the group (0 = not at all).
    pub sticky_wait_secs: u32,
    /// When agents serve it (`None`: always). Outside them conversations wait
    /// (leave a message) and the bot says when it opens.
    pub hours: Option<BusinessHours>,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
}

impl GroupRecord {
    /// A group with every option off: least-busy, no auto-transfer, no queue limit,
    /// no overflow, no sticky wait, always open.
    pub fn new(tenant: TenantId, id: GroupId, name: String, members: Vec<AgentId>, created_at_ms: u64) -> Self {
        GroupRecord {
            tenant,
            id,
            name,
            members,
            strategy: Strategy::default(),
            auto_transfer_secs: 0,
            max_queue: 0,
            overflow_group: None,
            overflow_after_secs: 0,
            sticky_wait_secs: 0,
            hours: None,
            created_at_ms,
        }
    }
}

/// A tenant's bot: welcome text, navigation menu, answer threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BotRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// Whether new conversations start with the bot.
    pub enabled: bool,
    /// Sent when a conversation opens, above the menu.
    pub welcome: String,
    /// Menu items, numbered from 1 for the visitor.
    pub menu: Vec<MenuItemRecord>,
    /// Knowledge-base answers at or above this confidence (0..=1) are sent.
    pub confidence: f32,
    /// Where a visitor who asks for a human goes.
    pub handoff_group: GroupId,
}

/// One item of a bot menu.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemRecord {
    /// What the visitor sees.
    pub label: String,
    /// A skill group to hand over to, or...
    pub group: Option<GroupId>,
    /// ...a knowledge-base entry to answer with.
    pub answer: Option<u64>,
}

/// A knowledge-base entry of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// Its id.
    pub id: u64,
    /// Ways visitors ask it (an entry with none is deleted).
    pub questions: Vec<String>,
    /// The answer.
    pub answer: String,
}

/// A visitor's rating of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Who rated.
    pub visitor: VisitorId,
    /// The agent rated (the conversation's agent then).
    pub agent: Option<AgentId>,
    /// 1 to 5.
    pub score: u8,
    /// Free text.
    pub comment: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// Which skill group a tenant's channel (an app, a web page, a mini-program...)
/// sends its visitors to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// The channel's name, as its clients send it in `OpenVia`.
    pub channel: String,
    /// The group its new conversations enter.
    pub group: GroupId,
    /// When it was last set, ms since the epoch.
    pub updated_at_ms: u64,
}

/// Where a tenant's webhooks go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// `http://host:port/path` receiving every event (signed with the tenant's signing secret).
    pub url: String,
    /// Where `push.requested` goes instead, if set (the tenant's push service).
    pub push_url: Option<String>,
}

/// An event for a tenant's webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// `conversation.created` / `.queued` / `.assigned` / `.closed`, with the record then.
    Conversation {
        /// The event name.
        kind: String,
        /// The conversation as it became.
        record: ConversationRecord,
    },
    /// `message.created`: the message is read from the log when delivered.
    MessageCreated {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: u64,
    },
    /// `rating.submitted`.
    RatingSubmitted {
        /// The rating.
        rating: RatingRecord,
    },
    /// `push.requested`: a visitor has not acknowledged `seq` on any device in time.
    PushRequested {
        /// The conversation.
        conversation: ConversationId,
        /// The visitor to reach.
        visitor: VisitorId,
        /// The first message not acknowledged.
        seq: u64,
    },
}

/// One webhook event in the durable outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Event id, increasing; receivers deduplicate by it.
    pub id: u64,
    /// The tenant.
    pub tenant: TenantId,
    /// What happened.
    pub event: WebhookEvent,
    /// When it happened, ms since the epoch.
    pub created_at_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time, ms since the epoch.
    pub next_attempt_at_ms: u64,
    /// Set once a receiver answered 2xx.
    pub delivered_at_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What an agent token (stored by digest) stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTokenRecord {
    /// The tenant.
    pub tenant: TenantId,
    /// The agent.
    pub agent: AgentId,
    /// Issue time, ms since the epoch.
    pub created_at_ms: u64,
}

/// A conversation's routing state and the timestamps reports need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Its id.
    pub id: ConversationId,
    /// The tenant.
    pub tenant: TenantId,
    /// The visitor.
    pub visitor: VisitorId,
    /// The assigned agent, if any.
    pub agent: Option<AgentId>,
    /// The skill group it waits in or was assigned from (`GroupId(0)`: the default).
    pub group: GroupId,
    /// Queued, assigned or closed.
    pub state: ConversationState,
    /// Order in the tenant's queue while queued: lower goes first. New conversations
    /// take increasing positive tickets; chats requeued from an agent who went away
    /// take tickets below every waiting one, so they go first.
    pub queue_ticket: i64,
    /// Created, ms since the epoch.
    pub created_at_ms: u64,
    /// First put in a queue (wait time starts), ms since the epoch.
    pub queued_at_ms: Option<u64>,
    /// Last assigned, ms since the epoch.
    pub assigned_at_ms: Option<u64>,
    /// The assigned agent's first message (first-response time ends), ms since the epoch.
    pub first_agent_reply_at_ms: Option<u64>,
    /// Closed, ms since the epoch.
    pub closed_at_ms: Option<u64>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain records into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("records encode")
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bincode::serde::decode_from_slice(bytes, bincode::config::standard()) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(StoreError::Corrupt { what, reason: format!("{} trailing bytes", bytes.len() - used) }),
        Err(e) => Err(StoreError::Corrupt { what, reason: e.to_string() }),
    }
}

pub(crate) fn decode_u64(what: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { what, reason: format!("{} bytes, expected 8", bytes.len()) })?;
    Ok(u64::from_be_bytes(arr))
}
