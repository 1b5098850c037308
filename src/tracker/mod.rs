//! The tracker daemon (docs/protocol.md sections 1 to 4 and 8).

pub mod authority;
