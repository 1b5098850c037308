//! `ivcsd admin --tracker URL …` and `ivcsd tracker` as processes, against real trackers.

mod common_tracker;

use std::process::Output;
use std::time::Duration;

use common_tracker::*;
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
        out.contains("authority:   4") && out.contains("relays:      relay"),
        "{out}"
    );

    let o = run(admin(&["audit"]), password("admin")).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("authority 0 -> 4"));

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
        "listen = \"127.0.0.1:1\"\ndata_dir = \"/nonexistent/x\"\n",
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
    // the audit log was flushed at shutdown
    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(log.contains("\"endpoint\":\"scrape\""));
}

#[tokio::test]
async fn tracker_process_refuses_bad_setup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.xml");
    let o = ivcsd(&["tracker", "--authority", missing.to_str().unwrap()], "").await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.xml"), "{}", stderr(&o));

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
}
