//! authority.xml: the users, their password hashes and authority levels (docs/protocol.md 3.1).
//!
//! TEMPORARY (branch `tracker`): a minimal implementation of the TEAM.md contract so the
//! tracker compiles and its tests run before the lead's version lands on main. The lead's
//! version wins in the merge. It reads argon2 PHC hashes only, and its errors name the file
//! but not the line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use quick_xml::events::Event;
use tokio_util::sync::CancellationToken;

use crate::types::Authority;

#[derive(Debug, thiserror::Error)]
pub enum AuthorityFileError {
    #[error("error reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("error in {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A PHC password hash.
#[derive(Clone)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// `<ip>`: an address, a CIDR block or `*`.
#[derive(Debug, Clone)]
pub enum IpRule {
    Any,
    Net(IpAddr, u8),
}

impl IpRule {
    fn parse(s: &str) -> Option<IpRule> {
        let s = s.trim();
        if s == "*" {
            return Some(IpRule::Any);
        }
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        Some(IpRule::Net(addr, bits))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self, ip) {
            (IpRule::Any, _) => true,
            (IpRule::Net(IpAddr::V4(net), bits), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpRule::Net(IpAddr::V6(net), bits), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub password: PasswordHash,
    pub authority: Authority,
    pub admin: bool,
    pub ip: Option<IpRule>,
    pub public_key: Option<Vec<u8>>,
    pub updated_ms: u64,
}

impl User {
    pub fn verify_password(&self, password: &[u8]) -> bool {
        use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
        PasswordHash::new(&self.password.0)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    pub fn token_generation(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.password.0.as_bytes());
        h.update([0]);
        h.update(self.authority.0.to_be_bytes());
        h.update([u8::from(self.admin)]);
        h.finalize().into()
    }
}

#[derive(Debug, Default)]
pub struct UserTable {
    users: std::collections::HashMap<String, User>,
}

impl UserTable {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

pub struct AuthoritySource {
    path: PathBuf,
    table: ArcSwap<UserTable>,
    mtime: std::sync::Mutex<Option<SystemTime>>,
}

fn parse(path: &Path, text: &str) -> Result<UserTable, AuthorityFileError> {
    let invalid = |reason: String| AuthorityFileError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut users = std::collections::HashMap::new();
    let mut field: Option<String> = None;
    let mut cur: std::collections::HashMap<String, String> = Default::default();
    loop {
        match reader.read_event().map_err(|e| invalid(e.to_string()))? {
            Event::Start(e) => {
                let name: String = e.name().as_ref().to_owned();
                match name.as_str() {
                    "peerAuthority" => {}
                    "peer" => cur.clear(),
                    "ip" | "username" | "psw_hash" | "authority" | "updated" | "admin"
                    | "public_key" => field = Some(name),
                    other => return Err(invalid(format!("unknown element <{other}>"))),
                }
            }
            Event::Text(t) => {
                if let Some(f) = &field {
                    let v = t.into_inner();
                    cur.insert(f.clone(), v.trim().to_owned());
                }
            }
            Event::End(e) => {
                field = None;
                if e.name().as_ref() == "peer" {
                    let get = |k: &str| cur.get(k).cloned();
                    let username = get("username").ok_or_else(|| invalid("no username".into()))?;
                    let user = User {
                        password: PasswordHash(
                            get("psw_hash").ok_or_else(|| invalid("no psw_hash".into()))?,
                        ),
                        authority: get("authority")
                            .and_then(|a| a.parse().ok())
                            .ok_or_else(|| invalid("bad authority".into()))?,
                        admin: get("admin").is_some_and(|a| a == "true"),
                        ip: match get("ip") {
                            None => None,
                            Some(s) => {
                                Some(IpRule::parse(&s).ok_or_else(|| invalid("bad ip".into()))?)
                            }
                        },
                        public_key: match get("public_key") {
                            None => None,
                            Some(s) => {
                                use base64::Engine;
                                Some(
                                    base64::engine::general_purpose::STANDARD
                                        .decode(s)
                                        .map_err(|_| invalid("bad public_key".into()))?,
                                )
                            }
                        },
                        updated_ms: get("updated").and_then(|u| u.parse().ok()).unwrap_or(0),
                        username: username.clone(),
                    };
                    if users.insert(username.clone(), user).is_some() {
                        return Err(invalid(format!("duplicate user {username}")));
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(UserTable { users })
}

impl AuthoritySource {
    pub fn load(path: impl AsRef<Path>) -> Result<AuthoritySource, AuthorityFileError> {
        let path = path.as_ref().to_owned();
        let (table, mtime) = Self::read(&path)?;
        Ok(AuthoritySource {
            path,
            table: ArcSwap::from_pointee(table),
            mtime: std::sync::Mutex::new(mtime),
        })
    }

    fn read(path: &Path) -> Result<(UserTable, Option<SystemTime>), AuthorityFileError> {
        let read = |source| AuthorityFileError::Read {
            path: path.to_owned(),
            source,
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(read)?;
        Ok((parse(path, &text)?, mtime))
    }

    pub fn current(&self) -> Arc<UserTable> {
        self.table.load_full()
    }

    pub fn reload(&self) -> Result<bool, AuthorityFileError> {
        let (table, mtime) = Self::read(&self.path)?;
        self.table.store(Arc::new(table));
        *self.mtime.lock().unwrap_or_else(|p| p.into_inner()) = mtime;
        Ok(true)
    }

    pub fn spawn_watcher(self: Arc<Self>, poll: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(poll) => {}
                }
                let now = std::fs::metadata(&self.path)
                    .and_then(|m| m.modified())
                    .ok();
                let last = *self.mtime.lock().unwrap_or_else(|p| p.into_inner());
                if now != last
                    && let Err(e) = self.reload()
                {
                    tracing::warn!("{e}; keeping the last good authority table");
                    *self.mtime.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
            }
        });
    }
}
