//! The audit log (SPEC 8): one JSON line per request with time, source address, user,
//! endpoint, info hash, decision and the true reason. Never a password, token or key: entries
//! are built from typed fields only, and no field ever holds a secret.
//!
//! Written off the request path. A request takes one lock: it numbers its entry, adds it to
//! the in-memory tail and to a bounded queue, and wakes the writer thread only if that thread
//! is parked (the first entry after a quiet spell) or its batch is full. A full queue makes
//! requests wait (back-pressure), never drops an entry. After its first entry the writer
//! lingers up to [`LINGER`] so that one wake-up, one encoding pass and one `write(2)` serve a
//! whole batch instead of one entry each. The file is flushed after every batch, fsynced at
//! most once a second while entries come in, once more a second after the last one, and at
//! shutdown. A tracker killed with SIGKILL loses at most the entries queued in the last
//! [`LINGER`] (those are in memory only); a crash of the machine, the last second's.
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
//! Lock order: only one lock ([`Shared::queue`]); the writer never holds it while encoding,
//! hashing or writing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
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
}

impl Shared {
    fn new(capacity: usize, to_file: bool) -> Shared {
        let capacity = capacity.max(1);
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
            }),
            capacity,
            batch: capacity.min(BATCH),
            to_file,
            wake_writer: Condvar::new(),
            room: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Wakes the writer if it waits for what `q` now holds; consumes the guard so that the
    /// wake-up happens after the lock is released.
    fn wake_if_waiting(&self, mut q: MutexGuard<'_, Queue>) {
        let wake = match q.writer {
            WriterState::Idle => true,
            WriterState::Lingering => q.closed || q.reopen || q.pending.len() >= self.batch,
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
    /// `path` is `None`. At most `queue` entries wait for the writer.
    ///
    /// # Errors
    /// The file cannot be opened, or the thread cannot start.
    pub fn start(path: Option<&Path>, queue: usize) -> Result<(AuditLog, AuditWriter), AuditError> {
        let Some(path) = path else {
            let shared = Arc::new(Shared::new(queue, false));
            return Ok((AuditLog { shared }, AuditWriter(None)));
        };
        let (log, writer) = Self::open(path, queue)?;
        let thread = std::thread::Builder::new()
            .name("tracker-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok((log, AuditWriter(Some(thread))))
    }

    /// Opens the file and continues its chain; the writer is returned to be run.
    fn open(path: &Path, queue: usize) -> Result<(AuditLog, WriteLoop), AuditError> {
        let open = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open)?;
        cut_torn_tail(path, &mut file).map_err(open)?;
        let prev = last_line_hash(&mut file).map_err(open)?;
        let shared = Arc::new(Shared::new(queue, true));
        let writer = WriteLoop {
            shared: shared.clone(),
            path: path.to_owned(),
            file,
            prev,
        };
        Ok((AuditLog { shared }, writer))
    }

    /// Records an entry (its `seq` is assigned here). Waits while the queue is full.
    pub async fn record(&self, entry: AuditEntry) {
        let shared = &*self.shared;
        loop {
            // Registered before looking, so that room made after the look still wakes us.
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = shared.lock();
                let writing = q.writer != WriterState::Gone;
                if !writing || q.pending.len() < shared.capacity {
                    q.seq += 1;
                    let entry = Arc::new(AuditEntry {
                        seq: q.seq,
                        ..entry
                    });
                    if q.recent.len() == RECENT {
                        q.recent.pop_front();
                    }
                    q.recent.push_back(entry.clone());
                    if writing {
                        q.pending.push(entry);
                        shared.wake_if_waiting(q);
                    } else if shared.to_file {
                        let seq = q.seq;
                        drop(q);
                        tracing::error!("audit writer has stopped; entry {seq} not written");
                    }
                    return;
                }
                // Full: a lingering writer must start now (only when capacity < BATCH).
                shared.wake_if_waiting(q);
            }
            room.await;
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

/// The writer thread's state: the file and the chain's last hash.
struct WriteLoop {
    shared: Arc<Shared>,
    path: PathBuf,
    file: File,
    /// Hash of the last line in the file.
    prev: HexHash,
}

/// Marks the writer gone when its thread ends, by return or by panic, so that requests
/// waiting for room stop waiting (and report their entry unwritten).
struct GoneOnDrop(Arc<Shared>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.lock().writer = WriterState::Gone;
        self.0.room.notify_waiters();
    }
}

impl WriteLoop {
    fn run(self) {
        let WriteLoop {
            shared,
            path,
            file,
            mut prev,
        } = self;
        let _gone = GoneOnDrop(shared.clone());
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        let mut batch = Vec::with_capacity(shared.batch);
        let mut line = Vec::with_capacity(512);
        loop {
            let sync_due = unsynced.then(|| last_sync + SYNC_INTERVAL);
            match next_batch(&shared, &mut batch, sync_due) {
                Next::Stop => break,
                Next::Sync => {
                    if let Err(e) = out.get_ref().sync_data() {
                        tracing::error!("error syncing audit log: {e}");
                    }
                    last_sync = Instant::now();
                    unsynced = false;
                    continue;
                }
                Next::Reopen => {
                    let reopened = out
                        .flush()
                        .and_then(|()| out.get_ref().sync_all())
                        .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
                    match reopened {
                        Ok(file) => {
                            out = BufWriter::with_capacity(64 * 1024, file);
                            tracing::info!("audit log {} reopened", path.display());
                        }
                        // Keep writing to the file we have: nothing is lost.
                        Err(e) => tracing::error!(
                            "error reopening audit log {}: {e}; still writing to the old file",
                            path.display()
                        ),
                    }
                    last_sync = Instant::now();
                    unsynced = false;
                    continue;
                }
                Next::Write => {}
            }
            shared.room.notify_waiters();
            for entry in batch.drain(..) {
                line.clear();
                encode_line(&mut line, &entry, &prev);
                prev = hex_hash(&line);
                line.push(b'\n');
                if let Err(e) = out.write_all(&line) {
                    tracing::error!("error writing audit log: {e}");
                }
            }
            if let Err(e) = out.flush() {
                tracing::error!("error flushing audit log: {e}");
            }
            unsynced = true;
            if last_sync.elapsed() >= SYNC_INTERVAL {
                if let Err(e) = out.get_ref().sync_data() {
                    tracing::error!("error syncing audit log: {e}");
                }
                last_sync = Instant::now();
                unsynced = false;
            }
        }
        if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_all()) {
            tracing::error!("error syncing audit log at shutdown: {e}");
        }
    }
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
                q = shared
                    .wake_writer
                    .wait_timeout(q, due - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
    let deadline = Instant::now() + LINGER;
    while q.pending.len() < shared.batch && !q.closed && !q.reopen {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        q.writer = WriterState::Lingering;
        q = shared
            .wake_writer
            .wait_timeout(q, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    q.writer = WriterState::Busy;
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

    #[tokio::test]
    async fn writes_chained_lines_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        for round in 0..2 {
            let (log, writer) = AuditLog::start(Some(&path), 4).unwrap();
            for i in 0..10 {
                log.record(entry(&format!("r{round}-{i}"))).await;
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
        let (log, writer) = AuditLog::start(Some(&path), 4).unwrap();
        for i in 0..5 {
            log.record(entry(&format!("old-{i}"))).await;
        }
        // Reopening the same path (nothing renamed) carries on in the same file.
        log.reopen();
        log.record(entry("same-file")).await;
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
            log.record(entry(&format!("new-{i}"))).await;
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
            let (log, writer) = AuditLog::start(Some(&path), 4).unwrap();
            for i in 0..3 {
                log.record(entry(&format!("r{i}"))).await;
            }
            finish(log, writer).await;
            if let Some(torn) = torn {
                // A crash in the middle of writing a line.
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(torn).unwrap();
            }
        }
        let (log, writer) = AuditLog::start(Some(&path), 4).unwrap();
        log.record(entry("after the crash")).await;
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
        let (log, writer) = AuditLog::open(&path, 2).unwrap();
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
            third.await;
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
        let (log, writer) = AuditLog::start(Some(&path), 3).unwrap();
        let log = Arc::new(log);
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        log.record(entry(&format!("task {t} entry {i}"))).await;
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
        let (log, writer) = AuditLog::start(None, 4).unwrap();
        for i in 0..(RECENT + 5) {
            log.record(entry(&format!("e{i}"))).await;
        }
        let all = log.recent(0, usize::MAX);
        assert_eq!(all.len(), RECENT);
        assert_eq!(all[0].seq, 6);
        assert_eq!(all.last().unwrap().reason, format!("e{}", RECENT + 4));
        assert!(log.recent((RECENT + 5) as u64, 10).is_empty());
        finish(log, writer).await;
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
