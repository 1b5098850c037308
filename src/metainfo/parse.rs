//! Parsing and validation of a torrent file into a [`Metainfo`].
//!
//! Decisions (docs/protocol.md 5 leaves them open; they are documented here and in the report):
//! - **Names and paths must be UTF-8** (BEP 3). When `name.utf-8` / `path.utf-8` is present it is
//!   preferred over `name` / `path` (some old clients wrote a legacy code page in `name` and
//!   UTF-8 there); otherwise a non-UTF-8 name is refused, not guessed at.
//! - **Every path component must be safe on Linux, macOS and Windows**, see [`NameProblem`]:
//!   a torrent made on one system must not write outside the download directory on another.
//!   Case-insensitive collisions (`a` and `A`) are not refused: they are fine where most
//!   ivcsd peers run, and storage opening an existing file fails cleanly elsewhere.
//! - Two files with the same path, or a file whose path is also a directory of another file,
//!   are refused.
//! - `private` must be 0 or 1; `info.ivcsd` must be exactly docs/protocol.md 5's four keys.
//! - Cosmetic top-level fields (`comment`, `created by`) are decoded lossily; every other field
//!   must have the right type.
//! - Unknown keys are kept (they are inside the hashed raw `info`) and otherwise ignored,
//!   except inside `info.ivcsd`, which is ours and versioned by `v`.
//!
//! Checks run in a fixed order: name, files and lengths, piece length, pieces, private, ivcsd.

use std::collections::HashMap;
use std::fmt;

use sha1::{Digest, Sha1};

use super::geometry::{Geometry, GeometryError, check_piece_length};
use super::names::{NameProblem, check_name};
use super::{Cipher, FileEntry, Info, IvcsdInfo, Layout, Metainfo};
use crate::bencode::{self, DecodeError, Dict, Value};
use crate::types::{InfoHash, KeyId};

/// Why a torrent file is not valid. Each message names the field, BEP 3 style
/// (`info.files[3].path[1]`), and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The message includes the decoder's, so it is not also a `source` (no repeat in chains).
    #[error("not bencode: {0}")]
    Bencode(DecodeError),
    #[error("{at}: expected {expected}, found {found}")]
    WrongType {
        at: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{at} is missing")]
    Missing { at: String },
    #[error("{at} is {value}, a negative length")]
    NegativeLength { at: String, value: i64 },
    #[error("{at}: the total length of the files does not fit in 64 bits")]
    TotalLengthOverflow { at: String },
    #[error("info has both 'length' (single file) and 'files' (multi-file)")]
    BothLengthAndFiles,
    #[error("info has neither 'length' (single file) nor 'files' (multi-file)")]
    NeitherLengthNorFiles,
    #[error("info.files is empty")]
    EmptyFileList,
    #[error("{at} is an empty list: a file needs a name")]
    EmptyPath { at: String },
    #[error("{at} is not UTF-8 (BEP 3 names are UTF-8) and there is no UTF-8 alternative")]
    NotUtf8 { at: String },
    #[error("{at}: '{name}' {problem}")]
    UnsafeName {
        at: String,
        name: String,
        problem: NameProblem,
    },
    #[error("{at}: '{path}' is also the path of {other}")]
    DuplicatePath {
        at: String,
        path: String,
        other: String,
    },
    #[error("{at}: '{path}' lies inside '{file}', which is a file ({other})")]
    PathInsideFile {
        at: String,
        path: String,
        file: String,
        other: String,
    },
    #[error("info.piece length {value} is not a power of two of at least 16384")]
    BadPieceLength { value: i64 },
    #[error("info.piece length {value} is larger than 268435456 (256 MiB)")]
    PieceLengthTooLarge { value: i64 },
    #[error("info: the content is empty (total length 0)")]
    EmptyContent,
    #[error("info: {count} pieces is more than 4294967295")]
    TooManyPieces { count: u64 },
    #[error("info.pieces is {len} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20 { len: usize },
    #[error(
        "info.pieces has {found} hashes but {total_length} bytes at piece length {piece_length} \
         make {expected} pieces"
    )]
    PieceCountMismatch {
        found: u64,
        expected: u64,
        total_length: u64,
        piece_length: u64,
    },
    #[error("info.private is {value}, expected 0 or 1")]
    BadPrivate { value: i64 },
    #[error("info.ivcsd.v is {found}; this ivcsd understands version 1")]
    IvcsdVersion { found: i64 },
    #[error(
        "info.ivcsd.cipher '{cipher}' is not supported (known: {})",
        Cipher::known_names()
    )]
    UnknownCipher { cipher: String },
    #[error("info.ivcsd has an unknown key '{key}'")]
    UnknownIvcsdKey { key: String },
    #[error("{at} is {found} bytes, expected {expected}")]
    WrongLength {
        at: String,
        expected: usize,
        found: usize,
    },
}

impl From<DecodeError> for MetainfoError {
    fn from(e: DecodeError) -> Self {
        MetainfoError::Bencode(e)
    }
}

impl Metainfo {
    /// Parses and validates a torrent file (any BitTorrent v1 torrent, ivcsd's or not).
    ///
    /// # Errors
    /// A [`MetainfoError`] naming the first problem found and where.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode(bytes)?;
        let top = as_dict(&root, &"torrent")?;
        let info_dict = as_dict(required(top, "info", &"")?, &"info")?;
        let Some(raw_info) = info_dict.raw() else {
            unreachable!("a dictionary straight from the decoder keeps its raw bytes")
        };
        let info_hash = InfoHash(Sha1::digest(raw_info).into());
        let info = parse_info(info_dict)?;
        Ok(Metainfo {
            announce: optional(top, "announce")
                .map(|v| utf8(v, &"announce"))
                .transpose()?,
            announce_list: parse_announce_list(top)?,
            info_hash,
            info,
            created_by: optional(top, "created by")
                .map(|v| lossy(v, &"created by"))
                .transpose()?,
            creation_date: optional(top, "creation date")
                .map(|v| int(v, &"creation date"))
                .transpose()?,
            comment: optional(top, "comment")
                .map(|v| lossy(v, &"comment"))
                .transpose()?,
        })
    }
}

fn parse_info(info: &Dict<'_>) -> Result<Info, MetainfoError> {
    let name = utf8_preferred(info, "name", &"info")?;
    check_component(&name, &"info.name")?;

    let (layout, files, total_length) = match (info.get(b"length"), info.get(b"files")) {
        (Some(_), Some(_)) => return Err(MetainfoError::BothLengthAndFiles),
        (None, None) => return Err(MetainfoError::NeitherLengthNorFiles),
        (Some(length), None) => {
            let length = non_negative(length, &"info.length")?;
            let file = FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
            };
            (Layout::SingleFile, vec![file], length)
        }
        (None, Some(files)) => {
            let (files, total) = parse_files(files, &name)?;
            (Layout::MultiFile, files, total)
        }
    };

    let piece_length = int(
        required(info, "piece length", &"info")?,
        &"info.piece length",
    )?;
    let piece_length_u64 =
        u64::try_from(piece_length).map_err(|_| MetainfoError::BadPieceLength {
            value: piece_length,
        })?;
    let geometry = Geometry::new(piece_length_u64, total_length).map_err(|e| match e {
        GeometryError::PieceLength(_) => MetainfoError::BadPieceLength {
            value: piece_length,
        },
        GeometryError::PieceLengthTooLarge(_) => MetainfoError::PieceLengthTooLarge {
            value: piece_length,
        },
        GeometryError::Empty => MetainfoError::EmptyContent,
        GeometryError::TooManyPieces { count } => MetainfoError::TooManyPieces { count },
    })?;
    // check_piece_length passed inside Geometry::new; keep the two in step.
    debug_assert!(check_piece_length(piece_length_u64).is_ok());

    let pieces_raw = bytes(required(info, "pieces", &"info")?, &"info.pieces")?;
    if pieces_raw.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20 {
            len: pieces_raw.len(),
        });
    }
    let found = (pieces_raw.len() / 20) as u64;
    let expected = u64::from(geometry.piece_count());
    if found != expected {
        return Err(MetainfoError::PieceCountMismatch {
            found,
            expected,
            total_length,
            piece_length: piece_length_u64,
        });
    }
    let pieces = pieces_raw
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();

    let private = match optional(info, "private") {
        None => false,
        Some(v) => match int(v, &"info.private")? {
            0 => false,
            1 => true,
            value => return Err(MetainfoError::BadPrivate { value }),
        },
    };

    let ivcsd = optional(info, "ivcsd").map(parse_ivcsd).transpose()?;

    Ok(Info {
        name,
        piece_length: piece_length_u64,
        pieces,
        layout,
        files,
        total_length,
        private,
        ivcsd,
        geometry,
    })
}

/// Where in `info.files` something is, formatted only when an error needs it (a 40,000-file
/// torrent would otherwise format hundreds of thousands of strings it never shows).
#[derive(Clone, Copy)]
struct FileLoc {
    index: usize,
    /// `""`, `".length"`, `".path"` or `".path.utf-8"`.
    field: &'static str,
    /// A path component's index.
    part: Option<usize>,
}

impl fmt::Display for FileLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "info.files[{}]{}", self.index, self.field)?;
        if let Some(part) = self.part {
            write!(f, "[{part}]")?;
        }
        Ok(())
    }
}

/// `info.files`: lengths, safe paths, offsets, and no two files on one path.
fn parse_files(files: &Value<'_>, name: &str) -> Result<(Vec<FileEntry>, u64), MetainfoError> {
    let list = as_list(files, &"info.files")?;
    if list.is_empty() {
        return Err(MetainfoError::EmptyFileList);
    }
    let mut out = Vec::with_capacity(list.len());
    let mut offset: u64 = 0;
    for (index, entry) in list.iter().enumerate() {
        let at = FileLoc {
            index,
            field: "",
            part: None,
        };
        let d = as_dict(entry, &at)?;
        let length_at = FileLoc {
            field: ".length",
            ..at
        };
        let length = non_negative(required(d, "length", &at)?, &length_at)?;
        let path = parse_path(d, at, name)?;
        let start = offset;
        offset = offset
            .checked_add(length)
            .ok_or_else(|| MetainfoError::TotalLengthOverflow {
                at: length_at.to_string(),
            })?;
        out.push(FileEntry {
            path,
            length,
            offset: start,
        });
    }
    check_collisions(&out)?;
    Ok((out, offset))
}

/// `info.files[i].path` (or `path.utf-8`), with the torrent name in front.
fn parse_path(d: &Dict<'_>, at: FileLoc, name: &str) -> Result<Vec<String>, MetainfoError> {
    let (field, value) = match d.get(b"path.utf-8") {
        Some(v) => (".path.utf-8", v),
        None => (".path", required(d, "path", &at)?),
    };
    let at = FileLoc { field, ..at };
    let components = as_list(value, &at)?;
    if components.is_empty() {
        return Err(MetainfoError::EmptyPath { at: at.to_string() });
    }
    let mut path = Vec::with_capacity(components.len() + 1);
    path.push(name.to_owned());
    for (j, c) in components.iter().enumerate() {
        let at_j = FileLoc {
            part: Some(j),
            ..at
        };
        let s = utf8(c, &at_j)?;
        check_component(&s, &at_j)?;
        path.push(s);
    }
    Ok(path)
}

/// Refuses two files on the same path, and a file inside another file's path.
///
/// The paths are put in a tree of components, so each component is hashed once (hashing whole
/// paths and their prefixes cost about 14% of parsing a 40,000-file torrent; sorting them cost
/// more, as they share long prefixes).
fn check_collisions(files: &[FileEntry]) -> Result<(), MetainfoError> {
    /// A directory or file of the content.
    struct Node<'a> {
        /// The file at this path, if one ends here.
        file: Option<usize>,
        /// The first file seen at or below this path, for error messages.
        first: usize,
        children: HashMap<&'a str, Node<'a>>,
    }
    let inside = |i: usize, file: &[String], other: usize| MetainfoError::PathInsideFile {
        at: format!("info.files[{i}].path"),
        path: files[i].path.join("/"),
        file: file.join("/"),
        other: format!("info.files[{other}]"),
    };
    // path[0] is the torrent's name, the same for every file.
    let mut root = Node {
        file: None,
        first: 0,
        children: HashMap::new(),
    };
    for (i, f) in files.iter().enumerate() {
        let mut node = &mut root;
        for (depth, component) in f.path.iter().enumerate().skip(1) {
            if let Some(other) = node.file {
                return Err(inside(i, &f.path[..depth], other));
            }
            node = node.children.entry(component).or_insert_with(|| Node {
                file: None,
                first: i,
                children: HashMap::new(),
            });
        }
        if let Some(other) = node.file {
            return Err(MetainfoError::DuplicatePath {
                at: format!("info.files[{i}].path"),
                path: f.path.join("/"),
                other: format!("info.files[{other}]"),
            });
        }
        if !node.children.is_empty() {
            // An earlier file lies inside this one's path.
            return Err(inside(node.first, &f.path, i));
        }
        node.file = Some(i);
    }
    Ok(())
}

fn check_component(name: &str, at: &dyn fmt::Display) -> Result<(), MetainfoError> {
    check_name(name).map_err(|problem| MetainfoError::UnsafeName {
        at: at.to_string(),
        name: name.escape_debug().to_string(),
        problem,
    })
}

fn parse_ivcsd(v: &Value<'_>) -> Result<IvcsdInfo, MetainfoError> {
    const AT: &str = "info.ivcsd";
    const KNOWN: [&[u8]; 4] = [b"check", b"cipher", b"key id", b"v"];
    let d = as_dict(v, &AT)?;
    if let Some((key, _)) = d.iter().find(|(k, _)| !KNOWN.contains(k)) {
        return Err(MetainfoError::UnknownIvcsdKey {
            key: String::from_utf8_lossy(key).escape_debug().to_string(),
        });
    }
    let version = int(required(d, "v", &AT)?, &"info.ivcsd.v")?;
    if version != 1 {
        return Err(MetainfoError::IvcsdVersion { found: version });
    }
    let cipher_name = bytes(required(d, "cipher", &AT)?, &"info.ivcsd.cipher")?;
    let cipher = Cipher::from_name(cipher_name).ok_or_else(|| MetainfoError::UnknownCipher {
        cipher: String::from_utf8_lossy(cipher_name)
            .escape_debug()
            .to_string(),
    })?;
    let key_id = fixed::<16>(required(d, "key id", &AT)?, &"info.ivcsd.key id")?;
    let check = fixed::<8>(required(d, "check", &AT)?, &"info.ivcsd.check")?;
    Ok(IvcsdInfo {
        version: 1,
        cipher,
        key_id: KeyId(key_id),
        check,
    })
}

/// BEP 12 `announce-list`: a list of tiers, each a list of URLs.
fn parse_announce_list(top: &Dict<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    let Some(v) = optional(top, "announce-list") else {
        return Ok(Vec::new());
    };
    let tiers = as_list(v, &"announce-list")?;
    let mut out = Vec::with_capacity(tiers.len());
    for (i, tier) in tiers.iter().enumerate() {
        let at = format!("announce-list[{i}]");
        let urls = as_list(tier, &at)?;
        let tier = urls
            .iter()
            .enumerate()
            .map(|(j, u)| utf8(u, &format!("{at}[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(tier);
    }
    Ok(out)
}

// ---- typed access with located errors ----

fn join(at: &dyn fmt::Display, key: &str) -> String {
    let at = at.to_string();
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn optional<'d, 'a>(d: &'d Dict<'a>, key: &str) -> Option<&'d Value<'a>> {
    d.get(key.as_bytes())
}

fn required<'d, 'a>(
    d: &'d Dict<'a>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<&'d Value<'a>, MetainfoError> {
    d.get(key.as_bytes())
        .ok_or_else(|| MetainfoError::Missing { at: join(at, key) })
}

fn wrong(v: &Value<'_>, at: &dyn fmt::Display, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType {
        at: at.to_string(),
        expected,
        found: match v {
            Value::Int(_) => "an integer",
            Value::Bytes(_) => "a string",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dictionary",
        },
    }
}

fn as_dict<'d, 'a>(v: &'d Value<'a>, at: &dyn fmt::Display) -> Result<&'d Dict<'a>, MetainfoError> {
    v.as_dict().ok_or_else(|| wrong(v, at, "a dictionary"))
}

fn as_list<'d, 'a>(
    v: &'d Value<'a>,
    at: &dyn fmt::Display,
) -> Result<&'d [Value<'a>], MetainfoError> {
    v.as_list().ok_or_else(|| wrong(v, at, "a list"))
}

fn int(v: &Value<'_>, at: &dyn fmt::Display) -> Result<i64, MetainfoError> {
    v.as_int().ok_or_else(|| wrong(v, at, "an integer"))
}

fn bytes<'d>(v: &'d Value<'_>, at: &dyn fmt::Display) -> Result<&'d [u8], MetainfoError> {
    v.as_bytes().ok_or_else(|| wrong(v, at, "a string"))
}

fn utf8(v: &Value<'_>, at: &dyn fmt::Display) -> Result<String, MetainfoError> {
    let b = bytes(v, at)?;
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| MetainfoError::NotUtf8 { at: at.to_string() })
}

fn lossy(v: &Value<'_>, at: &dyn fmt::Display) -> Result<String, MetainfoError> {
    Ok(String::from_utf8_lossy(bytes(v, at)?).into_owned())
}

/// `key.utf-8` when present, else `key`, which must then be UTF-8.
fn utf8_preferred(d: &Dict<'_>, key: &str, at: &dyn fmt::Display) -> Result<String, MetainfoError> {
    let alt = format!("{key}.utf-8");
    match d.get(alt.as_bytes()) {
        Some(v) => utf8(v, &join(at, &alt)),
        None => utf8(required(d, key, at)?, &join(at, key)),
    }
}

fn non_negative(v: &Value<'_>, at: &dyn fmt::Display) -> Result<u64, MetainfoError> {
    let value = int(v, at)?;
    u64::try_from(value).map_err(|_| MetainfoError::NegativeLength {
        at: at.to_string(),
        value,
    })
}

fn fixed<const N: usize>(v: &Value<'_>, at: &dyn fmt::Display) -> Result<[u8; N], MetainfoError> {
    let b = bytes(v, at)?;
    <[u8; N]>::try_from(b).map_err(|_| MetainfoError::WrongLength {
        at: at.to_string(),
        expected: N,
        found: b.len(),
    })
}
