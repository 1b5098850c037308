//! Where a torrent's bytes live (docs/protocol.md section 8), and the cipher at that edge.
//!
//! Two stores, one trait: publishers, seeders and downloaders keep **plaintext** and encrypt
//! each block on its way out ([`PlaintextStore`]); relays keep **ciphertext** exactly as received
//! ([`CiphertextStore`]). Everything above this module (wire, sessions) only ever sees
//! ciphertext. Writes take a whole verified piece: nothing unverified reaches the disk, so
//! verified data is never overwritten by unverified data.
//!
//! All I/O is positional (`pread`/`pwrite`) on files opened once, so many pieces can be read
//! and written at once from blocking threads without a lock. This module is synchronous: call it
//! from `spawn_blocking` or rayon, never from the async reactor.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::crypto::content::{ContentCipher, ContentKey};
use crate::fsutil::FileStamp;
use crate::metainfo::{Info, PieceIndex};

/// A storage failure, naming the file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("error {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is {actual} bytes but the torrent says {expected}", path.display())]
    WrongSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{} changed on disk while it was being seeded (its size or modification time is not what it was when verified): stopped serving it, since downloaders would reject the pieces; when the change is complete, seed it again (its pieces are verified again)",
        path.display()
    )]
    Changed { path: PathBuf },
    #[error("range {start}..{end} is outside the content of {total} bytes")]
    OutOfRange { start: u64, end: u64, total: u64 },
    #[error(
        "not enough disk space in {}: the download needs {} more, {} is free (--no-space-check starts anyway)",
        dir.display(), crate::fsutil::human_bytes(*needed), crate::fsutil::human_bytes(*free)
    )]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        free: u64,
    },
}

impl StorageError {
    /// True when the disk is full (ENOSPC) or the quota is exceeded (EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.raw_os_error() == Some(libc_edquot())
            }
            _ => false,
        }
    }
}

/// EDQUOT on Linux.
const fn libc_edquot() -> i32 {
    122
}

/// Checks, before a download creates its files under `root`, that the file system has room
/// for what the torrent still lacks there: a download of terabytes should stop at once, not
/// when the disk fills hours later. What existing files already occupy counts as present.
///
/// # Errors
/// [`StorageError::NoSpace`], or the free space cannot be read.
pub fn check_space(root: &Path, info: &Info) -> Result<(), StorageError> {
    let needed = space_needed(&root.join(&info.name), info);
    if needed == 0 {
        return Ok(());
    }
    // The nearest directory that exists is on the file system the files will be on.
    let mut dir = root;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    let stat = rustix::fs::statvfs(dir).map_err(|e| StorageError::Io {
        action: "reading the free space of",
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if needed > free {
        return Err(StorageError::NoSpace {
            dir: dir.to_owned(),
            needed,
            free,
        });
    }
    Ok(())
}

/// Bytes the files of `info` at `content` still need on disk: each file's length less what it
/// already occupies (files are sparse until written).
fn space_needed(content: &Path, info: &Info) -> u64 {
    use std::os::unix::fs::MetadataExt;
    info.files
        .iter()
        .map(|entry| {
            let path = file_path(content, entry);
            let occupied = std::fs::metadata(&path).map_or(0, |m| m.blocks().saturating_mul(512));
            entry.length.saturating_sub(occupied)
        })
        .sum()
}

/// Where a file of the torrent lies when the torrent's top-level file or directory is at
/// `content`: every path in the torrent starts with its name, which `content` replaces.
fn file_path(content: &Path, entry: &crate::metainfo::FileEntry) -> PathBuf {
    std::iter::once(content.as_os_str())
        .chain(
            entry
                .path
                .iter()
                .skip(1)
                .map(|c| std::ffi::OsStr::new(c.as_str())),
        )
        .collect()
}

/// How to open the files of a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The files must exist with exactly the torrent's sizes (seeding what one has).
    Existing,
    /// Create missing directories and files and size them (downloading); existing files of
    /// the right size are kept as they are.
    Create,
}

/// The files of one torrent under a root directory, opened once.
#[derive(Debug)]
pub struct ContentFiles {
    /// Invariant: `files[i]` is `info.files[i]`, sized to its length.
    files: Vec<ContentFile>,
    total_length: u64,
}

#[derive(Debug)]
struct ContentFile {
    path: PathBuf,
    file: File,
    /// For files opened as they are ([`OpenMode::Existing`]): the stamp they had then. Every
    /// read compares it with the file's current one, so that content changed under a running
    /// seeder is noticed at the next read instead of being served to downloaders that then
    /// reject every piece of it. `None` for files this process writes itself.
    stamp_at_open: Option<FileStamp>,
}

impl ContentFile {
    /// `result`, with an error naming this file and `action`.
    fn io<T>(&self, action: &'static str, result: io::Result<T>) -> Result<T, StorageError> {
        result.map_err(|source| StorageError::Io {
            action,
            path: self.path.clone(),
            source,
        })
    }

    /// Fails with [`StorageError::Changed`] when the file has another stamp than at opening
    /// (one `fstat`; reads are of whole units, up to 1 MiB).
    fn check_unchanged(&self) -> Result<(), StorageError> {
        let Some(opened) = self.stamp_at_open else {
            return Ok(());
        };
        let now = self.io("reading the modification time of", self.file.metadata())?;
        if FileStamp::of(&now) != Some(opened) {
            return Err(StorageError::Changed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

impl ContentFiles {
    /// Opens (and with [`OpenMode::Create`] creates) the files of `info` under `root`.
    ///
    /// # Errors
    /// A file that cannot be opened or created, or has the wrong size for `Existing`.
    pub fn open(root: &Path, info: &Info, mode: OpenMode) -> Result<Self, StorageError> {
        Self::open_content(&root.join(&info.name), info, mode)
    }

    /// Like [`ContentFiles::open`], with the torrent's top-level file or directory at
    /// `content` whatever its name (`ivcsd peer seed --data PATH`).
    ///
    /// # Errors
    /// As [`ContentFiles::open`].
    pub fn open_content(content: &Path, info: &Info, mode: OpenMode) -> Result<Self, StorageError> {
        let mut files = Vec::with_capacity(info.files.len());
        for entry in &info.files {
            let path = file_path(content, entry);
            let io_err = |action, source| StorageError::Io {
                action,
                path: path.clone(),
                source,
            };
            let file = match mode {
                OpenMode::Existing => {
                    let file = OpenOptions::new()
                        .read(true)
                        .open(&path)
                        .map_err(|e| io_err("opening", e))?;
                    let meta = file
                        .metadata()
                        .map_err(|e| io_err("reading the size of", e))?;
                    if meta.len() != entry.length {
                        return Err(StorageError::WrongSize {
                            path,
                            expected: entry.length,
                            actual: meta.len(),
                        });
                    }
                    (file, FileStamp::of(&meta))
                }
                OpenMode::Create => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| io_err("creating the directory of", e))?;
                    }
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                        .map_err(|e| io_err("creating", e))?;
                    let actual = file
                        .metadata()
                        .map_err(|e| io_err("reading the size of", e))?
                        .len();
                    if actual != entry.length {
                        // Sparse preallocation: the size is right from the start, blocks come
                        // later.
                        file.set_len(entry.length)
                            .map_err(|e| io_err("sizing", e))?;
                    }
                    (file, None)
                }
            };
            let (file, stamp_at_open) = file;
            files.push(ContentFile {
                path,
                file,
                stamp_at_open,
            });
        }
        Ok(ContentFiles {
            files,
            total_length: info.total_length,
        })
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), StorageError> {
        let end = offset.saturating_add(len as u64);
        if end > self.total_length {
            return Err(StorageError::OutOfRange {
                start: offset,
                end,
                total: self.total_length,
            });
        }
        Ok(())
    }

    /// Calls `io(file, range of the caller's buffer, offset in the file)` for each file run of
    /// content bytes `[offset, offset + len)`, in order.
    fn each_segment(
        &self,
        info: &Info,
        offset: u64,
        len: usize,
        mut io: impl FnMut(&ContentFile, std::ops::Range<usize>, u64) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut done = 0usize;
        for seg in info
            .segments(offset..offset + len as u64)
            .into_iter()
            .flatten()
        {
            let seg_len = seg.len as usize; // a segment is never longer than the range
            io(&self.files[seg.file], done..done + seg_len, seg.file_offset)?;
            done += seg_len;
        }
        Ok(())
    }

    /// Reads content bytes `[offset, offset + buf.len())` across files. A file opened as it was
    /// ([`OpenMode::Existing`]) is checked after its part is read: with another size or
    /// modification time than at opening, the read fails with [`StorageError::Changed`], since
    /// what it returned may no longer be the verified content.
    ///
    /// # Errors
    /// The range is outside the content, a read failed, or a file changed.
    pub fn read_at(&self, info: &Info, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.each_segment(info, offset, buf.len(), |f, range, at| {
            f.io("reading", f.file.read_exact_at(&mut buf[range], at))?;
            f.check_unchanged()
        })
    }

    /// Writes content bytes at `offset` across files.
    ///
    /// # Errors
    /// The range is outside the content, or a write failed (a full disk among others).
    pub fn write_at(&self, info: &Info, offset: u64, buf: &[u8]) -> Result<(), StorageError> {
        self.each_segment(info, offset, buf.len(), |f, range, at| {
            f.io("writing", f.file.write_all_at(&buf[range], at))
        })
    }

    /// Flushes every file to stable storage.
    ///
    /// # Errors
    /// A failed fsync.
    pub fn sync(&self) -> Result<(), StorageError> {
        for f in &self.files {
            f.io("syncing", f.file.sync_data())?;
        }
        Ok(())
    }

    /// Each file's path, for resume records.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }
}

/// The two ways a torrent's bytes are kept. Callers see ciphertext only.
pub trait PieceStore: Send + Sync {
    /// Fills `buf` with the **ciphertext** of content bytes `[offset, offset + buf.len())`.
    ///
    /// # Errors
    /// A read failure or a range outside the content.
    fn read_ciphertext(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;

    /// Stores piece `index`, given as verified ciphertext. `ciphertext` may be changed in place
    /// (the plaintext store decrypts it there, without a copy).
    ///
    /// # Errors
    /// A write failure (a full disk among others); the piece is then not stored.
    fn write_piece(&self, index: PieceIndex, ciphertext: &mut [u8]) -> Result<(), StorageError>;

    /// Flushes what was written to stable storage.
    ///
    /// # Errors
    /// A failed fsync.
    fn sync(&self) -> Result<(), StorageError>;

    /// The torrent this store holds.
    fn info(&self) -> &Info;

    /// The files on disk, in the torrent's order (for resume records).
    fn file_paths(&self) -> Vec<PathBuf>;
}

/// Plaintext on disk; blocks are encrypted on the way out and decrypted on the way in.
#[derive(Debug)]
pub struct PlaintextStore {
    files: ContentFiles,
    info: Info,
    cipher: ContentCipher,
}

impl PlaintextStore {
    /// A store of `info`'s content in `files`, encrypted under `key` with the torrent's suite
    /// (`info.ivcsd.cipher`; the protocol's `rc4+` for a torrent without one).
    pub fn new(files: ContentFiles, info: Info, key: ContentKey) -> Self {
        let suite = info.ivcsd.map(|ivcsd| ivcsd.cipher).unwrap_or_default();
        let cipher = ContentCipher::new(suite, &key);
        PlaintextStore {
            files,
            info,
            cipher,
        }
    }
}

impl PieceStore for PlaintextStore {
    fn read_ciphertext(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.files.read_at(&self.info, offset, buf)?;
        self.cipher.apply_keystream(offset, buf);
        Ok(())
    }

    fn write_piece(&self, index: PieceIndex, ciphertext: &mut [u8]) -> Result<(), StorageError> {
        let offset = self.info.piece_offset(index);
        self.cipher.apply_keystream(offset, ciphertext);
        self.files.write_at(&self.info, offset, ciphertext)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.files.sync()
    }

    fn info(&self) -> &Info {
        &self.info
    }

    fn file_paths(&self) -> Vec<PathBuf> {
        self.files.paths().map(Path::to_path_buf).collect()
    }
}

/// Ciphertext on disk, exactly as received: what relays keep. It never has a key.
#[derive(Debug)]
pub struct CiphertextStore {
    files: ContentFiles,
    info: Info,
}

impl CiphertextStore {
    pub fn new(files: ContentFiles, info: Info) -> Self {
        CiphertextStore { files, info }
    }
}

impl PieceStore for CiphertextStore {
    fn read_ciphertext(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.files.read_at(&self.info, offset, buf)
    }

    fn write_piece(&self, index: PieceIndex, ciphertext: &mut [u8]) -> Result<(), StorageError> {
        self.files
            .write_at(&self.info, self.info.piece_offset(index), ciphertext)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.files.sync()
    }

    fn info(&self) -> &Info {
        &self.info
    }

    fn file_paths(&self) -> Vec<PathBuf> {
        self.files.paths().map(Path::to_path_buf).collect()
    }
}

/// Whether `ciphertext` is piece `index` of `info`.
pub fn piece_matches(info: &Info, index: PieceIndex, ciphertext: &[u8]) -> bool {
    let digest: [u8; 20] = Sha1::digest(ciphertext).into();
    &digest == info.piece_hash(index)
}

/// Reads and hashes every piece, on all cores, and returns which ones are intact. Memory is one
/// piece buffer per worker thread.
///
/// `stop` is asked before each piece (from worker threads): once it says yes (shutdown), the
/// remaining pieces are not read and count as not intact, so that a verification of terabytes
/// does not hold up a stop.
pub fn recheck(store: &dyn PieceStore, stop: &(dyn Fn() -> bool + Sync)) -> Vec<bool> {
    use rayon::prelude::*;
    let info = store.info();
    let geometry = info.geometry();
    let pieces: Vec<PieceIndex> = geometry.pieces().collect();
    pieces
        .par_iter()
        .map_init(
            || vec![0u8; info.piece_length as usize],
            |buf, &index| !stop() && piece_intact(store, index, buf),
        )
        .collect()
}

/// Reads piece `index` into `buf` (a piece length long) and says whether it is intact.
fn piece_intact(store: &dyn PieceStore, index: PieceIndex, buf: &mut [u8]) -> bool {
    let info = store.info();
    let piece = &mut buf[..info.piece_len(index) as usize];
    store
        .read_ciphertext(info.piece_offset(index), piece)
        .is_ok()
        && piece_matches(info, index, piece)
}

/// [`recheck`] on the calling thread alone, one piece after another: for a verification
/// that runs while the process serves (`--reverify-every`), so that it takes one core at most
/// and leaves the others to the peers, however long it runs. Same result as [`recheck`].
pub fn recheck_on_one_thread(store: &dyn PieceStore, stop: &dyn Fn() -> bool) -> Vec<bool> {
    let info = store.info();
    let mut buf = vec![0u8; info.piece_length as usize];
    info.geometry()
        .pieces()
        .map(|index| !stop() && piece_intact(store, index, &mut buf))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::create_encrypted;
    use crate::types::KeyId;

    /// A directory with three files of awkward sizes, so pieces straddle files.
    fn content(dir: &Path) -> PathBuf {
        let root = dir.join("set");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let mut seed = 7u32;
        let mut bytes = |n: usize| {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect::<Vec<u8>>()
        };
        std::fs::write(root.join("a.bin"), bytes(40_000)).unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("sub/b.bin"), bytes(70_001)).unwrap();
        root
    }

    /// [`content`] and its torrent in 16 KiB pieces, with the key.
    fn content_torrent(dir: &Path) -> (PathBuf, ContentKey, Info) {
        let root = content(dir);
        let key = ContentKey::generate();
        let info = create_encrypted(&root, &key, KeyId([1; 16]), "", Some(16384))
            .unwrap()
            .metainfo
            .info;
        (root, key, info)
    }

    #[test]
    fn the_space_check_counts_what_is_missing_against_the_real_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _key, info) = content_torrent(dir.path());
        // The content is all there: nothing is needed.
        assert_eq!(space_needed(&root, &info), 0);
        check_space(dir.path(), &info).unwrap();
        // Into an empty directory (not even created yet): every byte is needed, and a
        // little over 100 KB fits.
        let fresh = dir.path().join("not/yet/there");
        assert_eq!(space_needed(&fresh.join("set"), &info), 110_001);
        check_space(&fresh, &info).unwrap();
        // A torrent claiming an exabyte does not fit on the file system tests run on.
        let mut huge = info.clone();
        huge.files[0].length = 1 << 60;
        let err = check_space(&fresh, &huge).unwrap_err();
        let StorageError::NoSpace {
            dir: at,
            needed,
            free,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(at, dir.path(), "the nearest existing directory is checked");
        assert!(*needed > 1 << 60 && free < needed);
        let text = err.to_string();
        assert!(
            text.starts_with("not enough disk space in ") && text.contains("--no-space-check"),
            "{text}"
        );
    }

    #[test]
    fn a_file_changed_after_opening_fails_the_next_read_of_it_and_only_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key, info) = content_torrent(dir.path());
        let seeder = PlaintextStore::new(
            ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap(),
            info.clone(),
            key,
        );
        let mut first = vec![0u8; 1000];
        seeder.read_ciphertext(0, &mut first).unwrap();
        // Same bytes, another modification time: what a rewrite in place leaves.
        let b = root.join("sub/b.bin");
        let file = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        let mtime = file.metadata().unwrap().modified().unwrap();
        file.set_modified(mtime - std::time::Duration::from_secs(60))
            .unwrap();
        let b_start = info.total_length - std::fs::metadata(&b).unwrap().len();
        let mut buf = vec![0u8; 100];
        match seeder.read_ciphertext(b_start, &mut buf) {
            Err(StorageError::Changed { path }) => assert_eq!(path, b),
            other => panic!("expected Changed, got {other:?}"),
        }
        // A range across the changed file fails too; one in the other files still reads.
        let mut across = vec![0u8; 200];
        assert!(matches!(
            seeder.read_ciphertext(b_start - 100, &mut across),
            Err(StorageError::Changed { .. })
        ));
        let mut again = vec![0u8; 1000];
        seeder.read_ciphertext(0, &mut again).unwrap();
        assert_eq!(again, first);

        // Files this process writes itself are not watched: its own writes change them.
        let down_dir = tempfile::tempdir().unwrap();
        let downloader = PlaintextStore::new(
            ContentFiles::open(down_dir.path(), &info, OpenMode::Create).unwrap(),
            info.clone(),
            ContentKey::generate(),
        );
        let piece0 = info.geometry().pieces().next().unwrap();
        let mut piece = vec![0u8; info.piece_len(piece0) as usize];
        downloader.write_piece(piece0, &mut piece).unwrap();
        downloader.read_ciphertext(0, &mut first).unwrap();
    }

    #[test]
    fn plaintext_store_serves_ciphertext_that_verifies_and_relays_store_it_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = content(dir.path());
        let key = ContentKey::generate();
        let created = create_encrypted(&root, &key, KeyId([1; 16]), "", Some(16384)).unwrap();
        let info = created.metainfo.info.clone();

        let seeder = PlaintextStore::new(
            ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap(),
            info.clone(),
            key.clone(),
        );
        let all_ok = recheck(&seeder, &|| false);
        assert!(all_ok.iter().all(|&ok| ok), "a seeder's own data verifies");

        // A downloader and a relay receive the same verified ciphertext.
        let down_dir = tempfile::tempdir().unwrap();
        let relay_dir = tempfile::tempdir().unwrap();
        let downloader = PlaintextStore::new(
            ContentFiles::open(down_dir.path(), &info, OpenMode::Create).unwrap(),
            info.clone(),
            key.clone(),
        );
        let relay = CiphertextStore::new(
            ContentFiles::open(relay_dir.path(), &info, OpenMode::Create).unwrap(),
            info.clone(),
        );
        for index in info.geometry().pieces() {
            let mut piece = vec![0u8; info.piece_len(index) as usize];
            seeder
                .read_ciphertext(info.piece_offset(index), &mut piece)
                .unwrap();
            assert!(piece_matches(&info, index, &piece));
            relay.write_piece(index, &mut piece.clone()).unwrap();
            downloader.write_piece(index, &mut piece).unwrap();
        }
        downloader.sync().unwrap();
        for name in ["a.bin", "empty", "sub/b.bin"] {
            assert_eq!(
                std::fs::read(down_dir.path().join("set").join(name)).unwrap(),
                std::fs::read(root.join(name)).unwrap(),
                "{name}"
            );
        }
        let relay_a = std::fs::read(relay_dir.path().join("set/a.bin")).unwrap();
        assert_ne!(
            relay_a,
            std::fs::read(root.join("a.bin")).unwrap(),
            "relays hold no plaintext"
        );
        assert!(recheck(&relay, &|| false).iter().all(|&ok| ok));

        // A block read at an odd offset equals the same bytes of the whole piece.
        let mut whole = vec![0u8; 16384];
        seeder.read_ciphertext(16384, &mut whole).unwrap();
        let mut part = vec![0u8; 1000];
        seeder.read_ciphertext(16384 + 123, &mut part).unwrap();
        assert_eq!(&part[..], &whole[123..1123]);
    }

    #[test]
    fn damaged_data_and_bad_ranges_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (root, key, info) = content_torrent(dir.path());
        // Flip one byte in the second file: the pieces that cover it fail, others pass.
        let b = root.join("sub/b.bin");
        let mut bytes = std::fs::read(&b).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&b, &bytes).unwrap();
        let store = PlaintextStore::new(
            ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap(),
            info.clone(),
            key,
        );
        let ok = recheck(&store, &|| false);
        let bad: Vec<usize> = ok
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, vec![(40_000 + 100) / 16384]);
        assert_eq!(recheck_on_one_thread(&store, &|| false), ok);
        // Asked to stop, it reads no more: what it did not check counts as not intact.
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let ok = recheck(&store, &|| {
            asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 2
        });
        assert!(ok.iter().filter(|ok| **ok).count() <= 2, "{ok:?}");
        assert_eq!(asked.into_inner(), ok.len());
        let asked = std::cell::Cell::new(0);
        let ok = recheck_on_one_thread(&store, &|| {
            asked.set(asked.get() + 1);
            asked.get() > 2
        });
        assert_eq!(ok.iter().filter(|ok| **ok).count(), 2, "{ok:?}");
        assert_eq!(asked.get(), ok.len());

        let mut buf = [0u8; 10];
        assert!(matches!(
            store.read_ciphertext(info.total_length - 5, &mut buf),
            Err(StorageError::OutOfRange { .. })
        ));

        std::fs::write(root.join("a.bin"), b"short").unwrap();
        let err = ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::WrongSize {
                    expected: 40_000,
                    actual: 5,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(root.join("a.bin")).unwrap();
        let err = ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap_err();
        assert!(err.to_string().starts_with("error opening"), "{err}");
    }
}
