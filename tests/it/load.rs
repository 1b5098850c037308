//! Load on loopback (issue 6, item 3), in bounded loops:
//! - two thousand idle or trickling connections (slowloris) from one address do not stop the
//!   tracker answering real announces promptly, nor a seeder serving an honest downloader;
//! - the tracker's global connection cap and its header timeout cut trickling connections
//!   that come from many addresses, so a real announce still gets through within seconds;
//! - the caps on peers per torrent and on numwant hold over HTTP.
//!
//! Already covered elsewhere (not repeated here): header size (tracker_http.rs
//! `oversized_headers_are_refused`), body size (tracker.rs `malformed_requests`), the
//! connection cap (tracker_http.rs `connections_beyond_the_limit_wait`), idle kept-alive
//! connections (tracker_http.rs `keep_alive_serves_many_requests_then_idle_connections_time_out`),
//! login brute force (tracker.rs `throttled_source`), peer wire limits (peer_session.rs
//! `hostile_connections_neither_crash_nor_stall_a_seeder`, peer_wire_connection.rs).

use crate::common_tracker;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common_peer::{assert_same_file, info_hash_of, publish_seeding, random_file, run_ok};
use crate::common_tracker::{TestTracker, UserSpec, enc, peer_command, standard_users};
use ivcsd::types::InfoHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// The attackers' source address: loopback, but not the honest clients' 127.0.0.1.
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const SLOWLORIS_CONNECTIONS: usize = 2000;

/// Raises the soft open-file limit to the hard one: two thousand connections, both ends in
/// this process for the in-process tracker, need more than the common 1024. The limit is the
/// whole test binary's; raising it only gives the other tests more room.
#[allow(unsafe_code, reason = "std has no setrlimit")]
fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it, a valid and exclusive one.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got == 0 && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct passed to it, a valid one.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

/// A connection from `source` (port chosen by the system) to `to`.
async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Opens `count` connections from `source`: half send nothing, half trickle a request head one
/// byte every 500 ms and never finish it. Returns the tasks that keep them; each ends when the
/// server closes its connection (or after two minutes) and gives how long it lived.
async fn slowloris(source: IpAddr, to: SocketAddr, count: usize) -> JoinSet<Duration> {
    let mut set = JoinSet::new();
    for i in 0..count {
        let Ok(mut stream) = connect_from(source, to).await else {
            continue; // the backlog is full: that connection never took a server slot
        };
        set.spawn(async move {
            let opened = Instant::now();
            let head = b"GET /announce?info_hash=";
            let mut buf = [0u8; 512];
            for step in 0..240 {
                if i % 2 == 1 {
                    let byte = &head[step % head.len()..step % head.len() + 1];
                    if stream.write_all(byte).await.is_err() {
                        return opened.elapsed();
                    }
                }
                // A read that ends (0 bytes or an error) means the server closed it.
                match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => return opened.elapsed(),
                    Ok(Ok(_)) => {} // a 408 or 400 answer; the close follows
                    Err(_) => {}
                }
            }
            opened.elapsed()
        });
    }
    set
}

fn users() -> Vec<UserSpec> {
    standard_users()
}

/// Times `n` real announces from 127.0.0.1, each on a new connection; returns the slowest.
async fn slowest_announce(tracker: &TestTracker, hash: &InfoHash, n: u16) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let start = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            tracker.announce("u3", hash, 7000 + i, 0),
        )
        .await
        .expect("an announce was not answered within 30 s");
        let answer = answer.ok();
        assert!(answer.int("complete") >= 1);
        slowest = slowest.max(start.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slowloris_connections_do_not_stop_real_announces() {
    raise_nofile_limit();
    let tracker = TestTracker::start(&users()).await;
    let published = tracker.publish("u3", b"slowloris test content").await;
    let hash = published.info_hash;
    let before = slowest_announce(&tracker, &hash, 3).await;

    let mut attack = slowloris(IpAddr::from(ATTACKER), tracker.addr, SLOWLORIS_CONNECTIONS).await;
    assert!(
        attack.len() > SLOWLORIS_CONNECTIONS / 2,
        "only {} connected",
        attack.len()
    );
    let during = slowest_announce(&tracker, &hash, 20).await;
    eprintln!(
        "slowest announce: {before:?} before, {during:?} under {} connections",
        attack.len()
    );
    assert!(
        during < Duration::from_secs(2),
        "an announce took {during:?} under slowloris"
    );

    // The address cap did it: all but the attacker's share were closed at once.
    let mut closed_quickly = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(Ok(lived))) =
        tokio::time::timeout_at(deadline.into(), attack.join_next()).await
    {
        if lived < Duration::from_secs(3) {
            closed_quickly += 1;
        }
    }
    let held = attack.len();
    let cap = tracker.config.max_connections_per_ip;
    eprintln!("{closed_quickly} closed at once, {held} still held (cap {cap} per address)");
    assert!(held <= cap, "{held} attacker connections held, cap {cap}");
    attack.abort_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_from_many_addresses_are_cut_by_the_header_timeout() {
    // Many addresses acting together get past the per-address cap and fill the global cap;
    // the header timeout must then free the slots, however slowly each connection trickles.
    raise_nofile_limit();
    let tracker = TestTracker::start_with(&users(), |c| {
        c.max_connections = 16;
        c.max_connections_per_ip = 4;
        c.header_read_timeout_secs = 1;
    })
    .await;
    let published = tracker.publish("u3", b"trickle test content").await;
    let mut attack = JoinSet::new();
    for a in 0..8u8 {
        let set = slowloris(IpAddr::from([127, 0, 1, 10 + a]), tracker.addr, 4).await;
        attack.spawn(async move { set.join_all().await });
    }
    // Each slot is cut within the header timeout, so a real announce waits for one at most.
    let slowest = slowest_announce(&tracker, &published.info_hash, 5).await;
    eprintln!("slowest announce with the global cap full of trickling connections: {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
    let lifetimes: Vec<Duration> = tokio::time::timeout(Duration::from_secs(60), attack.join_all())
        .await
        .expect("trickling connections were never cut")
        .into_iter()
        .flatten()
        .collect();
    let longest = lifetimes.iter().max().unwrap();
    eprintln!(
        "{} trickling connections, the longest lived {longest:?}",
        lifetimes.len()
    );
    // Each waited in the backlog for a slot, then got one header timeout (1 s) at most.
    assert!(*longest < Duration::from_secs(30), "{longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_per_torrent_and_numwant_are_capped_over_http() {
    let tracker = TestTracker::start_with(&users(), |c| {
        c.max_peers_per_torrent = 30;
        c.numwant_cap = 10;
    })
    .await;
    let published = tracker.publish("u3", b"caps test content").await;
    let hash = published.info_hash;
    for i in 0..100u16 {
        let peer_id = format!("-IV0001-{i:012}");
        let answer = tracker
            .get(&format!(
                "/announce?{}&info_hash={}&peer_id={}&port={}&uploaded=0&downloaded=0&left=5&numwant=100000&compact=1",
                common_tracker::creds("u3"),
                enc(&hash.0),
                enc(peer_id.as_bytes()),
                10_000 + i,
            ))
            .await
            .ok();
        let peers = answer.bytes("peers");
        assert!(
            peers.len() / 6 <= 10,
            "{} peers in one answer",
            peers.len() / 6
        );
        let in_swarm = answer.int("complete") + answer.int("incomplete");
        assert!(in_swarm <= 30, "{in_swarm} peers kept");
    }
}

// ---------------------------------------------------------------------------------------------
// A seeder under slowloris.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_under_slowloris_still_serves_an_honest_downloader() {
    raise_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 2 * 1024 * 1024, 4);
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent, seeding) = publish_seeding(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    tracker.set_authority(&hash, 1).await;

    let attack = slowloris(IpAddr::from(ATTACKER), seeding, SLOWLORIS_CONNECTIONS).await;
    assert!(
        attack.len() > SLOWLORIS_CONNECTIONS / 2,
        "only {} connected",
        attack.len()
    );
    let started = Instant::now();
    run_ok(
        peer_command(dir, "u1")
            .arg("download")
            .arg(&torrent)
            .arg("--output")
            .arg(dir.join("dl")),
        Duration::from_secs(60),
        "the honest download under slowloris",
    )
    .await;
    eprintln!("download under slowloris took {:?}", started.elapsed());
    assert_same_file(&content, &dir.join("dl/data.bin"));
    drop(attack);
    seeder.kill().await.unwrap();
}
