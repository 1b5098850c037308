//! What every request handler shares ([`TrackerState`]), one request as a handler sees it
//! ([`ApiRequest`]), and the one path by which a handler records its decision.
//!
//! Handlers answer in domain values ([`super::answer::Answer`] or a [`Refusal`]), never in
//! HTTP; `server.rs` and `response.rs` turn those into responses. A decision that cannot be
//! recorded is a value too: [`TrackerState::audit`] returns [`AuditUnavailable`], which a
//! handler returns (as [`Refusal::audit_unavailable`], a 503) instead of its answer, so no
//! request is answered unrecorded (docs/security.md 2.6).
//!
//! The audit log and the metrics are private: every entry goes through
//! [`TrackerState::audit`] or [`TrackerState::audit_change`], which count it, so the metrics
//! always agree with the log.

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::types::InfoHash;

use super::audit::{AuditEntry, AuditLog, AuditSlot, AuditUnavailable, Decision};
use super::authority::AuthoritySource;
use super::catalogue::Catalogue;
use super::clock::Clock;
use super::config::Config;
use super::credentials::{Authenticated, Authenticator};
use super::endpoint::Endpoint;
use super::getcipher::NonceCache;
use super::key_cache::{PUBLIC_KEY_CACHE_ENTRIES, PublicKeyCache};
use super::metrics::{Gauges, Metrics};
use super::query::Query;
use super::refusal::Refusal;
use super::swarm::Swarms;

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
    /// getcipher nonces seen within the window.
    pub(crate) nonces: Mutex<NonceCache>,
    /// Parsed public keys of getcipher requesters whose signature verified.
    pub(crate) public_keys: Mutex<PublicKeyCache>,
    /// Bounds RSA work (verify, wrap) on the blocking pool.
    pub(crate) rsa: tokio::sync::Semaphore,
    /// Written only through [`TrackerState::audit`] and [`TrackerState::audit_change`].
    audit: AuditLog,
    /// Request counters for monitoring (`metrics_listen`), counted with each audit entry.
    metrics: Metrics,
}

/// One request, as the endpoint handlers see it.
pub struct ApiRequest<'a> {
    pub source: IpAddr,
    /// The raw query string (without `?`), still percent-encoded.
    pub query: &'a str,
    pub method: &'a hyper::Method,
    /// The body, already read within `max_torrent_bytes` (empty for GET).
    pub body: bytes::Bytes,
}

impl From<AuditUnavailable> for Refusal {
    /// A decision that could not be recorded is not answered: 503 instead.
    fn from(_: AuditUnavailable) -> Self {
        Refusal::audit_unavailable()
    }
}

impl TrackerState {
    pub fn new(
        config: Config,
        clock: Clock,
        users: Arc<AuthoritySource>,
        authenticator: Authenticator,
        swarms: Arc<Mutex<Swarms>>,
        catalogue: Catalogue,
        audit: AuditLog,
    ) -> TrackerState {
        TrackerState {
            nonces: Mutex::new(NonceCache::new(config.nonce_cache_entries)),
            public_keys: Mutex::new(PublicKeyCache::new(PUBLIC_KEY_CACHE_ENTRIES)),
            rsa: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            metrics: Metrics::default(),
            config,
            clock,
            users,
            authenticator,
            swarms,
            catalogue,
            audit,
        }
    }

    fn entry(
        &self,
        req: &ApiRequest<'_>,
        endpoint: Endpoint,
        user: Option<&str>,
        info_hash: Option<InfoHash>,
        outcome: Result<&str, &Refusal>,
    ) -> AuditEntry {
        let (decision, reason) = match outcome {
            Ok(reason) => (Decision::Allow, reason.to_owned().into()),
            Err(refusal) => (Decision::Refuse, refusal.audit.clone()),
        };
        AuditEntry {
            seq: 0,
            time_ms: self.clock.unix_ms(),
            source: req.source,
            user: user.map(str::to_owned),
            endpoint,
            info_hash,
            decision,
            reason,
        }
    }

    /// Records one audit entry of `req` and counts it.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when the log cannot take it (`audit_on_failure = "refuse"` and the
    /// file cannot be written): the request must then be answered 503, not with its answer.
    pub(crate) async fn audit(
        &self,
        req: &ApiRequest<'_>,
        endpoint: Endpoint,
        user: Option<&str>,
        info_hash: Option<InfoHash>,
        outcome: Result<&str, &Refusal>,
    ) -> Result<(), AuditUnavailable> {
        let entry = self.entry(req, endpoint, user, info_hash, outcome);
        let decision = entry.decision;
        self.audit.record(entry).await?;
        self.metrics.count(endpoint, decision);
        Ok(())
    }

    /// Records `refusal` for `req` and returns what to answer: the refusal itself, or the
    /// 503 of [`Refusal::audit_unavailable`] when it could not be recorded.
    pub(crate) async fn refuse(
        &self,
        req: &ApiRequest<'_>,
        endpoint: Endpoint,
        user: Option<&str>,
        info_hash: Option<InfoHash>,
        refusal: Refusal,
    ) -> Refusal {
        match self
            .audit(req, endpoint, user, info_hash, Err(&refusal))
            .await
        {
            Ok(()) => refusal,
            Err(unavailable) => unavailable.into(),
        }
    }

    /// Takes a place in the audit queue for the entry of a change that must not happen
    /// unrecorded (a content key handed out, a torrent stored, an admin change): once the
    /// place is taken the entry cannot be refused, and without it the change is not made.
    ///
    /// # Errors
    /// [`AuditUnavailable`]: the change must not be made, and the request is answered 503.
    pub(crate) async fn reserve_audit(&self) -> Result<AuditSlot, AuditUnavailable> {
        self.audit.reserve().await
    }

    /// Records the entry of a change in the place [`TrackerState::reserve_audit`] took, and
    /// waits until its line is in the file, so that the change is answered only then.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when the line is not written in time: the request must be
    /// answered 503. The line stays queued and is written if the file recovers, followed by
    /// one saying that this answer was withheld (a key in it never left).
    pub(crate) async fn audit_change(
        &self,
        slot: AuditSlot,
        req: &ApiRequest<'_>,
        endpoint: Endpoint,
        user: Option<&str>,
        info_hash: Option<InfoHash>,
        outcome: Result<&str, &Refusal>,
    ) -> Result<(), AuditUnavailable> {
        let entry = self.entry(req, endpoint, user, info_hash, outcome);
        let decision = entry.decision;
        let receipt = slot.record(entry);
        if let Err(unavailable) = self.audit.written(&receipt).await {
            receipt.withdraw(self.clock.unix_ms());
            return Err(unavailable);
        }
        self.metrics.count(endpoint, decision);
        Ok(())
    }

    /// Checks the request's credentials (docs/protocol.md 3.2).
    ///
    /// # Errors
    /// The refusal to answer, already recorded with the user the request claims to be.
    pub(crate) async fn authenticate(
        &self,
        req: &ApiRequest<'_>,
        query: &Query<'_>,
        endpoint: Endpoint,
        info_hash: Option<InfoHash>,
    ) -> Result<Authenticated, Refusal> {
        match self.authenticator.authenticate(query, req.source).await {
            Ok(auth) => Ok(auth),
            Err(refusal) => {
                let user = claimed_user(query);
                Err(self
                    .refuse(req, endpoint, user.as_deref(), info_hash, refusal)
                    .await)
            }
        }
    }

    /// Refuses (and counts) a request at once while the audit log refuses entries; one
    /// atomic load otherwise, so the server asks it first, before any work.
    ///
    /// # Errors
    /// [`AuditUnavailable`]: the request must be answered 503.
    pub(crate) fn check_audit(&self) -> Result<(), AuditUnavailable> {
        self.audit.check()
    }

    /// The audit entries after `since`, at most `limit` (the newest), for the admin API.
    pub(crate) fn recent_audit(&self, since: u64, limit: usize) -> Vec<AuditEntry> {
        self.audit.recent(since, limit)
    }

    /// Log rotation: the writer flushes, fsyncs and opens the file's path again.
    pub(crate) fn reopen_audit(&self) {
        self.audit.reopen();
    }

    /// Closes the audit log: the writer writes what is queued, fsyncs and ends.
    pub(crate) fn close_audit(&self) {
        self.audit.close();
    }

    /// Counts a request answered 503 for want of an audit log, wherever it was refused.
    pub(crate) fn count_audit_unavailable(&self) {
        self.metrics.count_audit_unavailable();
    }

    /// The page of `metrics_listen`. It is served while the audit log refuses requests, which
    /// is when monitoring matters most, and records nothing.
    pub(crate) fn metrics_page(&self) -> String {
        let (seeders, leechers, active_swarms) = {
            let swarms = self.swarms.lock();
            let (seeders, leechers) = swarms.peer_totals();
            (seeders, leechers, swarms.number_of_torrents())
        };
        let gauges = Gauges {
            torrents: self.catalogue.len(),
            active_swarms,
            seeders,
            leechers,
            users: self.users.current().len(),
            audit_refusing: self.audit.is_refusing(),
            audit_failing: self.audit.is_failing(),
            uptime_secs: self.clock.uptime().as_secs(),
        };
        self.metrics.render(&gauges)
    }
}

/// The user a request claims to be (`username`, unverified, at most 64 characters), for the
/// audit log of a refused request.
pub(crate) fn claimed_user(query: &Query<'_>) -> Option<String> {
    if let Ok(Some(name)) = query.get_str("username") {
        return Some(name.chars().take(64).collect());
    }
    None
}
