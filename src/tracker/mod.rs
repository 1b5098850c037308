//! The tracker daemon (docs/protocol.md sections 1 to 4 and 8).
//!
//! # Layout
//! - Pure parts, no I/O: [`query`] (raw query → bytes), [`swarm`] (who holds what),
//!   [`decide`] (the authority rules), [`refusal`] (public and audit reasons), [`config`].
//! - Identity: [`authority`] (authority.xml, written on main), [`credentials`].
//! - Durable state and the record: [`catalogue`] (torrents, their keys, authorities and
//!   relays: the store and its copy in memory, changed together), [`store`] (SQLite thread),
//!   [`master_key`] (content keys sealed at rest), [`audit`].
//! - HTTP: [`server`] (accept loop, limits, routing, shutdown), [`endpoint`] (every endpoint
//!   named once, for routing, audit and metrics) and one file per endpoint:
//!   [`announce`], [`scrape`], [`getcipher`] (with [`key_cache`]), [`publish`],
//!   [`metainfo_file`], [`relay`], [`admin`]; [`metrics`] (served by [`crate::metrics`]).
//!
//! # Tasks
//! [`run`] serves connections until `shutdown` resolves, then drains open requests for at most
//! `drain_timeout_secs`, closes the audit log (flush, fsync) and the database. Beside the accept
//! loop run the maintenance task (expiry of peers, nonces, cached logins, pending keys), the
//! SIGHUP handler (authority reload), the authority file watcher, the store thread and the
//! audit writer thread. If any of them dies, `run` returns an error naming it.

pub mod admin;
pub mod announce;
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
pub mod store;
pub mod swarm;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::types::InfoHash;

use audit::{AuditEntry, AuditLog, AuditSlot, Decision};
use authority::AuthoritySource;
use catalogue::Catalogue;
use clock::Clock;
use config::Config;
use credentials::Authenticator;
use endpoint::Endpoint;
use refusal::Refusal;
use swarm::Swarms;

pub use server::run;

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

/// Everything the request handlers share.
pub struct TrackerState {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) users: Arc<AuthoritySource>,
    pub(crate) authenticator: Authenticator,
    /// Live peers; shared with the catalogue, which drops a removed torrent's swarm.
    pub(crate) swarms: Arc<Mutex<Swarms>>,
    /// Torrents, their keys, authorities and relays: the store and its copy in memory.
    pub(crate) catalogue: Catalogue,
    pub(crate) audit: AuditLog,
    /// getcipher nonces seen within the window.
    pub(crate) nonces: Mutex<getcipher::NonceCache>,
    /// Parsed public keys of getcipher requesters whose signature verified.
    pub(crate) public_keys: Mutex<key_cache::PublicKeyCache>,
    /// Bounds RSA work (verify, wrap) on the blocking pool.
    pub(crate) rsa: tokio::sync::Semaphore,
    /// Request counters for monitoring (`metrics_listen`).
    pub(crate) metrics: metrics::Metrics,
}

/// One request, as the endpoint handlers see it.
pub struct ApiRequest<'a> {
    pub source: IpAddr,
    /// The raw query string (without `?`), still percent-encoded.
    pub query: &'a str,
    pub method: &'a hyper::Method,
    /// The body, already read within `max_torrent_bytes` (empty for GET).
    pub body: bytes::Bytes,
    /// Set when an entry of this request could not be recorded (the audit log cannot be
    /// written and `audit_on_failure = "refuse"`): `server::route` then answers 503 instead of
    /// what the handler answered.
    pub audit_refused: AtomicBool,
    /// A place in the audit queue taken by [`TrackerState::reserve_audit`] before a change that must
    /// not happen unrecorded; the request's next entry goes there and cannot be refused.
    pub audit_slot: Mutex<Option<AuditSlot>>,
}

impl<'a> ApiRequest<'a> {
    pub fn new(
        source: IpAddr,
        query: &'a str,
        method: &'a hyper::Method,
        body: bytes::Bytes,
    ) -> Self {
        ApiRequest {
            source,
            query,
            method,
            body,
            audit_refused: AtomicBool::new(false),
            audit_slot: Mutex::new(None),
        }
    }

    /// Whether an entry of this request could not be recorded: it must not be answered.
    pub fn audit_refused(&self) -> bool {
        self.audit_refused.load(Ordering::Relaxed)
    }
}

impl TrackerState {
    /// Writes one audit entry: in the place [`TrackerState::reserve_audit`] took, if any, else
    /// through the queue. When the log cannot take it (`audit_on_failure = "refuse"` and the
    /// file cannot be written) the request is marked, and `server::route` answers 503 instead
    /// of the handler's answer: one place for every handler, so none can answer unrecorded.
    pub(crate) async fn audit(
        &self,
        req: &ApiRequest<'_>,
        endpoint: Endpoint,
        user: Option<&str>,
        info_hash: Option<InfoHash>,
        outcome: Result<&str, &Refusal>,
    ) {
        let (decision, reason) = match outcome {
            Ok(reason) => (Decision::Allow, reason.to_owned().into()),
            Err(refusal) => (Decision::Refuse, refusal.audit.clone()),
        };
        let entry = AuditEntry {
            seq: 0,
            time_ms: self.clock.unix_ms(),
            source: req.source,
            user: user.map(str::to_owned),
            endpoint,
            info_hash,
            decision,
            reason,
        };
        let slot = req.audit_slot.lock().take();
        let recorded = match slot {
            // A change that must not go unrecorded: answered only once its line is written.
            Some(slot) => {
                let receipt = slot.record(entry);
                let written = self.audit.written(&receipt).await;
                if written.is_err() {
                    // The line stays queued and is written if the file recovers; say right
                    // after it that this answer was withheld (a key in it never left).
                    receipt.withdraw(self.clock.unix_ms());
                }
                written
            }
            None => self.audit.record(entry).await,
        };
        if recorded.is_err() {
            req.audit_refused.store(true, Ordering::Relaxed);
        } else {
            self.metrics.count(endpoint, decision);
        }
    }

    /// Takes a place in the audit queue for the request's next entry, before a change that
    /// must not happen unrecorded (a content key handed out, a torrent stored, an admin
    /// change): once the place is taken the entry cannot be refused, and without it the
    /// change is not made. A refusal is answered here (503).
    pub(crate) async fn reserve_audit(
        &self,
        req: &ApiRequest<'_>,
    ) -> Result<(), hyper::Response<response::Body>> {
        match self.audit.reserve().await {
            Ok(slot) => {
                *req.audit_slot.lock() = Some(slot);
                Ok(())
            }
            Err(audit::AuditUnavailable) => Err(response::refusal(
                &Refusal::audit_unavailable(),
                response::RefusalStatus::ByKind,
            )),
        }
    }

    /// Parses the request's query; a malformed one is audited and answered here.
    pub(crate) async fn parse_query<'q>(
        &self,
        req: &ApiRequest<'q>,
        endpoint: Endpoint,
        status: response::RefusalStatus,
    ) -> Result<query::Query<'q>, hyper::Response<response::Body>> {
        match query::Query::parse(req.query) {
            Ok(q) => Ok(q),
            Err(e) => {
                let refusal = Refusal::from(e);
                self.audit(req, endpoint, None, None, Err(&refusal)).await;
                Err(response::refusal(&refusal, status))
            }
        }
    }

    /// Checks the request's credentials (docs/protocol.md 3.2); a refusal is audited with the
    /// user the request claims to be, and answered here.
    pub(crate) async fn authenticate(
        &self,
        req: &ApiRequest<'_>,
        query: &query::Query<'_>,
        endpoint: Endpoint,
        info_hash: Option<InfoHash>,
        status: response::RefusalStatus,
    ) -> Result<credentials::Authenticated, hyper::Response<response::Body>> {
        match self.authenticator.authenticate(query, req.source).await {
            Ok(auth) => Ok(auth),
            Err(refusal) => {
                let user = claimed_user(query);
                self.audit(req, endpoint, user.as_deref(), info_hash, Err(&refusal))
                    .await;
                Err(response::refusal(&refusal, status))
            }
        }
    }
}

/// The user a request claims to be (`username`, unverified, at most 64 characters), for the
/// audit log of a refused request.
pub(crate) fn claimed_user(query: &query::Query<'_>) -> Option<String> {
    if let Ok(Some(name)) = query.get_str("username") {
        return Some(name.chars().take(64).collect());
    }
    None
}
