//! A set of pieces, stored exactly as the BEP 3 bitfield message carries it: one bit per
//! piece, the high bit of the first byte is piece 0, spare bits at the end are zero.
//!
//! Why our own and not `bitvec`: we need a dozen lines of bit arithmetic, the wire layout
//! (most significant bit first, spare bits zero) as the storage format so a bitfield is sent
//! and received without conversion, and a cached count. `bitvec` would bring four crates
//! (funty, radium, tap, wyz) and its generic order/store parameters for none of that.

use crate::peer::geometry::PeerGeometry;
use crate::peer::wire::WireError;

/// One bit per piece. Invariants: `bytes.len() == ceil(len / 8)`, spare bits are zero, and
/// `ones` is the number of set bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// `len` pieces, none set.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
            ones: 0,
        }
    }

    /// `len` pieces, all set (a seeder, or BEP 6 have-all).
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield {
            bytes: vec![0xff; len.div_ceil(8) as usize],
            len,
            ones: len,
        };
        b.clear_spare_bits();
        b
    }

    /// The bitfield of a torrent from a peer's bitfield message.
    ///
    /// # Errors
    /// [`WireError::BitfieldLength`] or [`WireError::BitfieldSpareBits`] when `bytes` does not
    /// fit the torrent.
    pub fn from_wire(bytes: &[u8], geometry: &PeerGeometry) -> Result<Self, WireError> {
        geometry.check_bitfield(bytes)?;
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len: geometry.piece_count(),
            ones,
        })
    }

    fn clear_spare_bits(&mut self) {
        let spare = self.bytes.len() as u32 * 8 - self.len;
        if spare > 0
            && let Some(last) = self.bytes.last_mut()
        {
            *last &= !((1u8 << spare) - 1);
        }
    }

    /// The bytes of the bitfield message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of pieces.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `index` is set; `false` past the end.
    pub fn get(&self, index: u32) -> bool {
        index < self.len && self.bytes[(index / 8) as usize] & mask(index) != 0
    }

    /// Sets piece `index`; returns whether it was newly set. Past the end: no change, `false`.
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len || self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] |= mask(index);
        self.ones += 1;
        true
    }

    /// Clears piece `index`; returns whether it was set.
    pub fn clear(&mut self, index: u32) -> bool {
        if !self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] &= !mask(index);
        self.ones -= 1;
        true
    }

    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Every piece is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// No piece is set.
    pub fn is_clear(&self) -> bool {
        self.ones == 0
    }

    /// The set pieces, in order.
    pub fn iter_set(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// The pieces not set (missing), in order.
    pub fn iter_missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| !self.get(i))
    }
}

fn mask(index: u32) -> u8 {
    0x80 >> (index % 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_layout_is_msb_first() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0));
        assert!(b.set(9));
        assert!(!b.set(9), "already set");
        assert!(!b.set(10), "past the end");
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter_set().collect::<Vec<_>>(), vec![0, 9]);
        assert_eq!(b.iter_missing().count(), 8);
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.as_bytes(), &[0x00, 0x40]);
    }

    #[test]
    fn full_has_zero_spare_bits() {
        let b = Bitfield::full(10);
        assert_eq!(b.as_bytes(), &[0xff, 0xc0]);
        assert!(b.is_full());
        let g = PeerGeometry::new(16384, 10 * 16384).unwrap();
        assert_eq!(Bitfield::from_wire(b.as_bytes(), &g), Ok(b));
        assert_eq!(Bitfield::full(16).as_bytes(), &[0xff, 0xff]);
    }

    #[test]
    fn from_wire_checks_the_torrent() {
        let g = PeerGeometry::new(16384, 10 * 16384).unwrap();
        assert_eq!(
            Bitfield::from_wire(&[0xff, 0xe0], &g),
            Err(WireError::BitfieldSpareBits)
        );
        assert_eq!(
            Bitfield::from_wire(&[0xff], &g),
            Err(WireError::BitfieldLength {
                expected: 2,
                received: 1
            })
        );
        let b = Bitfield::from_wire(&[0x81, 0x40], &g).unwrap();
        assert_eq!(b.count(), 3);
        assert!(b.get(0) && b.get(7) && b.get(9) && !b.get(8));
    }

    proptest! {
        #[test]
        fn count_matches_bits(len in 1u32..200, ops in proptest::collection::vec((any::<bool>(), 0u32..220), 0..100)) {
            let mut b = Bitfield::new(len);
            let mut model = std::collections::BTreeSet::new();
            for (set, i) in ops {
                if set {
                    prop_assert_eq!(b.set(i), i < len && model.insert(i));
                } else {
                    prop_assert_eq!(b.clear(i), model.remove(&i));
                }
            }
            prop_assert_eq!(b.count() as usize, model.len());
            prop_assert_eq!(b.iter_set().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
            let g = PeerGeometry::new(16384, u64::from(len) * 16384).unwrap();
            prop_assert_eq!(Bitfield::from_wire(b.as_bytes(), &g), Ok(b));
        }
    }
}
