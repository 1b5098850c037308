//! The hash chain of the audit log, and its verifier.
//!
//! Each line carries `prev`, the SHA-256 (hex) of the line before it in the file (the first
//! line of a log, [`GENESIS`]), so that an edited, removed or reordered line breaks the chain.
//! The chain runs on across a rotation: a reopened file's first `prev` is the hash of the old
//! file's last line, and [`ChainCheck`] checks files oldest first, seams included.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::entry::AuditEntry;
use super::line::encode_line;

/// SHA-256 in lowercase hex, as `prev` carries it.
pub(super) type HexHash = [u8; 64];
/// The chain's first `prev`.
pub(super) const GENESIS: HexHash = [b'0'; 64];

/// The hash of the last line of an existing log, to continue its chain.
pub(super) fn last_line_hash(file: &mut File) -> std::io::Result<HexHash> {
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
pub(super) fn hex_hash(bytes: &[u8]) -> HexHash {
    let mut out = [0u8; 64];
    // Cannot fail: 32 bytes always fit 64 hex digits.
    hex::encode_to_slice(Sha256::digest(bytes), &mut out).expect("64 hex digits for 32 bytes");
    out
}

/// Encodes entries from the start of `batch` onto `out` as lines chained from `prev`, as many
/// as keep `out` within `cap` bytes (at least one when `out` is empty: a longer line goes
/// alone). Returns how many, and the hash of the last one.
pub(super) fn encode_lines(
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
    use std::time::Duration;

    use super::*;
    use crate::tracker::audit::testing::{entry, finish};
    use crate::tracker::audit::{AUDIT_FILE, AuditLog, OnFailure};

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
