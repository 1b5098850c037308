//! Framing and parsing: [`decode`] takes one message from the front of a buffer, or answers
//! `Ok(None)` when the buffer does not hold a whole one yet. The length prefix is checked
//! against the message id before the payload is awaited, so nothing a peer claims makes a
//! reader wait for, or allocate, more than [`WireLimits`] allows (docs/protocol.md section 7).

use super::extension::{EXTENDED_HANDSHAKE_ID, Extended, ExtendedHandshake, MAX_EXTENDED_MSG_LEN};
use super::{
    BlockRequest, MAX_BLOCK_LEN, MAX_PIECE_MSG_LEN, MSGID_ALLOWED_FAST, MSGID_BITFIELD,
    MSGID_CANCEL, MSGID_CHOKE, MSGID_EXTENDED, MSGID_HAVE, MSGID_HAVE_ALL, MSGID_HAVE_NONE,
    MSGID_INTERESTED, MSGID_NOT_INTERESTED, MSGID_PIECE, MSGID_PORT, MSGID_REJECT_REQUEST,
    MSGID_REQUEST, MSGID_SUGGEST_PIECE, MSGID_UNCHOKE, Message, PREFIX_LEN, WireError, WireLimits,
};

/// Decodes one message from the start of `buf` with the default [`WireLimits`].
///
/// Returns `Ok(None)` when `buf` does not hold a whole message yet (read more and call again),
/// or the message and the number of bytes it took.
///
/// # Errors
/// A [`WireError`] when the bytes cannot be a valid message: a wrong length for the id, a block
/// over 16 KiB, a request for 0 bytes, a message over the limits. The length prefix is checked
/// before the rest of the message is awaited, so an absurd length is refused at once.
pub fn decode(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, WireError> {
    decode_with(buf, &WireLimits::default())
}

/// [`decode`] with explicit limits (for a torrent whose bitfield is larger than the default).
///
/// # Errors
/// As [`decode`].
pub fn decode_with<'a>(
    buf: &'a [u8],
    limits: &WireLimits,
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
    // `len` is at most WireLimits::max_message_len, far below usize::MAX.
    let total = PREFIX_LEN + len as usize;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let payload = &frame[PREFIX_LEN + 1..];
    let message = parse_payload(id, payload)?;
    Ok(Some((message, total)))
}

/// Checks a message's length field against its id, before its payload is awaited.
fn check_length(id: u8, len: u32, limits: &WireLimits) -> Result<(), WireError> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::metainfo::Geometry;
    use crate::peer::wire::test_frames::{frame, len_only, malformed};
    use crate::peer::wire::{DEFAULT_MAX_PIECE_COUNT, Handshake};

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

    proptest! {

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
    }
}
