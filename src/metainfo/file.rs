//! Reading a `.torrent` file from disk, bounded: a peer that seeds a directory of them must
//! not be made to read a huge file into memory because someone dropped one there.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Metainfo, MetainfoError};

/// A torrent file larger than this is not read: real ones are well below (a 40,000-file
/// torrent is about 10 MiB), and the tracker accepts at most 16 MiB by default.
pub const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

/// Why a torrent file could not be read; each names the file. The underlying error is part of
/// the message (not a `source`), so that a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum TorrentFileError {
    #[error("cannot open {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("not a valid torrent: {path}: larger than {MAX_TORRENT_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("not a valid torrent: {path}: {error}")]
    Invalid { path: PathBuf, error: MetainfoError },
}

/// The bytes of the torrent file at `path`, at most [`MAX_TORRENT_FILE`].
///
/// # Errors
/// [`TorrentFileError::Open`], [`TorrentFileError::Read`] or [`TorrentFileError::TooLarge`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, TorrentFileError> {
    let file = std::fs::File::open(path).map_err(|error| TorrentFileError::Open {
        path: path.to_owned(),
        error,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| TorrentFileError::Read {
            path: path.to_owned(),
            error,
        })?;
    if bytes.len() as u64 > MAX_TORRENT_FILE {
        return Err(TorrentFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// The torrent at `path`, read by [`read_bytes`] and validated.
///
/// # Errors
/// As [`read_bytes`], or [`TorrentFileError::Invalid`].
pub fn read(path: &Path) -> Result<Metainfo, TorrentFileError> {
    let bytes = read_bytes(path)?;
    Metainfo::from_bytes(&bytes).map_err(|error| TorrentFileError::Invalid {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.torrent");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: no disk space needed.
        file.set_len(MAX_TORRENT_FILE + 1).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, TorrentFileError::TooLarge { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("huge.torrent: larger than 67108864 bytes")
        );
    }

    #[test]
    fn missing_and_invalid_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.torrent");
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, TorrentFileError::Open { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot open "), "{err}");
        let bad = dir.path().join("bad.torrent");
        std::fs::write(&bad, b"d4:infoi1ee").unwrap();
        let err = read(&bad).unwrap_err();
        assert!(matches!(err, TorrentFileError::Invalid { .. }), "{err}");
        assert!(
            err.to_string().starts_with("not a valid torrent: "),
            "{err}"
        );
    }
}
