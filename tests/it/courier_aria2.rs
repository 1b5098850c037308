//! A stock BitTorrent client as a courier (docs/protocol.md sections 1 and 5): aria2c, given a
//! relay user's credentials in its tracker URL, downloads an ivcsd torrent from an ivcsd
//! seeder (checking every ciphertext piece against the torrent itself, as any client does),
//! then the seeder leaves and aria2c seeds to an ivcsd downloader that has no other source,
//! which gets the identical plaintext. aria2c never has the key.
//!
//! CI installs aria2 (`.ci/run`). Where `aria2c` is missing and `CI` is not set, the test says
//! so and passes, so a developer without aria2 can still run the suite.

use crate::common_tracker;

use std::path::Path;
use std::process::Stdio;

use crate::common_peer::*;
use crate::common_tracker::{TestTracker, free_port, fresh_nonce, key2048, now, password};
use ivcsd::crypto::identity::CipherTarget;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn aria2c_installed() -> bool {
    std::process::Command::new("aria2c")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// aria2c for `torrent` into `dir`, announcing to our tracker as `user`, seeding forever once
/// complete. A hook prints `bt-download-complete` on its stdout when every piece is verified.
fn aria2c(tracker: &TestTracker, user: &str, torrent: &Path, dir: &Path) -> Command {
    let hook = dir.join("complete.sh");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&hook, "#!/bin/sh\necho \"bt-download-complete $1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Stock clients append their parameters to a URL that carries the credentials
    // (docs/protocol.md 4.1).
    let tracker_url = format!(
        "http://{}/announce?username={}&psw={}",
        tracker.addr,
        common_tracker::enc(user.as_bytes()),
        common_tracker::enc(password(user).as_bytes())
    );
    let mut cmd = Command::new("aria2c");
    cmd.arg("--no-conf=true")
        .arg(format!("--dir={}", dir.join("data").display()))
        .arg(format!("--log={}", dir.join("aria2.log").display()))
        .arg("--log-level=info")
        .arg("--console-log-level=warn")
        .arg("--summary-interval=0")
        .arg("--show-console-readout=false")
        // Seed until killed; the torrent is private, so no DHT, LPD or PEX in any case.
        .arg("--seed-ratio=0.0")
        .arg("--enable-dht=false")
        .arg("--enable-dht6=false")
        .arg("--bt-enable-lpd=false")
        .arg("--enable-peer-exchange=false")
        .arg("--disable-ipv6=true")
        .arg(format!("--listen-port={}", free_port()))
        // Only our tracker, with the courier's credentials.
        .arg(format!("--bt-tracker={tracker_url}"))
        .arg("--bt-exclude-tracker=*")
        .arg("--bt-tracker-connect-timeout=10")
        .arg("--bt-tracker-timeout=10")
        .arg("--file-allocation=none")
        .arg(format!("--on-bt-download-complete={}", hook.display()))
        // Leave if this test process dies without killing it.
        .arg(format!("--stop-with-process={}", std::process::id()))
        .arg(torrent)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn aria2_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("aria2.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2c_carries_ciphertext_from_an_ivcsd_seeder_to_an_ivcsd_downloader() {
    if !aria2c_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "aria2c is not installed; .ci/run installs it (apt-get install aria2)"
        );
        eprintln!("skipping: aria2c is not installed (apt-get install aria2)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("cargo.bin");
    random_file(&content, 2 * 1024 * 1024 + 999, 21);
    let tracker = TestTracker::start(&users()).await;
    let (mut a, torrent) = publish(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    // The courier's user is assigned to carry it: it may announce, never get the key.
    assign(&tracker, &hash, "relay").await;

    // The courier gets the .torrent from the tracker with its credentials, the info hash
    // written as docs/relays.md shows (each pair of hex digits with a `%` before it).
    let escaped: String = hash
        .to_hex()
        .as_bytes()
        .chunks(2)
        .map(|pair| format!("%{}", std::str::from_utf8(pair).unwrap()))
        .collect();
    let fetched = tracker
        .get(&format!(
            "/torrent?info_hash={escaped}&{}",
            common_tracker::creds("relay")
        ))
        .await;
    assert_eq!(fetched.status, 200, "{:?}", fetched.failure());
    assert_eq!(&fetched.body[..], &std::fs::read(&torrent).unwrap()[..]);
    let courier_dir = dir.join("aria2");
    let courier_torrent = dir.join("courier.torrent");
    std::fs::write(&courier_torrent, &fetched.body).unwrap();
    let mut courier = aria2c(&tracker, "relay", &courier_torrent, &courier_dir)
        .spawn()
        .expect("aria2c starts");
    let mut stdout = BufReader::new(courier.stdout.take().unwrap()).lines();
    let completed = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.starts_with("bt-download-complete") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        completed == Ok(true),
        "aria2c did not complete the download; its log ends:\n{}",
        aria2_log(&courier_dir)
    );
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

    // What aria2c holds is the ciphertext exactly (it verified each piece against the
    // torrent's hashes of ciphertext; it has no key to do anything else).
    let plaintext = std::fs::read(&content).unwrap();
    let key = {
        let answer = tracker
            .getcipher(
                "u3",
                CipherTarget::Torrent(hash),
                key2048(),
                now(),
                &fresh_nonce(),
            )
            .await
            .ok();
        key2048().unwrap_content_key(&answer.bytes("key")).unwrap()
    };
    let mut ciphertext = plaintext.clone();
    ivcsd::crypto::content::ContentCipher::new(ivcsd::crypto::content::Cipher::Rc4Plus, &key)
        .apply_keystream(0, &mut ciphertext);
    let carried = std::fs::read(courier_dir.join("data").join("cargo.bin")).unwrap();
    assert!(carried == ciphertext, "aria2c holds the ciphertext");
    assert_eq!(plaintext_block_in(&plaintext, &carried), None);

    // The publisher leaves: aria2c is the only source.
    a.kill().await.unwrap();
    set_authority(&tracker, &hash, 4).await;
    let b = download(dir, "u1", &torrent, &dir.join("b")).await;
    assert_eq!(
        b.code,
        Some(0),
        "{}\naria2c's log ends:\n{}",
        b.stderr,
        aria2_log(&courier_dir)
    );
    assert_same_file(&content, &dir.join("b").join("cargo.bin"));

    // aria2c announced as the relay user with its own parameters, and never asked for a key.
    let audit = tracker.audit_log();
    assert!(
        audit.lines().any(|l| l.contains("\"user\":\"relay\"")
            && l.contains("\"endpoint\":\"announce\"")
            && l.contains("\"decision\":\"allow\"")),
        "{audit}"
    );
    assert!(
        !audit
            .lines()
            .any(|l| l.contains("\"user\":\"relay\"") && l.contains("getcipher")),
        "{audit}"
    );
    courier.start_kill().unwrap();
    let _ = tokio::time::timeout(STEP_TIMEOUT, courier.wait()).await;
}
