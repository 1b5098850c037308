//! The tracker daemon (docs/protocol.md sections 1 to 4 and 8).
//!
//! # Layout
//! - Pure parts, no I/O: [`query`] (raw query → bytes), [`swarm`] (who holds what),
//!   [`decide`] (the authority rules), [`refusal`] (public and audit reasons), [`config`].
//! - Identity: [`authority`] (authority.xml, written on main), [`credentials`].
//! - Durable state and the record: [`catalogue`] (torrents, their keys, authorities and
//!   relays: the store and its copy in memory, changed together), [`store`] (SQLite thread),
//!   [`master_key`] (content keys sealed at rest), [`audit`].
//! - Requests: [`TrackerState`] (what handlers share, and the one path to the audit log),
//!   [`endpoint`] (every endpoint named once, for routing, audit and metrics) and one file per
//!   endpoint, each answering in domain values ([`answer`], or a refusal): [`announce`],
//!   [`scrape`], [`getcipher`] (with [`key_cache`]), [`publish`], [`metainfo_file`], [`relay`],
//!   [`admin`]; [`metrics`] (served by [`crate::metrics`]).
//! - HTTP: [`server`] (accept loop, limits, routing, a span per request, shutdown) and
//!   [`response`] (answers and refusals as HTTP responses).
//!
//! # Tasks
//! [`run`] serves connections until `shutdown` resolves, then drains open requests for at most
//! `drain_timeout_secs`, closes the audit log (flush, fsync) and the database. Beside the accept
//! loop run the maintenance task (expiry of peers, nonces, cached logins, pending keys), the
//! SIGHUP handler (authority reload), the authority file watcher, the store thread and the
//! audit writer thread. If any of them dies, `run` returns an error naming it.

pub mod admin;
pub mod announce;
pub mod answer;
pub mod audit;
pub mod authority;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod decide;
pub mod endpoint;
pub mod getcipher;
pub mod key_cache;
pub mod master_key;
pub mod metainfo_file;
pub mod metrics;
pub mod publish;
pub mod query;
pub mod refusal;
pub mod relay;
pub mod response;
pub mod scrape;
pub mod server;
mod state;
pub mod store;
pub mod swarm;

pub use server::run;
pub use state::{ApiRequest, TrackerState};

/// Why the tracker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrackerRunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("background task {0} stopped unexpectedly")]
    TaskDied(&'static str),
    #[error("error installing signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::ListenError),
}
