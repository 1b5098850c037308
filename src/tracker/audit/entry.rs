//! An audit entry, and the place a change that must not go unrecorded takes for its entry
//! before it happens.
//!
//! Changes that must not go unrecorded (a content key handed out, a torrent stored, an admin
//! change) take an [`AuditSlot`] first ([`AuditLog::reserve`]), so that recording their entry
//! afterwards cannot be refused, and their requests are answered only once their line is in
//! the file ([`AuditLog::written`], with the slot's [`AuditReceipt`]): such an entry ends the
//! writer's linger at once, so the wait is one `write(2)`. A tracker killed with SIGKILL can
//! lose only entries of other requests (announces, scrapes, refusals) queued in the writer's
//! last linger (2 ms); a crash of the machine, the last second's. When the line is not written
//! in time, the request is answered 503 and [`AuditReceipt::withdraw`] records that it was.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

#[cfg(doc)]
use super::AuditLog;
use super::queue::{OnFailure, Shared};
use crate::tracker::endpoint::Endpoint;
use crate::types::InfoHash;

/// Allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Refuse,
}

impl Decision {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Refuse => "refuse",
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Order of recording in this process (starts at 1); also the order in the file.
    pub seq: u64,
    /// Milliseconds since 1970.
    pub time_ms: u64,
    pub source: IpAddr,
    /// The authenticated user, or the claimed one when authentication failed.
    pub user: Option<String>,
    pub endpoint: Endpoint,
    #[serde(serialize_with = "hex_opt")]
    pub info_hash: Option<InfoHash>,
    pub decision: Decision,
    /// The true reason (never shown to a refused client).
    pub reason: Cow<'static, str>,
}

fn hex_opt<S: serde::Serializer>(h: &Option<InfoHash>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(&h.to_hex()),
        None => s.serialize_none(),
    }
}

/// A place in the audit queue, taken by [`AuditLog::reserve`] before a change that must not
/// happen unrecorded (a content key handed out, a torrent stored, an admin change): the entry
/// that [`AuditSlot::record`] then adds cannot be refused. Dropped unused, it frees the place.
#[must_use = "an unused slot only holds a place in the audit queue"]
pub struct AuditSlot {
    pub(super) shared: Option<Arc<Shared>>,
    /// Whether the place counts in [`Queue::reserved`](super::queue::Queue::reserved) (not
    /// so when the log is memory-only, its writer stopped, or it failed under
    /// [`OnFailure::Continue`] with a full queue).
    pub(super) counted: bool,
}

/// What [`AuditLog::written`] waits for: the `seq` of an entry recorded in a slot, when its
/// request must wait for the file ([`OnFailure::Refuse`], the entry queued for the writer).
///
/// It keeps the slot's second place until dropped, for [`AuditReceipt::withdraw`]: an entry
/// whose request is answered 503 because the line was not written in time is still written
/// once the file recovers, and without a follow-up the log would record as given an answer
/// (a key handed out) that never left.
#[must_use = "wait for it with AuditLog::written before answering"]
pub struct AuditReceipt {
    /// The place kept for a withdrawal, and the entry it would follow; `None` when the request
    /// does not wait.
    place: Option<(Arc<Shared>, Arc<AuditEntry>)>,
}

impl AuditSlot {
    /// Records `entry` in the place taken; never waits, never fails. The receipt says what to
    /// wait for before answering.
    pub fn record(mut self, entry: AuditEntry) -> AuditReceipt {
        // Cannot fail: only `record` and `drop` take it, and `record` consumes the slot.
        let shared = self.shared.take().expect("a slot is used once");
        let mut q = shared.lock();
        if self.counted {
            // Under Continue the tracker answers whether or not the line gets written, so
            // nothing is ever withdrawn: the second place is given back at once.
            let awaited = shared.on_failure == OnFailure::Refuse;
            q.reserved -= if awaited { 1 } else { 2 };
            q.awaited |= awaited;
            let placed = shared.push(q, entry, true);
            if !awaited {
                shared.room.notify_waiters();
            }
            AuditReceipt {
                place: awaited.then_some((shared, placed)),
            }
        } else {
            shared.push_now(q, entry);
            AuditReceipt { place: None }
        }
    }
}

impl std::fmt::Debug for AuditReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditReceipt")
            .field("seq", &self.seq())
            .finish()
    }
}

impl AuditReceipt {
    /// The `seq` of the entry its request must wait for, if it must wait.
    pub fn seq(&self) -> Option<u64> {
        self.place.as_ref().map(|(_, entry)| entry.seq)
    }

    /// Records, in the place kept, that the entry's request was answered 503 after all
    /// ([`AuditLog::written`] failed): a `refuse` line for the same source, user, endpoint
    /// and torrent, "answer withheld: entry N above …", at `time_ms`. Written after that
    /// entry, if it ever is. Never waits, never fails.
    pub fn withdraw(mut self, time_ms: u64) {
        if let Some((shared, withheld)) = self.place.take() {
            let entry = AuditEntry {
                seq: 0,
                time_ms,
                source: withheld.source,
                user: withheld.user.clone(),
                endpoint: withheld.endpoint,
                info_hash: withheld.info_hash,
                decision: Decision::Refuse,
                reason: withdrawal_reason(withheld.seq).into(),
            };
            let mut q = shared.lock();
            q.reserved -= 1;
            shared.push(q, entry, true);
        }
    }
}

/// The reason of [`AuditReceipt::withdraw`]'s line.
pub(super) fn withdrawal_reason(seq: u64) -> String {
    format!(
        "answer withheld: entry {seq} above was not written in time (audit log unavailable), so \
         the request was answered 503 instead"
    )
}

impl Drop for AuditReceipt {
    fn drop(&mut self) {
        if let Some((shared, _)) = self.place.take() {
            shared.lock().reserved -= 1;
            shared.room.notify_waiters();
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take()
            && self.counted
        {
            shared.lock().reserved -= 2;
            shared.room.notify_waiters();
        }
    }
}
