//! `ivcsd demo`: the whole flow on 127.0.0.1, explained step by step. Every step runs the real
//! command a user would type (this same binary, as a child process), and the demo prints that
//! command, so it doubles as a tutorial.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the demo file in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub size_mib: u64,
    /// Keep the temporary directory afterwards and print where it is.
    #[arg(long)]
    pub keep: bool,
}

/// The demo's users: (name, authority, admin).
const USERS: [(&str, u32, bool); 5] = [
    ("admin", 0, true),
    ("alice", 3, false),
    ("bob", 1, false),
    ("carol", 5, false),
    ("relay", 9, false),
];

/// How long the relay may take to carry the whole demo file.
const RELAY_TIMEOUT: Duration = Duration::from_secs(120);

/// Children are killed when the demo ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    tracker_url: String,
    step: usize,
}

impl Demo {
    fn say(&mut self, title: &str, why: &str) {
        self.step += 1;
        println!("\n== {}. {title}", self.step);
        for line in why.lines() {
            println!("   {line}");
        }
    }

    /// A command as `user` (password in IVCSD_PASSWORD), shown as the user would type it.
    fn command(&self, user: Option<&str>, args: &[&str]) -> Command {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.replace(&*self.dir.to_string_lossy(), "$DEMO"))
            .collect();
        match user {
            Some(u) => println!("   $ IVCSD_PASSWORD={u}-password ivcsd {}", shown.join(" ")),
            None => println!("   $ ivcsd {}", shown.join(" ")),
        }
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .env("RUST_LOG", "warn");
        if let Some(u) = user {
            cmd.env("IVCSD_PASSWORD", format!("{u}-password"));
        }
        cmd
    }

    /// Runs a command to its end and shows its output; `expect_ok` says how it should end.
    fn run(&self, user: Option<&str>, args: &[&str], expect_ok: bool) -> anyhow::Result<String> {
        let out = self
            .command(user, args)
            .output()
            .with_context(|| format!("cannot run ivcsd {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for line in stdout.lines().chain(stderr.lines()) {
            println!("     {line}");
        }
        if out.status.success() != expect_ok {
            bail!(
                "step {} ended with {} where the demo expected {}",
                self.step,
                out.status,
                if expect_ok { "success" } else { "a refusal" }
            );
        }
        Ok(stdout)
    }

    /// `ivcsd admin --tracker URL --user admin ARGS…`, expected to succeed.
    fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["admin", "--tracker", &self.tracker_url, "--user", "admin"];
        all.extend_from_slice(args);
        self.run(Some("admin"), &all, true)
    }

    /// `USER` downloads the demo's torrent into OUTPUT; `expect_ok` says whether it may.
    fn download(&self, user: &str, output: &str, expect_ok: bool) -> anyhow::Result<String> {
        let args = self.peer_args(user, &["download", "survey.torrent", "--output", output]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(Some(user), &args, expect_ok)
    }

    fn peer_args<'a>(&self, user: &'a str, rest: &[&'a str]) -> Vec<String> {
        let mut args = vec![
            "--quiet".to_owned(),
            "peer".to_owned(),
            "--user".to_owned(),
            user.to_owned(),
            "--identity".to_owned(),
            self.dir.join(format!("{user}.pem")).display().to_string(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_for_port(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the tracker exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the tracker did not start listening on {addr}")
}

/// Writes `mib` MiB of pseudo-random bytes (fast; the demo is not about entropy).
fn write_content(path: &Path, mib: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> anyhow::Result<bool> {
    use std::io::Read as _;
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba)?;
        let nb = fb.read(&mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

pub fn run(args: DemoArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let temp = tempfile_dir()?;
    let dir = temp.clone();
    let exe = std::env::current_exe().context("cannot find the ivcsd executable")?;
    let port = free_port()?;
    let mut demo = Demo {
        exe,
        dir: dir.clone(),
        tracker_url: format!("http://127.0.0.1:{port}/announce"),
        step: 0,
    };
    let mut children = Children(Vec::new());
    println!("ivcsd demo in {} ($DEMO below)", dir.display());

    demo.say(
        "Users and authority levels",
        "authority.xml lists who may use the tracker. A smaller number is a higher authority:\n\
         admin (0, administrator), alice (3, publishes), bob (1), carol (5), and relay (9), a\n\
         machine that will carry data it may not read.",
    );
    for (name, authority, admin) in USERS {
        let authority = authority.to_string();
        let mut args = vec!["admin", "user", "add", name, "--authority", &authority];
        if admin {
            args.push("--admin");
        }
        demo.run(Some(name), &args, true)?;
    }

    demo.say(
        "Start the tracker",
        "It verifies every request's identity and authority, and keeps torrents and keys.",
    );
    let listen = format!("127.0.0.1:{port}");
    let mut tracker = demo
        .command(
            None,
            &[
                "--quiet",
                "tracker",
                "--authority",
                "authority.xml",
                "--listen",
                &listen,
                "--data-dir",
                "tracker-data",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the tracker")?;
    wait_for_port(listen.parse()?, &mut tracker)?;
    children.0.push(tracker);

    demo.say(
        "alice publishes a file and seeds it",
        &format!(
            "ivcsd asks the tracker for a fresh content key (wrapped with alice's RSA key),\n\
             encrypts every 16 KiB block with RC4+ (`--cipher aes-256-ctr` would choose\n\
             AES-256-CTR, far cheaper), hashes the ciphertext on all cores, publishes the\n\
             torrent, and seeds. ({} MiB of data)",
            args.size_mib
        ),
    );
    write_content(&dir.join("survey.bin"), args.size_mib)?;
    let tracker_url = demo.tracker_url.clone();
    let publish = demo.peer_args(
        "alice",
        &[
            "publish",
            "survey.bin",
            "--tracker",
            &tracker_url,
            "--output",
            "survey.torrent",
        ],
    );
    let publish: Vec<&str> = publish.iter().map(String::as_str).collect();
    let mut seeder = demo
        .command(Some("alice"), &publish)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the publisher")?;
    let stdout = seeder.stdout.take().context("no publisher output")?;
    let seeder_index = children.0.len();
    children.0.push(seeder);
    let mut info_hash = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("     {line}");
        if let Some(rest) = line.split("info hash ").nth(1) {
            info_hash = rest.chars().take(40).collect();
        }
        if line.starts_with("seeding on") {
            break;
        }
    }
    if info_hash.len() != 40 {
        bail!("the publisher did not publish");
    }

    demo.say(
        "The administrator assigns the torrent to the relay, which starts carrying it",
        "The tracker's relay assignments tell intermediaries what to carry (Fig. 11 of the\n\
         paper). The relay fetches the torrent, downloads the ciphertext, verifies every piece\n\
         against the torrent's hashes of ciphertext, stores it as received, and seeds it.\n\
         It never gets the key.",
    );
    demo.admin(&["relay", "assign", &info_hash, "relay"])?;
    let relay_identity = dir.join("relay.pem").display().to_string();
    let mut relay = demo
        .command(
            Some("relay"),
            &[
                "--log-format",
                "json",
                "peer",
                "--user",
                "relay",
                "--identity",
                &relay_identity,
                "--listen",
                "127.0.0.1:0",
                "relay",
                "--tracker",
                &tracker_url,
                "--store",
                "relay-store",
            ],
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the relay")?;
    let relay_log = relay.stderr.take().context("no relay output")?;
    children.0.push(relay);
    wait_for_relay(relay_log, &info_hash)?;
    let relay_copy = dir
        .join("relay-store")
        .join(&info_hash)
        .join("data")
        .join("survey.bin");
    println!(
        "     the relay's copy equals alice's plaintext: {}",
        if same_file(&dir.join("survey.bin"), &relay_copy)? {
            "YES"
        } else {
            "no, it is ciphertext"
        }
    );

    demo.say(
        "bob tries to download: refused",
        "A new torrent gets the highest authority (0) until an administrator has examined it,\n\
         so bob (1) may not read it yet. The tracker answers exactly as for an unknown torrent.",
    );
    demo.download("bob", "bob", false)?;

    demo.say(
        "The administrator lowers the torrent's authority to 4",
        "Now readers with authority 0 to 4 may read it; every decision is in the audit log.",
    );
    demo.admin(&["torrent", "set-authority", &info_hash, "4"])?;

    demo.say(
        "alice goes offline; bob downloads from the relay alone",
        "bob gets the key wrapped for his RSA key, downloads ciphertext from the relay,\n\
         verifies each piece, decrypts it and writes plaintext.",
    );
    if let Some(seeder) = children.0.get_mut(seeder_index) {
        let _ = seeder.kill();
        let _ = seeder.wait();
    }
    let t = Instant::now();
    demo.download("bob", "bob", true)?;
    let secs = t.elapsed().as_secs_f64();
    let identical = same_file(&dir.join("survey.bin"), &dir.join("bob/survey.bin"))?;
    println!(
        "     {} MiB in {secs:.1} s ({:.0} MiB/s); identical to alice's file: {}",
        args.size_mib,
        args.size_mib as f64 / secs,
        if identical { "yes" } else { "NO" }
    );
    if !identical {
        bail!("bob's copy differs from alice's file");
    }

    demo.say(
        "carol (5) tries to download: refused",
        "Authority 5 is lower than the torrent's 4.",
    );
    demo.download("carol", "carol", false)?;

    demo.say(
        "The relay asks for the key: refused",
        "It carries the torrent but may never read it, whatever its authority.",
    );
    demo.download("relay", "relay-plain", false)?;

    demo.say(
        "The audit log",
        "The administrator reads the tracker's record of every decision.",
    );
    demo.admin(&["audit"])
        .map(|_| ())
        .unwrap_or_else(|e| println!("     ({e})"));

    drop(children);
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    if args.keep {
        println!("the demo's files are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Shows the relay's log about `info_hash` until it carries all of it. The relay logs JSON
/// lines; a reader thread keeps draining them afterwards so the relay never blocks on a pipe.
fn wait_for_relay(log: std::process::ChildStderr, info_hash: &str) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines() {
            let Ok(line) = line else { return };
            // After the demo stops listening, lines are read and dropped.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + RELAY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!("the relay did not carry the torrent within {RELAY_TIMEOUT:?}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the relay exited before it carried the torrent")
            }
        };
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["info_hash"] != info_hash {
            continue;
        }
        let message = fields["message"].as_str().unwrap_or("");
        println!("     relay: {message}");
        if message.starts_with("carrying all of it") {
            return Ok(());
        }
    }
}

/// A fresh private directory under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!("ivcsd-demo-{}-{attempt}", std::process::id()));
        match std::fs::DirBuilder::new().create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("cannot create the demo directory"),
        }
    }
    bail!("cannot create a demo directory in {}", base.display())
}
