//! The BitTorrent peer wire protocol (BEP 3, with BEP 6 fast and BEP 10 extension messages)
//! as a pure codec: bytes in, [`Message`]s out, and back (docs/protocol.md section 7).
//!
//! This module does no I/O and never imports tokio: `connection.rs` owns the socket and the
//! read buffer and calls [`decode`] until it answers `Ok(None)` ("need more bytes").
//!
//! Remote input is bounded before anything is allocated or sliced:
//! - every message id with a fixed payload has an exact length ([`WireError::IncorrectLength`]);
//! - a piece message carries at most [`MAX_BLOCK_LEN`] bytes of block, so its whole frame is at
//!   most 16 KiB + 13 bytes; a request (and cancel, reject) asks for 1 to 16 KiB;
//! - a bitfield, an extended message and an unknown id are bounded by [`WireLimits`], so the
//!   largest frame a peer may send is known in advance ([`WireLimits::max_frame_len`]) and a
//!   connection's read buffer has a fixed size.
//!
//! What needs the torrent (a piece index below the piece count, a block inside its piece, a
//! bitfield of exactly the right length with zero spare bits) is a separate step,
//! [`Message::validate`], that takes the torrent's [`metainfo::Geometry`](crate::metainfo::Geometry).
//!
//! # Layout
//! - `handshake.rs`: the 68-byte BEP 3 handshake and its reserved bits.
//! - `message.rs`: the [`Message`] type and its encoding.
//! - `decode.rs`: framing and parsing, [`decode`] and [`decode_with`].
//! - `extension.rs`: the BEP 10 extension protocol (extended message 0, the handshake).
//! - `limits.rs`: [`WireLimits`], the largest frame a peer may send.
//! - `validate.rs`: the checks against the torrent, [`Message::validate`].
//! - `error.rs`: [`WireError`], one variant per way bytes can be wrong.
//!
//! The peer id and the peer's own view of a torrent's geometry are not wire matters: they
//! live in `peer/peer_id.rs` and `peer/geometry.rs`.

mod decode;
mod error;
mod extension;
mod handshake;
mod limits;
mod message;
mod validate;

#[cfg(test)]
mod test_frames;

pub use decode::{decode, decode_with};
pub use error::WireError;
pub use extension::{
    CLIENT_VERSION, EXTENDED_HANDSHAKE_ID, Extended, ExtendedHandshake, MAX_EXTENDED_MSG_LEN,
};
pub use handshake::{HANDSHAKE_LEN, Handshake, PSTR, Reserved};
pub use limits::{DEFAULT_MAX_PIECE_COUNT, WireLimits};
pub use message::{BlockRequest, Message, PIECE_HEADER_LEN, encode_piece_header};
pub use validate::check_bitfield;

/// The largest block a request may ask for and a piece message may carry (16 KiB). Equal to
/// `crypto::content::BLOCK_LEN`, the cipher's block, so that a block on the wire is one
/// keystream block.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024;

/// The length prefix of every message.
const PREFIX_LEN: usize = 4;

/// Largest length field of a piece message: id, index, begin and a full block.
const MAX_PIECE_MSG_LEN: u32 = 9 + MAX_BLOCK_LEN;

pub const MSGID_CHOKE: u8 = 0;
pub const MSGID_UNCHOKE: u8 = 1;
pub const MSGID_INTERESTED: u8 = 2;
pub const MSGID_NOT_INTERESTED: u8 = 3;
pub const MSGID_HAVE: u8 = 4;
pub const MSGID_BITFIELD: u8 = 5;
pub const MSGID_REQUEST: u8 = 6;
pub const MSGID_PIECE: u8 = 7;
pub const MSGID_CANCEL: u8 = 8;
pub const MSGID_PORT: u8 = 9;
pub const MSGID_SUGGEST_PIECE: u8 = 0x0d;
pub const MSGID_HAVE_ALL: u8 = 0x0e;
pub const MSGID_HAVE_NONE: u8 = 0x0f;
pub const MSGID_REJECT_REQUEST: u8 = 0x10;
pub const MSGID_ALLOWED_FAST: u8 = 0x11;
pub const MSGID_EXTENDED: u8 = 20;
