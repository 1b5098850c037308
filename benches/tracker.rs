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
//! - getcipher (RSA-2048, PSS verify + OAEP wrap): 3.1 k/s and 2.1 k/s (1.3 to 3.4 k/s).

#[path = "../tests/common_tracker/mod.rs"]
mod common_tracker;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common_tracker::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ivcsd::crypto::identity::{CipherTarget, GetcipherMessage};
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

criterion_group!(tracker, benches);
criterion_main!(tracker);
