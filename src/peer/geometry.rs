//! [`PeerGeometry`]: a torrent's [`metainfo::Geometry`] as the peer engine uses it, with the
//! raw `u32` piece indices of the wire (checked on each call) and what the engine derives from
//! the geometry: the bytes a set of pieces holds, and the wire [`WireLimits`] of the torrent.
//!
//! It is a distinct type from [`metainfo::Geometry`], whose indices are checked
//! [`metainfo::PieceIndex`]es; code that holds one of those asks [`PeerGeometry::metainfo`].

use crate::metainfo::{self, GeometryError};
use crate::peer::bitfield::Bitfield;
use crate::peer::wire::{self, WireError, WireLimits};

/// The shape of a torrent as the peer engine sees it: the metainfo's
/// [`metainfo::Geometry`] (power-of-two pieces of 16 KiB to 256 MiB, at least one byte, at
/// most 2^32 - 1 pieces) seen with the `u32` piece indices of the wire, which it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerGeometry(metainfo::Geometry);

impl From<metainfo::Geometry> for PeerGeometry {
    fn from(geometry: metainfo::Geometry) -> Self {
        PeerGeometry(geometry)
    }
}

impl PeerGeometry {
    /// # Errors
    /// As [`metainfo::Geometry::new`]: a piece length that is not a power of two from 16 KiB
    /// to 256 MiB, an empty torrent, or more than 2^32 - 1 pieces.
    pub fn new(piece_length: u64, total_length: u64) -> Result<PeerGeometry, GeometryError> {
        metainfo::Geometry::new(piece_length, total_length).map(PeerGeometry)
    }

    /// The metainfo's view, with checked [`metainfo::PieceIndex`]es and byte ranges.
    pub fn metainfo(&self) -> &metainfo::Geometry {
        &self.0
    }

    pub fn piece_count(&self) -> u32 {
        self.0.piece_count()
    }

    /// The nominal piece length (at most 256 MiB, so it fits in 32 bits).
    pub fn piece_length(&self) -> u32 {
        // Cannot fail: metainfo::Geometry refuses pieces over 256 MiB.
        u32::try_from(self.0.piece_length()).unwrap_or(u32::MAX)
    }

    pub fn total_length(&self) -> u64 {
        self.0.total_length()
    }

    /// The length of piece `index` (the last one may be short); `None` past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        self.0.piece_index(index).map(|i| self.0.piece_len(i))
    }

    /// The bytes in the pieces `have` holds, in constant time: every piece is full length
    /// but perhaps the last. (Summing piece by piece made progress reports, sent after every
    /// piece, quadratic in the piece count.)
    pub fn bytes_in(&self, have: &Bitfield) -> u64 {
        let last = self.piece_count() - 1;
        let full = u64::from(have.count()) * u64::from(self.piece_length());
        if have.get(last) {
            // The last piece is at most one piece long, so this cannot underflow.
            full - u64::from(self.piece_length())
                + u64::from(self.piece_len(last).unwrap_or(self.piece_length()))
        } else {
            full
        }
    }

    /// The wire limits for this torrent.
    pub fn limits(&self) -> WireLimits {
        WireLimits::for_piece_count(self.piece_count())
    }

    /// Checks a bitfield's length and that its spare bits are zero.
    ///
    /// # Errors
    /// [`WireError::BitfieldLength`], [`WireError::BitfieldSpareBits`].
    pub fn check_bitfield(&self, bits: &[u8]) -> Result<(), WireError> {
        wire::check_bitfield(bits, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn bytes_in_equals_the_sum_of_the_pieces_held(
            pieces in 1u32..40,
            short_by in 0u64..16384,
            held in proptest::collection::vec(any::<bool>(), 40),
        ) {
            let total = u64::from(pieces) * 16384 - short_by;
            let geometry = PeerGeometry::new(16384, total).unwrap();
            let mut have = Bitfield::new(geometry.piece_count());
            let mut sum = 0u64;
            for index in 0..geometry.piece_count() {
                if held[index as usize] {
                    have.set(index);
                    sum += u64::from(geometry.piece_len(index).unwrap());
                }
            }
            prop_assert_eq!(geometry.bytes_in(&have), sum);
        }
    }

    #[test]
    fn geometry_rejects_nonsense() {
        assert_eq!(PeerGeometry::new(0, 1), Err(GeometryError::PieceLength(0)));
        assert_eq!(
            PeerGeometry::new(1 << 29, 1),
            Err(GeometryError::PieceLengthTooLarge(1 << 29))
        );
        assert_eq!(PeerGeometry::new(16384, 0), Err(GeometryError::Empty));
        assert!(matches!(
            PeerGeometry::new(16384, u64::MAX),
            Err(GeometryError::TooManyPieces { .. })
        ));
        let g = PeerGeometry::new(16384, 16384 * 2).unwrap();
        assert_eq!(g.piece_count(), 2);
        assert_eq!(g.piece_len(1), Some(16384));
        assert_eq!(g.piece_len(2), None);
    }
}
