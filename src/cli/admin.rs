//! `ivcsd admin …`: torrents, relays and the audit log through the tracker's admin API, and
//! users by editing authority.xml locally.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use super::peer::Credentials;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The tracker's URL (its announce URL or its base URL).
    #[arg(long, global = true, value_name = "URL", env = "IVCSD_TRACKER")]
    pub tracker: Option<String>,
    #[command(flatten)]
    pub credentials: Credentials,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List, show and set the authority of torrents.
    #[command(subcommand)]
    Torrent(TorrentCommand),
    /// Assign and unassign relays.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Read the audit log (`--follow` to keep reading), or verify its hash chain.
    Audit(AuditArgs),
    /// Edit users in authority.xml (locally; the tracker reloads it).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum TorrentCommand {
    /// Every torrent with its size, owner, authority and swarm counts.
    List,
    /// One torrent in detail.
    Show {
        /// The 40-digit hex info hash.
        hash: String,
    },
    /// Set a torrent's authority (a smaller number is a higher authority).
    SetAuthority { hash: String, authority: u32 },
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Let USER carry the torrent's ciphertext (it never gets the key).
    Assign { hash: String, user: String },
    /// Stop USER carrying the torrent.
    Unassign { hash: String, user: String },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Keep printing new entries as they come.
    #[arg(long)]
    pub follow: bool,
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and report the first line edited, removed or reordered.
    Verify {
        /// The audit log [default: ./ivcsd-data/audit.log].
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct AuthorityFile {
    /// The authority.xml to edit.
    #[arg(long, value_name = "FILE", default_value = "authority.xml")]
    pub authority_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password comes from IVCSD_PASSWORD, --password-file or a prompt.
    Add {
        name: String,
        /// The user's authority (a smaller number is a higher authority).
        #[arg(long)]
        authority: u32,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Accept the user's requests only from this address, CIDR or `*`.
        #[arg(long, value_name = "ADDR")]
        ip: Option<String>,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Set a user's password (this ends the user's tokens).
    Passwd {
        name: String,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Change a user's authority (this ends the user's tokens).
    SetAuthority {
        name: String,
        authority: u32,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[command(flatten)]
        file: AuthorityFile,
    },
}

pub fn run(args: AdminArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Torrent(_) => super::not_implemented("admin torrent"),
        AdminCommand::Relay(_) => super::not_implemented("admin relay"),
        AdminCommand::Audit(_) => super::not_implemented("admin audit"),
        AdminCommand::User(command) => super::users::run(command, &args.credentials),
    }
}
