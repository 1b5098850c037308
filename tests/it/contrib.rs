//! `contrib/`: the systemd units, the logrotate configuration and the Prometheus alerting rules
//! an operator installs, checked with the real tools (`systemd-analyze`, `logrotate`,
//! `promtool`; `.ci/run` installs them) and by running the units' own command lines against
//! real trackers on 127.0.0.1.

use crate::common_peer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common_tracker::*;
use tokio::io::Lines;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

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

/// A unit's ExecStart as systemd would run it here: its `Environment=` values, with
/// `overrides` (each must be one of them), expanded where ExecStart names them, and `paths`
/// replaced (each must occur). Returns the words and the environment.
fn exec_start(
    unit: &str,
    overrides: &[(&str, String)],
    paths: &[(&str, &str)],
) -> (Vec<String>, HashMap<String, String>) {
    let mut env: HashMap<String, String> = unit_values(unit, "Environment")
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("Environment=KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for (key, value) in overrides {
        assert!(env.contains_key(*key), "the unit sets {key}");
        env.insert((*key).to_owned(), value.clone());
    }
    let mut exec = substitute(unit_value(unit, "ExecStart"), "/usr/local/bin/ivcsd", BIN);
    for (key, value) in &env {
        exec = exec.replace(&format!("${{{key}}}"), value);
    }
    for (from, to) in paths {
        exec = substitute(&exec, from, to);
    }
    (words(&exec), env)
}

/// Runs a unit's command line; its stdout is piped for the caller.
fn spawn_unit(command: &[String], env: &HashMap<String, String>, dir: &Path) -> Child {
    Command::new(&command[0])
        .args(&command[1..])
        .envs(env)
        .env_remove("IVCSD_PASSWORD")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The first stdout line of `child` that starts with `prefix`.
async fn ready_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("the process ended before printing {prefix:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no line {prefix:?}"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_and_its_security_review() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "ivcsd-tracker.service",
        "ivcsd-relay.service",
        "ivcsd-seed.service",
    ] {
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
    terminate_ok(&mut tracker, "the tracker").await;

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
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (command, env) = exec_start(
        &unit,
        &[("TRACKER_URL", format!("http://{}/announce", tracker.addr))],
        &[
            ("${CREDENTIALS_DIRECTORY}", credentials.to_str().unwrap()),
            ("/var/lib/ivcsd-relay", state.to_str().unwrap()),
            // Several tests share the machine: any free port instead of 6881.
            ("0.0.0.0:6881", "127.0.0.1:0"),
            ("127.0.0.1:9478", &metrics.to_string()),
        ],
    );
    assert_eq!(env.get("IVCSD_USER").map(String::as_str), Some("relay"));
    let mut relay = spawn_unit(&command, &env, &state);
    let mut stdout = BufReader::new(relay.stdout.take().unwrap()).lines();
    let ready = ready_line(&mut stdout, "relaying for relay on 127.0.0.1:").await;
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
    // Its metrics, where the alerting rules expect them (nothing assigned yet).
    metrics_when(metrics, "ivcsd_peer_torrents{state=\"incomplete\"}", |n| {
        n == 0
    })
    .await;
    terminate_ok(&mut relay, "the relay").await;
}

/// The seeder unit's command line, with the seeding user's password as its credential file,
/// serves what its torrent directory holds, creates the identity (mode 0600) in the state
/// directory, and reads the directory again on the unit's ExecReload.
#[tokio::test]
async fn seed_unit_serves_its_torrent_directory_and_reloads_it() {
    let tracker = TestTracker::start(&standard_users()).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, torrents, state, credentials) = (
        dir.path().join("data"),
        dir.path().join("torrents"),
        dir.path().join("state"),
        dir.path().join("credentials"),
    );
    for d in [&data, &torrents, &state, &credentials] {
        std::fs::create_dir(d).unwrap();
    }
    common_peer::random_file(&data.join("survey.bin"), 100_000, 1);
    let torrent =
        common_peer::publish_readable(&tracker, dir.path(), &data.join("survey.bin")).await;
    std::fs::copy(&torrent, torrents.join("survey.torrent")).unwrap();
    std::fs::write(credentials.join("password"), password("u3") + "\n").unwrap();

    let unit = contrib("systemd/ivcsd-seed.service");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (command, env) = exec_start(
        &unit,
        &[
            ("TRACKER_URL", format!("http://{}/announce", tracker.addr)),
            ("TORRENT_DIR", torrents.to_str().unwrap().to_owned()),
            ("DATA_DIR", data.to_str().unwrap().to_owned()),
            ("IVCSD_USER", "u3".to_owned()),
        ],
        &[
            ("${CREDENTIALS_DIRECTORY}", credentials.to_str().unwrap()),
            ("/var/lib/ivcsd-seed", state.to_str().unwrap()),
            ("0.0.0.0:6881", "127.0.0.1:0"),
            ("127.0.0.1:9479", &metrics.to_string()),
        ],
    );
    let mut seeder = spawn_unit(&command, &env, &state);
    let mut stdout = BufReader::new(seeder.stdout.take().unwrap()).lines();
    ready_line(&mut stdout, "seeding survey.bin (").await;
    ready_line(&mut stdout, "seeding 1 torrents of ").await;
    // Its metrics, where the alerting rules expect them.
    metrics_when(metrics, "ivcsd_peer_torrents{state=\"complete\"}", |n| {
        n == 1
    })
    .await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("identity.pem"))
        .expect("the identity is in the state directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let pid = seeder.id().unwrap().to_string();
    let reload = words(&substitute(
        unit_value(&unit, "ExecReload"),
        "$MAINPID",
        &pid,
    ));
    let status = Command::new(&reload[0])
        .args(&reload[1..])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    ready_line(&mut stdout, "seeding 1 torrents of ").await;
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    terminate_ok(&mut seeder, "the seeder").await;
}

/// Every `ivcsd_*` metric the alerting rules use is one the tracker or a peer serves: a
/// renamed metric must not leave an alert that can never fire.
#[test]
fn the_alert_rules_name_only_metrics_that_exist() {
    let rules = contrib("prometheus/ivcsd-alerts.yml");
    let tracker = ivcsd::tracker::metrics::Metrics::default()
        .render(&ivcsd::tracker::metrics::Gauges::default());
    let peer = ivcsd::peer::metrics::render(
        &ivcsd::peer::metrics::Traffic::default(),
        &ivcsd::peer::listener::Registry::new(),
    );
    let served = |name: &str| {
        let family = format!("# TYPE {name} ");
        tracker.contains(&family) || peer.contains(&family)
    };
    let mut named = Vec::new();
    for expr in rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")) {
        for (at, _) in expr.match_indices("ivcsd_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named.push(name);
        }
    }
    assert!(named.len() >= 5, "{named:?}");
    for name in &named {
        assert!(
            served(name),
            "the rules name {name}, which no ivcsd process serves"
        );
    }
}

/// The alerting rules are valid to Prometheus itself (`promtool`, Debian's `prometheus`).
#[test]
fn promtool_accepts_the_alert_rules() {
    if !have("promtool") {
        return;
    }
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo("contrib/prometheus/ivcsd-alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
