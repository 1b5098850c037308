//! One torrent in a running peer: its swarm of connections, the picker, piece assembly and
//! verification, uploads, choking and the tracker announces (docs/protocol.md sections 4.1, 7
//! and 8).
//!
//! # Layout
//! This file holds the [`Torrent`] and its shared [`State`], and starts and stops the session.
//! Each job is a file of its own:
//! - `config.rs`: [`SessionConfig`]; `failure.rs`: the fatal failures that stop a session;
//! - `peers.rs`: the registry of connected peers, dialing, and closing peers that are banned;
//! - `handler.rs`: [`PeerHandler`], every event a connection reports;
//! - `requests.rs`: what to ask each peer for, and interest;
//! - `pieces.rs`: verifying and storing complete pieces off the reactor;
//! - `uploads.rs`: answering requests;
//! - `maintenance.rs`: the once-a-second task (choking, request time-outs, resume records);
//!
//! The decisions are plain types with no I/O, each with its own tests, that the files above
//! apply: `assembly.rs` (blocks into pieces, and which peer lied about a piece), `bans.rs`
//! (strikes and bans) and `choking.rs` (whom to unchoke, round after round).
//! - `resume.rs`: fast-resume records; `reverify.rs`: verifying the data on disk again;
//! - `announce.rs`: the announce loop; `progress.rs`: [`Progress`];
//! - `spans.rs`: the tracing spans of the session (see below).
//!
//! # Tasks
//! - one task per connection (`Connection::run` in [`crate::peer::connection`]); its
//!   [`Handler`](crate::peer::connection::Handler) is a [`PeerHandler`] that updates the shared [`State`] under one short,
//!   synchronous lock;
//! - piece verification and writes, and block reads for uploads, on blocking threads
//!   (`spawn_blocking`, bounded by semaphores), never on the reactor;
//! - a maintenance task: choking every 10 s, request time-outs, fast-resume records, dialing
//!   peers;
//! - an announce task: started, every interval (with back-off while the tracker is away),
//!   completed, and stopped at the end.
//!
//! # Spans
//! Every task of the session runs in its `torrent` span (the info hash in short hex), and each
//! connection, and each dial, in a `peer` span inside it (the peer's address), so that a log
//! line of a seeder of many torrents, or of a relay, says which torrent and which peer it is
//! about. Blocking work logs nothing of its own: its outcome is logged by the task that waits
//! for it.
//!
//! # Lock order
//! There is one `parking_lot::Mutex` ([`Torrent::state`]); it is never held across an
//! `.await`, so it cannot deadlock with anything async.
//!
//! What it will not do: know how bytes are stored or whether they are encrypted on disk; the
//! [`PieceStore`] does that, and everything here is ciphertext.

mod announce;
mod assembly;
mod bans;
mod choking;
mod config;
mod failure;
mod handler;
mod maintenance;
mod peers;
mod pieces;
mod progress;
mod requests;
mod resume;
mod reverify;
mod spans;
mod uploads;

pub use config::SessionConfig;
pub use handler::PeerHandler;
pub use progress::Progress;
pub use reverify::OnDamage;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, Span};

use crate::metainfo::{GeometryError, Info};
use crate::peer::bitfield::Bitfield;
use crate::peer::block_cache::BlockCache;
use crate::peer::buffers::BufferPool;
use crate::peer::connection::{Command, ConnectionHandle};
use crate::peer::geometry::PeerGeometry;
use crate::peer::picker::Picker;
use crate::peer::storage::PieceStore;
use crate::peer::tracker_client::TrackerClient;
use crate::types::InfoHash;

use assembly::Assembly;
use bans::Bans;
use choking::Choking;
use failure::Failure;
use peers::PeerSlot;

/// A connection's id inside one torrent.
pub type PeerKey = u64;

/// How long a stopping session may take for its `stopped` announce and last resume record.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The mutable state of a torrent. Invariant: every key of `peers` is known to `picker`.
struct State {
    picker: Picker<PeerKey>,
    peers: HashMap<PeerKey, PeerSlot>,
    /// Pieces being assembled, and who sent the blocks of pieces that failed verification.
    assembly: Assembly,
    next_key: PeerKey,
    /// Addresses connected or being dialed, and addresses that are ourselves.
    dialing: HashSet<SocketAddr>,
    /// Strikes against peers, and the peers banned for them.
    bans: Bans,
    /// Whom we upload to, round after round.
    choking: Choking<PeerKey>,
    complete: bool,
    resume_dirty: bool,
    /// Set when a re-verification found damaged pieces and wrote the record without them:
    /// no later record may name them again.
    resume_frozen: bool,
}

/// A torrent being downloaded, seeded or relayed.
pub struct Torrent {
    info_hash: InfoHash,
    store: Arc<dyn PieceStore>,
    geometry: PeerGeometry,
    config: SessionConfig,
    state: Mutex<State>,
    cache: BlockCache,
    /// Buffers of pieces being assembled and verified (their bytes are [`Assembly::bytes`]).
    pieces: BufferPool,
    /// Bounds pieces being hashed and written at once.
    verifiers: Arc<Semaphore>,
    /// The permits of `verifiers`.
    verifier_count: usize,
    progress: watch::Sender<Progress>,
    downloaded: AtomicU64,
    uploaded: AtomicU64,
    completed: Notify,
    tracker: Option<Arc<TrackerClient>>,
    resume_path: Option<PathBuf>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The `torrent` span that every task of the session runs in.
    span: Span,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the torrent's geometry is unusable: {0}")]
    Geometry(#[source] GeometryError),
}

impl Torrent {
    /// A session for the torrent held by `store`, of which the pieces in `have` are verified.
    /// Nothing runs until [`Torrent::start`].
    ///
    /// # Errors
    /// A torrent whose geometry the wire cannot describe.
    pub fn new(
        info_hash: InfoHash,
        store: Arc<dyn PieceStore>,
        have: Bitfield,
        config: SessionConfig,
        tracker: Option<Arc<TrackerClient>>,
        resume_path: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Torrent>, SessionError> {
        let info = store.info();
        let geometry = PeerGeometry::new(info.piece_length, info.total_length)
            .map_err(SessionError::Geometry)?;
        let complete = have.is_full();
        let picker = Picker::new(*info.geometry(), have);
        let cache = BlockCache::new(
            Arc::clone(&store),
            config.upload_cache_bytes,
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        );
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Idle buffers kept: what the budget holds, plus one. (The budget is checked before a
        // round of requests, which may start a few pieces; buffers beyond are freed.)
        let pieces = BufferPool::new(
            info.piece_length as usize,
            (config.piece_buffer_budget / info.piece_length.max(1)) as usize + 1,
        );
        let torrent = Arc::new(Torrent {
            info_hash,
            geometry,
            config,
            state: Mutex::new(State {
                picker,
                peers: HashMap::new(),
                assembly: Assembly::default(),
                next_key: 0,
                dialing: HashSet::new(),
                bans: Bans::default(),
                choking: Choking::new(),
                complete,
                resume_dirty: false,
                resume_frozen: false,
            }),
            cache,
            pieces,
            verifiers: Arc::new(Semaphore::new(threads + 1)),
            verifier_count: threads + 1,
            progress: watch::Sender::new(Progress::default()),
            downloaded: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            completed: Notify::new(),
            tracker,
            resume_path,
            shutdown,
            tasks: TaskTracker::new(),
            span: spans::torrent_span(info_hash),
            store,
        });
        torrent.publish_progress();
        Ok(torrent)
    }

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn info(&self) -> &Info {
        self.store.info()
    }

    /// Progress reports; the last value is always current.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// How many peers were banned for sending corrupt data.
    pub fn banned_count(&self) -> usize {
        self.lock().bans.banned_count()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.lock().complete
    }

    /// Stops the session: connections close and a `stopped` announce is sent.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every task of the session has ended (after [`Torrent::stop`]).
    pub async fn wait_stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Stops the session and waits, at most [`STOP_TIMEOUT`], for it to end (its `stopped`
    /// announce and last resume record); a session that takes longer is logged and left.
    pub async fn stop_and_wait(&self) {
        self.stop();
        if tokio::time::timeout(STOP_TIMEOUT, self.wait_stopped())
            .await
            .is_err()
        {
            tracing::warn!(info_hash = %self.info_hash, "the session did not stop within {STOP_TIMEOUT:?}");
        }
    }

    /// The session's state. A panic while holding it is a bug; the lock does not poison, so
    /// the state is still usable for shutdown.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Starts the maintenance and announce tasks, and dials `initial_peers`.
    pub fn start(self: &Arc<Self>, initial_peers: &[SocketAddr]) {
        self.spawn(Arc::clone(self).maintain());
        if self.tracker.is_some() {
            self.spawn(Arc::clone(self).announce_loop());
        }
        self.dial(initial_peers);
    }

    /// Runs `task` as a task of the session, in its `torrent` span.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task.instrument(self.span.clone()));
    }

    /// The span of the connection to (or the dial of) the peer at `addr`, inside the
    /// `torrent` span.
    fn peer_span(&self, addr: Option<SocketAddr>) -> Span {
        spans::peer_span(&self.span, addr)
    }

    /// A fatal error: report it and stop.
    /// Only the first error is kept: the ones after it (other pieces failing on the same full
    /// disk) add nothing. It is reported through [`Progress::error`], so that the command shows
    /// one clear line; the log has it at debug level.
    fn fail(&self, failure: Failure) {
        let message = failure.to_string();
        tracing::debug!(info_hash = %self.info_hash, "{message}");
        let first = self.progress.send_if_modified(|p| {
            if p.error.is_some() {
                return false;
            }
            p.error = Some(message);
            true
        });
        if first {
            self.config.traffic.add_failed_torrent();
        }
        self.shutdown.cancel();
    }
}

/// Queues a command without waiting; if the queue is full, a task waits for room. (Commands
/// are small; the queue bound still holds, as the task holds only one.)
fn send(handle: &ConnectionHandle, command: Command) {
    use tokio::sync::mpsc::error::TrySendError;
    match handle.try_send(command) {
        Ok(()) | Err(TrySendError::Closed(_)) => {}
        Err(TrySendError::Full(command)) => {
            let handle = handle.clone();
            tokio::spawn(
                async move {
                    let _ = handle.send(command).await;
                }
                .in_current_span(),
            );
        }
    }
}
