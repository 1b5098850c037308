//! The swarm benchmark's harness at small scale (issue 18 item 6): benches/swarm.sh builds its
//! network namespaces, bridge, veths and tbf limits, runs 4 downloaders, a relay and a late
//! joiner over a few MiB with both ivcsd suites (and libtorrent where Debian's
//! python3-libtorrent, opentracker and mktorrent are installed), and every copy must come out
//! identical to the source; then the figure is drawn from what the run recorded. The figures
//! themselves are the benchmark's business: nothing here depends on timing.
//!
//! It needs root and iproute2 (`ip`, `tc`) and /usr/bin/python3; `.ci/run` installs iproute2
//! and python3. Where namespaces cannot be made (not root, or the kernel refuses) it says so
//! and passes; a missing tool is a failure under `CI=true`, a skip with a message elsewhere.

#[path = "../../examples/swarm_plot/plot.rs"]
mod plot;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DOWNLOADERS: usize = 4;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn runs_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the harness cannot run here, if it cannot; panics under CI when a tool is missing.
#[allow(unsafe_code, reason = "std has no geteuid")]
fn cannot_run() -> Option<String> {
    let missing: Vec<&str> = [
        ("ip", runs_ok("ip", &["-V"]), "iproute2"),
        ("tc", runs_ok("tc", &["-V"]), "iproute2"),
        (
            "/usr/bin/python3",
            runs_ok("/usr/bin/python3", &["-V"]),
            "python3",
        ),
    ]
    .iter()
    .filter(|(_, found, _)| !found)
    .map(|(tool, _, package)| {
        eprintln!("{tool} is missing (Debian package {package}; .ci/run installs it)");
        *tool
    })
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "benches/swarm.sh needs {missing:?}; .ci/run installs them (apt-get install iproute2 python3)"
        );
        return Some(format!("{missing:?} not installed"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    let probe = format!("ivs{}-probe", std::process::id());
    if !runs_ok("ip", &["netns", "add", &probe]) {
        return Some("`ip netns add` is refused here".into());
    }
    let bridged = runs_ok(
        "ip",
        &["-n", &probe, "link", "add", "br0", "type", "bridge"],
    );
    let limited = bridged
        && runs_ok(
            "tc",
            &[
                "-n", &probe, "qdisc", "add", "dev", "br0", "root", "tbf", "rate", "1mbit",
                "burst", "16k", "latency", "50ms",
            ],
        );
    runs_ok("ip", &["netns", "del", &probe]);
    (!limited).then(|| "a bridge with a tbf qdisc cannot be made in a namespace".into())
}

/// libtorrent joins the run only where the script would not have to install anything for it.
fn libtorrent_installed() -> bool {
    runs_ok("/usr/bin/python3", &["-c", "import libtorrent"])
        && runs_ok(
            "sh",
            &["-c", "command -v opentracker && command -v mktorrent"],
        )
}

fn lines_of<'a>(text: &'a str, client: &str) -> impl Iterator<Item = Vec<&'a str>> {
    let client = client.to_owned();
    text.lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(move |f| f[0] == client)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("benches/swarm.sh left no {name}: {e}"))
}

#[test]
fn the_swarm_benchmark_builds_its_topology_and_every_copy_verifies() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipping the swarm benchmark: {reason}");
        return;
    }
    let mut clients = vec!["ivcsd", "ivcsd-aes"];
    if libtorrent_installed() {
        clients.push("lt-plain");
    } else {
        eprintln!("libtorrent left out: python3-libtorrent, opentracker or mktorrent missing");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let child = Command::new("bash")
        .arg(repo().join("benches/swarm.sh"))
        .env("TMPDIR", tmp.path())
        .env("IVCSD_BIN", env!("CARGO_BIN_EXE_ivcsd"))
        .env("PLOT", "0")
        .env("OUT", &out)
        .env("DOWNLOADERS", DOWNLOADERS.to_string())
        .env("SIZE_MIB", "3")
        .env("SEEDER_UP", "40")
        .env("DOWNLOADER_UP", "16")
        .env("DOWNLOADER_DOWN", "80")
        .env("RELAYS", "1")
        .env("LATE", "1")
        .env("LATE_DELAY", "1")
        .env("CLIENTS", clients.join(","))
        .env("RUNS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script_pid = child.id();
    let output = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "benches/swarm.sh failed ({}):\n{printed}\n{errors}",
        output.status
    );

    // Everything it made is gone: the namespaces are named after its pid.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("ivs{script_pid}-");
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&prefix),
        "namespaces {prefix}* left behind"
    );

    let events = read(&out, "events.tsv");
    let progress = read(&out, "progress.tsv");
    let summary = read(&out, "summary.txt");
    for client in &clients {
        // The downloaders and the late joiner, and libtorrent's helper (ivcsd's relay keeps
        // ciphertext, checked piece by piece against the torrent instead).
        let copies = DOWNLOADERS + 1 + usize::from(client.starts_with("lt-"));
        let verified: Vec<_> = lines_of(&events, client)
            .filter(|f| f[2] == "verified")
            .collect();
        assert_eq!(
            verified,
            [vec![*client, "1", "verified", &copies.to_string()]],
            "{client}: copies compared byte for byte"
        );
        let completed = lines_of(&events, client)
            .filter(|f| f.get(4) == Some(&"complete"))
            .count();
        assert_eq!(completed, DOWNLOADERS + 1, "{client}: completions noted");
        // Every host was sampled through its port on the switch, and every downloader's
        // last sample has its whole copy and the bytes that carried it.
        let hosts = 2 + 1 + DOWNLOADERS + 1;
        let sampled: std::collections::BTreeSet<&str> =
            lines_of(&progress, client).map(|f| f[2]).collect();
        assert_eq!(sampled.len(), hosts, "{client}: hosts sampled {sampled:?}");
        for d in 1..=DOWNLOADERS {
            let last = lines_of(&progress, client)
                .filter(|f| f[2] == format!("d{d}"))
                .last()
                .unwrap();
            assert_eq!(last[5], "1.00000", "{client}: d{d}'s last sample {last:?}");
            let received: u64 = last[6].parse().unwrap();
            assert!(
                received >= 3 << 20,
                "{client}: d{d} received {received} bytes at its port, less than the file"
            );
        }
        assert!(
            summary.contains(&format!("== {client}, run 1")),
            "{client} missing from the summary:\n{summary}"
        );
    }
    assert!(summary.contains("# Summary: T_min"), "{summary}");

    // The figure: one panel per client in the order run, a curve per downloader, the relay
    // and the late joiner in each.
    let panels = plot::parse_progress(&progress).unwrap();
    let names: Vec<&str> = panels.iter().map(|p| p.client.as_str()).collect();
    assert_eq!(names, clients);
    for panel in &panels {
        let mut hosts: Vec<&str> = panel.curves.iter().map(|c| c.host.as_str()).collect();
        hosts.sort_unstable();
        assert_eq!(
            hosts,
            ["d1", "d2", "d3", "d4", "l1", "r1"],
            "{}",
            panel.client
        );
    }
    let svg = plot::draw_svg(
        &panels,
        &plot::Labels {
            title: "tests/swarm_bench.rs".into(),
            t_min: Some(1.0),
        },
    )
    .unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for client in &clients {
        assert!(
            svg.contains(&format!("\n{client}\n")),
            "no panel titled {client}"
        );
    }
}
