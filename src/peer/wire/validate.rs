//! The checks that need the torrent: a message that decoded may still name a piece past the
//! end, a block outside its piece, or a bitfield of the wrong length or with spare bits set
//! (docs/protocol.md section 7). Each is a [`WireError`] that closes the connection.

use crate::metainfo::Geometry;

use super::{Message, WireError};

impl Message<'_> {
    /// Checks the message against the torrent it is about: piece indices below the piece
    /// count, blocks inside their piece, a bitfield of exactly ceil(pieces / 8) bytes whose
    /// spare bits are zero.
    ///
    /// # Errors
    /// [`WireError::PieceIndexOutOfRange`], [`WireError::BlockOutOfRange`],
    /// [`WireError::BitfieldLength`], [`WireError::BitfieldSpareBits`].
    pub fn validate(&self, geometry: &Geometry) -> Result<(), WireError> {
        let id = self.id().unwrap_or(0);
        let piece_len = |index: u32| {
            geometry
                .piece_index(index)
                .map(|index| geometry.piece_len(index))
                .ok_or(WireError::PieceIndexOutOfRange {
                    id,
                    index,
                    piece_count: geometry.piece_count(),
                })
        };
        let block = |index: u32, begin: u32, length: u32| {
            let piece_len = piece_len(index)?;
            if u64::from(begin) + u64::from(length) > u64::from(piece_len) {
                return Err(WireError::BlockOutOfRange {
                    id,
                    index,
                    begin,
                    length,
                    piece_len,
                });
            }
            Ok(())
        };
        match self {
            Message::Have { index }
            | Message::SuggestPiece { index }
            | Message::AllowedFast { index } => piece_len(*index).map(drop),
            Message::Request(r) | Message::Cancel(r) | Message::RejectRequest(r) => {
                block(r.index, r.begin, r.length)
            }
            Message::Piece {
                index,
                begin,
                block: data,
            } => {
                // Decoding bounded the block to 16 KiB, so the cast is exact.
                block(*index, *begin, data.len() as u32)
            }
            Message::Bitfield(bits) => check_bitfield(bits, geometry),
            _ => Ok(()),
        }
    }
}

/// Checks a bitfield's length (ceil(pieces / 8) bytes) and that its spare bits are zero.
///
/// # Errors
/// [`WireError::BitfieldLength`], [`WireError::BitfieldSpareBits`].
pub fn check_bitfield(bits: &[u8], geometry: &Geometry) -> Result<(), WireError> {
    let pieces = geometry.piece_count();
    let expected = pieces.div_ceil(8);
    if bits.len() != expected as usize {
        return Err(WireError::BitfieldLength {
            expected,
            received: u32::try_from(bits.len()).unwrap_or(u32::MAX),
        });
    }
    let spare = expected * 8 - pieces;
    if spare > 0 {
        // `bits` is not empty: a geometry has at least one piece.
        let last = bits[bits.len() - 1];
        if last & ((1u8 << spare) - 1) != 0 {
            return Err(WireError::BitfieldSpareBits);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::wire::BlockRequest;

    /// One line per message that decodes but does not fit the torrent.
    macro_rules! invalid {
        ($name:ident, $message:expr, $err:expr) => {
            #[test]
            fn $name() {
                // 3 pieces of 32 KiB and one of 1000 bytes.
                let geometry = Geometry::new(32768, 3 * 32768 + 1000).unwrap();
                assert_eq!($message.validate(&geometry), Err($err));
            }
        };
    }

    invalid!(
        have_past_end,
        Message::Have { index: 4 },
        WireError::PieceIndexOutOfRange {
            id: 4,
            index: 4,
            piece_count: 4
        }
    );
    invalid!(
        allowed_fast_past_end,
        Message::AllowedFast { index: u32::MAX },
        WireError::PieceIndexOutOfRange {
            id: 17,
            index: u32::MAX,
            piece_count: 4
        }
    );
    invalid!(
        suggest_past_end,
        Message::SuggestPiece { index: 9 },
        WireError::PieceIndexOutOfRange {
            id: 13,
            index: 9,
            piece_count: 4
        }
    );
    invalid!(
        request_past_piece_end,
        Message::Request(BlockRequest {
            index: 0,
            begin: 16385,
            length: 16384
        }),
        WireError::BlockOutOfRange {
            id: 6,
            index: 0,
            begin: 16385,
            length: 16384,
            piece_len: 32768
        }
    );
    invalid!(
        request_past_short_last_piece,
        Message::Request(BlockRequest {
            index: 3,
            begin: 0,
            length: 1001
        }),
        WireError::BlockOutOfRange {
            id: 6,
            index: 3,
            begin: 0,
            length: 1001,
            piece_len: 1000
        }
    );
    invalid!(
        request_begin_overflow,
        Message::Request(BlockRequest {
            index: 1,
            begin: u32::MAX,
            length: 16384
        }),
        WireError::BlockOutOfRange {
            id: 6,
            index: 1,
            begin: u32::MAX,
            length: 16384,
            piece_len: 32768
        }
    );
    invalid!(
        request_piece_past_end,
        Message::Request(BlockRequest {
            index: 4,
            begin: 0,
            length: 1
        }),
        WireError::PieceIndexOutOfRange {
            id: 6,
            index: 4,
            piece_count: 4
        }
    );
    invalid!(
        cancel_past_piece_end,
        Message::Cancel(BlockRequest {
            index: 2,
            begin: 32768,
            length: 1
        }),
        WireError::BlockOutOfRange {
            id: 8,
            index: 2,
            begin: 32768,
            length: 1,
            piece_len: 32768
        }
    );
    invalid!(
        piece_past_piece_end,
        Message::Piece {
            index: 3,
            begin: 999,
            block: &[0, 0]
        },
        WireError::BlockOutOfRange {
            id: 7,
            index: 3,
            begin: 999,
            length: 2,
            piece_len: 1000
        }
    );
    invalid!(
        bitfield_too_long,
        Message::Bitfield(&[0xf0, 0]),
        WireError::BitfieldLength {
            expected: 1,
            received: 2
        }
    );
    invalid!(
        bitfield_spare_bits,
        Message::Bitfield(&[0xf8]),
        WireError::BitfieldSpareBits
    );

    #[test]
    fn valid_messages_pass_validation() {
        let geometry = Geometry::new(32768, 3 * 32768 + 1000).unwrap();
        let ok = [
            Message::Bitfield(&[0xf0]),
            Message::Have { index: 3 },
            Message::Request(BlockRequest {
                index: 3,
                begin: 0,
                length: 1000,
            }),
            Message::Request(BlockRequest {
                index: 0,
                begin: 16384,
                length: 16384,
            }),
            Message::Piece {
                index: 3,
                begin: 999,
                block: &[7],
            },
            Message::Choke,
        ];
        for m in ok {
            assert_eq!(m.validate(&geometry), Ok(()), "{m:?}");
        }
    }
}
