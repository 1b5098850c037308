//! The whole flow with the real binary against a real tracker on 127.0.0.1: publish (and
//! seed), refusal while the torrent has the highest authority, the administrator lowers it,
//! downloads with identical plaintext; single- and multi-file; four downloaders at once; a
//! download killed half way that resumes; the aes-256-ctr suite end to end.

use crate::common_peer;
use crate::common_tracker;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common_peer::{
    assert_same_file, download, info_hash_of, publish, publish_seeding_with, random_file,
    set_authority,
};
use crate::common_tracker::{TestTracker, UserSpec, peer_command};
use ivcsd::metainfo::{Cipher, Metainfo};

fn users() -> Vec<UserSpec> {
    vec![
        UserSpec::new("u1", 1),
        UserSpec::new("u3", 3),
        UserSpec::new("u5", 5),
        UserSpec::new("admin", 0).admin(),
    ]
}

async fn full_flow(content: &Path, dir: &Path) {
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent) = publish(&tracker, dir, content).await;
    let name = content.file_name().unwrap();

    // Table II: the new torrent has authority 0; u1 (1) is refused.
    let refused = download(dir, "u1", &torrent, &dir.join("u1-early")).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("tracker refused: torrent not found or not permitted"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "one clear line: {}",
        refused.stderr
    );

    set_authority(&tracker, &info_hash_of(&torrent), 4).await;
    let ok = download(dir, "u1", &torrent, &dir.join("u1")).await;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert_same_file(content, &dir.join("u1").join(name));

    // u5 (5) may not read a torrent of authority 4.
    let refused = download(dir, "u5", &torrent, &dir.join("u5")).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        !dir.join("u5").join(name).exists(),
        "nothing written for a refused peer"
    );

    seeder.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_file_publish_lower_download() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("src").join("data.bin");
    random_file(&content, 3 * 1024 * 1024 + 5, 1);
    full_flow(&content, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_file_publish_lower_download() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("src").join("dataset");
    random_file(&content.join("a.bin"), 1_000_000, 2);
    random_file(&content.join("nested/b.bin"), 2_500_001, 3);
    random_file(&content.join("nested/deeper/c.txt"), 12, 4);
    full_flow(&content, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aes_256_ctr_torrent_is_published_downloaded_and_names_its_suite() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("src").join("fast.bin");
    random_file(&content, 2 * 1024 * 1024 + 77, 9);
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent, _) =
        publish_seeding_with(&tracker, dir.path(), &content, &["--cipher", "aes-256-ctr"]).await;
    let metainfo = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(metainfo.info.ivcsd.unwrap().cipher, Cipher::Aes256Ctr);

    set_authority(&tracker, &metainfo.info_hash, 4).await;
    // The tracker keeps the suite, and shows it to administrators.
    let shown = common_peer::admin_output(
        &tracker,
        &["torrent", "show", &metainfo.info_hash.to_hex(), "--json"],
    )
    .await;
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).unwrap();
    assert_eq!(shown["cipher"], "aes-256-ctr");
    let ok = download(dir.path(), "u1", &torrent, &dir.path().join("u1")).await;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert_same_file(&content, &dir.path().join("u1").join("fast.bin"));
    // Authority rules are the same whatever the suite.
    let refused = download(dir.path(), "u5", &torrent, &dir.path().join("u5")).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    seeder.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_names_another_suite_than_the_torrent_gets_nothing_decrypted() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("src").join("mixed.bin");
    random_file(&content, 300_000, 5);
    let port = common_tracker::free_port();
    let mut tracker = TestTracker::start_on(&users(), &format!("127.0.0.1:{port}")).await;
    let torrent = common_peer::publish_readable_with(
        &tracker,
        dir.path(),
        &content,
        &["--cipher", "aes-256-ctr"],
    )
    .await;
    // The tracker's record of the suite is damaged (or the tracker lies): it now says rc4+.
    tracker.stop().await;
    let db = rusqlite::Connection::open(tracker.config.data_dir.join("tracker.sqlite")).unwrap();
    assert_eq!(
        db.execute("UPDATE torrents SET cipher = 'rc4+'", [])
            .unwrap(),
        1
    );
    drop(db);
    let tracker = tracker.restart().await;
    let refused = download(dir.path(), "u1", &torrent, &dir.path().join("u1")).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "the tracker names cipher rc4+ for this torrent, but the torrent names aes-256-ctr; refusing to decrypt"
        ),
        "{}",
        refused.stderr
    );
    assert!(!dir.path().join("u1").join("mixed.bin").exists());
    drop(tracker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_takes_the_trackers_preferred_suite_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("src").join("site.bin");
    random_file(&content, 100_000, 6);
    let tracker = TestTracker::start_with(&users(), |c| {
        c.publish_ciphers = vec![Cipher::Aes256Ctr, Cipher::Rc4Plus];
    })
    .await;
    let suite_of = |torrent: &Path| {
        let metainfo = Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap();
        metainfo.info.ivcsd.unwrap().cipher
    };
    let preferred = common_peer::publish_readable(&tracker, dir.path(), &content).await;
    assert_eq!(suite_of(&preferred), Cipher::Aes256Ctr);
    // An explicit choice the tracker allows wins (another torrent: the suite is in `info`).
    std::fs::remove_file(&preferred).unwrap();
    let told =
        common_peer::publish_readable_with(&tracker, dir.path(), &content, &["--cipher", "rc4+"])
            .await;
    assert_eq!(suite_of(&told), Cipher::Rc4Plus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_its_progress_up_to_the_whole_size() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("big.bin");
    let len = 70 * 1024 * 1024 + 3;
    random_file(&content, len, 8);
    let tracker = TestTracker::start(&users()).await;
    let identity = Arc::new(
        ivcsd::crypto::identity::Identity::from_pkcs8_pem(
            &std::fs::read_to_string(common_tracker::data("rsa2048.pem")).unwrap(),
        )
        .unwrap(),
    );
    let client = ivcsd::peer::tracker_client::TrackerClient::new(
        &format!("http://{}/announce", tracker.addr),
        "u3",
        zeroize::Zeroizing::new(common_tracker::password("u3")),
    )
    .unwrap();
    let node = ivcsd::peer::node::PeerNode::start(
        client,
        Some(identity),
        "127.0.0.1:0".parse().unwrap(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reports);
    let published =
        ivcsd::peer::publish::publish(&node, &content, None, None, move |done, total| {
            seen.lock().unwrap().push((done, total));
        })
        .await
        .unwrap();
    let reports = reports.lock().unwrap().clone();
    let total = len as u64;
    assert!(
        reports.len() >= 3,
        "a report about every 32 MiB: {reports:?}"
    );
    assert!(reports.iter().all(|&(_, t)| t == total), "{reports:?}");
    assert!(
        reports.windows(2).all(|w| w[0].0 < w[1].0),
        "progress only grows: {reports:?}"
    );
    assert_eq!(reports.last(), Some(&(total, total)));
    assert_eq!(published.metainfo.info.total_length, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cipher_is_a_usage_error_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("data.bin");
    random_file(&content, 1000, 3);
    let out = peer_command(dir.path(), "u3")
        .args([
            "publish",
            "--tracker",
            "http://127.0.0.1:9/announce",
            "--cipher",
            "rc4",
        ])
        .arg(&content)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown cipher \"rc4\" (known: rc4+, aes-256-ctr)"),
        "{stderr}"
    );
    assert!(!dir.path().join("data.bin.torrent").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_downloaders_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 6 * 1024 * 1024, 5);
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent) = publish(&tracker, dir, &content).await;
    set_authority(&tracker, &info_hash_of(&torrent), 1).await;
    let mut running = Vec::new();
    for i in 0..4 {
        let torrent = torrent.clone();
        let out = dir.join(format!("dl{i}"));
        let dir = dir.to_owned();
        running.push(tokio::spawn(async move {
            // Each downloader has its own identity file (same key; the tracker does not mind).
            let user_dir = dir.join(format!("id{i}"));
            std::fs::create_dir_all(&user_dir).unwrap();
            download(&user_dir, "u1", &torrent, &out).await
        }));
    }
    for (i, r) in running.into_iter().enumerate() {
        let outcome = r.await.unwrap();
        assert_eq!(outcome.code, Some(0), "downloader {i}: {}", outcome.stderr);
        assert_same_file(&content, &dir.join(format!("dl{i}")).join("data.bin"));
    }
    seeder.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_download_resumes_and_finishes_identical() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 24 * 1024 * 1024, 6);
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent) = publish(&tracker, dir, &content).await;
    set_authority(&tracker, &info_hash_of(&torrent), 1).await;

    let out = dir.join("dl");
    let target = out.join("data.bin");
    let mut child = peer_command(dir, "u1")
        .arg("download")
        .arg(&torrent)
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no clean stop) once some data has been written.
    let started = tokio::time::Instant::now();
    loop {
        let written = std::fs::read(&target)
            .map(|b| b.iter().filter(|&&x| x != 0).count())
            .unwrap_or(0);
        if written > 1024 * 1024 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;

    let resumed = download(dir, "u1", &torrent, &out).await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_same_file(&content, &target);
    seeder.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_seeder_cleanly_and_announces_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 300_000, 7);
    let tracker = TestTracker::start(&users()).await;
    let (seeder, torrent) = publish(&tracker, dir, &content).await;
    let hash = ivcsd::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash;
    let seeders = |a: &common_tracker::Answer| a.int("complete");
    // The seeder is in the swarm (u3 is the owner and may announce).
    let mut seen = 0;
    for _ in 0..100 {
        seen = seeders(&tracker.announce("u3", &hash, 1, 1).await.ok());
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 1, "the seeder announced itself");

    let pid = seeder.id().unwrap() as i32;
    // SIGINT, as Ctrl-C sends.
    assert_eq!(unsafe_kill(pid, 2), 0);
    let status = tokio::time::timeout(Duration::from_secs(20), seeder.wait_with_output())
        .await
        .expect("the seeder did not stop")
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let after = tracker.announce("u3", &hash, 1, 1).await.ok();
    assert_eq!(seeders(&after), 0, "the seeder announced stopped");
}

/// Sends a signal without a libc dependency in the tests: `kill -s`.
fn unsafe_kill(pid: i32, signal: i32) -> i32 {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tracker_is_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 100_000, 8);
    let tracker = TestTracker::start(&users()).await;
    let (mut seeder, torrent) = publish(&tracker, dir, &content).await;
    seeder.kill().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", closed.local_addr().unwrap());
    drop(closed);
    let out = peer_command(dir, "u1")
        .arg("download")
        .arg(&torrent)
        .arg("--tracker")
        .arg(&url)
        .arg("--output")
        .arg(dir.join("dl"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A broken torrent file is one clear line too.
    std::fs::write(dir.join("broken.torrent"), b"d4:infod4:name1:xee").unwrap();
    let out = peer_command(dir, "u1")
        .arg("download")
        .arg(dir.join("broken.torrent"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: not a valid torrent:"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
