//! The content of a torrent being created: which files, in which order, with which names
//! (see the directory decisions in `create.rs`), and a reader of their concatenated bytes that
//! notices files changing under it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::create::CreateError;
use super::names::check_name;

/// One file to read: where it is on disk and where it goes in the torrent.
pub(super) struct SourceFile {
    pub(super) fs_path: PathBuf,
    /// Components below the torrent's name; empty for a single-file torrent.
    pub(super) rel: Vec<String>,
    pub(super) length: u64,
}

pub(super) struct Source {
    pub(super) name: String,
    /// True when `path` is a directory (a multi-file torrent, even with one file inside).
    pub(super) directory: bool,
    pub(super) files: Vec<SourceFile>,
    pub(super) total_length: u64,
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

pub(super) fn scan(path: &Path) -> Result<Source, CreateError> {
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
    // Bencode integers are i64: every length written, the total included, must fit.
    let total_length = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .filter(|&total| i64::try_from(total).is_ok())
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
pub(super) struct ContentReader<'a> {
    files: &'a [SourceFile],
    /// Index of the file being read, and its handle with the bytes still to read.
    current: Option<(usize, File, u64)>,
    next_file: usize,
}

impl<'a> ContentReader<'a> {
    pub(super) fn new(files: &'a [SourceFile]) -> Self {
        ContentReader {
            files,
            current: None,
            next_file: 0,
        }
    }

    /// After the last batch: the file read last must end where the scan said it did.
    pub(super) fn finish(&mut self) -> Result<(), CreateError> {
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
    pub(super) fn fill(&mut self, mut buf: &mut [u8]) -> Result<(), CreateError> {
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
