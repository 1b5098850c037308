//! The audit log (docs/protocol.md 8): one JSON line per request with time, source address,
//! user, endpoint, info hash, decision and the true reason. Never a password, token or key:
//! entries are built from typed fields only, and no field ever holds a secret.
//!
//! # Layout
//! - `entry`: an entry, and the slot and receipt of a change that must not go unrecorded
//!   (a content key handed out, a torrent stored, an admin change).
//! - `queue`: the request side, [`AuditLog`]: admission (back-pressure, refusal while the file
//!   cannot be written), the queue the writer takes its batches from, and the in-memory tail.
//! - `writer`: the writer thread: batches, retries while the file cannot be written, recovery.
//! - `log_file`: the file: whole lines or nothing, fsync, and the unsynced tail written again
//!   after a failed fsync; a torn last line cut off at start.
//! - `line`: one entry as one JSON line.
//! - `chain`: the hash chain across lines and files, and its verifier.
//!
//! # The path of an entry
//! A request numbers its entry and puts it in the queue (`queue`), the writer thread takes a
//! batch, encodes each entry as a line chained to the one before (`line`, `chain`) and appends
//! the batch in one `write(2)` (`log_file`); the file is fsynced at most once a second while
//! entries come in. A change that must not go unrecorded is answered only once its line is in
//! the file (`entry`). While the file cannot be written, [`OnFailure`] decides whether
//! requests are refused or answered (`writer`); either way nothing grows without bound: the
//! entries waiting (queued, reserved and held by the failing writer) never exceed
//! `audit_queue`, and the writer's unsynced tail 8 MiB.
//!
//! Rotation: an operator (or logrotate) renames the file and sends the tracker SIGHUP;
//! [`AuditLog::reopen`] makes the writer flush, fsync and open the path again. The chain runs
//! on across files: the new file's first `prev` is the hash of the old file's last line, so
//! `ivcsd admin audit verify audit.log.1 audit.log` checks both and the seam between them.
//!
//! Lock order: only one lock (the queue's, in `queue`); the writer never holds it while
//! encoding, hashing or writing.

mod chain;
mod entry;
mod line;
mod log_file;
mod queue;
#[cfg(test)]
mod testing;
mod writer;

use std::path::PathBuf;

pub use chain::{ChainCheck, verify_chain, verify_chain_reader};
pub use entry::{AuditEntry, AuditReceipt, AuditSlot, Decision};
pub use queue::{AuditLog, AuditUnavailable, OnFailure, RECENT};
pub use writer::AuditWriter;

/// The audit log's file name in the data directory.
pub const AUDIT_FILE: &str = "audit.log";

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
