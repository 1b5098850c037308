//! `peer relay`: an intermediary (docs/protocol.md sections 1, 4.5, 5 and 8) that carries the
//! ciphertext of every torrent the tracker assigns to this user, and never holds a key.
//!
//! The paper leaves open how intermediaries learn what to carry; in ivcsd the tracker's relay
//! assignments (`GET /relay/assignments`) are that notification. The relay polls them at the
//! interval the tracker gives, and at once when asked ([`Relay::run`]'s `poll_now`, which the
//! CLI fires on SIGHUP), then reconciles:
//! - a newly assigned torrent: its metainfo from `GET /torrent`, checked (it must parse and
//!   have the assigned info hash), refused with a log line if it would take the store beyond
//!   `--max-store`, else carried: a [`CiphertextStore`] under the store directory, resumed from
//!   its resume record (or, without one, by hashing what is on disk), and a [`Torrent`] session
//!   that downloads what is missing and then seeds;
//! - an unassigned torrent: its session stops and leaves the listener's registry, and its data
//!   is kept or deleted ([`Unassigned`]).
//!
//! While the tracker is unreachable the relay keeps serving what it carries and asks again with
//! back-off. Every start and stop is logged.
//!
//! # Store layout
//! ```text
//! <store>/<info hash hex>/<info hash hex>.torrent   the metainfo as the tracker served it
//! <store>/<info hash hex>/data/<name>…              the ciphertext, in the torrent's layout
//! <store>/<info hash hex>/.ivcsd/<hex>.resume       the fast-resume record
//! ```
//!
//! What it will not do: ask for a key (nothing here calls getcipher; the tracker refuses it to
//! an assigned relay anyway), decrypt, or store an unverified piece (the session hashes every
//! piece against `info.pieces` before the [`CiphertextStore`] writes it, exactly as received).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::metainfo::{Metainfo, MetainfoError};
use crate::peer::download::{self, OnDisk, Recheck};
use crate::peer::node::{PeerError, PeerNode};
use crate::peer::resume;
use crate::peer::session::{OnDamage, SessionError, Torrent};
use crate::peer::storage::{CiphertextStore, ContentFiles, OpenMode, PieceStore, StorageError};
use crate::peer::tracker_client::TrackerError;
use crate::types::InfoHash;

/// The assignments are asked for at least this often, whatever the tracker says…
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
/// …and at most this often.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// First retry after the tracker could not be reached; doubled up to [`MAX_RETRY`].
pub const MIN_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two attempts while the tracker cannot be reached.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// The directory, inside a torrent's directory, that holds its ciphertext.
pub const DATA_DIR: &str = "data";

/// What happens to the data of a torrent that is no longer assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unassigned {
    /// Keep it: if the torrent is assigned again, the relay resumes from it.
    Keep,
    /// Delete the torrent's directory (`--delete-unassigned`).
    Delete,
}

/// Settings of a relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The store directory; each torrent gets `<store>/<info hash hex>/`.
    pub store: PathBuf,
    /// The most bytes the carried torrents may add up to (`--max-store`); `None`: no limit.
    pub max_store_bytes: Option<u64>,
    pub unassigned: Unassigned,
    /// Verify every carried piece again this often (`--reverify-every`): a torrent with
    /// damaged pieces stops, and starts again at once without them (a poll right away),
    /// fetching them anew from the swarm.
    pub reverify_every: Option<std::time::Duration>,
}

/// Why a torrent could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot fetch torrent {info_hash} from the tracker: {source}")]
    Fetch {
        info_hash: InfoHash,
        #[source]
        source: TrackerError,
    },
    #[error("the tracker's metainfo of torrent {info_hash} is invalid: {source}")]
    Metainfo {
        info_hash: InfoHash,
        #[source]
        source: MetainfoError,
    },
    #[error("the tracker answered torrent {requested} with the metainfo of {got}")]
    WrongTorrent { requested: InfoHash, got: InfoHash },
    /// A relay carries only what is encrypted (and private): anything else would put
    /// plaintext in its store. The tracker refuses to publish such torrents; this is the
    /// relay's own check.
    #[error("torrent {info_hash} {problem}: a relay carries only encrypted, private torrents")]
    NotEncrypted {
        info_hash: InfoHash,
        problem: &'static str,
    },
    #[error("error {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("torrent {info_hash}: {source}")]
    Storage {
        info_hash: InfoHash,
        #[source]
        source: StorageError,
    },
    #[error("torrent {info_hash}: {source}")]
    Resume {
        info_hash: InfoHash,
        #[source]
        source: PeerError,
    },
    #[error("torrent {info_hash}: {source}")]
    Session {
        info_hash: InfoHash,
        #[source]
        source: SessionError,
    },
    /// The tracker answered the first poll with a refusal (wrong credentials, say): retrying
    /// cannot help until someone changes something, so the relay does not start. (Not a
    /// `#[source]`: the message already says it, and error chains would repeat it.)
    #[error("cannot get the relay assignments: {0}")]
    Refused(TrackerError),
    #[error("torrent {info_hash}: a storage task failed: {source}")]
    Task {
        info_hash: InfoHash,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The `--max-store` rule, apart from any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreBudget {
    max_bytes: Option<u64>,
}

impl StoreBudget {
    pub fn new(max_bytes: Option<u64>) -> Self {
        StoreBudget { max_bytes }
    }

    /// Whether a torrent of `bytes` may join carried torrents of `carried_bytes` in total.
    pub fn admits(&self, carried_bytes: u64, bytes: u64) -> bool {
        match self.max_bytes {
            None => true,
            Some(max) => carried_bytes.checked_add(bytes).is_some_and(|t| t <= max),
        }
    }
}

/// What to start and what to stop so that the carried torrents become the assigned ones.
/// Both lists keep the order of their source, without repeats.
pub fn changes(
    carried: &HashSet<InfoHash>,
    assigned: &[InfoHash],
) -> (Vec<InfoHash>, Vec<InfoHash>) {
    let mut seen = HashSet::with_capacity(assigned.len());
    let start = assigned
        .iter()
        .copied()
        .filter(|h| seen.insert(*h) && !carried.contains(h))
        .collect();
    let mut stop: Vec<InfoHash> = carried
        .iter()
        .copied()
        .filter(|h| !seen.contains(h))
        .collect();
    stop.sort_unstable_by_key(|h| h.0);
    (start, stop)
}

/// Where a torrent's files live in the store.
#[derive(Debug, Clone)]
struct TorrentDir {
    root: PathBuf,
}

impl TorrentDir {
    fn new(store: &Path, info_hash: InfoHash) -> Self {
        // The hex of an info hash is a safe single path component.
        TorrentDir {
            root: store.join(info_hash.to_hex()),
        }
    }

    fn metainfo(&self, info_hash: InfoHash) -> PathBuf {
        self.root.join(format!("{}.torrent", info_hash.to_hex()))
    }

    fn data(&self) -> PathBuf {
        self.root.join(DATA_DIR)
    }

    fn resume_record(&self, info_hash: InfoHash) -> PathBuf {
        resume::record_path(&self.root, info_hash)
    }
}

/// One torrent being carried.
struct Carried {
    torrent: Arc<Torrent>,
    name: String,
    bytes: u64,
    dir: TorrentDir,
    /// Logs completion and errors of the session.
    watcher: JoinHandle<()>,
}

/// Why a carried torrent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Unassigned,
    Failed,
    Shutdown,
}

/// A running relay: what it carries, inside one [`PeerNode`] whose listener serves them all.
pub struct Relay<'a> {
    node: &'a PeerNode,
    config: RelayConfig,
    budget: StoreBudget,
    carried: HashMap<InfoHash, Carried>,
    /// Assignments refused by `--max-store`, with their sizes: logged once, and admitted at a
    /// later poll if carried torrents were unassigned meanwhile.
    refused: HashMap<InfoHash, u64>,
    /// Notified by a torrent that stopped to fetch damaged pieces again (`--reverify-every`):
    /// the next poll is at once, which starts it again.
    repair: Arc<Notify>,
}

impl<'a> Relay<'a> {
    pub fn new(node: &'a PeerNode, config: RelayConfig) -> Self {
        Relay {
            node,
            budget: StoreBudget::new(config.max_store_bytes),
            config,
            carried: HashMap::new(),
            refused: HashMap::new(),
            repair: Arc::new(Notify::new()),
        }
    }

    /// The torrents carried now, sorted.
    pub fn carried(&self) -> Vec<InfoHash> {
        let mut hashes: Vec<InfoHash> = self.carried.keys().copied().collect();
        hashes.sort_unstable_by_key(|h| h.0);
        hashes
    }

    /// The sum of the carried torrents' sizes (what `--max-store` bounds).
    pub fn carried_bytes(&self) -> u64 {
        self.carried.values().map(|c| c.bytes).sum()
    }

    /// Polls the assignments and reconciles until the node shuts down, then stops every
    /// session. `poll_now` asks for the assignments at once (SIGHUP).
    ///
    /// # Errors
    /// [`RelayError::Refused`] when the tracker refuses the very first poll. Later refusals, and
    /// an unreachable tracker at any time, are logged and retried with back-off.
    pub async fn run(mut self, poll_now: &Notify) -> Result<(), RelayError> {
        let shutdown = self.node.shutdown.clone();
        let repair = Arc::clone(&self.repair);
        let mut retry = MIN_RETRY;
        let mut first = true;
        loop {
            let polled = tokio::select! {
                _ = shutdown.cancelled() => break,
                polled = self.node.tracker.relay_assignments() => polled,
            };
            let wait = match polled {
                Err(e @ TrackerError::Refused(_)) if first => {
                    return Err(RelayError::Refused(e));
                }
                Ok((assigned, interval_secs)) => {
                    retry = MIN_RETRY;
                    self.reconcile(&assigned).await;
                    Duration::from_secs(interval_secs).clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in = ?retry,
                        carried = self.carried.len(),
                        "cannot get the relay assignments; still serving what is carried"
                    );
                    let wait = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
            };
            first = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = poll_now.notified() => {
                    tracing::info!("asking the tracker for the relay assignments now");
                }
                _ = repair.notified() => {
                    tracing::info!("a carried torrent stopped to fetch damaged pieces again; polling now");
                }
            }
        }
        let all: Vec<InfoHash> = self.carried();
        for info_hash in all {
            self.stop_carrying(info_hash, StopReason::Shutdown).await;
        }
        Ok(())
    }

    /// Makes the carried torrents the `assigned` ones: stops the unassigned (first, which
    /// frees room in the store), then starts the new ones in the tracker's order. A torrent
    /// that cannot be started is logged and tried again at the next reconcile.
    pub async fn reconcile(&mut self, assigned: &[InfoHash]) {
        self.drop_failed().await;
        let carried: HashSet<InfoHash> = self.carried.keys().copied().collect();
        let (start, stop) = changes(&carried, assigned);
        for info_hash in stop {
            self.stop_carrying(info_hash, StopReason::Unassigned).await;
        }
        self.refused.retain(|h, _| assigned.contains(h));
        for info_hash in start {
            if self.node.shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = self.start_carrying(info_hash).await {
                tracing::warn!(
                    %info_hash,
                    error = %e,
                    "cannot carry an assigned torrent; trying again at the next poll"
                );
            }
        }
    }

    /// Forgets sessions that stopped on an error (a full disk, say), so that the next
    /// reconcile starts them again.
    async fn drop_failed(&mut self) {
        let failed: Vec<InfoHash> = self
            .carried
            .iter()
            .filter(|(_, c)| c.torrent.subscribe().borrow().error.is_some())
            .map(|(h, _)| *h)
            .collect();
        for info_hash in failed {
            self.stop_carrying(info_hash, StopReason::Failed).await;
        }
    }

    async fn start_carrying(&mut self, info_hash: InfoHash) -> Result<(), RelayError> {
        // A torrent refused for its size is not fetched again until it would fit.
        if let Some(&bytes) = self.refused.get(&info_hash)
            && !self.budget.admits(self.carried_bytes(), bytes)
        {
            return Ok(());
        }
        let torrent_bytes = self
            .node
            .tracker
            .fetch_torrent(info_hash)
            .await
            .map_err(|source| RelayError::Fetch { info_hash, source })?;
        let info = check_metainfo(info_hash, &torrent_bytes)?.info;
        let bytes = info.total_length;
        let carried_bytes = self.carried_bytes();
        if !self.budget.admits(carried_bytes, bytes) {
            if self.refused.insert(info_hash, bytes).is_none() {
                tracing::warn!(
                    %info_hash,
                    name = %info.name,
                    bytes,
                    carried_bytes,
                    max_store_bytes = self.config.max_store_bytes,
                    "refused an assignment: carrying it would take the store beyond --max-store"
                );
            }
            return Ok(());
        }
        self.refused.remove(&info_hash);

        let dir = TorrentDir::new(&self.config.store, info_hash);
        let (files, existed) = {
            let dir = dir.clone();
            let info = info.clone();
            tokio::task::spawn_blocking(move || open_store(&dir, info_hash, &torrent_bytes, &info))
                .await
                .map_err(|source| RelayError::Task { info_hash, source })??
        };
        let name = info.name.clone();
        let piece_count = info.piece_count();
        let store: Arc<dyn PieceStore> = Arc::new(CiphertextStore::new(files, info));
        let resume_path = dir.resume_record(info_hash);
        let (have, on_disk) = download::pieces_on_disk(
            &store,
            info_hash,
            &resume_path,
            existed,
            Recheck::IfNeeded,
            &self.node.shutdown,
        )
        .await
        .map_err(|source| RelayError::Resume { info_hash, source })?;
        let pieces_on_disk = have.count();
        let torrent = Torrent::new(
            info_hash,
            store,
            have,
            self.node.session_config(),
            Some(Arc::clone(&self.node.tracker)),
            Some(resume_path),
            self.node.shutdown.child_token(),
        )
        .map_err(|source| RelayError::Session { info_hash, source })?;
        self.node.registry.insert(Arc::clone(&torrent));
        torrent.start(&[]);
        if let Some(every) = self.config.reverify_every {
            let restart = Some(Arc::clone(&self.repair));
            torrent.reverify_every(every, OnDamage::Refetch { restart });
        }
        tracing::info!(
            %info_hash,
            name = %name,
            bytes,
            pieces_on_disk,
            pieces = piece_count,
            from = on_disk_label(on_disk),
            dir = %dir.root.display(),
            "started carrying"
        );
        let watcher = watch(&torrent);
        self.carried.insert(
            info_hash,
            Carried {
                torrent,
                name,
                bytes,
                dir,
                watcher,
            },
        );
        Ok(())
    }

    async fn stop_carrying(&mut self, info_hash: InfoHash, reason: StopReason) {
        let Some(carried) = self.carried.remove(&info_hash) else {
            return;
        };
        // No new connections first, then the session itself (its `stopped` announce and its
        // last resume record).
        self.node.registry.remove(&info_hash);
        carried.watcher.abort();
        carried.torrent.stop_and_wait().await;
        let why = match reason {
            StopReason::Unassigned => "unassigned",
            StopReason::Failed => "failed",
            StopReason::Shutdown => "shutting down",
        };
        let delete =
            reason == StopReason::Unassigned && self.config.unassigned == Unassigned::Delete;
        if !delete {
            tracing::info!(
                %info_hash,
                name = %carried.name,
                reason = why,
                data = "kept",
                dir = %carried.dir.root.display(),
                "stopped carrying"
            );
            return;
        }
        let root = carried.dir.root.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&root)).await;
        match removed {
            Ok(Ok(())) => tracing::info!(
                %info_hash,
                name = %carried.name,
                reason = why,
                data = "deleted",
                dir = %carried.dir.root.display(),
                "stopped carrying"
            ),
            Ok(Err(e)) => tracing::warn!(
                %info_hash,
                error = %e,
                dir = %carried.dir.root.display(),
                "stopped carrying, but cannot delete its data"
            ),
            Err(e) => {
                tracing::warn!(%info_hash, error = %e, "stopped carrying; the deletion task failed")
            }
        }
    }
}

/// Parses the tracker's metainfo for `info_hash` and checks that a relay may carry it: the
/// assigned info hash, and an encrypted (`info.ivcsd`), private torrent.
///
/// # Errors
/// Invalid metainfo, another torrent, or one that is not encrypted or not private.
pub fn check_metainfo(info_hash: InfoHash, torrent_bytes: &[u8]) -> Result<Metainfo, RelayError> {
    let metainfo = Metainfo::from_bytes(torrent_bytes)
        .map_err(|source| RelayError::Metainfo { info_hash, source })?;
    if metainfo.info_hash != info_hash {
        return Err(RelayError::WrongTorrent {
            requested: info_hash,
            got: metainfo.info_hash,
        });
    }
    let problem = if metainfo.info.ivcsd.is_none() {
        Some("has no info.ivcsd (not encrypted)")
    } else if !metainfo.info.private {
        Some("is not private")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(RelayError::NotEncrypted { info_hash, problem }),
        None => Ok(metainfo),
    }
}

fn on_disk_label(on_disk: OnDisk) -> &'static str {
    match on_disk {
        OnDisk::ResumeRecord => "resume record",
        OnDisk::Verified => "verified on disk",
        OnDisk::Nothing => "empty store",
    }
}

/// Creates the torrent's directory, keeps its metainfo there and opens (creating) its files.
/// Returns whether content was already on disk. Blocking: run it off the reactor.
fn open_store(
    dir: &TorrentDir,
    info_hash: InfoHash,
    torrent_bytes: &[u8],
    info: &crate::metainfo::Info,
) -> Result<(ContentFiles, bool), RelayError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| RelayError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir.root).map_err(io("creating", &dir.root))?;
    let metainfo_path = dir.metainfo(info_hash);
    crate::fsutil::write_atomic(&metainfo_path, torrent_bytes, 0o644)
        .map_err(io("writing", &metainfo_path))?;
    let data = dir.data();
    let existed = data.join(&info.name).exists();
    let files = ContentFiles::open(&data, info, OpenMode::Create)
        .map_err(|source| RelayError::Storage { info_hash, source })?;
    Ok((files, existed))
}

/// Logs when a carried torrent becomes complete, and when its session fails.
fn watch(torrent: &Arc<Torrent>) -> JoinHandle<()> {
    let mut progress = torrent.subscribe();
    let info_hash = torrent.info_hash();
    tokio::spawn(async move {
        let mut was_complete = progress.borrow_and_update().complete;
        while progress.changed().await.is_ok() {
            let (complete, bytes, error) = {
                let p = progress.borrow_and_update();
                (p.complete, p.bytes_total, p.error.clone())
            };
            if let Some(error) = error {
                tracing::warn!(
                    %info_hash,
                    %error,
                    "a carried torrent stopped on an error; it starts again at the next poll"
                );
                return;
            }
            if complete && !was_complete {
                tracing::info!(
                    %info_hash,
                    bytes,
                    "carrying all of it: every ciphertext piece verified and stored"
                );
                was_complete = true;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> InfoHash {
        InfoHash([n; 20])
    }

    #[test]
    fn changes_start_the_new_and_stop_the_unassigned() {
        let carried: HashSet<InfoHash> = [h(1), h(2), h(3)].into_iter().collect();
        let (start, stop) = changes(&carried, &[h(4), h(2), h(5), h(4)]);
        assert_eq!(
            start,
            vec![h(4), h(5)],
            "in the tracker's order, without repeats"
        );
        assert_eq!(stop, vec![h(1), h(3)]);
        let (start, stop) = changes(&carried, &[]);
        assert!(start.is_empty());
        assert_eq!(stop, vec![h(1), h(2), h(3)]);
        let (start, stop) = changes(&HashSet::new(), &[h(9)]);
        assert_eq!((start, stop), (vec![h(9)], vec![]));
    }

    #[test]
    fn the_budget_bounds_the_sum_of_carried_sizes() {
        let unlimited = StoreBudget::new(None);
        assert!(unlimited.admits(u64::MAX, u64::MAX));
        let budget = StoreBudget::new(Some(100));
        assert!(budget.admits(0, 100));
        assert!(budget.admits(60, 40));
        assert!(!budget.admits(60, 41));
        assert!(!budget.admits(0, 101));
        assert!(!budget.admits(u64::MAX, 1), "no overflow");
        assert!(StoreBudget::new(Some(0)).admits(0, 0));
    }

    /// A minimal torrent; `ivcsd` adds an `info.ivcsd` dictionary.
    fn torrent(private: bool, ivcsd: bool) -> (InfoHash, Vec<u8>) {
        use crate::bencode::{Dict, Value};
        let mut info = Dict::new()
            .with("length", 5i64)
            .with("name", "a.bin")
            .with("piece length", 16384i64)
            .with("pieces", &[7u8; 20]);
        if private {
            info = info.with("private", 1i64);
        }
        if ivcsd {
            info = info.with(
                "ivcsd",
                Dict::new()
                    .with("v", 1i64)
                    .with("cipher", "rc4+")
                    .with("key id", &[1u8; 16])
                    .with("check", &[2u8; 8]),
            );
        }
        let bytes = Value::Dict(Dict::new().with("info", info)).encode();
        let hash = Metainfo::from_bytes(&bytes).unwrap().info_hash;
        (hash, bytes)
    }

    #[test]
    fn only_the_assigned_encrypted_private_torrent_is_carried() {
        let (hash, bytes) = torrent(true, true);
        assert_eq!(check_metainfo(hash, &bytes).unwrap().info_hash, hash);
        assert!(matches!(
            check_metainfo(h(1), &bytes),
            Err(RelayError::WrongTorrent { requested, got }) if requested == h(1) && got == hash
        ));
        let (hash, bytes) = torrent(true, false);
        assert!(matches!(
            check_metainfo(hash, &bytes),
            Err(RelayError::NotEncrypted {
                problem: "has no info.ivcsd (not encrypted)",
                ..
            })
        ));
        let (hash, bytes) = torrent(false, true);
        assert!(matches!(
            check_metainfo(hash, &bytes),
            Err(RelayError::NotEncrypted {
                problem: "is not private",
                ..
            })
        ));
        assert!(matches!(
            check_metainfo(hash, b"d4:infoi1ee"),
            Err(RelayError::Metainfo { .. })
        ));
    }

    #[test]
    fn the_store_layout_keeps_each_torrent_in_its_own_directory() {
        let hash = h(0xab);
        let dir = TorrentDir::new(Path::new("/s"), hash);
        let hex = "ab".repeat(20);
        assert_eq!(dir.root, Path::new("/s").join(&hex));
        assert_eq!(
            dir.metainfo(hash),
            Path::new("/s").join(&hex).join(format!("{hex}.torrent"))
        );
        assert_eq!(dir.data(), Path::new("/s").join(&hex).join("data"));
        assert!(dir.resume_record(hash).starts_with(&dir.root));
    }
}
