//! `ivcsd tracker`: the tracker daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use ivcsd::crypto::content::Cipher;
use ivcsd::tracker::authority::AuthoritySource;
use ivcsd::tracker::config::Config;

use super::GlobalArgs;

/// Run the tracker: verifies every peer's identity and authority, hands out content keys
/// wrapped for the requester, keeps swarms, torrents and keys, and logs every decision.
///
/// SIGHUP re-reads the authority file and reopens the audit log (rename it first to rotate it;
/// the hash chain runs on into the new file).
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
    /// The master key that seals content keys in the database [default: DIR/master.key].
    /// Keep it on another volume than the data directory, so that a copy of that directory
    /// (a backup, a stolen disk) opens no content key.
    #[arg(long, value_name = "FILE")]
    pub master_key: Option<PathBuf>,
    /// Serve https with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Read the configuration, the authority file and the TLS files, print what would be
    /// served, and exit without starting or touching the data directory: for deployment
    /// scripts, and before a restart.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: TrackerArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(path) = args.master_key {
        config.master_key = Some(path);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    }
    // Again with the flags applied: they can make fields clash (metrics_listen and --listen).
    config.validate()?;
    let users = Arc::new(AuthoritySource::load(&args.authority)?);
    if args.check {
        return check(&config, &users);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        runtime.worker_threads(config.workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("error starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("error listening on {}", config.listen))?;
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        ivcsd::tracker::run(listener, config, users, shutdown).await?;
        Ok(())
    })
}

/// `--check`: everything the start reads before it opens the data directory, and one line.
fn check(config: &Config, users: &AuthoritySource) -> anyhow::Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            ivcsd::tls::server_config(cert, key)?;
            "https"
        }
        _ => "http",
    };
    let table = users.current();
    let admins = table.iter().filter(|u| u.admin).count();
    let metrics = config
        .metrics_listen
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    println!(
        "configuration OK: {tls} on {}, data in {}, {} users ({admins} admins), audit log {}, \
         metrics {metrics}, new torrents {}",
        config.listen,
        config.data_dir.display(),
        table.len(),
        if config.audit { "on" } else { "off" },
        Cipher::names(&config.publish_ciphers, " or "),
    );
    Ok(())
}
