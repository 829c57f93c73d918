//! Identifier newtypes. Every id is a `u64` on the wire (a bincode varint).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A business using Switchboard. Nothing crosses tenants.
    TenantId, "t"
);
id_type!(
    /// A visitor of one tenant (anonymous or verified).
    VisitorId, "v"
);
id_type!(
    /// An agent (a human seat) of one tenant.
    AgentId, "a"
);
id_type!(
    /// A skill group (queue) of one tenant. `GroupId(0)` is the tenant's default group,
    /// to which every agent belongs.
    GroupId, "g"
);
id_type!(
    /// A conversation between a visitor and the tenant. Unique within a node's store.
    ConversationId, "c"
);

/// Who took part in a conversation, as seen by the message log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Participant {
    /// The visitor of the conversation.
    Visitor(VisitorId),
    /// An agent of the tenant.
    Agent(AgentId),
    /// The tenant's bot (only ever a sender).
    Bot,
}

impl fmt::Display for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Participant::Visitor(v) => v.fmt(f),
            Participant::Agent(a) => a.fmt(f),
            Participant::Bot => f.write_str("bot"),
        }
    }
}
