//! Torrent metainfo (docs/protocol.md 5): parse and validate any BitTorrent v1 torrent, create
//! ivcsd's encrypted torrents, and the piece geometry that the peer's picker and storage build on.
//!
//! # Layout
//! - `parse.rs`, [`Metainfo::from_bytes`]: bytes in, a validated [`Metainfo`] out, or a
//!   [`MetainfoError`] that names the field (`info.files[3].path[1]: '..' would escape the
//!   download directory`). The info hash is SHA-1 over the exact bytes of `info` as received.
//! - `names.rs`, [`check_name`]: which file names are safe, for parsing and creation alike.
//! - `geometry.rs`: [`Geometry`], the only maker of [`PieceIndex`], and [`FileSegments`], the
//!   map from a content range to the file runs it covers.
//! - `create.rs`, [`create_encrypted`] and [`create_plain`]: build a torrent from a file or a
//!   directory, hashing ciphertext (or plaintext) on all cores with bounded memory; with
//!   `source.rs`, which walks the directory and reads the files, the only part that does I/O.
//!
//! What a validated torrent guarantees (the rest of ivcsd relies on it):
//! - every file path is a list of safe components (see [`NameProblem`]) that cannot leave the
//!   download directory on Linux, macOS or Windows, and no two files collide;
//! - the piece length is a power of two from 16 KiB to 256 MiB, and there is exactly one
//!   SHA-1 per piece of the content;
//! - file offsets are consistent: file `i` starts where file `i - 1` ends.
//!
//! It does not know about trackers, keys or peers.

mod create;
pub mod file;
mod geometry;
mod names;
mod parse;
mod source;

pub use create::{
    CreateError, CreatedTorrent, ProgressFn, TorrentBuilder, announce_credentials,
    create_encrypted, create_plain,
};
pub use geometry::{
    FileSegment, FileSegments, Geometry, GeometryError, MAX_PIECE_COUNT, MAX_PIECE_LENGTH,
    MIN_PIECE_LENGTH, PieceIndex, check_piece_length, default_piece_length,
};
pub use names::{NameProblem, check_name};
pub use parse::MetainfoError;

use crate::types::{InfoHash, KeyId};

/// A validated torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The tracker's announce URL (`announce`), if the torrent has one.
    pub announce: Option<String>,
    /// BEP 12 `announce-list`: tiers of announce URLs; empty when absent.
    pub announce_list: Vec<Vec<String>>,
    /// SHA-1 of the raw bytes of `info`.
    pub info_hash: InfoHash,
    pub info: Info,
    /// `created by`, if present (not UTF-8 bytes are replaced: it is only shown).
    pub created_by: Option<String>,
    /// `creation date` in Unix seconds, if present.
    pub creation_date: Option<i64>,
    /// `comment`, if present (not UTF-8 bytes are replaced: it is only shown).
    pub comment: Option<String>,
}

/// The `info` dictionary, validated. Built only by parsing (the private geometry field keeps
/// it so); treat the fields as read-only: [`Info::geometry`] was fixed when they were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The suggested name of the file (single-file) or top directory (multi-file): one safe
    /// path component. From `name.utf-8` when present, else `name`.
    pub name: String,
    /// Nominal piece length in bytes: a power of two from 16 KiB to 256 MiB.
    pub piece_length: u64,
    /// SHA-1 of each piece; exactly `piece_count()` of them.
    pub pieces: Vec<[u8; 20]>,
    /// Single-file or multi-file, as the torrent says.
    pub layout: Layout,
    /// The files in content order. For a single-file torrent there is one, whose path is
    /// `[name]`; for a multi-file torrent, each path starts with `name` followed by the file's
    /// `path` components. So every path is relative to the download directory.
    pub files: Vec<FileEntry>,
    /// The sum of all file lengths (greater than 0).
    pub total_length: u64,
    /// BEP 27 `private = 1`.
    pub private: bool,
    /// ivcsd's `info.ivcsd` (docs/protocol.md 5), for encrypted torrents.
    pub ivcsd: Option<IvcsdInfo>,
    geometry: Geometry,
}

/// Whether a torrent describes one file or a directory of files (BEP 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `info.length`: the content is the file `name`.
    SingleFile,
    /// `info.files`: the content is the directory `name`.
    MultiFile,
}

/// One file of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Safe components relative to the download directory, starting with the torrent's name.
    pub path: Vec<String>,
    /// Length in bytes (may be 0).
    pub length: u64,
    /// Absolute content offset of the file's first byte: the sum of the lengths before it.
    pub offset: u64,
}

impl FileEntry {
    /// The path relative to the download directory, for display and for joining.
    pub fn relative_path(&self) -> std::path::PathBuf {
        self.path.iter().collect()
    }
}

/// `info.ivcsd` of an encrypted torrent (docs/protocol.md 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvcsdInfo {
    /// `v`: the format version; 1 is the only one.
    pub version: u32,
    /// `cipher`: the content cipher suite.
    pub cipher: Cipher,
    /// `key id`: names the content key at the tracker.
    pub key_id: KeyId,
    /// `check`: the first 8 bytes of HMAC-SHA-256(K, "ivcsd-key-check") (docs/protocol.md 6.2), so
    /// a wrong key is noticed before anything is decrypted.
    pub check: [u8; 8],
}

/// The content cipher suites live with the cipher system; torrents name them.
pub use crate::crypto::content::Cipher;

impl Info {
    /// The validated piece layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// How many pieces the content has (at least 1).
    pub fn piece_count(&self) -> u32 {
        self.geometry.piece_count()
    }

    /// Checks a piece index from outside.
    pub fn piece_index(&self, index: u32) -> Option<PieceIndex> {
        self.geometry.piece_index(index)
    }

    /// The length of piece `index`: the piece length, or less for the last piece.
    pub fn piece_len(&self, index: PieceIndex) -> u32 {
        self.geometry.piece_len(index)
    }

    /// The absolute content offset of piece `index`.
    pub fn piece_offset(&self, index: PieceIndex) -> u64 {
        self.geometry.piece_offset(index)
    }

    /// The expected SHA-1 of piece `index`.
    ///
    /// # Panics
    /// If `index` was made by the geometry of another, larger torrent: a bug in the caller.
    pub fn piece_hash(&self, index: PieceIndex) -> &[u8; 20] {
        &self.pieces[index.as_usize()]
    }

    /// The file runs covered by the content `range`, `None` when it is empty or reaches past
    /// the end of the content.
    pub fn segments(&self, range: std::ops::Range<u64>) -> Option<FileSegments<'_>> {
        if range.start >= range.end || range.end > self.total_length {
            return None;
        }
        Some(FileSegments::new(&self.files, range))
    }

    /// The file runs covered by piece `index`.
    pub fn piece_segments(&self, index: PieceIndex) -> FileSegments<'_> {
        FileSegments::new(&self.files, self.geometry.piece_range(index))
    }
}
