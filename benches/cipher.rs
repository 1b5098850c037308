//! Cipher speed (CIPHER.md 6.1, 6.2): the bare RC4+ keystream, one 16 KiB block with its key
//! schedule, and whole buffers through `apply_keystream` and `apply_keystream_parallel`.
//! Run with `cargo bench --bench cipher`; compare with `benches/rc4plus_c.sh` (plain C, -O3).
//!
//! The single-core benches are measured twice: by the wall clock (criterion's default) and by
//! the CPU time of the benchmark thread (`cpu time` groups, from /proc/thread-self/schedstat),
//! which other processes on a busy shared machine do not inflate; rc4plus_c.sh prints both too.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ivcsd::crypto::content::{BLOCK_LEN, ContentKey, apply_keystream, apply_keystream_parallel};
use ivcsd::crypto::rc4plus::{Rc4Plus, Rc4Plus4};

const MIB: usize = 1 << 20;

fn keystream(c: &mut Criterion) {
    let mut group = c.benchmark_group("rc4plus");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut buf = vec![0u8; MIB];
    let mut cipher = Rc4Plus::with_key32(&[7; 32]);
    group.bench_function("keystream 1 MiB, one stream", |b| {
        b.iter(|| cipher.apply_keystream(black_box(&mut buf)))
    });
    let mut four = Rc4Plus4::new(std::array::from_fn(|n| Rc4Plus::with_key32(&[n as u8; 32])));
    group.bench_function("keystream 1 MiB, four interleaved streams", |b| {
        b.iter(|| {
            let (x, rest) = buf.split_at_mut(MIB / 4);
            let (y, rest) = rest.split_at_mut(MIB / 4);
            let (z, w) = rest.split_at_mut(MIB / 4);
            four.apply_keystream([x, y, z, w]);
            black_box(&buf);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("rc4plus key schedule");
    group.bench_function("KSA+ of a 32-byte key", |b| {
        b.iter(|| Rc4Plus::with_key32(black_box(&[9; 32])))
    });
    group.finish();
}

fn blocks(c: &mut Criterion) {
    let key = ContentKey::from_bytes([3; 32]);
    let mut group = c.benchmark_group("content");

    group.throughput(Throughput::Bytes(BLOCK_LEN as u64));
    let mut block = vec![0u8; BLOCK_LEN];
    group.bench_function("one 16 KiB block incl. block key and KSA+", |b| {
        b.iter(|| apply_keystream(&key, black_box(5 * BLOCK_LEN as u64), &mut block))
    });

    let len = 4 * MIB;
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    group.bench_function(BenchmarkId::new("apply_keystream one core", "4 MiB"), |b| {
        b.iter(|| apply_keystream(&key, black_box(0), &mut buf))
    });
    group.finish();

    let len = 256 * MIB;
    let mut group = c.benchmark_group("content parallel");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    group.bench_function(
        BenchmarkId::new("apply_keystream_parallel all cores", "256 MiB"),
        |b| b.iter(|| apply_keystream_parallel(&key, black_box(0), &mut buf)),
    );
    group.finish();
}

/// CPU time of the calling thread in nanoseconds: the first field of
/// /proc/thread-self/schedstat (Linux), time spent running on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat is readable (Linux)")
}

/// Criterion measurement: CPU time of the benchmark thread, in nanoseconds.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds shown as µs/ms of CPU; byte throughputs in MB/s (10^6) of CPU time.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns cpu")
        } else if typical < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (amount, unit) = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => (b as f64 / 1e6, "MB/s cpu"),
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => {
                (e as f64, "elem/s cpu")
            }
            Throughput::Bits(b) => (b as f64 / 1e6, "Mbit/s cpu"),
        };
        values.iter_mut().for_each(|v| *v = amount * 1e9 / *v);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The single-core figures again, in CPU time of the thread.
fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("cpu time");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut buf = vec![0u8; MIB];
    let mut cipher = Rc4Plus::with_key32(&[7; 32]);
    group.bench_function("rc4plus keystream 1 MiB, one stream", |b| {
        b.iter(|| cipher.apply_keystream(black_box(&mut buf)))
    });
    let key = ContentKey::from_bytes([3; 32]);
    let len = 4 * MIB;
    group.throughput(Throughput::Bytes(len as u64));
    let mut buf = vec![0u8; len];
    group.bench_function("content apply_keystream one core 4 MiB", |b| {
        b.iter(|| apply_keystream(&key, black_box(0), &mut buf))
    });
    group.finish();
}

criterion_group!(benches, keystream, blocks);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(benches, cpu_benches);
