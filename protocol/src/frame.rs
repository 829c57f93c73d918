//! The frames of the protocol. Field order is wire order: bincode encodes struct fields
//! in declaration order and enum variants by their zero-based index, so never reorder
//! fields or variants; append new variants at the end.

use crate::error::ErrorCode;
use crate::ids::{AgentId, ConversationId, GroupId, Participant, TenantId, VisitorId};
use serde::{Deserialize, Serialize};

/// A frame sent by a client (visitor app or agent console) to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// 0. The first frame of every connection: version, credentials, resume cursors.
    Hello(Hello),
    /// 1. Heartbeat; the server answers [`ServerFrame::Pong`].
    Ping,
    /// 2. Send a chat message.
    Send(SendMessage),
    /// 3. Acknowledge every message of `conversation` up to and including `seq`.
    Ack {
        /// The conversation.
        conversation: ConversationId,
        /// The highest sequence number this client has received without gaps.
        seq: u64,
    },
    /// 4. Read history: up to `limit` messages with sequence numbers above `after_seq`.
    Fetch {
        /// The conversation.
        conversation: ConversationId,
        /// Messages strictly after this sequence number.
        after_seq: u64,
        /// At most this many messages (the server may return fewer).
        limit: u32,
    },
    /// 5. End a conversation (an assigned agent, or the visitor).
    Close {
        /// The conversation to close.
        conversation: ConversationId,
    },
    /// 6. A visitor picks item `item` (1-based) of the bot's menu.
    Choose {
        /// The conversation (in the bot state).
        conversation: ConversationId,
        /// The menu item, from 1.
        item: u32,
    },
    /// 7. An agent takes a waiting conversation from its group's queue.
    Take {
        /// The conversation.
        conversation: ConversationId,
    },
    /// 8. A visitor rates a conversation (open, or closed within the last hour).
    Rate {
        /// The conversation.
        conversation: ConversationId,
        /// 1 (bad) to 5 (excellent).
        score: u8,
        /// Free text, at most 2,000 bytes.
        comment: String,
    },
    /// 9. The assigned agent asks the visitor for a rating.
    RequestRating {
        /// The conversation.
        conversation: ConversationId,
    },
    /// 10. The assigned agent adds an internal note (never shown to the visitor).
    Note {
        /// The conversation.
        conversation: ConversationId,
        /// The note, at most 4,000 bytes.
        body: String,
    },
    /// 11. The assigned agent hands the conversation to another agent or group.
    Transfer {
        /// The conversation.
        conversation: ConversationId,
        /// Where it goes.
        to: TransferTarget,
        /// An internal note for the next agent (may be empty).
        note: String,
    },
    /// 12. A visitor's page or screen view (the browsing trail agents see).
    Track(PageView),
    /// 13. A visitor sets profile attributes (name, phone, tags, custom fields); a
    /// value replaces the previous one of the same name.
    SetProfile {
        /// (name, value) pairs; at most 50, names ≤ 100 bytes, values ≤ 2,000 bytes.
        attributes: Vec<(String, String)>,
    },
    /// 14. An agent asks for its quick replies (the tenant's and its own).
    ListQuickReplies,
    /// 15. An agent starts a conversation with an online visitor (proactive invitation).
    Invite {
        /// The visitor.
        visitor: VisitorId,
        /// The agent's first message.
        body: String,
        /// The agent's id for that message.
        client_msg_id: u64,
    },
    /// 16. An agent sets its presence: `Online` takes new chats; `Busy` and `Away` keep
    /// their chats but get no new ones. Each new login starts `Online`.
    SetPresence {
        /// The presence.
        presence: Presence,
    },
    /// 17. A visitor opens a conversation in a skill group (its app's entry point),
    /// before writing; answered with `Conversation`.
    OpenIn {
        /// The group.
        group: GroupId,
    },
    /// 18. A visitor opens a conversation from one of the tenant's channels (an app,
    /// a web page, a mini-program), before writing: it enters the group the tenant
    /// mapped that channel to (the default group if none); answered with
    /// `Conversation`.
    OpenVia {
        /// The channel's name (1-64 bytes of `a-z 0-9 . _ -`).
        channel: String,
    },
}

/// An agent's presence (offline is having no connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// 0. Takes new chats.
    Online,
    /// 1. Keeps its chats, takes no new ones.
    Busy,
    /// 2. Keeps its chats, takes no new ones.
    Away,
}

/// A canned answer an agent can insert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// Its id.
    pub id: u64,
    /// The agent it belongs to, or none for the whole tenant.
    pub agent: Option<AgentId>,
    /// A short label.
    pub title: String,
    /// The text.
    pub body: String,
}

/// A page or screen the visitor viewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// URL or screen name.
    pub url: String,
    /// Title.
    pub title: String,
    /// Referrer, if any.
    pub referrer: String,
    /// Search keywords that led here, if any.
    pub keywords: String,
    /// When, ms since the epoch (set by the server).
    pub at_ms: u64,
}

/// What an agent sees about the visitor of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorContext {
    /// The conversation.
    pub conversation: ConversationId,
    /// The visitor.
    pub visitor: VisitorId,
    /// Served ahead of others.
    pub vip: bool,
    /// Profile attributes, by name.
    pub attributes: Vec<(String, String)>,
    /// Recent page and screen views, oldest first (at most 20).
    pub trail: Vec<PageView>,
    /// The visitor's earlier conversations, newest first (at most 10).
    pub past_conversations: Vec<ConversationId>,
}

/// Where a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferTarget {
    /// 0. An agent with room.
    Agent(AgentId),
    /// 1. A skill group's queue (ahead of the chats waiting there).
    Group(GroupId),
}

/// An internal note of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalNote {
    /// Who wrote it.
    pub author: AgentId,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The text.
    pub body: String,
}

/// The login frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must be [`crate::PROTOCOL_VERSION`].
    pub version: u16,
    /// Who is connecting.
    pub auth: Auth,
    /// The last sequence number this device has, per conversation. The server resends
    /// everything after it, in order, exactly once on this connection.
    pub resume: Vec<Cursor>,
}

/// Credentials in [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// 0. A new anonymous visitor: the server issues a visitor id and a resume token.
    Anonymous {
        /// The tenant whose widget or SDK this is.
        tenant: TenantId,
    },
    /// 1. A returning anonymous visitor, with the id and token from its first `Welcome`.
    Resume {
        /// The tenant.
        tenant: TenantId,
        /// The visitor id issued earlier.
        visitor: VisitorId,
        /// The 32-byte resume token issued with it.
        token: Vec<u8>,
    },
    /// 2. A visitor whose identity the tenant's backend vouches for.
    Verified {
        /// The tenant.
        tenant: TenantId,
        /// The tenant's own user id for this person.
        user_id: String,
        /// `HMAC-SHA256(tenant signing secret, user_id)`, 32 bytes.
        signature: Vec<u8>,
    },
    /// 3. An agent, with a token issued by the admin API.
    Agent {
        /// The agent token.
        token: String,
    },
}

/// A per-conversation position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The conversation.
    pub conversation: ConversationId,
    /// A sequence number in it (0 = before the first message).
    pub seq: u64,
}

/// Body of [`ClientFrame::Send`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// Chosen by the client, unique per sender and conversation. A retry with the
    /// same id returns the same `seq` and never creates a second message.
    pub client_msg_id: u64,
    /// The conversation. A visitor may leave it empty: the server uses the visitor's
    /// open conversation, or opens one. Agents must name it.
    pub conversation: Option<ConversationId>,
    /// The text (UTF-8).
    pub body: String,
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// 0. Login succeeded. Always the first server frame of a connection.
    Welcome(Welcome),
    /// 1. Answer to [`ClientFrame::Ping`].
    Pong,
    /// 2. The message with `client_msg_id` is durable with sequence number `seq`.
    Accepted {
        /// The client's id for the message.
        client_msg_id: u64,
        /// The conversation it went into.
        conversation: ConversationId,
        /// Its sequence number.
        seq: u64,
    },
    /// 3. A message of a conversation this connection takes part in.
    Message(ChatMessage),
    /// 4. Answer to [`ClientFrame::Fetch`].
    History {
        /// The conversation.
        conversation: ConversationId,
        /// Messages in sequence order.
        messages: Vec<ChatMessage>,
    },
    /// 5. A conversation this connection takes part in was opened, queued, assigned or closed.
    Conversation(ConversationUpdate),
    /// 6. A request was rejected.
    Error(ErrorFrame),
    /// 7. The server is going away (shutdown, drain): reconnect, to any node.
    GoAway {
        /// Why, for logs.
        reason: String,
    },
    /// 8. Where a waiting conversation stands in its queue (sent as it changes).
    QueueStatus {
        /// The conversation.
        conversation: ConversationId,
        /// 1 = next.
        position: u32,
        /// A rough estimate of the wait, seconds.
        estimated_wait_secs: u32,
    },
    /// 9. Please rate this conversation (sent when the agent asks, and at close).
    RatingRequested {
        /// The conversation.
        conversation: ConversationId,
    },
    /// 10. Internal notes of a conversation (agents only): all of them when an agent
    /// gets the conversation, then each new one.
    Notes {
        /// The conversation.
        conversation: ConversationId,
        /// Oldest first.
        notes: Vec<InternalNote>,
    },
    /// 11. Who the visitor is (agents only), when an agent gets the conversation.
    VisitorContext(VisitorContext),
    /// 12. Answer to [`ClientFrame::ListQuickReplies`].
    QuickReplies {
        /// Tenant-wide first, then the agent's own.
        replies: Vec<QuickReply>,
    },
}

/// Body of [`ServerFrame::Welcome`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version.
    pub version: u16,
    /// The tenant of this identity.
    pub tenant: TenantId,
    /// Who the server knows this connection as.
    pub identity: Participant,
    /// For anonymous visitors: the 32-byte token for [`Auth::Resume`]; keep it.
    pub resume_token: Option<Vec<u8>>,
    /// Send something (a `Ping` when idle) at least this often; the server closes a
    /// connection that is silent for two intervals.
    pub heartbeat_secs: u32,
    /// The largest frame (payload length) the server accepts.
    pub max_frame_len: u32,
    /// The largest message body (bytes of UTF-8) the server accepts.
    pub max_message_len: u32,
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The conversation.
    pub conversation: ConversationId,
    /// Position in the conversation, from 1, without gaps.
    pub seq: u64,
    /// Who wrote it.
    pub sender: Participant,
    /// The sender's id for it.
    pub client_msg_id: u64,
    /// When the server accepted it, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The text.
    pub body: String,
}

/// State of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConversationState {
    /// 0. Waiting for an agent.
    Queued,
    /// 1. An agent has it.
    Assigned,
    /// 2. Ended.
    Closed,
    /// 3. Talking with the tenant's bot (no agent yet).
    Bot,
}

/// Body of [`ServerFrame::Conversation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationUpdate {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its visitor.
    pub visitor: VisitorId,
    /// The assigned agent, if any.
    pub agent: Option<AgentId>,
    /// Its state now.
    pub state: ConversationState,
    /// The highest sequence number in it when this update was sent.
    pub last_seq: u64,
}

/// Body of [`ServerFrame::Error`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// The `client_msg_id` of the rejected `Send`, when the error is about one.
    pub client_msg_id: Option<u64>,
    /// True when the server closes the connection after this frame.
    pub fatal: bool,
}

impl ServerFrame {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, fatal: bool) -> Self {
        ServerFrame::Error(ErrorFrame { code, message: message.into(), client_msg_id: None, fatal })
    }
}
