//! How rare each piece is: availability per piece, and the pieces not started yet grouped by
//! availability, so that the picker finds the rarest without scanning or sorting (the policy is
//! in the parent module's doc).

use crate::metainfo::{Geometry, PieceIndex};
use crate::peer::bitfield::Bitfield;

/// Marks a piece that is not in [`Rarity::order`]: no position in `order` is this high, as
/// it holds at most `u32::MAX` pieces ([`crate::metainfo::MAX_PIECE_COUNT`]).
const NOT_CANDIDATE: u32 = u32::MAX;

/// Availability per piece, and the pieces not started yet kept grouped by availability, so
/// that the rarest one is found without scanning or sorting every piece, and a change of
/// availability costs O(1) (a swap at a group boundary).
#[derive(Debug)]
pub(super) struct Rarity {
    /// Per piece: how many known peers have it.
    pub(super) count: Vec<u32>,
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
    pub(super) fn new(geometry: &Geometry, have: &Bitfield) -> Self {
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

    pub(super) fn swap(&mut self, a: u32, b: u32) {
        self.order.swap(a as usize, b as usize);
        self.pos[self.order[a as usize].as_usize()] = a;
        self.pos[self.order[b as usize].as_usize()] = b;
    }

    pub(super) fn increment(&mut self, piece: PieceIndex) {
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

    pub(super) fn decrement(&mut self, piece: PieceIndex) {
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
    pub(super) fn remove(&mut self, piece: PieceIndex) {
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
    pub(super) fn is_candidate(&self, piece: PieceIndex) -> bool {
        self.pos[piece.as_usize()] != NOT_CANDIDATE
    }

    pub(super) fn groups(&self) -> impl Iterator<Item = &[PieceIndex]> {
        self.bucket_start[1..]
            .windows(2)
            .map(|w| &self.order[w[0] as usize..w[1] as usize])
            .filter(|group| !group.is_empty())
    }

    #[cfg(test)]
    pub(super) fn check(&self, candidates: &[PieceIndex]) {
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
