//! `ivcsd tracker`: the tracker daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::GlobalArgs;

/// Run the tracker: verifies every peer's identity and authority, hands out content keys
/// wrapped for the requester, keeps swarms, torrents and keys, and logs every decision.
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// The users, their password hashes and authority levels (re-read when it changes and on
    /// SIGHUP; a broken file leaves the last good one in force).
    #[arg(long, value_name = "FILE", default_value = "authority.xml")]
    pub authority: PathBuf,
    /// A TOML configuration file (see config/tracker.toml); flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:6969].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the database, the master key and the audit log live [default: ./ivcsd-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve https with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub fn run(_args: TrackerArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    super::not_implemented("tracker")
}
