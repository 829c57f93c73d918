//! # Switchboard node
//!
//! The backend of in-app customer-service chat: visitors and agent seats connect over
//! TCP or QUIC, speak length-prefixed bincode frames (`switchboard-protocol`), and
//! every acknowledged message is durable in RocksDB (`switchboard-raft-store`).
//!
//! ## The life of a chat message
//!
//! 1. **Transport** ([`transport::tcp`], [`transport::quic`]): a connection is accepted
//!    and its byte streams are handed to a session arbiter. Nothing here knows frames.
//! 2. **Connection** ([`session::serve`]): reads the `Hello`, authenticates it
//!    ([`session::login`]), queues `Welcome`, starts the session actor, then a reader
//!    loop decodes frames with the one codec and posts them to the actor; a writer task
//!    drains the bounded [`session::outbound::Outbound`] queue into the stream.
//! 3. **Session** ([`session::VisitorSession`], [`session::AgentSeat`]): checks the
//!    `Send` (size, who may write where). A visitor's first message asks its tenant's
//!    router to open a conversation.
//! 4. **Routing** ([`routing::tenant_router`]): the single owner of a tenant's queue and
//!    seat loads opens the conversation and assigns it by the rules in
//!    [`service::assignment`], writing the record through the store.
//! 5. **Log** ([`cluster::log::ClusterLog`], behind
//!    [`switchboard_raft_store::ConversationLog`]): appends are batched per shard into one
//!    raft entry; once a quorum has it durable, the shard's state machine checks the
//!    idempotency key and assigns the next seq.
//! 6. **Dispatch** ([`routing::dispatcher`]): after the apply and in commit order, the
//!    shard's listener posts the message to every live connection of the visitor and
//!    the assigned agent ([`routing::registry`]).
//! 7. **Delivery** ([`session::core::on_event`]): each connection's
//!    [`session::subscriptions`] decides: the sender's connection queues `Accepted`,
//!    others queue `Message`; a gap triggers a catch-up read from the log, so each
//!    connection sees every seq once and in order.
//! 8. **Ack** (`ClientFrame::Ack`): the client's cursor is stored with the next batch;
//!    on reconnect, `Hello.resume` (or that cursor) says where delivery resumes.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod integration;
pub mod metrics;
pub mod node;
pub mod routing;
pub mod service;
pub mod session;
pub mod transport;
