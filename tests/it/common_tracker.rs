//! A real tracker in-process for integration tests: a temporary data directory, a temporary
//! authority.xml, a listener on 127.0.0.1:0, and plain HTTP requests through
//! `ivcsd::http_client`. Each test gets its own tracker and directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hyper::{Method, Uri};
use ivcsd::bencode::{self, Value};
use ivcsd::crypto::content::ContentKey;
use ivcsd::crypto::identity::{CipherTarget, GetcipherMessage, Identity};
use ivcsd::http_client;
use ivcsd::tracker::authority::{AuthoritySource, IpRule, PasswordHash, User, UserTable};
use ivcsd::tracker::config::Config;
use ivcsd::types::{Authority, InfoHash, KeyId};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything but unreserved characters is escaped.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn enc(bytes: &[u8]) -> String {
    percent_encode(bytes, VALUE).to_string()
}

/// A user of the test authority.xml. Its password is `pw-<name>`.
#[derive(Clone)]
pub struct UserSpec {
    pub name: &'static str,
    pub authority: u32,
    pub admin: bool,
    pub ip: Option<&'static str>,
    pub public_key: Option<Vec<u8>>,
}

impl UserSpec {
    pub fn new(name: &'static str, authority: u32) -> Self {
        UserSpec {
            name,
            authority,
            admin: false,
            ip: None,
            public_key: None,
        }
    }
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }
    pub fn ip(mut self, ip: &'static str) -> Self {
        self.ip = Some(ip);
        self
    }
    pub fn pinned(mut self, spki_der: Vec<u8>) -> Self {
        self.public_key = Some(spki_der);
        self
    }
}

pub fn password(name: &str) -> String {
    format!("pw-{name}")
}

/// argon2 hashes are slow to make; each distinct password is hashed once per test binary.
fn hash_for(name: &str) -> PasswordHash {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PasswordHash>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache
        .entry(name.to_owned())
        .or_insert_with(|| PasswordHash::new_argon2id(password(name).as_bytes()).unwrap())
        .clone()
}

/// Writes authority.xml for `users`.
pub fn write_authority(path: &Path, users: &[UserSpec]) {
    let mut table = UserTable::default();
    for u in users {
        assert!(table.insert(User {
            username: u.name.to_owned(),
            password: hash_for(u.name),
            authority: Authority(u.authority),
            admin: u.admin,
            ip: u.ip.map(|ip| IpRule::parse(ip).unwrap()),
            public_key: u.public_key.clone(),
            updated_ms: 1,
        }));
    }
    std::fs::write(path, table.to_xml()).unwrap();
}

/// The paper's users (Table II) and the roles the tests need.
pub fn standard_users() -> Vec<UserSpec> {
    vec![
        UserSpec::new("u1", 1),
        UserSpec::new("u3", 3),
        UserSpec::new("u5", 5),
        UserSpec::new("admin", 9).admin(),
        UserSpec::new("relay", 9),
        UserSpec::new("faraway", 0).ip("10.9.9.9"),
        UserSpec::new("pinned", 0).pinned(key2048().public().spki_der().to_vec()),
    ]
}

/// The test RSA keys committed by the crypto area.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keys")
        .join(name)
}

pub fn key2048() -> &'static Identity {
    static KEY: OnceLock<Identity> = OnceLock::new();
    KEY.get_or_init(|| {
        Identity::from_pkcs8_pem(&std::fs::read_to_string(data("rsa2048.pem")).unwrap()).unwrap()
    })
}

pub fn key3072() -> &'static Identity {
    static KEY: OnceLock<Identity> = OnceLock::new();
    KEY.get_or_init(|| {
        Identity::from_pkcs8_pem(&std::fs::read_to_string(data("rsa3072.pem")).unwrap()).unwrap()
    })
}

/// A running tracker.
pub struct TestTracker {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub users: Arc<AuthoritySource>,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ivcsd::tracker::TrackerRunError>>>,
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn value(&self) -> Value<'_> {
        bencode::decode(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not bencode ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `failure reason`, if the answer is a refusal.
    pub fn failure(&self) -> Option<String> {
        let v = bencode::decode(&self.body).ok()?;
        v.as_dict()?
            .get(b"failure reason")?
            .as_str()
            .map(str::to_owned)
    }

    pub fn int(&self, key: &str) -> i64 {
        self.value()
            .as_dict()
            .unwrap()
            .get(key.as_bytes())
            .and_then(Value::as_int)
            .unwrap_or_else(|| panic!("no integer {key}"))
    }

    pub fn bytes(&self, key: &str) -> Vec<u8> {
        self.value()
            .as_dict()
            .unwrap()
            .get(key.as_bytes())
            .and_then(Value::as_bytes)
            .unwrap_or_else(|| panic!("no bytes {key}: {:?}", self.failure()))
            .to_vec()
    }

    /// Panics with the failure reason unless the answer is a success.
    pub fn ok(self) -> Self {
        assert_eq!(self.failure(), None, "status {}", self.status);
        assert_eq!(self.status, 200);
        self
    }
}

pub fn test_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_torrent_bytes: 64 * 1024,
        drain_timeout_secs: 2,
        ..Config::default()
    }
}

impl TestTracker {
    pub async fn start(users: &[UserSpec]) -> TestTracker {
        let dir = tempfile::tempdir().unwrap();
        write_authority(&dir.path().join("authority.xml"), users);
        let config = test_config(&dir.path().join("data"));
        Self::start_in(dir, config).await
    }

    pub async fn start_with(users: &[UserSpec], edit: impl FnOnce(&mut Config)) -> TestTracker {
        let dir = tempfile::tempdir().unwrap();
        write_authority(&dir.path().join("authority.xml"), users);
        let mut config = test_config(&dir.path().join("data"));
        edit(&mut config);
        Self::start_in(dir, config).await
    }

    /// Starts a tracker listening on `bind` (for example `[::1]:0`).
    pub async fn start_on(users: &[UserSpec], bind: &str) -> TestTracker {
        let dir = tempfile::tempdir().unwrap();
        write_authority(&dir.path().join("authority.xml"), users);
        let mut config = test_config(&dir.path().join("data"));
        config.listen = bind.parse().unwrap();
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: tempfile::TempDir, config: Config) -> TestTracker {
        let users = Arc::new(AuthoritySource::load(dir.path().join("authority.xml")).unwrap());
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ivcsd::tracker::run(
            listener,
            config.clone(),
            users.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        TestTracker {
            dir,
            addr,
            users,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A handle on a tracker running elsewhere (another process) at `addr`; `dir` is a
    /// scratch directory for the content the helpers publish.
    pub fn attach(addr: SocketAddr, dir: tempfile::TempDir, config: Config) -> TestTracker {
        TestTracker {
            users: Arc::new(AuthoritySource::from_table(
                dir.path().join("authority.xml"),
                UserTable::default(),
            )),
            dir,
            addr,
            config,
            stop: None,
            task: None,
        }
    }

    /// Stops the tracker and waits until it has closed its database and audit log.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops and starts again on the same data directory and authority file.
    pub async fn restart(mut self) -> TestTracker {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config = self.config.clone();
        Self::start_in(dir, config).await
    }

    pub fn authority_path(&self) -> PathBuf {
        self.dir.path().join("authority.xml")
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.config.data_dir.join("audit.log")).unwrap_or_default()
    }

    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Answer {
        request_at(self.addr, method, path_and_query, body).await
    }

    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.request(Method::GET, path_and_query, None).await
    }

    pub async fn post(&self, path_and_query: &str, body: Vec<u8>) -> Answer {
        self.request(Method::POST, path_and_query, Some(Bytes::from(body)))
            .await
    }

    /// An announce of `user` for `hash` with `left` bytes to go.
    pub async fn announce(&self, user: &str, hash: &InfoHash, port: u16, left: u64) -> Answer {
        let peer_id = format!("-IV0001-{user:>012}");
        self.get(&format!(
            "/announce?{}&info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1",
            creds(user),
            enc(&hash.0),
            enc(peer_id.as_bytes()),
        ))
        .await
    }

    /// Asks for a content key (or a new one with `target == New`), signed with `identity`.
    pub async fn getcipher(
        &self,
        user: &str,
        target: CipherTarget,
        identity: &Identity,
        ts: u64,
        nonce: &str,
    ) -> Answer {
        let public = identity.public();
        let message = GetcipherMessage {
            username: user,
            target,
            ts,
            nonce,
            spki_sha256: public.spki_sha256(),
        };
        let sign = identity.sign(&message.to_bytes());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let target = match target {
            CipherTarget::Torrent(h) => format!("info_hash={}", enc(&h.0)),
            CipherTarget::New => "new=1".into(),
        };
        self.get(&format!(
            "/getcipher?{}&{target}&key={}&sign={}&ts={ts}&nonce={nonce}",
            creds(user),
            enc(b64.encode(public.spki_der()).as_bytes()),
            enc(b64.encode(sign).as_bytes()),
        ))
        .await
    }

    /// Gets a new key for `user`, builds an encrypted torrent of `content` and publishes it.
    pub async fn publish(&self, user: &str, content: &[u8]) -> Published {
        let answer = self
            .getcipher(user, CipherTarget::New, key2048(), now(), &fresh_nonce())
            .await
            .ok();
        let key_id = KeyId::from_slice(&answer.bytes("key id")).unwrap();
        let key = key2048().unwrap_content_key(&answer.bytes("key")).unwrap();
        let file = self.dir.path().join(format!(
            "content-{}",
            hex::encode(&content[..4.min(content.len())])
        ));
        std::fs::write(&file, content).unwrap();
        let created = ivcsd::metainfo::create_encrypted(
            &file,
            &key,
            key_id,
            &format!("http://{}/announce", self.addr),
            None,
        )
        .unwrap();
        let answer = self
            .post(&format!("/publish?{}", creds(user)), created.bytes.clone())
            .await
            .ok();
        let info_hash = InfoHash::from_slice(&answer.bytes("info hash")).unwrap();
        assert_eq!(info_hash, created.metainfo.info_hash);
        Published {
            info_hash,
            key_id,
            key,
            torrent: created.bytes,
        }
    }

    /// An admin call as `admin`.
    pub async fn admin(&self, method: Method, call: &str, params: &str) -> Answer {
        let body = (method == Method::POST).then(Bytes::new);
        self.request(
            method,
            &format!("/admin/{call}?{}&{params}", creds("admin")),
            body,
        )
        .await
    }

    pub async fn set_authority(&self, hash: &InfoHash, authority: u32) {
        self.admin(
            Method::POST,
            "set-authority",
            &format!("info_hash={}&authority={authority}", enc(&hash.0)),
        )
        .await
        .ok();
    }
}

impl Drop for TestTracker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A published torrent and what its publisher knows.
pub struct Published {
    pub info_hash: InfoHash,
    pub key_id: KeyId,
    pub key: ContentKey,
    pub torrent: Vec<u8>,
}

/// Whether this process may make a private mount namespace (unprivileged user namespaces)
/// and mount a tmpfs there: the tests of a really full disk need it, and skip without it.
pub fn can_mount_tmpfs() -> Result<(), String> {
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs \"$d\" && umount \"$d\" && rmdir \"$d\"")
        .output();
    match probe {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}

/// Waits (up to 10 s) until a tracker process started at `addr` answers.
pub async fn wait_until_answering(addr: SocketAddr) {
    let uri: Uri = format!("http://{addr}/scrape?{}", creds("u1"))
        .parse()
        .unwrap();
    for _ in 0..200 {
        if http_client::get(&uri).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the tracker at {addr} never answered");
}

/// A port of 127.0.0.1 that was free a moment ago, for programs that take a port number and
/// bind it themselves (the tracker binary, aria2c).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn creds(user: &str) -> String {
    format!(
        "username={}&psw={}",
        enc(user.as_bytes()),
        enc(password(user).as_bytes())
    )
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn fresh_nonce() -> String {
    let mut n = [0u8; 16];
    rand::fill(&mut n);
    hex::encode(n)
}

/// A copy of the committed 2048-bit test key (mode 0600) as `user`'s identity in `dir`.
pub fn test_identity(dir: &Path, user: &str) -> PathBuf {
    let identity = dir.join(format!("{user}.pem"));
    if !identity.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(data("rsa2048.pem"), &identity).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    identity
}

/// `ivcsd --quiet peer` as `user` (its password in IVCSD_PASSWORD, its identity from
/// [`test_identity`]), listening on a free port of 127.0.0.1; killed when dropped.
pub fn peer_command(dir: &Path, user: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"));
    cmd.env("IVCSD_PASSWORD", password(user))
        .env("IVCSD_USER", user)
        .env("RUST_LOG", "warn")
        .arg("--quiet")
        .arg("peer")
        .arg("--identity")
        .arg(test_identity(dir, user))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Sends `signal` (e.g. "-HUP", "-TERM") to a running child process, as an operator would.
pub async fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the process is running").to_string();
    let status = tokio::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Stops `child` with SIGTERM and asserts it exits 0 within a minute; `what` names it.
pub async fn terminate_ok(child: &mut tokio::process::Child, what: &str) {
    signal(child, "-TERM").await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop on SIGTERM"))
        .unwrap();
    assert!(status.success(), "{what} exited with {status}");
}

/// One HTTP request to `addr`; any status is an answer, a failed connection a panic.
pub async fn request_at(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    body: Option<Bytes>,
) -> Answer {
    let uri: Uri = format!("http://{addr}{path_and_query}").parse().unwrap();
    let r = http_client::request(
        method,
        &uri,
        body,
        http_client::Timeouts::default(),
        http_client::DEFAULT_MAX_RESPONSE_BYTES,
    )
    .await
    .unwrap();
    Answer {
        status: r.status,
        body: r.body,
    }
}

/// A GET or POST on the metrics listener: the status and the body as text.
pub async fn scrape_metrics(addr: SocketAddr, method: Method, path: &str) -> (u16, String) {
    let answer = request_at(addr, method, path, None).await;
    (
        answer.status,
        String::from_utf8(answer.body.to_vec()).unwrap(),
    )
}

/// The value of the sample whose name and labels are `series`.
pub fn metrics_sample(text: &str, series: &str) -> u64 {
    ivcsd::metrics::sample_value(text, series)
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Scrapes `addr` until the page's `series` satisfies `wanted` (a page is rendered at most once
/// a second, so the first scrapes may show an older one); returns that page. Panics after 10 s.
pub async fn metrics_when(addr: SocketAddr, series: &str, wanted: impl Fn(u64) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let (status, text) = scrape_metrics(addr, Method::GET, "/metrics").await;
        assert_eq!(status, 200);
        if ivcsd::metrics::sample_value(&text, series).is_some_and(&wanted) {
            return text;
        }
        last = text;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{series} never became what the test waits for; last page:\n{last}");
}
