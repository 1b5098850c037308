//! Cipher speed (CIPHER.md 6.1, 6.2, docs/protocol.md 6.4): the bare RC4+ keystream, one 16 KiB
//! block with its key schedule, and whole buffers through `ContentCipher::apply_keystream` and
//! `apply_keystream_parallel`, for both content suites.
//! Run with `cargo bench --bench cipher`; compare with `benches/rc4plus_c.sh` (plain C, -O3).
//!
//! The one-core benches measure the thread's CPU time rather than wall time: the machine is
//! shared, and CPU time is what a core spends whether or not others compete for it (the C
//! reference prints both). The all-cores bench can only be measured in wall time.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ivcsd::crypto::content::{BLOCK_LEN, Cipher, ContentCipher, ContentKey};
use ivcsd::crypto::rc4plus::{Kernel, Rc4Plus, Rc4Plus4};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

const MIB: usize = 1 << 20;

/// The one-core figures, all in the thread's CPU time, in one group so that
/// `cargo bench --bench cipher -- "cpu time"` runs exactly them (docs/benchmarks.md "Cipher").
fn one_core_figures(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("cpu time");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut buf = vec![0u8; MIB];
    let mut cipher = Rc4Plus::with_key32(&[7; 32]);
    group.bench_function("rc4plus keystream 1 MiB, one stream", |b| {
        b.iter(|| cipher.apply_keystream(black_box(&mut buf)))
    });
    let (active, how) = Kernel::active();
    println!("cpu: {}", cpu_name());
    println!("rc4+ kernel in use: {active} ({how})");
    let start = std::time::Instant::now();
    let fastest = Kernel::measure_fastest();
    println!(
        "a second measurement took {:?} and chose {fastest}",
        start.elapsed()
    );
    for kernel in Kernel::ALL {
        let mut cipher = Rc4Plus::with_key32(&[7; 32]);
        group.bench_function(format!("rc4plus keystream 1 MiB, kernel {kernel}"), |b| {
            b.iter(|| cipher.apply_keystream_with(*kernel, black_box(&mut buf)))
        });
    }
    let mut four = Rc4Plus4::new(std::array::from_fn(|n| Rc4Plus::with_key32(&[n as u8; 32])));
    group.bench_function("rc4plus keystream 1 MiB, four interleaved streams", |b| {
        b.iter(|| {
            let (x, rest) = buf.split_at_mut(MIB / 4);
            let (y, rest) = rest.split_at_mut(MIB / 4);
            let (z, w) = rest.split_at_mut(MIB / 4);
            four.apply_keystream([x, y, z, w]);
            black_box(&buf);
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("rc4plus KSA+ of a 32-byte key", |b| {
        b.iter(|| Rc4Plus::with_key32(black_box(&[9; 32])))
    });
    group.bench_function("rc4plus KSA+ of four 32-byte keys, interleaved", |b| {
        b.iter(|| Rc4Plus::with_keys32_x4(black_box(&[[9; 32]; 4])))
    });
    let key = ContentKey::from_bytes([3; 32]);
    group.bench_function("content block key (SHA-256)", |b| {
        b.iter(|| key.block_key(black_box(5)))
    });

    let rc4plus = ContentCipher::new(Cipher::Rc4Plus, &key);
    let aes = ContentCipher::new(Cipher::Aes256Ctr, &key);
    group.throughput(Throughput::Bytes(BLOCK_LEN as u64));
    let mut block = vec![0u8; BLOCK_LEN];
    group.bench_function("content one 16 KiB block incl. block key and KSA+", |b| {
        b.iter(|| rc4plus.apply_keystream(black_box(5 * BLOCK_LEN as u64), &mut block))
    });
    group.bench_function("aes-256-ctr content one 16 KiB block", |b| {
        b.iter(|| aes.apply_keystream(black_box(5 * BLOCK_LEN as u64), &mut block))
    });

    let len = 4 * MIB;
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    group.bench_function("content apply_keystream one core 4 MiB", |b| {
        b.iter(|| rc4plus.apply_keystream(black_box(0), &mut buf))
    });
    group.bench_function("aes-256-ctr content apply_keystream one core 4 MiB", |b| {
        b.iter(|| aes.apply_keystream(black_box(0), &mut buf))
    });
    group.finish();
}

/// The CPU as figures should name it: model name, family, model and stepping (names such as
/// "AMD EPYC" cover several generations).
fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|line| line.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|line| line.split_once(':'))
            .map_or("?", |(_, value)| value.trim())
            .to_owned()
    };
    format!(
        "{}, family {} model {} stepping {}",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping")
    )
}

fn parallel(c: &mut Criterion) {
    let key = ContentKey::from_bytes([3; 32]);
    let len = 256 * MIB;
    let mut group = c.benchmark_group("content parallel");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    for (name, suite) in [
        ("apply_keystream_parallel all cores", Cipher::Rc4Plus),
        (
            "aes-256-ctr apply_keystream_parallel all cores",
            Cipher::Aes256Ctr,
        ),
    ] {
        let cipher = ContentCipher::new(suite, &key);
        group.bench_function(BenchmarkId::new(name, "256 MiB"), |b| {
            b.iter(|| cipher.apply_keystream_parallel(black_box(0), &mut buf))
        });
    }
    group.finish();
}

criterion_group! {
    name = one_core;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = one_core_figures
}
criterion_group!(all_cores, parallel);
criterion_main!(one_core, all_cores);
