//! Helpers of the peer, relay and courier tests: the real `ivcsd` binary as publisher, downloader,
//! administrator and relay, against the in-process tracker of `common_tracker`. Relays log
//! JSON lines (`--log-format json`), which the tests read as readiness signals instead of
//! sleeping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::common_tracker::{self, TestTracker, UserSpec, password};

/// Long enough for a debug build on two shared cores; a hang fails instead of blocking CI.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The users of the relay tests: the paper's u1, u3, u5, an administrator and two relays.
pub fn users() -> Vec<UserSpec> {
    vec![
        UserSpec::new("u1", 1),
        UserSpec::new("u3", 3),
        UserSpec::new("u5", 5),
        UserSpec::new("admin", 0).admin(),
        UserSpec::new("relay", 9),
        UserSpec::new("relay2", 9),
    ]
}

pub fn announce(tracker: &TestTracker) -> String {
    format!("http://{}/announce", tracker.addr)
}

/// `user`'s identity in `dir`.
pub fn identity(dir: &Path, user: &str) -> PathBuf {
    common_tracker::test_identity(dir, user)
}

/// `ivcsd peer` as `user`, listening on a free port of 127.0.0.1.
pub fn peer(dir: &Path, user: &str) -> Command {
    common_tracker::peer_command(dir, user)
}

/// Starts `peer publish` as u3 (which seeds afterwards) and waits until it seeds.
pub async fn publish(tracker: &TestTracker, dir: &Path, content: &Path) -> (Child, PathBuf) {
    let (child, torrent, _) = publish_seeding(tracker, dir, content).await;
    (child, torrent)
}

/// `peer publish CONTENT` as u3, writing `DIR/NAME.torrent` (returned beside the command).
fn publish_command(tracker: &TestTracker, dir: &Path, content: &Path) -> (Command, PathBuf) {
    let name = content.file_name().unwrap().to_string_lossy();
    let torrent = dir.join(format!("{name}.torrent"));
    let mut command = peer(dir, "u3");
    command
        .arg("publish")
        .arg(content)
        .arg("--tracker")
        .arg(announce(tracker))
        .arg("--output")
        .arg(&torrent);
    (command, torrent)
}

/// Publishes `content` as u3 without seeding and lets u1 read it; returns the torrent.
pub async fn publish_readable(tracker: &TestTracker, dir: &Path, content: &Path) -> PathBuf {
    publish_readable_with(tracker, dir, content, &[]).await
}

/// As [`publish_readable`], with `args` added to `peer publish`.
pub async fn publish_readable_with(
    tracker: &TestTracker,
    dir: &Path,
    content: &Path,
    args: &[&str],
) -> PathBuf {
    let (mut publish, torrent) = publish_command(tracker, dir, content);
    run_ok(publish.arg("--no-seed").args(args), STEP_TIMEOUT, "publish").await;
    set_authority(tracker, &info_hash_of(&torrent), 3).await;
    torrent
}

/// As [`publish`], also returning the address the seeder listens on.
pub async fn publish_seeding(
    tracker: &TestTracker,
    dir: &Path,
    content: &Path,
) -> (Child, PathBuf, std::net::SocketAddr) {
    publish_seeding_with(tracker, dir, content, &[]).await
}

/// As [`publish_seeding`], with `args` added to `peer publish`.
pub async fn publish_seeding_with(
    tracker: &TestTracker,
    dir: &Path,
    content: &Path,
    args: &[&str],
) -> (Child, PathBuf, std::net::SocketAddr) {
    let (mut publish, torrent) = publish_command(tracker, dir, content);
    let mut child = publish.args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("seeding on ") {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("publish ended without seeding");
    })
    .await
    .expect("publish did not start seeding");
    // Keep draining stdout so the seeder never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, torrent, addr)
}

pub fn info_hash_of(torrent: &Path) -> ivcsd::types::InfoHash {
    ivcsd::metainfo::Metainfo::from_bytes(&std::fs::read(torrent).unwrap())
        .unwrap()
        .info_hash
}

pub struct Outcome {
    pub code: Option<i32>,
    pub stderr: String,
}

/// `peer download` as `user` into `output`, bounded by [`STEP_TIMEOUT`].
pub async fn download(dir: &Path, user: &str, torrent: &Path, output: &Path) -> Outcome {
    let out = tokio::time::timeout(
        STEP_TIMEOUT,
        peer(dir, user)
            .arg("download")
            .arg(torrent)
            .arg("--output")
            .arg(output)
            .output(),
    )
    .await
    .expect("download hung")
    .unwrap();
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `command` to its end within `within`, and asserts that it succeeded (showing its
/// stderr otherwise); `what` names it when it hangs.
pub async fn run_ok(command: &mut Command, within: Duration, what: &str) {
    let out = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {within:?}"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ivcsd admin --tracker URL --user admin ARGS…`, which must succeed.
pub async fn admin(tracker: &TestTracker, args: &[&str]) {
    admin_output(tracker, args).await;
}

/// As [`admin`], returning what it printed.
pub async fn admin_output(tracker: &TestTracker, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .env("IVCSD_PASSWORD", password("admin"))
        .args(["admin", "--tracker", &announce(tracker), "--user", "admin"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}\naudit log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tracker.audit_log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn assign(tracker: &TestTracker, hash: &ivcsd::types::InfoHash, user: &str) {
    admin(tracker, &["relay", "assign", &hash.to_hex(), user]).await;
}

pub async fn unassign(tracker: &TestTracker, hash: &ivcsd::types::InfoHash, user: &str) {
    admin(tracker, &["relay", "unassign", &hash.to_hex(), user]).await;
}

pub async fn set_authority(tracker: &TestTracker, hash: &ivcsd::types::InfoHash, authority: u32) {
    admin(
        tracker,
        &[
            "torrent",
            "set-authority",
            &hash.to_hex(),
            &authority.to_string(),
        ],
    )
    .await;
}

/// Deterministic pseudo-random bytes (xorshift), so no two blocks repeat.
pub fn random_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 3) as u8
        })
        .collect()
}

pub fn random_file(path: &Path, len: usize, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, random_bytes(len, seed)).unwrap();
}

/// `a` and `b` hold the same bytes; for a directory, every file under it (recursively).
pub fn assert_same_file(a: &Path, b: &Path) {
    if a.is_dir() {
        for entry in std::fs::read_dir(a).unwrap() {
            let entry = entry.unwrap();
            assert_same_file(&entry.path(), &b.join(entry.file_name()));
        }
        return;
    }
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The first 16 KiB-aligned block of `plaintext` found anywhere (at any offset) in `haystack`,
/// by a rolling hash over every window of the block length.
pub fn plaintext_block_in(plaintext: &[u8], haystack: &[u8]) -> Option<usize> {
    const BLOCK: usize = 16 * 1024;
    const BASE: u64 = 1_000_003;
    if haystack.len() < BLOCK {
        return None;
    }
    let hash = |w: &[u8]| {
        w.iter().fold(0u64, |h, &b| {
            h.wrapping_mul(BASE).wrapping_add(u64::from(b))
        })
    };
    let mut wanted = std::collections::HashMap::new();
    for (i, block) in plaintext.chunks_exact(BLOCK).enumerate() {
        wanted.entry(hash(block)).or_insert_with(Vec::new).push(i);
    }
    // BASE^(BLOCK-1), to take the leaving byte out of the window.
    let top = (0..BLOCK - 1).fold(1u64, |p, _| p.wrapping_mul(BASE));
    let mut h = hash(&haystack[..BLOCK]);
    let mut start = 0;
    loop {
        if let Some(blocks) = wanted.get(&h) {
            let window = &haystack[start..start + BLOCK];
            for &i in blocks {
                if window == &plaintext[i * BLOCK..(i + 1) * BLOCK] {
                    return Some(i);
                }
            }
        }
        if start + BLOCK >= haystack.len() {
            return None;
        }
        h = h
            .wrapping_sub(u64::from(haystack[start]).wrapping_mul(top))
            .wrapping_mul(BASE)
            .wrapping_add(u64::from(haystack[start + BLOCK]));
        start += 1;
    }
}

/// A running `ivcsd peer relay`, whose JSON log lines the test reads.
pub struct RelayProcess {
    pub child: Child,
    /// Where it accepts peer connections.
    pub addr: std::net::SocketAddr,
    logs: mpsc::UnboundedReceiver<serde_json::Value>,
    /// Every line seen so far, for failure messages.
    seen: Vec<String>,
}

impl RelayProcess {
    /// Starts a relay as `user` and waits until it is ready for SIGHUP.
    pub async fn start(
        tracker: &TestTracker,
        dir: &Path,
        user: &str,
        store: &Path,
        extra: &[&str],
    ) -> RelayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
            .env("IVCSD_PASSWORD", password(user))
            .env("IVCSD_USER", user)
            .env("RUST_LOG", "info")
            .args(["--log-format", "json", "peer", "relay"])
            .arg("--identity")
            .arg(identity(dir, user))
            .args(["--listen", "127.0.0.1:0", "--tracker", &announce(tracker)])
            .arg("--store")
            .arg(store)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, logs) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "fields": { "message": line } }));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        // "relaying for USER on ADDR, store DIR, …"
        let addr = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("relaying for") {
                    let addr = rest
                        .split(" on ")
                        .nth(1)
                        .unwrap()
                        .split(',')
                        .next()
                        .unwrap();
                    return addr.parse().unwrap();
                }
            }
            panic!("the relay ended before it was ready");
        })
        .await
        .expect("the relay did not get ready");
        // Keep reading stdout so the relay never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        RelayProcess {
            child,
            addr,
            logs,
            seen: Vec::new(),
        }
    }

    /// Asks the relay to poll its assignments now.
    pub async fn hup(&self) {
        self.signal("-HUP").await;
    }

    async fn signal(&self, signal: &str) {
        common_tracker::signal(&self.child, signal).await;
    }

    /// Stops the relay as Ctrl-C would (SIGTERM: stopped announces, last resume records) and
    /// waits for it to exit 0.
    pub async fn terminate(mut self) {
        self.signal("-TERM").await;
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("the relay did not stop")
            .unwrap();
        assert!(status.success(), "relay exited with {status}");
    }

    /// Waits for a log line with `message` whose fields satisfy `matches`, and returns its
    /// fields.
    pub async fn wait_for(
        &mut self,
        message: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let found = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(line) = self.logs.recv().await {
                self.seen.push(line.to_string());
                let fields = &line["fields"];
                if fields["message"] == message && matches(fields) {
                    return Some(fields.clone());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(fields)) => fields,
            Ok(None) => panic!(
                "the relay exited before logging {message:?}; its log:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "no {message:?} from the relay within {STEP_TIMEOUT:?}; its log:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for a log line about torrent `hash` with `message`.
    pub async fn wait_for_torrent(
        &mut self,
        message: &str,
        hash: &ivcsd::types::InfoHash,
    ) -> serde_json::Value {
        let hex = hash.to_hex();
        self.wait_for(message, |f| f["info_hash"] == hex.as_str())
            .await
    }

    /// Whether a line about `hash` with `message` was read already (by an earlier wait).
    pub fn logged(&self, message: &str, hash: &ivcsd::types::InfoHash) -> bool {
        let hex = hash.to_hex();
        self.seen.iter().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v["fields"]["message"] == message && v["fields"]["info_hash"] == hex.as_str()
            })
        })
    }
}
