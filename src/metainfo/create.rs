//! Building a torrent from a file or a directory (SPEC 5).
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
//! - every name must pass the same [`check_name`] that parsing applies, so ivcsd never writes a
//!   torrent that ivcsd would refuse.
//!
//! Call this off the async reactor (`spawn_blocking`), and not from inside the rayon pool: it
//! blocks on file reads and on the pool.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::geometry::{Geometry, GeometryError, check_piece_length, default_piece_length};
use super::parse::{MetainfoError, NameProblem, check_name};
use super::{Cipher, IvcsdInfo, Metainfo};
use crate::bencode::{Dict, Value};
use crate::crypto::content::{ContentKey, apply_keystream};
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
    #[error("{} is a symbolic link; links are not followed inside a torrent's directory", path.display())]
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
    #[error("{}: the total length does not fit in 64 bits", path.display())]
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
/// defaults to [`default_piece_length`].
///
/// # Errors
/// See [`CreateError`].
pub fn create_plain(
    path: &Path,
    announce: &str,
    piece_length: Option<u64>,
) -> Result<CreatedTorrent, CreateError> {
    create(path, announce, piece_length, None)
}

/// Builds an encrypted ivcsd torrent (SPEC 5) of the file or directory at `path`: `pieces` are
/// SHA-1 of the ciphertext under `key`, `info.private = 1`, and `info.ivcsd` carries `key_id`
/// and `key.key_check()`. The plaintext is read in batches and never held whole; nothing is
/// written to disk.
///
/// `announce` is the tracker's /announce URL without credentials (an empty string leaves it
/// out); `piece_length` defaults to [`default_piece_length`].
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
    let transform = |offset: u64, buf: &mut [u8]| apply_keystream(key, offset, buf);
    let encryption = Encryption {
        transform: &transform,
        ivcsd: IvcsdInfo {
            version: 1,
            cipher: Cipher::Rc4Plus,
            key_id,
            check: key.key_check(),
        },
    };
    create(path, announce, piece_length, Some(encryption))
}

/// Encrypts content in place: `buf` holds content bytes from absolute offset `offset`.
type Transform<'a> = &'a (dyn Fn(u64, &mut [u8]) + Sync);

/// What an encrypted torrent adds to a plain one.
struct Encryption<'a> {
    transform: Transform<'a>,
    ivcsd: IvcsdInfo,
}

/// The one builder behind [`create_plain`] and [`create_encrypted`].
fn create(
    path: &Path,
    announce: &str,
    piece_length: Option<u64>,
    encryption: Option<Encryption<'_>>,
) -> Result<CreatedTorrent, CreateError> {
    check_announce(announce)?;
    if let Some(piece_length) = piece_length {
        // Before the scan, which may walk a large tree.
        check_piece_length(piece_length).map_err(CreateError::PieceLength)?;
    }
    let source = scan(path)?;
    let piece_length = piece_length.unwrap_or_else(|| default_piece_length(source.total_length));
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

/// Refuses an announce URL with a user:password part or credential query parameters
/// (SPEC 5: "without credentials; clients add their own").
fn check_announce(url: &str) -> Result<(), CreateError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err(CreateError::AnnounceCredentials {
            what: "a user name in the host part",
        });
    }
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    let query = query.split('#').next().unwrap_or(query);
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or(pair);
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        if ["username", "psw", "token"].contains(&key.as_ref()) {
            return Err(CreateError::AnnounceCredentials {
                what: "a username, psw or token parameter",
            });
        }
    }
    Ok(())
}

/// One file to read: where it is on disk and where it goes in the torrent.
struct SourceFile {
    fs_path: PathBuf,
    /// Components below the torrent's name; empty for a single-file torrent.
    rel: Vec<String>,
    length: u64,
}

struct Source {
    name: String,
    /// True when `path` is a directory (a multi-file torrent, even with one file inside).
    directory: bool,
    files: Vec<SourceFile>,
    total_length: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |error| CreateError::Io {
        path: path.to_owned(),
        error,
    }
}

fn checked_name(os: &std::ffi::OsStr, path: &Path) -> Result<String, CreateError> {
    let name = os.to_str().ok_or_else(|| CreateError::NotUtf8 {
        path: path.to_owned(),
    })?;
    check_name(name).map_err(|problem| CreateError::UnsafeName {
        path: path.to_owned(),
        name: name.escape_debug().to_string(),
        problem,
    })?;
    Ok(name.to_owned())
}

fn scan(path: &Path) -> Result<Source, CreateError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let name_os = match path.file_name() {
        Some(n) => n.to_owned(),
        // "." or "/": name the torrent after the directory it resolves to.
        None => std::fs::canonicalize(path)
            .map_err(io_err(path))?
            .file_name()
            .ok_or_else(|| CreateError::NoName {
                path: path.to_owned(),
            })?
            .to_owned(),
    };
    let name = checked_name(&name_os, path)?;
    let mut files = Vec::new();
    let directory = if meta.is_file() {
        files.push(SourceFile {
            fs_path: path.to_owned(),
            rel: Vec::new(),
            length: meta.len(),
        });
        false
    } else if meta.is_dir() {
        walk(path, &mut Vec::new(), &mut files)?;
        true
    } else {
        return Err(CreateError::SpecialFile {
            path: path.to_owned(),
        });
    };
    let total_length = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or_else(|| CreateError::TooLarge {
            path: path.to_owned(),
        })?;
    if total_length == 0 {
        return Err(CreateError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Source {
        name,
        directory,
        files,
        total_length,
    })
}

/// Appends the files below `dir` in sorted order; `rel` is `dir`'s path below the root.
fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<SourceFile>) -> Result<(), CreateError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let name = checked_name(&entry.file_name(), &path)?;
        let file_type = entry.file_type().map_err(io_err(&path))?;
        entries.push((name, path, file_type));
    }
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, path, file_type) in entries {
        if file_type.is_symlink() {
            return Err(CreateError::Symlink { path });
        } else if file_type.is_dir() {
            rel.push(name);
            walk(&path, rel, out)?;
            rel.pop();
        } else if file_type.is_file() {
            let length = std::fs::symlink_metadata(&path)
                .map_err(io_err(&path))?
                .len();
            let mut file_rel = rel.clone();
            file_rel.push(name);
            out.push(SourceFile {
                fs_path: path,
                rel: file_rel,
                length,
            });
        } else {
            return Err(CreateError::SpecialFile { path });
        }
    }
    Ok(())
}

/// Reads the concatenated content of the source files, in order, into buffers.
struct ContentReader<'a> {
    files: &'a [SourceFile],
    /// Index of the file being read, and its handle with the bytes still to read.
    current: Option<(usize, File, u64)>,
    next_file: usize,
}

impl<'a> ContentReader<'a> {
    fn new(files: &'a [SourceFile]) -> Self {
        ContentReader {
            files,
            current: None,
            next_file: 0,
        }
    }

    /// After the last batch: the file read last must end where the scan said it did.
    fn finish(&mut self) -> Result<(), CreateError> {
        if let Some((index, file, 0)) = &mut self.current {
            let source = &self.files[*index];
            let mut probe = [0u8; 1];
            if file.read(&mut probe).map_err(io_err(&source.fs_path))? != 0 {
                return Err(CreateError::FileChanged {
                    path: source.fs_path.clone(),
                    expected: source.length,
                });
            }
        }
        self.current = None;
        Ok(())
    }

    /// Fills all of `buf` with the next content bytes.
    fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), CreateError> {
        while !buf.is_empty() {
            let (index, file, left) = match &mut self.current {
                Some(current) => current,
                None => {
                    let Some(source) = self.files.get(self.next_file) else {
                        // The lengths were summed from these files, so this means a bug.
                        return Err(CreateError::FileChanged {
                            path: self
                                .files
                                .last()
                                .map(|f| f.fs_path.clone())
                                .unwrap_or_default(),
                            expected: self.files.last().map_or(0, |f| f.length),
                        });
                    };
                    let file = File::open(&source.fs_path).map_err(io_err(&source.fs_path))?;
                    self.current = Some((self.next_file, file, source.length));
                    self.next_file += 1;
                    continue;
                }
            };
            let source = &self.files[*index];
            if *left == 0 {
                // The file must end exactly where the scan said it did.
                let mut probe = [0u8; 1];
                if file.read(&mut probe).map_err(io_err(&source.fs_path))? != 0 {
                    return Err(CreateError::FileChanged {
                        path: source.fs_path.clone(),
                        expected: source.length,
                    });
                }
                self.current = None;
                continue;
            }
            let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(CreateError::FileChanged {
                        path: source.fs_path.clone(),
                        expected: source.length,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&source.fs_path)(e)),
            };
            *left -= n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

/// SHA-1 of every piece of the content, after `transform` when given.
fn hash_pieces(
    files: &[SourceFile],
    geometry: &Geometry,
    transform: Option<Transform<'_>>,
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

/// The bencoded torrent. Keys are sorted by the encoder.
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
