//! The audit log (SPEC 8): one JSON line per request with time, source address, user,
//! endpoint, info hash, decision and the true reason. Never a password, token or key: entries
//! are built from typed fields only, and no field ever holds a secret.
//!
//! Written off the request path: requests hand entries to a bounded channel, and a dedicated
//! thread writes them in batches. A full channel slows requests down instead of dropping
//! entries. The file is flushed after every batch, fsynced at most once a second while busy
//! and once more at shutdown.
//!
//! Each line carries `prev`, the SHA-256 (hex) of the line before it in the file, so that an
//! edited, removed or reordered line breaks the chain.
//!
//! The last [`RECENT`] entries are also kept in memory for the admin API's audit tail.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::types::InfoHash;

/// The audit log's file name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";
/// Entries kept in memory for the admin API.
pub const RECENT: usize = 1024;
/// Most entries written in one batch.
const BATCH: usize = 512;
/// The chain's first `prev`.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Order of recording in this process (starts at 1).
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
    pub reason: String,
}

fn hex_opt<S: serde::Serializer>(h: &Option<InfoHash>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(&h.to_hex()),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    entry: &'a AuditEntry,
    prev: &'a str,
}

/// The request side of the audit log.
pub struct AuditLog {
    /// `None` once closed, or when the log is disabled.
    sender: Mutex<Option<mpsc::Sender<AuditEntry>>>,
    recent: Mutex<VecDeque<AuditEntry>>,
    seq: AtomicU64,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
fn last_line_hash(file: &mut File) -> std::io::Result<String> {
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
        GENESIS.to_owned()
    } else {
        hex::encode(Sha256::digest(last))
    })
}

impl AuditLog {
    /// Starts the audit log writing to `path` (appending), or an in-memory-only log when
    /// `path` is `None`.
    ///
    /// # Errors
    /// The file cannot be opened, or the thread cannot start.
    pub fn start(path: Option<&Path>, queue: usize) -> Result<(AuditLog, AuditWriter), AuditError> {
        let Some(path) = path else {
            let log = AuditLog {
                sender: Mutex::new(None),
                recent: Mutex::new(VecDeque::with_capacity(RECENT)),
                seq: AtomicU64::new(0),
            };
            return Ok((log, AuditWriter(None)));
        };
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
        let (tx, rx) = mpsc::channel(queue);
        let thread = std::thread::Builder::new()
            .name("tracker-audit".into())
            .spawn(move || write_loop(file, rx, prev))
            .map_err(AuditError::Thread)?;
        let log = AuditLog {
            sender: Mutex::new(Some(tx)),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            seq: AtomicU64::new(0),
        };
        Ok((log, AuditWriter(Some(thread))))
    }

    /// Records an entry (its `seq` is assigned here). Waits if the writer is behind.
    pub async fn record(&self, mut entry: AuditEntry) {
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(entry.clone());
        }
        let sender = lock(&self.sender).clone();
        if let Some(sender) = sender
            && sender.send(entry).await.is_err()
        {
            tracing::error!("audit writer has stopped; entry not written");
        }
    }

    /// Entries with `seq > since`, oldest first, at most `limit`.
    pub fn recent(&self, since: u64, limit: usize) -> Vec<AuditEntry> {
        let recent = lock(&self.recent);
        let newer: Vec<&AuditEntry> = recent.iter().filter(|e| e.seq > since).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }

    /// Closes the channel: the writer finishes the queue, flushes, fsyncs and ends.
    pub fn close(&self) {
        lock(&self.sender).take();
    }
}

fn write_loop(file: File, mut rx: mpsc::Receiver<AuditEntry>, mut prev: String) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut last_sync = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut line = Vec::with_capacity(512);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for entry in batch.drain(..) {
            line.clear();
            if let Err(e) = serde_json::to_writer(
                &mut line,
                &Line {
                    entry: &entry,
                    prev: &prev,
                },
            ) {
                tracing::error!("error encoding audit entry: {e}");
                continue;
            }
            prev = hex::encode(Sha256::digest(&line));
            line.push(b'\n');
            if let Err(e) = out.write_all(&line) {
                tracing::error!("error writing audit log: {e}");
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!("error flushing audit log: {e}");
        }
        if last_sync.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = out.get_ref().sync_data() {
                tracing::error!("error syncing audit log: {e}");
            }
            last_sync = Instant::now();
        }
    }
    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_all()) {
        tracing::error!("error syncing audit log at shutdown: {e}");
    }
}

/// Checks the hash chain of an audit log; returns the number of lines, or the 1-based number
/// of the first line that does not follow from the one before.
///
/// # Errors
/// `Err(line)` for the first broken line; I/O errors count as line 0.
pub fn verify_chain(text: &str) -> Result<usize, usize> {
    let mut prev = GENESIS.to_owned();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        #[derive(serde::Deserialize)]
        struct Prev {
            prev: String,
        }
        let parsed: Prev = serde_json::from_str(line).map_err(|_| i + 1)?;
        if parsed.prev != prev {
            return Err(i + 1);
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        n = i + 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time_ms: 1,
            source: "127.0.0.1".parse().unwrap(),
            user: Some("u1".into()),
            endpoint: "announce",
            info_hash: Some(InfoHash([0xab; 20])),
            decision: Decision::Refuse,
            reason: reason.into(),
        }
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
            log.close();
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .unwrap();
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
            log.close();
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .unwrap();
            if let Some(torn) = torn {
                // A crash in the middle of writing a line.
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(torn).unwrap();
            }
        }
        let (log, writer) = AuditLog::start(Some(&path), 4).unwrap();
        log.record(entry("after the crash")).await;
        log.close();
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(7), "{text}");
    }
}
