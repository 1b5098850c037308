//! Parsing a large torrent (40,000 files, 400,000 pieces: about 10 MiB, the CRATES.md input)
//! and creating an encrypted torrent of a 256 MiB file (read, RC4+ or AES-256-CTR, SHA-1 on all cores).
//!
//! `cargo bench --bench metainfo`; the create bench writes 256 MiB into a temporary directory.
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::cell::OnceCell;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivcsd::bencode::{Dict, Value};
use ivcsd::crypto::content::ContentKey;
use ivcsd::metainfo::{Cipher, Metainfo, TorrentBuilder, create_encrypted, create_plain};
use ivcsd::types::KeyId;

/// 40,000 files in 200 directories; 400,000 pieces of 16 KiB.
fn large_torrent() -> Vec<u8> {
    const FILES: usize = 40_000;
    const PIECES: usize = 400_000;
    const PIECE_LENGTH: u64 = 16384;
    let total = PIECES as u64 * PIECE_LENGTH;
    let per_file = total / FILES as u64;
    let files: Vec<Value<'static>> = (0..FILES)
        .map(|i| {
            let path = vec![
                Value::from(format!("directory-{:03}", i % 200)),
                Value::from(format!("file-{i:05}.dat")),
            ];
            Value::from(
                Dict::new()
                    .with("length", per_file as i64)
                    .with("path", Value::List(path)),
            )
        })
        .collect();
    let pieces: Vec<u8> = (0..PIECES * 20).map(|i| i as u8).collect();
    let info = Dict::new()
        .with("name", "large")
        .with("files", files)
        .with("piece length", PIECE_LENGTH as i64)
        .with("pieces", pieces);
    Value::from(
        Dict::new()
            .with("announce", "http://127.0.0.1:6969/announce")
            .with("info", info),
    )
    .encode()
}

fn parse(c: &mut Criterion) {
    let bytes = large_torrent();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(20);
    group.bench_function("40k_files_400k_pieces", |b| {
        b.iter(|| Metainfo::from_bytes(black_box(&bytes)).unwrap())
    });
    // The floor under it: the generic bencode decode alone.
    group.bench_function("bencode_decode_only", |b| {
        b.iter(|| ivcsd::bencode::decode(black_box(&bytes)).unwrap())
    });
    group.finish();
}

const CONTENT_SIZE: usize = 256 * 1024 * 1024;

fn create(c: &mut Criterion) {
    // The 256 MiB input is written on first use only (`cargo bench -- parse` skips it), and the
    // directory is removed when this function returns.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("content.bin");
    let written = OnceCell::new();
    let input = || {
        written.get_or_init(|| {
            let data: Vec<u8> = (0..CONTENT_SIZE)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                .collect();
            std::fs::write(&path, &data).unwrap();
        });
        path.as_path()
    };
    let key = ContentKey::from_bytes([7; 32]);
    let mut group = c.benchmark_group("create_256MiB");
    group.throughput(Throughput::Bytes(CONTENT_SIZE as u64));
    group.sample_size(10);
    group.bench_function("encrypted", |b| {
        let path = input();
        b.iter(|| create_encrypted(path, &key, KeyId([1; 16]), "", None).unwrap())
    });
    group.bench_function("encrypted aes-256-ctr", |b| {
        let path = input();
        b.iter(|| {
            TorrentBuilder::new(path)
                .cipher(Cipher::Aes256Ctr)
                .encrypted(&key, KeyId([1; 16]))
                .unwrap()
        })
    });
    group.bench_function("plain", |b| {
        let path = input();
        b.iter(|| create_plain(path, "", None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse, create);
criterion_main!(benches);
