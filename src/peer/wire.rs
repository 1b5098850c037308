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
//! - a bitfield, an extended message and an unknown id are bounded by [`Limits`], so the
//!   largest frame a peer may send is known in advance ([`Limits::max_frame_len`]) and a
//!   connection's read buffer has a fixed size.
//!
//! What needs the torrent (a piece index below the piece count, a block inside its piece, a
//! bitfield of exactly the right length with zero spare bits) is a separate step,
//! [`Message::validate`], that takes the torrent's [`Geometry`].

use std::borrow::Cow;
use std::fmt;

use crate::bencode::{self, Dict, Value};
use crate::metainfo;
use crate::peer::bitfield::Bitfield;
use crate::types::{InfoHash, PeerId};

/// The largest block a request may ask for and a piece message may carry (16 KiB). Equal to
/// `crypto::content::BLOCK_LEN`, the cipher's block, so that a block on the wire is one
/// keystream block.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024;

/// The protocol string of the handshake.
pub const PSTR: &[u8; 19] = b"BitTorrent protocol";
/// Length of the handshake: pstrlen, pstr, 8 reserved bytes, info hash, peer id.
pub const HANDSHAKE_LEN: usize = 1 + 19 + 8 + 20 + 20;
/// Bytes in front of a block in a piece message: length prefix (4), id (1), index (4), begin (4).
pub const PIECE_HEADER_LEN: usize = 13;
/// The length prefix of every message.
const PREFIX_LEN: usize = 4;

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
/// The extended message id of the BEP 10 handshake.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;

/// Largest length field of a piece message: id, index, begin and a full block.
const MAX_PIECE_MSG_LEN: u32 = 9 + MAX_BLOCK_LEN;
/// Largest length field of an extended message (id, extended id, payload). Room for a BEP 9
/// metadata piece (16 KiB plus its small dictionary); the handshake dictionary is far smaller.
pub const MAX_EXTENDED_MSG_LEN: u32 = MAX_BLOCK_LEN + 1024;
/// The piece count [`Limits::default`] accepts bitfields for: twice SPEC 5's default maximum
/// of 65,536 pieces.
pub const DEFAULT_MAX_PIECE_COUNT: u32 = 1 << 17;

/// What a decoded message may not exceed, before the torrent's geometry is known in detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of a bitfield payload (ceil(piece count / 8) for a known torrent).
    pub max_bitfield_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_piece_count(DEFAULT_MAX_PIECE_COUNT)
    }
}

impl Limits {
    /// The limits for a torrent of `piece_count` pieces: a bitfield may not be longer than
    /// that torrent's bitfield.
    pub fn for_piece_count(piece_count: u32) -> Self {
        Limits {
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

/// The 8 reserved bytes of the handshake: which extensions a peer supports.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// What ivcsd announces: BEP 6 fast (0x04 in byte 7) and BEP 10 extensions (0x10 in byte 5).
    pub const IVCSD: Reserved = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x04]);

    /// BEP 6: the fast extension.
    pub fn fast(self) -> bool {
        self.0[7] & 0x04 != 0
    }

    /// BEP 10: the extension protocol.
    pub fn extended(self) -> bool {
        self.0[5] & 0x10 != 0
    }
}

impl fmt::Debug for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Reserved({}, fast: {}, extended: {})",
            hex::encode(self.0),
            self.fast(),
            self.extended()
        )
    }
}

/// The BEP 3 handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: Reserved,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake for `info_hash`, announcing the extensions ivcsd supports.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Handshake {
            reserved: Reserved::IVCSD,
            info_hash,
            peer_id,
        }
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PSTR.len() as u8;
        out[1..20].copy_from_slice(PSTR);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(self.info_hash.as_bytes());
        out[48..68].copy_from_slice(self.peer_id.as_bytes());
        out
    }

    /// Decodes a handshake from the start of `buf`. `Ok(None)`: fewer than 68 bytes so far and
    /// nothing wrong with them yet; a wrong protocol string is reported as soon as its first
    /// wrong byte is in, so garbage is refused without waiting for 68 bytes.
    ///
    /// # Errors
    /// [`WireError::HandshakePstrLen`], [`WireError::HandshakePstr`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Handshake, usize)>, WireError> {
        let Some(&pstrlen) = buf.first() else {
            return Ok(None);
        };
        if usize::from(pstrlen) != PSTR.len() {
            return Err(WireError::HandshakePstrLen { found: pstrlen });
        }
        let pstr_seen = &buf[1..buf.len().min(20)];
        if pstr_seen != &PSTR[..pstr_seen.len()] {
            return Err(WireError::HandshakePstr);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let handshake = Handshake {
            reserved: Reserved(reserved),
            // Both slices are exactly 20 bytes long: the length was checked above.
            info_hash: InfoHash(read_array(&buf[28..48])),
            peer_id: PeerId(read_array(&buf[48..68])),
        };
        Ok(Some((handshake, HANDSHAKE_LEN)))
    }
}

/// Copies a slice whose length the caller has checked into an array.
fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// A block of a piece: in request, cancel and reject-request messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// The BEP 10 extension handshake: the dictionary of extended message 0. Only the keys ivcsd
/// reads are kept; others are ignored, as BEP 10 asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake<'a> {
    /// `m`: extension name to the extended message id the sender wants to receive it under
    /// (0 means "disabled"), sorted by name.
    pub m: Vec<(Cow<'a, [u8]>, u8)>,
    /// `v`: the client's name and version; ours is `ivcsd/<version>`.
    pub v: Option<Cow<'a, [u8]>>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// `p`: the sender's listening port.
    pub p: Option<u16>,
}

impl<'a> ExtendedHandshake<'a> {
    /// Ours: no extension messages yet, `v` = `ivcsd/<version>`, our `reqq` and port.
    pub fn ivcsd(reqq: u32, listen_port: Option<u16>) -> ExtendedHandshake<'static> {
        ExtendedHandshake {
            m: Vec::new(),
            v: Some(Cow::Borrowed(CLIENT_VERSION.as_bytes())),
            reqq: Some(reqq),
            p: listen_port,
        }
    }

    /// Copies borrowed bytes so the handshake outlives the read buffer.
    pub fn into_owned(self) -> ExtendedHandshake<'static> {
        ExtendedHandshake {
            m: self
                .m
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v))
                .collect(),
            v: self.v.map(|v| Cow::Owned(v.into_owned())),
            reqq: self.reqq,
            p: self.p,
        }
    }

    fn to_value(&self) -> Value<'_> {
        let mut m = Dict::new();
        for (name, id) in &self.m {
            m.insert(name.as_ref(), Value::from(u32::from(*id)));
        }
        let mut d = Dict::new();
        d.insert(&b"m"[..], Value::Dict(m));
        if let Some(v) = &self.v {
            d.insert(&b"v"[..], Value::from(v.as_ref()));
        }
        if let Some(reqq) = self.reqq {
            d.insert(&b"reqq"[..], Value::from(reqq));
        }
        if let Some(p) = self.p {
            d.insert(&b"p"[..], Value::from(u32::from(p)));
        }
        Value::Dict(d)
    }

    /// Parses the dictionary. Strict about the types of the keys it reads (a wrong type is a
    /// broken peer), silent about keys it does not know.
    fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        // The payload is at most MAX_EXTENDED_MSG_LEN bytes; these limits keep the value
        // count (and so the allocation) small whatever a peer puts in it.
        let limits = bencode::Limits {
            max_depth: 4,
            max_values: 1024,
        };
        let value =
            bencode::decode_with(payload, limits).map_err(WireError::ExtendedHandshakeBencode)?;
        let field = |field, problem| WireError::ExtendedHandshakeField { field, problem };
        let dict = value.as_dict().ok_or(field("", "is not a dictionary"))?;
        let mut hs = ExtendedHandshake::default();
        if let Some(m) = dict.get(b"m") {
            let m = m.as_dict().ok_or(field("m", "is not a dictionary"))?;
            for (name, id) in m.iter() {
                let id = id
                    .as_int()
                    .and_then(|i| u8::try_from(i).ok())
                    .ok_or(field("m", "has an id that is not an integer from 0 to 255"))?;
                hs.m.push((Cow::Owned(name.to_vec()), id));
            }
        }
        if let Some(v) = dict.get(b"v") {
            let v = v.as_bytes().ok_or(field("v", "is not a string"))?;
            hs.v = Some(Cow::Owned(v.to_vec()));
        }
        if let Some(reqq) = dict.get(b"reqq") {
            let reqq = reqq
                .as_int()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or(field("reqq", "is not a non-negative 32-bit integer"))?;
            hs.reqq = Some(reqq);
        }
        if let Some(p) = dict.get(b"p") {
            let p = p
                .as_int()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or(field("p", "is not a port number"))?;
            hs.p = Some(p);
        }
        Ok(hs)
    }
}

/// `ivcsd/<version>`: the `v` of our extension handshake (SPEC 7).
pub const CLIENT_VERSION: &str = concat!("ivcsd/", env!("CARGO_PKG_VERSION"));

/// An extended message (BEP 10, id 20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended<'a> {
    /// Extended id 0.
    Handshake(ExtendedHandshake<'a>),
    /// Any other extended id: a message of an extension the sender believes we enabled.
    Other { id: u8, payload: &'a [u8] },
}

/// One peer wire message. Payloads borrow from the buffer they were decoded from.
#[derive(Clone, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        index: u32,
    },
    /// The raw bitfield (high bit of the first byte is piece 0); its length and spare bits
    /// are checked by [`Message::validate`].
    Bitfield(&'a [u8]),
    Request(BlockRequest),
    /// A block; `block` borrows from the decoded buffer.
    Piece {
        index: u32,
        begin: u32,
        block: &'a [u8],
    },
    Cancel(BlockRequest),
    /// The sender's DHT port (BEP 5); private torrents do not use it.
    Port(u16),
    SuggestPiece {
        index: u32,
    },
    HaveAll,
    HaveNone,
    RejectRequest(BlockRequest),
    AllowedFast {
        index: u32,
    },
    Extended(Extended<'a>),
    /// An id this codec does not know, of a plausible length: BEP 3 says to ignore it.
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::KeepAlive => f.write_str("KeepAlive"),
            Message::Choke => f.write_str("Choke"),
            Message::Unchoke => f.write_str("Unchoke"),
            Message::Interested => f.write_str("Interested"),
            Message::NotInterested => f.write_str("NotInterested"),
            Message::Have { index } => write!(f, "Have({index})"),
            Message::Bitfield(b) => write!(f, "Bitfield(<{} bytes>)", b.len()),
            Message::Request(r) => write!(f, "Request({r:?})"),
            Message::Piece {
                index,
                begin,
                block,
            } => write!(
                f,
                "Piece {{ index: {index}, begin: {begin}, block: <{} bytes> }}",
                block.len()
            ),
            Message::Cancel(r) => write!(f, "Cancel({r:?})"),
            Message::Port(p) => write!(f, "Port({p})"),
            Message::SuggestPiece { index } => write!(f, "SuggestPiece({index})"),
            Message::HaveAll => f.write_str("HaveAll"),
            Message::HaveNone => f.write_str("HaveNone"),
            Message::RejectRequest(r) => write!(f, "RejectRequest({r:?})"),
            Message::AllowedFast { index } => write!(f, "AllowedFast({index})"),
            Message::Extended(Extended::Handshake(h)) => write!(f, "ExtendedHandshake({h:?})"),
            Message::Extended(Extended::Other { id, payload }) => {
                write!(
                    f,
                    "Extended {{ id: {id}, payload: <{} bytes> }}",
                    payload.len()
                )
            }
            Message::Unknown { id, payload } => {
                write!(
                    f,
                    "Unknown {{ id: {id}, payload: <{} bytes> }}",
                    payload.len()
                )
            }
        }
    }
}

/// Decodes one message from the start of `buf` with the default [`Limits`].
///
/// Returns `Ok(None)` when `buf` does not hold a whole message yet (read more and call again),
/// or the message and the number of bytes it took.
///
/// # Errors
/// A [`WireError`] when the bytes cannot be a valid message: a wrong length for the id, a block
/// over 16 KiB, a request for 0 bytes, a message over the limits. The length prefix is checked
/// before the rest of the message is awaited, so an absurd length is refused at once.
pub fn decode(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, WireError> {
    decode_with(buf, &Limits::default())
}

/// [`decode`] with explicit limits (for a torrent whose bitfield is larger than the default).
///
/// # Errors
/// As [`decode`].
pub fn decode_with<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Message<'a>, usize)>, WireError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let len = read_u32(prefix);
    if len == 0 {
        return Ok(Some((Message::KeepAlive, PREFIX_LEN)));
    }
    let Some(&id) = buf.get(PREFIX_LEN) else {
        return Ok(None);
    };
    check_length(id, len, limits)?;
    // `len` is at most Limits::max_message_len, far below usize::MAX.
    let total = PREFIX_LEN + len as usize;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let payload = &frame[PREFIX_LEN + 1..];
    let message = parse_payload(id, payload)?;
    Ok(Some((message, total)))
}

/// Checks a message's length field against its id, before its payload is awaited.
fn check_length(id: u8, len: u32, limits: &Limits) -> Result<(), WireError> {
    let exact = |expected: u32| {
        if len == expected {
            Ok(())
        } else {
            Err(WireError::IncorrectLength {
                id,
                expected,
                received: len,
            })
        }
    };
    let between = |min: u32, max: u32| {
        if len < min {
            Err(WireError::MessageTooShort {
                id,
                min,
                received: len,
            })
        } else if len > max {
            Err(WireError::MessageTooLong {
                id,
                max,
                received: len,
            })
        } else {
            Ok(())
        }
    };
    match id {
        MSGID_CHOKE | MSGID_UNCHOKE | MSGID_INTERESTED | MSGID_NOT_INTERESTED | MSGID_HAVE_ALL
        | MSGID_HAVE_NONE => exact(1),
        MSGID_HAVE | MSGID_SUGGEST_PIECE | MSGID_ALLOWED_FAST => exact(5),
        MSGID_REQUEST | MSGID_CANCEL | MSGID_REJECT_REQUEST => exact(13),
        MSGID_PORT => exact(3),
        // A piece carries at least one byte of block.
        MSGID_PIECE => between(10, MAX_PIECE_MSG_LEN),
        // An empty bitfield (a torrent of no pieces) does not exist.
        MSGID_BITFIELD => between(2, limits.max_bitfield_len.saturating_add(1)),
        MSGID_EXTENDED => between(2, MAX_EXTENDED_MSG_LEN),
        _ => between(1, limits.max_message_len()),
    }
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses a payload whose length `check_length` accepted for its id.
fn parse_payload(id: u8, payload: &[u8]) -> Result<Message<'_>, WireError> {
    let u32_at = |at: usize| read_u32(&payload[at..at + 4]);
    let block_request = || {
        let request = BlockRequest {
            index: u32_at(0),
            begin: u32_at(4),
            length: u32_at(8),
        };
        if request.length == 0 || request.length > MAX_BLOCK_LEN {
            return Err(WireError::BadBlockLength {
                id,
                length: request.length,
            });
        }
        Ok(request)
    };
    Ok(match id {
        MSGID_CHOKE => Message::Choke,
        MSGID_UNCHOKE => Message::Unchoke,
        MSGID_INTERESTED => Message::Interested,
        MSGID_NOT_INTERESTED => Message::NotInterested,
        MSGID_HAVE => Message::Have { index: u32_at(0) },
        MSGID_BITFIELD => Message::Bitfield(payload),
        MSGID_REQUEST => Message::Request(block_request()?),
        MSGID_PIECE => Message::Piece {
            index: u32_at(0),
            begin: u32_at(4),
            block: &payload[8..],
        },
        MSGID_CANCEL => Message::Cancel(block_request()?),
        MSGID_PORT => Message::Port(u16::from_be_bytes([payload[0], payload[1]])),
        MSGID_SUGGEST_PIECE => Message::SuggestPiece { index: u32_at(0) },
        MSGID_HAVE_ALL => Message::HaveAll,
        MSGID_HAVE_NONE => Message::HaveNone,
        MSGID_REJECT_REQUEST => Message::RejectRequest(block_request()?),
        MSGID_ALLOWED_FAST => Message::AllowedFast { index: u32_at(0) },
        MSGID_EXTENDED => {
            let ext_id = payload[0];
            let ext_payload = &payload[1..];
            if ext_id == EXTENDED_HANDSHAKE_ID {
                Message::Extended(Extended::Handshake(ExtendedHandshake::parse(ext_payload)?))
            } else {
                Message::Extended(Extended::Other {
                    id: ext_id,
                    payload: ext_payload,
                })
            }
        }
        _ => Message::Unknown { id, payload },
    })
}

/// The 13 bytes that precede a block in a piece message: write them, then read the block
/// from storage straight into the send buffer after them (no copy of the block).
pub fn encode_piece_header(index: u32, begin: u32, block_len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut out = [0u8; PIECE_HEADER_LEN];
    out[0..4].copy_from_slice(&(9 + block_len).to_be_bytes());
    out[4] = MSGID_PIECE;
    out[5..9].copy_from_slice(&index.to_be_bytes());
    out[9..13].copy_from_slice(&begin.to_be_bytes());
    out
}

impl Message<'_> {
    /// The message id, `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => MSGID_CHOKE,
            Message::Unchoke => MSGID_UNCHOKE,
            Message::Interested => MSGID_INTERESTED,
            Message::NotInterested => MSGID_NOT_INTERESTED,
            Message::Have { .. } => MSGID_HAVE,
            Message::Bitfield(_) => MSGID_BITFIELD,
            Message::Request(_) => MSGID_REQUEST,
            Message::Piece { .. } => MSGID_PIECE,
            Message::Cancel(_) => MSGID_CANCEL,
            Message::Port(_) => MSGID_PORT,
            Message::SuggestPiece { .. } => MSGID_SUGGEST_PIECE,
            Message::HaveAll => MSGID_HAVE_ALL,
            Message::HaveNone => MSGID_HAVE_NONE,
            Message::RejectRequest(_) => MSGID_REJECT_REQUEST,
            Message::AllowedFast { .. } => MSGID_ALLOWED_FAST,
            Message::Extended(_) => MSGID_EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// Appends the message, length prefix included, to `out`. Allocates only when `out`
    /// must grow (and for the extension handshake's dictionary).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; PREFIX_LEN]);
        if let Some(id) = self.id() {
            out.push(id);
        }
        let request = |out: &mut Vec<u8>, r: &BlockRequest| {
            out.extend_from_slice(&r.index.to_be_bytes());
            out.extend_from_slice(&r.begin.to_be_bytes());
            out.extend_from_slice(&r.length.to_be_bytes());
        };
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have { index }
            | Message::SuggestPiece { index }
            | Message::AllowedFast { index } => out.extend_from_slice(&index.to_be_bytes()),
            Message::Bitfield(bits) => out.extend_from_slice(bits),
            Message::Request(r) | Message::Cancel(r) | Message::RejectRequest(r) => request(out, r),
            Message::Piece {
                index,
                begin,
                block,
            } => {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&begin.to_be_bytes());
                out.extend_from_slice(block);
            }
            Message::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Message::Extended(Extended::Handshake(h)) => {
                out.push(EXTENDED_HANDSHAKE_ID);
                h.to_value().encode_into(out);
            }
            Message::Extended(Extended::Other { id, payload }) => {
                out.push(*id);
                out.extend_from_slice(payload);
            }
            Message::Unknown { payload, .. } => out.extend_from_slice(payload),
        }
        // A message we build is far below 4 GiB; saturate rather than wrap if not.
        let len = u32::try_from(out.len() - start - PREFIX_LEN).unwrap_or(u32::MAX);
        out[start..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// The encoded message in a new buffer (tests and rare messages; prefer `encode_into`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

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
                .piece_len(index)
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
            Message::Bitfield(bits) => geometry.check_bitfield(bits),
            _ => Ok(()),
        }
    }
}

/// The shape of a torrent that wire messages are checked against: the metainfo's
/// [`metainfo::Geometry`] (power-of-two pieces of 16 KiB to 256 MiB, at least one byte, at
/// most 2^32 - 1 pieces) seen with the `u32` piece indices of the wire, which it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry(metainfo::Geometry);

pub use crate::metainfo::GeometryError;

impl From<metainfo::Geometry> for Geometry {
    fn from(geometry: metainfo::Geometry) -> Self {
        Geometry(geometry)
    }
}

impl Geometry {
    /// # Errors
    /// As [`metainfo::Geometry::new`]: a piece length that is not a power of two from 16 KiB
    /// to 256 MiB, an empty torrent, or more than 2^32 - 1 pieces.
    pub fn new(piece_length: u64, total_length: u64) -> Result<Geometry, GeometryError> {
        metainfo::Geometry::new(piece_length, total_length).map(Geometry)
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
    pub fn limits(&self) -> Limits {
        Limits::for_piece_count(self.piece_count())
    }

    /// Checks a bitfield's length and that its spare bits are zero.
    ///
    /// # Errors
    /// [`WireError::BitfieldLength`], [`WireError::BitfieldSpareBits`].
    pub fn check_bitfield(&self, bits: &[u8]) -> Result<(), WireError> {
        let pieces = self.piece_count();
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
}

/// Four version digits for the peer id prefix: major, minor, patch, 0.
const fn version_digit(s: &str) -> u8 {
    let b = s.as_bytes();
    assert!(
        b.len() == 1 && b[0].is_ascii_digit(),
        "the peer id holds one digit per version part"
    );
    b[0]
}

/// `-IV` + 4 version digits + `-` (SPEC 7), e.g. `-IV0100-` for version 0.1.0.
pub const PEER_ID_PREFIX: [u8; 8] = [
    b'-',
    b'I',
    b'V',
    version_digit(env!("CARGO_PKG_VERSION_MAJOR")),
    version_digit(env!("CARGO_PKG_VERSION_MINOR")),
    version_digit(env!("CARGO_PKG_VERSION_PATCH")),
    b'0',
    b'-',
];

/// A fresh peer id: [`PEER_ID_PREFIX`] and 12 random bytes.
pub fn generate_peer_id() -> PeerId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&PEER_ID_PREFIX);
    rand::fill(&mut id[8..]);
    PeerId(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bytes_in_equals_the_sum_of_the_pieces_held(
            pieces in 1u32..40,
            short_by in 0u64..16384,
            held in proptest::collection::vec(any::<bool>(), 40),
        ) {
            let total = u64::from(pieces) * 16384 - short_by;
            let geometry = Geometry::new(16384, total).unwrap();
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

    fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(id);
        v.extend_from_slice(payload);
        v
    }

    fn len_only(len: u32, id: u8) -> Vec<u8> {
        let mut v = len.to_be_bytes().to_vec();
        v.push(id);
        v
    }

    /// One line per malformed input: the bytes and the exact error.
    macro_rules! malformed {
        ($name:ident, $input:expr, $err:expr) => {
            #[test]
            fn $name() {
                assert_eq!(decode(&$input), Err($err));
            }
        };
    }

    malformed!(
        choke_with_payload,
        frame(MSGID_CHOKE, &[0]),
        WireError::IncorrectLength {
            id: 0,
            expected: 1,
            received: 2
        }
    );
    malformed!(
        unchoke_with_payload,
        frame(MSGID_UNCHOKE, &[0, 0]),
        WireError::IncorrectLength {
            id: 1,
            expected: 1,
            received: 3
        }
    );
    malformed!(
        interested_with_payload,
        frame(MSGID_INTERESTED, &[1]),
        WireError::IncorrectLength {
            id: 2,
            expected: 1,
            received: 2
        }
    );
    malformed!(
        not_interested_with_payload,
        frame(MSGID_NOT_INTERESTED, &[1]),
        WireError::IncorrectLength {
            id: 3,
            expected: 1,
            received: 2
        }
    );
    malformed!(
        have_short,
        frame(MSGID_HAVE, &[0, 0, 1]),
        WireError::IncorrectLength {
            id: 4,
            expected: 5,
            received: 4
        }
    );
    malformed!(
        have_long,
        frame(MSGID_HAVE, &[0, 0, 0, 0, 1]),
        WireError::IncorrectLength {
            id: 4,
            expected: 5,
            received: 6
        }
    );
    malformed!(
        request_short,
        frame(MSGID_REQUEST, &[0; 8]),
        WireError::IncorrectLength {
            id: 6,
            expected: 13,
            received: 9
        }
    );
    malformed!(
        request_zero_length,
        frame(MSGID_REQUEST, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        WireError::BadBlockLength { id: 6, length: 0 }
    );
    malformed!(
        request_over_16k,
        frame(MSGID_REQUEST, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 1]),
        WireError::BadBlockLength {
            id: 6,
            length: 16385
        }
    );
    malformed!(
        cancel_over_16k,
        frame(MSGID_CANCEL, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]),
        WireError::BadBlockLength {
            id: 8,
            length: 65536
        }
    );
    malformed!(
        reject_zero_length,
        frame(MSGID_REJECT_REQUEST, &[0; 12]),
        WireError::BadBlockLength { id: 16, length: 0 }
    );
    malformed!(
        cancel_long,
        frame(MSGID_CANCEL, &[0; 13]),
        WireError::IncorrectLength {
            id: 8,
            expected: 13,
            received: 14
        }
    );
    // Refused from the 5 bytes of prefix and id, without waiting for the 16 KiB + 10 bytes.
    malformed!(
        piece_over_16k,
        len_only(MAX_PIECE_MSG_LEN + 1, MSGID_PIECE),
        WireError::MessageTooLong {
            id: 7,
            max: 16393,
            received: 16394
        }
    );
    malformed!(
        piece_without_block,
        frame(MSGID_PIECE, &[0; 8]),
        WireError::MessageTooShort {
            id: 7,
            min: 10,
            received: 9
        }
    );
    malformed!(
        piece_without_header,
        frame(MSGID_PIECE, &[0; 3]),
        WireError::MessageTooShort {
            id: 7,
            min: 10,
            received: 4
        }
    );
    malformed!(
        bitfield_empty,
        frame(MSGID_BITFIELD, &[]),
        WireError::MessageTooShort {
            id: 5,
            min: 2,
            received: 1
        }
    );
    malformed!(
        bitfield_over_limit,
        len_only(1 + DEFAULT_MAX_PIECE_COUNT / 8 + 1, MSGID_BITFIELD),
        WireError::MessageTooLong {
            id: 5,
            max: 16385,
            received: 16386
        }
    );
    malformed!(
        port_short,
        frame(MSGID_PORT, &[1]),
        WireError::IncorrectLength {
            id: 9,
            expected: 3,
            received: 2
        }
    );
    malformed!(
        suggest_long,
        frame(MSGID_SUGGEST_PIECE, &[0; 5]),
        WireError::IncorrectLength {
            id: 13,
            expected: 5,
            received: 6
        }
    );
    malformed!(
        have_all_with_payload,
        frame(MSGID_HAVE_ALL, &[0]),
        WireError::IncorrectLength {
            id: 14,
            expected: 1,
            received: 2
        }
    );
    malformed!(
        have_none_with_payload,
        frame(MSGID_HAVE_NONE, &[0]),
        WireError::IncorrectLength {
            id: 15,
            expected: 1,
            received: 2
        }
    );
    malformed!(
        reject_short,
        frame(MSGID_REJECT_REQUEST, &[0; 4]),
        WireError::IncorrectLength {
            id: 16,
            expected: 13,
            received: 5
        }
    );
    malformed!(
        allowed_fast_short,
        frame(MSGID_ALLOWED_FAST, &[]),
        WireError::IncorrectLength {
            id: 17,
            expected: 5,
            received: 1
        }
    );
    malformed!(
        extended_without_id,
        frame(MSGID_EXTENDED, &[]),
        WireError::MessageTooShort {
            id: 20,
            min: 2,
            received: 1
        }
    );
    malformed!(
        extended_over_limit,
        len_only(MAX_EXTENDED_MSG_LEN + 1, MSGID_EXTENDED),
        WireError::MessageTooLong {
            id: 20,
            max: 17408,
            received: 17409
        }
    );
    malformed!(
        unknown_id_absurd_length,
        len_only(0xffff_fff0, 99),
        WireError::MessageTooLong {
            id: 99,
            max: 17408,
            received: 0xffff_fff0
        }
    );
    malformed!(
        extended_handshake_not_bencode,
        frame(MSGID_EXTENDED, b"\x00not bencode"),
        WireError::ExtendedHandshakeBencode(bencode::DecodeError {
            offset: 0,
            kind: bencode::ErrorKind::UnexpectedByte {
                found: b'n',
                expected: "'i', 'l', 'd' or a digit"
            }
        })
    );
    malformed!(
        extended_handshake_not_dict,
        frame(MSGID_EXTENDED, b"\x00i1e"),
        WireError::ExtendedHandshakeField {
            field: "",
            problem: "is not a dictionary"
        }
    );
    malformed!(
        extended_handshake_m_not_dict,
        frame(MSGID_EXTENDED, b"\x00d1:mi1ee"),
        WireError::ExtendedHandshakeField {
            field: "m",
            problem: "is not a dictionary"
        }
    );
    malformed!(
        extended_handshake_m_id_too_big,
        frame(MSGID_EXTENDED, b"\x00d1:md6:ut_foxi256eee"),
        WireError::ExtendedHandshakeField {
            field: "m",
            problem: "has an id that is not an integer from 0 to 255"
        }
    );
    malformed!(
        extended_handshake_reqq_negative,
        frame(MSGID_EXTENDED, b"\x00d4:reqqi-1ee"),
        WireError::ExtendedHandshakeField {
            field: "reqq",
            problem: "is not a non-negative 32-bit integer"
        }
    );
    malformed!(
        extended_handshake_port_too_big,
        frame(MSGID_EXTENDED, b"\x00d1:pi65536ee"),
        WireError::ExtendedHandshakeField {
            field: "p",
            problem: "is not a port number"
        }
    );
    malformed!(
        extended_handshake_v_not_string,
        frame(MSGID_EXTENDED, b"\x00d1:vi1ee"),
        WireError::ExtendedHandshakeField {
            field: "v",
            problem: "is not a string"
        }
    );
    malformed!(
        extended_handshake_too_deep,
        frame(MSGID_EXTENDED, b"\x00d1:xlllleeeee"),
        WireError::ExtendedHandshakeBencode(bencode::DecodeError {
            offset: 7,
            kind: bencode::ErrorKind::TooDeep { max: 4 }
        })
    );

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

    #[test]
    fn geometry_rejects_nonsense() {
        assert_eq!(Geometry::new(0, 1), Err(GeometryError::PieceLength(0)));
        assert_eq!(
            Geometry::new(1 << 29, 1),
            Err(GeometryError::PieceLengthTooLarge(1 << 29))
        );
        assert_eq!(Geometry::new(16384, 0), Err(GeometryError::Empty));
        assert!(matches!(
            Geometry::new(16384, u64::MAX),
            Err(GeometryError::TooManyPieces { .. })
        ));
        let g = Geometry::new(16384, 16384 * 2).unwrap();
        assert_eq!(g.piece_count(), 2);
        assert_eq!(g.piece_len(1), Some(16384));
        assert_eq!(g.piece_len(2), None);
    }

    /// Reference bytes of BEP 3 and BEP 6 messages.
    #[test]
    fn reference_bytes() {
        let cases: &[(Message<'_>, &[u8])] = &[
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Choke, &[0, 0, 0, 1, 0]),
            (
                Message::Have { index: 0x0102 },
                &[0, 0, 0, 5, 4, 0, 0, 1, 2],
            ),
            (Message::Bitfield(&[0xa0]), &[0, 0, 0, 2, 5, 0xa0]),
            (
                Message::Request(BlockRequest {
                    index: 1,
                    begin: 0x4000,
                    length: 0x4000,
                }),
                &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 3,
                    block: b"ab",
                },
                &[0, 0, 0, 11, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b'],
            ),
            (Message::Port(6881), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::HaveAll, &[0, 0, 0, 1, 0x0e]),
            (
                Message::AllowedFast { index: 7 },
                &[0, 0, 0, 5, 0x11, 0, 0, 0, 7],
            ),
        ];
        for (message, bytes) in cases {
            assert_eq!(&message.encode(), bytes, "{message:?}");
            assert_eq!(decode(bytes).unwrap(), Some((message.clone(), bytes.len())));
        }
    }

    #[test]
    fn piece_header_matches_piece_message() {
        let block = [9u8; 100];
        let full = Message::Piece {
            index: 5,
            begin: 16384,
            block: &block,
        }
        .encode();
        let header = encode_piece_header(5, 16384, 100);
        assert_eq!(&full[..PIECE_HEADER_LEN], &header);
        assert_eq!(&full[PIECE_HEADER_LEN..], &block);
    }

    #[test]
    fn piece_borrows_its_block() {
        let bytes = Message::Piece {
            index: 0,
            begin: 0,
            block: &[1, 2, 3],
        }
        .encode();
        let Some((Message::Piece { block, .. }, _)) = decode(&bytes).unwrap() else {
            panic!("not a piece");
        };
        assert!(std::ptr::eq(
            block.as_ptr(),
            bytes[PIECE_HEADER_LEN..].as_ptr()
        ));
    }

    #[test]
    fn extended_handshake_reference() {
        let ours = Message::Extended(Extended::Handshake(ExtendedHandshake::ivcsd(
            250,
            Some(6881),
        )));
        let bytes = ours.encode();
        let dict = format!(
            "d1:mde1:pi6881e4:reqqi250e1:v{}:{}e",
            CLIENT_VERSION.len(),
            CLIENT_VERSION
        );
        assert_eq!(&bytes[6..], dict.as_bytes());
        assert_eq!(decode(&bytes).unwrap(), Some((ours, bytes.len())));
        // A typical stock client's dictionary: unknown keys are ignored.
        let theirs = frame(
            MSGID_EXTENDED,
            b"\x00d1:md11:ut_metadatai2e6:ut_pexi0ee13:metadata_sizei100e1:pi51413e4:reqqi500e1:v13:qBittorrent/4e",
        );
        let Some((Message::Extended(Extended::Handshake(h)), _)) = decode(&theirs).unwrap() else {
            panic!("not a handshake");
        };
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.p, Some(51413));
        assert_eq!(h.v.as_deref(), Some(&b"qBittorrent/4"[..]));
        assert_eq!(
            h.m,
            vec![
                (Cow::Borrowed(&b"ut_metadata"[..]), 2),
                (Cow::Borrowed(&b"ut_pex"[..]), 0)
            ]
        );
    }

    #[test]
    fn unknown_ids_of_plausible_length_are_passed_on() {
        let bytes = frame(42, b"xyz");
        assert_eq!(
            decode(&bytes).unwrap(),
            Some((
                Message::Unknown {
                    id: 42,
                    payload: b"xyz"
                },
                8
            ))
        );
    }

    #[test]
    fn incomplete_input_needs_more() {
        let bytes = Message::Have { index: 3 }.encode();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn larger_torrents_get_larger_bitfield_limits() {
        let geometry = Geometry::new(16384, 16384 * 1_000_000).unwrap();
        let limits = geometry.limits();
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
            Limits::default().max_frame_len(),
            4 + MAX_EXTENDED_MSG_LEN as usize
        );
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let limits = Limits {
            max_bitfield_len: u32::MAX,
        };
        assert_eq!(limits.max_message_len(), u32::MAX);
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.push(MSGID_BITFIELD);
        assert_eq!(decode_with(&bytes, &limits), Ok(None));
    }

    #[test]
    fn handshake_round_trip_and_errors() {
        let ours = Handshake::new(InfoHash([7; 20]), generate_peer_id());
        let bytes = ours.encode();
        assert!(ours.reserved.fast() && ours.reserved.extended());
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x04);
        assert_eq!(Handshake::decode(&bytes), Ok(Some((ours, HANDSHAKE_LEN))));
        for cut in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::decode(&bytes[..cut]), Ok(None));
        }
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1\r\n"),
            Err(WireError::HandshakePstrLen { found: b'G' })
        );
        // The wrong byte is seen before 68 bytes are in.
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent protocoX"),
            Err(WireError::HandshakePstr)
        );
        assert_eq!(Handshake::decode(b"\x13Bad"), Err(WireError::HandshakePstr));
        let plain = Reserved([0; 8]);
        assert!(!plain.fast() && !plain.extended());
    }

    #[test]
    fn peer_ids_follow_spec() {
        let id = generate_peer_id();
        assert_eq!(&id.0[..3], b"-IV");
        assert!(id.0[3..7].iter().all(u8::is_ascii_digit));
        assert_eq!(id.0[7], b'-');
        assert_ne!(generate_peer_id(), id, "12 random bytes");
    }

    /// Owned data from which a test builds a borrowed [`Message`].
    #[derive(Debug, Clone)]
    enum Spec {
        Simple(u8),
        Index(u8, u32),
        Block(u8, u32, u32, u32),
        Bitfield(Vec<u8>),
        Piece(u32, u32, Vec<u8>),
        Port(u16),
        ExtHandshake(
            Vec<(Vec<u8>, u8)>,
            Option<Vec<u8>>,
            Option<u32>,
            Option<u16>,
        ),
        ExtOther(u8, Vec<u8>),
        Unknown(u8, Vec<u8>),
    }

    impl Spec {
        fn message(&self) -> Message<'_> {
            match self {
                Spec::Simple(0) => Message::KeepAlive,
                Spec::Simple(1) => Message::Choke,
                Spec::Simple(2) => Message::Unchoke,
                Spec::Simple(3) => Message::Interested,
                Spec::Simple(4) => Message::NotInterested,
                Spec::Simple(5) => Message::HaveAll,
                Spec::Simple(_) => Message::HaveNone,
                Spec::Index(0, index) => Message::Have { index: *index },
                Spec::Index(1, index) => Message::SuggestPiece { index: *index },
                Spec::Index(_, index) => Message::AllowedFast { index: *index },
                Spec::Block(kind, index, begin, length) => {
                    let r = BlockRequest {
                        index: *index,
                        begin: *begin,
                        length: *length,
                    };
                    match kind {
                        0 => Message::Request(r),
                        1 => Message::Cancel(r),
                        _ => Message::RejectRequest(r),
                    }
                }
                Spec::Bitfield(b) => Message::Bitfield(b),
                Spec::Piece(index, begin, block) => Message::Piece {
                    index: *index,
                    begin: *begin,
                    block,
                },
                Spec::Port(p) => Message::Port(*p),
                Spec::ExtHandshake(m, v, reqq, p) => {
                    Message::Extended(Extended::Handshake(ExtendedHandshake {
                        m: m.iter().map(|(k, v)| (Cow::Borrowed(&k[..]), *v)).collect(),
                        v: v.as_deref().map(Cow::Borrowed),
                        reqq: *reqq,
                        p: *p,
                    }))
                }
                Spec::ExtOther(id, payload) => {
                    Message::Extended(Extended::Other { id: *id, payload })
                }
                Spec::Unknown(id, payload) => Message::Unknown { id: *id, payload },
            }
        }
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        let bytes = |max| proptest::collection::vec(any::<u8>(), 1..max);
        prop_oneof![
            (0u8..7).prop_map(Spec::Simple),
            (0u8..3, any::<u32>()).prop_map(|(k, i)| Spec::Index(k, i)),
            (0u8..3, any::<u32>(), any::<u32>(), 1..=MAX_BLOCK_LEN)
                .prop_map(|(k, i, b, l)| Spec::Block(k, i, b, l)),
            bytes(200).prop_map(Spec::Bitfield),
            (
                any::<u32>(),
                any::<u32>(),
                bytes(MAX_BLOCK_LEN as usize + 1)
            )
                .prop_map(|(i, b, d)| Spec::Piece(i, b, d)),
            any::<u16>().prop_map(Spec::Port),
            (
                proptest::collection::btree_map(bytes(12), any::<u8>(), 0..5),
                proptest::option::of(bytes(30)),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u16>())
            )
                .prop_map(|(m, v, reqq, p)| Spec::ExtHandshake(
                    m.into_iter().collect(),
                    v,
                    reqq,
                    p
                )),
            (1u8.., bytes(100)).prop_map(|(id, p)| Spec::ExtOther(id, p)),
            (21u8.., proptest::collection::vec(any::<u8>(), 0..100))
                .prop_map(|(id, p)| Spec::Unknown(id, p)),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_message(spec in arb_spec()) {
            let message = spec.message();
            let bytes = message.encode();
            prop_assert_eq!(decode(&bytes), Ok(Some((message, bytes.len()))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut rest = &bytes[..];
            while let Ok(Some((message, used))) = decode(rest) {
                prop_assert!(used > 0 && used <= rest.len());
                let _ = message.validate(&Geometry::new(16384, 1 << 20).unwrap());
                rest = &rest[used..];
            }
            let _ = Handshake::decode(&bytes);
        }

        #[test]
        fn a_stream_split_anywhere_decodes_the_same(
            specs in proptest::collection::vec(arb_spec(), 1..8),
            cut_seed in any::<usize>(),
        ) {
            let mut stream = Vec::new();
            for spec in &specs {
                spec.message().encode_into(&mut stream);
            }
            let cut = cut_seed % (stream.len() + 1);
            // Feed the stream as a connection would: the bytes up to `cut` first, then the rest.
            let mut buffer = Vec::new();
            let mut decoded = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..]] {
                buffer.extend_from_slice(chunk);
                while let Some((message, used)) = decode(&buffer).unwrap() {
                    decoded.push(message.encode());
                    buffer.drain(..used);
                }
            }
            prop_assert!(buffer.is_empty());
            let expected: Vec<Vec<u8>> = specs.iter().map(|s| s.message().encode()).collect();
            prop_assert_eq!(decoded, expected);
        }
    }
}
