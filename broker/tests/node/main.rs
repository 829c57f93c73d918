//! Process-level tests of the `switchboard` binary: each test starts its own node on
//! port 0 with a temp data dir and kills it by handle.

mod support;

mod agent_tools;
mod bad_input;
mod bot;
mod chat;
mod any_node;
mod home_failover;
mod cluster;
mod durability;
mod isolation;
mod operations;
mod partition;
mod routing;
mod slow_consumer;
mod webhooks;
