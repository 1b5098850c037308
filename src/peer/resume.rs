//! Fast resume: which pieces were verified and written, so that a restarted download or seed
//! does not hash every byte again.
//!
//! The record is trusted only when every file still has the size and modification time it
//! had when the record was written (after an fsync of the data); otherwise, or with
//! `--recheck`, the pieces are verified again from disk. A crash between writing data and
//! writing the record only makes the record older than the data, never newer: pieces it names
//! were durable before it was written.

use std::path::{Path, PathBuf};

use crate::bencode::{self, Dict, Value};
use crate::fsutil::FileStamp;
use crate::peer::bitfield::Bitfield;
use crate::types::InfoHash;

/// Where the record of `info_hash` lives under a download directory.
pub fn record_path(dir: &Path, info_hash: InfoHash) -> PathBuf {
    dir.join(".ivcsd")
        .join(format!("{}.resume", info_hash.to_hex()))
}

/// Writes the record: `have` for `info_hash`, with the current stamps of `files`. Call it only
/// after the data of every piece in `have` is synced.
///
/// # Errors
/// The record cannot be written.
pub fn save<'a>(
    path: &Path,
    info_hash: InfoHash,
    have: &Bitfield,
    files: impl Iterator<Item = &'a Path>,
) -> std::io::Result<()> {
    let stamps: Vec<Value<'_>> = files
        .map(|f| {
            let s = FileStamp::of_path(f).unwrap_or(FileStamp {
                len: 0,
                mtime_ns: 0,
            });
            Value::List(vec![
                Value::Int(s.len as i64),
                Value::Int(s.mtime_ns as i64),
            ])
        })
        .collect();
    let record = Dict::new()
        .with("info hash", &info_hash.0)
        .with("pieces", have.len())
        .with("have", have.as_bytes())
        .with("files", stamps)
        .with("v", 1i64);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(path, &Value::Dict(record).encode(), 0o644)
}

/// Reads the record and returns the verified pieces it names, or `None` when there is no
/// usable record (missing, damaged, for another torrent, or any file changed since).
pub fn load<'a>(
    path: &Path,
    info_hash: InfoHash,
    piece_count: u32,
    files: impl Iterator<Item = &'a Path>,
) -> Option<Bitfield> {
    let bytes = std::fs::read(path).ok()?;
    let value = bencode::decode(&bytes).ok()?;
    let dict = value.as_dict()?;
    if dict.get(b"v")?.as_int()? != 1
        || dict.get(b"info hash")?.as_bytes()? != info_hash.as_bytes()
        || dict.get(b"pieces")?.as_int()? != i64::from(piece_count)
    {
        return None;
    }
    let recorded = dict.get(b"files")?.as_list()?;
    let mut count = 0;
    for (file, entry) in files.zip(recorded) {
        let pair = entry.as_list()?;
        let want = FileStamp {
            len: u64::try_from(pair.first()?.as_int()?).ok()?,
            mtime_ns: u64::try_from(pair.get(1)?.as_int()?).ok()?,
        };
        if FileStamp::of_path(file)? != want {
            return None;
        }
        count += 1;
    }
    if count != recorded.len() {
        return None;
    }
    let raw = dict.get(b"have")?.as_bytes()?;
    if raw.len() != piece_count.div_ceil(8) as usize {
        return None;
    }
    let mut have = Bitfield::new(piece_count);
    for index in 0..piece_count {
        if raw[(index / 8) as usize] & (0x80 >> (index % 8)) != 0 {
            have.set(index);
        }
    }
    Some(have)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_trusted_only_while_files_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.bin");
        std::fs::write(&data, b"0123456789").unwrap();
        let hash = InfoHash([7; 20]);
        let mut have = Bitfield::new(10);
        have.set(3);
        have.set(9);
        let path = record_path(dir.path(), hash);
        save(&path, hash, &have, [data.as_path()].into_iter()).unwrap();

        let back = load(&path, hash, 10, [data.as_path()].into_iter()).unwrap();
        assert_eq!(back, have);
        assert!(load(&path, InfoHash([8; 20]), 10, [data.as_path()].into_iter()).is_none());
        assert!(load(&path, hash, 11, [data.as_path()].into_iter()).is_none());

        // Touching the file invalidates the record.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&data, b"0123456789").unwrap();
        assert!(load(&path, hash, 10, [data.as_path()].into_iter()).is_none());

        // A damaged record is ignored, not an error.
        std::fs::write(&path, b"d1:v").unwrap();
        assert!(load(&path, hash, 10, [data.as_path()].into_iter()).is_none());
    }
}
