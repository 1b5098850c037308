//! Why a request was refused, told twice: once for the client, once for the audit log.
//!
//! The public text must not let a client map what it may not see (docs/protocol.md 4, "no existence
//! oracle"): an unknown torrent and a forbidden one give the same status and text, and so do an
//! unknown user, a wrong password and a wrong source address. The audit text is the true
//! reason and never leaves the tracker.

use std::borrow::Cow;

/// The public reason for a torrent the requester may not see, or that does not exist.
pub const NOT_FOUND: &str = "torrent not found or not permitted";
/// The public reason for an unknown user, a wrong password, a bad token or a wrong address.
pub const BAD_CREDENTIALS: &str = "invalid credentials";
/// The public reason while the audit log cannot be written (`audit_on_failure = "refuse"`).
pub const AUDIT_UNAVAILABLE: &str = "audit log unavailable; try again later";

/// The class of a refusal, which picks the HTTP status of endpoints other than
/// /announce and /scrape (those always answer 200, as BitTorrent clients expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: the request is malformed or cannot be honoured as sent.
    Malformed,
    /// 401: identity: credentials, throttling, signatures, keys, admin rights.
    Identity,
    /// 404: an unknown torrent, or one the requester may not see.
    NotFound,
    /// 404: a path or admin call that names no endpoint.
    NoSuchEndpoint,
    /// 500: the tracker failed (database, shutdown); the client may retry.
    Internal,
    /// 503, on every endpoint (/announce and /scrape too): the tracker cannot record its
    /// decision and answers nothing until it can; the client retries later.
    Unavailable,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Sent to the client as `failure reason`.
    pub public: Cow<'static, str>,
    /// Written to the audit log only.
    pub audit: Cow<'static, str>,
}

impl Refusal {
    /// An unknown or forbidden torrent: one public text for both.
    pub fn not_found(audit: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            kind: RefusalKind::NotFound,
            public: Cow::Borrowed(NOT_FOUND),
            audit: audit.into(),
        }
    }

    /// Credentials that do not identify a user: one public text for every cause.
    pub fn bad_credentials(audit: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            kind: RefusalKind::Identity,
            public: Cow::Borrowed(BAD_CREDENTIALS),
            audit: audit.into(),
        }
    }

    /// An identity refusal whose reason the client may know (a stale `ts`, a bad signature,
    /// a throttled address).
    pub fn identity(public: impl Into<Cow<'static, str>>) -> Self {
        let public = public.into();
        Refusal {
            kind: RefusalKind::Identity,
            audit: public.clone(),
            public,
        }
    }

    /// A malformed request; the reason is the same for the client and the log.
    pub fn malformed(public: impl Into<Cow<'static, str>>) -> Self {
        let public = public.into();
        Refusal {
            kind: RefusalKind::Malformed,
            audit: public.clone(),
            public,
        }
    }

    /// A path or admin call that names no endpoint; the reason is the same for the client and
    /// the log.
    pub fn no_such_endpoint(public: impl Into<Cow<'static, str>>) -> Self {
        let public = public.into();
        Refusal {
            kind: RefusalKind::NoSuchEndpoint,
            audit: public.clone(),
            public,
        }
    }

    /// A failure of the tracker itself; the details go to the audit log only.
    pub fn internal(audit: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            kind: RefusalKind::Internal,
            public: Cow::Borrowed("internal tracker error; try again later"),
            audit: audit.into(),
        }
    }

    /// The audit log cannot be written and the tracker fails closed (docs/security.md
    /// 2.6). Nothing of it goes to the audit log, which is what cannot be written.
    pub fn audit_unavailable() -> Self {
        Refusal {
            kind: RefusalKind::Unavailable,
            public: Cow::Borrowed(AUDIT_UNAVAILABLE),
            audit: Cow::Borrowed(AUDIT_UNAVAILABLE),
        }
    }

    /// The HTTP status for endpoints other than /announce and /scrape (and for those too when
    /// [`RefusalKind::Unavailable`]).
    pub fn status(&self) -> u16 {
        match self.kind {
            RefusalKind::Malformed => 400,
            RefusalKind::Identity => 401,
            RefusalKind::NotFound | RefusalKind::NoSuchEndpoint => 404,
            RefusalKind::Internal => 500,
            RefusalKind::Unavailable => 503,
        }
    }
}

impl From<super::query::QueryError> for Refusal {
    fn from(e: super::query::QueryError) -> Self {
        Refusal::malformed(format!("malformed query: {e}"))
    }
}
