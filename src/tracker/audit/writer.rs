//! The writer thread: it takes batches from the queue, writes them, fsyncs, reopens the file
//! on rotation, and retries while the file cannot be written.
//!
//! After its first entry the writer lingers up to [`LINGER`] so that a batch is one wake-up,
//! one encoding pass and one `write(2)`; an entry a request waits for ends the linger at once.
//! Each batch is written (unbuffered: a batch is one buffer) as soon as it is taken; the file
//! is fsynced at most once a second while entries come in (sooner when the unsynced tail
//! reaches its cap), once more a second after the last one, and at shutdown (`log_file`).
//!
//! # When the file cannot be written
//! A batch is written with one `write_all` of whole lines; when that fails (a full disk, EIO)
//! the file is cut back to its length before the batch, so no partial line stays, `prev` stays
//! the hash of the last line really in the file, and the writer keeps the batch and tries
//! again after [`RETRY_FIRST`], doubling up to [`RETRY_MAX`]. A failed fsync is a failure too
//! once writing the unsynced tail again did not make it good (`log_file`). The writer logs once
//! when the failure starts (with the error) and once when writing works again (with how many
//! entries waited); after that the chain runs on unbroken. It recovers only once all it wrote
//! is on disk, so the chain in the file stays whole. While it fails, [`OnFailure`] decides:
//! - `Refuse` (the default): [`AuditLog::record`] and [`AuditLog::reserve`] fail at once with
//!   [`AuditUnavailable`] and the tracker refuses the request (503) instead of answering it.
//!   docs/protocol.md 8: ivcsd fails closed, because a deployment that promises that every
//!   decision is logged must not hand out content keys or store torrents unrecorded
//!   (docs/security.md 2.6). Entries accepted before the failure are kept and written later.
//! - `Continue`: requests are answered; their entries wait in the queue, and once it is full
//!   they are dropped (kept in the in-memory tail only) and counted; the count is logged when
//!   writing works again. Dropped entries leave a gap in `seq`, not a break in the chain.
//!
//! The entries held by the failing writer count against the queue's capacity, so the entries
//! waiting never exceed `audit_queue`. At shutdown a writer that still fails makes one last
//! attempt and then logs how many entries are lost; shutdown never hangs on a dead disk.

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::AuditError;
use super::chain::{HexHash, last_line_hash};
use super::entry::AuditEntry;
use super::log_file::{Flush, LogFile, SYNC_INTERVAL, WriteFault, cut_torn_tail, open_log};
#[cfg(doc)]
use super::queue::{AuditLog, AuditUnavailable};
use super::queue::{OnFailure, Shared, WriterState};

/// How long the writer waits after the first entry of a batch for more to come.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// First pause before writing a failed batch again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between two attempts at a failed batch.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The writer thread; [`AuditWriter::finish`] waits for it to flush and fsync.
pub struct AuditWriter(pub(super) Option<std::thread::JoinHandle<()>>);

impl AuditWriter {
    /// Runs `writer` on its own thread, named so that the log says which thread failed.
    ///
    /// # Errors
    /// The thread cannot start.
    pub(super) fn spawn(writer: WriteLoop) -> Result<AuditWriter, AuditError> {
        let thread = std::thread::Builder::new()
            .name("tracker-audit".into())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok(AuditWriter(Some(thread)))
    }

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
pub(super) struct WriteLoop {
    pub(super) shared: Arc<Shared>,
    pub(super) file: LogFile,
    /// Hash of the last line in the file.
    pub(super) prev: HexHash,
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
struct WriteFailure {
    /// Pause before the next attempt.
    backoff: Duration,
}

impl WriteLoop {
    /// Opens the log at `path` for appending, cuts a torn last line off it and continues its
    /// chain from the last whole line.
    ///
    /// # Errors
    /// The file cannot be opened, read or cut.
    pub(super) fn open(path: &Path, shared: Arc<Shared>) -> Result<WriteLoop, AuditError> {
        let open = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = open_log(path).map_err(open)?;
        cut_torn_tail(path, &mut file).map_err(open)?;
        let prev = last_line_hash(&mut file).map_err(open)?;
        let len = file.seek(SeekFrom::End(0)).map_err(open)?;
        Ok(WriteLoop {
            shared,
            file: LogFile::new(path.to_owned(), file, len),
            prev,
        })
    }

    pub(super) fn run(self) {
        let WriteLoop {
            shared,
            mut file,
            mut prev,
        } = self;
        let _gone = GoneOnDrop(shared.clone());
        let mut batch = Vec::with_capacity(shared.batch);
        let mut failure: Option<WriteFailure> = None;
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
                                WriteFault::Write(e) => {
                                    format!("error writing audit log {}: {e}", file.path.display())
                                }
                                WriteFault::Sync(e) => format!(
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
                    failure = Some(WriteFailure {
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
        if let Err(WriteFault::Write(e) | WriteFault::Sync(e)) = file.sync(Flush::All) {
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
        shared.park_until(&mut q, deadline);
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
            None => shared.park(&mut q),
            Some(due) => {
                let now = Instant::now();
                if now >= due {
                    q.writer = WriterState::Busy;
                    return Next::Sync;
                }
                shared.park_until(&mut q, due);
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
        shared.park_until(&mut q, deadline);
    }
    q.writer = WriterState::Busy;
    q.awaited = false;
    std::mem::swap(&mut q.pending, batch);
    Next::Write
}

#[cfg(test)]
mod tests {
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::tracker::audit::chain::GENESIS;
    use crate::tracker::audit::entry::{Decision, withdrawal_reason};
    use crate::tracker::audit::testing::*;
    use crate::tracker::audit::{AUDIT_FILE, AuditLog, AuditUnavailable, verify_chain};

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
    /// user and mount namespace (`unshare -rm`, as tests/it/faults.rs does) with a 64 KiB tmpfs
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
        // The name the test harness knows this test by: its path without the crate's name.
        let (_crate, tests) = module_path!()
            .split_once("::")
            .expect("a module in the crate");
        let Some(dir) = on_small_tmpfs(&format!(
            "{tests}::a_full_disk_cuts_the_torn_batch_and_recovers_with_the_chain_intact"
        )) else {
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
}
