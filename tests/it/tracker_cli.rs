//! `ivcsd admin --tracker URL …` and `ivcsd tracker` as processes, against real trackers.

use std::process::Output;
use std::time::Duration;

use crate::common_tracker::*;
use ivcsd::crypto::identity::CipherTarget;
use tokio::process::Command;

async fn ivcsd(args: &[&str], password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(args)
        .env("IVCSD_PASSWORD", password)
        .env_remove("IVCSD_USER")
        .env_remove("IVCSD_TRACKER")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn admin_cli_lists_shows_sets_authority_assigns_relays_and_reads_the_audit() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"cli data").await;
    let url = format!("http://{}/announce", t.addr);
    let hash = p.info_hash.to_hex();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--tracker", &url, "--user", "admin"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, pw: String| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ivcsd(&refs, &pw).await
    };

    let o = run(admin(&["torrent", "list"]), password("admin")).await;
    assert!(o.status.success(), "{} {}", stderr(&o), t.audit_log());
    let out = stdout(&o);
    assert!(out.contains(&hash) && out.contains("u3"), "{out}");
    let line = out.lines().find(|l| l.starts_with(&hash)).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.get(5), Some(&"rc4+"), "the cipher column: {line}");

    let o = run(
        admin(&["torrent", "set-authority", &hash, "4"]),
        password("admin"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("authority of {hash}: 0 -> 4"));

    let o = run(
        admin(&["relay", "assign", &hash, "relay"]),
        password("admin"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("relay relay assigned for {hash}")
    );

    let o = run(admin(&["torrent", "show", &hash]), password("admin")).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("authority:   4")
            && out.contains("cipher:      rc4+")
            && out.contains("relays:      relay"),
        "{out}"
    );

    let o = run(admin(&["audit"]), password("admin")).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("authority 0 -> 4"));

    // For scripts: one JSON object a line, the same for one torrent.
    let o = run(admin(&["torrent", "list", "--json"]), password("admin")).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    let listed = &lines[0];
    assert_eq!(listed["info_hash"], hash.as_str());
    assert_eq!(listed["owner"], "u3");
    assert_eq!(listed["authority"], 4);
    assert_eq!(listed["size"], b"cli data".len());
    assert_eq!(listed["relays"], serde_json::json!(["relay"]));
    assert_eq!(listed["seeders"], 0);
    assert_eq!(listed["cipher"], "rc4+");
    let o = run(
        admin(&["torrent", "show", &hash, "--json"]),
        password("admin"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(&shown, listed);

    // failures: one clear line, exit 1
    let o = run(admin(&["torrent", "list"]), "wrong".into()).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: tracker refused: invalid credentials"
    );
    let o = run(admin(&["torrent", "show", "abc"]), password("admin")).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid info hash \"abc\""),
        "{}",
        stderr(&o)
    );
    let mut not_admin = admin(&["torrent", "list"]);
    not_admin[4] = "u1".into();
    let o = run(not_admin, password("u1")).await;
    assert_eq!(
        stderr(&o).trim(),
        "error: tracker refused: administrators only"
    );

    // the audit log's hash chain, verified offline
    let mut t = t;
    t.stop().await;
    let log = t.config.data_dir.join("audit.log");
    let o = ivcsd(&["admin", "audit", "verify", log.to_str().unwrap()], "").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("hash chain intact"));
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("u3", "u4", 1)).unwrap();
    let o = ivcsd(&["admin", "audit", "verify", log.to_str().unwrap()], "").await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("hash chain broken at line"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn tracker_process_starts_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let config = dir.path().join("tracker.toml");
    // the flags below win over the file's listen and data_dir
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:1\"\ndata_dir = \"/nonexistent/x\"\n\
         authority_poll_secs = 3600\nthrottle_failures = 1000\n",
    )
    .unwrap();
    // a port the OS just handed out (released again for the process to bind)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(["--quiet", "tracker", "--authority"])
        .arg(&authority)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen, "--data-dir"])
        .arg(&data)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // wait until it answers
    let uri: hyper::Uri = format!("http://{listen}/scrape?{}", creds("u1"))
        .parse()
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = ivcsd::http_client::get(&uri).await {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the tracker never answered");
    assert_eq!(answer.status, 200);
    // --data-dir was used
    assert!(data.join("master.key").exists());
    assert!(data.join("tracker.sqlite").exists());
    let pid = child.id().unwrap().to_string();
    // SIGHUP reloads authority.xml (polling is off in this config): a user added to the
    // file can log in afterwards
    let mut users = standard_users();
    users.push(UserSpec::new("newbie", 7));
    write_authority(&authority, &users);
    let newbie: hyper::Uri = format!("http://{listen}/scrape?{}", creds("newbie"))
        .parse()
        .unwrap();
    let before = ivcsd::http_client::get(&newbie).await.unwrap();
    assert!(String::from_utf8_lossy(&before.body).contains("invalid credentials"));
    // SIGHUP also reopens the audit log: rotate it as logrotate would (rename, then signal).
    std::fs::rename(data.join("audit.log"), data.join("audit.log.1")).unwrap();
    signal(&child, "-HUP").await;
    let mut reloaded = false;
    for _ in 0..100 {
        let r = ivcsd::http_client::get(&newbie).await.unwrap();
        if !String::from_utf8_lossy(&r.body).contains("failure reason") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "SIGHUP did not reload authority.xml");
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the tracker did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    // the audit log was flushed at shutdown, into the new file after the rotation
    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(
        log.contains(
            "\"user\":\"newbie\",\"endpoint\":\"scrape\",\"info_hash\":null,\"decision\":\"allow\""
        ),
        "{log}"
    );
    let old = std::fs::read_to_string(data.join("audit.log.1")).unwrap();
    assert!(old.contains("\"decision\":\"refuse\""), "{old}");
    // the chain runs on from the rotated file into the new one
    let (old, new) = (data.join("audit.log.1"), data.join("audit.log"));
    let both = ivcsd(
        &[
            "admin",
            "audit",
            "verify",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert!(both.status.success(), "{}", stderr(&both));
    assert!(
        stdout(&both).contains("hash chain intact"),
        "{}",
        stdout(&both)
    );
    let alone = ivcsd(&["admin", "audit", "verify", new.to_str().unwrap()], "").await;
    assert_eq!(alone.status.code(), Some(1));
    assert!(
        stderr(&alone).contains("line 1") && stderr(&alone).contains("rotated log"),
        "{}",
        stderr(&alone)
    );
    let swapped = ivcsd(
        &[
            "admin",
            "audit",
            "verify",
            new.to_str().unwrap(),
            old.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(swapped.status.code(), Some(1));
}

/// Starts `ivcsd tracker` on a fresh port and waits until it answers.
async fn spawn_tracker(
    authority: &std::path::Path,
    data: &std::path::Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(["--quiet", "tracker", "--authority"])
        .arg(authority)
        .args(["--listen", &addr.to_string(), "--data-dir"])
        .arg(data)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until_answering(addr).await;
    (child, addr)
}

/// docs/protocol.md 4.4: a publish that was answered survives the process being killed at once.
#[tokio::test]
async fn answered_publish_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let data = dir.path().join("data");
    let (mut child, addr) = spawn_tracker(&authority, &data).await;
    let t = TestTracker::attach(addr, tempfile::tempdir().unwrap(), test_config(&data));
    let p = t.publish("u3", b"must survive").await;
    t.set_authority(&p.info_hash, 1).await;
    child.kill().await.unwrap(); // SIGKILL: no shutdown, no flush
    let (_child, addr) = spawn_tracker(&authority, &data).await;
    let t = TestTracker::attach(addr, tempfile::tempdir().unwrap(), test_config(&data));
    let a = t
        .getcipher(
            "u1",
            CipherTarget::Torrent(p.info_hash),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await
        .ok();
    let key = key2048().unwrap_content_key(&a.bytes("key")).unwrap();
    assert_eq!(key.as_bytes(), p.key.as_bytes());
    let file = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("u1"),
            enc(&p.info_hash.0)
        ))
        .await;
    assert_eq!(file.body.as_ref(), p.torrent.as_slice());
}

#[tokio::test]
async fn tracker_process_refuses_bad_setup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.xml");
    let o = ivcsd(&["tracker", "--authority", missing.to_str().unwrap()], "").await;
    assert_eq!(o.status.code(), Some(1));
    // One line, the cause said once.
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "intervall_secs = 5\n").unwrap();
    let o = ivcsd(
        &[
            "tracker",
            "--authority",
            authority.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.toml"), "{}", stderr(&o));
    assert!(stderr(&o).contains("intervall_secs"), "{}", stderr(&o));

    // A database whose master key (kept outside the data directory) is not where the flag
    // says: refused, and no new key is made that would open none of its content keys.
    let data = dir.path().join("data");
    let key = dir.path().join("vault").join("master.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let (store, thread, _master) = ivcsd::tracker::store::Store::open(&data, &key).unwrap();
    drop(store);
    thread.join();
    let wrong = dir.path().join("vault").join("typo.key");
    let o = ivcsd(
        &[
            "tracker",
            "--authority",
            authority.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--master-key",
            wrong.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        "",
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("typo.key") && err.contains("is missing"),
        "{err}"
    );
    assert!(!wrong.exists());
}

#[tokio::test]
async fn audit_follow_prints_new_entries_as_they_come() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let t = TestTracker::start(&standard_users()).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args([
            "admin",
            "--tracker",
            &format!("http://{}", t.addr),
            "--user",
            "admin",
        ])
        .args(["audit", "--follow"])
        .env("IVCSD_PASSWORD", password("admin"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // its own first call is audited, and shows up on a later poll
    t.get(&format!(
        "/scrape?{}&info_hash={}",
        creds("u5"),
        enc(&[7u8; 20])
    ))
    .await
    .ok();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("\"user\":\"u5\"") {
                return line;
            }
        }
        panic!("audit --follow ended");
    })
    .await
    .expect("the new entry never appeared");
    let entry: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(entry["endpoint"], "scrape");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn admin_cli_removes_a_torrent_and_its_key_for_good() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"published by mistake").await;
    let kept = t.publish("u3", b"stays").await;
    t.set_authority(&p.info_hash, 4).await;
    let url = format!("http://{}/announce", t.addr);
    let hash = p.info_hash.to_hex();
    let remove = async |user: &str, yes: bool| {
        let mut args = vec!["admin", "--tracker", &url, "--user", user];
        args.extend(["torrent", "remove", &hash]);
        if yes {
            args.push("--yes");
        }
        ivcsd(&args, &password(user)).await
    };
    let getcipher = async |user: &str| {
        let target = CipherTarget::Torrent(p.info_hash);
        t.getcipher(user, target, key2048(), now(), &fresh_nonce())
            .await
    };
    let relayed = async || {
        let answer = t
            .get(&format!("/relay/assignments?{}", creds("relay")))
            .await
            .ok();
        let v = answer.value();
        v.as_dict()
            .unwrap()
            .get(b"info hashes")
            .unwrap()
            .as_list()
            .unwrap()
            .len()
    };
    t.admin(
        hyper::Method::POST,
        "relay/assign",
        &format!("info_hash={}&user=relay", enc(&p.info_hash.0)),
    )
    .await
    .ok();
    getcipher("u1").await.ok();
    t.announce("u1", &p.info_hash, 6881, 0).await.ok();
    assert_eq!(relayed().await, 1);

    // Not without --yes, and not by a non-admin: nothing is removed.
    let o = remove("admin", false).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: not removing {hash} without --yes: its content key is destroyed and cannot be recovered"
        )
    );
    let o = remove("u1", true).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: tracker refused: administrators only"
    );
    getcipher("u1").await.ok();

    let o = remove("admin", true).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("removed {hash} (content-7075626c); its content key is destroyed")
    );
    // Gone for everyone, the owner included, as if it had never been published.
    for user in ["u1", "u3"] {
        let refused = getcipher(user).await;
        assert_eq!(refused.status, 404, "{user}");
        assert_eq!(
            refused.failure().as_deref(),
            Some("torrent not found or not permitted")
        );
    }
    let announce = t.announce("u3", &p.info_hash, 6881, 0).await;
    assert_eq!(
        announce.failure().as_deref(),
        Some("torrent not found or not permitted")
    );
    let file = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("u3"),
            enc(&p.info_hash.0)
        ))
        .await;
    assert_eq!(file.status, 404);
    assert_eq!(relayed().await, 0);
    let o = remove("admin", true).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: tracker refused: torrent not found or not permitted"
    );
    assert!(
        t.audit_log().contains("of \\\"u3\\\"; key "),
        "{}",
        t.audit_log()
    );

    // Still gone after a restart; the other torrent and its key are untouched.
    let t = t.restart().await;
    let list = t.admin(hyper::Method::GET, "torrents", "").await.ok();
    let listed = String::from_utf8_lossy(&list.body).into_owned();
    assert!(!listed.contains("published by mistake"));
    let target = CipherTarget::Torrent(kept.info_hash);
    t.getcipher("u3", target, key2048(), now(), &fresh_nonce())
        .await
        .ok();
    let gone = CipherTarget::Torrent(p.info_hash);
    let refused = t
        .getcipher("u3", gone, key2048(), now(), &fresh_nonce())
        .await;
    assert_eq!(refused.status, 404);
}

#[tokio::test]
async fn tracker_check_reads_everything_starts_nothing_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let data = dir.path().join("data");
    let config = dir.path().join("tracker.toml");
    std::fs::write(&config, "metrics_listen = \"127.0.0.1:9477\"\n").unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "tracker".to_owned(),
            "--check".into(),
            "--authority".into(),
            authority.to_str().unwrap().into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
            "--listen".into(),
            "127.0.0.1:6999".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            ivcsd(&refs, "").await
        }
    };
    let o = check(&["--config", config.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!(
            "configuration OK: http on 127.0.0.1:6999, data in {}, {} users (1 admins), audit log on, metrics http://127.0.0.1:9477/metrics, new torrents rc4+ or aes-256-ctr",
            data.display(),
            standard_users().len()
        )
    );
    assert!(!data.exists(), "--check created the data directory");

    // What would stop the start stops the check, with the same one line.
    let cert = dir.path().join("tracker.crt");
    std::fs::write(&cert, "not a certificate").unwrap();
    let cert = cert.to_str().unwrap();
    let o = check(&["--tls-cert", cert, "--tls-key", cert]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: ") && stderr(&o).contains("tracker.crt"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    std::fs::write(&config, "metrics_listen = \"127.0.0.1:6999\"\n").unwrap();
    let o = check(&["--config", config.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: invalid config: metrics_listen must differ from listen"
    );
}
