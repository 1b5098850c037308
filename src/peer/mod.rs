//! The peer: a BitTorrent engine whose blocks travel encrypted (docs/protocol.md sections 5 to 8).

pub mod bitfield;
pub mod block_cache;
pub mod buffers;
pub mod choker;
pub mod connection;
pub mod download;
pub mod geometry;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod peer_id;
pub mod picker;
pub mod publish;
pub mod relay;
pub mod resume;
pub mod seed;
pub mod seed_set;
pub mod session;
pub mod storage;
pub mod tracker_client;
pub mod wire;
