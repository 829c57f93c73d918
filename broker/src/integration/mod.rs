//! Integration with the tenant's systems: webhooks from a durable outbox, and push
//! requests for visitors who did not read a message in time.

pub mod webhooks;
