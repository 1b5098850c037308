//! `ivcsd torrent …`: inspect torrent files.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;

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
    },
}

pub fn run(args: TorrentArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        TorrentCommand::Show { .. } => super::not_implemented("torrent show"),
    }
}
