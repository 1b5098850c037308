//! `ivcsd peer publish | seed | download`: start a peer, run the transfer, show progress, and
//! stop cleanly (announcing `stopped`) on Ctrl-C or SIGTERM.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use ivcsd::crypto::identity::{DEFAULT_RSA_BITS, Identity};
use ivcsd::metainfo::Metainfo;
use ivcsd::peer::node::PeerNode;
use ivcsd::peer::seed_set::{SeedEvent, SeedSet};
use ivcsd::peer::session::{Progress, Torrent};
use ivcsd::peer::tracker_client::TrackerClient;
use ivcsd::peer::{download, publish, seed};
use ivcsd::types::InfoHash;
use tokio_util::sync::CancellationToken;

use super::GlobalArgs;
use super::peer::{DownloadArgs, PeerCommon, PublishArgs, SeedArgs, identity_path};

/// Peers listen here unless `--listen` says otherwise (docs/protocol.md 10).
const DEFAULT_LISTEN: &str = "0.0.0.0:6881";

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the identity, creating it (mode 0600) on first use.
fn load_identity(common: &PeerCommon) -> anyhow::Result<Arc<Identity>> {
    let path = identity_path(common)?;
    let (identity, created) = Identity::load_or_create(&path, DEFAULT_RSA_BITS)?;
    if created {
        tracing::info!(path = %path.display(), "created a new identity");
    }
    Ok(Arc::new(identity))
}

/// Whether a peer needs an RSA identity: everyone who asks for keys does; a relay never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentityUse {
    Needed,
    NotNeeded,
}

/// Starts a peer for `tracker_url` with this invocation's user, password and identity.
pub(super) async fn start_node(
    common: &PeerCommon,
    tracker_url: &str,
    identity: IdentityUse,
    shutdown: CancellationToken,
) -> anyhow::Result<PeerNode> {
    let user = common
        .credentials
        .user
        .clone()
        .context("no user name: pass --user NAME or set IVCSD_USER")?;
    let password = super::read_password(
        common.credentials.password_file.as_deref(),
        &format!("Password for {user}: "),
        false,
    )?;
    let identity = match identity {
        IdentityUse::Needed => Some(load_identity(common)?),
        IdentityUse::NotNeeded => None,
    };
    let mut tracker = TrackerClient::new(tracker_url, &user, password)?;
    if let Some(ca) = &common.credentials.ca {
        tracker = tracker.with_tls(ivcsd::tls::client_config(Some(ca))?);
    }
    let listen: SocketAddr = match common.listen {
        Some(addr) => addr,
        None => DEFAULT_LISTEN
            .parse()
            .context("bad default listen address")?,
    };
    // Bound before the node starts, so that a taken address stops the command at once.
    let metrics = match common.metrics_listen {
        Some(addr) => Some(ivcsd::metrics::bind(addr).await?),
        None => None,
    };
    let node = PeerNode::start(tracker, identity, listen, shutdown).await?;
    if let Some(listener) = metrics {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        node.serve_metrics(listener);
    }
    Ok(node)
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub(super) fn stop_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("stopping");
        shutdown.cancel();
    });
}

fn read_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    Ok(ivcsd::metainfo::file::read(path)?)
}

fn tracker_of(metainfo: &Metainfo, given: Option<&str>) -> anyhow::Result<String> {
    given
        .map(str::to_owned)
        .or_else(|| metainfo.announce.clone())
        .context("the torrent names no tracker: pass --tracker URL")
}

/// Shows progress on a terminal; nothing otherwise.
struct ProgressView {
    bar: indicatif::ProgressBar,
}

impl ProgressView {
    /// A download's bar.
    fn new(total: u64, quiet: bool) -> Self {
        Self::styled(
            quiet,
            total,
            "{percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
    }

    /// The bar of `peer publish` while it encrypts and hashes the content (length set by the
    /// first report).
    fn building(quiet: bool) -> Self {
        Self::styled(
            quiet,
            0,
            "encrypting {percent:>3}% [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
    }

    /// A bar drawn with `template` on a terminal; hidden with `--quiet` or without one.
    fn styled(quiet: bool, len: u64, template: &str) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        };
        ProgressView { bar }
    }

    fn update(&self, p: &Progress) {
        self.bar.set_position(p.bytes_have);
        let tracker = if p.tracker_error.is_some() {
            ", tracker unreachable"
        } else {
            ""
        };
        self.bar.set_message(format!("{} peers{tracker}", p.peers));
    }
}

/// Waits until the torrent completes (`Ok(true)`), fails, or `shutdown` fires (`Ok(false)`).
async fn follow(
    torrent: &Torrent,
    view: &ProgressView,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut rx = torrent.subscribe();
    loop {
        {
            let p = rx.borrow_and_update().clone();
            view.update(&p);
            if let Some(error) = p.error {
                bail!("{error}");
            }
            if p.complete {
                return Ok(true);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            changed = rx.changed() => if changed.is_err() { return Ok(false) },
        }
    }
}

pub fn publish(common: &PeerCommon, args: PublishArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone());
        let node = start_node(common, &args.tracker, IdentityUse::Needed, shutdown.clone()).await?;
        let building = ProgressView::building(global.quiet);
        let bar = building.bar.clone();
        let published = publish::publish(
            &node,
            &args.path,
            args.piece_length,
            args.cipher,
            move |done, total| {
                bar.set_length(total);
                bar.set_position(done);
                if done == total {
                    // Gone before the lines about publishing, which would land on it.
                    bar.finish_and_clear();
                }
            },
        )
        .await
        .with_context(|| format!("cannot publish {}", args.path.display()));
        building.bar.finish_and_clear();
        let published = published?;
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", published.metainfo.info.name)));
        ivcsd::fsutil::write_atomic(&output, &published.torrent_bytes, 0o644)
            .with_context(|| format!("cannot write {}", output.display()))?;
        let cipher = published
            .metainfo
            .info
            .ivcsd
            .map_or("none", |ivcsd| ivcsd.cipher.name());
        println!(
            "published {}: info hash {}, authority {}, cipher {cipher}; torrent written to {}",
            published.metainfo.info.name,
            published.metainfo.info_hash,
            published.authority,
            output.display()
        );
        if args.no_seed {
            shutdown.cancel();
            return Ok(());
        }
        let torrent = seed::start(
            &node,
            &published.metainfo,
            &args.path,
            Some(published.key),
            seed::Trust::JustHashed,
        )
        .await?;
        println!("seeding on {} until interrupted", node.local_addr);
        shutdown.cancelled().await;
        torrent.stop_and_wait().await;
        Ok(())
    })
}

/// What `peer seed` serves: the tracker, and each torrent with where its plaintext is.
fn seed_plan(args: &SeedArgs) -> anyhow::Result<(String, Vec<(Metainfo, PathBuf)>)> {
    let count = args.torrents.len();
    let mut plan: Vec<(Metainfo, PathBuf)> = Vec::with_capacity(count);
    let mut seen: HashMap<InfoHash, &Path> = HashMap::new();
    for path in &args.torrents {
        let metainfo = read_torrent(path)?;
        if let Some(first) = seen.insert(metainfo.info_hash, path) {
            bail!(
                "{} and {} are the same torrent ({})",
                first.display(),
                path.display(),
                metainfo.info_hash
            );
        }
        let content = match (&args.data, &args.data_dir) {
            (Some(data), None) if count == 1 => data.clone(),
            (Some(_), _) => bail!(
                "--data is the content of one torrent; for {count} torrents pass --data-dir DIR \
                 (each torrent's content at DIR/NAME)"
            ),
            // The name is one safe path component (metainfo::names), so this stays in `dir`.
            (None, Some(dir)) => dir.join(&metainfo.info.name),
            (None, None) => bail!("pass --data PATH or --data-dir DIR"),
        };
        plan.push((metainfo, content));
    }
    let url = match &args.tracker {
        Some(url) => url.clone(),
        None => {
            let (first, _) = plan.first().context("no torrent to seed")?;
            let url = tracker_of(first, None)?;
            for (metainfo, _) in &plan[1..] {
                let other = tracker_of(metainfo, None)?;
                if other != url {
                    bail!(
                        "{} announces to {other} and {} to {url}: one process serves one \
                         tracker (pass --tracker URL, or run one process per tracker)",
                        metainfo.info.name,
                        first.info.name
                    );
                }
            }
            url
        }
    };
    Ok((url, plan))
}

/// `peer seed`: serves one torrent, several, or a directory of them, from one process and
/// one port. A torrent that cannot start or fails later is reported and stopped while the
/// others go on.
pub fn seed(common: &PeerCommon, args: SeedArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.torrent_dir {
        return seed_dir(common, &args, dir);
    }
    let (url, plan) = seed_plan(&args)?;
    let single = plan.len() == 1;
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone());
        let node = start_node(common, &url, IdentityUse::Needed, shutdown.clone()).await?;
        let mut set = SeedSet::new(&node, seed_trust(&args)).reverify_every(args.reverify_every);
        for (metainfo, content) in &plan {
            match set.start(metainfo, content).await {
                // One torrent: its failure is the command's.
                SeedEvent::NotStarted { what, error } if single => {
                    bail!("cannot seed {what}: {error}")
                }
                event => report(&event, &node),
            }
        }
        if set.is_empty() {
            bail!("none of the {} torrents could be seeded", plan.len());
        }
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                event = set.next_failure() => {
                    if single && let SeedEvent::Stopped { why, .. } = &event {
                        break Err(anyhow!("{why}"));
                    }
                    report(&event, &node);
                    if set.is_empty() {
                        break Err(anyhow!("every torrent stopped with an error"));
                    }
                }
            }
        };
        set.stop_all().await;
        outcome
    })
}

/// `peer seed --torrent-dir DIR`: every `*.torrent` in DIR, read again on SIGHUP.
fn seed_dir(common: &PeerCommon, args: &SeedArgs, dir: &Path) -> anyhow::Result<()> {
    // clap requires both with --torrent-dir.
    let (Some(url), Some(data_dir)) = (&args.tracker, &args.data_dir) else {
        bail!("--torrent-dir needs --tracker URL and --data-dir DIR");
    };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone());
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        let node = start_node(common, url, IdentityUse::Needed, shutdown.clone()).await?;
        let mut set = SeedSet::new(&node, seed_trust(args)).reverify_every(args.reverify_every);
        for event in set.sync_with_dir(dir, data_dir).await {
            report(&event, &node);
        }
        println!(
            "seeding {} torrents of {} on {} until interrupted (SIGHUP: read the directory again)",
            set.len(),
            dir.display(),
            node.local_addr
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = hangup.recv() => {
                    for event in set.sync_with_dir(dir, data_dir).await {
                        report(&event, &node);
                    }
                    println!("seeding {} torrents of {}", set.len(), dir.display());
                }
                event = set.next_failure() => report(&event, &node),
            }
        }
        set.stop_all().await;
        Ok(())
    })
}

/// `--recheck` verifies everything; otherwise a valid resume record is trusted.
fn seed_trust(args: &SeedArgs) -> seed::Trust {
    if args.recheck {
        seed::Trust::Verify(download::Recheck::Always)
    } else {
        seed::Trust::Verify(download::Recheck::IfNeeded)
    }
}

/// One line per event: what is served on stdout, what could not be on stderr.
fn report(event: &SeedEvent, node: &PeerNode) {
    match event {
        SeedEvent::Started { name, info_hash } => {
            println!(
                "seeding {name} ({info_hash}) on {} until interrupted",
                node.local_addr
            );
        }
        SeedEvent::NotStarted { what, error } => eprintln!("error: cannot seed {what}: {error}"),
        SeedEvent::Stopped {
            name,
            info_hash,
            why,
        } => eprintln!("stopped seeding {name} ({info_hash}): {why}"),
    }
}

pub fn download(
    common: &PeerCommon,
    args: DownloadArgs,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let metainfo = read_torrent(&args.torrent)?;
    let url = tracker_of(&metainfo, args.tracker.as_deref())?;
    let output = args.output.clone().unwrap_or_else(|| PathBuf::from("."));
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone());
        let node = start_node(common, &url, IdentityUse::Needed, shutdown.clone()).await?;
        let recheck = if args.recheck {
            download::Recheck::Always
        } else {
            download::Recheck::IfNeeded
        };
        let space = if args.no_space_check {
            download::SpaceCheck::Skip
        } else {
            download::SpaceCheck::Before
        };
        let torrent = download::start(&node, &metainfo, &output, recheck, space)
            .await
            .with_context(|| format!("cannot download {}", metainfo.info.name))?;
        let view = ProgressView::new(metainfo.info.total_length, global.quiet);
        let outcome = follow(&torrent, &view, &shutdown).await;
        view.bar.finish_and_clear();
        match outcome {
            Ok(true) => {
                println!(
                    "downloaded and verified {} ({} bytes) into {}",
                    metainfo.info.name,
                    metainfo.info.total_length,
                    output.display()
                );
                if args.seed {
                    println!("seeding on {} until interrupted", node.local_addr);
                    shutdown.cancelled().await;
                }
                torrent.stop_and_wait().await;
                Ok(())
            }
            Ok(false) => {
                torrent.stop_and_wait().await;
                bail!("interrupted before the download completed; run the same command again to resume")
            }
            Err(e) => {
                torrent.stop_and_wait().await;
                Err(e)
            }
        }
    })
}
