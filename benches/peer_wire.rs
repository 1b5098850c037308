//! Peer wire hot paths: decoding a stream of piece messages (every received block goes
//! through it), and the picker choosing requests for a large torrent.
//!
//! Run: `cargo bench --bench peer_wire`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivcsd::peer::bitfield::Bitfield;
use ivcsd::peer::picker::{BlockOutcome, Picker};
use ivcsd::peer::wire::{self, Geometry, MAX_BLOCK_LEN, Message};

fn decode_pieces(c: &mut Criterion) {
    let block = vec![0xa5u8; MAX_BLOCK_LEN as usize];
    let mut stream = Vec::new();
    for i in 0..64 {
        Message::Piece {
            index: i,
            begin: 0,
            block: &block,
        }
        .encode_into(&mut stream);
    }
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("decode 64 piece messages", |b| {
        b.iter(|| {
            let mut rest = black_box(&stream[..]);
            let mut total = 0;
            while let Ok(Some((message, used))) = wire::decode(rest) {
                if let Message::Piece { block, .. } = message {
                    total += block.len();
                }
                rest = &rest[used..];
            }
            total
        })
    });
    group.finish();
}

/// A whole download of a 65,536-piece torrent of 256 KiB pieces (16 GiB, 1M blocks) from
/// one peer: every block requested, received and every piece verified.
fn picker_download(c: &mut Criterion) {
    let geometry = Geometry::new(256 * 1024, 65_536 * 256 * 1024).unwrap();
    let mut group = c.benchmark_group("picker");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(geometry.piece_count()) * 16));
    group.bench_function("download 65536 pieces, pipeline 64", |b| {
        b.iter(|| {
            let mut p: Picker<u32> = Picker::with_seed(geometry, Bitfield::new(65_536), 1);
            p.add_peer(0);
            p.peer_bitfield(0, Bitfield::full(65_536));
            let now = Instant::now();
            while !p.is_complete() {
                for r in p.next_requests(0, 64, now) {
                    if let BlockOutcome::Accepted {
                        piece_complete: true,
                        ..
                    } = p.block_received(0, r.index, r.begin, r.length)
                    {
                        p.piece_verified(r.index);
                    }
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode_pieces, picker_download);
criterion_main!(benches);
