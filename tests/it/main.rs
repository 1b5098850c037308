//! The integration tests, one binary (as ripgrep's `tests/tests.rs` does): each file of
//! `tests/it/` is a module here, so the ivcsd crate and the shared helpers are compiled and
//! linked once instead of once per file. A test's name is `file::function`;
//! `cargo test --test it tracker_http::` runs one file's tests, `cargo test NAME` one test.
//! Fixtures stay in `tests/data/`, found through `CARGO_MANIFEST_DIR`.
#![allow(
    clippy::unwrap_used,
    reason = "a test's unwrap is a failed test with its location"
)]

// Shared helpers: an in-process tracker, and the real binary as publisher, downloader, relay.
mod common_peer;
mod common_tracker;

mod admin_user;
mod contrib;
mod courier_aria2;
mod crypto_content;
mod crypto_identity;
mod demo;
mod faults;
mod fuzz_regressions;
mod keygen;
mod load;
mod metainfo_create;
mod metainfo_interop;
mod metainfo_parse;
mod peer_flow;
mod peer_session;
mod peer_wire_connection;
mod relay;
mod seed_many;
mod swarm_bench;
mod tls;
mod torrent_show;
mod tracker;
mod tracker_audit_failure;
mod tracker_cli;
mod tracker_http;
mod tracker_metrics;
