//! One torrent in a running peer: its swarm of connections, the picker, piece assembly and
//! verification, uploads, choking and the tracker announces (docs/protocol.md sections 4.1, 7
//! and 8).
//!
//! # Tasks
//! - one task per connection (`Connection::run` in [`crate::peer::connection`]); its
//!   [`Handler`] is a [`PeerHandler`] that updates the shared [`State`] under one short,
//!   synchronous lock;
//! - piece verification and writes, and block reads for uploads, on blocking threads
//!   (`spawn_blocking`, bounded by semaphores), never on the reactor;
//! - a maintenance task: choking every 10 s, request time-outs, fast-resume records, dialing
//!   peers;
//! - an announce task: started, every interval (with back-off while the tracker is away),
//!   completed, and stopped at the end.
//!
//! # Lock order
//! There is one `std::sync::Mutex` ([`Torrent::state`]); it is never held across an `.await`,
//! so it cannot deadlock with anything async.
//!
//! What it will not do: know how bytes are stored or whether they are encrypted on disk; the
//! [`PieceStore`] does that, and everything here is ciphertext.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metainfo::Info;
use crate::peer::bitfield::Bitfield;
use crate::peer::block_cache::BlockCache;
use crate::peer::buffers::BufferPool;
use crate::peer::choker::{self, Candidate};
use crate::peer::connection::{
    self, Command, ConnectionConfig, ConnectionHandle, Event, Handler, HandlerError, Handshaken,
    Outbox,
};
use crate::peer::metrics::Traffic;
use crate::peer::picker::{BlockOutcome, Picker};
use crate::peer::resume;
use crate::peer::storage::{PieceStore, StorageError, piece_matches};
use crate::peer::tracker_client::{AnnounceEvent, AnnounceRequest, TrackerClient};
use crate::peer::wire::{BlockRequest, Geometry};
use crate::types::{InfoHash, PeerId};
use sha1::{Digest as _, Sha1};

/// A connection's id inside one torrent.
pub type PeerKey = u64;

/// The size of the blocks we request, and of the blocks the cipher keys: 16 KiB.
const BLOCK_LEN: usize = crate::peer::picker::BLOCK_LEN as usize;
/// Connections a peer may end by breaking the protocol (docs/protocol.md 7) before it is banned.
const PROTOCOL_STRIKES_TO_BAN: u32 = 3;
/// How long a stopping session may take for its `stopped` announce and last resume record.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a torrent session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub connection: ConnectionConfig,
    /// The port we announce (where our listener accepts).
    pub announce_port: u16,
    /// Most connections at once, incoming and outgoing.
    pub max_peers: usize,
    /// Most of our requests outstanding at one peer (fewer if the peer's `reqq` says so).
    pub pipeline: usize,
    /// Peers unchoked by merit; one more is unchoked optimistically.
    pub unchoke_slots: usize,
    /// A request unanswered for this long goes to another peer.
    pub request_timeout: Duration,
    /// Most bytes of pieces being assembled or verified in memory.
    pub piece_buffer_budget: u64,
    /// Most bytes of encrypted blocks kept for uploads (a downloader keeps the pieces it has
    /// just verified there: the others ask for those next).
    pub upload_cache_bytes: u64,
    /// How many peers to ask the tracker for.
    pub numwant: u32,
    /// The process's counters ([`crate::peer::metrics`]), shared by all its torrents.
    pub traffic: Arc<Traffic>,
}

impl SessionConfig {
    pub fn new(peer_id: PeerId, announce_port: u16) -> Self {
        let mut connection = ConnectionConfig::new(peer_id);
        connection.listen_port = Some(announce_port);
        SessionConfig {
            connection,
            announce_port,
            max_peers: 50,
            pipeline: 128,
            unchoke_slots: 4,
            request_timeout: Duration::from_secs(20),
            // A downloader's resident memory is about 12 MiB plus the piece budget and its
            // upload cache, plus its connections' buffers: about 52 MiB in a swarm of four
            // downloaders (docs/benchmarks.md). Of the two, the cache gains more: 16 MiB of
            // pieces in flight fill a loopback link, and every upload that misses the cache
            // costs an RC4+ pass (24 + 8 MiB measured 239 MB/s one-to-four, 16 + 16 MiB 270).
            piece_buffer_budget: 16 * 1024 * 1024,
            upload_cache_bytes: 16 * 1024 * 1024,
            numwant: 50,
            traffic: Arc::default(),
        }
    }
}

/// What a torrent session reports as it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub bytes_have: u64,
    pub bytes_total: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub peers: usize,
    pub complete: bool,
    /// A fatal error (a full disk, say); the session stops.
    pub error: Option<String>,
    /// The last tracker problem, if the last announce failed.
    pub tracker_error: Option<String>,
}

/// One connected peer.
struct PeerSlot {
    handle: ConnectionHandle,
    addr: Option<SocketAddr>,
    peer_id: PeerId,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// The peer's `reqq`, if it sent one.
    reqq: Option<u32>,
    /// Both sides speak BEP 6: a choke is followed by explicit rejects of our requests.
    fast: bool,
    /// Bytes received from / sent to this peer since the last choking round.
    received_round: u64,
    sent_round: u64,
}

/// The mutable state of a torrent. Invariant: every key of `peers` is known to `picker`.
struct State {
    picker: Picker<PeerKey>,
    peers: HashMap<PeerKey, PeerSlot>,
    /// Pieces being assembled; each buffer has the piece's length.
    partial: HashMap<u32, PartialPiece>,
    partial_bytes: u64,
    /// Pieces that failed verification: who sent which block, and its hash. When the piece
    /// later verifies, the peers whose blocks differ from the good ones are banned; honest
    /// peers that shared a bad piece with a liar are never blamed.
    suspects: HashMap<u32, Vec<SentBlock>>,
    next_key: PeerKey,
    /// Addresses connected or being dialed, and addresses that are ourselves.
    dialing: HashSet<SocketAddr>,
    /// Addresses of peers that sent data failing verification: never again.
    /// Peers that sent data failing verification: their peer ids are refused and their
    /// addresses never dialed again. (Not whole IP addresses: many honest peers can share one
    /// behind a NAT, or on 127.0.0.1.)
    banned: Banned,
    /// Connections each peer ended by breaking the protocol.
    strikes: HashMap<PeerId, u32>,
    optimistic: Option<PeerKey>,
    choke_rounds: u64,
    complete: bool,
    resume_dirty: bool,
    /// Set when a re-verification found damaged pieces and wrote the record without them:
    /// no later record may name them again.
    resume_frozen: bool,
}

/// A piece being assembled: its bytes and who sent each block.
struct PartialPiece {
    data: Vec<u8>,
    /// Per 16 KiB block, the peer that sent it.
    senders: Vec<Option<(PeerId, Option<SocketAddr>)>>,
}

/// A block of a piece that failed verification.
#[derive(Clone, Copy)]
struct SentBlock {
    block: usize,
    peer_id: PeerId,
    addr: Option<SocketAddr>,
    sha1: [u8; 20],
}

/// What verifying a complete piece found.
enum Verdict {
    /// Stored; these peers sent blocks that differ from the verified ones.
    Good { liars: Vec<SentBlock> },
    /// The hash did not match; the hash of each block, for telling liars apart later.
    Bad { block_hashes: Vec<[u8; 20]> },
}

/// Who sent corrupt data.
#[derive(Default)]
struct Banned {
    ids: HashSet<PeerId>,
    addrs: HashSet<SocketAddr>,
}

/// What [`Torrent::reverify_every`] does when pieces on disk no longer match.
#[derive(Debug, Clone)]
pub enum OnDamage {
    /// Stop, and delete the resume record: a seeder's plaintext is the user's, and data that
    /// changed under it must be restored or seeded again, not repaired behind their back.
    StopServing,
    /// Stop, with a resume record that leaves the damaged pieces out, so that the next start
    /// fetches them again from the swarm: a relay's ciphertext store is its own. `restart`
    /// (if any) is notified once the torrent has stopped, so that its owner starts it again
    /// at once instead of at its next routine look.
    Refetch {
        restart: Option<Arc<tokio::sync::Notify>>,
    },
}

/// A torrent being downloaded, seeded or relayed.
pub struct Torrent {
    info_hash: InfoHash,
    store: Arc<dyn PieceStore>,
    geometry: Geometry,
    config: SessionConfig,
    state: Mutex<State>,
    cache: BlockCache,
    /// Buffers of pieces being assembled and verified (their bytes are `partial_bytes`).
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
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the torrent's geometry is unusable: {0}")]
    Geometry(String),
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
        let geometry = Geometry::new(info.piece_length, info.total_length)
            .map_err(|e| SessionError::Geometry(e.to_string()))?;
        let complete = have.is_full();
        let picker = Picker::new(geometry, have);
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
                partial: HashMap::new(),
                partial_bytes: 0,
                suspects: HashMap::new(),
                next_key: 0,
                dialing: HashSet::new(),
                banned: Banned::default(),
                strikes: HashMap::new(),
                optimistic: None,
                choke_rounds: 0,
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
        self.lock().banned.ids.len()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.lock().complete
    }

    /// Hashes every piece on disk again every `every` (the first time `every` after this
    /// call), off the reactor, and stops the torrent with an error as soon as one no longer
    /// matches. A seeder or relay that runs for months must notice data that rots, or is
    /// changed without its size or modification time moving (which [`StorageError::Changed`]
    /// catches), before downloaders reject it piece by piece. It runs on one blocking thread,
    /// a piece at a time, so that serving keeps the other cores (unlike the check before
    /// seeding, which someone waits for and which takes them all). What happens to the
    /// session's resume record (if it has one) on a mismatch is `on_damage`'s.
    pub fn reverify_every(self: &Arc<Self>, every: Duration, on_damage: OnDamage) {
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = me.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // Only pieces verified before the pass can be damaged: a relay still
                // downloading has others that are simply not there yet.
                let had = me.lock().picker.have().clone();
                let (store, stop) = (Arc::clone(&me.store), me.shutdown.clone());
                // One thread: serving keeps the other cores however long this runs.
                let checked = tokio::task::spawn_blocking(move || {
                    crate::peer::storage::recheck_on_one_thread(&*store, &|| stop.is_cancelled())
                })
                .await;
                let Ok(good) = checked else { return };
                if me.shutdown.is_cancelled() {
                    return;
                }
                let bad: Vec<u32> = had
                    .iter_set()
                    .filter(|&index| !good.get(index as usize).copied().unwrap_or(false))
                    .collect();
                let Some(&first) = bad.first() else {
                    tracing::info!(
                        info_hash = %me.info_hash,
                        pieces = had.count(),
                        "every piece verified again"
                    );
                    continue;
                };
                let damage = format!(
                    "{} of {} pieces no longer match the torrent (the first: piece {first})",
                    bad.len(),
                    good.len()
                );
                let record = me.resume_path.as_deref();
                let message = match on_damage {
                    OnDamage::StopServing => {
                        if let Some(record) = record {
                            me.forget_resume_record(record).await;
                        }
                        format!(
                            "{damage}: the data changed or is damaged on disk; stopped serving \
                             it (restore the data, or seed it again to verify it)"
                        )
                    }
                    OnDamage::Refetch { .. } => {
                        if let Some(record) = record {
                            me.save_resume_without(record, &bad).await;
                        }
                        format!(
                            "{damage}: damaged on disk; stopped, and those pieces are fetched \
                             again when it starts again"
                        )
                    }
                };
                me.fail(message);
                if let OnDamage::Refetch {
                    restart: Some(restart),
                } = &on_damage
                {
                    restart.notify_one();
                }
                return;
            }
        });
    }

    /// Deletes the resume record and writes none again, so that the next start verifies
    /// everything instead of trusting damaged data (whose size and modification time may be
    /// unchanged).
    async fn forget_resume_record(&self, record: &Path) {
        self.lock().resume_frozen = true;
        if let Err(e) = tokio::fs::remove_file(record).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "cannot delete the resume record {} of damaged data: {e}",
                record.display()
            );
        }
    }

    /// Writes the resume record with the `bad` pieces taken out, and none again: the next
    /// start trusts the good pieces and fetches the bad ones. If the record cannot be
    /// written it is deleted, and the next start verifies everything.
    async fn save_resume_without(&self, record: &Path, bad: &[u32]) {
        let mut have = {
            let mut state = self.lock();
            state.resume_frozen = true;
            state.picker.have().clone()
        };
        for &index in bad {
            have.clear(index);
        }
        if let Err(e) = self.write_resume(record, have).await {
            tracing::warn!("{e} (without the damaged pieces)");
            self.forget_resume_record(record).await;
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still usable for shutdown.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the maintenance and announce tasks, and dials `initial_peers`.
    pub fn start(self: &Arc<Self>, initial_peers: &[SocketAddr]) {
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.maintain().await });
        if self.tracker.is_some() {
            let me = Arc::clone(self);
            self.tasks.spawn(async move { me.announce_loop().await });
        }
        self.dial(initial_peers);
    }

    /// Takes a connection whose handshake (for this torrent) completed, in either direction.
    pub fn add_peer(self: &Arc<Self>, handshaken: Handshaken) {
        let addr = handshaken.peer_addr();
        let peer_id = handshaken.peer_id();
        let fast = handshaken.fast();
        let mut state = self.lock();
        if self.shutdown.is_cancelled()
            || state.peers.len() >= self.config.max_peers
            || state.banned.ids.contains(&peer_id)
            || addr.is_some_and(|a| state.banned.addrs.contains(&a))
            || state.peers.values().any(|p| p.peer_id == peer_id)
        {
            tracing::debug!(?addr, "connection not taken (full, banned or duplicate)");
            return;
        }
        let key = state.next_key;
        state.next_key += 1;
        state.picker.add_peer(key);
        let handler = PeerHandler {
            torrent: Arc::clone(self),
            key,
        };
        let (connection, handle) = handshaken.into_connection(
            self.geometry,
            state.picker.have(),
            handler,
            &self.config.connection,
        );
        state.peers.insert(
            key,
            PeerSlot {
                handle,
                addr,
                peer_id,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                reqq: None,
                fast,
                received_round: 0,
                sent_round: 0,
            },
        );
        drop(state);
        self.publish_progress();
        let me = Arc::clone(self);
        let token = self.shutdown.child_token();
        self.tasks.spawn(async move {
            let result = connection.run(token).await;
            match &result {
                Ok(()) => tracing::debug!(?addr, "connection closed"),
                Err(e) => tracing::debug!(?addr, error = %e, "connection ended"),
            }
            if let Err(e) = &result
                && e.blames_peer()
            {
                me.strike(peer_id, addr, PROTOCOL_STRIKES_TO_BAN);
            }
            me.remove_peer(key);
        });
    }

    fn remove_peer(&self, key: PeerKey) {
        let mut state = self.lock();
        if let Some(slot) = state.peers.remove(&key)
            && let Some(addr) = slot.addr
        {
            state.dialing.remove(&addr);
        }
        state.picker.remove_peer(key);
        if state.optimistic == Some(key) {
            state.optimistic = None;
        }
        // Its requests went back to the pool: give them to others.
        let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
        for other in keys {
            self.fill_requests(&mut state, other, None);
        }
        drop(state);
        self.publish_progress();
    }

    /// Dials addresses we are not connected to (bounded by `max_peers`).
    fn dial(self: &Arc<Self>, addrs: &[SocketAddr]) {
        let mut state = self.lock();
        let mut room = self
            .config
            .max_peers
            .saturating_sub(state.peers.len().max(state.dialing.len()));
        for &addr in addrs {
            if room == 0 {
                break;
            }
            if state.dialing.contains(&addr) || state.banned.addrs.contains(&addr) {
                continue;
            }
            if state.complete
                && state
                    .peers
                    .values()
                    .any(|p| p.addr.is_some_and(|a| a.ip() == addr.ip()))
            {
                continue;
            }
            state.dialing.insert(addr);
            room -= 1;
            let me = Arc::clone(self);
            self.tasks.spawn(async move {
                let dialed = tokio::time::timeout(
                    me.config.connection.handshake_timeout,
                    TcpStream::connect(addr),
                )
                .await;
                let handshaken = match dialed {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        connection::connect(stream, me.info_hash, &me.config.connection).await
                    }
                    Ok(Err(e)) => Err(connection::ConnectionError::Io {
                        op: "connecting",
                        source: e,
                    }),
                    Err(_) => Err(connection::ConnectionError::Timeout("connecting")),
                };
                match handshaken {
                    Ok(h) => me.add_peer(h),
                    Err(connection::ConnectionError::OwnPeerId) => {
                        // Ourselves, as the tracker lists us: keep it in `dialing` for good.
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "could not connect");
                    }
                }
                // Connected peers are tracked by their slot; forget the dial either way.
                let mut state = me.lock();
                if !state.peers.values().any(|p| p.addr == Some(addr)) {
                    state.dialing.remove(&addr);
                }
            });
        }
    }

    /// Sends new requests to `key` if it unchoked us and has room in its pipeline.
    fn fill_requests(&self, state: &mut State, key: PeerKey, out: Option<&mut Outbox>) {
        let Some(slot) = state.peers.get(&key) else {
            return;
        };
        if slot.peer_choking || state.complete {
            return;
        }
        let pipeline = slot.reqq.map_or(self.config.pipeline, |r| {
            (r as usize).clamp(1, self.config.pipeline)
        });
        // Do not start new pieces while assembly buffers are over budget.
        let budget_left = state.partial_bytes < self.config.piece_buffer_budget;
        let requests = if budget_left {
            state.picker.next_requests(key, pipeline, Instant::now())
        } else {
            state
                .picker
                .next_requests_in_progress(key, pipeline, Instant::now())
        };
        if requests.is_empty() {
            return;
        }
        match out {
            Some(out) => {
                for r in requests {
                    out.send(Command::Request(r));
                }
            }
            None => {
                let handle = slot.handle.clone();
                for r in requests {
                    send(&handle, Command::Request(r));
                }
            }
        }
    }

    /// Updates whether we are interested in `key`.
    fn update_interest(state: &mut State, key: PeerKey, out: &mut Outbox) {
        let interesting = !state.complete && state.picker.is_interesting(key);
        if let Some(slot) = state.peers.get_mut(&key)
            && slot.am_interested != interesting
        {
            slot.am_interested = interesting;
            out.send(if interesting {
                Command::Interested
            } else {
                Command::NotInterested
            });
        }
    }

    /// A block arrived from `key`: store it in its piece buffer; a complete piece goes to be
    /// verified.
    fn on_block(
        self: &Arc<Self>,
        state: &mut State,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
        out: &mut Outbox,
    ) {
        let outcome = state
            .picker
            .block_received(key, index, begin, data.len() as u32);
        if let Some(slot) = state.peers.get_mut(&key) {
            slot.received_round += data.len() as u64;
        }
        match outcome {
            BlockOutcome::Accepted {
                cancel,
                piece_complete,
            } => {
                let request = BlockRequest {
                    index,
                    begin,
                    length: data.len() as u32,
                };
                for other in cancel {
                    if let Some(slot) = state.peers.get(&other) {
                        send(&slot.handle, Command::Cancel(request));
                    }
                }
                let piece_len = self.geometry.piece_len(index).unwrap_or(0) as usize;
                let sender = state.peers.get(&key).map(|s| (s.peer_id, s.addr));
                let mut added = 0;
                let piece = state.partial.entry(index).or_insert_with(|| {
                    added = piece_len as u64;
                    PartialPiece {
                        // Reused buffers hold old bytes; every block of the piece overwrites
                        // its part before the piece completes.
                        data: self.pieces.take(piece_len),
                        senders: vec![None; piece_len.div_ceil(BLOCK_LEN)],
                    }
                });
                let start = begin as usize;
                // The picker accepted the block, so it lies inside the piece.
                if let Some(dst) = piece.data.get_mut(start..start + data.len()) {
                    dst.copy_from_slice(data);
                }
                if let Some(slot) = piece.senders.get_mut(start / BLOCK_LEN) {
                    *slot = sender;
                }
                state.partial_bytes += added;
                if piece_complete && let Some(piece) = state.partial.remove(&index) {
                    // The piece stays counted in `partial_bytes` until it is verified and
                    // written (`verify_piece` releases it): if verification falls behind, no
                    // new pieces start, and memory stays bounded whatever the file's size.
                    let suspects = state.suspects.remove(&index).unwrap_or_default();
                    self.verify_piece(index, piece, suspects);
                }
            }
            BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
            BlockOutcome::Invalid => {
                tracing::debug!(key, index, begin, "block of the wrong shape");
            }
        }
        self.fill_requests(state, key, Some(out));
    }

    /// Hashes and stores a complete piece off the reactor, then records the outcome.
    /// `suspects` are the blocks of earlier failed attempts at this piece.
    fn verify_piece(self: &Arc<Self>, index: u32, piece: PartialPiece, suspects: Vec<SentBlock>) {
        let me = Arc::clone(self);
        let permits = Arc::clone(&self.verifiers);
        self.tasks.spawn(async move {
            let release = |me: &Torrent| me.lock().partial_bytes -= piece.data.len() as u64;
            let Ok(_permit) = permits.acquire_owned().await else {
                release(&me);
                return;
            };
            // After shutdown nothing more is written: the last resume record must describe
            // the files as they stay.
            if me.shutdown.is_cancelled() {
                release(&me);
                return;
            }
            let PartialPiece { data, senders } = piece;
            let piece_bytes = data.len() as u64;
            // Someone may ask us for this piece soon: keep its ciphertext for uploads.
            let offer = me.lock().peers.values().any(|p| p.peer_interested);
            let worker = Arc::clone(&me);
            let checked = tokio::task::spawn_blocking(move || {
                let mut data = data;
                let verdict = worker.check_and_store(index, &mut data, &suspects, offer);
                worker.pieces.give(data);
                verdict
            })
            .await;
            me.lock().partial_bytes -= piece_bytes;
            match checked {
                Ok(Ok(Verdict::Good { liars })) => {
                    for liar in liars {
                        me.strike(liar.peer_id, liar.addr, 1);
                        me.close_peer(liar.peer_id);
                    }
                    me.piece_done(index);
                }
                Ok(Ok(Verdict::Bad { block_hashes })) => {
                    me.config.traffic.add_rejected_piece();
                    me.piece_bad(index, &senders, &block_hashes)
                }
                Ok(Err(e)) => me.fail(format!("cannot store piece {index}: {e}")),
                Err(e) => me.fail(format!("piece {index}: verification task failed: {e}")),
            }
        });
    }

    /// Hashes a complete piece and, when it verifies, offers it to the upload cache (if
    /// `offer`) and stores it. Runs on a blocking thread.
    fn check_and_store(
        &self,
        index: u32,
        data: &mut [u8],
        suspects: &[SentBlock],
        offer: bool,
    ) -> Result<Verdict, StorageError> {
        let info = self.store.info();
        let blocks = data.len().div_ceil(BLOCK_LEN);
        let Some(piece) = info.piece_index(index) else {
            return Ok(Verdict::Bad {
                block_hashes: Vec::new(),
            });
        };
        let block_sha1 = |b: usize| -> [u8; 20] {
            let end = ((b + 1) * BLOCK_LEN).min(data.len());
            Sha1::digest(&data[b * BLOCK_LEN..end]).into()
        };
        if !piece_matches(info, piece, data) {
            let block_hashes = (0..blocks).map(block_sha1).collect();
            return Ok(Verdict::Bad { block_hashes });
        }
        let liars = suspects
            .iter()
            .filter(|s| s.block < blocks && block_sha1(s.block) != s.sha1)
            .copied()
            .collect();
        // Before the store decrypts the buffer in place. Nobody can ask for the piece before
        // `piece_done` marks it ours, and if the write fails the session ends.
        if offer {
            self.cache.offer_piece(index, data);
        }
        self.store
            .write_piece(piece, data)
            .map(|()| Verdict::Good { liars })
    }

    /// Closes the connections of a (banned) peer.
    fn close_peer(&self, peer_id: PeerId) {
        let state = self.lock();
        for slot in state.peers.values().filter(|s| s.peer_id == peer_id) {
            send(&slot.handle, Command::Close);
        }
    }

    fn piece_done(self: &Arc<Self>, index: u32) {
        let len = u64::from(self.geometry.piece_len(index).unwrap_or(0));
        self.downloaded.fetch_add(len, Ordering::Relaxed);
        self.config.traffic.add_downloaded(len);
        let mut state = self.lock();
        if !state.picker.piece_verified(index) {
            return;
        }
        state.resume_dirty = true;
        for slot in state.peers.values() {
            send(&slot.handle, Command::Have(index));
        }
        let now_complete = state.picker.is_complete();
        if now_complete && !state.complete {
            state.complete = true;
            // Not interested in anyone any more; seeds among the peers are of no use now.
            for slot in state.peers.values_mut() {
                if slot.am_interested {
                    slot.am_interested = false;
                    send(&slot.handle, Command::NotInterested);
                }
            }
        } else {
            let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
            for key in keys {
                self.fill_requests(&mut state, key, None);
            }
        }
        drop(state);
        self.publish_progress();
        if now_complete {
            let me = Arc::clone(self);
            self.tasks.spawn(async move {
                me.save_resume().await;
                tracing::info!(info_hash = %me.info_hash, "download complete and verified");
                me.completed.notify_waiters();
                me.publish_progress();
            });
        }
    }

    /// A piece failed its hash check: it is wanted again. A peer that alone sent all of it is
    /// banned at once; otherwise who sent which block is kept, and the liars are found when
    /// the piece verifies (see [`State::suspects`]).
    fn piece_bad(
        &self,
        index: u32,
        senders: &[Option<(PeerId, Option<SocketAddr>)>],
        block_hashes: &[[u8; 20]],
    ) {
        let mut state = self.lock();
        state.picker.piece_failed(index);
        let mut distinct: Vec<(PeerId, Option<SocketAddr>)> = Vec::new();
        for (peer_id, addr) in senders.iter().flatten() {
            if !distinct.iter().any(|(p, _)| p == peer_id) {
                distinct.push((*peer_id, *addr));
            }
        }
        tracing::warn!(index, peers = distinct.len(), "piece failed verification");
        if let [(peer_id, addr)] = distinct[..] {
            Self::strike_locked(&mut state, peer_id, addr, 1);
            for slot in state.peers.values().filter(|s| s.peer_id == peer_id) {
                send(&slot.handle, Command::Close);
            }
        } else {
            let record = state.suspects.entry(index).or_default();
            for (block, sender) in senders.iter().enumerate() {
                if let (Some((peer_id, addr)), Some(sha1)) = (sender, block_hashes.get(block)) {
                    record.push(SentBlock {
                        block,
                        peer_id: *peer_id,
                        addr: *addr,
                        sha1: *sha1,
                    });
                }
            }
        }
        let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(&mut state, key, None);
        }
    }

    /// Counts a fault against a peer; bans it at `limit` faults.
    fn strike(&self, peer_id: PeerId, addr: Option<SocketAddr>, limit: u32) {
        let mut state = self.lock();
        Self::strike_locked(&mut state, peer_id, addr, limit);
    }

    /// Returns whether the peer is now banned.
    fn strike_locked(
        state: &mut State,
        peer_id: PeerId,
        addr: Option<SocketAddr>,
        limit: u32,
    ) -> bool {
        let strikes = state.strikes.entry(peer_id).or_insert(0);
        *strikes += 1;
        if *strikes < limit {
            return false;
        }
        if state.banned.ids.insert(peer_id) {
            tracing::warn!(?addr, %peer_id, "banning a peer that sent corrupt data or broke the protocol");
        }
        if let Some(addr) = addr {
            state.banned.addrs.insert(addr);
        }
        true
    }

    /// A fatal error: report it and stop.
    /// Only the first error is kept: the ones after it (other pieces failing on the same full
    /// disk) add nothing. It is reported through [`Progress::error`], so that the command shows
    /// one clear line; the log has it at debug level.
    fn fail(&self, message: String) {
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

    /// Answers a request of `key` with the block's ciphertext, read off the reactor.
    fn serve(self: &Arc<Self>, key: PeerKey, handle: ConnectionHandle, request: BlockRequest) {
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            match me
                .cache
                .block(request.index, request.begin, request.length)
                .await
            {
                Ok(data) if data.len() == request.length as usize => {
                    let len = data.len() as u64;
                    if handle
                        .send(Command::Piece {
                            index: request.index,
                            begin: request.begin,
                            data,
                        })
                        .await
                        .is_ok()
                    {
                        me.uploaded.fetch_add(len, Ordering::Relaxed);
                        me.config.traffic.add_uploaded(len);
                        if let Some(slot) = me.lock().peers.get_mut(&key) {
                            slot.sent_round += len;
                        }
                    }
                }
                Ok(_) => {
                    let _ = handle.send(Command::Reject(request)).await;
                }
                // Content changed under a seeder: nothing it serves can be trusted any more.
                Err(e @ StorageError::Changed { .. }) => {
                    let _ = handle.send(Command::Reject(request)).await;
                    me.fail(e.to_string());
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a block to upload");
                    let _ = handle.send(Command::Reject(request)).await;
                }
            }
        });
    }

    /// Choking, request time-outs and resume records, until shutdown.
    async fn maintain(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            ticks += 1;
            self.expire_requests();
            if ticks % 10 == 1 {
                self.choke_round();
            }
            if ticks.is_multiple_of(5) {
                self.save_resume().await;
            }
            self.publish_progress();
        }
        // Wait for pieces being written, then record what is on disk.
        let all = u32::try_from(self.verifier_count).unwrap_or(u32::MAX);
        let _quiet = self.verifiers.acquire_many(all).await;
        self.save_resume().await;
    }

    fn expire_requests(&self) {
        let mut state = self.lock();
        let expired = state
            .picker
            .expire_requests(Instant::now(), self.config.request_timeout);
        for (key, request) in &expired {
            if let Some(slot) = state.peers.get(key) {
                send(&slot.handle, Command::Cancel(*request));
            }
        }
        if !expired.is_empty() {
            let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
            for key in keys {
                self.fill_requests(&mut state, key, None);
            }
        }
    }

    fn choke_round(&self) {
        let mut state = self.lock();
        state.choke_rounds += 1;
        let rotate = state.choke_rounds % 3 == 1;
        let candidates: Vec<Candidate<PeerKey>> = state
            .peers
            .iter()
            .map(|(&key, s)| Candidate {
                key,
                interested: s.peer_interested,
                received: s.received_round,
                sent: s.sent_round,
            })
            .collect();
        let seeding = state.complete;
        let (unchoke, optimistic) = choker::choose(
            &candidates,
            seeding,
            self.config.unchoke_slots,
            state.optimistic,
            rotate,
            &mut |n| rand::random_range(0..n.max(1)),
        );
        state.optimistic = optimistic;
        for (key, slot) in state.peers.iter_mut() {
            let should_choke = !unchoke.contains(key);
            if slot.am_choking != should_choke {
                slot.am_choking = should_choke;
                send(
                    &slot.handle,
                    if should_choke {
                        Command::Choke
                    } else {
                        Command::Unchoke
                    },
                );
            }
            slot.received_round = 0;
            slot.sent_round = 0;
        }
    }

    /// Writes the fast-resume record if pieces were verified since the last one (after an
    /// fsync of the data, so the record never names a piece that is not durable).
    async fn save_resume(&self) {
        let Some(path) = self.resume_path.clone() else {
            return;
        };
        let have = {
            let mut state = self.lock();
            if !state.resume_dirty || state.resume_frozen {
                return;
            }
            state.resume_dirty = false;
            state.picker.have().clone()
        };
        if let Err(e) = self.write_resume(&path, have).await {
            tracing::warn!("{e}");
        }
    }

    /// Writes `have` as the resume record at `path`, after an fsync of the data so that the
    /// record never names a piece that is not durable. Off the reactor.
    async fn write_resume(&self, path: &Path, have: Bitfield) -> Result<(), String> {
        let store = Arc::clone(&self.store);
        let (record, info_hash) = (path.to_owned(), self.info_hash);
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            store.sync().map_err(|e| e.to_string())?;
            let files = store.file_paths();
            resume::save(&record, info_hash, &have, files.iter().map(|p| p.as_path()))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the task failed: {e}")))
        .map_err(|e| format!("cannot write the resume record {}: {e}", path.display()))
    }

    /// Announces started, then at the tracker's interval, completed once, and stopped at the end.
    /// While the tracker is unreachable it retries with back-off, and the swarm keeps going.
    async fn announce_loop(self: Arc<Self>) {
        let Some(tracker) = self.tracker.clone() else {
            return;
        };
        let mut event = Some(AnnounceEvent::Started);
        let mut completed_sent = self.is_complete();
        let mut backoff = Duration::from_secs(5);
        loop {
            let request = self.announce_request(event);
            let wait = match tracker.announce(&request).await {
                Ok(response) => {
                    backoff = Duration::from_secs(5);
                    event = None;
                    self.progress.send_modify(|p| p.tracker_error = None);
                    self.dial(&response.peers);
                    Duration::from_secs(
                        response
                            .interval_secs
                            .max(response.min_interval_secs.unwrap_or(0))
                            .clamp(5, 3600),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "announce failed");
                    self.progress
                        .send_modify(|p| p.tracker_error = Some(e.to_string()));
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    wait
                }
            };
            if event.is_none() && !completed_sent && self.is_complete() {
                event = Some(AnnounceEvent::Completed);
                completed_sent = true;
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.completed.notified(), if !completed_sent => {
                    event = Some(AnnounceEvent::Completed);
                    completed_sent = true;
                }
            }
        }
        // A download that completed just before the end still reports it, then leaves.
        if !completed_sent && self.is_complete() {
            let request = self.announce_request(Some(AnnounceEvent::Completed));
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.announce(&request)).await;
        }
        let request = self.announce_request(Some(AnnounceEvent::Stopped));
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.announce(&request)).await;
    }

    fn announce_request(&self, event: Option<AnnounceEvent>) -> AnnounceRequest {
        let state = self.lock();
        let have = state.picker.have();
        let info = self.store.info();
        let bytes_have = self.geometry.bytes_in(have);
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.config.connection.peer_id,
            port: self.config.announce_port,
            uploaded: self.uploaded.load(Ordering::Relaxed),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            left: info.total_length - bytes_have.min(info.total_length),
            event,
            numwant: self.config.numwant,
        }
    }

    fn publish_progress(&self) {
        let (pieces_have, bytes_have, peers, complete) = {
            let state = self.lock();
            let have = state.picker.have();
            let bytes = self.geometry.bytes_in(have);
            (have.count(), bytes, state.peers.len(), state.complete)
        };
        let downloaded = self.downloaded.load(Ordering::Relaxed);
        let uploaded = self.uploaded.load(Ordering::Relaxed);
        let total = self.store.info().total_length;
        let pieces_total = self.geometry.piece_count();
        self.progress.send_if_modified(|p| {
            let new = Progress {
                pieces_have,
                pieces_total,
                bytes_have,
                bytes_total: total,
                downloaded,
                uploaded,
                peers,
                complete,
                error: p.error.clone(),
                tracker_error: p.tracker_error.clone(),
            };
            if *p == new {
                false
            } else {
                *p = new;
                true
            }
        });
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
            tokio::spawn(async move {
                let _ = handle.send(command).await;
            });
        }
    }
}

/// The session's side of one connection.
pub struct PeerHandler {
    torrent: Arc<Torrent>,
    key: PeerKey,
}

impl Handler for PeerHandler {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        let torrent = &self.torrent;
        let key = self.key;
        let mut state = torrent.lock();
        if !state.peers.contains_key(&key) {
            return Err("peer removed from the session".into());
        }
        match event {
            Event::ExtendedHandshake(h) => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.reqq = h.reqq;
                }
            }
            Event::Bitfield(has) => {
                if state.complete && has.is_full() {
                    // Two seeds have nothing to say to each other.
                    out.send(Command::Close);
                    return Ok(());
                }
                state.picker.peer_bitfield(key, has);
                Torrent::update_interest(&mut state, key, out);
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Have(index) => {
                // Once every connected peer has the piece, nobody will ask us for it: its
                // cached ciphertext only keeps pieces that are still wanted out of the cache.
                if state.picker.peer_have(key, index)
                    && state.picker.availability(index) as usize >= state.peers.len()
                {
                    torrent.cache.forget_piece(index);
                }
                Torrent::update_interest(&mut state, key, out);
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Choke => {
                let fast = match state.peers.get_mut(&key) {
                    Some(slot) => {
                        slot.peer_choking = true;
                        slot.fast
                    }
                    None => false,
                };
                // Without the fast extension the peer dropped our requests; with it, it
                // rejects each one, and the picker is told then.
                if !fast {
                    state.picker.peer_choked(key);
                }
                let keys: Vec<PeerKey> =
                    state.peers.keys().copied().filter(|k| *k != key).collect();
                for other in keys {
                    torrent.fill_requests(&mut state, other, None);
                }
            }
            Event::Unchoke => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_choking = false;
                }
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Interested => {
                let unchoked = state.peers.values().filter(|s| !s.am_choking).count();
                let room = unchoked < torrent.config.unchoke_slots + 1;
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_interested = true;
                    // A free slot is given at once rather than at the next round.
                    if room && slot.am_choking {
                        slot.am_choking = false;
                        out.send(Command::Unchoke);
                    }
                }
            }
            Event::NotInterested => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_interested = false;
                }
            }
            Event::Request(request) => {
                let has = state.picker.have().get(request.index);
                let choking = state.peers.get(&key).is_none_or(|s| s.am_choking);
                if !has || choking {
                    out.send(Command::Reject(request));
                } else if let Some(slot) = state.peers.get(&key) {
                    let handle = slot.handle.clone();
                    drop(state);
                    torrent.serve(key, handle, request);
                    return Ok(());
                }
            }
            Event::Cancel(_) => {
                // The connection drops a cancelled block if it is still queued.
            }
            Event::Block { index, begin, data } => {
                torrent.on_block(&mut state, key, index, begin, data, out);
            }
            Event::Rejected(request) => {
                state.picker.request_rejected(key, &request);
            }
            Event::Suggest(_) | Event::AllowedFast(_) | Event::Extended { .. } => {}
        }
        Ok(())
    }
}
