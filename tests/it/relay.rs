//! `ivcsd peer relay` with the real binary against a real tracker on 127.0.0.1: the paper's
//! Fig. 11 (A publishes, C relays, A leaves, B downloads from C alone; C holds no plaintext and
//! is refused the key; for both content suites), a restarted relay resuming from its store, a relay repairing rot in
//! its store (`--reverify-every`), unassigning (data kept or deleted) and the `--max-store`
//! refusal.

use std::path::Path;

use crate::common_peer::*;
use crate::common_tracker::{TestTracker, fresh_nonce, key2048, now};
use ivcsd::crypto::content::{Cipher, ContentCipher};
use ivcsd::crypto::identity::CipherTarget;

const MIB: usize = 1024 * 1024;

/// Fig. 11: A (u3) publishes and seeds; the administrator assigns the torrent to relay C;
/// once C has all of it, A stops; the administrator lowers the authority; B (u1) downloads
/// from C alone and gets the identical plaintext. C's store is the ciphertext exactly, holds
/// no block of the plaintext, and C is refused the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fig11_a_publishes_c_relays_b_downloads_from_c_alone() {
    fig11(Cipher::Rc4Plus).await;
}

/// The same with an aes-256-ctr torrent: the relay carries it without knowing the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fig11_with_aes_256_ctr() {
    fig11(Cipher::Aes256Ctr).await;
}

async fn fig11(cipher: Cipher) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("data.bin");
    random_file(&content, 3 * MIB + 5, 11);
    let tracker = TestTracker::start(&users()).await;

    let (mut a, torrent, _) =
        publish_seeding_with(&tracker, dir, &content, &["--cipher", cipher.name()]).await;
    let hash = info_hash_of(&torrent);
    let store = dir.join("c-store");
    let mut c = RelayProcess::start(&tracker, dir, "relay", &store, &[]).await;
    assign(&tracker, &hash, "relay").await;
    c.hup().await;
    let started = c.wait_for_torrent("started carrying", &hash).await;
    assert_eq!(started["from"], "empty store");
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;

    // A leaves: from now on C is the only source.
    a.kill().await.unwrap();
    set_authority(&tracker, &hash, 4).await;
    let b = download(dir, "u1", &torrent, &dir.join("b")).await;
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    assert_same_file(&content, &dir.join("b").join("data.bin"));

    // C's store: the ciphertext exactly as the publisher's key makes it, and no plaintext.
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
    ContentCipher::new(cipher, &key).apply_keystream(0, &mut ciphertext);
    let stored = store.join(hash.to_hex()).join("data").join("data.bin");
    assert!(
        std::fs::read(&stored).unwrap() == ciphertext,
        "the relay keeps the ciphertext exactly as received"
    );
    let files = files_under(&store);
    assert!(
        files.len() >= 3,
        "data, .torrent and resume record: {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert_eq!(
            plaintext_block_in(&plaintext, &bytes),
            None,
            "{} holds a block of the plaintext",
            file.display()
        );
    }
    assert_eq!(
        std::fs::read(
            store
                .join(hash.to_hex())
                .join(format!("{}.torrent", hash.to_hex()))
        )
        .unwrap(),
        std::fs::read(&torrent).unwrap(),
        "the relay keeps the torrent it carries"
    );

    // C never asked for a key, and is refused one.
    let audit = tracker.audit_log();
    assert!(
        !audit
            .lines()
            .any(|l| l.contains("getcipher") && l.contains("\"relay\"")),
        "the relay asked for a key:\n{audit}"
    );
    let refused = tracker
        .getcipher(
            "relay",
            CipherTarget::Torrent(hash),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await;
    assert_eq!(refused.status, 404);
    assert_eq!(
        refused.failure().as_deref(),
        Some("torrent not found or not permitted")
    );
    c.terminate().await;
}

/// A relay stopped and started again takes its pieces from its resume record (and without one,
/// by verifying its store), downloads nothing, and serves a downloader that has no other
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_resumes_from_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("set.bin");
    random_file(&content, 2 * MIB + 123, 12);
    let tracker = TestTracker::start(&users()).await;
    let (mut a, torrent) = publish(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    assign(&tracker, &hash, "relay").await;
    let store = dir.join("c-store");

    // The relay finds the assignment at its first poll, without SIGHUP.
    let mut c = RelayProcess::start(&tracker, dir, "relay", &store, &[]).await;
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;
    c.terminate().await;
    a.kill().await.unwrap();

    let mut c = RelayProcess::start(&tracker, dir, "relay", &store, &[]).await;
    let started = c.wait_for_torrent("started carrying", &hash).await;
    assert_eq!(started["from"], "resume record", "{started}");
    assert_eq!(started["pieces_on_disk"], started["pieces"], "{started}");
    c.terminate().await;

    // Without the resume record, the store is verified instead.
    std::fs::remove_dir_all(store.join(hash.to_hex()).join(".ivcsd")).unwrap();
    let mut c = RelayProcess::start(&tracker, dir, "relay", &store, &[]).await;
    let started = c.wait_for_torrent("started carrying", &hash).await;
    assert_eq!(started["from"], "verified on disk", "{started}");
    assert_eq!(started["pieces_on_disk"], started["pieces"], "{started}");

    set_authority(&tracker, &hash, 1).await;
    let b = download(dir, "u1", &torrent, &dir.join("b")).await;
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    assert_same_file(&content, &dir.join("b").join("set.bin"));
    c.terminate().await;
}

/// `--reverify-every`: a byte flipped in the relay's store is found at the next
/// re-verification; the torrent stops, starts again at once from a resume record without the
/// damaged piece, fetches that piece anew from the seeder, and the store is the ciphertext
/// again, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_fetches_damaged_pieces_again() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("rot.bin");
    random_file(&content, 2 * MIB + 321, 31);
    let tracker = TestTracker::start(&users()).await;
    let (mut a, torrent) = publish(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    assign(&tracker, &hash, "relay").await;
    let store = dir.join("c-store");
    let mut c =
        RelayProcess::start(&tracker, dir, "relay", &store, &["--reverify-every", "2s"]).await;
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;
    c.wait_for_torrent("every piece verified again", &hash)
        .await;

    let data = torrent_dir(&store, &hash).join("data").join("rot.bin");
    let ciphertext = std::fs::read(&data).unwrap();
    // Rot in the second piece (256 KiB pieces), written past the relay's back.
    let mut damaged = ciphertext.clone();
    damaged[300 * 1024] ^= 0x40;
    std::fs::write(&data, &damaged).unwrap();

    let stopped = c
        .wait_for_torrent(
            "a carried torrent stopped on an error; it starts again at the next poll",
            &hash,
        )
        .await;
    let error = stopped["error"].as_str().unwrap();
    assert!(
        error.starts_with("1 of 9 pieces no longer match the torrent (the first: piece 1)"),
        "{error}"
    );
    // Started again at once, not at the next poll a minute later.
    let started = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        c.wait_for_torrent("started carrying", &hash),
    )
    .await
    .expect("the damaged torrent was not started again within 30 s");
    assert_eq!(started["from"], "resume record", "{started}");
    assert_eq!(started["pieces_on_disk"], 8, "{started}");
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;
    assert!(
        std::fs::read(&data).unwrap() == ciphertext,
        "the damage is still there"
    );
    c.terminate().await;
    a.kill().await.unwrap();
}

/// Publishes `len` random bytes as u3 (without seeding) and returns the info hash and size.
async fn published(tracker: &TestTracker, len: usize, seed: u32) -> (ivcsd::types::InfoHash, u64) {
    let p = tracker.publish("u3", &random_bytes(len, seed)).await;
    (p.info_hash, len as u64)
}

fn torrent_dir(store: &Path, hash: &ivcsd::types::InfoHash) -> std::path::PathBuf {
    store.join(hash.to_hex())
}

/// Three 1 MiB assignments and room for two: one is refused with a log line. Unassigning a
/// carried one stops it, deletes its data (`--delete-unassigned`) and makes room for the
/// refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_store_refuses_and_unassign_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tracker = TestTracker::start(&users()).await;
    let mut hashes = Vec::new();
    for seed in 1..=3 {
        hashes.push(published(&tracker, MIB, seed).await.0);
    }
    for hash in &hashes {
        assign(&tracker, hash, "relay").await;
    }
    let store = dir.join("store");
    let max = (2 * MIB + MIB / 2).to_string();
    let mut c = RelayProcess::start(
        &tracker,
        dir,
        "relay",
        &store,
        &["--max-store", &max, "--delete-unassigned"],
    )
    .await;
    let refused = c
        .wait_for(
            "refused an assignment: carrying it would take the store beyond --max-store",
            |_| true,
        )
        .await;
    assert_eq!(refused["bytes"], MIB as u64);
    assert_eq!(refused["carried_bytes"], 2 * MIB as u64, "{refused}");
    let refused_hex = refused["info_hash"].as_str().unwrap().to_owned();
    let refused_hash: ivcsd::types::InfoHash = refused_hex.parse().unwrap();
    let carried: Vec<_> = hashes.iter().filter(|h| **h != refused_hash).collect();
    // The tracker lists assignments in order and the relay takes them in that order, so the
    // refusal comes after the two it carries.
    for hash in &carried {
        assert!(c.logged("started carrying", hash));
        assert!(torrent_dir(&store, hash).exists());
    }
    assert!(!torrent_dir(&store, &refused_hash).exists());

    unassign(&tracker, carried[0], "relay").await;
    c.hup().await;
    let stopped = c.wait_for_torrent("stopped carrying", carried[0]).await;
    assert_eq!(stopped["data"], "deleted");
    assert_eq!(stopped["reason"], "unassigned");
    assert!(!torrent_dir(&store, carried[0]).exists());
    // The room it freed goes to the assignment refused before.
    c.wait_for_torrent("started carrying", &refused_hash).await;
    assert!(torrent_dir(&store, &refused_hash).exists());
    assert!(torrent_dir(&store, carried[1]).exists());
    c.terminate().await;
}

/// By default an unassigned torrent's data stays, and a new assignment resumes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassign_keeps_data_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("kept.bin");
    random_file(&content, MIB + 7, 13);
    let tracker = TestTracker::start(&users()).await;
    let (mut a, torrent) = publish(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    let store = dir.join("store");
    let mut c = RelayProcess::start(&tracker, dir, "relay2", &store, &[]).await;
    assign(&tracker, &hash, "relay2").await;
    c.hup().await;
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;

    unassign(&tracker, &hash, "relay2").await;
    c.hup().await;
    let stopped = c.wait_for_torrent("stopped carrying", &hash).await;
    assert_eq!(stopped["data"], "kept");
    let data = torrent_dir(&store, &hash).join("data").join("kept.bin");
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        std::fs::metadata(&content).unwrap().len()
    );

    // Assigned again with the publisher gone: everything comes from the kept store.
    a.kill().await.unwrap();
    assign(&tracker, &hash, "relay2").await;
    c.hup().await;
    let started = c.wait_for_torrent("started carrying", &hash).await;
    assert_eq!(started["from"], "resume record", "{started}");
    assert_eq!(started["pieces_on_disk"], started["pieces"], "{started}");
    c.terminate().await;
}

/// With the tracker gone, the relay keeps serving what it carries and keeps asking with
/// back-off: a peer that connects still gets the handshake and the full bitfield.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tracker_does_not_stop_the_relay() {
    use ivcsd::peer::peer_id::generate_peer_id;
    use ivcsd::peer::wire::{self, HANDSHAKE_LEN, Handshake, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let content = dir.join("src").join("away.bin");
    random_file(&content, MIB + 3, 14);
    let mut tracker = TestTracker::start(&users()).await;
    let (mut a, torrent) = publish(&tracker, dir, &content).await;
    let hash = info_hash_of(&torrent);
    assign(&tracker, &hash, "relay").await;
    let mut c = RelayProcess::start(&tracker, dir, "relay", &dir.join("store"), &[]).await;
    c.wait_for_torrent(
        "carrying all of it: every ciphertext piece verified and stored",
        &hash,
    )
    .await;
    a.kill().await.unwrap();

    tracker.stop().await;
    c.hup().await;
    c.wait_for(
        "cannot get the relay assignments; still serving what is carried",
        |f| f["carried"] == 1,
    )
    .await;

    let mut peer = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    peer.write_all(&Handshake::new(hash, generate_peer_id()).encode())
        .await
        .unwrap();
    let mut theirs = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(STEP_TIMEOUT, peer.read_exact(&mut theirs))
        .await
        .expect("the relay answers the handshake")
        .unwrap();
    let (theirs, _) = Handshake::decode(&theirs).unwrap().unwrap();
    assert_eq!(theirs.info_hash, hash);
    // Its first message says it has every piece.
    let mut buf = Vec::new();
    let first = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            if let Some((message, _)) = wire::decode(&buf).unwrap() {
                return message.encode();
            }
            let mut chunk = [0u8; 4096];
            let n = peer.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the relay closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the relay sends its pieces");
    let pieces = ivcsd::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info
        .piece_count();
    let full = ivcsd::peer::bitfield::Bitfield::full(pieces);
    assert!(
        first == Message::HaveAll.encode() || first == Message::Bitfield(full.as_bytes()).encode(),
        "{first:?}"
    );
    c.terminate().await;
}

/// A relay whose credentials the tracker refuses says so in one line and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_relay_says_so_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tracker = TestTracker::start(&users()).await;
    let out = tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"))
            .env("IVCSD_PASSWORD", "not the password")
            .env("RUST_LOG", "warn")
            .args([
                "peer",
                "relay",
                "--user",
                "relay",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--identity")
            .arg(identity(dir, "relay"))
            .args(["--tracker", &announce(&tracker)])
            .arg("--store")
            .arg(dir.join("store"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the relay exits")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim().lines().last(),
        Some("error: cannot get the relay assignments: tracker refused: invalid credentials"),
        "{stderr}"
    );
}

/// A bad `--reverify-every` is a usage error (exit status 2) that names the flag and the
/// value, before anything starts.
#[tokio::test]
async fn a_bad_reverify_duration_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["7x", "0s", "d", "-1d"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"))
            .args(["peer", "--user", "relay", "relay"])
            .args(["--tracker", "http://127.0.0.1:9/announce", "--store"])
            .arg(dir.path().join("store"))
            .arg(format!("--reverify-every={bad}"))
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--reverify-every"), "{bad}: {stderr}");
        assert!(stderr.contains(&format!("'{bad}'")), "{bad}: {stderr}");
        assert!(
            !dir.path().join("store").exists(),
            "{bad}: the store was created"
        );
    }
}
