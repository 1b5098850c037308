//! Which blocks to ask which peer for: the download's piece and block bookkeeping, with no
//! I/O and no clock of its own (callers pass `now`), so plain `#[test]`s drive it.
//!
//! # Policy
//! - **Finish what is started.** A peer is first given the missing blocks of pieces already in
//!   progress that it has, so pieces complete (and can be verified and shared) early.
//! - **Rarest first.** Otherwise a new piece is started: among the pieces we lack and the peer
//!   has, one held by the fewest known peers. Ties go to the piece the peer announced most
//!   recently (it just verified it, so it still holds the piece's ciphertext in its upload
//!   cache and serves it without reading and encrypting it again), else are broken at random
//!   (so that downloaders starting together do not all pick the same piece).
//! - **End game.** When every block we lack has been requested from someone, a peer with room
//!   in its pipeline is also asked for blocks outstanding at other peers; when a block arrives,
//!   [`BlockOutcome::Accepted`] names the other peers to send a cancel to.
//! - **Nothing is lost.** A request that timed out ([`Picker::expire_requests`]), was rejected,
//!   or whose peer choked us or went away goes back to the pool; a piece that failed its hash
//!   check goes back whole ([`Picker::piece_failed`], which names the peers that sent its
//!   blocks so the caller can ban them).
//!
//! # What it will not do
//! Store blocks, hash pieces, decide choking, or talk to peers: the session does that and
//! tells the picker what happened. The picker keeps a copy of each peer's bitfield, because
//! availability must stay exactly the sum of those bitfields.
//!
//! Pieces are named by [`PieceIndex`], which only the torrent's [`Geometry`] makes, so nothing
//! here handles an index past the end; wire messages keep their `u32` ([`BlockRequest`]) and
//! the picker checks those against the geometry.
//!
//! # Cost
//! Requests for pieces in progress cost O(pieces in progress × blocks per piece); starting a
//! new piece scans all pieces once (O(piece count)), which happens once per piece.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::metainfo::{Geometry, PieceIndex};
use crate::peer::bitfield::Bitfield;
use crate::peer::wire::{BlockRequest, MAX_BLOCK_LEN};

/// The size of the blocks the picker requests: the wire maximum and the cipher's block.
pub const BLOCK_LEN: u32 = MAX_BLOCK_LEN;

/// Pieces a peer announced last that the picker remembers, to prefer among equally rare ones.
const RECENT_HAVES: usize = 32;

/// A block of a piece, by number (`begin / BLOCK_LEN`).
type BlockKey = (PieceIndex, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    /// Nobody has been asked for it.
    Missing,
    /// Outstanding at this many peers (at least 1; more only in end game).
    Requested(u32),
    /// Arrived; waiting for the rest of its piece and the hash check.
    Received,
}

/// A piece that has been started and is not verified yet.
#[derive(Debug)]
struct InFlightPiece<P> {
    blocks: Vec<BlockState>,
    /// Number of blocks in state `Received`.
    received: u32,
    /// Peers that sent at least one of the received blocks.
    contributors: Vec<P>,
}

#[derive(Debug)]
struct PeerState {
    has: Bitfield,
    /// Blocks requested from this peer and when. Each is `Requested` in its piece, and
    /// counted in that block's requester count.
    outstanding: BTreeMap<BlockKey, Instant>,
    /// A search found no piece to start that this peer has. Pieces to start only ever
    /// become fewer (a started piece stays started, even after a failed hash check), so this
    /// holds until the peer announces a piece, and saves a search of every piece on each
    /// call for a peer that has nothing new.
    nothing_to_start: bool,
    /// The last [`RECENT_HAVES`] pieces it announced with `have`, newest last.
    recent: VecDeque<PieceIndex>,
}

/// Which pieces a call of [`Picker::pick`] may request.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    All,
    /// Only these pieces (BEP 6 allowed-fast while choked).
    Only(&'a [PieceIndex]),
    /// Only pieces already started.
    InProgress,
}

impl Scope<'_> {
    fn allows(self, index: PieceIndex) -> bool {
        match self {
            Scope::All | Scope::InProgress => true,
            Scope::Only(pieces) => pieces.contains(&index),
        }
    }
}

/// What became of a block that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome<P> {
    /// Keep it. `cancel`: other peers this block was also requested from (end game), to send a
    /// cancel to. `piece_complete`: every block of the piece is in; hash it, then call
    /// [`Picker::piece_verified`] or [`Picker::piece_failed`].
    Accepted {
        cancel: Vec<P>,
        piece_complete: bool,
    },
    /// We have this block or its piece already; drop it.
    Duplicate,
    /// A block of a piece we have not started (nobody asked for it); drop it.
    Unrequested,
    /// Not one of our blocks: not aligned to [`BLOCK_LEN`], or of the wrong length, or
    /// outside the torrent. A well-behaved peer never sends this.
    Invalid,
}

/// The piece and block picker of one torrent. `P` identifies a peer (a connection id).
#[derive(Debug)]
pub struct Picker<P> {
    geometry: Geometry,
    /// Verified pieces.
    have: Bitfield,
    /// Availability (always the sum of the peers' bitfields) and the rarity order of the
    /// pieces not started yet.
    rarity: Rarity,
    /// Started, unverified pieces. Never a piece in `have`.
    pieces: BTreeMap<PieceIndex, InFlightPiece<P>>,
    peers: BTreeMap<P, PeerState>,
    /// Blocks of pieces we lack that are `Missing` (pieces not started count in full). Zero
    /// with pieces still missing means end game.
    unrequested: u64,
    /// For the tie-break among equally rare pieces.
    rng: SmallRng,
}

impl<P: Copy + Ord + Debug> Picker<P> {
    /// A picker for a torrent of which the pieces in `have` are verified already.
    ///
    /// # Panics
    /// If `have` is not of the torrent's piece count (a caller bug, not remote input).
    pub fn new(geometry: Geometry, have: Bitfield) -> Self {
        Self::with_rng(geometry, have, rand::make_rng())
    }

    /// Like [`Picker::new`], with reproducible tie-breaks (tests).
    ///
    /// # Panics
    /// As [`Picker::new`].
    pub fn with_seed(geometry: Geometry, have: Bitfield, seed: u64) -> Self {
        Self::with_rng(geometry, have, SmallRng::seed_from_u64(seed))
    }

    fn with_rng(geometry: Geometry, have: Bitfield, rng: SmallRng) -> Self {
        assert_eq!(
            have.len(),
            geometry.piece_count(),
            "the bitfield of verified pieces must have one bit per piece"
        );
        let unrequested = geometry
            .pieces()
            .filter(|i| !have.get(i.get()))
            .map(|i| u64::from(blocks_in(&geometry, i)))
            .sum();
        Picker {
            rarity: Rarity::new(&geometry, &have),
            geometry,
            have,
            pieces: BTreeMap::new(),
            peers: BTreeMap::new(),
            unrequested,
            rng,
        }
    }

    /// The verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Every block we lack is requested from someone (and some are still missing).
    pub fn in_end_game(&self) -> bool {
        self.unrequested == 0 && !self.is_complete()
    }

    /// How many known peers have piece `index`.
    ///
    /// # Panics
    /// If `index` was made by the geometry of another, larger torrent: a bug in the caller.
    pub fn availability(&self, index: PieceIndex) -> u32 {
        self.rarity.count[index.as_usize()]
    }

    /// The pieces a peer has, as far as it told us.
    pub fn peer_has(&self, peer: P) -> Option<&Bitfield> {
        self.peers.get(&peer).map(|p| &p.has)
    }

    /// How many requests are outstanding at `peer`.
    pub fn outstanding(&self, peer: P) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.outstanding.len())
    }

    /// The peer has a piece we lack (we should be interested).
    pub fn is_interesting(&self, peer: P) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            p.has
                .as_bytes()
                .iter()
                .zip(self.have.as_bytes())
                .any(|(theirs, ours)| theirs & !ours != 0)
        })
    }

    /// A new peer, that has nothing yet. Adding a known peer changes nothing.
    pub fn add_peer(&mut self, peer: P) {
        let pieces = self.geometry.piece_count();
        self.peers.entry(peer).or_insert_with(|| PeerState {
            has: Bitfield::new(pieces),
            outstanding: BTreeMap::new(),
            nothing_to_start: false,
            recent: VecDeque::with_capacity(RECENT_HAVES),
        });
    }

    /// The peer's bitfield (or BEP 6 have-all / have-none), replacing what it had. Returns
    /// `false` (and changes nothing) for an unknown peer or a bitfield of the wrong length.
    pub fn peer_bitfield(&mut self, peer: P, has: Bitfield) -> bool {
        if has.len() != self.geometry.piece_count() {
            return false;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        for i in pieces_in(&self.geometry, &state.has) {
            self.rarity.decrement(i);
        }
        for i in pieces_in(&self.geometry, &has) {
            self.rarity.increment(i);
        }
        state.has = has;
        state.nothing_to_start = false;
        true
    }

    /// The peer announced piece `index`. Returns whether that is news.
    pub fn peer_have(&mut self, peer: P, index: PieceIndex) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        let new = state.has.set(index.get());
        if new {
            state.nothing_to_start = false;
            if state.recent.len() == RECENT_HAVES {
                state.recent.pop_front();
            }
            state.recent.push_back(index);
            self.rarity.increment(index);
        }
        new
    }

    /// The peer is gone: its requests go back to the pool and it no longer counts for
    /// availability.
    pub fn remove_peer(&mut self, peer: P) {
        self.release_all(peer);
        if let Some(state) = self.peers.remove(&peer) {
            for i in pieces_in(&self.geometry, &state.has) {
                self.rarity.decrement(i);
            }
        }
    }

    /// The peer choked us without the fast extension, which discards its pending requests:
    /// they go back to the pool. Returns them.
    pub fn peer_choked(&mut self, peer: P) -> Vec<BlockRequest> {
        self.release_all(peer)
    }

    /// The peer rejected a request (BEP 6), or we cancelled it: it goes back to the pool.
    /// Returns whether it was outstanding at that peer.
    pub fn request_rejected(&mut self, peer: P, request: &BlockRequest) -> bool {
        let Some(key) = self.block_key(request) else {
            return false;
        };
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        if state.outstanding.remove(&key).is_none() {
            return false;
        }
        self.unrequest(key);
        true
    }

    /// Requests older than `timeout` go back to the pool. Returns them with their peers, to
    /// send a cancel to (a block that still arrives later is accepted if still wanted).
    pub fn expire_requests(&mut self, now: Instant, timeout: Duration) -> Vec<(P, BlockRequest)> {
        let mut expired = Vec::new();
        for (&peer, state) in &mut self.peers {
            state.outstanding.retain(|&key, &mut at| {
                let keep = now.saturating_duration_since(at) < timeout;
                if !keep {
                    expired.push((peer, key));
                }
                keep
            });
        }
        expired
            .into_iter()
            .map(|(peer, key)| {
                self.unrequest(key);
                (peer, self.request_of(key))
            })
            .collect()
    }

    /// New requests for `peer`, so that at most `pipeline` are outstanding at it: blocks of
    /// pieces in progress first, then of a new rarest piece, then (in end game) blocks
    /// outstanding elsewhere. The caller sends them; they count as outstanding from `now`.
    /// Empty for an unknown peer.
    pub fn next_requests(&mut self, peer: P, pipeline: usize, now: Instant) -> Vec<BlockRequest> {
        self.pick(peer, pipeline, now, Scope::All)
    }

    /// Like [`Picker::next_requests`], restricted to `pieces`: while a peer chokes us, BEP 6
    /// lets us request its allowed-fast pieces.
    pub fn next_requests_among(
        &mut self,
        peer: P,
        pieces: &[PieceIndex],
        pipeline: usize,
        now: Instant,
    ) -> Vec<BlockRequest> {
        self.pick(peer, pipeline, now, Scope::Only(pieces))
    }

    /// Like [`Picker::next_requests`], without starting new pieces: the session asks for this
    /// while the memory for pieces being assembled is used up.
    pub fn next_requests_in_progress(
        &mut self,
        peer: P,
        pipeline: usize,
        now: Instant,
    ) -> Vec<BlockRequest> {
        self.pick(peer, pipeline, now, Scope::InProgress)
    }

    fn pick(
        &mut self,
        peer: P,
        pipeline: usize,
        now: Instant,
        scope: Scope<'_>,
    ) -> Vec<BlockRequest> {
        let mut out = Vec::new();
        let Some(state) = self.peers.get(&peer) else {
            return out;
        };
        let mut room = pipeline.saturating_sub(state.outstanding.len());
        if room == 0 || self.is_complete() {
            return out;
        }
        let may_start = match scope {
            Scope::All => !state.nothing_to_start,
            Scope::Only(_) => true,
            Scope::InProgress => false,
        };
        // 1. Missing blocks of pieces in progress.
        let mut picked: Vec<BlockKey> = Vec::new();
        for (&index, piece) in &self.pieces {
            if room == 0 {
                break;
            }
            if !state.has.get(index.get()) || !scope.allows(index) {
                continue;
            }
            for (block, s) in piece.blocks.iter().enumerate() {
                if room == 0 {
                    break;
                }
                if *s == BlockState::Missing {
                    picked.push((index, block as u32));
                    room -= 1;
                }
            }
        }
        for key in picked.drain(..) {
            out.push(self.request(peer, key, now));
        }
        // 2. New pieces, rarest first.
        while may_start && room > 0 {
            let Some(index) = self.rarest_new_piece(peer, |i| scope.allows(i)) else {
                if let (Scope::All, Some(state)) = (scope, self.peers.get_mut(&peer)) {
                    state.nothing_to_start = true;
                }
                break;
            };
            let blocks = blocks_in(&self.geometry, index);
            self.rarity.remove(index);
            self.pieces.insert(
                index,
                InFlightPiece {
                    blocks: vec![BlockState::Missing; blocks as usize],
                    received: 0,
                    contributors: Vec::new(),
                },
            );
            for block in 0..blocks.min(room as u32) {
                out.push(self.request(peer, (index, block), now));
                room -= 1;
            }
        }
        // 3. End game: blocks outstanding at other peers.
        if room > 0 && self.unrequested == 0 {
            let state = &self.peers[&peer];
            for (&index, piece) in &self.pieces {
                if room == 0 {
                    break;
                }
                if !state.has.get(index.get()) || !scope.allows(index) {
                    continue;
                }
                for (block, s) in piece.blocks.iter().enumerate() {
                    if room == 0 {
                        break;
                    }
                    let key = (index, block as u32);
                    if matches!(s, BlockState::Requested(_))
                        && !state.outstanding.contains_key(&key)
                    {
                        picked.push(key);
                        room -= 1;
                    }
                }
            }
            for key in picked {
                out.push(self.request(peer, key, now));
            }
        }
        out
    }

    /// A block arrived from `peer`. See [`BlockOutcome`].
    pub fn block_received(
        &mut self,
        peer: P,
        index: PieceIndex,
        begin: u32,
        len: u32,
    ) -> BlockOutcome<P> {
        let Some(block) = self.block_number(index, begin, len) else {
            return BlockOutcome::Invalid;
        };
        let key = (index, block);
        if self.have.get(index.get()) {
            return BlockOutcome::Duplicate;
        }
        let Some(piece) = self.pieces.get_mut(&index) else {
            return BlockOutcome::Unrequested;
        };
        let slot = &mut piece.blocks[key.1 as usize];
        let requesters = match *slot {
            BlockState::Received => return BlockOutcome::Duplicate,
            BlockState::Missing => {
                // Unsolicited, or it arrived after its request expired: still wanted.
                self.unrequested -= 1;
                0
            }
            BlockState::Requested(n) => n,
        };
        *slot = BlockState::Received;
        piece.received += 1;
        let piece_complete = piece.received as usize == piece.blocks.len();
        if !piece.contributors.contains(&peer) {
            piece.contributors.push(peer);
        }
        let mut cancel = Vec::new();
        let from_sender = self
            .peers
            .get_mut(&peer)
            .is_some_and(|s| s.outstanding.remove(&key).is_some());
        if requesters > u32::from(from_sender) {
            for (&other, state) in &mut self.peers {
                if state.outstanding.remove(&key).is_some() {
                    cancel.push(other);
                }
            }
        }
        BlockOutcome::Accepted {
            cancel,
            piece_complete,
        }
    }

    /// The piece's hash matched: it is ours. Returns `false` if it was not a complete piece
    /// in progress (nothing changes then).
    pub fn piece_verified(&mut self, index: PieceIndex) -> bool {
        match self.pieces.get(&index) {
            Some(piece) if piece.received as usize == piece.blocks.len() => {
                self.pieces.remove(&index);
                self.have.set(index.get());
                true
            }
            _ => false,
        }
    }

    /// The piece's hash did not match: all its blocks are wanted again. Returns the peers
    /// that sent its blocks (one of them lied; the caller decides whom to ban). Empty if it
    /// was not a complete piece in progress.
    pub fn piece_failed(&mut self, index: PieceIndex) -> Vec<P> {
        match self.pieces.get_mut(&index) {
            Some(piece) if piece.received as usize == piece.blocks.len() => {
                piece.blocks.fill(BlockState::Missing);
                piece.received = 0;
                self.unrequested += piece.blocks.len() as u64;
                std::mem::take(&mut piece.contributors)
            }
            _ => Vec::new(),
        }
    }

    /// The block a request (a wire message) names, if it is exactly one of our blocks.
    fn block_key(&self, r: &BlockRequest) -> Option<BlockKey> {
        let index = self.geometry.piece_index(r.index)?;
        let block = self.block_number(index, r.begin, r.length)?;
        Some((index, block))
    }

    /// The number of the block of `len` bytes at `begin` in piece `index`, if it is exactly
    /// one of our blocks.
    fn block_number(&self, index: PieceIndex, begin: u32, len: u32) -> Option<u32> {
        let piece_len = self.geometry.piece_len(index);
        if !begin.is_multiple_of(BLOCK_LEN) || begin >= piece_len {
            return None;
        }
        let expected = (piece_len - begin).min(BLOCK_LEN);
        (len == expected).then_some(begin / BLOCK_LEN)
    }

    /// The wire request for block `key`. Only keys of real blocks are made (`block_key`,
    /// `block_number`, or below [`blocks_in`]), so `begin` lies inside the piece.
    fn request_of(&self, (index, block): BlockKey) -> BlockRequest {
        let begin = block * BLOCK_LEN;
        let piece_len = self.geometry.piece_len(index);
        BlockRequest {
            index: index.get(),
            begin,
            length: piece_len.saturating_sub(begin).min(BLOCK_LEN),
        }
    }

    /// Marks `key` requested by `peer` (which must not have it outstanding yet).
    fn request(&mut self, peer: P, key: BlockKey, now: Instant) -> BlockRequest {
        if let Some(piece) = self.pieces.get_mut(&key.0) {
            let slot = &mut piece.blocks[key.1 as usize];
            *slot = match *slot {
                BlockState::Missing => {
                    self.unrequested -= 1;
                    BlockState::Requested(1)
                }
                BlockState::Requested(n) => BlockState::Requested(n + 1),
                BlockState::Received => BlockState::Received,
            };
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.outstanding.insert(key, now);
        }
        self.request_of(key)
    }

    /// One requester of `key` is gone (its entry in that peer's `outstanding` is removed).
    fn unrequest(&mut self, key: BlockKey) {
        if let Some(piece) = self.pieces.get_mut(&key.0) {
            let slot = &mut piece.blocks[key.1 as usize];
            match *slot {
                BlockState::Requested(1) => {
                    *slot = BlockState::Missing;
                    self.unrequested += 1;
                }
                BlockState::Requested(n) => *slot = BlockState::Requested(n - 1),
                _ => {}
            }
        }
    }

    fn release_all(&mut self, peer: P) -> Vec<BlockRequest> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        let keys: Vec<BlockKey> = std::mem::take(&mut state.outstanding).into_keys().collect();
        keys.into_iter()
            .map(|key| {
                self.unrequest(key);
                self.request_of(key)
            })
            .collect()
    }

    /// Among the pieces we lack, have not started and `peer` has: one of the lowest
    /// availability. Ties are broken by starting the search of the rarest group at a random
    /// place (uniform when the peer has the whole group, as a seeder does).
    fn rarest_new_piece(
        &mut self,
        peer: P,
        allowed: impl Fn(PieceIndex) -> bool,
    ) -> Option<PieceIndex> {
        let state = self.peers.get(&peer)?;
        let has = &state.has;
        for group in self.rarity.groups() {
            let availability = self.rarity.count[group[0].as_usize()];
            if let Some(&piece) = state.recent.iter().rev().find(|&&index| {
                has.get(index.get())
                    && self.rarity.is_candidate(index)
                    && self.rarity.count[index.as_usize()] == availability
                    && allowed(index)
            }) {
                return Some(piece);
            }
            let start = self.rng.random_range(0..group.len());
            let (tail, head) = group.split_at(start);
            if let Some(&piece) = head
                .iter()
                .chain(tail)
                .find(|&&index| has.get(index.get()) && allowed(index))
            {
                return Some(piece);
            }
        }
        None
    }

    /// Checks every invariant the fields document (tests).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut availability = vec![0u32; self.rarity.count.len()];
        for state in self.peers.values() {
            for i in state.has.iter_set() {
                availability[i as usize] += 1;
            }
        }
        assert_eq!(availability, self.rarity.count, "availability");
        let candidates: Vec<PieceIndex> = self
            .geometry
            .pieces()
            .filter(|i| !self.have.get(i.get()) && !self.pieces.contains_key(i))
            .collect();
        self.rarity.check(&candidates);
        for (peer, state) in &self.peers {
            if state.nothing_to_start {
                assert!(
                    !candidates.iter().any(|&i| state.has.get(i.get())),
                    "{peer:?} has a piece to start"
                );
            }
        }
        let mut unrequested = 0u64;
        for index in self.geometry.pieces().filter(|i| !self.have.get(i.get())) {
            match self.pieces.get(&index) {
                None => unrequested += u64::from(blocks_in(&self.geometry, index)),
                Some(piece) => {
                    let mut received = 0;
                    for (block, s) in piece.blocks.iter().enumerate() {
                        let key = (index, block as u32);
                        let at = self
                            .peers
                            .values()
                            .filter(|p| p.outstanding.contains_key(&key))
                            .count() as u32;
                        match s {
                            BlockState::Missing => {
                                unrequested += 1;
                                assert_eq!(at, 0, "missing block {key:?} outstanding");
                            }
                            BlockState::Requested(n) => {
                                assert_eq!(*n, at, "requesters of {key:?}");
                                assert!(*n > 0);
                            }
                            BlockState::Received => {
                                received += 1;
                                assert_eq!(at, 0, "received block {key:?} outstanding");
                            }
                        }
                    }
                    assert_eq!(received, piece.received);
                }
            }
        }
        assert_eq!(unrequested, self.unrequested, "unrequested");
        for index in self.pieces.keys() {
            assert!(
                !self.have.get(index.get()),
                "piece {index} verified and in progress"
            );
        }
        for state in self.peers.values() {
            for (index, _) in state.outstanding.keys() {
                assert!(self.pieces.contains_key(index));
            }
        }
    }
}

/// Marks a piece that is not in [`Rarity::order`]: no position in `order` is this high, as
/// it holds at most `u32::MAX` pieces ([`crate::metainfo::MAX_PIECE_COUNT`]).
const NOT_CANDIDATE: u32 = u32::MAX;

/// Availability per piece, and the pieces not started yet kept grouped by availability, so
/// that the rarest one is found without scanning or sorting every piece, and a change of
/// availability costs O(1) (a swap at a group boundary).
#[derive(Debug)]
struct Rarity {
    /// Per piece: how many known peers have it.
    count: Vec<u32>,
    /// The candidates (pieces we lack and have not started), by availability ascending; in
    /// no particular order within a group.
    order: Vec<PieceIndex>,
    /// Per piece: its index in `order`, or [`NOT_CANDIDATE`].
    pos: Vec<u32>,
    /// Group `a` (candidates of availability `a`) is `order[bucket_start[a]..bucket_start[a + 1]]`.
    /// Non-decreasing; the last entry is `order.len()`; at least 2 entries, and more than
    /// the highest availability of a candidate plus 1.
    bucket_start: Vec<u32>,
}

impl Rarity {
    fn new(geometry: &Geometry, have: &Bitfield) -> Self {
        let order: Vec<PieceIndex> = geometry.pieces().filter(|i| !have.get(i.get())).collect();
        let mut pos = vec![NOT_CANDIDATE; have.len() as usize];
        for (at, &piece) in order.iter().enumerate() {
            pos[piece.as_usize()] = at as u32;
        }
        Rarity {
            count: vec![0; have.len() as usize],
            bucket_start: vec![0, order.len() as u32],
            order,
            pos,
        }
    }

    fn swap(&mut self, a: u32, b: u32) {
        self.order.swap(a as usize, b as usize);
        self.pos[self.order[a as usize].as_usize()] = a;
        self.pos[self.order[b as usize].as_usize()] = b;
    }

    fn increment(&mut self, piece: PieceIndex) {
        let a = self.count[piece.as_usize()] as usize;
        self.count[piece.as_usize()] += 1;
        let at = self.pos[piece.as_usize()];
        if at == NOT_CANDIDATE {
            return;
        }
        while self.bucket_start.len() < a + 3 {
            self.bucket_start.push(self.order.len() as u32);
        }
        // Move it to the end of group a, which then becomes the start of group a + 1.
        let last = self.bucket_start[a + 1] - 1;
        self.swap(at, last);
        self.bucket_start[a + 1] -= 1;
    }

    fn decrement(&mut self, piece: PieceIndex) {
        let a = self.count[piece.as_usize()] as usize;
        self.count[piece.as_usize()] -= 1;
        let at = self.pos[piece.as_usize()];
        if at == NOT_CANDIDATE {
            return;
        }
        // Move it to the start of group a, which then becomes the end of group a - 1.
        let first = self.bucket_start[a];
        self.swap(at, first);
        self.bucket_start[a] += 1;
    }

    /// The piece was started: no longer a candidate. Costs one swap per higher group.
    fn remove(&mut self, piece: PieceIndex) {
        let mut at = self.pos[piece.as_usize()];
        if at == NOT_CANDIDATE {
            return;
        }
        let a = self.count[piece.as_usize()] as usize;
        // Carry it to the end of each following group in turn, then off the end.
        for b in a + 1..self.bucket_start.len() {
            let last = self.bucket_start[b] - 1;
            self.swap(at, last);
            at = last;
            self.bucket_start[b] -= 1;
        }
        self.order.pop();
        self.pos[piece.as_usize()] = NOT_CANDIDATE;
    }

    /// The groups of candidates that some peer has, rarest first.
    /// Whether `piece` is one we lack and have not started.
    fn is_candidate(&self, piece: PieceIndex) -> bool {
        self.pos[piece.as_usize()] != NOT_CANDIDATE
    }

    fn groups(&self) -> impl Iterator<Item = &[PieceIndex]> {
        self.bucket_start[1..]
            .windows(2)
            .map(|w| &self.order[w[0] as usize..w[1] as usize])
            .filter(|group| !group.is_empty())
    }

    #[cfg(test)]
    fn check(&self, candidates: &[PieceIndex]) {
        let mut sorted = self.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, candidates, "candidates");
        assert_eq!(
            *self.bucket_start.last().unwrap() as usize,
            self.order.len()
        );
        for (at, &piece) in self.order.iter().enumerate() {
            assert_eq!(
                self.pos[piece.as_usize()] as usize,
                at,
                "position of {piece}"
            );
            let a = self.count[piece.as_usize()] as usize;
            assert!(a + 1 < self.bucket_start.len(), "group of {piece}");
            let group = self.bucket_start[a] as usize..self.bucket_start[a + 1] as usize;
            assert!(
                group.contains(&at),
                "{piece} of availability {a} at {at}, group {group:?}"
            );
        }
        let not_candidates = self.pos.iter().filter(|&&p| p == NOT_CANDIDATE).count();
        assert_eq!(not_candidates + self.order.len(), self.pos.len());
    }
}

/// How many blocks piece `index` has.
fn blocks_in(geometry: &Geometry, index: PieceIndex) -> u32 {
    geometry.piece_len(index).div_ceil(BLOCK_LEN)
}

/// The pieces set in `bits`, a bitfield of the torrent's length (the picker checks every
/// bitfield's length before keeping it).
fn pieces_in<'a>(geometry: &'a Geometry, bits: &'a Bitfield) -> impl Iterator<Item = PieceIndex> {
    bits.iter_set().filter_map(|i| geometry.piece_index(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: u32 = BLOCK_LEN;

    /// `pieces` pieces of 2 blocks each, the last one a block and a half.
    fn geometry(pieces: u32) -> Geometry {
        Geometry::new(
            u64::from(2 * B),
            u64::from(2 * B) * u64::from(pieces) - u64::from(B / 2),
        )
        .unwrap()
    }

    /// Piece `index` of the largest test torrent, [`geometry`]`(64)`: each test names only
    /// pieces its own torrent has.
    fn piece(index: u32) -> PieceIndex {
        geometry(64).piece_index(index).unwrap()
    }

    fn picker(pieces: u32) -> Picker<u32> {
        let g = geometry(pieces);
        Picker::with_seed(g, Bitfield::new(g.piece_count()), 7)
    }

    fn bits(len: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for &i in set {
            b.set(i);
        }
        b
    }

    fn req(index: u32, block: u32, length: u32) -> BlockRequest {
        BlockRequest {
            index,
            begin: block * B,
            length,
        }
    }

    #[test]
    fn rarest_piece_first() {
        let mut p = picker(4);
        let now = Instant::now();
        for peer in 0..3 {
            p.add_peer(peer);
        }
        p.peer_bitfield(0, Bitfield::full(4));
        p.peer_bitfield(1, bits(4, &[0, 1, 3]));
        p.peer_bitfield(2, bits(4, &[0, 3]));
        // Availability: 0 → 3, 1 → 2, 2 → 1, 3 → 3. Peer 0 gets piece 2 first, then 1.
        let r = p.next_requests(0, 3, now);
        assert_eq!(r, vec![req(2, 0, B), req(2, 1, B), req(1, 0, B)]);
        p.check_invariants();
    }

    #[test]
    fn ties_are_broken_at_random() {
        let g = geometry(64);
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
            p.add_peer(0);
            p.peer_bitfield(0, Bitfield::full(64));
            firsts.insert(p.next_requests(0, 1, Instant::now())[0].index);
        }
        assert!(firsts.len() > 5, "20 seeds picked only {firsts:?}");
    }

    #[test]
    fn ties_go_to_the_piece_the_peer_announced_last() {
        let g = geometry(64);
        for seed in 0..10 {
            let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
            let now = Instant::now();
            p.add_peer(0);
            p.add_peer(1);
            p.peer_bitfield(0, Bitfield::full(64));
            // Peer 1 had 40 pieces, then announced 50 and 45 (in that order): all 42 are held
            // by two peers, and 45, its newest, comes first, then 50.
            p.peer_bitfield(1, bits(64, &(0..40).collect::<Vec<_>>()));
            p.peer_have(1, piece(50));
            p.peer_have(1, piece(45));
            let r = p.next_requests(1, 4, now);
            assert_eq!(
                r,
                vec![req(45, 0, B), req(45, 1, B), req(50, 0, B), req(50, 1, B)]
            );
            p.check_invariants();

            // Rarity still comes first: a piece only peer 1 has beats its recent ones.
            let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
            p.add_peer(0);
            p.add_peer(1);
            p.peer_bitfield(0, bits(64, &[60, 61, 3]));
            p.peer_bitfield(1, bits(64, &(0..40).collect::<Vec<_>>()));
            p.peer_have(1, piece(60));
            p.peer_have(1, piece(61));
            // Availability: 3, 60 and 61 → 2; peer 1's other pieces → 1.
            let first = p.next_requests(1, 1, now)[0].index;
            assert!(first < 40 && first != 3, "seed {seed}: picked {first}");
            p.check_invariants();
        }
    }

    #[test]
    fn started_pieces_are_finished_first() {
        let mut p = picker(4);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(4));
        p.peer_bitfield(1, Bitfield::full(4));
        let a = p.next_requests(0, 1, now);
        // Peer 1 joins peer 0's piece before starting another.
        let b = p.next_requests(1, 1, now);
        assert_eq!(a[0].index, b[0].index);
        assert_ne!(a[0].begin, b[0].begin);
        p.check_invariants();
    }

    #[test]
    fn pipeline_is_kept_full_not_overfilled() {
        let mut p = picker(8);
        let now = Instant::now();
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(8));
        assert_eq!(p.next_requests(0, 5, now).len(), 5);
        assert_eq!(p.next_requests(0, 5, now).len(), 0);
        assert_eq!(p.outstanding(0), 5);
        let r = p.next_requests(0, 7, now);
        assert_eq!(r.len(), 2);
        assert_eq!(p.outstanding(0), 7);
        p.check_invariants();
    }

    #[test]
    fn only_pieces_the_peer_has() {
        let mut p = picker(4);
        p.add_peer(0);
        p.peer_bitfield(0, bits(4, &[3]));
        let r = p.next_requests(0, 10, Instant::now());
        // Piece 3 is the short last piece: a full block and a half block.
        assert_eq!(r, vec![req(3, 0, B), req(3, 1, B / 2)]);
        assert!(
            p.next_requests(7, 10, Instant::now()).is_empty(),
            "unknown peer"
        );
    }

    #[test]
    fn blocks_complete_a_piece_then_verify() {
        let mut p = picker(2);
        let now = Instant::now();
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(2));
        assert!(p.is_interesting(0));
        let r = p.next_requests(0, 2, now);
        let index = r[0].index;
        let len = |i| r[i as usize].length;
        assert_eq!(
            p.block_received(0, piece(index), 0, len(0)),
            BlockOutcome::Accepted {
                cancel: vec![],
                piece_complete: false
            }
        );
        assert_eq!(
            p.block_received(0, piece(index), 0, len(0)),
            BlockOutcome::Duplicate
        );
        assert_eq!(
            p.block_received(0, piece(index), B, len(1)),
            BlockOutcome::Accepted {
                cancel: vec![],
                piece_complete: true
            }
        );
        assert!(p.piece_verified(piece(index)));
        assert!(!p.piece_verified(piece(index)));
        assert!(p.have().get(index));
        assert_eq!(
            p.block_received(0, piece(index), 0, B),
            BlockOutcome::Duplicate
        );
        p.check_invariants();
    }

    #[test]
    fn bad_blocks_are_invalid_or_unrequested() {
        let mut p = picker(2);
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(2));
        assert_eq!(p.block_received(0, piece(0), 1, B), BlockOutcome::Invalid);
        assert_eq!(
            p.block_received(0, piece(0), 0, B - 1),
            BlockOutcome::Invalid
        );
        assert_eq!(
            p.block_received(0, piece(1), B, B),
            BlockOutcome::Invalid,
            "last block is short"
        );
        // No piece 2: a wire index past the end never becomes a `PieceIndex`, and a request
        // naming it is none of ours.
        assert_eq!(p.geometry.piece_index(2), None, "no piece 2");
        assert!(!p.request_rejected(0, &req(2, 0, B)), "no piece 2");
        assert_eq!(
            p.block_received(0, piece(0), 0, B),
            BlockOutcome::Unrequested
        );
        p.check_invariants();
    }

    #[test]
    fn end_game_duplicates_and_cancels() {
        let mut p = picker(1);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(1));
        p.peer_bitfield(1, Bitfield::full(1));
        let a = p.next_requests(0, 2, now);
        assert_eq!(a.len(), 2);
        assert!(p.in_end_game());
        let b = p.next_requests(1, 2, now);
        assert_eq!(a, b, "peer 1 is asked for peer 0's outstanding blocks");
        p.check_invariants();
        assert_eq!(
            p.block_received(1, piece(0), 0, B),
            BlockOutcome::Accepted {
                cancel: vec![0],
                piece_complete: false
            }
        );
        assert_eq!(p.outstanding(0), 1);
        assert_eq!(p.outstanding(1), 1);
        // Peer 0 sends the block anyway (the cancel crossed it): a duplicate.
        assert_eq!(p.block_received(0, piece(0), 0, B), BlockOutcome::Duplicate);
        p.check_invariants();
    }

    #[test]
    fn not_end_game_while_blocks_are_unrequested() {
        let mut p = picker(3);
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(3));
        p.peer_bitfield(1, bits(3, &[0]));
        let a = p.next_requests(0, 2, Instant::now());
        assert!(!p.in_end_game());
        // Peer 1 only has piece 0; if peer 0 took it, peer 1 gets nothing (no end game yet).
        let b = p.next_requests(1, 2, Instant::now());
        if a[0].index == 0 {
            assert!(b.is_empty());
        } else {
            assert!(b.iter().all(|r| r.index == 0));
        }
    }

    #[test]
    fn timed_out_requests_go_back() {
        let mut p = picker(2);
        let t0 = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(2));
        p.peer_bitfield(1, Bitfield::full(2));
        let a = p.next_requests(0, 1, t0);
        let t1 = t0 + Duration::from_secs(10);
        let b = p.next_requests(1, 1, t1);
        let expired = p.expire_requests(t0 + Duration::from_secs(30), Duration::from_secs(30));
        assert_eq!(expired, vec![(0, a[0])]);
        p.check_invariants();
        // The expired block is the first one offered again.
        let again = p.next_requests(1, 2, t1);
        assert_eq!(again, vec![a[0]]);
        assert_ne!(a[0], b[0]);
        // A late answer from peer 0 after expiry is not wanted twice.
        assert!(matches!(
            p.block_received(0, piece(a[0].index), a[0].begin, a[0].length),
            BlockOutcome::Accepted { .. }
        ));
        p.check_invariants();
    }

    #[test]
    fn choke_and_reject_release_requests() {
        let mut p = picker(4);
        let now = Instant::now();
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(4));
        let r = p.next_requests(0, 4, now);
        assert!(p.request_rejected(0, &r[0]));
        assert!(!p.request_rejected(0, &r[0]), "not outstanding any more");
        assert_eq!(p.outstanding(0), 3);
        let mut released = p.peer_choked(0);
        released.sort();
        let mut expected = r[1..].to_vec();
        expected.sort();
        assert_eq!(released, expected);
        assert_eq!(p.outstanding(0), 0);
        p.check_invariants();
    }

    #[test]
    fn a_gone_peer_releases_requests_and_availability() {
        let mut p = picker(4);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(4));
        p.peer_bitfield(1, bits(4, &[1]));
        assert!(p.peer_have(1, piece(2)));
        assert!(!p.peer_have(1, piece(2)));
        assert_eq!(p.availability(piece(2)), 2);
        p.next_requests(1, 3, now);
        p.remove_peer(1);
        assert_eq!(p.availability(piece(1)), 1);
        assert_eq!(p.availability(piece(2)), 1);
        p.check_invariants();
        assert_eq!(p.next_requests(0, 100, now).len(), 8);
    }

    #[test]
    fn failed_piece_goes_back_whole_and_names_senders() {
        let mut p = picker(1);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(1));
        p.peer_bitfield(1, Bitfield::full(1));
        p.next_requests(0, 1, now);
        p.next_requests(1, 1, now);
        p.block_received(0, piece(0), 0, B);
        let outcome = p.block_received(1, piece(0), B, B / 2);
        assert_eq!(
            outcome,
            BlockOutcome::Accepted {
                cancel: vec![],
                piece_complete: true
            }
        );
        assert_eq!(p.piece_failed(piece(0)), vec![0, 1]);
        assert!(p.piece_failed(piece(0)).is_empty(), "no longer complete");
        assert!(!p.in_end_game());
        p.check_invariants();
        assert_eq!(p.next_requests(1, 5, now).len(), 2);
    }

    #[test]
    fn allowed_fast_pieces_only() {
        let mut p = picker(4);
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(4));
        let r = p.next_requests_among(0, &[piece(2)], 10, Instant::now());
        assert_eq!(r, vec![req(2, 0, B), req(2, 1, B)]);
        assert!(
            p.next_requests_among(0, &[piece(2)], 10, Instant::now())
                .is_empty()
        );
        p.check_invariants();
    }

    #[test]
    fn in_progress_only_starts_nothing() {
        let mut p = picker(4);
        let now = Instant::now();
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(4));
        assert!(p.next_requests_in_progress(0, 10, now).is_empty());
        let first = p.next_requests(0, 1, now);
        let more = p.next_requests_in_progress(0, 10, now);
        assert_eq!(more.len(), 1, "the rest of the started piece only");
        assert_eq!(more[0].index, first[0].index);
        p.check_invariants();
    }

    #[test]
    fn a_peer_with_nothing_new_is_not_searched_until_it_has() {
        let mut p = picker(4);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(4));
        p.peer_bitfield(1, bits(4, &[1]));
        // Peer 0 is asked for all of piece 1; peer 1 then has nothing to start (and it is not
        // end game: pieces 0, 2 and 3 are not started).
        assert_eq!(p.next_requests_among(0, &[piece(1)], 100, now).len(), 2);
        assert!(p.next_requests(1, 4, now).is_empty());
        assert!(p.peers[&1].nothing_to_start);
        p.check_invariants();
        assert!(p.peer_have(1, piece(2)));
        assert!(!p.peers[&1].nothing_to_start);
        p.check_invariants();
    }

    #[test]
    fn resumed_pieces_are_not_requested() {
        let g = geometry(3);
        let mut p: Picker<u32> = Picker::with_seed(g, bits(3, &[0, 2]), 1);
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(3));
        let r = p.next_requests(0, 10, Instant::now());
        assert!(r.iter().all(|r| r.index == 1));
        assert!(!p.peer_bitfield(0, Bitfield::full(4)), "wrong length");
        p.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Bitfield(u32, Vec<bool>),
        Have(u32, u32),
        Next(u32, usize),
        NextAmong(u32, u32, usize),
        NextInProgress(u32, usize),
        Receive(u32, u32),
        ReceiveAny(u32, u32, u32),
        Reject(u32, u32),
        Choke(u32),
        Remove(u32),
        Add(u32),
        Expire(u64),
        Verify(u32, bool),
        Tick(u64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let peer = 0u32..4;
        prop_oneof![
            1 => (peer.clone(), proptest::collection::vec(any::<bool>(), 5)).prop_map(|(p, b)| Op::Bitfield(p, b)),
            1 => (peer.clone(), 0u32..5).prop_map(|(p, i)| Op::Have(p, i)),
            4 => (peer.clone(), 0usize..8).prop_map(|(p, n)| Op::Next(p, n)),
            4 => (peer.clone(), any::<u32>()).prop_map(|(p, i)| Op::Receive(p, i)),
            1 => (peer.clone(), 0u32..5, 0u32..3).prop_map(|(p, i, b)| Op::ReceiveAny(p, i, b)),
            1 => (peer.clone(), any::<u32>()).prop_map(|(p, i)| Op::Reject(p, i)),
            1 => peer.clone().prop_map(Op::Choke),
            1 => peer.clone().prop_map(Op::Remove),
            1 => peer.clone().prop_map(Op::Add),
            1 => (0u64..60).prop_map(Op::Expire),
            1 => (0u32..5, any::<bool>()).prop_map(|(i, ok)| Op::Verify(i, ok)),
            1 => (0u64..20).prop_map(Op::Tick),
            1 => (peer.clone(), 0u32..5, 0usize..8).prop_map(|(p, i, n)| Op::NextAmong(p, i, n)),
            1 => (peer.clone(), 0usize..8).prop_map(|(p, n)| Op::NextInProgress(p, n)),
        ]
    }

    proptest! {
        /// Any sequence of events keeps every invariant, and a download always can finish.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(arb_op(), 1..80)) {
            let g = geometry(5);
            let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(5), 3);
            let mut now = Instant::now();
            for peer in 0..4 {
                p.add_peer(peer);
            }
            for op in ops {
                match op {
                    Op::Bitfield(peer, b) => {
                        let set: Vec<u32> = (0..5).filter(|&i| b[i as usize]).collect();
                        p.peer_bitfield(peer, bits(5, &set));
                    }
                    Op::Have(peer, i) => { p.peer_have(peer, piece(i)); }
                    Op::Next(peer, n) => {
                        let before = p.outstanding(peer);
                        let r = p.next_requests(peer, n, now);
                        prop_assert!(p.outstanding(peer) <= n.max(before));
                        let mut seen = r.clone();
                        seen.sort();
                        seen.dedup();
                        prop_assert_eq!(seen.len(), r.len(), "a request twice in one batch");
                    }
                    Op::NextInProgress(peer, n) => {
                        let started: Vec<u32> = p.pieces.keys().map(|i| i.get()).collect();
                        for r in p.next_requests_in_progress(peer, n, now) {
                            prop_assert!(started.contains(&r.index));
                        }
                    }
                    Op::NextAmong(peer, index, n) => {
                        for r in p.next_requests_among(peer, &[piece(index)], n, now) {
                            prop_assert_eq!(r.index, index);
                        }
                    }
                    Op::Receive(peer, pick) => {
                        let outstanding: Vec<BlockKey> = p.peers.get(&peer)
                            .map(|s| s.outstanding.keys().copied().collect()).unwrap_or_default();
                        if !outstanding.is_empty() {
                            let r = p.request_of(outstanding[pick as usize % outstanding.len()]);
                            let outcome = p.block_received(peer, piece(r.index), r.begin, r.length);
                            prop_assert!(matches!(outcome, BlockOutcome::Accepted { .. }), "{:?}", outcome);
                        }
                    }
                    Op::ReceiveAny(peer, i, b) => {
                        let len = g.piece_len(piece(i)).saturating_sub(b * B).min(B);
                        p.block_received(peer, piece(i), b * B, len);
                    }
                    Op::Reject(peer, pick) => {
                        let outstanding: Vec<BlockKey> = p.peers.get(&peer)
                            .map(|s| s.outstanding.keys().copied().collect()).unwrap_or_default();
                        if !outstanding.is_empty() {
                            let r = p.request_of(outstanding[pick as usize % outstanding.len()]);
                            prop_assert!(p.request_rejected(peer, &r));
                        }
                    }
                    Op::Choke(peer) => { p.peer_choked(peer); }
                    Op::Remove(peer) => p.remove_peer(peer),
                    Op::Add(peer) => p.add_peer(peer),
                    Op::Expire(secs) => { p.expire_requests(now, Duration::from_secs(secs)); }
                    Op::Verify(i, ok) => {
                        if ok { p.piece_verified(piece(i)); } else { p.piece_failed(piece(i)); }
                    }
                    Op::Tick(secs) => now += Duration::from_secs(secs),
                }
                p.check_invariants();
            }
            // Whatever happened, one seeder finishes the download.
            p.add_peer(9);
            p.peer_bitfield(9, Bitfield::full(5));
            for _ in 0..100 {
                if p.is_complete() {
                    break;
                }
                for r in p.next_requests(9, 4, now) {
                    if let BlockOutcome::Accepted { piece_complete: true, .. } =
                        p.block_received(9, piece(r.index), r.begin, r.length)
                    {
                        p.piece_verified(piece(r.index));
                    }
                }
                // Pieces completed by others earlier but never verified.
                for i in 0..5 {
                    p.piece_verified(piece(i));
                }
                // Requests stuck at peers that never answer.
                now += Duration::from_secs(100);
                p.expire_requests(now, Duration::from_secs(60));
                p.check_invariants();
            }
            prop_assert!(p.is_complete());
        }
    }
}
