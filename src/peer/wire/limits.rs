//! [`WireLimits`]: the largest message a peer may send, known before the torrent's geometry is
//! known in detail, so that a connection's read buffer has a fixed size and an absurd length
//! prefix is refused from its first five bytes (docs/protocol.md section 7).

use super::extension::MAX_EXTENDED_MSG_LEN;
use super::{MAX_PIECE_MSG_LEN, PREFIX_LEN};

/// The piece count [`WireLimits::default`] accepts bitfields for: twice the default maximum of
/// 65,536 pieces of docs/protocol.md section 5.
pub const DEFAULT_MAX_PIECE_COUNT: u32 = 1 << 17;

/// What a decoded message may not exceed, before the torrent's geometry is known in detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Most bytes of a bitfield payload (ceil(piece count / 8) for a known torrent).
    pub max_bitfield_len: u32,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits::for_piece_count(DEFAULT_MAX_PIECE_COUNT)
    }
}

impl WireLimits {
    /// The limits for a torrent of `piece_count` pieces: a bitfield may not be longer than
    /// that torrent's bitfield.
    pub fn for_piece_count(piece_count: u32) -> Self {
        WireLimits {
            max_bitfield_len: piece_count.div_ceil(8),
        }
    }

    /// The largest length field any message may have under these limits.
    pub fn max_message_len(&self) -> u32 {
        MAX_PIECE_MSG_LEN
            .max(MAX_EXTENDED_MSG_LEN)
            .max(self.max_bitfield_len.saturating_add(1))
    }

    /// The largest whole frame (length prefix included): the size a read buffer needs.
    pub fn max_frame_len(&self) -> usize {
        PREFIX_LEN + self.max_message_len() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Geometry;
    use crate::peer::wire::{MSGID_BITFIELD, Message, WireError, decode, decode_with};

    #[test]
    fn larger_torrents_get_larger_bitfield_limits() {
        let geometry = Geometry::new(16384, 16384 * 1_000_000).unwrap();
        let limits = WireLimits::for_piece_count(geometry.piece_count());
        assert_eq!(limits.max_bitfield_len, 125_000);
        assert_eq!(limits.max_frame_len(), 4 + 125_001);
        let mut bytes = (125_001u32).to_be_bytes().to_vec();
        bytes.push(MSGID_BITFIELD);
        bytes.resize(4 + 125_001, 0);
        assert!(matches!(
            decode_with(&bytes, &limits),
            Ok(Some((Message::Bitfield(_), _)))
        ));
        assert!(matches!(
            decode(&bytes),
            Err(WireError::MessageTooLong { id: 5, .. })
        ));
        assert_eq!(
            WireLimits::default().max_frame_len(),
            4 + MAX_EXTENDED_MSG_LEN as usize
        );
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let limits = WireLimits {
            max_bitfield_len: u32::MAX,
        };
        assert_eq!(limits.max_message_len(), u32::MAX);
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.push(MSGID_BITFIELD);
        assert_eq!(decode_with(&bytes, &limits), Ok(None));
    }
}
