//! ivcsd: secure distribution of big data over BitTorrent.
//!
//! A central tracker decides, by authority level, who may read which torrent; content is
//! encrypted block by block with a per-torrent RC4+ key that only the tracker hands out, wrapped
//! for the requesting peer's RSA key. Data moves over the ordinary BitTorrent peer wire, as
//! ciphertext, so relays and stock clients can carry it without ever holding a key.
//!
//! # Layout
//! - [`bencode`], [`metainfo`]: the torrent format (pure, no I/O).
//! - [`crypto`]: RC4+, per-block content keying, RSA identities and the signed getcipher message.
//! - [`tracker`]: the HTTP tracker daemon: identity, authority, keys, durable state, audit.
//! - [`peer`]: the BitTorrent engine of publishers, seeders, downloaders and relays.
//! - [`types`]: identifiers shared by all of them; [`fsutil`]: durable, atomic file writes;
//!   [`conn_limit`]: connections per source address, for both servers; [`metrics`]: the
//!   monitoring page of the long-running processes.
//!
//! The contract every part keeps is `docs/protocol.md`.
//!
//! Read these docs with `cargo doc --document-private-items`: the docs of public items link
//! the private constants and helpers they depend on, on purpose.

#![allow(
    rustdoc::private_intra_doc_links,
    reason = "public items' docs link the private constants and helpers they depend on"
)]

pub mod bencode;
pub mod conn_limit;
pub mod crypto;
pub mod fsutil;
pub mod http_client;
pub mod metainfo;
pub mod metrics;
pub mod peer;
pub mod tls;
pub mod tracker;
pub mod types;
