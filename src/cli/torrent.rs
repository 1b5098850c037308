//! `ivcsd torrent …`: inspect torrent files.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use ivcsd::fsutil::human_bytes;
use ivcsd::metainfo::{Layout, Metainfo};

#[derive(Debug, Args)]
pub struct TorrentArgs {
    #[command(subcommand)]
    pub command: TorrentCommand,
}

#[derive(Debug, Subcommand)]
pub enum TorrentCommand {
    /// Print a torrent's name, info hash, size, files, pieces, flags and, for ivcsd torrents,
    /// its cipher and key id. Works on any BitTorrent v1 torrent.
    Show {
        /// The .torrent file.
        file: PathBuf,
        /// List at most this many files (0: all of them).
        #[arg(long, default_value_t = 20)]
        max_files: usize,
    },
}

pub fn run(args: TorrentArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        TorrentCommand::Show { file, max_files } => {
            let metainfo = ivcsd::metainfo::file::read(&file)?;
            let text = show(&metainfo, max_files);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// The human-readable description printed by `torrent show`. Paths in a valid torrent hold no
/// control characters; the free-text fields are escaped before they reach the terminal.
fn show(m: &Metainfo, max_files: usize) -> String {
    let info = &m.info;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(s, "{:<14}{value}", format!("{label}:"));
    };
    line("name", &info.name);
    line("info hash", &m.info_hash.to_hex());
    line(
        "total size",
        &format!(
            "{} bytes ({})",
            info.total_length,
            human_bytes(info.total_length)
        ),
    );
    line(
        "piece length",
        &format!(
            "{} bytes ({})",
            info.piece_length,
            human_bytes(info.piece_length)
        ),
    );
    line("pieces", &info.piece_count().to_string());
    line("private", if info.private { "yes" } else { "no" });
    match &info.ivcsd {
        Some(iv) => {
            line(
                "encryption",
                &format!("ivcsd v{}, cipher {}", iv.version, iv.cipher),
            );
            line("key id", &iv.key_id.to_hex());
        }
        None => line("encryption", "none (a plain BitTorrent torrent)"),
    }
    line(
        "announce",
        &m.announce.as_deref().map_or("(none)".into(), escape),
    );
    for (i, tier) in m.announce_list.iter().enumerate() {
        let urls: Vec<String> = tier.iter().map(|u| escape(u)).collect();
        line(&format!("tier {}", i + 1), &urls.join(" "));
    }
    if let Some(by) = &m.created_by {
        line("created by", &escape(by));
    }
    if let Some(date) = m.creation_date {
        line("created", &utc_date(date));
    }
    if let Some(comment) = &m.comment {
        line("comment", &escape(comment));
    }
    let layout = match info.layout {
        Layout::SingleFile => "single file",
        Layout::MultiFile => "directory",
    };
    let _ = writeln!(s, "files:        {} ({layout})", info.files.len());
    let shown = if max_files == 0 {
        info.files.len()
    } else {
        max_files.min(info.files.len())
    };
    let width = info
        .files
        .iter()
        .take(shown)
        .map(|f| f.length.to_string().len())
        .max()
        .unwrap_or(1);
    for f in &info.files[..shown] {
        let _ = writeln!(s, "  {:>width$}  {}", f.length, f.path.join("/"));
    }
    if shown < info.files.len() {
        let rest = &info.files[shown..];
        let bytes: u64 = rest.iter().map(|f| f.length).sum();
        let _ = writeln!(
            s,
            "  … and {} more files ({}); --max-files 0 lists all",
            rest.len(),
            human_bytes(bytes)
        );
    }
    s
}

/// Escapes control characters in free text (URLs, comments) from a torrent.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian calendar).
fn utc_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_795_497_077), "2026-11-24 05:11:17 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_date(-1), "1969-12-31 23:59:59 UTC");
        // Absurd values from a torrent must not panic.
        let _ = utc_date(i64::MAX);
        let _ = utc_date(i64::MIN);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(escape("http://ok/é"), "http://ok/é");
    }
}
