//! The command tree of docs/protocol.md section 10, in clap. Each subcommand lives in its own
//! file with its arguments and a `run` function; this file holds what they share.

pub mod admin;
pub mod demo;
pub mod peer;
pub mod torrent;
pub mod tracker;
pub mod transfer;
pub mod users;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Secure distribution of big data over BitTorrent.
///
/// A tracker verifies every peer's identity and authority level and hands out per-torrent
/// content keys; peers exchange RC4+-encrypted blocks over the ordinary BitTorrent peer wire.
#[derive(Debug, Parser)]
#[command(
    name = "ivcsd",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: CliCommand,
}

/// Options every subcommand accepts, before or after it.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print only warnings and errors, and no progress bar.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log format on stderr: `text` for people, `json` (one object a line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the tracker daemon: identity, authority, content keys, swarms and the audit log.
    Tracker(tracker::TrackerArgs),
    /// Act as a peer: create an identity, publish, seed, download or relay torrents.
    Peer(peer::PeerArgs),
    /// Administer a tracker (torrents, relays, audit) or edit authority.xml locally (users).
    Admin(admin::AdminArgs),
    /// Inspect torrent files.
    Torrent(torrent::TorrentArgs),
    /// Run the whole flow on 127.0.0.1 in temporary directories, explained step by step.
    Demo(demo::DemoArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        CliCommand::Tracker(args) => tracker::run(args, &cli.global),
        CliCommand::Peer(args) => peer::run(args, &cli.global),
        CliCommand::Admin(args) => admin::run(args, &cli.global),
        CliCommand::Torrent(args) => torrent::run(args, &cli.global),
        CliCommand::Demo(args) => demo::run(args, &cli.global),
    }
}

/// Sets up `tracing` on stderr. `RUST_LOG` refines the level; `--quiet` lowers it to warnings.
pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = if global.quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Reads a password: from `--password-file` (its first line), else from `IVCSD_PASSWORD`,
/// else from a prompt on the terminal (asked twice when `confirm`, for a new password).
pub fn read_password(
    password_file: Option<&std::path::Path>,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use anyhow::Context as _;
    use std::io::IsTerminal as _;
    use zeroize::Zeroizing;

    let password = if let Some(path) = password_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read password file {}", path.display()))?,
        );
        Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
    } else if let Ok(env) = std::env::var("IVCSD_PASSWORD") {
        Zeroizing::new(env)
    } else if std::io::stdin().is_terminal() {
        let first =
            Zeroizing::new(rpassword::prompt_password(prompt).context("cannot read the password")?);
        if confirm {
            let second = Zeroizing::new(
                rpassword::prompt_password("Repeat the password: ")
                    .context("cannot read the password")?,
            );
            anyhow::ensure!(*first == *second, "the two passwords differ");
        }
        first
    } else {
        anyhow::bail!(
            "no password: set IVCSD_PASSWORD, pass --password-file FILE, or run on a terminal"
        );
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}
