//! The tracker daemon (docs/protocol.md sections 1 to 4 and 8).
//!
//! # Layout
//! - Pure parts, no I/O: [`query`] (raw query → bytes), [`swarm`] (who holds what),
//!   [`decide`] (the authority rules), [`refusal`] (public and audit reasons).

pub mod authority;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod decide;
pub mod query;
pub mod refusal;
pub mod store;
pub mod swarm;
