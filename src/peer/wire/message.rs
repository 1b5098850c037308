//! The peer wire messages: the [`Message`] type, borrowing its payloads from the buffer it was
//! decoded from, and its encoding (BEP 3, BEP 6 and the BEP 10 envelope; docs/protocol.md
//! section 7). Decoding is in `decode.rs`, the checks against a torrent in `validate.rs`.

use std::fmt;

use super::extension::{EXTENDED_HANDSHAKE_ID, Extended};
use super::{
    MSGID_ALLOWED_FAST, MSGID_BITFIELD, MSGID_CANCEL, MSGID_CHOKE, MSGID_EXTENDED, MSGID_HAVE,
    MSGID_HAVE_ALL, MSGID_HAVE_NONE, MSGID_INTERESTED, MSGID_NOT_INTERESTED, MSGID_PIECE,
    MSGID_PORT, MSGID_REJECT_REQUEST, MSGID_REQUEST, MSGID_SUGGEST_PIECE, MSGID_UNCHOKE,
    PREFIX_LEN,
};

/// Bytes in front of a block in a piece message: length prefix (4), id (1), index (4), begin (4).
pub const PIECE_HEADER_LEN: usize = 13;

/// A block of a piece: in request, cancel and reject-request messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRequest {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
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
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;
    use crate::peer::wire::{ExtendedHandshake, MAX_BLOCK_LEN, decode};

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
