//! Piece assembly and liar detection: blocks into piece buffers, who sent which block, and,
//! once a piece that failed verification verifies, which of its earlier senders lied. A plain
//! type with no I/O and no clock, so that plain `#[test]`s drive it.
//!
//! # Finding liars
//! A piece whose blocks came from one peer and that fails its hash check was corrupted by
//! that peer ([`Blame::Sole`]). When several peers sent blocks, any of them may have lied, so
//! none is blamed yet: the hash of each block and its sender are kept ([`SentBlock`]). When
//! the piece later verifies, the blocks that differ from the good ones name the liars
//! ([`Verdict::Good`]); honest peers that shared a bad piece with a liar are never blamed.
//!
//! What it will not do: hash on the reactor, store pieces, or strike peers. The session runs
//! [`judge`] on a blocking thread, stores the piece, and bans whom it names.

use std::collections::HashMap;
use std::net::SocketAddr;

use sha1::{Digest as _, Sha1};

use crate::metainfo::PieceIndex;
use crate::types::PeerId;

/// The size of the blocks we request: 16 KiB.
const BLOCK_LEN: usize = crate::peer::picker::BLOCK_LEN as usize;

/// The peer that sent a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sender {
    pub(super) peer_id: PeerId,
    /// Where it is connected from, if known (to ban the address too).
    pub(super) addr: Option<SocketAddr>,
}

/// A piece being assembled: its bytes and who sent each block.
pub(super) struct PartialPiece {
    /// The piece's length; a block writes its part of it.
    pub(super) data: Vec<u8>,
    /// Per 16 KiB block, the peer that sent it.
    pub(super) senders: Vec<Option<Sender>>,
}

/// A block of a piece that failed verification: who sent it, and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SentBlock {
    /// The block's number in its piece (`begin / 16 KiB`).
    pub(super) block: usize,
    pub(super) sender: Sender,
    pub(super) sha1: [u8; 20],
}

/// A block that arrived, as the picker accepted it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block<'a> {
    pub(super) index: PieceIndex,
    pub(super) begin: u32,
    pub(super) data: &'a [u8],
}

/// A piece whose every block arrived, to be verified.
pub(super) struct Assembled {
    pub(super) piece: PartialPiece,
    /// Blocks of earlier attempts at this piece that failed verification.
    pub(super) suspects: Vec<SentBlock>,
}

/// What verifying a complete piece found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The hash matched; these earlier senders sent blocks that differ from the good ones.
    Good { liars: Vec<Sender> },
    /// The hash did not match; the hash of each block, for telling liars apart later.
    Bad { block_hashes: Vec<[u8; 20]> },
}

/// Whom a piece that failed verification blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blame {
    /// One peer sent every block: it lied.
    Sole(Sender),
    /// This many peers sent blocks: the liars are named when the piece verifies.
    Shared { peers: usize },
}

impl Blame {
    /// How many distinct peers sent the piece's blocks.
    pub(super) fn peers(&self) -> usize {
        match self {
            Blame::Sole(_) => 1,
            Blame::Shared { peers } => *peers,
        }
    }
}

/// The pieces of one torrent being assembled. Invariant: `bytes` is the length of every
/// piece in `partial` plus that of the complete pieces handed out by
/// [`Assembly::add_block`] and not yet [`Assembly::release`]d.
#[derive(Default)]
pub(super) struct Assembly {
    /// Pieces being assembled; each buffer has the piece's length.
    partial: HashMap<PieceIndex, PartialPiece>,
    /// Bytes of piece buffers in memory: a piece counts from its first block until it is
    /// verified and written, so that no new pieces start while verification falls behind.
    bytes: u64,
    /// Pieces that failed verification: who sent which block, and its hash.
    suspects: HashMap<PieceIndex, Vec<SentBlock>>,
}

impl Assembly {
    /// Bytes of piece buffers in memory (see [`Assembly::release`]).
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Copies a block the picker accepted into its piece of `piece_len` bytes, taking the
    /// piece's buffer from `take` if it is the piece's first block. When `piece_complete` (the
    /// picker's word), the piece is handed out with its suspects, still counted in
    /// [`Assembly::bytes`].
    pub(super) fn add_block(
        &mut self,
        Block { index, begin, data }: Block<'_>,
        piece_len: usize,
        sender: Option<Sender>,
        piece_complete: bool,
        take: impl FnOnce(usize) -> Vec<u8>,
    ) -> Option<Assembled> {
        let mut added = 0;
        let piece = self.partial.entry(index).or_insert_with(|| {
            added = piece_len as u64;
            PartialPiece {
                // Reused buffers hold old bytes; every block of the piece overwrites its part
                // before the piece completes.
                data: take(piece_len),
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
        self.bytes += added;
        if !piece_complete {
            return None;
        }
        let piece = self.partial.remove(&index)?;
        let suspects = self.suspects.remove(&index).unwrap_or_default();
        Some(Assembled { piece, suspects })
    }

    /// A complete piece of `bytes` bytes was verified and written, or given up: its memory is
    /// free again.
    pub(super) fn release(&mut self, bytes: u64) {
        self.bytes -= bytes;
    }

    /// Piece `index`, sent by `senders` (per block), failed verification with these block
    /// hashes. Unless one peer sent it all, who sent which block is kept for
    /// [`judge`] to name the liars once the piece verifies.
    pub(super) fn piece_failed(
        &mut self,
        index: PieceIndex,
        senders: &[Option<Sender>],
        block_hashes: &[[u8; 20]],
    ) -> Blame {
        let mut distinct: Vec<Sender> = Vec::new();
        for sender in senders.iter().flatten() {
            if !distinct.iter().any(|d| d.peer_id == sender.peer_id) {
                distinct.push(*sender);
            }
        }
        if let [sole] = distinct[..] {
            return Blame::Sole(sole);
        }
        let record = self.suspects.entry(index).or_default();
        for (block, sender) in senders.iter().enumerate() {
            if let (Some(sender), Some(sha1)) = (sender, block_hashes.get(block)) {
                record.push(SentBlock {
                    block,
                    sender: *sender,
                    sha1: *sha1,
                });
            }
        }
        Blame::Shared {
            peers: distinct.len(),
        }
    }
}

/// Verifies a complete piece against its `expected` SHA-1: when it matches, the `suspects`
/// whose blocks differ from it are the liars; when not, the hash of each block is kept for
/// later. CPU work: run it off the reactor.
pub(super) fn judge(expected: &[u8; 20], data: &[u8], suspects: &[SentBlock]) -> Verdict {
    let blocks = data.len().div_ceil(BLOCK_LEN);
    let block_sha1 = |b: usize| -> [u8; 20] {
        let end = ((b + 1) * BLOCK_LEN).min(data.len());
        Sha1::digest(&data[b * BLOCK_LEN..end]).into()
    };
    let digest: [u8; 20] = Sha1::digest(data).into();
    if &digest != expected {
        let block_hashes = (0..blocks).map(block_sha1).collect();
        return Verdict::Bad { block_hashes };
    }
    let liars = suspects
        .iter()
        .filter(|s| s.block < blocks && block_sha1(s.block) != s.sha1)
        .map(|s| s.sender)
        .collect();
    Verdict::Good { liars }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE_LEN: usize = 2 * BLOCK_LEN;

    /// Piece 5 of a torrent of eight pieces of two blocks.
    fn piece_5() -> PieceIndex {
        let geometry = crate::metainfo::Geometry::new(PIECE_LEN as u64, 8 * PIECE_LEN as u64);
        geometry.unwrap().piece_index(5).unwrap()
    }

    fn sender(n: u8) -> Sender {
        Sender {
            peer_id: PeerId([n; 20]),
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 6880 + u16::from(n)))),
        }
    }

    /// The good content of the piece, and its SHA-1.
    fn good_piece() -> (Vec<u8>, [u8; 20]) {
        let data: Vec<u8> = (0..PIECE_LEN).map(|i| (i % 251) as u8).collect();
        let sha1 = Sha1::digest(&data).into();
        (data, sha1)
    }

    /// Reused buffers hold someone's old bytes.
    fn dirty_buffer(len: usize) -> Vec<u8> {
        vec![0xee; len]
    }

    /// Sends block `block` of piece 5 from `from`, with `data` as its bytes.
    fn add(
        assembly: &mut Assembly,
        block: usize,
        data: &[u8],
        from: Sender,
        complete: bool,
    ) -> Option<Assembled> {
        let range = block * BLOCK_LEN..(block + 1) * BLOCK_LEN;
        let block = Block {
            index: piece_5(),
            begin: range.start as u32,
            data: &data[range],
        };
        assembly.add_block(block, PIECE_LEN, Some(from), complete, dirty_buffer)
    }

    #[test]
    fn a_liar_among_two_senders_is_found_when_the_piece_verifies() {
        let (good, sha1) = good_piece();
        let mut lie = good.clone();
        lie[BLOCK_LEN + 7] ^= 0x40;
        let (honest, liar, third) = (sender(1), sender(2), sender(3));
        let mut assembly = Assembly::default();

        // First attempt: block 0 from the honest peer, block 1 (corrupt) from the liar.
        assert!(add(&mut assembly, 0, &good, honest, false).is_none());
        let first = add(&mut assembly, 1, &lie, liar, true).expect("complete");
        assert!(first.suspects.is_empty());
        assert_eq!(first.piece.data, lie);
        let Verdict::Bad { block_hashes } = judge(&sha1, &first.piece.data, &first.suspects) else {
            panic!("a corrupt piece verified");
        };
        assert_eq!(block_hashes.len(), 2);
        assert_eq!(
            assembly.piece_failed(piece_5(), &first.piece.senders, &block_hashes),
            Blame::Shared { peers: 2 },
            "nobody is blamed while either could have lied"
        );
        assembly.release(PIECE_LEN as u64);

        // Second attempt: a third peer sends it all, and it verifies.
        assert!(add(&mut assembly, 0, &good, third, false).is_none());
        let second = add(&mut assembly, 1, &good, third, true).expect("complete");
        assert_eq!(second.suspects.len(), 2);
        assert_eq!(
            judge(&sha1, &second.piece.data, &second.suspects),
            Verdict::Good { liars: vec![liar] },
            "the liar, and only the liar"
        );
    }

    #[test]
    fn a_bad_piece_sent_by_one_peer_blames_it_at_once() {
        let (good, sha1) = good_piece();
        let mut lie = good.clone();
        lie[3] ^= 1;
        let mut assembly = Assembly::default();
        assert!(add(&mut assembly, 0, &lie, sender(4), false).is_none());
        let piece = add(&mut assembly, 1, &lie, sender(4), true).expect("complete");
        let Verdict::Bad { block_hashes } = judge(&sha1, &piece.piece.data, &[]) else {
            panic!("a corrupt piece verified");
        };
        assert_eq!(
            assembly.piece_failed(piece_5(), &piece.piece.senders, &block_hashes),
            Blame::Sole(sender(4))
        );
        // Nothing is kept for later: the sole sender is banned.
        assert!(add(&mut assembly, 0, &good, sender(5), false).is_none());
        let again = add(&mut assembly, 1, &good, sender(5), true).expect("complete");
        assert!(again.suspects.is_empty());
        assert_eq!(
            judge(&sha1, &again.piece.data, &again.suspects),
            Verdict::Good { liars: vec![] }
        );
    }

    #[test]
    fn memory_counts_from_the_first_block_until_released() {
        let (good, _) = good_piece();
        let mut assembly = Assembly::default();
        let mut taken = 0;
        let mut take = |len| {
            taken += 1;
            dirty_buffer(len)
        };
        let first = Block {
            index: piece_5(),
            begin: 0,
            data: &good[..BLOCK_LEN],
        };
        assert!(
            assembly
                .add_block(first, PIECE_LEN, None, false, &mut take)
                .is_none()
        );
        assert_eq!(assembly.bytes(), PIECE_LEN as u64);
        let second = Block {
            index: piece_5(),
            begin: BLOCK_LEN as u32,
            data: &good[BLOCK_LEN..],
        };
        let done = assembly
            .add_block(second, PIECE_LEN, None, true, &mut take)
            .expect("complete");
        assert_eq!(taken, 1, "one buffer per piece");
        assert_eq!(done.piece.data, good, "every old byte overwritten");
        assert_eq!(
            assembly.bytes(),
            PIECE_LEN as u64,
            "counted until verified and written"
        );
        assembly.release(PIECE_LEN as u64);
        assert_eq!(assembly.bytes(), 0);
    }

    #[test]
    fn a_short_last_piece_has_a_short_last_block() {
        let data = vec![9u8; BLOCK_LEN + 100];
        let sha1: [u8; 20] = Sha1::digest(&data).into();
        let mut wrong = sha1;
        wrong[0] ^= 1;
        let Verdict::Bad { block_hashes } = judge(&wrong, &data, &[]) else {
            panic!("a wrong hash matched");
        };
        let last: [u8; 20] = Sha1::digest(&data[BLOCK_LEN..]).into();
        assert_eq!(block_hashes.len(), 2);
        assert_eq!(block_hashes[1], last);
        // A suspect of a block the piece does not have is nobody's fault.
        let stray = SentBlock {
            block: 2,
            sender: sender(1),
            sha1: [0; 20],
        };
        assert_eq!(
            judge(&sha1, &data, &[stray]),
            Verdict::Good { liars: vec![] }
        );
    }
}
