//! The peer: a BitTorrent engine whose blocks travel encrypted (docs/protocol.md sections 5 to 8).

pub mod bitfield;
pub mod connection;
pub mod picker;
pub mod wire;
