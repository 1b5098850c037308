//! Tracker throughput over loopback: authenticated announces per second on keep-alive
//! connections with the audit log on and off, and getcipher requests per second.
//!
//! `cargo bench --bench tracker`. Each measurement spreads its requests over `CONNECTIONS`
//! keep-alive HTTP/1.1 connections driven concurrently; the tracker runs in the same process
//! on a 2-worker tokio runtime. Passwords are checked once with argon2 and then served from the
//! tracker's keyed cache, as for a stock client that sends them on every announce. getcipher
//! requests are signed before the clock starts (signing is the client's cost, not the
//! tracker's); the tracker's cost is one PSS verification and one OAEP wrap per request.
//!
//! Figures on the shared 2-vCPU machine while other engineers built and tested (load average
//! 5 to 12, so these are noisy lower bounds), release build, client and tracker in one
//! process, two runs:
//! - announce, audit log on: 14.5 k/s and 18.5 k/s (criterion intervals 12.7 to 20.5 k/s);
//! - announce, audit log off: 19.8 k/s and 20.2 k/s (18.8 to 20.9 k/s);
//! - getcipher (RSA-2048, PSS verify + OAEP wrap): 3.1 k/s and 2.1 k/s (1.3 to 3.4 k/s) with the
//!   `rsa` crate; 11.4 k/s (10.8 to 12.1 k/s, load 5 to 9) with aws-lc-rs and cached keys
//!   (benches/results/getcipher-rsa.txt).
//!
//! The group `getcipher rsa work` measures, in CPU time of the thread (like `openssl speed`,
//! so other load on the machine does not count), the RSA work of one getcipher on one core:
//! exactly the calls `tracker::getcipher` makes off the reactor. `parse + verify + wrap` is a
//! requester seen for the first time; `cached key: verify + wrap` is every later request (the
//! tracker keeps parsed keys, src/tracker/key_cache.rs). The `rsa 0.10` rows are the same work
//! with the pure-Rust `rsa` crate that did it before aws-lc-rs, measured in the same run for
//! comparison. benches/tracker_load.sh prints these beside `openssl speed`.
//! `cargo bench --bench tracker -- 'getcipher rsa'` runs only this group.
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

#[path = "../tests/it/common_tracker.rs"]
#[allow(
    dead_code,
    reason = "the benchmarks use a part of the integration tests' helpers"
)]
mod common_tracker;
#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common_tracker::*;
use cpu_time::ThreadCpuTime;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ivcsd::crypto::content::ContentKey;
use ivcsd::crypto::identity::{CipherTarget, GetcipherMessage, Identity, PublicIdentity};
use ivcsd::tracker::key_cache::PublicKeyCache;
use std::hint::black_box;
use tokio::runtime::Runtime;

const CONNECTIONS: usize = 8;

async fn connect(t: &TestTracker) -> Vec<SendRequest<Full<Bytes>>> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        out.push(sender);
    }
    out
}

/// Sends `paths[i]` on connection `i % CONNECTIONS`, all connections at once; returns them.
async fn send_all(
    conns: Vec<SendRequest<Full<Bytes>>>,
    paths: Vec<String>,
) -> Vec<SendRequest<Full<Bytes>>> {
    let mut per_conn: Vec<Vec<String>> = vec![Vec::new(); conns.len()];
    for (i, p) in paths.into_iter().enumerate() {
        per_conn[i % CONNECTIONS].push(p);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(per_conn)
        .map(|(mut sender, paths)| {
            tokio::spawn(async move {
                for path in paths {
                    let req = hyper::Request::get(path)
                        .header(hyper::header::HOST, "bench")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let response = sender.send_request(req).await.unwrap();
                    assert_eq!(response.status(), 200);
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    assert!(!body.starts_with(b"d14:failure reason"), "{body:?}");
                }
                sender
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn announce_paths(hash: &ivcsd::types::InfoHash, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let conn = i as usize % CONNECTIONS;
            format!(
                "/announce?{}&info_hash={}&peer_id=-IV0001-bench{conn:07}&port={}&uploaded=0\
                 &downloaded=0&left={}&compact=1&numwant=50",
                creds("u1"),
                enc(&hash.0),
                6000 + conn,
                if conn == 0 { 0 } else { 100 }
            )
        })
        .collect()
}

fn bench_announce(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    for audit in [true, false] {
        let (t, hash, mut conns) = rt.block_on(async {
            let t = TestTracker::start_with(&standard_users(), |c| c.audit = audit).await;
            let p = t.publish("u3", b"bench content").await;
            t.set_authority(&p.info_hash, 4).await;
            let conns = connect(&t).await;
            // warm the password cache
            let conns = send_all(conns, announce_paths(&p.info_hash, CONNECTIONS as u64)).await;
            (t, p.info_hash, conns)
        });
        let name = if audit {
            "announce/audit_on"
        } else {
            "announce/audit_off"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let paths = announce_paths(&hash, iters);
                rt.block_on(async {
                    let start = Instant::now();
                    conns = send_all(std::mem::take(&mut conns), paths).await;
                    start.elapsed()
                })
            })
        });
        drop(conns);
        rt.block_on(async {
            let mut t = t;
            t.stop().await;
        });
    }
    group.finish();
}

fn bench_getcipher(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    let (t, hash, mut conns) = rt.block_on(async {
        let t = TestTracker::start(&standard_users()).await;
        let p = t.publish("u3", b"bench content").await;
        t.set_authority(&p.info_hash, 4).await;
        let conns = connect(&t).await;
        (t, p.info_hash, conns)
    });
    let identity = key2048();
    let public = identity.public();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = b64.encode(public.spki_der());
    let signed = |n: u64| -> Vec<String> {
        (0..n)
            .map(|_| {
                let nonce = fresh_nonce();
                let ts = now();
                let message = GetcipherMessage {
                    username: "u1",
                    target: CipherTarget::Torrent(hash),
                    ts,
                    nonce: &nonce,
                    spki_sha256: public.spki_sha256(),
                };
                let sign = b64.encode(identity.sign(&message.to_bytes()));
                format!(
                    "/getcipher?{}&info_hash={}&key={key}&sign={sign}&ts={ts}&nonce={nonce}",
                    creds("u1"),
                    enc(&hash.0)
                )
            })
            .collect()
    };
    group.bench_function("getcipher", |b| {
        b.iter_custom(|iters| {
            let paths = signed(iters);
            rt.block_on(async {
                let start = Instant::now();
                conns = send_all(std::mem::take(&mut conns), paths).await;
                start.elapsed()
            })
        })
    });
    drop(conns);
    rt.block_on(async {
        let mut t = t;
        t.stop().await;
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    bench_announce(c, &rt);
    bench_getcipher(c, &rt);
}

/// The RSA work of one getcipher on one core, in thread CPU time (see the module doc).
fn bench_getcipher_rsa(c: &mut Criterion<ThreadCpuTime>) {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::sha2::Sha256;
    let mut group = c.benchmark_group("getcipher rsa work");
    for bits in [2048usize, 3072] {
        let pem_path = format!(
            "{}/tests/data/keys/rsa{bits}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read_to_string(&pem_path).expect("key fixture");
        let identity = Identity::from_pkcs8_pem(&pem).expect("key fixture");
        let public = identity.public();
        let der = public.spki_der().to_vec();
        let message = GetcipherMessage {
            username: "bench",
            target: CipherTarget::Torrent(ivcsd::types::InfoHash([7; 20])),
            ts: 1_790_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            spki_sha256: public.spki_sha256(),
        };
        let signature = identity.sign(&message.to_bytes());
        let content_key = ContentKey::from_bytes([5; 32]);
        let mut cache = PublicKeyCache::new(16);
        cache.insert(public.clone());

        // What getcipher does with the requester's key once it has it.
        let verify_and_wrap = |key: &PublicIdentity| {
            let msg = GetcipherMessage {
                spki_sha256: key.spki_sha256(),
                ..message
            };
            key.verify(&msg.to_bytes(), black_box(&signature))
                .expect("valid signature");
            key.wrap_content_key(&content_key)
        };
        group.bench_function(BenchmarkId::new("parse + verify + wrap", bits), |b| {
            b.iter(|| {
                verify_and_wrap(
                    &PublicIdentity::from_spki_der(black_box(&der)).expect("valid spki"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("cached key: verify + wrap", bits), |b| {
            b.iter(|| verify_and_wrap(&cache.get(black_box(&der)).expect("cached")))
        });
        group.bench_function(BenchmarkId::new("parse only", bits), |b| {
            b.iter(|| PublicIdentity::from_spki_der(black_box(&der)).expect("valid spki"))
        });
        group.bench_function(BenchmarkId::new("verify only", bits), |b| {
            b.iter(|| public.verify(&message.to_bytes(), black_box(&signature)))
        });
        group.bench_function(BenchmarkId::new("wrap only", bits), |b| {
            b.iter(|| public.wrap_content_key(black_box(&content_key)))
        });

        // Before: the same work with the `rsa` crate alone.
        group.bench_function(
            BenchmarkId::new("rsa 0.10: parse + verify + wrap", bits),
            |b| {
                b.iter(|| {
                    let key = rsa::PublicKey::from_public_key_der(black_box(&der)).expect("spki");
                    key.pss_verify::<Sha256>(&message.to_bytes(), black_box(&signature))
                        .expect("valid signature");
                    key.oaep_encrypt::<Sha256>(content_key.as_bytes())
                        .expect("wrap")
                })
            },
        );
        let rsa_key = rsa::PublicKey::from_public_key_der(&der).expect("spki");
        group.bench_function(BenchmarkId::new("rsa 0.10: verify only", bits), |b| {
            b.iter(|| rsa_key.pss_verify::<Sha256>(&message.to_bytes(), black_box(&signature)))
        });
        group.bench_function(BenchmarkId::new("rsa 0.10: wrap only", bits), |b| {
            b.iter(|| rsa_key.oaep_encrypt::<Sha256>(black_box(content_key.as_bytes())))
        });
    }
    group.finish();
}

criterion_group!(tracker, benches);
criterion_group! {
    name = rsa_work;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_getcipher_rsa
}
criterion_main!(tracker, rsa_work);
