//! `ivcsd peer …`: identity, publish, seed, download and relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use ivcsd::crypto::content::Cipher;
use ivcsd::crypto::identity::{DEFAULT_RSA_BITS, Identity};

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(flatten)]
    pub common: PeerCommon,
    #[command(subcommand)]
    pub command: PeerCommand,
}

/// How to reach and log in to the tracker; shared by `peer` and `admin`.
#[derive(Debug, Args, Clone)]
pub struct Credentials {
    /// The user name at the tracker.
    #[arg(long, global = true, env = "IVCSD_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from this file (first line); otherwise IVCSD_PASSWORD, or a prompt.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for an https tracker.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Options of every peer command, accepted before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct PeerCommon {
    #[command(flatten)]
    pub credentials: Credentials,
    /// The RSA identity (PKCS#8 PEM) [default: the user's config directory, ivcsd/identity.pem].
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Address for incoming peer connections; port 0 picks a free one [default: 0.0.0.0:6881].
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve GET /metrics (Prometheus text: traffic, rejected pieces, torrents, peers) on this
    /// address. Totals only, without credentials: keep it on loopback or a monitoring network.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Create an RSA identity (3072 bits by default) and write it with mode 0600.
    Keygen(KeygenArgs),
    /// Get a new content key, build the encrypted torrent, publish it, then seed it.
    Publish(PublishArgs),
    /// Seed torrents from their plaintext, encrypting every block on the way out.
    Seed(SeedArgs),
    /// Download a torrent: get its key, verify each ciphertext piece, decrypt, write plaintext.
    Download(DownloadArgs),
    /// Carry the ciphertext of every torrent the tracker assigns to this user, without a key.
    Relay(RelayArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key size in bits (at least 2048).
    #[arg(long, default_value_t = DEFAULT_RSA_BITS, value_name = "BITS")]
    pub bits: usize,
    /// Replace an existing identity file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The file or directory to publish.
    pub path: PathBuf,
    /// The tracker's announce URL, e.g. http://tracker.example:6969/announce.
    #[arg(long, value_name = "URL")]
    pub tracker: String,
    /// Where to write the torrent [default: PATH's name + .torrent].
    #[arg(long, short, value_name = "FILE.torrent")]
    pub output: Option<PathBuf>,
    /// Piece length in bytes, a power of two of at least 16 KiB [default: from the size].
    #[arg(long, value_name = "BYTES")]
    pub piece_length: Option<u64>,
    /// The content cipher: rc4+ (the protocol's first suite) or aes-256-ctr (far cheaper on CPUs
    /// with AES instructions; readers need an ivcsd that knows it, older ones refuse the torrent)
    /// [default: the tracker's preferred suite, rc4+ unless its operator chose otherwise].
    #[arg(long, value_name = "SUITE")]
    pub cipher: Option<Cipher>,
    /// Publish and exit instead of seeding.
    #[arg(long)]
    pub no_seed: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["data", "data_dir"])))]
pub struct SeedArgs {
    /// One torrent, or several served by this one process on one port (they must share a
    /// tracker).
    #[arg(required_unless_present = "torrent_dir", value_name = "TORRENT")]
    pub torrents: Vec<PathBuf>,
    /// Seed every `*.torrent` in DIR, and read DIR again on SIGHUP: new torrents start,
    /// removed ones stop. Needs --tracker and --data-dir.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["torrents", "data"],
        requires_all = ["tracker", "data_dir"]
    )]
    pub torrent_dir: Option<PathBuf>,
    /// The tracker's announce URL [default: the torrents' announce].
    #[arg(long, value_name = "URL")]
    pub tracker: Option<String>,
    /// The plaintext of a single torrent: the file, or the directory that holds its files.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// The directory that holds each torrent's content under the torrent's name (what
    /// `peer download --output DIR` leaves there).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Verify every piece before serving, even where a resume record says the files are
    /// unchanged since they were last verified.
    #[arg(long)]
    pub recheck: bool,
    /// While serving, verify every piece again this often (e.g. 7d, 24h, 90m; s, m, h or d),
    /// and stop a torrent whose data no longer matches (damaged, or changed in place).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reverify_every: Option<std::time::Duration>,
}

/// `90s`, `30m`, `24h`, `7d`: a whole number and one unit, at least one second.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 30m, 24h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration such as 90s, 30m, 24h or 7d"
            ));
        }
    };
    match n.checked_mul(scale) {
        Some(secs) if secs > 0 => Ok(std::time::Duration::from_secs(secs)),
        Some(_) => Err("the duration must be at least 1s".into()),
        None => Err(format!("{text:?} is too long")),
    }
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    pub torrent: PathBuf,
    /// The tracker's announce URL [default: the torrent's announce].
    #[arg(long, value_name = "URL")]
    pub tracker: Option<String>,
    /// The directory to write into [default: the current directory].
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Keep seeding once complete, until interrupted.
    #[arg(long)]
    pub seed: bool,
    /// Verify every piece already on disk instead of trusting the resume record.
    #[arg(long)]
    pub recheck: bool,
    /// Start even when the output's file system has less free space than the download still
    /// needs (a compressing or deduplicating file system, or space that will be freed).
    #[arg(long)]
    pub no_space_check: bool,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The tracker's announce URL.
    #[arg(long, value_name = "URL")]
    pub tracker: String,
    /// Where ciphertext and resume records are kept [default: ./ivcsd-relay].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Refuse assignments that would make the carried torrents add up to more than this
    /// many bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_store: Option<u64>,
    /// Delete the data of a torrent once it is unassigned [default: keep it, so that a new
    /// assignment resumes from it].
    #[arg(long)]
    pub delete_unassigned: bool,
    /// While carrying, verify every piece again this often (e.g. 7d, 24h, 90m; s, m, h or
    /// d); a torrent with damaged pieces stops, starts again at once and fetches those
    /// pieces anew.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reverify_every: Option<std::time::Duration>,
}

pub fn run(args: PeerArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        PeerCommand::Keygen(keygen) => run_keygen(&args.common, &keygen),
        PeerCommand::Publish(publish) => super::transfer::publish(&args.common, publish, global),
        PeerCommand::Seed(seed) => super::transfer::seed(&args.common, seed),
        PeerCommand::Download(download) => {
            super::transfer::download(&args.common, download, global)
        }
        PeerCommand::Relay(relay) => run_relay(&args.common, relay),
    }
}

/// The store directory unless `--store` says otherwise.
const DEFAULT_RELAY_STORE: &str = "ivcsd-relay";

/// `ivcsd peer relay`: carries every torrent the tracker assigns to this user until
/// interrupted; SIGHUP asks the tracker for the assignments at once.
fn run_relay(common: &PeerCommon, args: RelayArgs) -> anyhow::Result<()> {
    use ivcsd::peer::relay::{Relay, RelayConfig, Unassigned};
    use tokio_util::sync::CancellationToken;

    let store = args
        .store
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RELAY_STORE));
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create the store directory {}", store.display()))?;
    let config = RelayConfig {
        store,
        max_store_bytes: args.max_store,
        unassigned: if args.delete_unassigned {
            Unassigned::Delete
        } else {
            Unassigned::Keep
        },
        reverify_every: args.reverify_every,
    };
    super::transfer::runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        super::transfer::stop_on_signals(shutdown.clone());
        let poll_now = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        {
            let poll_now = std::sync::Arc::clone(&poll_now);
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    poll_now.notify_one();
                }
            });
        }
        let node = super::transfer::start_node(
            common,
            &args.tracker,
            super::transfer::IdentityUse::NotNeeded,
            shutdown.clone(),
        )
        .await?;
        println!(
            "relaying for {} on {}, store {}, until interrupted (SIGHUP: ask for assignments now)",
            node.tracker.username(),
            node.local_addr,
            config.store.display()
        );
        let result = Relay::new(&node, config).run(&poll_now).await;
        shutdown.cancel();
        Ok(result?)
    })
}

/// Where the identity lives unless `--identity` says otherwise: `ivcsd/identity.pem` in the
/// user's config directory (docs/protocol.md 10), e.g. `~/.config/ivcsd/identity.pem` on Linux.
pub fn default_identity_path() -> anyhow::Result<PathBuf> {
    let config = dirs::config_dir()
        .context("cannot find the user's config directory (is HOME set?); pass --identity FILE")?;
    Ok(config.join("ivcsd").join("identity.pem"))
}

/// The identity file of this invocation: `--identity`, or [`default_identity_path`].
pub fn identity_path(common: &PeerCommon) -> anyhow::Result<PathBuf> {
    match &common.identity {
        Some(path) => Ok(path.clone()),
        None => default_identity_path(),
    }
}

/// `ivcsd peer keygen`: generates a key and writes it with mode 0600; never replaces an
/// existing identity without `--force`, since that would lose the key the tracker may know.
fn run_keygen(common: &PeerCommon, args: &KeygenArgs) -> anyhow::Result<()> {
    let path = identity_path(common)?;
    let exists = path
        .try_exists()
        .with_context(|| format!("cannot check whether {} exists", path.display()))?;
    if exists && !args.force {
        anyhow::bail!(
            "identity file {} already exists; pass --force to replace it",
            path.display()
        );
    }
    let identity = Identity::generate(args.bits)
        .with_context(|| format!("cannot create a {}-bit identity", args.bits))?;
    identity.save(&path)?;
    let public = identity.public_ref();
    println!(
        "wrote a {}-bit RSA identity to {}",
        public.bits(),
        path.display()
    );
    println!("public key sha256: {}", hex::encode(public.spki_sha256()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_one_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        let shape = |t: &str| format!("{t:?} is not a duration such as 90s, 30m, 24h or 7d");
        for bad in ["", "h", "24", "24 h", "1.5h", "-1h", "24H", "1w", "1h30m"] {
            assert_eq!(parse_duration(bad), Err(shape(bad)), "{bad}");
        }
        assert_eq!(
            parse_duration("0s"),
            Err("the duration must be at least 1s".into())
        );
        assert_eq!(
            parse_duration("99999999999999999d"),
            Err("\"99999999999999999d\" is too long".into())
        );
    }
}
