//! What the audit log's tests share: an entry, closing a log and waiting for its writer,
//! polling for a condition, and an fsync that fails on demand.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::entry::{AuditEntry, Decision};
use super::log_file::{SyncFn, fsync};
use super::queue::{AuditLog, OnFailure};
use super::writer::{AuditWriter, WriteLoop};
use crate::tracker::endpoint::Endpoint;
use crate::types::InfoHash;

pub(super) fn entry(reason: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        time_ms: 1,
        source: "127.0.0.1".parse().unwrap(),
        user: Some("u1".into()),
        endpoint: Endpoint::Announce,
        info_hash: Some(InfoHash([0xab; 20])),
        decision: Decision::Refuse,
        reason: reason.to_owned().into(),
    }
}

pub(super) async fn finish(log: AuditLog, writer: AuditWriter) {
    log.close();
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .unwrap();
}

/// Waits (up to 10 s) until `f` holds.
pub(super) async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// An fsync that fails while `fails` is above zero, and then does what the kernel may do
/// after a failed fsync: the bytes written since the file's last good fsync are gone from
/// the disk (here: cut off the file, the worst a reader can see). Otherwise the real fsync.
#[derive(Clone, Default)]
pub(super) struct FaultySync {
    pub(super) fails: Arc<AtomicUsize>,
    /// Length of each file (by inode) at its last successful sync.
    pub(super) synced: Arc<Mutex<std::collections::HashMap<u64, u64>>>,
    /// Most bytes found written since the last successful sync, at any sync.
    pub(super) max_unsynced: Arc<AtomicU64>,
    /// Successful syncs.
    pub(super) syncs: Arc<AtomicUsize>,
}

impl FaultySync {
    fn sync_fn(&self) -> SyncFn {
        use std::os::unix::fs::MetadataExt;
        let me = self.clone();
        Box::new(move |file, flush| {
            let meta = file.metadata()?;
            let mut synced = me.synced.lock();
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

    pub(super) fn fail(&self, times: usize) {
        self.fails.store(times, Ordering::Relaxed);
    }

    /// Whether the file at `path` is synced to its end and no failure is left to inject
    /// (the writer may still have entries to write).
    pub(super) fn all_synced(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        self.fails.load(Ordering::Relaxed) == 0
            && self.synced.lock().get(&meta.ino()) == Some(&meta.len())
    }
}

/// Starts a log on `path` whose writer fsyncs through `faulty` and keeps at most
/// `tail_cap` unsynced bytes.
pub(super) fn start_faulty(
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
pub(super) fn faulty_writer(
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

pub(super) fn spawn(writer: WriteLoop) -> AuditWriter {
    AuditWriter(Some(std::thread::spawn(move || writer.run())))
}

/// The reasons of the lines in `text`, in file order.
pub(super) fn reasons(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// About four lines of [`entry`].
pub(super) const SMALL_TAIL: usize = 1024;
