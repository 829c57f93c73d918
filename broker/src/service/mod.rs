//! Customer-service rules as plain synchronous code: no actors, no I/O, no clocks.
//! Actors in `routing/` and `session/` carry messages to these functions.

pub mod assignment;
pub mod bot;
pub mod deadlines;
pub mod hours;
pub mod knowledge;
pub mod placement;
pub mod queue;
pub mod reports;
