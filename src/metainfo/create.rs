//! Building a torrent from a file or a directory (docs/protocol.md 5).
//!
//! The content is read in batches of whole pieces into two reused buffers: while the calling
//! side reads the next batch, rayon encrypts (when a key is given) and hashes the current one on
//! all cores. Memory stays at two batches (32 MiB each, or one piece when pieces are larger),
//! whatever the size of the content. Pieces are hashed after encryption, so `pieces` holds
//! SHA-1 of the ciphertext.
//!
//! Directory decisions:
//! - files are taken recursively in the order of a depth-first walk whose entries are sorted by
//!   name bytes, i.e. file paths sorted component by component;
//! - hidden files are included, empty directories contribute nothing;
//! - **symbolic links inside the directory are refused** (not followed and not silently left
//!   out: either would surprise someone). So are sockets, FIFOs and devices. The path given on
//!   the command line is itself followed if it is a link: the user named it;
//! - every name must pass the same [`check_name`](super::names::check_name) that parsing
//!   applies, so ivcsd never writes a torrent that ivcsd would refuse.
//!
//! Call this off the async reactor (`spawn_blocking`), and not from inside the rayon pool: it
//! blocks on file reads and on the pool.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::geometry::{Geometry, GeometryError, check_piece_length, default_piece_length};
use super::names::NameProblem;
use super::parse::MetainfoError;
use super::source::{ContentReader, Source, SourceFile, scan};
use super::{Cipher, IvcsdInfo, Metainfo};
use crate::bencode::{Dict, Value};
use crate::crypto::content::{ContentCipher, ContentKey};
use crate::types::KeyId;

/// Bytes read, encrypted and hashed together: 2 of these are in memory at a time.
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Encryption work unit inside a piece: a multiple of the 16 KiB cipher block, so each unit
/// starts on a block boundary, and large enough that rayon's overhead does not show.
const ENCRYPT_CHUNK: usize = 16 * 16384;

/// A torrent just built: the bytes to write as a .torrent, and the same bytes parsed.
#[derive(Debug, Clone)]
pub struct CreatedTorrent {
    /// The bencoded torrent file.
    pub bytes: Vec<u8>,
    /// `bytes`, parsed and validated by [`Metainfo::from_bytes`].
    pub metainfo: Metainfo,
}

/// Why a torrent could not be created. Each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Messages include their cause, which is therefore not also a `source`.
    #[error("error reading {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{} is a symbolic link; links are not followed inside a torrent's directory",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file or a directory", path.display())]
    SpecialFile { path: PathBuf },
    #[error("{}: the name is not UTF-8, which torrents require", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: '{name}' {problem}", path.display())]
    UnsafeName {
        path: PathBuf,
        name: String,
        problem: NameProblem,
    },
    #[error("{} has no name to give the torrent", path.display())]
    NoName { path: PathBuf },
    #[error("{} holds no data: a torrent needs at least one non-empty file", path.display())]
    Empty { path: PathBuf },
    #[error("{}: the total length does not fit in a bencode integer (2^63 - 1)", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} changed while it was read (expected {expected} bytes)", path.display())]
    FileChanged { path: PathBuf, expected: u64 },
    #[error("--piece-length: {0}")]
    PieceLength(GeometryError),
    #[error("the announce URL must not carry credentials ({what}); peers add their own")]
    AnnounceCredentials { what: &'static str },
    #[error("bug: the torrent just created does not validate: {0}")]
    Invalid(MetainfoError),
}

/// Builds a plain BitTorrent torrent (no encryption, no `info.ivcsd`, not private) of the file
/// or directory at `path`: for tests and for interoperability with stock clients.
///
/// `announce` is written as given (an empty string leaves `announce` out); `piece_length`
/// defaults to [`default_piece_length`]. Shorthand for [`TorrentBuilder::plain`].
///
/// # Errors
/// See [`CreateError`].
pub fn create_plain(
    path: &Path,
    announce: &str,
    piece_length: Option<u64>,
) -> Result<CreatedTorrent, CreateError> {
    TorrentBuilder::new(path)
        .announce(announce)
        .piece_length(piece_length)
        .plain()
}

/// Builds an encrypted ivcsd torrent (docs/protocol.md 5) of the file or directory at `path`:
/// `pieces` are SHA-1 of the ciphertext under `key`, `info.private = 1`, and `info.ivcsd` carries
/// `key_id` and `key.key_check()`. The plaintext is read in batches and never held whole; nothing
/// is written to disk.
///
/// `announce` is the tracker's /announce URL without credentials (an empty string leaves it
/// out); `piece_length` defaults to [`default_piece_length`]. Shorthand for
/// [`TorrentBuilder::encrypted`].
///
/// # Errors
/// See [`CreateError`]; an announce URL with credentials is refused.
pub fn create_encrypted(
    path: &Path,
    key: &ContentKey,
    key_id: KeyId,
    announce: &str,
    piece_length: Option<u64>,
) -> Result<CreatedTorrent, CreateError> {
    TorrentBuilder::new(path)
        .announce(announce)
        .piece_length(piece_length)
        .encrypted(key, key_id)
}

/// Reports progress: `(bytes hashed so far, total bytes)`.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64);

/// A torrent build with every option: the announce URL, the piece length, and a progress
/// callback for long builds (a progress bar in `peer publish`).
pub struct TorrentBuilder<'a> {
    path: &'a Path,
    announce: &'a str,
    piece_length: Option<u64>,
    progress: Option<ProgressFn<'a>>,
    cipher: Cipher,
}

impl<'a> TorrentBuilder<'a> {
    /// A build of the file or directory at `path`, without announce URL, at the default piece
    /// length.
    pub fn new(path: &'a Path) -> Self {
        TorrentBuilder {
            path,
            announce: "",
            piece_length: None,
            progress: None,
            cipher: Cipher::default(),
        }
    }

    /// The `announce` URL, without credentials; empty leaves it out.
    pub fn announce(mut self, url: &'a str) -> Self {
        self.announce = url;
        self
    }

    /// The piece length; `None` picks [`default_piece_length`].
    pub fn piece_length(mut self, piece_length: Option<u64>) -> Self {
        self.piece_length = piece_length;
        self
    }

    /// Called on the calling thread after each batch of pieces (about every 32 MiB) with the
    /// bytes done and the total.
    pub fn progress(mut self, progress: ProgressFn<'a>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The content cipher suite of an encrypted build; `rc4+` unless set.
    pub fn cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = cipher;
        self
    }

    /// Builds a plain torrent: see [`create_plain`].
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn plain(self) -> Result<CreatedTorrent, CreateError> {
        self.build(None)
    }

    /// Builds an encrypted ivcsd torrent: see [`create_encrypted`].
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn encrypted(self, key: &ContentKey, key_id: KeyId) -> Result<CreatedTorrent, CreateError> {
        let content = ContentCipher::new(self.cipher, key);
        let transform = |offset: u64, buf: &mut [u8]| content.apply_keystream(offset, buf);
        let encryption = Encryption {
            transform: &transform,
            ivcsd: IvcsdInfo {
                version: 1,
                cipher: self.cipher,
                key_id,
                check: key.key_check(),
            },
        };
        self.build(Some(encryption))
    }

    /// The one build behind both kinds.
    fn build(self, encryption: Option<Encryption<'_>>) -> Result<CreatedTorrent, CreateError> {
        let TorrentBuilder {
            path,
            announce,
            piece_length,
            mut progress,
            // Already in `encryption`, the only place it matters.
            cipher: _,
        } = self;
        check_announce(announce)?;
        if let Some(piece_length) = piece_length {
            // Before the scan, which may walk a large tree.
            check_piece_length(piece_length).map_err(CreateError::PieceLength)?;
        }
        let source = scan(path)?;
        let piece_length =
            piece_length.unwrap_or_else(|| default_piece_length(source.total_length));
        let geometry = Geometry::new(piece_length, source.total_length).map_err(|e| match e {
            GeometryError::Empty => CreateError::Empty {
                path: path.to_owned(),
            },
            e => CreateError::PieceLength(e),
        })?;
        let pieces = hash_pieces(
            &source.files,
            &geometry,
            encryption.as_ref().map(|e| e.transform),
            &mut |done, total| {
                if let Some(progress) = progress.as_mut() {
                    progress(done, total);
                }
            },
        )?;
        let bytes = encode(
            &source,
            announce,
            &geometry,
            &pieces,
            encryption.as_ref().map(|e| &e.ivcsd),
        );
        let metainfo = Metainfo::from_bytes(&bytes).map_err(CreateError::Invalid)?;
        Ok(CreatedTorrent { bytes, metainfo })
    }
}

/// Encrypts content in place: `buf` holds content bytes from absolute offset `offset`.
type Transform<'a> = &'a (dyn Fn(u64, &mut [u8]) + Sync);

/// What an encrypted torrent adds to a plain one.
struct Encryption<'a> {
    transform: Transform<'a>,
    ivcsd: IvcsdInfo,
}

/// Refuses an announce URL with a user:password part or credential query parameters
/// (docs/protocol.md 5: "without credentials; clients add their own").
fn check_announce(url: &str) -> Result<(), CreateError> {
    match announce_credentials(url) {
        Some(what) => Err(CreateError::AnnounceCredentials { what }),
        None => Ok(()),
    }
}

/// What kind of credentials an announce URL carries, if any: a `user@` part, or a
/// `username`, `psw` or `token` parameter. Torrents are served to every reader, so their
/// announce URL must carry none (docs/protocol.md 5).
pub fn announce_credentials(url: &str) -> Option<&'static str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Some("a user name in the host part");
    }
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(pair))
        .map(|key| percent_encoding::percent_decode_str(key).decode_utf8_lossy())
        .any(|key| ["username", "psw", "token"].contains(&key.as_ref()))
        .then_some("a username, psw or token parameter")
}

/// SHA-1 of every piece of the content, after `transform` when given.
fn hash_pieces(
    files: &[SourceFile],
    geometry: &Geometry,
    transform: Option<Transform<'_>>,
    progress: ProgressFn<'_>,
) -> Result<Vec<[u8; 20]>, CreateError> {
    let piece_length = geometry.piece_length();
    let total = geometry.total_length();
    let batch_bytes = (BATCH_BYTES / piece_length).max(1) * piece_length;
    let pieces_per_batch = (batch_bytes / piece_length) as usize;
    let mut hashes = vec![[0u8; 20]; geometry.piece_count() as usize];
    let mut reader = ContentReader::new(files);

    // Cannot fail: a batch is at most max(32 MiB, one piece of at most 256 MiB).
    let batch_len = |start: u64| usize::try_from(batch_bytes.min(total - start)).expect("batch");
    let mut current = vec![0u8; batch_len(0)];
    reader.fill(&mut current)?;
    let mut next = Vec::new();
    let mut start = 0u64;
    for hash_batch in hashes.chunks_mut(pieces_per_batch) {
        let next_start = start + current.len() as u64;
        let next_len = if next_start < total {
            batch_len(next_start)
        } else {
            0
        };
        next.resize(next_len, 0);
        let (read, ()) = rayon::join(
            || reader.fill(&mut next),
            || hash_batch_of_pieces(&mut current, start, piece_length, hash_batch, transform),
        );
        read?;
        progress(next_start, total);
        std::mem::swap(&mut current, &mut next);
        start = next_start;
    }
    reader.finish()?;
    Ok(hashes)
}

/// Encrypts (optionally) and hashes the whole pieces in `buf`, which starts at content `offset`.
fn hash_batch_of_pieces(
    buf: &mut [u8],
    offset: u64,
    piece_length: u64,
    hashes: &mut [[u8; 20]],
    transform: Option<Transform<'_>>,
) {
    // Cannot fail: a piece is at most 256 MiB.
    let piece_len = usize::try_from(piece_length).expect("piece length fits in usize");
    buf.par_chunks_mut(piece_len)
        .zip(hashes.par_iter_mut())
        .enumerate()
        .for_each(|(i, (piece, hash))| {
            if let Some(transform) = transform {
                let piece_offset = offset + (i * piece_len) as u64;
                piece
                    .par_chunks_mut(ENCRYPT_CHUNK)
                    .enumerate()
                    .for_each(|(j, chunk)| {
                        transform(piece_offset + (j * ENCRYPT_CHUNK) as u64, chunk)
                    });
            }
            *hash = Sha1::digest(&*piece).into();
        });
}

/// The bencoded torrent. Keys are sorted by the encoder. The `as i64` casts cannot wrap:
/// `scan` keeps the total length (so every file length) at most `i64::MAX`, and a piece length
/// is at most 2^28.
fn encode(
    source: &Source,
    announce: &str,
    geometry: &Geometry,
    pieces: &[[u8; 20]],
    ivcsd: Option<&IvcsdInfo>,
) -> Vec<u8> {
    let mut info = Dict::new()
        .with("name", source.name.as_str())
        .with("piece length", geometry.piece_length() as i64)
        .with("pieces", pieces.concat());
    if source.directory {
        let files = source
            .files
            .iter()
            .map(|f| {
                let path = f.rel.iter().map(|c| Value::from(c.as_str())).collect();
                Value::from(
                    Dict::new()
                        .with("length", f.length as i64)
                        .with("path", Value::List(path)),
                )
            })
            .collect::<Vec<_>>();
        info = info.with("files", files);
    } else {
        info = info.with("length", source.total_length as i64);
    }
    if let Some(ivcsd) = ivcsd {
        let dict = Dict::new()
            .with("v", i64::from(ivcsd.version))
            .with("cipher", ivcsd.cipher.name())
            .with("key id", ivcsd.key_id.as_bytes())
            .with("check", &ivcsd.check);
        info = info.with("private", 1i64).with("ivcsd", dict);
    }
    let mut top = Dict::new()
        .with("created by", format!("ivcsd/{}", env!("CARGO_PKG_VERSION")))
        .with("info", info);
    if !announce.is_empty() {
        top = top.with("announce", announce);
    }
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        top = top.with("creation date", now.as_secs() as i64);
    }
    Value::from(top).encode()
}

#[cfg(test)]
mod announce_tests {
    use super::announce_credentials;

    #[test]
    fn announce_urls_with_credentials_are_recognised() {
        for (url, expected) in [
            ("http://t:6969/announce", false),
            ("http://t:6969/announce?passkey=1", false),
            ("http://t:6969/announce?a=%zz", false),
            ("http://u:p@t:6969/announce", true),
            ("http://t:6969/announce?username=u&psw=p", true),
            ("http://t:6969/announce?%70sw=p", true),
            ("http://t:6969/announce?token=x", true),
        ] {
            assert_eq!(announce_credentials(url).is_some(), expected, "{url}");
        }
    }
}
