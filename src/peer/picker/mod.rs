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

mod rarity;
use rarity::Rarity;

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
mod tests;
