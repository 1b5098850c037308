//! The audit log (SPEC 8): one JSON line per request with time, source address, user,
//! endpoint, info hash, decision and the true reason. Never a password, token or key: entries
//! are built from typed fields only, and no field ever holds a secret.
//!
//! Written off the request path. A request takes one lock: it numbers its entry, adds it to
//! the in-memory tail and to a bounded queue, and wakes the writer thread only if that thread
//! is parked (the first entry after a quiet spell) or its batch is full. While the file can be
//! written, a full queue makes requests wait (back-pressure) and never drops an entry. After
//! its first entry the writer lingers up to [`LINGER`] so that one wake-up, one encoding pass
//! and one `write(2)` serve a whole batch instead of one entry each. Each batch is written
//! (unbuffered: a batch is one buffer) as soon as it is taken; the file is fsynced at most once
//! a second while entries come in (sooner when [`TAIL_CAP`] bytes wait for it), once more a
//! second after the last one, and at shutdown.
//!
//! Changes that must not go unrecorded (a content key handed out, a torrent stored, an admin
//! change) take an [`AuditSlot`] first, and their requests are answered only once their line
//! is in the file ([`AuditLog::written`]): such an entry ends the writer's linger at once, so
//! the wait is one `write(2)`. A tracker killed with SIGKILL can lose only entries of other
//! requests (announces, scrapes, refusals) queued in the last [`LINGER`]; a crash of the
//! machine, the last second's.
//!
//! Each line carries `prev`, the SHA-256 (hex) of the line before it in the file, so that an
//! edited, removed or reordered line breaks the chain. Lines are encoded by hand
//! ([`encode_line`]); the form is exactly what `serde_json` wrote for earlier versions (a
//! test checks the two agree), so [`verify_chain`] reads old and new logs alike.
//!
//! The last [`RECENT`] entries are also kept in memory for the admin API's audit tail; they
//! share their allocation with the queue (`Arc`), so keeping them costs no copy.
//!
//! Rotation: an operator (or logrotate) renames the file and sends the tracker SIGHUP;
//! [`AuditLog::reopen`] makes the writer flush, fsync and open the path again. The chain runs
//! on across files: the new file's first `prev` is the hash of the old file's last line, so
//! `ivcsd admin audit verify audit.log.1 audit.log` checks both and the seam between them.
//!
//! # When the file cannot be written
//! A batch is written with one `write_all` of whole lines; when that fails (a full disk, EIO)
//! the file is cut back to its length before the batch (`set_len`), so no partial line stays,
//! `prev` stays the hash of the last line really in the file, and the writer keeps the batch
//! and tries again after [`RETRY_FIRST`], doubling up to [`RETRY_MAX`]. It logs once when the
//! failure starts (with the error) and once when writing works again (with how many entries
//! waited); after that the chain runs on unbroken. While it fails, [`OnFailure`] decides:
//! - `Refuse` (the default): [`AuditLog::record`] and [`AuditLog::reserve`] fail at once with
//!   [`AuditUnavailable`] and the tracker refuses the request (503) instead of answering it.
//!   SPEC 8 says nothing about a log that cannot be written; ivcsd fails closed, because a
//!   deployment that promises that every decision is logged must not hand out content keys or
//!   store torrents unrecorded (docs/security.md 2.6). Entries accepted before the failure are
//!   kept and written later.
//! - `Continue`: requests are answered; their entries wait in the queue, and once it is full
//!   they are dropped (kept in the in-memory tail only) and counted; the count is logged when
//!   writing works again. Dropped entries leave a gap in `seq`, not a break in the chain.
//!
//! A failed fsync is a failure too: Linux may mark the pages it could not write clean, so the
//! lines written since the last good fsync can be gone from the disk while the file still shows
//! them ("fsyncgate"). The writer keeps those bytes (its unsynced tail, [`LogFile`]); when an
//! fsync fails it cuts the file back to its length at the last good fsync, writes them again
//! and fsyncs once more (logging the error, then that the lines are on disk). If that fails
//! too, the writer fails as above, holding the tail, and each attempt writes it again; it
//! recovers only once all it wrote is on disk, so the chain in the file stays whole. The same
//! holds for the fsync before a rotation (the writer stays on the old file until it succeeds)
//! and at shutdown, where a second failure is logged with how many lines may be lost.
//! [`AuditLog::written`] still waits for the file, not the fsync (which would add up to a
//! second to every key handed out): a line written is fsynced within a second or the log fails.
//!
//! Either way nothing grows without bound: the entries waiting (queued, reserved and held by
//! the failing writer) never exceed `audit_queue`, and the unsynced tail [`TAIL_CAP`] bytes.
//!
//! Lock order: only one lock ([`Shared::queue`]); the writer never holds it while encoding,
//! hashing or writing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::types::InfoHash;

/// The audit log's file name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";
/// Entries kept in memory for the admin API.
pub const RECENT: usize = 1024;
/// Most entries written in one batch; a request that fills a batch ends the writer's linger.
const BATCH: usize = 512;
/// How long the writer waits after the first entry of a batch for more to come.
const LINGER: Duration = Duration::from_millis(2);
/// Least time between two fsyncs.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long a request waits for its entry to reach the file before it is refused instead
/// ([`AuditLog::written`]); well under the peers' and admin client's HTTP timeouts.
const WRITTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause before writing a failed batch again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between two attempts at a failed batch.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most bytes the writer keeps of what it wrote since its last successful fsync, to write them
/// again when an fsync fails ([`LogFile`]); past it the writer fsyncs early instead of waiting
/// for [`SYNC_INTERVAL`], so that neither this memory nor what a crash of the machine can lose
/// grows with the load. 8 MiB is about 0.7 s of lines at the highest rate measured (49k
/// announces/s of about 250 bytes each, docs/benchmarks.md): below that rate the cap never
/// adds an fsync.
const TAIL_CAP: usize = 8 * 1024 * 1024;
/// SHA-256 in lowercase hex, as `prev` carries it.
type HexHash = [u8; 64];
/// The chain's first `prev`.
const GENESIS: HexHash = [b'0'; 64];

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("error opening audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("error starting the audit writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

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

/// Allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Refuse,
}

impl Decision {
    fn as_str(self) -> &'static str {
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
    pub endpoint: &'static str,
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

/// What the writer thread waits for, so that a request wakes it only when it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
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
struct Queue {
    /// Entries accepted and not yet taken by the writer, in `seq` order; at most
    /// [`Shared::capacity`].
    pending: Vec<Arc<AuditEntry>>,
    /// The last [`RECENT`] entries, in `seq` order (shared with `pending`).
    recent: VecDeque<Arc<AuditEntry>>,
    /// The last `seq` given out.
    seq: u64,
    writer: WriterState,
    /// Set by [`AuditLog::close`]: the writer writes what is pending and ends.
    closed: bool,
    /// Set by [`AuditLog::reopen`]: the writer opens the file's path again.
    reopen: bool,
    /// Places taken by [`AuditSlot`]s not yet used; they count against the capacity.
    reserved: usize,
    /// Entries of a batch the writer failed to write and holds to try again; they count
    /// against the capacity while the writer fails.
    held: usize,
    /// The writer's last attempt failed.
    failing: bool,
    /// Entries dropped since the failure began ([`OnFailure::Continue`], queue full).
    dropped: u64,
    /// A pending entry's request waits for it to be written: the writer must not linger.
    awaited: bool,
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

struct Shared {
    queue: Mutex<Queue>,
    /// Most entries pending; a request that finds the queue full waits for room.
    capacity: usize,
    /// Entries that end the writer's linger: `min(BATCH, capacity)`.
    batch: usize,
    /// Whether entries go to a file (else the log is the in-memory tail only).
    to_file: bool,
    /// Wakes the writer (see [`WriterState`]).
    wake_writer: Condvar,
    /// Wakes requests waiting for room; the writer notifies it after taking each batch.
    room: tokio::sync::Notify,
    on_failure: OnFailure,
    /// Whether requests are refused now (the writer fails, or has stopped, under
    /// [`OnFailure::Refuse`]); read without the lock by [`AuditLog::check`].
    refusing: AtomicBool,
    /// Requests refused since the failure began (counted without the lock: most are refused
    /// by [`AuditLog::check`]).
    refused: AtomicU64,
    /// The `seq` of the last entry in the file; entries are written in `seq` order.
    written: AtomicU64,
    /// Wakes requests waiting for their entry to be written ([`AuditLog::written`]); the
    /// writer notifies it after each batch it writes, and when it ends.
    written_notify: tokio::sync::Notify,
}

impl Shared {
    fn new(capacity: usize, to_file: bool, on_failure: OnFailure) -> Shared {
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
    fn push(
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
    fn push_now(&self, mut q: MutexGuard<'_, Queue>, entry: AuditEntry) {
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
    fn park_until<'a>(&self, q: MutexGuard<'a, Queue>, until: Instant) -> MutexGuard<'a, Queue> {
        let left = until.saturating_duration_since(Instant::now());
        self.wake_writer
            .wait_timeout(q, left)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
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
    shared: Arc<Shared>,
}

/// A place in the audit queue, taken by [`AuditLog::reserve`] before a change that must not
/// happen unrecorded (a content key handed out, a torrent stored, an admin change): the entry
/// that [`AuditSlot::record`] then adds cannot be refused. Dropped unused, it frees the place.
#[must_use = "an unused slot only holds a place in the audit queue"]
pub struct AuditSlot {
    shared: Option<Arc<Shared>>,
    /// Whether the place counts in [`Queue::reserved`] (not so when the log is memory-only,
    /// its writer stopped, or it failed under [`OnFailure::Continue`] with a full queue).
    counted: bool,
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
fn withdrawal_reason(seq: u64) -> String {
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

/// The writer thread; [`AuditWriter::finish`] waits for it to flush and fsync.
pub struct AuditWriter(Option<std::thread::JoinHandle<()>>);

impl AuditWriter {
    /// Whether the writer thread ended (it only should after [`AuditLog::close`]).
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Waits for the thread to write what is queued, flush and fsync.
    pub fn finish(mut self) {
        if let Some(t) = self.0.take()
            && t.join().is_err()
        {
            tracing::error!("audit writer thread panicked");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Cuts a torn last line (no final newline: the tracker died or the disk filled while the
/// line was being written) off an existing log, so that the chain continues from the last
/// whole line instead of gluing the next entry onto the torn one. A torn line was never a
/// whole entry; the cut is logged with its size.
fn cut_torn_tail(path: &Path, file: &mut File) -> std::io::Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(());
    }
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None if start == 0 => 0,
        // No newline in the last 64 KiB: not a torn line of ours; leave it for verify to report.
        None => return Ok(()),
    };
    tracing::warn!(
        "audit log {} ended with a torn line of {} bytes (a crash while writing); cut it off",
        path.display(),
        len - keep
    );
    file.set_len(keep)?;
    file.sync_data()
}

/// The hash of the last line of an existing log, to continue its chain.
fn last_line_hash(file: &mut File) -> std::io::Result<HexHash> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let last = match trimmed.iter().rposition(|&b| b == b'\n') {
        Some(i) => &trimmed[i + 1..],
        None if start == 0 => trimmed,
        None => &[][..], // one line longer than 64 KiB cannot be ours
    };
    Ok(if last.is_empty() {
        GENESIS
    } else {
        hex_hash(last)
    })
}

/// SHA-256 of `bytes` in lowercase hex.
fn hex_hash(bytes: &[u8]) -> HexHash {
    let mut out = [0u8; 64];
    // Cannot fail: 32 bytes always fit 64 hex digits.
    hex::encode_to_slice(Sha256::digest(bytes), &mut out).expect("64 hex digits for 32 bytes");
    out
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
        let thread = std::thread::Builder::new()
            .name("tracker-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok((log, AuditWriter(Some(thread))))
    }

    /// Opens the file and continues its chain; the writer is returned to be run.
    fn open(
        path: &Path,
        queue: usize,
        on_failure: OnFailure,
    ) -> Result<(AuditLog, WriteLoop), AuditError> {
        let open = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = open_log(path).map_err(open)?;
        cut_torn_tail(path, &mut file).map_err(open)?;
        let prev = last_line_hash(&mut file).map_err(open)?;
        let len = file.seek(SeekFrom::End(0)).map_err(open)?;
        let shared = Arc::new(Shared::new(queue, true, on_failure));
        let writer = WriteLoop {
            shared: shared.clone(),
            file: LogFile::new(path.to_owned(), file, len),
            prev,
        };
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

    async fn written_within(
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

/// What the writer does next.
enum Next {
    /// Write the batch just taken.
    Write,
    /// Nothing came for a second after unsynced writes: fsync.
    Sync,
    /// Open the path again (rotation).
    Reopen,
    /// Closed and drained.
    Stop,
}

/// Which fsync: `fdatasync` for the periodic one, `fsync` (the metadata too) before a
/// rotation and at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Data,
    All,
}

/// How the writer fsyncs its file: [`fsync`] in production. It is a field only so that tests
/// can make fsync fail: a real fsync error needs a faulty device (dm-error, dm-flakey), which
/// a test machine does not have.
type SyncFn = Box<dyn Fn(&File, Flush) -> std::io::Result<()> + Send>;

fn fsync(file: &File, flush: Flush) -> std::io::Result<()> {
    match flush {
        Flush::Data => file.sync_data(),
        Flush::All => file.sync_all(),
    }
}

/// Why an attempt of the writer failed.
#[derive(Debug)]
enum Fault {
    /// Writing lines (or writing the unsynced tail again) failed.
    Write(std::io::Error),
    /// fsync failed, also after the unsynced tail was written again.
    Sync(std::io::Error),
}

/// The file the writer appends to, and the bytes it wrote since its last successful fsync
/// (the unsynced tail).
///
/// Why keep the tail: on Linux a failed fsync may mark the pages it could not write clean, so
/// the lines written since the last good fsync can be gone from the disk while the page cache
/// still shows them, and the next fsync succeeds without writing them ("fsyncgate"). Cutting
/// the file back to its last synced length and writing the tail again makes those pages dirty
/// again, so that the next fsync really writes them. The tail is the buffer batches are
/// encoded into, so keeping it costs no copy.
struct LogFile {
    path: PathBuf,
    file: File,
    /// Length of the file at its last successful fsync (or when it was opened).
    synced_len: u64,
    /// The whole lines written after `synced_len`, in file order: unless `dirty`, the file is
    /// its first `synced_len` bytes and then exactly these. At most `tail_cap` bytes, unless a
    /// single line is longer.
    tail: Vec<u8>,
    /// The file past `synced_len` may differ from `tail` (a failed write that could not be cut
    /// back, or a failed fsync that may have dropped it): [`LogFile::restore`] comes first.
    dirty: bool,
    /// When an fsync last succeeded.
    last_sync: Instant,
    /// The writer fails: a sync made good by writing the tail again is not logged, since the
    /// writer logs the failure's start and its end.
    failing: bool,
    sync: SyncFn,
    /// Most bytes in `tail`: [`TAIL_CAP`], smaller in tests.
    tail_cap: usize,
}

impl LogFile {
    fn new(path: PathBuf, file: File, len: u64) -> LogFile {
        LogFile {
            path,
            file,
            synced_len: len,
            tail: Vec::with_capacity(64 * 1024),
            dirty: false,
            last_sync: Instant::now(),
            failing: false,
            sync: Box::new(fsync),
            tail_cap: TAIL_CAP,
        }
    }

    /// Lines written since the last successful fsync.
    fn tail_lines(&self) -> usize {
        self.tail.iter().filter(|&&b| b == b'\n').count()
    }

    /// When `dirty`: cuts the file back to its last synced length and writes the tail again.
    fn restore(&mut self) -> std::io::Result<()> {
        if self.dirty {
            self.file.set_len(self.synced_len)?;
            (&self.file).write_all(&self.tail)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Fsyncs the file. When that fails, writes the tail again ([`LogFile::restore`]) and
    /// fsyncs once more; logs both (unless the writer is failing already).
    ///
    /// # Errors
    /// The second attempt failed too: the file stays `dirty` and the tail is kept, so that the
    /// next attempt writes it again.
    fn sync(&mut self, flush: Flush) -> Result<(), Fault> {
        let mut first_failed = false;
        if !self.dirty {
            match (self.sync)(&self.file, flush) {
                Ok(()) => {
                    self.synced();
                    return Ok(());
                }
                Err(e) => {
                    self.dirty = true;
                    first_failed = true;
                    if !self.failing {
                        tracing::error!(
                            "error syncing audit log {}: {e}; writing its last {} lines again",
                            self.path.display(),
                            self.tail_lines()
                        );
                    }
                }
            }
        }
        self.restore().map_err(Fault::Write)?;
        if let Err(e) = (self.sync)(&self.file, flush) {
            self.dirty = true;
            return Err(Fault::Sync(e));
        }
        if first_failed && !self.failing {
            tracing::warn!(
                "audit log {}: its last {} lines, written again after the failed sync, are \
                 now on disk",
                self.path.display(),
                self.tail_lines()
            );
        }
        self.synced();
        Ok(())
    }

    /// The file is on disk up to its end: the tail starts anew.
    fn synced(&mut self) {
        self.synced_len += self.tail.len() as u64;
        self.tail.clear();
        self.last_sync = Instant::now();
    }

    /// Writes entries from the start of `batch` as whole lines chained from `prev`, and takes
    /// them out of `batch` once written; updates `prev` and [`Shared::written`]. Each piece is
    /// one `write_all`, all or nothing (a failed write is cut back). When the tail would pass
    /// its cap, the file is fsynced first.
    ///
    /// # Errors
    /// A write or an early fsync failed: `batch` holds the entries not written.
    fn write_batch(
        &mut self,
        batch: &mut Vec<Arc<AuditEntry>>,
        prev: &mut HexHash,
        shared: &Shared,
    ) -> Result<(), Fault> {
        self.restore().map_err(Fault::Write)?;
        while !batch.is_empty() {
            let start = self.tail.len();
            let (lines, last) = encode_lines(&mut self.tail, batch, *prev, self.tail_cap);
            if lines == 0 {
                // The tail is full: make it durable before it grows.
                self.sync(Flush::Data)?;
                continue;
            }
            // One write(2) in the common case; on ENOSPC part of it may have landed (O_APPEND).
            if let Err(e) = (&self.file).write_all(&self.tail[start..]) {
                self.tail.truncate(start);
                self.dirty = self.file.set_len(self.synced_len + start as u64).is_err();
                return Err(Fault::Write(e));
            }
            *prev = last;
            shared
                .written
                .store(batch[lines - 1].seq, Ordering::Release);
            shared.written_notify.notify_waiters();
            batch.drain(..lines);
        }
        Ok(())
    }

    /// Makes the tail durable (`fsync`, the metadata too) and opens the path again (rotation).
    /// When the new file cannot be opened, writing goes on to the old one: nothing is lost.
    ///
    /// # Errors
    /// The old file's tail cannot be made durable: the writer stays on that file, and fails
    /// until it can.
    fn reopen(&mut self) -> Result<(), Fault> {
        self.sync(Flush::All)?;
        let reopened = open_log(&self.path).and_then(|f| Ok((f.metadata()?.len(), f)));
        match reopened {
            Ok((len, file)) => {
                self.file = file;
                self.synced_len = len;
                tracing::info!("audit log {} reopened", self.path.display());
            }
            Err(e) => tracing::error!(
                "error reopening audit log {}: {e}; still writing to the old file",
                self.path.display()
            ),
        }
        Ok(())
    }

    /// One attempt of the writer: the rotation asked for (`reopen_due`, cleared once done),
    /// then `batch`, then an fsync when `sync_due` or a second has passed since the last one.
    fn attempt(
        &mut self,
        batch: &mut Vec<Arc<AuditEntry>>,
        prev: &mut HexHash,
        shared: &Shared,
        sync_due: bool,
        reopen_due: &mut bool,
    ) -> Result<(), Fault> {
        if *reopen_due {
            self.reopen()?;
            *reopen_due = false;
        }
        self.write_batch(batch, prev, shared)?;
        if sync_due || (!self.tail.is_empty() && self.last_sync.elapsed() >= SYNC_INTERVAL) {
            self.sync(Flush::Data)?;
        }
        Ok(())
    }
}

/// Opens the log at `path` for appending, creating it if needed, and fsyncs its directory, so
/// that a file just created (at the first start, or after a rotation) keeps its name through
/// a crash of the machine along with the lines fsynced into it.
fn open_log(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    crate::fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(file)
}

/// Encodes entries from the start of `batch` onto `out` as lines chained from `prev`, as many
/// as keep `out` within `cap` bytes (at least one when `out` is empty: a longer line goes
/// alone). Returns how many, and the hash of the last one.
fn encode_lines(
    out: &mut Vec<u8>,
    batch: &[Arc<AuditEntry>],
    mut prev: HexHash,
    cap: usize,
) -> (usize, HexHash) {
    for (i, entry) in batch.iter().enumerate() {
        let start = out.len();
        encode_line(out, entry, &prev);
        if start > 0 && out.len() + 1 > cap {
            out.truncate(start);
            return (i, prev);
        }
        prev = hex_hash(&out[start..]);
        out.push(b'\n');
    }
    (batch.len(), prev)
}

/// The writer thread's state: the file and the chain's last hash.
struct WriteLoop {
    shared: Arc<Shared>,
    file: LogFile,
    /// Hash of the last line in the file.
    prev: HexHash,
}

/// Marks the writer gone when its thread ends, by return or by panic, so that requests
/// waiting for room stop waiting (and report their entry unwritten, or are refused).
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.lock().writer = WriterState::Gone;
        if self.0.on_failure == OnFailure::Refuse {
            self.0.refusing.store(true, Ordering::Release);
        }
        self.0.room.notify_waiters();
        self.0.written_notify.notify_waiters();
    }
}

/// A failure of the writer that has not ended yet.
struct Failure {
    /// Pause before the next attempt.
    backoff: Duration,
}

impl WriteLoop {
    fn run(self) {
        let WriteLoop {
            shared,
            mut file,
            mut prev,
        } = self;
        let _gone = GoneOnDrop(shared.clone());
        let mut batch = Vec::with_capacity(shared.batch);
        let mut failure: Option<Failure> = None;
        // Set once the log is closed while the writer fails: the next failure is the last.
        let mut last_attempt = false;
        // A rotation asked for and not done yet: it waits for the old file's tail to be on disk.
        let mut reopen_due = false;
        loop {
            // A failing writer recovers only once all it wrote is on disk.
            let mut sync_due = failure.is_some();
            if failure.is_none() && batch.is_empty() {
                let due = (!file.tail.is_empty()).then(|| file.last_sync + SYNC_INTERVAL);
                match next_batch(&shared, &mut batch, due) {
                    Next::Stop => break,
                    Next::Sync => sync_due = true,
                    Next::Reopen => reopen_due = true,
                    Next::Write => shared.room.notify_waiters(),
                }
            }
            let waited = batch.len();
            match file.attempt(&mut batch, &mut prev, &shared, sync_due, &mut reopen_due) {
                Ok(()) => {
                    if failure.take().is_some() {
                        file.failing = false;
                        recovered(&shared, waited);
                    }
                }
                Err(fault) => {
                    let backoff = match &failure {
                        None => {
                            file.failing = true;
                            let what = match &fault {
                                Fault::Write(e) => {
                                    format!("error writing audit log {}: {e}", file.path.display())
                                }
                                Fault::Sync(e) => format!(
                                    "error syncing audit log {}, also after writing its last {} \
                                     lines again: {e}",
                                    file.path.display(),
                                    file.tail_lines()
                                ),
                            };
                            tracing::error!(
                                "{what}; {} entries wait, retrying every {RETRY_FIRST:?} to \
                                 {RETRY_MAX:?}{}",
                                batch.len(),
                                match shared.on_failure {
                                    OnFailure::Refuse => "; refusing requests meanwhile",
                                    OnFailure::Continue => "; still answering requests",
                                }
                            );
                            RETRY_FIRST
                        }
                        Some(f) => f.backoff,
                    };
                    failure = Some(Failure {
                        backoff: (backoff * 2).min(RETRY_MAX),
                    });
                    match wait_to_retry(&shared, batch.len(), backoff) {
                        Retry::Now => {}
                        Retry::Reopen => reopen_due = true,
                        // Shutting down: one last attempt, without waiting.
                        Retry::Closed if !last_attempt => last_attempt = true,
                        Retry::Closed => {
                            let lost = batch.len() + shared.lock().pending.len();
                            tracing::error!(
                                "audit log {} still cannot be written at shutdown: {lost} \
                                 entries lost",
                                file.path.display()
                            );
                            break;
                        }
                    }
                }
            }
        }
        // The final fsync, tried once more after writing the tail again if it fails; also after
        // a failure, since the lines written before it may still be made durable.
        if let Err(Fault::Write(e) | Fault::Sync(e)) = file.sync(Flush::All) {
            tracing::error!(
                "error syncing audit log {} at shutdown, also after writing its last lines \
                 again: {e}; the last {} lines written may be lost",
                file.path.display(),
                file.tail_lines()
            );
        }
    }
}

/// What the failing writer does after its pause.
enum Retry {
    /// Try the batch again.
    Now,
    /// The operator asked for a reopen (rotation, perhaps to make room): reopen, then try.
    Reopen,
    /// The log is closed (shutdown): one last attempt at most.
    Closed,
}

/// Marks the writer failing (holding `held` entries) and waits `backoff`, or less when the
/// log is closed or reopened.
fn wait_to_retry(shared: &Shared, held: usize, backoff: Duration) -> Retry {
    let mut q = shared.lock();
    if !q.failing {
        q.failing = true;
        q.dropped = 0;
        shared.refused.store(0, Ordering::Relaxed);
        if shared.on_failure == OnFailure::Refuse {
            shared.refusing.store(true, Ordering::Release);
        }
        // Requests waiting for room must not wait for a disk that is full: under "refuse"
        // they are refused now, under "continue" their entries are dropped.
        drop(q);
        shared.room.notify_waiters();
        q = shared.lock();
    }
    q.held = held;
    let deadline = Instant::now() + backoff;
    loop {
        if q.closed {
            q.writer = WriterState::Busy;
            return Retry::Closed;
        }
        if q.reopen {
            q.reopen = false;
            q.writer = WriterState::Busy;
            return Retry::Reopen;
        }
        let now = Instant::now();
        if now >= deadline {
            q.writer = WriterState::Busy;
            return Retry::Now;
        }
        q.writer = WriterState::Retrying;
        q = shared.park_until(q, deadline);
    }
}

/// The failing writer has written its held batch and fsynced what it wrote (its unsynced tail
/// written again where a sync had failed): requests are served again; logs how many
/// entries waited and how many were refused or dropped meanwhile.
fn recovered(shared: &Shared, held: usize) {
    let (waited, dropped, refused) = {
        let mut q = shared.lock();
        q.failing = false;
        q.held = 0;
        shared.refusing.store(false, Ordering::Release);
        (
            held + q.pending.len(),
            std::mem::take(&mut q.dropped),
            shared.refused.swap(0, Ordering::Relaxed),
        )
    };
    // Room again for requests that waited (Continue) or for reservations.
    shared.room.notify_waiters();
    tracing::warn!(
        "audit log writable again: {waited} entries that waited are written and the file is \
         synced; {refused} requests were refused and {dropped} entries dropped meanwhile"
    );
}

/// Waits for entries and moves them into `batch` (empty on entry): parks until the first one
/// comes (or until `sync_due`), then lingers up to [`LINGER`] unless the batch fills or the log
/// closes.
fn next_batch(
    shared: &Shared,
    batch: &mut Vec<Arc<AuditEntry>>,
    sync_due: Option<Instant>,
) -> Next {
    let mut q = shared.lock();
    // A reopen asked for goes first, also when entries came in while the writer woke up: they
    // were recorded after the request and belong in the new file.
    loop {
        if q.reopen {
            q.reopen = false;
            q.writer = WriterState::Busy;
            return Next::Reopen;
        }
        if !q.pending.is_empty() {
            break;
        }
        if q.closed {
            q.writer = WriterState::Gone;
            return Next::Stop;
        }
        q.writer = WriterState::Idle;
        match sync_due {
            None => {
                q = shared
                    .wake_writer
                    .wait(q)
                    .unwrap_or_else(|p| p.into_inner())
            }
            Some(due) => {
                let now = Instant::now();
                if now >= due {
                    q.writer = WriterState::Busy;
                    return Next::Sync;
                }
                q = shared.park_until(q, due);
            }
        }
    }
    let deadline = Instant::now() + LINGER;
    while q.pending.len() < shared.batch && !q.closed && !q.reopen && !q.awaited {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        q.writer = WriterState::Lingering;
        q = shared.park_until(q, deadline);
    }
    q.writer = WriterState::Busy;
    q.awaited = false;
    std::mem::swap(&mut q.pending, batch);
    Next::Write
}

/// Appends one log line without its newline: the entry's fields in declaration order, then
/// `prev`, as `serde_json` encodes them (compact, strings escaped the same way).
fn encode_line(out: &mut Vec<u8>, e: &AuditEntry, prev: &HexHash) {
    out.extend_from_slice(b"{\"seq\":");
    write_u64(out, e.seq);
    out.extend_from_slice(b",\"time_ms\":");
    write_u64(out, e.time_ms);
    out.extend_from_slice(b",\"source\":\"");
    write_ip(out, e.source);
    out.extend_from_slice(b"\",\"user\":");
    match &e.user {
        Some(u) => write_json_str(out, u),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"endpoint\":");
    write_json_str(out, e.endpoint);
    out.extend_from_slice(b",\"info_hash\":");
    match &e.info_hash {
        Some(h) => {
            let mut hex = [0u8; 40];
            // Cannot fail: 20 bytes always fit 40 hex digits.
            hex::encode_to_slice(h.0, &mut hex).expect("40 hex digits for 20 bytes");
            out.push(b'"');
            out.extend_from_slice(&hex);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"decision\":\"");
    out.extend_from_slice(e.decision.as_str().as_bytes());
    out.extend_from_slice(b"\",\"reason\":");
    write_json_str(out, &e.reason);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev);
    out.extend_from_slice(b"\"}");
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(out, u64::from(octet));
            }
        }
        // Display of an address has no character JSON must escape.
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let mut s = String::with_capacity(39);
            // Cannot fail: writing to a String only fails if Display does.
            write!(s, "{v6}").expect("formatting an IPv6 address");
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A JSON string as `serde_json` writes it: `"` and `\` escaped, the control characters
/// below 0x20 as `\b \t \n \f \r` or `\u00xx`, everything else (0x7f, non-ASCII) as is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Checks the hash chain of an audit log held in memory; see [`verify_chain_reader`].
///
/// # Errors
/// `Err(line)`: the 1-based number of the first line that does not follow from the one before.
pub fn verify_chain(text: &str) -> Result<usize, usize> {
    // Reading from a byte slice cannot fail.
    verify_chain_reader(text.as_bytes()).unwrap_or(Err(0))
}

/// Longest line [`verify_chain_reader`] accepts; ours are a few hundred bytes.
const MAX_LINE: u64 = 64 * 1024;

/// Checks the hash chain of an audit log read line by line; see [`ChainCheck::next_file`].
///
/// # Errors
/// Reading failed.
pub fn verify_chain_reader(input: impl BufRead) -> std::io::Result<Result<usize, usize>> {
    ChainCheck::default().next_file(input)
}

/// The hash chain checked across the files of a rotated log, oldest first: each file's first
/// line must follow from the last line of the one before (the first file's, from the start).
pub struct ChainCheck {
    prev: HexHash,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck { prev: GENESIS }
    }
}

impl ChainCheck {
    /// Checks the next file, read line by line (a log grows to gigabytes: it is never read
    /// whole); returns its number of lines, or the 1-based number of its first line that does
    /// not follow from the one before (a line longer than 64 KiB counts as broken).
    ///
    /// # Errors
    /// Reading failed.
    pub fn next_file(&mut self, mut input: impl BufRead) -> std::io::Result<Result<usize, usize>> {
        #[derive(serde::Deserialize)]
        struct Prev<'a> {
            #[serde(borrow)]
            prev: Cow<'a, str>,
        }
        let mut line = Vec::with_capacity(512);
        let mut n = 0;
        loop {
            line.clear();
            let read = (&mut input)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(Ok(n));
            }
            n += 1;
            if line.len() as u64 > MAX_LINE {
                return Ok(Err(n));
            }
            // As `str::lines`: without the "\n" or "\r\n" ending.
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let Ok(parsed) = serde_json::from_slice::<Prev<'_>>(text) else {
                return Ok(Err(n));
            };
            if parsed.prev.as_bytes() != self.prev {
                return Ok(Err(n));
            }
            self.prev = hex_hash(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Waker};

    fn entry(reason: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time_ms: 1,
            source: "127.0.0.1".parse().unwrap(),
            user: Some("u1".into()),
            endpoint: "announce",
            info_hash: Some(InfoHash([0xab; 20])),
            decision: Decision::Refuse,
            reason: reason.to_owned().into(),
        }
    }

    async fn finish(log: AuditLog, writer: AuditWriter) {
        log.close();
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
    }

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

    #[tokio::test]
    async fn writes_chained_lines_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        for round in 0..2 {
            let (log, writer) = AuditLog::start(Some(&path), 4, OnFailure::Refuse).unwrap();
            for i in 0..10 {
                log.record(entry(&format!("r{round}-{i}"))).await.unwrap();
            }
            assert_eq!(log.recent(8, 100).len(), 2);
            assert_eq!(log.recent(0, 3)[0].seq, 8);
            finish(log, writer).await;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(20));
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first["info_hash"],
            "abababababababababababababababababababab"
        );
        assert_eq!(first["decision"], "refuse");
        assert_eq!(first["user"], "u1");
        // an edited line breaks the chain at the line after it
        let edited = text.replacen("r0-3", "r0-X", 1);
        assert_eq!(verify_chain(&edited), Err(5));
        // a removed line too
        let removed: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| l)
            .collect();
        assert_eq!(verify_chain(&removed.join("\n")), Err(3));
        // two lines swapped
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(6, 7);
        assert_eq!(verify_chain(&lines.join("\n")), Err(7));
        // the first line removed
        assert_eq!(
            verify_chain(&text.lines().skip(1).collect::<Vec<_>>().join("\n")),
            Err(1)
        );
        // CRLF endings (a log copied through another system) verify as before
        assert_eq!(verify_chain(&text.replace('\n', "\r\n")), Ok(20));
        // a huge line is reported, not read whole: it stops at 64 KiB
        let mut huge = text.lines().take(3).collect::<Vec<_>>().join("\n");
        huge.push('\n');
        huge.push_str(&"x".repeat(10 * 1024 * 1024));
        assert_eq!(verify_chain(&huge), Err(4));
        // a read error is an error, not a verdict
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        assert!(verify_chain_reader(std::io::BufReader::new(Failing)).is_err());
    }

    #[tokio::test]
    async fn a_reopened_log_continues_its_chain_in_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let rotated = dir.path().join("audit.log.1");
        let (log, writer) = AuditLog::start(Some(&path), 4, OnFailure::Refuse).unwrap();
        for i in 0..5 {
            log.record(entry(&format!("old-{i}"))).await.unwrap();
        }
        // Reopening the same path (nothing renamed) carries on in the same file.
        log.reopen();
        log.record(entry("same-file")).await.unwrap();
        // Wait for the writer to have written all six before renaming.
        for _ in 0..500 {
            if std::fs::read_to_string(&path).unwrap().lines().count() == 6 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        for i in 0..4 {
            log.record(entry(&format!("new-{i}"))).await.unwrap();
        }
        finish(log, writer).await;
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&old), Ok(6));
        assert!(
            new.contains("new-0") && !old.contains("new-"),
            "{old}\n{new}"
        );
        // Alone, the new file does not start the chain; after the old one it continues it.
        assert_eq!(verify_chain(&new), Err(1));
        let mut chain = ChainCheck::default();
        assert_eq!(chain.next_file(old.as_bytes()).unwrap(), Ok(6));
        assert_eq!(chain.next_file(new.as_bytes()).unwrap(), Ok(4));
        let mut swapped = ChainCheck::default();
        assert_eq!(swapped.next_file(new.as_bytes()).unwrap(), Err(1));
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        for torn in [None, Some(&b"{\"seq\":3,\"time_ms\":1,\"sou"[..])] {
            let (log, writer) = AuditLog::start(Some(&path), 4, OnFailure::Refuse).unwrap();
            for i in 0..3 {
                log.record(entry(&format!("r{i}"))).await.unwrap();
            }
            finish(log, writer).await;
            if let Some(torn) = torn {
                // A crash in the middle of writing a line.
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(torn).unwrap();
            }
        }
        let (log, writer) = AuditLog::start(Some(&path), 4, OnFailure::Refuse).unwrap();
        log.record(entry("after the crash")).await.unwrap();
        finish(log, writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(7), "{text}");
    }

    /// The line format of the versions that encoded with serde_json, kept as the reference.
    #[derive(Serialize)]
    struct SerdeLine<'a> {
        #[serde(flatten)]
        entry: &'a AuditEntry,
        prev: &'a str,
    }

    #[test]
    fn hand_encoded_lines_are_what_serde_json_wrote() {
        let mut all_controls = String::new();
        for c in 0u8..0x20 {
            all_controls.push(char::from(c));
        }
        let odd = [
            "",
            "plain",
            "quote \" and backslash \\ and slash /",
            "wrong password for user \"u3\"",
            "line\nbreak\r\ttab",
            &all_controls,
            "del \u{7f} and c1 \u{85}",
            "unicode é ü 中文 🦀 and separators \u{2028}\u{2029}",
            "\\u0000 spelled out",
            "ends with backslash \\",
        ];
        let sources: [IpAddr; 3] = [
            "10.0.0.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
        ];
        let prev = hex_hash(b"some earlier line");
        for (i, text) in odd.iter().enumerate() {
            for (j, source) in sources.iter().enumerate() {
                let e = AuditEntry {
                    seq: u64::MAX - i as u64,
                    time_ms: 1_790_000_000_000 + j as u64,
                    source: *source,
                    user: (j != 1).then(|| (*text).to_owned()),
                    endpoint: "announce?getCipher",
                    info_hash: (j != 2).then_some(InfoHash([i as u8; 20])),
                    decision: if j == 0 {
                        Decision::Allow
                    } else {
                        Decision::Refuse
                    },
                    reason: Cow::Owned((*text).to_owned()),
                };
                let mut ours = Vec::new();
                encode_line(&mut ours, &e, &prev);
                let reference = serde_json::to_vec(&SerdeLine {
                    entry: &e,
                    prev: std::str::from_utf8(&prev).unwrap(),
                })
                .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference),
                    "entry {i}/{j}"
                );
                // and it reads back to the same strings
                let back: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                assert_eq!(back["reason"], *text);
                assert_eq!(back["seq"], e.seq);
            }
        }
        assert_eq!(write_u64_str(0), "0");
        assert_eq!(write_u64_str(10), "10");
        assert_eq!(write_u64_str(u64::MAX), u64::MAX.to_string());
    }

    fn write_u64_str(n: u64) -> String {
        let mut v = Vec::new();
        write_u64(&mut v, n);
        String::from_utf8(v).unwrap()
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

    /// Waits (up to 10 s) until `f` holds.
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 10 s");
    }

    /// A writer on /dev/full, where every write fails (ENOSPC) for ever: with "refuse" the log
    /// refuses entries and reservations once the writer fails, keeps the ones it accepted, and
    /// still closes (shutdown does not hang on a dead disk); with "continue" it never refuses
    /// and counts what does not fit in the queue as dropped.
    #[tokio::test]
    async fn a_log_that_cannot_be_written_refuses_or_drops_and_still_closes() {
        let full = Path::new("/dev/full");
        let Ok(file) = OpenOptions::new().append(true).open(full) else {
            eprintln!("skipping: no /dev/full here");
            return;
        };
        for on_failure in [OnFailure::Refuse, OnFailure::Continue] {
            let shared = Arc::new(Shared::new(3, true, on_failure));
            let log = AuditLog {
                shared: shared.clone(),
            };
            let writer = WriteLoop {
                shared,
                file: LogFile::new(full.to_owned(), file.try_clone().unwrap(), 0),
                prev: GENESIS,
            };
            let writer = AuditWriter(Some(std::thread::spawn(move || writer.run())));
            let reserved = log.reserve().await.unwrap();
            log.record(entry("accepted before the failure"))
                .await
                .unwrap();
            eventually("the writer failing", || log.shared.lock().failing).await;
            let reserved = (on_failure == OnFailure::Refuse).then_some(reserved);
            assert_eq!(log.is_refusing(), on_failure == OnFailure::Refuse);
            match on_failure {
                OnFailure::Refuse => {
                    assert_eq!(log.record(entry("refused")).await, Err(AuditUnavailable));
                    assert!(log.reserve().await.is_err());
                    assert_eq!(log.check(), Err(AuditUnavailable));
                    // A place taken before the failure is honoured: its entry is accepted,
                    // but its request is not answered while the line cannot be written.
                    let receipt = reserved
                        .unwrap()
                        .record(entry("reserved before the failure"));
                    assert_eq!(
                        log.written_within(&receipt, Duration::from_millis(300))
                            .await,
                        Err(AuditUnavailable)
                    );
                    assert_eq!(log.shared.refused.load(Ordering::Relaxed), 3);
                    // Its follow-up goes into the second place the reservation kept.
                    assert_eq!(log.shared.lock().reserved, 1);
                    let withheld = receipt.seq().unwrap();
                    receipt.withdraw(99);
                    let q = log.shared.lock();
                    assert_eq!((q.held, q.pending.len(), q.reserved), (1, 2, 0));
                    let pending: Vec<_> = q.pending.iter().map(|e| &*e.reason).collect();
                    let withdrawal = withdrawal_reason(withheld);
                    assert_eq!(pending, ["reserved before the failure", &*withdrawal]);
                    assert_eq!(q.pending[1].decision, Decision::Refuse);
                    assert_eq!(q.pending[1].time_ms, 99);
                }
                OnFailure::Continue => {
                    // One held by the writer, two fit in the queue of 3, the rest are dropped:
                    // recording never waits on a dead disk.
                    for i in 0..5 {
                        log.record(entry(&format!("kept or dropped {i}")))
                            .await
                            .unwrap();
                    }
                    let slot = log.reserve().await.unwrap();
                    // "continue" answers whether or not the line gets written.
                    let receipt = slot.record(entry("reserved while full"));
                    assert_eq!(receipt.seq(), None);
                    let q = log.shared.lock();
                    assert_eq!((q.held, q.pending.len(), q.dropped), (1, 2, 4));
                    // every entry is still in the admin tail, with its own seq
                    assert_eq!(q.recent.len(), 7);
                }
            }
            tokio::time::timeout(Duration::from_secs(10), finish(log, writer))
                .await
                .expect("closing a log whose disk is full hung");
        }
    }

    /// Runs the calling test again in a fresh process of this test binary, inside a private
    /// user and mount namespace (`unshare -rm`, as tests/faults.rs does) with a 64 KiB tmpfs
    /// mounted on a temporary directory, and returns `None`; in that process, returns the
    /// directory. Prints "skipping" and returns `None` where no such namespace can be made.
    fn on_small_tmpfs(test: &str) -> Option<PathBuf> {
        const VAR: &str = "IVCSD_AUDIT_TEST_TMPFS";
        const INNER: &str = "inner test process started";
        if let Some(dir) = std::env::var_os(VAR) {
            println!("{INNER}");
            return Some(dir.into());
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg("mount -t tmpfs -o size=64k tmpfs \"$1\" || exit 99; shift; exec \"$@\"")
            .arg("sh")
            .arg(dir.path())
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(VAR, dir.path())
            .output();
        match out {
            Ok(out) if String::from_utf8_lossy(&out.stdout).contains(INNER) => {
                assert!(
                    out.status.success(),
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(out) if String::from_utf8_lossy(&out.stdout).contains("running 0 tests") => {
                panic!("no test {test} in this binary: its name in on_small_tmpfs is stale")
            }
            Ok(out) => eprintln!(
                "skipping: no private tmpfs mount here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("skipping: cannot run unshare: {e}"),
        }
        None
    }

    /// A real full disk that frees up again: the batch that hit ENOSPC half way is cut back
    /// (no partial line), and once space is freed the waiting entries land in order and the
    /// chain verifies across the gap. With "refuse", `record` and `reserve` refuse while the
    /// writer fails; with "continue" they never do, and what does not fit in the queue is
    /// dropped and counted (a gap in `seq`, none in the chain).
    #[test]
    fn a_full_disk_cuts_the_torn_batch_and_recovers_with_the_chain_intact() {
        let Some(dir) = on_small_tmpfs(
            "tracker::audit::tests::\
             a_full_disk_cuts_the_torn_batch_and_recovers_with_the_chain_intact",
        ) else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            full_disk_round(&dir, OnFailure::Refuse).await;
            full_disk_round(&dir, OnFailure::Continue).await;
        });
    }

    /// One round of [`a_full_disk_cuts_the_torn_batch_and_recovers_with_the_chain_intact`] in
    /// `dir` (a 64 KiB tmpfs), which it leaves empty.
    async fn full_disk_round(dir: &Path, on_failure: OnFailure) {
        let path = dir.join(AUDIT_FILE);
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        let capacity = match on_failure {
            OnFailure::Refuse => 64,
            OnFailure::Continue => 4,
        };
        let (log, writer) = AuditLog::start(Some(&path), capacity, on_failure).unwrap();
        let mut recorded = Vec::new();
        for i in 0..5 {
            recorded.push(format!("before {i}"));
            log.record(entry(&recorded[i])).await.unwrap();
        }
        eventually("the first lines written", || lines() == 5).await;
        // A change begun before the disk fills: its place is taken, its line comes later.
        let early = match on_failure {
            OnFailure::Refuse => Some(log.reserve().await.unwrap()),
            OnFailure::Continue => None,
        };
        // Fill the disk; the log's last page keeps some room, less than one long line.
        let filler = dir.join("filler");
        let mut fill = File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while fill.write_all(&block).is_ok() {}
        let _ = fill.write_all(&block[..1]);
        drop(fill);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_ne!(len % 4096, 0, "no room left in the log's last page");
        // A line longer than a page: its write stops part way with ENOSPC.
        let long = |i: usize| format!("long entry {i} {}", "x".repeat(5000));
        let mut failed = false;
        for i in 0..200 {
            match log.record(entry(&long(i))).await {
                Ok(()) => recorded.push(long(i)),
                Err(AuditUnavailable) => {
                    assert_eq!(on_failure, OnFailure::Refuse);
                    failed = true;
                    break;
                }
            }
            if on_failure == OnFailure::Continue && log.shared.lock().failing {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed, "the writer never failed on a full disk");
        let dropped = match on_failure {
            OnFailure::Refuse => {
                assert!(log.is_refusing());
                assert!(log.reserve().await.is_err());
                // Its line cannot be written now, so its request is answered 503, and the
                // follow-up saying so is queued behind it: the log must not show as given an
                // answer that was withheld.
                recorded.push("reserved before the disk filled".to_owned());
                let receipt = early.unwrap().record(entry(recorded.last().unwrap()));
                assert_eq!(
                    log.written_within(&receipt, Duration::from_millis(200))
                        .await,
                    Err(AuditUnavailable)
                );
                recorded.push(withdrawal_reason(receipt.seq().unwrap()));
                receipt.withdraw(0);
                0
            }
            OnFailure::Continue => {
                // Never refused, never waiting: past the queue's capacity entries are dropped.
                assert!(!log.is_refusing());
                for i in 0..10 {
                    recorded.push(format!("while failing {i}"));
                    log.record(entry(recorded.last().unwrap())).await.unwrap();
                }
                let dropped = log.shared.lock().dropped;
                assert!(dropped >= 6, "{dropped} dropped");
                dropped
            }
        };
        // The torn batch was cut back: whole lines only, and the chain holds. (Polled: a
        // retry that happens to run now writes part of a line for a moment before cutting it;
        // a torn tail that stays is never seen whole.)
        eventually("the torn batch cut back", || {
            let text = std::fs::read_to_string(&path).unwrap();
            text.len() as u64 == len && text.ends_with('\n')
        })
        .await;
        assert_eq!(
            verify_chain(&std::fs::read_to_string(&path).unwrap()),
            Ok(5)
        );

        // Space again: the writer's next attempt succeeds, requests are served again.
        std::fs::remove_file(&filler).unwrap();
        eventually("the writer recovering", || !log.shared.lock().failing).await;
        assert!(!log.is_refusing());
        for i in 0..3 {
            recorded.push(format!("after {i}"));
            log.record(entry(recorded.last().unwrap())).await.unwrap();
        }
        finish(log, writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let written = recorded.len() - dropped as usize;
        assert_eq!(verify_chain(&text), Ok(written), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reasons: Vec<&str> = lines
            .iter()
            .map(|v| v["reason"].as_str().unwrap())
            .collect();
        // In order: the reasons written are the ones recorded, less the dropped ones, and
        // `seq` says where entries were dropped.
        let mut kept = recorded
            .iter()
            .map(String::as_str)
            .filter(|r| reasons.contains(r));
        assert!(
            reasons.iter().all(|r| kept.next() == Some(*r)),
            "{reasons:?}"
        );
        let seqs: Vec<u64> = lines.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            seqs.last().copied(),
            Some(recorded.len() as u64),
            "dropped entries keep their seq"
        );
        assert!(written > 8, "no entry waited for the disk");
        if on_failure == OnFailure::Refuse {
            let at = |r: &str| reasons.iter().position(|x| *x == r);
            let withdrawal = reasons
                .iter()
                .position(|r| r.starts_with("answer withheld: entry "));
            let line = at("reserved before the disk filled");
            assert!(line.is_some() && withdrawal > line, "{reasons:?}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// An fsync that fails while `fails` is above zero, and then does what the kernel may do
    /// after a failed fsync: the bytes written since the file's last good fsync are gone from
    /// the disk (here: cut off the file, the worst a reader can see). Otherwise the real fsync.
    #[derive(Clone, Default)]
    struct FaultySync {
        fails: Arc<AtomicUsize>,
        /// Length of each file (by inode) at its last successful sync.
        synced: Arc<Mutex<std::collections::HashMap<u64, u64>>>,
        /// Most bytes found written since the last successful sync, at any sync.
        max_unsynced: Arc<AtomicU64>,
        /// Successful syncs.
        syncs: Arc<AtomicUsize>,
    }

    impl FaultySync {
        fn sync_fn(&self) -> SyncFn {
            use std::os::unix::fs::MetadataExt;
            let me = self.clone();
            Box::new(move |file, flush| {
                let meta = file.metadata()?;
                let mut synced = lock(&me.synced);
                let synced = synced.entry(meta.ino()).or_insert(0);
                me.max_unsynced
                    .fetch_max(meta.len().saturating_sub(*synced), Ordering::Relaxed);
                let failing = me
                    .fails
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    file.set_len(*synced)?;
                    return Err(std::io::Error::other("injected fsync failure"));
                }
                fsync(file, flush)?;
                *synced = meta.len();
                me.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        }

        fn fail(&self, times: usize) {
            self.fails.store(times, Ordering::Relaxed);
        }

        /// Whether the file at `path` is synced to its end and no failure is left to inject
        /// (the writer may still have entries to write).
        fn all_synced(&self, path: &Path) -> bool {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).unwrap();
            self.fails.load(Ordering::Relaxed) == 0
                && lock(&self.synced).get(&meta.ino()) == Some(&meta.len())
        }
    }

    /// Starts a log on `path` whose writer fsyncs through `faulty` and keeps at most
    /// `tail_cap` unsynced bytes.
    fn start_faulty(
        path: &Path,
        queue: usize,
        on_failure: OnFailure,
        faulty: &FaultySync,
        tail_cap: usize,
    ) -> (AuditLog, AuditWriter) {
        let (log, writer) = faulty_writer(path, queue, on_failure, faulty, tail_cap);
        (log, spawn(writer))
    }

    /// [`start_faulty`] without starting the writer.
    fn faulty_writer(
        path: &Path,
        queue: usize,
        on_failure: OnFailure,
        faulty: &FaultySync,
        tail_cap: usize,
    ) -> (AuditLog, WriteLoop) {
        let (log, mut writer) = AuditLog::open(path, queue, on_failure).unwrap();
        writer.file.sync = faulty.sync_fn();
        writer.file.tail_cap = tail_cap;
        (log, writer)
    }

    fn spawn(writer: WriteLoop) -> AuditWriter {
        AuditWriter(Some(std::thread::spawn(move || writer.run())))
    }

    /// The reasons of the lines in `text`, in file order.
    fn reasons(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["reason"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// About four lines of [`entry`].
    const SMALL_TAIL: usize = 1024;

    /// One failed fsync (that drops what it could not write, as Linux may), on an early sync
    /// forced by the tail's cap and on the sync a second after the last entry: the writer cuts
    /// the file back, writes its tail again and syncs, and goes on without ever failing; every
    /// line is in the file once, in order, and the chain verifies.
    #[tokio::test]
    async fn a_failed_fsync_is_made_good_by_writing_the_tail_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let faulty = FaultySync::default();
        let (log, writer) = start_faulty(&path, 64, OnFailure::Refuse, &faulty, SMALL_TAIL);
        let mut recorded = Vec::new();
        faulty.fail(1);
        for i in 0..30 {
            recorded.push(format!("early sync {i}"));
            log.record(entry(recorded.last().unwrap())).await.unwrap();
        }
        let all_synced = |lines: usize| {
            log.shared.written.load(Ordering::Acquire) == lines as u64 && faulty.all_synced(&path)
        };
        eventually("all synced after a failed early sync", || all_synced(30)).await;
        // The sync a second after the last entry (nothing unsynced before it) fails once too.
        faulty.fail(1);
        recorded.push("idle sync".to_owned());
        log.record(entry("idle sync")).await.unwrap();
        eventually("all synced after a failed idle sync", || all_synced(31)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(reasons(&text), recorded, "before shutdown");
        assert_eq!(log.shared.refused.load(Ordering::Relaxed), 0);
        assert!(!log.shared.lock().failing && !log.is_refusing());
        finish(log, writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(recorded.len()), "{text}");
        assert_eq!(reasons(&text), recorded);
    }

    /// fsync failing again and again, also after the tail is written again: with "refuse" the
    /// log refuses requests, with "continue" it answers them; either way it holds the tail and
    /// the entries not yet written, and once fsync works again it writes them: nothing lost,
    /// nothing twice, `seq` without a gap and the chain whole.
    #[tokio::test]
    async fn a_failing_fsync_refuses_or_continues_then_recovers_losing_nothing() {
        for on_failure in [OnFailure::Refuse, OnFailure::Continue] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(AUDIT_FILE);
            let faulty = FaultySync::default();
            let (log, writer) = start_faulty(&path, 64, on_failure, &faulty, SMALL_TAIL);
            faulty.fail(usize::MAX);
            let mut recorded = Vec::new();
            let mut refused = false;
            for i in 0..200 {
                let reason = format!("before {i}");
                match log.record(entry(&reason)).await {
                    Ok(()) => recorded.push(reason),
                    Err(AuditUnavailable) => {
                        refused = true;
                        break;
                    }
                }
                if log.shared.lock().failing {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert!(log.shared.lock().failing, "{on_failure:?}: never failed");
            match on_failure {
                OnFailure::Refuse => {
                    assert!(log.is_refusing());
                    assert_eq!(log.record(entry("refused")).await, Err(AuditUnavailable));
                    assert!(log.reserve().await.is_err());
                    assert_eq!(log.check(), Err(AuditUnavailable));
                }
                OnFailure::Continue => {
                    assert!(!refused && !log.is_refusing());
                    for i in 0..5 {
                        recorded.push(format!("while failing {i}"));
                        log.record(entry(recorded.last().unwrap())).await.unwrap();
                    }
                }
            }
            // The failed fsyncs took the unsynced lines from the disk: only the writer's
            // memory holds them now.
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                reasons(&text).len() < recorded.len(),
                "{on_failure:?}: nothing was lost to make good"
            );

            faulty.fail(0);
            eventually("the writer recovering", || !log.shared.lock().failing).await;
            assert!(!log.is_refusing());
            for i in 0..3 {
                recorded.push(format!("after {i}"));
                log.record(entry(recorded.last().unwrap())).await.unwrap();
            }
            assert_eq!(log.shared.lock().dropped, 0);
            finish(log, writer).await;
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                verify_chain(&text),
                Ok(recorded.len()),
                "{on_failure:?}: {text}"
            );
            assert_eq!(reasons(&text), recorded, "{on_failure:?}");
            for (i, line) in text.lines().enumerate() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["seq"], i as u64 + 1, "{on_failure:?}: {line}");
            }
        }
    }

    /// Under load the writer keeps no more than its cap unsynced: it fsyncs early instead of
    /// once a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_unsynced_tail_never_passes_its_cap() {
        const LINES: usize = 400;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let faulty = FaultySync::default();
        let (log, writer) = start_faulty(&path, 128, OnFailure::Refuse, &faulty, SMALL_TAIL);
        for i in 0..LINES {
            log.record(entry(&format!("under load {i}"))).await.unwrap();
        }
        finish(log, writer).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(LINES));
        let max = faulty.max_unsynced.load(Ordering::Relaxed);
        assert!(max <= SMALL_TAIL as u64, "{max} bytes unsynced");
        let syncs = faulty.syncs.load(Ordering::Relaxed);
        assert!(
            syncs as u64 >= text.len() as u64 / SMALL_TAIL as u64,
            "{syncs} syncs for {} bytes",
            text.len()
        );
    }

    /// A failed fsync before a rotation and at shutdown is made good the same way; one that
    /// fails again at shutdown loses only the lines since the last good sync, and the chain
    /// of what is left still verifies.
    #[tokio::test]
    async fn a_failed_fsync_at_rotation_or_shutdown_writes_the_tail_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let rotated = dir.path().join("audit.log.1");
        let faulty = FaultySync::default();
        let lines = |p: &Path| reasons(&std::fs::read_to_string(p).unwrap());
        let (log, writer) = start_faulty(&path, 64, OnFailure::Refuse, &faulty, TAIL_CAP);
        let mut old = Vec::new();
        for i in 0..5 {
            old.push(format!("old {i}"));
            log.record(entry(old.last().unwrap())).await.unwrap();
        }
        eventually("the old lines written", || lines(&path).len() == 5).await;
        faulty.fail(1);
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        let mut new = Vec::new();
        for i in 0..3 {
            new.push(format!("new {i}"));
            log.record(entry(new.last().unwrap())).await.unwrap();
        }
        eventually("the new lines written", || {
            path.exists() && lines(&path).len() == 3
        })
        .await;
        assert_eq!(faulty.fails.load(Ordering::Relaxed), 0);
        finish(log, writer).await;
        assert_eq!(lines(&rotated), old);
        assert_eq!(lines(&path), new);

        // At shutdown, failing once and then twice: the writer's one batch is written and the
        // log closed before it starts, so the final sync is the only one.
        for (fails, line) in [(1, "kept at shutdown"), (2, "lost at shutdown")] {
            let (log, writer) = faulty_writer(&path, 64, OnFailure::Refuse, &faulty, TAIL_CAP);
            log.record(entry(line)).await.unwrap();
            log.close();
            faulty.fail(fails);
            tokio::task::spawn_blocking(move || spawn(writer).finish())
                .await
                .unwrap();
            if fails == 1 {
                new.push(line.to_owned());
            }
            // Twice: the line since the last good sync is lost (the writer says so); what is
            // left is whole.
            assert_eq!(lines(&path), new);
        }
        let mut chain = ChainCheck::default();
        let old_text = std::fs::read_to_string(&rotated).unwrap();
        assert_eq!(chain.next_file(old_text.as_bytes()).unwrap(), Ok(5));
        let new_text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(chain.next_file(new_text.as_bytes()).unwrap(), Ok(4));
    }

    #[test]
    fn verify_reports_the_first_bad_line() {
        assert_eq!(verify_chain(""), Ok(0));
        assert_eq!(verify_chain("not json\n"), Err(1));
        assert_eq!(verify_chain("{\"seq\":1}\n"), Err(1), "no prev");
        let first = format!("{{\"seq\":1,\"prev\":\"{}\"}}", "0".repeat(64));
        assert_eq!(verify_chain(&first), Ok(1));
        assert_eq!(verify_chain(&format!("{first}\n{first}\n")), Err(2));
    }
}
