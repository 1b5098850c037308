//! The one rule for file and directory names inside a download directory, shared by parsing
//! (names from a torrent) and creation (names from the disk), so ivcsd never writes a torrent
//! it would refuse. The rules hold on Linux, macOS and Windows: a torrent made on one system
//! must not write outside the download directory on another.

use std::fmt;

/// What makes a file or directory name unsafe to create inside a download directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// `""`: `a//b`, or a path that starts at the root.
    Empty,
    /// `..`: would climb out of the download directory.
    DotDot,
    /// `.`: names the directory itself, not a file.
    Dot,
    /// Starts with `/` or `\`, or a Windows drive (`C:`).
    Absolute,
    /// Contains `/` or `\`: one component must not become several.
    Separator,
    /// Contains a NUL byte, which ends a name at the system call.
    Nul,
    /// Contains another control character (0x01 to 0x1f, 0x7f): refused by Windows, and it
    /// would reach terminals through `torrent show`.
    Control,
    /// Contains `:`, the drive and alternate-stream separator on Windows (`C:x` leaves the
    /// directory there).
    Colon,
    /// `CON`, `NUL`, `COM1`, `LPT1`, ... (with any extension, any case): devices on Windows.
    Reserved,
    /// Ends with `.` or a space, which Windows strips, so two names would alias.
    TrailingDotOrSpace,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "is an empty name",
            NameProblem::DotDot => "would escape the download directory",
            NameProblem::Dot => "is not a file name",
            NameProblem::Absolute => "is an absolute path",
            NameProblem::Separator => "contains a path separator",
            NameProblem::Nul => "contains a NUL byte",
            NameProblem::Control => "contains a control character",
            NameProblem::Colon => "contains ':', a drive or stream separator on Windows",
            NameProblem::Reserved => "is a reserved device name on Windows",
            NameProblem::TrailingDotOrSpace => "ends with a dot or a space",
        })
    }
}

/// Device names Windows reserves, with or without an extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6",
    "LPT7", "LPT8", "LPT9",
];

/// Checks that `name` is one safe path component (the rules of [`NameProblem`]). Torrent
/// creation uses the same check, so ivcsd never writes a torrent it would refuse.
///
/// # Errors
/// The first problem found.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    match name {
        "" => return Err(NameProblem::Empty),
        "." => return Err(NameProblem::Dot),
        ".." => return Err(NameProblem::DotDot),
        _ => {}
    }
    let bytes = name.as_bytes();
    if bytes[0] == b'/' || bytes[0] == b'\\' {
        return Err(NameProblem::Absolute);
    }
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(NameProblem::Absolute);
    }
    for &b in bytes {
        match b {
            b'/' | b'\\' => return Err(NameProblem::Separator),
            0 => return Err(NameProblem::Nul),
            0x01..=0x1f | 0x7f => return Err(NameProblem::Control),
            b':' => return Err(NameProblem::Colon),
            _ => {}
        }
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(NameProblem::TrailingDotOrSpace);
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    if (3..=7).contains(&stem.len()) && RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err(NameProblem::Reserved);
    }
    Ok(())
}
