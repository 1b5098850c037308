//! The tracker binary with its data directory (database, master key, audit log) on a tiny
//! tmpfs that fills up and frees again: with the default `audit_on_failure = "refuse"` it
//! answers 503 "audit log unavailable; try again later" while the audit log cannot be written
//! (no content key handed out), serves again once there is room, and its log's hash chain
//! verifies afterwards (docs/security.md, "Audit log").
//!
//! The tracker runs in its own user and mount namespace (`unshare -rm`, as the full-disk test
//! of tests/it/faults.rs does). A shell in that namespace mounts the tmpfs, starts the tracker,
//! and then takes commands on its stdin (`fill`, `free`, `stop`); when the tracker has
//! stopped it copies the data directory to the real disk for the checks.

use crate::common_tracker;

use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use crate::common_tracker::*;
use hyper::Method;
use ivcsd::crypto::identity::{CipherTarget, Identity};
use ivcsd::metainfo::Metainfo;
use ivcsd::peer::download::content_key;
use ivcsd::peer::node::PeerNode;
use ivcsd::peer::tracker_client::{TrackerClient, TrackerError};
use ivcsd::types::KeyId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// The public reason of a refusal while the audit log cannot be written.
const UNAVAILABLE: &str = "audit log unavailable; try again later";

/// `$1` the data directory (mounted here), `$2` where to copy it at the end, then the tracker
/// command. Answers each command on stdin with one line on stdout.
const SCRIPT: &str = r#"
data="$1"; saved="$2"; shift 2
mount -t tmpfs -o size=2m tmpfs "$data" || exit 99
# The tracker dies with this shell (whose parent, the test, kills it when it fails).
setpriv --pdeathsig KILL -- "$@" >/dev/null &
pid=$!
echo started
while read -r cmd; do
  case "$cmd" in
    fill) cat /dev/zero > "$data/filler" 2>/dev/null; echo filled ;;
    free) rm -f "$data/filler"; echo freed ;;
    stop) kill -TERM "$pid"; break ;;
  esac
done
wait "$pid"; status=$?
cp -a "$data"/. "$saved"/
exit "$status"
"#;

/// The shell in the namespace: commands in, one answer line each out.
struct Namespace {
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Namespace {
    async fn tell(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
    }

    async fn ask(&mut self, command: &str, answer: &str) {
        self.tell(command).await;
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command}"))
            .unwrap();
        assert_eq!(line.as_deref(), Some(answer), "answer to {command}");
    }
}

/// Asks `f` again every 100 ms until it gives a 503 (`expect_503`) or a 200; at most `tries`.
async fn until(tries: usize, expect_503: bool, mut f: impl AsyncFnMut() -> Answer) -> usize {
    for i in 0..tries {
        let answer = f().await;
        if (answer.status == 503) == expect_503 {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {} after {tries} tries",
        if expect_503 { 503 } else { 200 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_audit_log_refuses_requests_until_there_is_room_again() {
    if let Err(reason) = can_mount_tmpfs() {
        eprintln!("skipping: no private tmpfs mount here ({reason})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let data = dir.path().join("data");
    let saved = dir.path().join("saved");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&saved).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Monitoring must see the outage: the metrics listener answers through it.
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("tracker.toml");
    std::fs::write(&config, format!("metrics_listen = \"{metrics}\"\n")).unwrap();
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(&data)
        .arg(&saved)
        .arg(env!("CARGO_BIN_EXE_ivcsd"))
        .args(["--quiet", "tracker", "--config"])
        .arg(&config)
        .arg("--authority")
        .arg(&authority)
        .args(["--listen", &addr.to_string(), "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ns = Namespace {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
    };
    // The tracker's log (warnings and errors) is read all along, so it never blocks on a
    // full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let started = ns.stdout.next_line().await.unwrap();
    assert_eq!(started.as_deref(), Some("started"));
    wait_until_answering(addr).await;
    let t = TestTracker::attach(addr, tempfile::tempdir().unwrap(), test_config(&data));

    // Room on the disk: publish, announce, get the key.
    let p = t.publish("u1", b"logged or not handed out").await;
    let mut answered_announces = 1;
    t.announce("u1", &p.info_hash, 6881, 0).await.ok();
    let getcipher = async || {
        let target = CipherTarget::Torrent(p.info_hash);
        t.getcipher("u1", target, key2048(), now(), &fresh_nonce())
            .await
    };
    getcipher().await.ok();
    // A second torrent, ready to publish (its pending key is stored while there is room).
    let answer = t
        .getcipher("u1", CipherTarget::New, key2048(), now(), &fresh_nonce())
        .await
        .ok();
    let key_id = KeyId::from_slice(&answer.bytes("key id")).unwrap();
    let second_key = key2048().unwrap_content_key(&answer.bytes("key")).unwrap();
    let second_file = dir.path().join("second");
    std::fs::write(&second_file, b"published only once it can be logged").unwrap();
    let second = ivcsd::metainfo::create_encrypted(
        &second_file,
        &second_key,
        key_id,
        &format!("http://{addr}/announce"),
        None,
    )
    .unwrap();
    let second_hash = second.metainfo.info_hash;
    let publish_second = async || {
        t.post(&format!("/publish?{}", creds("u1")), second.bytes.clone())
            .await
    };

    // Full: the last page of audit.log may still take a few lines; then every request is
    // refused, and none of them is answered as if it were recorded. The first getcipher
    // whose line does not fit took its place before the writer failed: it waits for its line,
    // is answered 503 without the key, and the log says so once it can (checked at the end).
    ns.ask("fill", "filled").await;
    let mut withheld = None;
    for _ in 0..200 {
        let answer = getcipher().await;
        if answer.status == 503 {
            withheld = Some(answer);
            break;
        }
        assert_eq!(answer.status, 200);
    }
    let withheld = withheld.expect("a getcipher was still answered after 200 tries");
    assert_eq!(withheld.failure().as_deref(), Some(UNAVAILABLE));
    assert!(!String::from_utf8_lossy(&withheld.body).contains("key"));
    answered_announces += until(200, true, async || {
        t.announce("u1", &p.info_hash, 6881, 0).await
    })
    .await;
    let announce = t.announce("u1", &p.info_hash, 6881, 0).await;
    assert_eq!(announce.status, 503);
    assert_eq!(announce.failure().as_deref(), Some(UNAVAILABLE));
    let refused = getcipher().await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.failure().as_deref(), Some(UNAVAILABLE));
    assert!(!String::from_utf8_lossy(&refused.body).contains("key"));
    let refused = publish_second().await;
    assert_eq!(
        (refused.status, refused.failure().as_deref()),
        (503, Some(UNAVAILABLE))
    );
    let admin = t.admin(Method::GET, "torrents", "").await;
    assert_eq!(
        (admin.status, admin.failure().as_deref()),
        (503, Some(UNAVAILABLE))
    );
    let during = metrics_when(metrics, "ivcsd_audit_refusing", |v| v == 1).await;
    assert_eq!(metrics_sample(&during, "ivcsd_audit_failing"), 1);
    assert!(metrics_sample(&during, "ivcsd_audit_unavailable_total") >= 4);

    // A peer is told the tracker is temporarily unavailable, not refused, and waits for the
    // key instead of giving up.
    let identity = Arc::new(
        Identity::from_pkcs8_pem(
            &std::fs::read_to_string(common_tracker::data("rsa2048.pem")).unwrap(),
        )
        .unwrap(),
    );
    let client = TrackerClient::new(
        &format!("http://{addr}/announce"),
        "u1",
        Zeroizing::new(password("u1")),
    )
    .unwrap();
    let node = PeerNode::start(
        client,
        Some(identity.clone()),
        "127.0.0.1:0".parse().unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let asked = node
        .tracker
        .get_cipher(&identity, CipherTarget::Torrent(p.info_hash))
        .await;
    assert!(
        matches!(&asked, Err(TrackerError::Unavailable(r)) if r == UNAVAILABLE),
        "{asked:?}"
    );
    let metainfo = Metainfo::from_bytes(&p.torrent).unwrap();
    let waiting = tokio::spawn(async move { content_key(&node, &metainfo).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "the peer gave up on an unavailable tracker"
    );

    // Room again: within the writer's backoff (at most 5 s) everything is answered.
    ns.ask("free", "freed").await;
    let key = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the waiting peer never got its key")
        .unwrap()
        .unwrap();
    assert_eq!(key.as_bytes(), p.key.as_bytes());
    until(200, false, async || {
        t.announce("u1", &p.info_hash, 6881, 0).await
    })
    .await;
    answered_announces += 1;
    let after = metrics_when(metrics, "ivcsd_audit_refusing", |v| v == 0).await;
    assert_eq!(metrics_sample(&after, "ivcsd_audit_failing"), 0);
    let answer = getcipher().await.ok();
    let key = key2048().unwrap_content_key(&answer.bytes("key")).unwrap();
    assert_eq!(key.as_bytes(), p.key.as_bytes());
    // The refused publish stored nothing; published now, it is.
    let torrent_path = format!("/torrent?{}&info_hash={}", creds("u1"), enc(&second_hash.0));
    let stored = || t.get(&torrent_path);
    assert_eq!(stored().await.status, 404);
    let published = publish_second().await.ok();
    assert_eq!(published.bytes("info hash"), second_hash.0);
    assert_eq!(stored().await.status, 200);

    ns.tell("stop").await;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the tracker did not stop")
        .unwrap();
    let log = log.await.unwrap();
    assert!(status.success(), "{status}: {log}");
    // Logged once when the failure began and once when it ended, not per retry.
    assert_eq!(log.matches("error writing audit log").count(), 1, "{log}");
    assert_eq!(log.matches("audit log writable again").count(), 1, "{log}");

    // The chain is whole, and every announce that was answered is in it.
    let audit_log = saved.join("audit.log");
    let verify = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(["admin", "audit", "verify"])
        .arg(&audit_log)
        .output()
        .await
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = std::fs::read_to_string(&audit_log).unwrap();
    let allowed_announces = text
        .lines()
        .filter(|l| l.contains("\"endpoint\":\"announce\"") && l.contains("\"decision\":\"allow\""))
        .count();
    assert_eq!(allowed_announces, answered_announces, "{text}");
    assert!(
        !text.contains(UNAVAILABLE),
        "refusals that could not be logged are not logged"
    );
    // The key whose line was queued but not written in time: its line says it was handed
    // out, and a later one that the answer was withheld.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let withdrawals: Vec<_> = lines
        .iter()
        .filter(|l| l["reason"].as_str().unwrap().starts_with("answer withheld"))
        .collect();
    assert_eq!(withdrawals.len(), 1, "{text}");
    let withdrawal = withdrawals[0];
    assert_eq!(withdrawal["endpoint"], "getcipher");
    assert_eq!(withdrawal["decision"], "refuse");
    let reason = withdrawal["reason"].as_str().unwrap();
    let named: u64 = reason
        .strip_prefix("answer withheld: entry ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry named in {reason:?}"));
    let original = lines
        .iter()
        .find(|l| l["seq"] == named)
        .unwrap_or_else(|| panic!("entry {named} is not in the log: {text}"));
    assert_eq!(original["endpoint"], "getcipher");
    assert_eq!(original["decision"], "allow");
    assert!(original["seq"].as_u64() < withdrawal["seq"].as_u64());
}
