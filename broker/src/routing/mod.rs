//! Who owns what, and where a committed message goes.
//!
//! - [`directory`]: tenants, agents, tokens and open conversations, in memory, loaded
//!   from the store at start-up and written through it.
//! - [`registry`]: live connections by identity and by connection id.
//! - [`dispatcher`]: told by the store (in commit order) about each durable message;
//!   hands it to every live connection of the conversation's participants.
//! - [`tenant_router`]: one actor per tenant owning its queue and seat loads.

pub mod directory;
pub mod dispatcher;
pub mod registry;
pub mod tenant_router;

pub use directory::{ConversationEntry, Directory};
pub use dispatcher::Dispatcher;
pub use registry::{ConnId, Registry};
pub use tenant_router::{RouteError, Routers, TenantRouter};
