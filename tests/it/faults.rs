//! Faults with real processes, sockets and files (issue 6, item 2):
//! - the tracker binary killed with SIGKILL at random moments during a stream of publishes and
//!   getcipher calls, restarted on the same data directory: no answered publish is lost and no
//!   torrent is without its key;
//! - a download killed with SIGKILL at ten random moments, resumed each time, ends identical;
//! - a really full disk (a small tmpfs in a private mount namespace) stops a download with one
//!   clear line and leaves the verified pieces intact;
//! - a tracker that goes away mid-download: the download continues from the connected seeder,
//!   and the peers retry their announce with growing back-off until the tracker is back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common_peer::{
    assert_same_file, info_hash_of, publish, random_file, run_ok, set_authority, users,
};
use crate::common_tracker::{
    TestTracker, UserSpec, can_mount_tmpfs, creds, enc, free_port, fresh_nonce, key2048, now,
    peer_command, write_authority,
};
use bytes::Bytes;
use hyper::{Method, Uri};
use ivcsd::bencode::Value;
use ivcsd::crypto::identity::{CipherTarget, GetcipherMessage};
use ivcsd::http_client;
use ivcsd::metainfo::Metainfo;
use ivcsd::types::{InfoHash, KeyId};
use rand::RngExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

// ---------------------------------------------------------------------------------------------
// Helpers: plain HTTP to a tracker at an address, the tracker binary as a child process.

fn timeouts() -> http_client::Timeouts {
    http_client::Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(20),
    }
}

/// One request; `Err` when the tracker is unreachable or the exchange broke.
async fn call(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), http_client::HttpError> {
    let uri: Uri = format!("http://{addr}{path_and_query}").parse().unwrap();
    let r = http_client::request(
        method,
        &uri,
        body.map(Bytes::from),
        timeouts(),
        http_client::DEFAULT_MAX_RESPONSE_BYTES,
    )
    .await?;
    Ok((r.status, r.body))
}

fn dict_bytes(body: &[u8], key: &str) -> Option<Vec<u8>> {
    let v = ivcsd::bencode::decode(body).ok()?;
    Some(v.as_dict()?.get(key.as_bytes())?.as_bytes()?.to_vec())
}

/// A getcipher as `user` for `target`; the unwrapped key and its id, or why not.
async fn getcipher(
    addr: SocketAddr,
    user: &str,
    target: CipherTarget,
) -> Result<(ivcsd::crypto::content::ContentKey, KeyId), String> {
    use base64::Engine;
    let identity = key2048();
    let public = identity.public();
    let (ts, nonce) = (now(), fresh_nonce());
    let message = GetcipherMessage {
        username: user,
        target,
        ts,
        nonce: &nonce,
        spki_sha256: public.spki_sha256(),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let target = match target {
        CipherTarget::Torrent(h) => format!("info_hash={}", enc(&h.0)),
        CipherTarget::New => "new=1".into(),
    };
    let path = format!(
        "/getcipher?{}&{target}&key={}&sign={}&ts={ts}&nonce={nonce}",
        creds(user),
        enc(b64.encode(public.spki_der()).as_bytes()),
        enc(b64.encode(identity.sign(&message.to_bytes())).as_bytes()),
    );
    let (status, body) = call(addr, Method::GET, &path, None)
        .await
        .map_err(|e| e.to_string())?;
    let wrapped = dict_bytes(&body, "key").ok_or_else(|| {
        format!(
            "answer: status {status}: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    let key_id = dict_bytes(&body, "key id").and_then(|b| KeyId::from_slice(&b));
    let key = identity
        .unwrap_content_key(&wrapped)
        .map_err(|e| e.to_string())?;
    Ok((key, key_id.ok_or("no key id")?))
}

/// A publish the tracker answered: what must survive any crash after the answer.
#[derive(Clone)]
struct Answered {
    info_hash: InfoHash,
    torrent: Vec<u8>,
}

/// getcipher new=1, build an encrypted torrent of a small unique file, POST /publish.
/// `Err` starting with "answer:" when the tracker answered with a refusal (it never should
/// here); any other `Err` when it went away mid-way.
async fn publish_one(addr: SocketAddr, dir: &Path, n: usize) -> Result<Answered, String> {
    let (key, key_id) = getcipher(addr, "u3", CipherTarget::New).await?;
    let file = dir.join(format!("content-{n}.bin"));
    let mut content = vec![0u8; 20_000 + n];
    rand::fill(&mut content[..]);
    std::fs::write(&file, &content).unwrap();
    let created = ivcsd::metainfo::create_encrypted(
        &file,
        &key,
        key_id,
        &format!("http://{addr}/announce"),
        None,
    )
    .unwrap();
    let (status, body) = call(
        addr,
        Method::POST,
        &format!("/publish?{}", creds("u3")),
        Some(created.bytes.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let hash = dict_bytes(&body, "info hash")
        .and_then(|b| InfoHash::from_slice(&b))
        .ok_or_else(|| {
            format!(
                "answer: publish refused ({status}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
    assert_eq!(hash, created.metainfo.info_hash);
    Ok(Answered {
        info_hash: hash,
        torrent: created.bytes,
    })
}

/// The key the tracker hands out for a torrent matches the torrent's key check.
async fn assert_key_matches(addr: SocketAddr, torrent: &[u8]) {
    let meta = Metainfo::from_bytes(torrent).unwrap();
    let ivcsd = meta.info.ivcsd.expect("an ivcsd torrent");
    let (key, key_id) = getcipher(addr, "u3", CipherTarget::Torrent(meta.info_hash))
        .await
        .unwrap_or_else(|e| panic!("no key for torrent {}: {e}", meta.info_hash));
    assert_eq!(key_id, ivcsd.key_id, "key id of {}", meta.info_hash);
    assert_eq!(key.key_check(), ivcsd.check, "key of {}", meta.info_hash);
}

/// `ivcsd tracker` as a child process.
struct TrackerProcess {
    child: Child,
    addr: SocketAddr,
}

impl TrackerProcess {
    async fn start(dir: &Path, addr: SocketAddr) -> TrackerProcess {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tracker.stderr"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
            .arg("tracker")
            .arg("--authority")
            .arg(dir.join("authority.xml"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut tracker = TrackerProcess { child, addr };
        tracker.wait_ready(dir).await;
        tracker
    }

    /// Ready when it answers HTTP (a refusal of a request without credentials will do).
    async fn wait_ready(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if call(self.addr, Method::GET, "/announce", None)
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "tracker exited with {status}: {}",
                    std::fs::read_to_string(dir.join("tracker.stderr")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "tracker not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The tracker killed during publishes and getcipher calls.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_killed_during_publishes_and_getcipher_loses_no_answered_publish() {
    const ROUNDS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_authority(
        &dir.join("authority.xml"),
        &[UserSpec::new("u3", 3), UserSpec::new("admin", 0).admin()],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let mut kills_with_requests_in_flight = 0;
    let mut published_before = 0;

    for round in 0..ROUNDS {
        let tracker = TrackerProcess::start(dir, addr).await;
        let so_far = answered.lock().unwrap().clone();
        check_everything_survived(addr, &so_far).await;

        // A stream of publishes and getcipher calls for earlier torrents, until the tracker
        // is gone.
        let work = {
            let answered = Arc::clone(&answered);
            let dir = dir.to_owned();
            tokio::spawn(async move {
                for n in 0.. {
                    let earlier = {
                        let list = answered.lock().unwrap();
                        (!list.is_empty())
                            .then(|| list[rand::rng().random_range(0..list.len())].clone())
                    };
                    if let Some(earlier) = earlier {
                        let hash = earlier.info_hash;
                        match getcipher(addr, "u3", CipherTarget::Torrent(hash)).await {
                            Ok((key, _)) => {
                                let meta = Metainfo::from_bytes(&earlier.torrent).unwrap();
                                assert_eq!(key.key_check(), meta.info.ivcsd.unwrap().check);
                            }
                            Err(e) => {
                                assert!(!e.starts_with("answer:"), "{e}");
                                return;
                            }
                        }
                    }
                    match publish_one(addr, &dir, round * 10_000 + n).await {
                        Ok(a) => answered.lock().unwrap().push(a),
                        Err(e) => {
                            assert!(!e.starts_with("answer:"), "{e}");
                            return;
                        }
                    }
                }
            })
        };
        let delay = Duration::from_millis(rand::rng().random_range(50..1500));
        tokio::time::sleep(delay).await;
        if !work.is_finished() {
            kills_with_requests_in_flight += 1;
        }
        tracker.kill().await;
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .expect("the client noticed the dead tracker")
            .unwrap();
        let now_published = answered.lock().unwrap().len();
        eprintln!(
            "round {round}: killed after {delay:?}, {} publishes answered",
            now_published - published_before
        );
        published_before = now_published;
    }
    assert_eq!(
        kills_with_requests_in_flight, ROUNDS,
        "every kill hit a busy tracker"
    );

    let tracker = TrackerProcess::start(dir, addr).await;
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= ROUNDS,
        "only {} publishes",
        answered.len()
    );
    check_everything_survived(addr, &answered).await;

    // No torrent without its key: every torrent the tracker lists, including any whose
    // answer the kill swallowed, hands out the key its metainfo names.
    let (status, body) = call(
        addr,
        Method::GET,
        &format!("/admin/torrents?{}", creds("admin")),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let list = ivcsd::bencode::decode(&body).unwrap();
    let torrents = list
        .as_dict()
        .unwrap()
        .get(b"torrents")
        .and_then(Value::as_list)
        .unwrap()
        .to_vec();
    assert!(torrents.len() >= answered.len());
    for t in &torrents {
        let hash = InfoHash::from_slice(
            t.as_dict()
                .unwrap()
                .get(b"info hash")
                .unwrap()
                .as_bytes()
                .unwrap(),
        )
        .unwrap();
        let (status, torrent) = call(
            addr,
            Method::GET,
            &format!("/torrent?{}&info_hash={}", creds("u3"), enc(&hash.0)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "listed torrent {hash} has no stored metainfo");
        assert_key_matches(addr, &torrent).await;
    }
    eprintln!(
        "{} answered publishes, {} torrents listed after {ROUNDS} kills",
        answered.len(),
        torrents.len()
    );
    tracker.kill().await;

    // The audit log's hash chain survived the kills (a line torn by a kill is cut at start).
    let log = std::fs::read_to_string(dir.join("data").join("audit.log")).unwrap();
    let lines = ivcsd::tracker::audit::verify_chain(&log)
        .unwrap_or_else(|line| panic!("audit chain broken at line {line} after the kills"));
    assert!(lines > answered.len());
    // A publish is answered only once its audit line is in the file: no kill lost one.
    for a in &answered {
        let hash = a.info_hash.to_hex();
        assert!(
            log.lines().any(|l| l.contains("\"endpoint\":\"publish\"")
                && l.contains(&hash)
                && l.contains("\"decision\":\"allow\"")),
            "the answered publish of {hash} is not in the audit log"
        );
    }
}

async fn check_everything_survived(addr: SocketAddr, answered: &[Answered]) {
    for a in answered {
        let (status, torrent) = call(
            addr,
            Method::GET,
            &format!("/torrent?{}&info_hash={}", creds("u3"), enc(&a.info_hash.0)),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "answered publish {} was lost", a.info_hash);
        assert_eq!(torrent.as_ref(), a.torrent.as_slice());
        assert_key_matches(addr, &torrent).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Peers as child processes (as in tests/it/peer_flow.rs).

fn download_command(dir: &Path, torrent: &Path, output: &Path) -> Command {
    let mut cmd = peer_command(dir, "u1");
    cmd.arg("download")
        .arg(torrent)
        .arg("--output")
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A random file of `len` bytes published and seeded by u3, readable by u1 (authority 1):
/// the file, the seeder, the torrent.
async fn seed_for_u1(
    tracker: &TestTracker,
    dir: &Path,
    len: usize,
    seed: u32,
) -> (PathBuf, Child, PathBuf) {
    let content = dir.join("src").join("data.bin");
    random_file(&content, len, seed);
    let (seeder, torrent) = publish(tracker, dir, &content).await;
    set_authority(tracker, &info_hash_of(&torrent), 1).await;
    (content, seeder, torrent)
}

// ---------------------------------------------------------------------------------------------
// (b) A download killed at ten random moments.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_ten_times_resumes_each_time_and_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tracker = TestTracker::start(&users()).await;
    let (content, mut seeder, torrent) = seed_for_u1(&tracker, dir, 24 * 1024 * 1024, 1).await;

    let out = dir.join("dl");
    let target = out.join("data.bin");
    let mut kills = 0;
    let mut finished_early = false;
    let size = std::fs::metadata(&content).unwrap().len();
    while kills < 10 {
        let mut child = download_command(dir, &torrent, &out).spawn().unwrap();
        // Random moments, spread over the whole download whatever the machine's speed: the
        // first during start-up (key, getcipher, preallocation), the others once the data on
        // disk passes a random point of the next tenth.
        let delay = if kills == 0 {
            let delay = Duration::from_millis(rand::rng().random_range(20..300));
            tokio::time::sleep(delay).await;
            delay
        } else {
            let tenth = size / 10;
            let point = kills as u64 * tenth + rand::rng().random_range(0..tenth);
            let started = Instant::now();
            while allocated_bytes(&target) < point && child.try_wait().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            started.elapsed()
        };
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .await
                .unwrap();
            assert!(status.success(), "download failed: {stderr}");
            finished_early = true;
            break;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        kills += 1;
        eprintln!(
            "kill {kills} after {delay:?} ({} bytes on disk)",
            allocated_bytes(&target)
        );
    }
    if !finished_early {
        run_ok(
            &mut download_command(dir, &torrent, &out),
            Duration::from_secs(180),
            "the resumed download",
        )
        .await;
    }
    assert!(
        kills >= 8,
        "only {kills} kills before the download finished"
    );
    assert_same_file(&content, &target);
    seeder.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// (c) A full disk.

/// Runs `download` in its own user and mount namespace with `small` on a 3 MiB tmpfs, then
/// copies what it left there (files and resume record) to `saved` on the real disk.
async fn on_small_disk(download: Command, small: &Path, saved: &Path) -> std::process::Output {
    let std_cmd = download.as_std();
    let mut script = Command::new("unshare");
    script
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(concat!(
            "mount -t tmpfs -o size=3m tmpfs \"$1\" || exit 99; ",
            "shift; out=\"$1\"; saved=\"$2\"; shift 2; ",
            "\"$@\"; status=$?; cp -a \"$out\"/. \"$saved\"/; exit $status"
        ))
        .arg("sh")
        .arg(small)
        .arg(small)
        .arg(saved)
        .arg(std_cmd.get_program())
        .args(std_cmd.get_args());
    script.envs(
        std_cmd
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
    );
    tokio::time::timeout(
        Duration::from_secs(120),
        script.stdin(Stdio::null()).output(),
    )
    .await
    .expect("the download on a full disk hung")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_really_full_disk_stops_a_download_with_one_clear_line_and_keeps_verified_pieces() {
    // A real full disk without privileges: the downloader runs in its own user and mount
    // namespace (`unshare -rm`) with its output directory on a 3 MiB tmpfs. The torrent is
    // 8 MiB, so the disk fills part way. Before the namespace goes away, the script copies
    // the output (files and resume record) to the real disk for the checks.
    if let Err(reason) = can_mount_tmpfs() {
        eprintln!("skipping: no private tmpfs mount here ({reason})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tracker = TestTracker::start(&users()).await;
    let (content, mut seeder, torrent) = seed_for_u1(&tracker, dir, 8 * 1024 * 1024, 2).await;

    let small = dir.join("small-disk");
    let saved = dir.join("saved");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&saved).unwrap();
    // Without --no-space-check the download refuses at once: 8 MiB do not fit in 3 MiB.
    let out = on_small_disk(download_command(dir, &torrent, &small), &small, &saved).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("not enough disk space") && last.contains("8 MiB more"),
        "{stderr}"
    );
    assert!(!saved.join("data.bin").exists(), "nothing was created");

    // With it, the download starts, and the disk fills part way.
    let mut download = download_command(dir, &torrent, &small);
    download.arg("--no-space-check");
    let out = on_small_disk(download, &small, &saved).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The last line is the command's one clear error; the log lines before it (RUST_LOG=warn)
    // name each piece that could not be stored.
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: cannot store piece "), "{stderr}");
    assert!(
        last.ends_with("No space left on device (os error 28)"),
        "{stderr}"
    );

    // Verified data intact: every piece the resume record claims is the original plaintext,
    // and some pieces were kept.
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let original = std::fs::read(&content).unwrap();
    let kept = std::fs::read(saved.join("data.bin")).unwrap();
    let piece_len = meta.info.piece_length as usize;
    let intact: Vec<bool> = original
        .chunks(piece_len)
        .zip(kept.chunks(piece_len))
        .map(|(a, b)| a == b)
        .collect();
    let intact_count = intact.iter().filter(|x| **x).count();
    assert!(intact_count > 0, "no verified piece was kept");
    assert!(intact_count < intact.len(), "the disk did not fill");
    let record = ivcsd::peer::resume::record_path(&saved, meta.info_hash);
    let files = [saved.join("data.bin")];
    if let Some(claimed) = ivcsd::peer::resume::load(
        &record,
        meta.info_hash,
        meta.info.piece_count(),
        files.iter().map(|p| p.as_path()),
    ) {
        for index in claimed.iter_set() {
            assert!(
                intact[index as usize],
                "the record claims piece {index}, which is damaged"
            );
        }
        eprintln!(
            "{} pieces claimed by the record, {intact_count} intact",
            claimed.count()
        );
    } else {
        eprintln!("no resume record survived the full disk; {intact_count} pieces intact");
    }

    // With room again, the download resumes from what was kept and ends identical.
    run_ok(
        &mut download_command(dir, &torrent, &saved),
        Duration::from_secs(120),
        "the resumed download",
    )
    .await;
    assert_same_file(&content, &saved.join("data.bin"));
    seeder.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// (d) An unreachable tracker.

/// Accepts announce attempts on `listener` without answering; records when each peer id came.
async fn record_attempts(listener: TcpListener, attempts: Arc<Mutex<Vec<(Instant, String)>>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let attempts = Arc::clone(&attempts);
        tokio::spawn(async move {
            let mut head = vec![0u8; 4096];
            let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head)).await
            else {
                return;
            };
            let line = String::from_utf8_lossy(&head[..n]).into_owned();
            let peer_id = line
                .split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix("peer_id="))
                .unwrap_or("?")
                .to_owned();
            attempts.lock().unwrap().push((Instant::now(), peer_id));
            // Dropping the stream closes it: to the peer, the tracker is broken.
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tracker_gone_peers_keep_serving_and_retry_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // A short interval, so the peers notice the tracker is gone within seconds.
    let mut tracker = TestTracker::start_with(&users(), |c| {
        c.interval_secs = 5;
        c.min_interval_secs = 5;
    })
    .await;
    let addr = tracker.addr;
    let (content, mut seeder, torrent) = seed_for_u1(&tracker, dir, 16 * 1024 * 1024, 3).await;

    let out = dir.join("dl");
    let target = out.join("data.bin");
    let mut downloader = download_command(dir, &torrent, &out).spawn().unwrap();
    // Once the downloader has connected and data flows, the tracker goes away.
    let started = Instant::now();
    while allocated_bytes(&target) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no data flowed"
        );
        assert!(
            downloader.try_wait().unwrap().is_none(),
            "download ended early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let config = tracker.config.clone();
    let users = Arc::clone(&tracker.users);
    tracker.stop().await;
    let stopped_at = Instant::now();
    assert!(
        downloader.try_wait().unwrap().is_none(),
        "the download finished before the tracker stopped: make the content larger"
    );
    // In its place, a listener that only notes the announce attempts.
    let stand_in = TcpListener::bind(addr).await.unwrap();
    let attempts: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let recorder = tokio::spawn(record_attempts(stand_in, Arc::clone(&attempts)));

    // The download finishes from the seeder it is connected to, without a tracker.
    let done = tokio::time::timeout(Duration::from_secs(120), downloader.wait())
        .await
        .expect("the download stalled without the tracker")
        .unwrap();
    let mut stderr = String::new();
    downloader
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(done.success(), "{stderr}");
    assert_same_file(&content, &target);

    // The seeder retries: at least three attempts, each gap longer than the one before.
    let seeder_id = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let seen = attempts.lock().unwrap().clone();
            let mut by_peer: std::collections::HashMap<String, Vec<Instant>> = Default::default();
            for (at, id) in seen {
                by_peer.entry(id).or_default().push(at);
            }
            if let Some((id, _)) = by_peer.iter().find(|(id, times)| {
                // The downloader's id also shows (until it exits); the seeder keeps going.
                times.len() >= 3 && id.as_str() != "?"
            }) {
                return id.clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the seeder did not retry its announce three times within a minute");
    let times: Vec<Instant> = attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, id)| *id == seeder_id)
        .map(|(at, _)| *at)
        .collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "announce attempts {:?} after the tracker stopped, gaps {gaps:?}",
        times.iter().map(|t| *t - stopped_at).collect::<Vec<_>>()
    );
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "the back-off grows: {gaps:?}"
    );

    // The tracker comes back on the same address: the seeder finds it again.
    recorder.abort();
    let _ = recorder.await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let back = tokio::spawn(ivcsd::tracker::run(listener, config, users, async {
        let _ = stopped.await;
    }));
    let hash = info_hash_of(&torrent);
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let (_, body) = call(
                addr,
                Method::GET,
                &format!("/scrape?{}&info_hash={}", creds("u3"), enc(&hash.0)),
                None,
            )
            .await
            .unwrap();
            let v = ivcsd::bencode::decode(&body).unwrap();
            let complete = v
                .as_dict()
                .and_then(|d| d.get(b"files"))
                .and_then(Value::as_dict)
                .and_then(|f| f.get(&hash.0))
                .and_then(Value::as_dict)
                .and_then(|s| s.get(b"complete"))
                .and_then(Value::as_int)
                .unwrap_or(0);
            if complete >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the seeder did not come back to the restarted tracker");
    let _ = stop.send(());
    back.await.unwrap().unwrap();
    seeder.kill().await.unwrap();
}

/// Bytes the (sparse, preallocated) output file really occupies: grows as pieces land.
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}
