//! The audit log's file: batches appended as whole lines or not at all, fsync, and the
//! unsynced tail kept to be written again when an fsync fails; at start, a torn last line cut
//! off.
//!
//! A failed fsync is a failure too: Linux may mark the pages it could not write clean, so the
//! lines written since the last good fsync can be gone from the disk while the file still shows
//! them ("fsyncgate"). [`LogFile`] keeps those bytes (its unsynced tail); when an fsync fails it
//! cuts the file back to its length at the last good fsync, writes them again and fsyncs once
//! more (logging the error, then that the lines are on disk). If that fails too, the writer
//! fails (see `writer`), and each attempt writes the tail again. The same holds for the fsync
//! before a rotation (the writer stays on the old file until it succeeds) and at shutdown,
//! where a second failure is logged with how many lines may be lost.
//! [`AuditLog::written`] waits for the file, not the fsync (which would add up to a second to
//! every key handed out): a line written is fsynced within a second or the log fails.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chain::{HexHash, encode_lines};
use super::entry::AuditEntry;
#[cfg(doc)]
use super::queue::AuditLog;
use super::queue::Shared;

/// Least time between two fsyncs.
pub(super) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Most bytes the writer keeps of what it wrote since its last successful fsync, to write them
/// again when an fsync fails ([`LogFile`]); past it the writer fsyncs early instead of waiting
/// for [`SYNC_INTERVAL`], so that neither this memory nor what a crash of the machine can lose
/// grows with the load. 8 MiB is about 0.7 s of lines at the highest rate measured (49k
/// announces/s of about 250 bytes each, docs/benchmarks.md): below that rate the cap never
/// adds an fsync.
const TAIL_CAP: usize = 8 * 1024 * 1024;

/// Which fsync: `fdatasync` for the periodic one, `fsync` (the metadata too) before a
/// rotation and at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    Data,
    All,
}

/// How the writer fsyncs its file: [`fsync`] in production. It is a field only so that tests
/// can make fsync fail: a real fsync error needs a faulty device (dm-error, dm-flakey), which
/// a test machine does not have.
pub(super) type SyncFn = Box<dyn Fn(&File, Flush) -> std::io::Result<()> + Send>;

pub(super) fn fsync(file: &File, flush: Flush) -> std::io::Result<()> {
    match flush {
        Flush::Data => file.sync_data(),
        Flush::All => file.sync_all(),
    }
}

/// Why an attempt of the writer failed.
#[derive(Debug)]
pub(super) enum WriteFault {
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
pub(super) struct LogFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Length of the file at its last successful fsync (or when it was opened).
    pub(super) synced_len: u64,
    /// The whole lines written after `synced_len`, in file order: unless `dirty`, the file is
    /// its first `synced_len` bytes and then exactly these. At most `tail_cap` bytes, unless a
    /// single line is longer.
    pub(super) tail: Vec<u8>,
    /// The file past `synced_len` may differ from `tail` (a failed write that could not be cut
    /// back, or a failed fsync that may have dropped it): [`LogFile::restore`] comes first.
    pub(super) dirty: bool,
    /// When an fsync last succeeded.
    pub(super) last_sync: Instant,
    /// The writer fails: a sync made good by writing the tail again is not logged, since the
    /// writer logs the failure's start and its end.
    pub(super) failing: bool,
    pub(super) sync: SyncFn,
    /// Most bytes in `tail`: [`TAIL_CAP`], smaller in tests.
    pub(super) tail_cap: usize,
}

impl LogFile {
    pub(super) fn new(path: PathBuf, file: File, len: u64) -> LogFile {
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
    pub(super) fn tail_lines(&self) -> usize {
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
    pub(super) fn sync(&mut self, flush: Flush) -> Result<(), WriteFault> {
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
        self.restore().map_err(WriteFault::Write)?;
        if let Err(e) = (self.sync)(&self.file, flush) {
            self.dirty = true;
            return Err(WriteFault::Sync(e));
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
    pub(super) fn synced(&mut self) {
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
    ) -> Result<(), WriteFault> {
        self.restore().map_err(WriteFault::Write)?;
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
                return Err(WriteFault::Write(e));
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
    pub(super) fn reopen(&mut self) -> Result<(), WriteFault> {
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
    pub(super) fn attempt(
        &mut self,
        batch: &mut Vec<Arc<AuditEntry>>,
        prev: &mut HexHash,
        shared: &Shared,
        sync_due: bool,
        reopen_due: &mut bool,
    ) -> Result<(), WriteFault> {
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
pub(super) fn open_log(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    crate::fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(file)
}

/// Cuts a torn last line (no final newline: the tracker died or the disk filled while the
/// line was being written) off an existing log, so that the chain continues from the last
/// whole line instead of gluing the next entry onto the torn one. A torn line was never a
/// whole entry; the cut is logged with its size.
pub(super) fn cut_torn_tail(path: &Path, file: &mut File) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::audit::testing::*;
    use crate::tracker::audit::{AUDIT_FILE, AuditLog, ChainCheck, OnFailure, verify_chain};

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
}
