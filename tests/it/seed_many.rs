//! `ivcsd peer seed` with several torrents: one process and one port serve a catalogue, a
//! torrent that cannot be served is reported while the others go on, and invocations that
//! cannot work are refused with one clear line. Real binary, real tracker on 127.0.0.1.

use crate::common_peer;
use crate::common_tracker;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::common_peer::{
    STEP_TIMEOUT, announce, assert_same_file, download, peer, publish_readable, random_file, users,
};
use crate::common_tracker::TestTracker;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

/// A tracker, a scratch directory, and in it `library/`, whose files u3 publishes for u1.
struct Library {
    tracker: TestTracker,
    dir: tempfile::TempDir,
    data: PathBuf,
}

impl Library {
    async fn new() -> Library {
        let tracker = TestTracker::start(&users()).await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("library");
        std::fs::create_dir_all(&data).unwrap();
        Library { tracker, dir, data }
    }

    /// A random file of `len` bytes at `name` in the library.
    fn file(&self, name: &str, len: usize, seed: u32) -> PathBuf {
        let path = self.data.join(name);
        random_file(&path, len, seed);
        path
    }

    /// Publishes `name` (a file or directory of the library) readable by u1: its torrent.
    async fn publish(&self, name: &str) -> PathBuf {
        publish_readable(&self.tracker, self.dir.path(), &self.data.join(name)).await
    }

    /// [`Library::file`], then [`Library::publish`].
    async fn add(&self, name: &str, len: usize, seed: u32) -> PathBuf {
        self.file(name, len, seed);
        self.publish(name).await
    }
}

/// Starts `peer seed TORRENTS --data-dir DATA` as u3 and waits for `expect` "seeding" lines;
/// returns the process (its stderr piped, for [`terminate`]) and those lines.
async fn seed_many(
    dir: &Path,
    torrents: &[&Path],
    data: &Path,
    expect: usize,
) -> (Child, Vec<String>) {
    seed_many_with(dir, &[], torrents, data, expect, &[]).await
}

/// [`seed_many`] with more options of `peer` (before `seed`) and of `seed` (after it).
async fn seed_many_with(
    dir: &Path,
    options: &[&str],
    torrents: &[&Path],
    data: &Path,
    expect: usize,
    seed_options: &[&str],
) -> (Child, Vec<String>) {
    let mut child = peer(dir, "u3")
        .args(options)
        .arg("seed")
        .args(seed_options)
        .args(torrents)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seeding = Vec::new();
    tokio::time::timeout(STEP_TIMEOUT, async {
        while seeding.len() < expect {
            match lines.next_line().await.unwrap() {
                Some(line) if line.starts_with("seeding ") => seeding.push(line),
                Some(_) => {}
                None => panic!("seed ended after {seeding:?}"),
            }
        }
    })
    .await
    .expect("the seeder did not start every torrent");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, seeding)
}

/// [`terminate`], which must end the process with success.
async fn terminate_cleanly(child: Child) {
    let out = terminate(child).await;
    assert!(out.status.success(), "{out:?}");
}

async fn terminate(child: Child) -> Output {
    common_tracker::signal(&child, "-TERM").await;
    tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .expect("the seeder did not stop on SIGTERM")
        .unwrap()
}

/// `peer seed TORRENTS --data-dir DATA` as u3 (`options` before `seed`), which must end on its
/// own: a refusal, a failure. Its output.
async fn seed_until_it_ends(
    dir: &Path,
    options: &[&str],
    torrents: &[&Path],
    data: &Path,
) -> Output {
    tokio::time::timeout(
        STEP_TIMEOUT,
        peer(dir, "u3")
            .args(options)
            .arg("seed")
            .args(torrents)
            .arg("--data-dir")
            .arg(data)
            .output(),
    )
    .await
    .expect("seed hung")
    .unwrap()
}

/// `peer seed TORRENT --data-dir DATA` as u3, with JSON logs down to `info` on stderr (what
/// the resume tests read), before its stdout and stderr are chosen.
fn seed_logging(dir: &Path, torrent: &Path, data: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"));
    command
        .env("IVCSD_PASSWORD", common_tracker::password("u3"))
        .env("IVCSD_USER", "u3")
        .env("RUST_LOG", "info")
        .args(["--log-format", "json", "peer", "--identity"])
        .arg(common_peer::identity(dir, "u3"))
        .args(["--listen", "127.0.0.1:0", "seed"])
        .arg(torrent)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The address in "seeding NAME (HASH) on ADDR until interrupted".
fn address(line: &str) -> &str {
    line.split(" on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
}

#[tokio::test]
async fn one_process_seeds_three_torrents_and_each_downloads_identical() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    library.file("survey.bin", 3 * 1024 * 1024 + 77, 1);
    library.file("small.bin", 40_000, 2);
    library.file("scans/a.tif", 700_000, 3);
    library.file("scans/b.tif", 1_200_000, 4);
    let mut torrents = Vec::new();
    for name in ["survey.bin", "small.bin", "scans"] {
        torrents.push(library.publish(name).await);
    }
    let refs: Vec<&Path> = torrents.iter().map(PathBuf::as_path).collect();
    let (seeder, seeding) = seed_many(dir.path(), &refs, &data, 3).await;
    assert!(
        seeding.iter().all(|l| address(l) == address(&seeding[0])),
        "one port for all: {seeding:?}"
    );

    let out = dir.path().join("out");
    for torrent in &torrents {
        let got = download(dir.path(), "u1", torrent, &out).await;
        assert_eq!(got.code, Some(0), "{}", got.stderr);
    }
    assert_same_file(&data.join("survey.bin"), &out.join("survey.bin"));
    assert_same_file(&data.join("small.bin"), &out.join("small.bin"));
    assert_same_file(&data.join("scans/a.tif"), &out.join("scans/a.tif"));
    assert_same_file(&data.join("scans/b.tif"), &out.join("scans/b.tif"));
    terminate_cleanly(seeder).await;
}

#[tokio::test]
async fn a_torrent_whose_data_is_missing_is_reported_and_the_others_are_seeded() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let kept = library.add("kept.bin", 500_000, 5).await;
    let moved = library.add("moved.bin", 500_000, 6).await;
    std::fs::rename(data.join("moved.bin"), dir.path().join("elsewhere.bin")).unwrap();

    let (seeder, seeding) = seed_many(dir.path(), &[&moved, &kept], &data, 1).await;
    assert!(seeding[0].starts_with("seeding kept.bin "), "{seeding:?}");
    let out = dir.path().join("out");
    let got = download(dir.path(), "u1", &kept, &out).await;
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    assert_same_file(&data.join("kept.bin"), &out.join("kept.bin"));
    let stopped = terminate(seeder).await;
    assert!(stopped.status.success(), "{stopped:?}");
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        stderr.contains("error: cannot seed moved.bin: "),
        "one line for the torrent that could not start:\n{stderr}"
    );

    // With nothing left to serve the command fails.
    std::fs::remove_file(data.join("kept.bin")).unwrap();
    let out = seed_until_it_ends(dir.path(), &[], &[&moved, &kept], &data).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("none of the 2 torrents could be seeded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn seed_invocations_that_cannot_work_are_refused_with_one_line() {
    let tracker = TestTracker::start(&users()).await;
    let other_tracker = TestTracker::start(&users()).await;
    let dir = tempfile::tempdir().unwrap();
    random_file(&dir.path().join("a.bin"), 50_000, 7);
    random_file(&dir.path().join("b.bin"), 50_000, 8);
    let a = publish_readable(&tracker, dir.path(), &dir.path().join("a.bin")).await;
    let b = publish_readable(&tracker, dir.path(), &dir.path().join("b.bin")).await;
    let c = {
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        random_file(&elsewhere.join("c.bin"), 50_000, 9);
        publish_readable(&other_tracker, &elsewhere, &elsewhere.join("c.bin")).await
    };
    let data = dir.path().to_str().unwrap();
    let (a, b, c) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c.to_str().unwrap(),
    );
    macro_rules! refused {
        ($($args:expr => $code:expr, $message:expr;)*) => {$(
            let out = tokio::time::timeout(
                STEP_TIMEOUT,
                peer(dir.path(), "u3").arg("seed").args($args).output(),
            )
            .await
            .expect("seed hung")
            .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some($code), "{:?}: {stderr}", $args);
            assert!(stderr.contains($message), "{:?}: {stderr}", $args);
        )*};
    }
    refused! {
        [a, b, "--data", data] => 1, "--data is the content of one torrent; for 2 torrents pass --data-dir DIR";
        [a, a, "--data-dir", data] => 1, "are the same torrent";
        [a, c, "--data-dir", data] => 1, "one process serves one tracker";
        [a, b] => 2, "--data";
        [a, "--data", data, "--data-dir", data] => 2, "cannot be used with";
        ["--torrent-dir", data, "--data-dir", data] => 2, "--tracker";
        ["--torrent-dir", a, "--data-dir", data, "--tracker", "http://127.0.0.1:1/announce"]
            => 1, "is not a directory";
        [a, "--torrent-dir", data, "--data-dir", data, "--tracker", "http://127.0.0.1:1/announce"]
            => 2, "cannot be used with";
    }
}

/// The next line that starts with `prefix`; the lines before it are skipped.
async fn line_with<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    prefix: &str,
) -> String {
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line.starts_with(prefix) => return line,
                Some(_) => {}
                None => panic!("the seeder ended before printing {prefix:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line {prefix:?}"))
}

/// `peer seed --torrent-dir DIR`: what DIR holds is seeded; SIGHUP reads it again, so a torrent
/// dropped in starts and a removed one stops, without restarting the process.
#[tokio::test]
async fn a_torrent_directory_is_read_again_on_sighup() {
    let library = Library::new().await;
    let (tracker, dir, data) = (&library.tracker, &library.dir, library.data.clone());
    let torrents = dir.path().join("torrents");
    std::fs::create_dir_all(&torrents).unwrap();
    let first = library.add("first.bin", 300_000, 11).await;
    let second = library.add("second.bin", 200_000, 12).await;
    std::fs::copy(&first, torrents.join("first.bin.torrent")).unwrap();
    // Not a torrent: reported once per reading, and the rest goes on.
    std::fs::write(torrents.join("broken.torrent"), b"d4:infoi1ee").unwrap();
    // Nor is a huge file: refused by its size, never read whole (sparse: no disk used).
    std::fs::File::create(torrents.join("huge.torrent"))
        .unwrap()
        .set_len(ivcsd::metainfo::file::MAX_TORRENT_FILE + 1)
        .unwrap();

    let mut seeder = peer(dir.path(), "u3")
        .arg("seed")
        .arg("--torrent-dir")
        .arg(&torrents)
        .arg("--data-dir")
        .arg(&data)
        .arg("--tracker")
        .arg(announce(tracker))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(seeder.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(seeder.stderr.take().unwrap()).lines();
    line_with(&mut out, "seeding first.bin ").await;
    line_with(&mut out, "seeding 1 torrents of ").await;
    let broken = line_with(&mut err, "error: cannot seed ").await;
    assert!(
        broken.contains("broken.torrent: not a valid torrent: "),
        "{broken}"
    );
    let huge = line_with(&mut err, "error: cannot seed ").await;
    assert!(huge.contains("huge.torrent: larger than "), "{huge}");

    // A torrent dropped in starts; the first goes on.
    std::fs::copy(&second, torrents.join("second.bin.torrent")).unwrap();
    common_tracker::signal(&seeder, "-HUP").await;
    line_with(&mut out, "seeding second.bin ").await;
    line_with(&mut out, "seeding 2 torrents of ").await;
    let got = dir.path().join("got");
    for torrent in [&first, &second] {
        let outcome = download(dir.path(), "u1", torrent, &got).await;
        assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    }
    assert_same_file(&data.join("first.bin"), &got.join("first.bin"));
    assert_same_file(&data.join("second.bin"), &got.join("second.bin"));

    // A torrent whose file is removed stops.
    std::fs::remove_file(torrents.join("first.bin.torrent")).unwrap();
    common_tracker::signal(&seeder, "-HUP").await;
    let stopped = line_with(&mut err, "stopped seeding first.bin ").await;
    assert!(stopped.ends_with("its torrent file is gone"), "{stopped}");
    line_with(&mut out, "seeding 1 torrents of ").await;

    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    common_tracker::terminate_ok(&mut seeder, "the seeder").await;
}

/// A seeder that verified its data writes a resume record next to it; started again with the
/// files unchanged it trusts the record instead of hashing everything (minutes to hours for
/// terabytes), unless told `--recheck`; with changed data it verifies again and refuses.
#[tokio::test]
async fn a_restarted_seeder_trusts_its_resume_record_until_the_data_changes() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let torrent = library.add("survey.bin", 700_000, 21).await;
    let start = |extra: &[&str]| {
        seed_logging(dir.path(), &torrent, &data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let serve_and_stop = async |mut child: Child| -> String {
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        line_with(&mut out, "seeding survey.bin (").await;
        let stopped = terminate(child).await;
        assert!(stopped.status.success(), "{stopped:?}");
        String::from_utf8_lossy(&stopped.stderr).into_owned()
    };

    let first = serve_and_stop(start(&[])).await;
    assert!(
        first.contains("verifying the data already on disk"),
        "{first}"
    );
    let record = data.join(".ivcsd").join(format!(
        "{}.resume",
        common_peer::info_hash_of(&torrent).to_hex()
    ));
    assert!(record.is_file(), "no resume record at {}", record.display());

    let second = serve_and_stop(start(&[])).await;
    assert!(
        second.contains("resuming from the resume record"),
        "{second}"
    );
    assert!(
        !second.contains("verifying the data already on disk"),
        "{second}"
    );
    // --recheck verifies all the same.
    let third = serve_and_stop(start(&["--recheck"])).await;
    assert!(
        third.contains("verifying the data already on disk"),
        "{third}"
    );

    // Same size, other bytes, a new modification time: verified again, and refused.
    random_file(&data.join("survey.bin"), 700_000, 22);
    // Set apart explicitly: a file system with coarse timestamps could keep the old one.
    std::fs::File::options()
        .write(true)
        .open(data.join("survey.bin"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    let refused = tokio::time::timeout(STEP_TIMEOUT, start(&[]).wait_with_output())
        .await
        .expect("seed hung")
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not match the torrent: ") && stderr.contains("pieces differ"),
        "{stderr}"
    );
}

/// SIGTERM while a seeder verifies its data (the first start of a large dataset, or
/// `--recheck`) ends it with one clear line. That the verification itself stops early, instead
/// of reading the rest, is `storage.rs`'s `damaged_data_and_bad_ranges_are_reported` test.
#[tokio::test]
async fn a_seeder_stopped_while_it_verifies_exits_with_one_clear_line() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    // Large enough that verifying it (in a debug build) outlasts the signal by far.
    let torrent = library.add("big.bin", 48 << 20, 31).await;
    let mut seeder = seed_logging(dir.path(), &torrent, &data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(seeder.stderr.take().unwrap()).lines();
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            let line = log.next_line().await.unwrap().expect("the seeder ended");
            if line.contains("verifying the data already on disk") {
                return;
            }
        }
    })
    .await
    .expect("the seeder never started verifying");
    common_tracker::signal(&seeder, "-TERM").await;
    let mut rest = String::new();
    while let Ok(Some(line)) = log.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = tokio::time::timeout(STEP_TIMEOUT, seeder.wait())
        .await
        .expect("the seeder did not stop")
        .unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(
        rest.contains("stopped while verifying the data on disk"),
        "{rest}"
    );
}

#[tokio::test]
async fn a_torrent_whose_data_changes_under_the_seeder_stops_and_the_others_go_on() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let steady = library.add("steady.bin", 600_000, 7).await;
    let rewritten = library.add("rewritten.bin", 600_000, 8).await;
    let metrics = format!("127.0.0.1:{}", common_tracker::free_port());
    let options = ["--metrics-listen", metrics.as_str()];
    let torrents = [steady.as_path(), rewritten.as_path()];
    let (mut seeder, _) = seed_many_with(dir.path(), &options, &torrents, &data, 2, &[]).await;
    let mut stderr = BufReader::new(seeder.stderr.take().unwrap()).lines();

    // Rewritten in place while seeded: same name and size, other bytes.
    random_file(&data.join("rewritten.bin"), 600_000, 9);
    let mut doomed = peer(dir.path(), "u1")
        .arg("download")
        .arg(&rewritten)
        .arg("--output")
        .arg(dir.path().join("doomed"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stopped = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match stderr.next_line().await.unwrap() {
                Some(line) if line.starts_with("stopped seeding rewritten.bin") => break line,
                Some(_) => {}
                None => panic!("the seeder ended without reporting the change"),
            }
        }
    })
    .await
    .expect("the seeder went on serving changed data");
    assert!(
        stopped.contains("rewritten.bin changed on disk while it was being seeded"),
        "{stopped}"
    );
    doomed.kill().await.unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    // Counted, though the stopped torrent has left the process: what an alert needs.
    let page = common_tracker::metrics_when(
        metrics.parse().unwrap(),
        "ivcsd_peer_torrents_failed_total",
        |n| n == 1,
    )
    .await;
    assert_eq!(
        common_tracker::metrics_sample(&page, "ivcsd_peer_torrents{state=\"complete\"}"),
        1
    );

    // The other torrent is still served.
    let out = dir.path().join("out");
    let got = download(dir.path(), "u1", &steady, &out).await;
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    assert_same_file(&data.join("steady.bin"), &out.join("steady.bin"));
    terminate_cleanly(seeder).await;
}

#[tokio::test]
async fn a_seeders_metrics_show_what_it_served() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let len = 700_000;
    let torrent = library.add("served.bin", len, 11).await;
    let metrics = format!("127.0.0.1:{}", common_tracker::free_port());
    let options = ["--metrics-listen", metrics.as_str()];
    let (seeder, _) = seed_many_with(dir.path(), &options, &[&torrent], &data, 1, &[]).await;
    let addr = metrics.parse().unwrap();
    let (status, text) = common_tracker::scrape_metrics(addr, hyper::Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    let before = |series: &str| common_tracker::metrics_sample(&text, series);
    assert_eq!(before("ivcsd_peer_uploaded_bytes_total"), 0);
    assert_eq!(before("ivcsd_peer_torrents{state=\"complete\"}"), 1);
    assert_eq!(before("ivcsd_peer_torrents{state=\"incomplete\"}"), 0);
    assert_eq!(
        before("ivcsd_peer_content_bytes{state=\"have\"}"),
        len as u64
    );
    assert_eq!(
        before("ivcsd_peer_content_bytes{state=\"total\"}"),
        len as u64
    );
    assert_eq!(before("ivcsd_peer_torrents_failed_total"), 0);

    let out = dir.path().join("out");
    let got = download(dir.path(), "u1", &torrent, &out).await;
    assert_eq!(got.code, Some(0), "{}", got.stderr);
    // Every byte went out at least once (a block may go twice at the very end).
    let text =
        common_tracker::metrics_when(addr, "ivcsd_peer_uploaded_bytes_total", |n| n > 0).await;
    let after = |series: &str| common_tracker::metrics_sample(&text, series);
    let sent = after("ivcsd_peer_uploaded_bytes_total");
    assert!((len as u64..2 * len as u64).contains(&sent), "{sent}");
    assert_eq!(after("ivcsd_peer_downloaded_bytes_total"), 0);
    assert_eq!(after("ivcsd_peer_pieces_rejected_total"), 0);
    assert_eq!(after("ivcsd_peer_banned"), 0);
    terminate_cleanly(seeder).await;
}

#[tokio::test]
async fn a_taken_metrics_address_stops_the_seeder_with_one_line() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let torrent = library.add("x.bin", 1000, 12).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let options = ["--metrics-listen", addr.as_str()];
    let out = seed_until_it_ends(dir.path(), &options, &[&torrent], &data).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .trim()
            .starts_with(&format!("error: error listening for metrics on {addr}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn data_damaged_in_place_is_found_by_the_periodic_verification() {
    let library = Library::new().await;
    let (dir, data) = (&library.dir, library.data.clone());
    let torrent = library.add("archive.bin", 600_000, 13).await;
    let every = ["--reverify-every", "1s"];
    let (mut seeder, _) = seed_many_with(dir.path(), &[], &[&torrent], &data, 1, &every).await;
    // Rot: one byte flipped, the size and the modification time kept, so that only hashing
    // the data again can tell.
    let path = data.join("archive.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[400_000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let mut stderr = String::new();
    tokio::time::timeout(STEP_TIMEOUT, async {
        seeder
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
    })
    .await
    .expect("the seeder went on serving damaged data")
    .unwrap();
    let status = seeder.wait().await.unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 3 pieces no longer match the torrent (the first: piece 1)"),
        "{stderr}"
    );
    // The resume record, which would let a restart trust the damaged data (its size and
    // modification time are unchanged), is gone: the next start hashes everything and refuses.
    let record = data.join(".ivcsd").join(format!(
        "{}.resume",
        common_peer::info_hash_of(&torrent).to_hex()
    ));
    assert!(!record.exists(), "{} is still there", record.display());
    let again = seed_until_it_ends(dir.path(), &[], &[&torrent], &data).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("1 of 3 pieces differ or are missing"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
