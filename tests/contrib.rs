//! `contrib/`: the systemd units and the logrotate configuration an operator installs, checked
//! with the real tools (`systemd-analyze`, `logrotate`; `.ci/run` installs both) and by running
//! the units' own command lines against real trackers on 127.0.0.1.

mod common_tracker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common_tracker::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_ivcsd");
/// The longest any step may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(30);

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn contrib(rel: &str) -> String {
    std::fs::read_to_string(repo("contrib").join(rel)).unwrap()
}

/// Whether `tool` is on PATH; without it the test says so and passes (CI installs it).
fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipping: {tool} is not installed (.ci/run installs it)");
    }
    found
}

/// `text` with `from` replaced by `to`. `from` must occur, so that a changed file fails the
/// test instead of silently testing something else.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// The values of a unit's `key=` lines, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .collect()
}

fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    match unit_values(unit, key)[..] {
        [value] => value,
        ref all => panic!("expected one {key}= line, found {}", all.len()),
    }
}

/// A command line of a unit as words. The units use no quoting, which keeps this honest.
fn words(line: &str) -> Vec<String> {
    assert!(!line.contains(['"', '\'']), "quoting in {line:?}");
    line.split_whitespace().map(str::to_owned).collect()
}

async fn wait_exit_ok(child: &mut Child, what: &str) {
    let pid = child.id().expect("running").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop on SIGTERM"))
        .unwrap();
    assert!(status.success(), "{what} exited with {status}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_and_its_security_review() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["ivcsd-tracker.service", "ivcsd-relay.service"] {
        // verify checks that ExecStart's program exists: point it at the test build.
        let unit = substitute(
            &contrib(&format!("systemd/{name}")),
            "/usr/local/bin/ivcsd",
            BIN,
        );
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Unknown or misspelt keys are only warnings (exit 0) that name the file and line.
        assert!(
            out.status.success() && !stderr.contains(name),
            "{name}: systemd-analyze verify:\n{stderr}"
        );
        // The exposure score (0 best, 10 worst) of `systemd-analyze security`; 30 means 3.0.
        let out = std::process::Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: exposure above 3.0:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The tracker unit's ExecStart, with the repository's example config, serves; logrotate with
/// contrib's configuration (its postrotate running the unit's ExecReload) rotates the audit log,
/// and the hash chain runs on across the two files.
#[tokio::test]
async fn tracker_unit_serves_and_logrotate_rotates_its_audit_log_with_the_chain_intact() {
    if !have("logrotate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("lib");
    let authority = dir.path().join("authority.xml");
    write_authority(&authority, &standard_users());
    let unit = contrib("systemd/ivcsd-tracker.service");
    let exec = unit_value(&unit, "ExecStart");
    let exec = substitute(exec, "/usr/local/bin/ivcsd", BIN);
    let exec = substitute(
        &exec,
        "/etc/ivcsd/tracker.toml",
        repo("config/tracker.toml").to_str().unwrap(),
    );
    let exec = substitute(
        &exec,
        "/etc/ivcsd/authority.xml",
        authority.to_str().unwrap(),
    );
    let exec = substitute(&exec, "/var/lib/ivcsd", data.to_str().unwrap());
    let mut command = words(&exec);
    // The example config listens on 0.0.0.0:6969; the flag wins over it.
    let listen = format!("127.0.0.1:{}", free_port());
    command.extend(["--listen".to_owned(), listen.clone()]);
    let mut tracker = Command::new(&command[0])
        .args(&command[1..])
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = tracker.id().unwrap().to_string();

    let scrape = |user: &str| -> hyper::Uri {
        format!("http://{listen}/scrape?{}", creds(user))
            .parse()
            .unwrap()
    };
    let ready = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(r) = ivcsd::http_client::get(&scrape("u1")).await {
                return r.status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the tracker never answered");
    assert_eq!(ready, 200);
    for _ in 0..3 {
        assert_eq!(
            ivcsd::http_client::get(&scrape("u1")).await.unwrap().status,
            200
        );
    }
    let log = data.join("audit.log");
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for(|| lines(&log) >= 4, "the first entries in audit.log").await;

    // contrib's logrotate file, on this log, with the unit's own reload command.
    let reload = substitute(unit_value(&unit, "ExecReload"), "$MAINPID", &pid);
    let conf = substitute(
        &contrib("logrotate/ivcsd-tracker"),
        "/var/lib/ivcsd/audit.log",
        log.to_str().unwrap(),
    );
    let conf = substitute(&conf, "systemctl reload ivcsd-tracker.service", &reload);
    let conf_path = dir.path().join("logrotate.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("logrotate.state"))
        .arg(&conf_path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = data.join("audit.log.1");
    assert!(lines(&rotated) >= 4, "audit.log.1 holds the first entries");

    // After the reload the tracker writes a new audit.log.
    for _ in 0..3 {
        assert_eq!(
            ivcsd::http_client::get(&scrape("u3")).await.unwrap().status,
            200
        );
    }
    wait_for(
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"user\":\"u3\"")),
        "a new audit.log after the reload",
    )
    .await;
    wait_exit_ok(&mut tracker, "the tracker").await;

    let out = Command::new(BIN)
        .args(["admin", "audit", "verify"])
        .arg(&rotated)
        .arg(&log)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hash chain intact"));
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The relay unit's ExecStart and Environment= lines, with its password as the credential
/// file systemd would hand it, log in at a real tracker, relay with its store in the state
/// directory, and stop cleanly on SIGTERM.
#[tokio::test]
async fn relay_unit_command_line_logs_in_and_relays() {
    let tracker = TestTracker::start(&standard_users()).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("password"), password("relay") + "\n").unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();

    let unit = contrib("systemd/ivcsd-relay.service");
    let mut env: HashMap<&str, String> = unit_values(&unit, "Environment")
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("Environment=KEY=VALUE");
            (k, v.to_owned())
        })
        .collect();
    assert!(env.contains_key("TRACKER_URL"), "the unit names a tracker");
    env.insert("TRACKER_URL", format!("http://{}/announce", tracker.addr));
    assert_eq!(env.get("IVCSD_USER").map(String::as_str), Some("relay"));

    let exec = substitute(unit_value(&unit, "ExecStart"), "/usr/local/bin/ivcsd", BIN);
    let exec = substitute(
        &exec,
        "${CREDENTIALS_DIRECTORY}",
        credentials.to_str().unwrap(),
    );
    let exec = substitute(&exec, "${TRACKER_URL}", &env["TRACKER_URL"]);
    let exec = substitute(&exec, "/var/lib/ivcsd-relay", state.to_str().unwrap());
    // Several tests share the machine: any free port instead of 6881.
    let exec = substitute(&exec, "0.0.0.0:6881", "127.0.0.1:0");
    let command = words(&exec);
    let mut relay = Command::new(&command[0])
        .args(&command[1..])
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .env_remove("IVCSD_PASSWORD")
        .current_dir(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(relay.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if line.starts_with("relaying for relay on 127.0.0.1:") {
                return line;
            }
        }
        panic!("the relay ended before it was ready");
    })
    .await
    .expect("the relay did not get ready");
    assert!(ready.contains(state.to_str().unwrap()), "{ready}");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

    assert!(
        state.join("store").is_dir(),
        "the store is in the state directory"
    );
    // The relay logged in with the credential file's password and asked for its assignments.
    wait_for(
        || {
            tracker
                .audit_log()
                .lines()
                .any(|l| l.contains("\"user\":\"relay\"") && l.contains("\"decision\":\"allow\""))
        },
        "the relay's first request, allowed, in the audit log",
    )
    .await;
    wait_exit_ok(&mut relay, "the relay").await;
}
