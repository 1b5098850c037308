//! The RSA work of one getcipher request on one core (SPEC 4.3): parse the requester's SPKI,
//! build and verify the RSASSA-PSS signature over the signed message, and wrap the content key
//! with RSAES-OAEP, exactly the calls `tracker::getcipher` makes off the reactor. This is what
//! bounds getcipher per second; benches/tracker_load.sh prints it beside `openssl speed`
//! (verify + encrypt per second) for the same key sizes.
//!
//! Measured in CPU time of the thread (like `openssl speed`), so that other load on the machine
//! does not count. Run with `cargo bench --bench tracker`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;
use ivcsd::crypto::content::ContentKey;
use ivcsd::crypto::identity::{CipherTarget, GetcipherMessage, Identity, PublicIdentity};
use ivcsd::types::InfoHash;

fn getcipher(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("getcipher rsa work");
    for bits in [2048usize, 3072] {
        // Key generation is slow and random in time; one key per size, outside the timing.
        let identity = Identity::generate(bits).expect("rsa key generation");
        let der = identity.public().spki_der().to_vec();
        let public = identity.public();
        let message = GetcipherMessage {
            username: "bench",
            target: CipherTarget::Torrent(InfoHash([7; 20])),
            ts: 1_790_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            spki_sha256: public.spki_sha256(),
        };
        let signature = identity.sign(&message.to_bytes());
        let content_key = ContentKey::from_bytes([5; 32]);

        group.bench_function(BenchmarkId::new("parse + verify + wrap", bits), |b| {
            b.iter(|| {
                let key = PublicIdentity::from_spki_der(black_box(&der)).expect("valid spki");
                let msg = GetcipherMessage {
                    spki_sha256: key.spki_sha256(),
                    ..message
                };
                key.verify(&msg.to_bytes(), black_box(&signature))
                    .expect("valid signature");
                key.wrap_content_key(&content_key)
            })
        });
        group.bench_function(BenchmarkId::new("verify only", bits), |b| {
            b.iter(|| public.verify(&message.to_bytes(), black_box(&signature)))
        });
        group.bench_function(BenchmarkId::new("wrap only", bits), |b| {
            b.iter(|| public.wrap_content_key(black_box(&content_key)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = getcipher
}
criterion_main!(benches);
