//! Peer wire hot paths: decoding a stream of piece messages (every received block goes
//! through it), the picker choosing requests for a large torrent, and two connections moving
//! a torrent over loopback (the connection's own cost: no disk, no cipher, no hashing).
//!
//! Run: `cargo bench --bench peer_wire`.
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivcsd::peer::bitfield::Bitfield;
use ivcsd::peer::connection::{
    Command, ConnectionConfig, Event, Handler, HandlerError, Outbox, accept, connect,
};
use ivcsd::peer::geometry::PeerGeometry;
use ivcsd::peer::peer_id::generate_peer_id;
use ivcsd::peer::picker::{BlockOutcome, Picker};
use ivcsd::peer::wire::{self, MAX_BLOCK_LEN, Message};
use ivcsd::types::InfoHash;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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
    let geometry = PeerGeometry::new(256 * 1024, 65_536 * 256 * 1024).unwrap();
    let mut group = c.benchmark_group("picker");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(geometry.piece_count()) * 16));
    group.bench_function("download 65536 pieces, pipeline 64", |b| {
        b.iter(|| {
            let mut p: Picker<u32> =
                Picker::with_seed(*geometry.metainfo(), Bitfield::new(65_536), 1);
            p.add_peer(0);
            p.peer_bitfield(0, Bitfield::full(65_536));
            let now = Instant::now();
            while !p.is_complete() {
                for r in p.next_requests(0, 64, now) {
                    // The picker's own requests name real pieces.
                    let index = geometry.metainfo().piece_index(r.index).unwrap();
                    if let BlockOutcome::Accepted {
                        piece_complete: true,
                        ..
                    } = p.block_received(0, index, r.begin, r.length)
                    {
                        p.piece_verified(index);
                    }
                }
            }
        })
    });
    group.finish();
}

/// Answers every request with the same block (no copy: `Bytes` is shared).
struct Seeder(Bytes);

impl Handler for Seeder {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        match event {
            Event::Interested => out.send(Command::Unchoke),
            Event::Request(r) => out.send(Command::Piece {
                index: r.index,
                begin: r.begin,
                data: self.0.slice(..r.length as usize),
            }),
            _ => {}
        }
        Ok(())
    }
}

/// Requests every block through the picker, 64 in flight, and closes when done. The geometry
/// turns the wire's piece indices into the picker's.
struct Downloader(Picker<u32>, ivcsd::metainfo::Geometry);

impl Handler for Downloader {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        let now = Instant::now();
        match event {
            Event::Bitfield(has) => {
                self.0.peer_bitfield(0, has);
                out.send(Command::Interested);
            }
            Event::Unchoke => {}
            Event::Block { index, begin, data } => {
                // The connection checked the index against the torrent.
                let index = self
                    .1
                    .piece_index(index)
                    .ok_or("piece index past the end")?;
                if let BlockOutcome::Accepted {
                    piece_complete: true,
                    ..
                } = self.0.block_received(0, index, begin, data.len() as u32)
                {
                    self.0.piece_verified(index);
                }
                if self.0.is_complete() {
                    out.send(Command::Close);
                    return Ok(());
                }
            }
            _ => return Ok(()),
        }
        for r in self.0.next_requests(0, 64, now) {
            out.send(Command::Request(r));
        }
        Ok(())
    }
}

fn loopback_transfer(c: &mut Criterion) {
    const TOTAL: u64 = 64 * 1024 * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let geometry = PeerGeometry::new(256 * 1024, TOTAL).unwrap();
    let pieces = geometry.piece_count();
    let info_hash = InfoHash([5; 20]);
    let block = Bytes::from(vec![0x5a; MAX_BLOCK_LEN as usize]);
    let mut group = c.benchmark_group("connection");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL));
    group.bench_function("64 MiB over loopback, one connection", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let block = block.clone();
                let seeder = tokio::spawn(async move {
                    let config = ConnectionConfig::new(generate_peer_id());
                    let (stream, _) = listener.accept().await.unwrap();
                    let hs = accept(stream, |_| true, &config).await.unwrap();
                    let (conn, _handle) = hs.into_connection(
                        geometry,
                        &Bitfield::full(pieces),
                        Seeder(block),
                        &config,
                    );
                    let _ = conn.run(CancellationToken::new()).await;
                });
                let config = ConnectionConfig::new(generate_peer_id());
                let stream = TcpStream::connect(addr).await.unwrap();
                let hs = connect(stream, info_hash, &config).await.unwrap();
                let mut picker = Picker::new(*geometry.metainfo(), Bitfield::new(pieces));
                picker.add_peer(0);
                let (conn, _handle) = hs.into_connection(
                    geometry,
                    &Bitfield::new(pieces),
                    Downloader(picker, *geometry.metainfo()),
                    &config,
                );
                conn.run(CancellationToken::new()).await.unwrap();
                seeder.await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, decode_pieces, picker_download, loopback_transfer);
criterion_main!(benches);
