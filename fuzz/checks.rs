//! The checks each fuzz target runs on one input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the regression tests (`tests/it/fuzz_regressions.rs`, which
//! replays `fuzz/seeds/` and `fuzz/regressions/` under `cargo test`). Each check panics on a
//! bug: a crash, a broken invariant; bad input itself must simply return an error.
#![allow(dead_code, reason = "each fuzz target uses one check")]

use ivcsd::bencode;
use ivcsd::metainfo::Metainfo;
use ivcsd::peer::geometry::PeerGeometry;
use ivcsd::peer::wire::{self, Extended, Handshake, Message};
use ivcsd::tracker::announce::AnnounceParams;
use ivcsd::tracker::authority::UserTable;
use ivcsd::tracker::getcipher::GetcipherParams;
use ivcsd::tracker::query::{MAX_SCRAPE_HASHES, Query};
use std::path::Path;

/// Strict bencode: any input either fails with an error or decodes to a value whose canonical
/// encoding is exactly the input (the decoder accepts canonical form only).
pub fn bencode(data: &[u8]) {
    if let Ok(value) = bencode::decode(data) {
        assert_eq!(
            value.encode(),
            data,
            "decoded bencode must re-encode to its input"
        );
        if let Some(dict) = value.as_dict() {
            assert_eq!(
                dict.raw(),
                Some(data),
                "a top-level dict keeps its raw bytes"
            );
        }
    }
}

/// Torrent files: `Metainfo::from_bytes` never panics, and what it accepts keeps its piece
/// geometry consistent (every piece has a hash and a length, the lengths add up).
pub fn metainfo(data: &[u8]) {
    let Ok(meta) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &meta.info;
    let count = info.piece_count();
    assert_eq!(count as usize, info.pieces.len());
    let mut sum = 0u64;
    for raw in 0..count {
        let index = info
            .piece_index(raw)
            .expect("an index below piece_count is valid");
        let len = info.piece_len(index);
        assert!(len > 0 && u64::from(len) <= info.piece_length);
        assert_eq!(info.piece_offset(index), u64::from(raw) * info.piece_length);
        let _ = info.piece_hash(index);
        let segments: u64 = info.piece_segments(index).map(|s| s.len).sum();
        assert_eq!(
            segments,
            u64::from(len),
            "piece {raw}'s file segments cover it"
        );
        sum += u64::from(len);
    }
    assert!(info.piece_index(count).is_none());
    assert_eq!(sum, info.total_length);
    let files: u64 = info.files.iter().map(|f| f.length).sum();
    assert_eq!(files, info.total_length);
}

/// The peer wire codec: `Handshake::decode`, `wire::decode` over a stream of frames (as the
/// connection's read loop drives it), and `Message::validate` against a torrent geometry taken
/// from the first input bytes. Nothing panics; a decoded frame never claims more bytes than it
/// was given; plain messages re-encode to the bytes they came from.
pub fn peer_wire(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    // Geometry: a piece length of 2^(14 + n % 9) and a total length from two bytes, so both
    // small torrents (tight validate bounds) and multi-piece ones are reached.
    let piece_length = 1u64 << (14 + u32::from(data[0] % 9));
    let total_length = 1 + u64::from(u16::from_be_bytes([data[1], data[2]])) * 4099;
    let geometry =
        PeerGeometry::new(piece_length, total_length).expect("a valid geometry by construction");
    let limits = geometry.limits();
    let data = &data[3..];

    if let Ok(Some((handshake, used))) = Handshake::decode(data) {
        assert!(used <= data.len());
        assert_eq!(&handshake.encode()[..], &data[..used]);
    }

    let mut rest = data;
    while let Ok(Some((message, used))) = wire::decode_with(rest, &limits) {
        assert!(
            used > 0 && used <= rest.len(),
            "decode must consume what it returns"
        );
        let _ = message.validate(geometry.metainfo());
        let plain = !matches!(message, Message::Extended(Extended::Handshake(_)));
        if plain {
            assert_eq!(
                message.encode(),
                &rest[..used],
                "{message:?} must re-encode to its frame"
            );
        }
        rest = &rest[used..];
    }
    // The default limits too (a peer before the torrent is known).
    let _ = wire::decode(data);
}

/// The tracker's query parsing: `Query::parse` and the parameter readers every endpoint uses
/// (announce, getcipher, scrape's info hashes, flags and integers). Never panics.
pub fn tracker_query(data: &[u8]) {
    // The server hands the parser the URI's query, which hyper has already checked to be text.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = Query::parse(raw) else {
        return;
    };
    let _ = AnnounceParams::parse(&query);
    let _ = GetcipherParams::parse(&query);
    if let Ok(hashes) = query.info_hashes() {
        assert!(hashes.len() <= MAX_SCRAPE_HASHES);
    }
    let _ = query.info_hash();
    let _ = query.get_str("username");
    let _ = query.get_u64("numwant");
    let _ = query.get_flag("getToken");
    let _ = query.get_flag("compact");
}

/// authority.xml: `UserTable::parse` never panics, and a table it accepts writes out
/// (`to_xml`) to text that parses back to the same users.
pub fn authority_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("authority.xml");
    let Ok(table) = UserTable::parse(text, path) else {
        return;
    };
    let again = UserTable::parse(&table.to_xml(), path).expect("to_xml output parses");
    assert_eq!(again.len(), table.len());
}
