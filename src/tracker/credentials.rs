//! Who is asking (docs/protocol.md 3.2): `username` + `psw`, or a `token` from `getToken=y`.
//!
//! - Passwords are checked with argon2 (`User::verify_password`, ≈14 ms of CPU) on the blocking
//!   pool behind a semaphore. A verified password is then remembered for a while as an HMAC
//!   under a random process key, bound to the user's token generation, so stock clients that
//!   send the password on every announce do not cost an argon2 run each time. The password
//!   itself is never kept, logged or put in an error.
//! - A token is `v1.<base64url user>.<expiry>.<base64url mac>`, the mac an HMAC-SHA-256 under
//!   the tracker's token key over the user, the expiry and `User::token_generation()`, so a new
//!   password, authority or admin flag ends every token of that user. Compared in constant time.
//! - A user with `<ip>` is accepted only from a matching source address.
//! - Failed logins are counted per source address (per /64 for IPv6); past the limit, the
//!   address is refused for a while before any password is checked. The map is bounded and
//!   its entries expire.
//!
//! Every identity failure answers the same public text ("invalid credentials"), so a client
//! cannot tell an unknown user from a wrong password or a wrong address; the audit log can.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::authority::{AuthoritySource, PasswordHash, User, UserTable};
use super::clock::Clock;
use super::config::Config;
use super::decide::Requester;
use super::query::Query;
use super::refusal::Refusal;

type HmacSha256 = Hmac<Sha256>;

/// Longest username or password accepted, in bytes (argon2 input is bounded too).
const MAX_SECRET_LEN: usize = 1024;

/// The limits of [`Authenticator`], from the config.
#[derive(Debug, Clone, Copy)]
pub struct CredentialLimits {
    pub token_ttl_secs: u64,
    pub cache_secs: u64,
    pub cache_entries: usize,
    pub throttle_failures: u32,
    pub throttle_window_secs: u64,
    pub throttle_block_secs: u64,
    pub throttle_entries: usize,
}

impl CredentialLimits {
    pub fn from_config(c: &Config) -> Self {
        CredentialLimits {
            token_ttl_secs: c.token_ttl_secs,
            cache_secs: c.password_cache_secs,
            cache_entries: c.password_cache_entries,
            throttle_failures: c.throttle_failures,
            throttle_window_secs: c.throttle_window_secs,
            throttle_block_secs: c.throttle_block_secs,
            throttle_entries: c.throttle_entries,
        }
    }
}

/// A token handed out with `getToken=y`.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Unix seconds.
    pub expires: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// An authenticated requester: the user table it was checked against and its name.
pub struct Authenticated {
    table: Arc<UserTable>,
    username: String,
    /// Set when `getToken=y` came with a valid password.
    pub token: Option<IssuedToken>,
}

impl Authenticated {
    /// The user, from the same table the credentials were checked against (a reload in
    /// between does not change who this request is).
    pub fn user(&self) -> &User {
        self.table
            .get(&self.username)
            .expect("the user was found in this very table when authenticated")
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn requester(&self) -> Requester<'_> {
        let user = self.user();
        Requester {
            name: &self.username,
            authority: user.authority,
            admin: user.admin,
        }
    }
}

#[derive(Debug)]
struct CachedLogin {
    mac: [u8; 32],
    expires: u64,
}

#[derive(Debug, Default)]
struct FailureCount {
    failures: u32,
    window_start: u64,
    blocked_until: u64,
}

/// Verifies credentials; one per tracker, shared by every request.
pub struct Authenticator {
    users: Arc<AuthoritySource>,
    clock: Clock,
    limits: CredentialLimits,
    /// Signs tokens; derived from the master key so tokens survive a restart.
    token_key: Zeroizing<[u8; 32]>,
    /// Keys the remembered-password hashes; random per process.
    cache_key: Zeroizing<[u8; 32]>,
    /// username → the keyed hash of the last verified password. Bounded by `cache_entries`.
    cache: Mutex<HashMap<String, CachedLogin>>,
    /// source address (IPv6: its /64) → failures. Bounded by `throttle_entries`.
    failures: Mutex<HashMap<IpAddr, FailureCount>>,
    argon2: Semaphore,
}

/// IPv6 clients usually own a whole /64, so failures are counted per /64.
fn throttle_key(ip: IpAddr) -> IpAddr {
    crate::conn_limit::source_key(ip)
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        // length-prefix each part so that ("ab","c") and ("a","bc") differ
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl Authenticator {
    pub fn new(
        users: Arc<AuthoritySource>,
        clock: Clock,
        limits: CredentialLimits,
        token_key: [u8; 32],
        argon2_concurrency: usize,
    ) -> Self {
        let mut cache_key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut cache_key[..]);
        Authenticator {
            users,
            clock,
            limits,
            token_key: Zeroizing::new(token_key),
            cache_key,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            argon2: Semaphore::new(argon2_concurrency),
        }
    }

    /// Authenticates a request from `source`.
    ///
    /// # Errors
    /// A refusal for a throttled address, missing, malformed or wrong credentials, an expired
    /// or revoked token, or a source address the user's `<ip>` rule does not allow.
    pub async fn authenticate(
        &self,
        query: &Query<'_>,
        source: IpAddr,
    ) -> Result<Authenticated, Refusal> {
        let now = self.clock.unix_secs();
        self.check_throttle(source, now)?;
        let username = query.get_str("username")?;
        let password = query.get("psw")?;
        let token = query.get_str("token")?;
        let want_token = query.get_flag("getToken")?.unwrap_or(false);
        let authenticated = match (username, password, token) {
            (Some(name), Some(psw), _) => {
                if name.len() > MAX_SECRET_LEN || psw.len() > MAX_SECRET_LEN {
                    return Err(Refusal::malformed("username or password too long"));
                }
                let psw = Zeroizing::new(psw.to_vec());
                let name = name.to_owned();
                self.check_password(name, psw, source, now).await?
            }
            (_, _, Some(token)) => self.check_token(token, source, now)?,
            _ => {
                return Err(Refusal {
                    kind: super::refusal::RefusalKind::Identity,
                    public: "missing credentials: give username and psw, or token".into(),
                    audit: "no credentials".into(),
                });
            }
        };
        let mut authenticated = authenticated;
        if want_token && password.is_some() {
            authenticated.token = Some(self.issue_token(authenticated.user(), now));
        }
        Ok(authenticated)
    }

    fn check_throttle(&self, source: IpAddr, now: u64) -> Result<(), Refusal> {
        let failures = self.failures.lock();
        match failures.get(&throttle_key(source)) {
            Some(f) if f.blocked_until > now => Err(Refusal {
                kind: super::refusal::RefusalKind::Identity,
                public: "too many failed logins from this address; try again later".into(),
                audit: "throttled source address".into(),
            }),
            _ => Ok(()),
        }
    }

    fn record_failure(&self, source: IpAddr, now: u64) {
        let key = throttle_key(source);
        let mut failures = self.failures.lock();
        if !failures.contains_key(&key) && failures.len() >= self.limits.throttle_entries {
            let window = self.limits.throttle_window_secs;
            failures.retain(|_, f| f.blocked_until > now || f.window_start + window > now);
            if failures.len() >= self.limits.throttle_entries {
                tracing::warn!("login failure table full; failure from {source} not counted");
                return;
            }
        }
        let f = failures.entry(key).or_default();
        if f.window_start + self.limits.throttle_window_secs <= now {
            f.failures = 0;
            f.window_start = now;
        }
        f.failures += 1;
        if f.failures >= self.limits.throttle_failures {
            f.blocked_until = now + self.limits.throttle_block_secs;
            f.failures = 0;
            f.window_start = now;
        }
    }

    fn refuse(&self, source: IpAddr, now: u64, audit: String) -> Refusal {
        self.record_failure(source, now);
        Refusal::bad_credentials(audit)
    }

    async fn check_password(
        &self,
        name: String,
        psw: Zeroizing<Vec<u8>>,
        source: IpAddr,
        now: u64,
    ) -> Result<Authenticated, Refusal> {
        let table = self.users.current();
        let Some(user) = table.get(&name) else {
            // Spend the same argon2 time as for a wrong password, so that response times do
            // not tell which user names exist (throttling bounds what this costs).
            self.dummy_verify(psw).await;
            return Err(self.refuse(source, now, format!("unknown user {name:?}")));
        };
        if let Some(rule) = &user.ip
            && !rule.matches(source)
        {
            return Err(self.refuse(
                source,
                now,
                format!("source address not allowed for user {name:?}"),
            ));
        }
        let generation = user.token_generation();
        let remembered = mac(&self.cache_key, &[name.as_bytes(), &psw, &generation]);
        let cached = self
            .cache
            .lock()
            .get(&name)
            .is_some_and(|c| c.expires > now && bool::from(c.mac.ct_eq(&remembered)));
        if !cached {
            let ok = {
                let _permit = self
                    .argon2
                    .acquire()
                    .await
                    .map_err(|_| Refusal::identity("tracker is shutting down"))?;
                let table = table.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || {
                    table.get(&name).is_some_and(|u| u.verify_password(&psw))
                })
                .await
                .unwrap_or(false)
            };
            if !ok {
                return Err(self.refuse(source, now, format!("wrong password for user {name:?}")));
            }
            self.remember(&name, remembered, now);
        }
        Ok(Authenticated {
            table,
            username: name,
            token: None,
        })
    }

    /// An argon2 verification that always fails, as long as a real one.
    async fn dummy_verify(&self, psw: Zeroizing<Vec<u8>>) {
        static DUMMY: std::sync::OnceLock<Option<PasswordHash>> = std::sync::OnceLock::new();
        let Ok(_permit) = self.argon2.acquire().await else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            let dummy =
                DUMMY.get_or_init(|| PasswordHash::new_argon2id(b"ivcsd: no such user").ok());
            dummy.as_ref().is_some_and(|h| h.verify(&psw))
        })
        .await;
    }

    fn remember(&self, name: &str, remembered: [u8; 32], now: u64) {
        let mut cache = self.cache.lock();
        if !cache.contains_key(name) && cache.len() >= self.limits.cache_entries {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= self.limits.cache_entries {
                // still full of live entries: drop one; it costs that user one argon2 run
                if let Some(victim) = cache.keys().next().cloned() {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(
            name.to_owned(),
            CachedLogin {
                mac: remembered,
                expires: now + self.limits.cache_secs,
            },
        );
    }

    fn token_mac(&self, name: &str, expires: u64, generation: &[u8; 32]) -> [u8; 32] {
        mac(
            &self.token_key,
            &[
                b"ivcsd-token/1",
                name.as_bytes(),
                &expires.to_be_bytes(),
                generation,
            ],
        )
    }

    fn issue_token(&self, user: &User, now: u64) -> IssuedToken {
        let expires = now + self.limits.token_ttl_secs;
        let tag = self.token_mac(&user.username, expires, &user.token_generation());
        IssuedToken {
            token: format!(
                "v1.{}.{expires}.{}",
                URL_SAFE_NO_PAD.encode(user.username.as_bytes()),
                URL_SAFE_NO_PAD.encode(tag)
            ),
            expires,
        }
    }

    fn check_token(&self, token: &str, source: IpAddr, now: u64) -> Result<Authenticated, Refusal> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(user_b64), Some(expires), Some(tag_b64), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(self.refuse(source, now, "malformed token".into()));
        };
        let name = URL_SAFE_NO_PAD
            .decode(user_b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let expires = expires.parse::<u64>().ok();
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok();
        let (Some(name), Some(expires), Some(tag)) = (name, expires, tag) else {
            return Err(self.refuse(source, now, "malformed token".into()));
        };
        let table = self.users.current();
        let Some(user) = table.get(&name) else {
            return Err(self.refuse(source, now, format!("token of unknown user {name:?}")));
        };
        let expected = self.token_mac(&name, expires, &user.token_generation());
        if !bool::from(expected.as_slice().ct_eq(&tag)) {
            return Err(self.refuse(
                source,
                now,
                format!("token of user {name:?} invalid or revoked"),
            ));
        }
        if expires <= now {
            return Err(Refusal::bad_credentials(format!(
                "token of user {name:?} expired"
            )));
        }
        if let Some(rule) = &user.ip
            && !rule.matches(source)
        {
            return Err(self.refuse(
                source,
                now,
                format!("source address not allowed for user {name:?}"),
            ));
        }
        Ok(Authenticated {
            table,
            username: name,
            token: None,
        })
    }

    /// Drops expired cache and throttle entries; run periodically.
    pub fn clean(&self) {
        let now = self.clock.unix_secs();
        self.cache.lock().retain(|_, c| c.expires > now);
        let window = self.limits.throttle_window_secs;
        self.failures
            .lock()
            .retain(|_, f| f.blocked_until > now || f.window_start + window > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::authority::{User, UserTable};
    use crate::types::Authority;
    use std::time::Duration;

    fn write_users(path: &std::path::Path, password: &str, authority: u32) {
        let mut table = UserTable::default();
        table.insert(User {
            username: "u".into(),
            password: PasswordHash::new_argon2id(password.as_bytes()).unwrap(),
            authority: Authority(authority),
            admin: false,
            ip: None,
            public_key: None,
            updated_ms: 1,
        });
        std::fs::write(path, table.to_xml()).unwrap();
    }

    fn limits() -> CredentialLimits {
        CredentialLimits {
            token_ttl_secs: 3600,
            cache_secs: 600,
            cache_entries: 10,
            throttle_failures: 2,
            throttle_window_secs: 60,
            throttle_block_secs: 120,
            throttle_entries: 10,
        }
    }

    const SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn login(c: &Authenticator, query: &str) -> Result<Authenticated, Refusal> {
        c.authenticate(&Query::parse(query).unwrap(), SOURCE).await
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_after_their_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.xml");
        write_users(&path, "pw", 1);
        let users = Arc::new(AuthoritySource::load(&path).unwrap());
        let c = Authenticator::new(users, Clock::start(), limits(), [1; 32], 1);
        let token = login(&c, "username=u&psw=pw&getToken=y")
            .await
            .unwrap()
            .token
            .unwrap();
        let q = format!("token={}", token.token);
        assert_eq!(login(&c, &q).await.unwrap().username(), "u");
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(login(&c, &q).await.is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        let refused = login(&c, &q).await.err().unwrap();
        assert_eq!(refused.public, super::super::refusal::BAD_CREDENTIALS);
        assert!(refused.audit.contains("expired"));
        // a token signed with another key is refused
        let other = Authenticator::new(
            Arc::new(AuthoritySource::load(&path).unwrap()),
            Clock::start(),
            limits(),
            [2; 32],
            1,
        );
        let fresh = login(&c, "username=u&psw=pw&getToken=y")
            .await
            .unwrap()
            .token
            .unwrap();
        assert!(
            login(&other, &format!("token={}", fresh.token))
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_blocks_then_forgives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.xml");
        write_users(&path, "pw", 1);
        let users = Arc::new(AuthoritySource::load(&path).unwrap());
        let c = Authenticator::new(users, Clock::start(), limits(), [1; 32], 1);
        assert!(login(&c, "username=u&psw=bad").await.is_err());
        assert!(login(&c, "username=u&psw=bad").await.is_err());
        let blocked = login(&c, "username=u&psw=pw").await.err().unwrap();
        assert_eq!(blocked.audit, "throttled source address");
        tokio::time::advance(Duration::from_secs(121)).await;
        assert!(login(&c, "username=u&psw=pw").await.is_ok());
        c.clean();
    }

    #[tokio::test]
    async fn remembered_password_ends_when_the_password_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.xml");
        write_users(&path, "old", 1);
        let users = Arc::new(AuthoritySource::load(&path).unwrap());
        let c = Authenticator::new(users.clone(), Clock::start(), limits(), [1; 32], 1);
        assert!(login(&c, "username=u&psw=old").await.is_ok());
        assert!(login(&c, "username=u&psw=old").await.is_ok()); // from the cache
        write_users(&path, "new", 1);
        users.reload().unwrap();
        assert!(login(&c, "username=u&psw=old").await.is_err());
        assert!(login(&c, "username=u&psw=new").await.is_ok());
    }

    #[test]
    fn ipv6_is_throttled_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(throttle_key(a), throttle_key(b));
        assert_ne!(throttle_key(a), throttle_key(c));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(throttle_key(v4), v4);
    }

    #[test]
    fn mac_parts_are_length_prefixed() {
        let k = [7u8; 32];
        assert_ne!(mac(&k, &[b"ab", b"c"]), mac(&k, &[b"a", b"bc"]));
    }
}
