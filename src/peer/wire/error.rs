//! [`WireError`]: every way bytes from a peer can fail to be a valid message, or a valid
//! message can fail to fit its torrent. Each variant names what was wrong, so a log line says
//! exactly why a peer was dropped (docs/protocol.md section 7 lists the limits).

use crate::bencode;

use super::MAX_BLOCK_LEN;

/// Why bytes from a peer are not a valid message. Each variant names the message id and what
/// was wrong, so a log line says exactly why a peer was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("handshake protocol string length is {found}, expected 19")]
    HandshakePstrLen { found: u8 },
    #[error("handshake protocol string is not \"BitTorrent protocol\"")]
    HandshakePstr,
    #[error("message id {id} has length {received}, expected {expected}")]
    IncorrectLength {
        id: u8,
        expected: u32,
        received: u32,
    },
    #[error("message id {id} has length {received}, at least {min} expected")]
    MessageTooShort { id: u8, min: u32, received: u32 },
    #[error("message id {id} has length {received}, more than the limit of {max}")]
    MessageTooLong { id: u8, max: u32, received: u32 },
    #[error("message id {id} asks for a block of {length} bytes (1 to {MAX_BLOCK_LEN} allowed)")]
    BadBlockLength { id: u8, length: u32 },
    #[error("extended handshake is not valid bencode: {0}")]
    ExtendedHandshakeBencode(#[source] bencode::DecodeError),
    #[error("extended handshake field {field:?} {problem}")]
    ExtendedHandshakeField {
        field: &'static str,
        problem: &'static str,
    },
    // Checks against the torrent's geometry (Message::validate).
    #[error("message id {id} names piece {index}, but the torrent has {piece_count} pieces")]
    PieceIndexOutOfRange {
        id: u8,
        index: u32,
        piece_count: u32,
    },
    #[error(
        "message id {id} names bytes {begin}..{begin}+{length} of piece {index}, which has {piece_len} bytes"
    )]
    BlockOutOfRange {
        id: u8,
        index: u32,
        begin: u32,
        length: u32,
        piece_len: u32,
    },
    #[error("bitfield has {received} bytes, expected {expected}")]
    BitfieldLength { expected: u32, received: u32 },
    #[error("bitfield has spare bits set after the last piece")]
    BitfieldSpareBits,
}
