//! The request side of the audit log ([`AuditLog`]): admission, the queue the writer takes its
//! batches from, and the in-memory tail.
//!
//! A request takes one lock: it numbers its entry, adds it to the in-memory tail and to a
//! bounded queue, and wakes the writer thread only if that thread is parked (the first entry
//! after a quiet spell) or its batch is full. While the file can be written, a full queue makes
//! requests wait (back-pressure) and never drops an entry; while it cannot, [`OnFailure`]
//! decides whether requests are refused or their entries dropped when the queue is full
//! (see `writer`). After its first entry the writer lingers up to [`LINGER`] so that one
//! wake-up, one encoding pass and one `write(2)` serve a whole batch instead of one entry each.
//!
//! The last [`RECENT`] entries are also kept in memory for the admin API's audit tail; they
//! share their allocation with the queue (`Arc`), so keeping them costs no copy.
//!
//! Lock order: only one lock ([`Shared::queue`]); the writer never holds it while encoding,
//! hashing or writing. It is a `parking_lot` mutex: a thread that panics holding it leaves no
//! poisoned lock for every later request to recover from.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::Deserialize;

use super::AuditError;
use super::entry::{AuditEntry, AuditReceipt, AuditSlot};
#[cfg(doc)]
use super::writer::LINGER;
use super::writer::{AuditWriter, WriteLoop};

/// Entries kept in memory for the admin API.
pub const RECENT: usize = 1024;
/// Most entries written in one batch; a request that fills a batch ends the writer's linger.
const BATCH: usize = 512;

/// How long a request waits for its entry to reach the file before it is refused instead
/// ([`AuditLog::written`]); well under the peers' and admin client's HTTP timeouts.
const WRITTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the tracker does while the audit log cannot be written (config `audit_on_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse every request that would record an entry (fail closed).
    #[default]
    Refuse,
    /// Answer anyway; entries wait in the bounded queue, and are dropped and counted when it
    /// is full.
    Continue,
}

/// The audit log cannot take an entry now: its file cannot be written (or its writer has
/// stopped) and [`OnFailure::Refuse`] is in force. The request must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit log unavailable")]
pub struct AuditUnavailable;

/// What the writer thread waits for, so that a request wakes it only when it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriterState {
    /// Parked until an entry comes: the next entry wakes it.
    Idle,
    /// Letting a batch grow for at most [`LINGER`]: a full batch (or a full queue) wakes it.
    Lingering,
    /// Writing, or already woken: nobody needs to wake it.
    Busy,
    /// Waiting to try a failed batch again: only a close or a reopen wakes it early.
    Retrying,
    /// No writer: the log lives in memory only, or the writer thread has ended.
    Gone,
}

/// Everything a request and the writer share, behind one lock.
pub(super) struct Queue {
    /// Entries accepted and not yet taken by the writer, in `seq` order; at most
    /// [`Shared::capacity`].
    pub(super) pending: Vec<Arc<AuditEntry>>,
    /// The last [`RECENT`] entries, in `seq` order (shared with `pending`).
    pub(super) recent: VecDeque<Arc<AuditEntry>>,
    /// The last `seq` given out.
    pub(super) seq: u64,
    pub(super) writer: WriterState,
    /// Set by [`AuditLog::close`]: the writer writes what is pending and ends.
    pub(super) closed: bool,
    /// Set by [`AuditLog::reopen`]: the writer opens the file's path again.
    pub(super) reopen: bool,
    /// Places taken by [`AuditSlot`]s not yet used; they count against the capacity.
    pub(super) reserved: usize,
    /// Entries of a batch the writer failed to write and holds to try again; they count
    /// against the capacity while the writer fails.
    pub(super) held: usize,
    /// The writer's last attempt failed.
    pub(super) failing: bool,
    /// Entries dropped since the failure began ([`OnFailure::Continue`], queue full).
    pub(super) dropped: u64,
    /// A pending entry's request waits for it to be written: the writer must not linger.
    pub(super) awaited: bool,
}

/// What becomes of an entry offered to the log now.
enum Admit {
    /// Into the queue (and the tail).
    Queue,
    /// Into the tail only: the log lives in memory only.
    TailOnly,
    /// Into the tail only, and counted as dropped ([`OnFailure::Continue`] while failing).
    Drop,
    /// Into the tail only: the writer has stopped ([`OnFailure::Continue`]).
    Lost,
    /// Refused: [`AuditUnavailable`].
    Refuse,
    /// The queue is full and the writer works: wait for room.
    Wait,
}

/// What requests, slots, receipts and the writer thread share.
pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Most entries pending; a request that finds the queue full waits for room.
    pub(super) capacity: usize,
    /// Entries that end the writer's linger: `min(BATCH, capacity)`.
    pub(super) batch: usize,
    /// Whether entries go to a file (else the log is the in-memory tail only).
    pub(super) to_file: bool,
    /// Wakes the writer (see [`WriterState`]).
    pub(super) wake_writer: Condvar,
    /// Wakes requests waiting for room; the writer notifies it after taking each batch.
    pub(super) room: tokio::sync::Notify,
    pub(super) on_failure: OnFailure,
    /// Whether requests are refused now (the writer fails, or has stopped, under
    /// [`OnFailure::Refuse`]); read without the lock by [`AuditLog::check`].
    pub(super) refusing: AtomicBool,
    /// Requests refused since the failure began (counted without the lock: most are refused
    /// by [`AuditLog::check`]).
    pub(super) refused: AtomicU64,
    /// The `seq` of the last entry in the file; entries are written in `seq` order.
    pub(super) written: AtomicU64,
    /// Wakes requests waiting for their entry to be written ([`AuditLog::written`]); the
    /// writer notifies it after each batch it writes, and when it ends.
    pub(super) written_notify: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new(capacity: usize, to_file: bool, on_failure: OnFailure) -> Shared {
        // A reservation takes two places (its entry and a possible withdrawal).
        let capacity = capacity.max(2);
        Shared {
            queue: Mutex::new(Queue {
                pending: Vec::with_capacity(capacity.min(BATCH)),
                recent: VecDeque::with_capacity(RECENT),
                seq: 0,
                writer: if to_file {
                    WriterState::Busy
                } else {
                    WriterState::Gone
                },
                closed: false,
                reopen: false,
                reserved: 0,
                held: 0,
                failing: false,
                dropped: 0,
                awaited: false,
            }),
            capacity,
            batch: capacity.min(BATCH),
            to_file,
            wake_writer: Condvar::new(),
            room: tokio::sync::Notify::new(),
            on_failure,
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            written: AtomicU64::new(0),
            written_notify: tokio::sync::Notify::new(),
        }
    }

    /// What becomes of one more entry (or reservation), given what `q` holds.
    /// What to do with a request for `places` more places in the queue.
    fn admit(&self, q: &Queue, places: usize) -> Admit {
        let room = q.pending.len() + q.reserved + q.held + places <= self.capacity;
        match (q.writer, self.on_failure) {
            (WriterState::Gone, _) if !self.to_file => Admit::TailOnly,
            (WriterState::Gone, OnFailure::Refuse) => Admit::Refuse,
            (WriterState::Gone, OnFailure::Continue) => Admit::Lost,
            _ if q.failing => match (self.on_failure, room) {
                (OnFailure::Refuse, _) => Admit::Refuse,
                (OnFailure::Continue, true) => Admit::Queue,
                (OnFailure::Continue, false) => Admit::Drop,
            },
            _ if room => Admit::Queue,
            _ => Admit::Wait,
        }
    }

    /// Numbers `entry`, adds it to the tail and, with `queue`, to the writer's queue; then
    /// wakes the writer if it waits for that. Consumes the guard; returns the entry as placed.
    pub(super) fn push(
        &self,
        mut q: MutexGuard<'_, Queue>,
        entry: AuditEntry,
        queue: bool,
    ) -> Arc<AuditEntry> {
        q.seq += 1;
        let entry = Arc::new(AuditEntry {
            seq: q.seq,
            ..entry
        });
        if q.recent.len() == RECENT {
            q.recent.pop_front();
        }
        q.recent.push_back(entry.clone());
        if queue {
            q.pending.push(entry.clone());
            self.wake_if_waiting(q);
        }
        entry
    }

    /// Places `entry` without waiting (an [`AuditSlot`] whose place was not counted): as
    /// [`Admit`] says, with a full queue counted as dropped.
    pub(super) fn push_now(&self, mut q: MutexGuard<'_, Queue>, entry: AuditEntry) {
        match self.admit(&q, 1) {
            Admit::Queue => {
                self.push(q, entry, true);
            }
            Admit::TailOnly => {
                self.push(q, entry, false);
            }
            Admit::Lost => {
                let seq = self.push(q, entry, false).seq;
                tracing::error!("audit writer has stopped; entry {seq} not written");
            }
            Admit::Drop | Admit::Wait | Admit::Refuse => {
                q.dropped += 1;
                self.push(q, entry, false);
            }
        }
    }

    /// The writer waits on the queue's lock until `until` or a wake-up, whichever is first.
    pub(super) fn park_until(&self, q: &mut MutexGuard<'_, Queue>, until: Instant) {
        self.wake_writer.wait_until(q, until);
    }

    /// The writer waits on the queue's lock until a wake-up.
    pub(super) fn park(&self, q: &mut MutexGuard<'_, Queue>) {
        self.wake_writer.wait(q);
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }

    /// Wakes the writer if it waits for what `q` now holds; consumes the guard so that the
    /// wake-up happens after the lock is released.
    fn wake_if_waiting(&self, mut q: MutexGuard<'_, Queue>) {
        let wake = match q.writer {
            WriterState::Idle => true,
            WriterState::Lingering => {
                q.closed || q.reopen || q.awaited || q.pending.len() >= self.batch
            }
            WriterState::Retrying => q.closed || q.reopen,
            WriterState::Busy | WriterState::Gone => false,
        };
        if wake {
            q.writer = WriterState::Busy;
            drop(q);
            self.wake_writer.notify_one();
        }
    }
}

/// The request side of the audit log.
pub struct AuditLog {
    pub(super) shared: Arc<Shared>,
}

impl AuditLog {
    /// Starts the audit log writing to `path` (appending), or an in-memory-only log when
    /// `path` is `None`. At most `queue` entries wait for the writer; `on_failure` says what
    /// happens while the file cannot be written.
    ///
    /// # Errors
    /// The file cannot be opened, or the thread cannot start.
    pub fn start(
        path: Option<&Path>,
        queue: usize,
        on_failure: OnFailure,
    ) -> Result<(AuditLog, AuditWriter), AuditError> {
        let Some(path) = path else {
            let shared = Arc::new(Shared::new(queue, false, on_failure));
            return Ok((AuditLog { shared }, AuditWriter(None)));
        };
        let (log, writer) = Self::open(path, queue, on_failure)?;
        Ok((log, AuditWriter::spawn(writer)?))
    }

    /// Opens the file and continues its chain; the writer is returned to be run.
    pub(super) fn open(
        path: &Path,
        queue: usize,
        on_failure: OnFailure,
    ) -> Result<(AuditLog, WriteLoop), AuditError> {
        let shared = Arc::new(Shared::new(queue, true, on_failure));
        let writer = WriteLoop::open(path, shared.clone())?;
        Ok((AuditLog { shared }, writer))
    }

    /// Records an entry (its `seq` is assigned here). Waits while the queue is full and the
    /// writer works; while it fails, see [`OnFailure`].
    ///
    /// # Errors
    /// [`AuditUnavailable`] under [`OnFailure::Refuse`] while the file cannot be written: the
    /// entry is not recorded, and the request must be refused.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), AuditUnavailable> {
        let (q, admit) = self.admission(1).await?;
        if let Admit::Queue = admit {
            self.shared.push(q, entry, true);
        } else {
            self.shared.push_now(q, entry);
        }
        Ok(())
    }

    /// Takes a place in the queue for an entry to be recorded after a change that must not
    /// happen unrecorded, and one for its withdrawal ([`AuditReceipt::withdraw`]); waits while
    /// the queue is full and the writer works.
    ///
    /// # Errors
    /// [`AuditUnavailable`] as [`AuditLog::record`].
    pub async fn reserve(&self) -> Result<AuditSlot, AuditUnavailable> {
        let (mut q, admit) = self.admission(2).await?;
        let counted = matches!(admit, Admit::Queue);
        if counted {
            q.reserved += 2;
        }
        Ok(AuditSlot {
            shared: Some(self.shared.clone()),
            counted,
        })
    }

    /// Waits until `places` more entries can be admitted ([`Admit`] other than `Wait`), and
    /// returns the lock with the verdict, so that the caller acts on it before anyone else
    /// looks.
    ///
    /// # Errors
    /// [`AuditUnavailable`] (counted) for [`Admit::Refuse`].
    async fn admission(
        &self,
        places: usize,
    ) -> Result<(MutexGuard<'_, Queue>, Admit), AuditUnavailable> {
        let shared = &*self.shared;
        loop {
            // Registered before looking, so that room made after the look still wakes us.
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let q = shared.lock();
                match shared.admit(&q, places) {
                    // Full: a lingering writer must start now (only when capacity < BATCH).
                    Admit::Wait => shared.wake_if_waiting(q),
                    Admit::Refuse => {
                        drop(q);
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(AuditUnavailable);
                    }
                    admit => return Ok((q, admit)),
                }
            }
            room.await;
        }
    }

    /// Whether requests are refused now: the file cannot be written (or the writer has
    /// stopped) under [`OnFailure::Refuse`].
    pub fn is_refusing(&self) -> bool {
        self.shared.refusing.load(Ordering::Acquire)
    }

    /// Whether the writer's last attempt failed (under either `audit_on_failure`), for
    /// monitoring: takes the queue's lock.
    pub fn is_failing(&self) -> bool {
        self.shared.lock().failing
    }

    /// Refuses (and counts) a request at once while [`AuditLog::is_refusing`]; costs one
    /// atomic load otherwise, so the server asks it first, before any work.
    ///
    /// # Errors
    /// [`AuditUnavailable`]: the request must be refused.
    pub fn check(&self) -> Result<(), AuditUnavailable> {
        if self.is_refusing() {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AuditUnavailable);
        }
        Ok(())
    }

    /// Waits until the entry of `receipt` is in the file (written, not yet fsynced), so that
    /// its request is answered only then.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when it is not written within [`WRITTEN_TIMEOUT`] (the file cannot
    /// be written) or the writer has ended: the request must be refused. The entry stays
    /// queued and is written if the file recovers.
    pub async fn written(&self, receipt: &AuditReceipt) -> Result<(), AuditUnavailable> {
        self.written_within(receipt, WRITTEN_TIMEOUT).await
    }

    pub(super) async fn written_within(
        &self,
        receipt: &AuditReceipt,
        limit: Duration,
    ) -> Result<(), AuditUnavailable> {
        let Some(seq) = receipt.seq() else {
            return Ok(());
        };
        let shared = &*self.shared;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before looking, so that a batch written after the look still wakes us.
            let notified = shared.written_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.written.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if shared.lock().writer == WriterState::Gone {
                return Err(AuditUnavailable);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(AuditUnavailable);
            }
        }
    }

    /// Entries with `seq > since`, oldest first, at most `limit` (the newest ones).
    pub fn recent(&self, since: u64, limit: usize) -> Vec<AuditEntry> {
        let q = self.shared.lock();
        let first = q.recent.partition_point(|e| e.seq <= since);
        let skip = (q.recent.len() - first).saturating_sub(limit);
        q.recent
            .range(first + skip..)
            .map(|e| AuditEntry::clone(e))
            .collect()
    }

    /// Makes the writer flush and fsync the file and open its path again (after the operator
    /// renamed it: log rotation). Entries recorded before the call may land in either file;
    /// none is lost, and the chain continues across the two.
    pub fn reopen(&self) {
        let mut q = self.shared.lock();
        if q.writer != WriterState::Gone {
            q.reopen = true;
            self.shared.wake_if_waiting(q);
        }
    }

    /// Closes the log: the writer writes what is queued, flushes, fsyncs and ends.
    pub fn close(&self) {
        let mut q = self.shared.lock();
        q.closed = true;
        self.shared.wake_if_waiting(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::audit::testing::*;
    use crate::tracker::audit::{AUDIT_FILE, verify_chain};
    use std::future::Future;
    use std::task::{Context, Waker};

    /// A change recorded in a slot (a key handed out, a torrent stored) is answered only once
    /// its line is in the file: SIGKILL right after the answer cannot lose it. Its entry ends
    /// the writer's linger, so the wait is one write, not [`LINGER`].
    #[tokio::test]
    async fn a_reserved_change_is_answered_only_once_its_line_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let (log, writer) = AuditLog::start(Some(&path), 64, OnFailure::Refuse).unwrap();
        for i in 0..20 {
            // Ordinary entries around it may still wait for a batch.
            log.record(entry(&format!("announce {i}"))).await.unwrap();
            let slot = log.reserve().await.unwrap();
            let receipt = slot.record(entry(&format!("key handed out {i}")));
            assert!(receipt.seq().is_some());
            log.written(&receipt).await.unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.contains(&format!("\"key handed out {i}\"")),
                "answered before its line was written: {i}"
            );
        }
        finish(log, writer).await;
        assert_eq!(
            verify_chain(&std::fs::read_to_string(&path).unwrap()),
            Ok(40)
        );
        // A memory-only log has nothing to wait for.
        let (log, _none) = AuditLog::start(None, 4, OnFailure::Refuse).unwrap();
        let receipt = log.reserve().await.unwrap().record(entry("memory only"));
        assert_eq!(receipt.seq(), None);
        assert_eq!(log.written(&receipt).await, Ok(()));
    }

    #[test]
    fn a_full_queue_makes_the_request_wait_and_drops_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        // The writer is not running yet: the queue of 2 fills up.
        let (log, writer) = AuditLog::open(&path, 2, OnFailure::Refuse).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..2 {
            let mut first = std::pin::pin!(log.record(entry(&format!("queued {i}"))));
            assert!(first.as_mut().poll(&mut cx).is_ready());
        }
        let third = log.record(entry("waits for room"));
        let mut third = std::pin::pin!(third);
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        // The tail already shows what is queued, not the waiting one.
        assert_eq!(log.recent(0, 10).len(), 2);

        let thread = std::thread::spawn(move || writer.run());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            third.await.unwrap();
            log.close();
        });
        thread.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(3), "{text}");
        assert!(text.lines().nth(2).unwrap().contains("waits for room"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_through_a_small_queue_all_land_in_seq_order() {
        const TASKS: usize = 8;
        const EACH: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let (log, writer) = AuditLog::start(Some(&path), 3, OnFailure::Refuse).unwrap();
        let log = Arc::new(log);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        log.record(entry(&format!("task {t} entry {i}")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let log = Arc::into_inner(log).unwrap();
        assert_eq!(
            log.recent(0, RECENT).last().unwrap().seq,
            (TASKS * EACH) as u64
        );
        finish(log, writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(TASKS * EACH));
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["seq"], i as u64 + 1, "{line}");
        }
    }

    #[tokio::test]
    async fn a_memory_only_log_keeps_the_tail() {
        let (log, writer) = AuditLog::start(None, 4, OnFailure::Refuse).unwrap();
        for i in 0..(RECENT + 5) {
            log.record(entry(&format!("e{i}"))).await.unwrap();
        }
        let all = log.recent(0, usize::MAX);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].seq, 6);
        assert_eq!(all.last().unwrap().reason, format!("e{}", RECENT + 4));
        assert!(log.recent((RECENT + 5) as u64, 10).is_empty());
        finish(log, writer).await;
    }
}
