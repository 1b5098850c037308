//! The tracker's configuration: a TOML file (config/tracker.toml documents every field), then
//! command-line flags, which win.
//!
//! Every field has a default, so an empty file (or none) is a working configuration; an
//! unknown field is an error, because a misspelt limit must not silently fall back to its
//! default. [`Config::validate`] checks what serde cannot (ranges, relations between fields).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::content::Cipher;
use crate::types::Authority;

use super::audit::OnFailure;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("error reading config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("error parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The tracker's settings. Durations are whole seconds, named `_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (the `--listen` flag wins).
    pub listen: SocketAddr,
    /// Database, master key and audit log (the `--data-dir` flag wins).
    pub data_dir: PathBuf,
    /// The master key file, when not `master.key` in the data directory (the `--master-key`
    /// flag wins): kept apart, a copy of the data directory holds no readable content key.
    pub master_key: Option<PathBuf>,
    /// Serve https with this certificate chain and key (PEM); both or neither. The
    /// `--tls-cert` and `--tls-key` flags win.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve `GET /metrics` (Prometheus text: request counts, swarm sizes, audit log state)
    /// on this address; off when unset. Plain HTTP without credentials, since it shows only
    /// totals: bind it to loopback or a monitoring network.
    pub metrics_listen: Option<SocketAddr>,

    /// Announce interval sent to clients.
    pub interval_secs: u64,
    /// `min interval` sent to clients.
    pub min_interval_secs: u64,
    /// `interval` and `min interval` sent instead to a downloader that got no peers, so that
    /// one that starts before any seeder learns of it in seconds, not at the next interval.
    pub waiting_interval_secs: u64,
    /// Peers returned when a client gives no `numwant`.
    pub numwant_default: usize,
    /// Most peers returned in one answer.
    pub numwant_cap: usize,
    /// Most live peers kept per torrent.
    pub max_peers_per_torrent: usize,
    /// Interval sent with /relay/assignments: how often relays ask again.
    pub relay_interval_secs: u64,

    /// Lifetime of a token from `getToken=y`.
    pub token_ttl_secs: u64,
    /// How long a verified password is remembered (as a keyed hash) to spare argon2 runs.
    pub password_cache_secs: u64,
    /// Most remembered passwords.
    pub password_cache_entries: usize,
    /// Password checks (argon2, ≈14 ms of CPU each) running at once.
    pub argon2_concurrency: usize,
    /// Failed logins from one address within `throttle_window_secs` before it is refused.
    pub throttle_failures: u32,
    pub throttle_window_secs: u64,
    /// How long a throttled address is refused.
    pub throttle_block_secs: u64,
    /// Most addresses tracked for throttling.
    pub throttle_entries: usize,

    /// Authority of a newly published torrent (0, the highest, by default).
    pub new_torrent_authority: u32,
    /// The content cipher suites a published torrent may use (`info.ivcsd.cipher`), the
    /// preferred one first: getcipher `new=1` names it, and `peer publish` uses it unless
    /// given `--cipher`. Both by default, RC4+ first; `["aes-256-ctr", "rc4+"]` makes AES the
    /// site's default, `["aes-256-ctr"]` keeps new torrents off RC4+, `["rc4+"]` keeps them
    /// readable by older peers. Torrents already published are not affected.
    pub publish_ciphers: Vec<Cipher>,
    /// Largest .torrent accepted by /publish.
    pub max_torrent_bytes: usize,
    /// getcipher: how far `ts` may be from the tracker's clock; also how long nonces are kept.
    pub nonce_window_secs: u64,
    /// Most nonces remembered; when full, getcipher is refused until old ones expire.
    pub nonce_cache_entries: usize,
    /// A key from `new=1` that no torrent claims is deleted after this long.
    pub pending_key_ttl_secs: u64,
    /// Most unclaimed keys one user may hold.
    pub pending_keys_per_user: usize,

    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections served at once from one source address (an IPv6 /64 counts as one); more
    /// from it are closed at once, so one client cannot hold the whole `max_connections` with
    /// idle connections.
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// Threads that run requests; 0 means one per core. CPU-heavy work (argon2, RSA, torrent
    /// parsing) runs on a separate blocking pool either way. On a small machine that also runs
    /// other work, 1 costs fewer thread wake-ups: on the project's 2-core machine, with the
    /// load generator beside it, 1 answered 17 % more announces with a connection each and
    /// 10 % more over keep-alive (docs/benchmarks.md).
    pub workers: usize,
    /// Time allowed to receive a request head, including the idle time of a kept-alive
    /// connection before its next request.
    pub header_read_timeout_secs: u64,
    /// Time allowed for a whole request, body included.
    pub request_timeout_secs: u64,
    /// On shutdown, how long open requests may still finish.
    pub drain_timeout_secs: u64,
    /// How often authority.xml's modification time is polled.
    pub authority_poll_secs: u64,

    /// Write the audit log (`audit.log` in the data directory).
    pub audit: bool,
    /// Audit entries waiting to be written; a full queue slows requests down, never drops
    /// while the log can be written. It also bounds what waits while it cannot. At least 2
    /// are used: a change that must be recorded (a key handed out) holds two places.
    pub audit_queue: usize,
    /// What the tracker does while the audit log cannot be written (a full disk, EIO):
    /// `"refuse"` (the default) answers every request 503 "audit log unavailable; try again
    /// later" until writing works again, so that no key is handed out and no torrent stored
    /// unrecorded; `"continue"` answers anyway, keeps entries in the `audit_queue` and drops
    /// (and counts) those beyond it. docs/protocol.md 8 leaves this open; ivcsd fails closed by
    /// default.
    pub audit_on_failure: OnFailure,
}

/// More request threads than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
            data_dir: PathBuf::from("ivcsd-data"),
            master_key: None,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
            interval_secs: 1800,
            min_interval_secs: 900,
            waiting_interval_secs: 30,
            numwant_default: 50,
            numwant_cap: 200,
            max_peers_per_torrent: 10_000,
            relay_interval_secs: 60,
            token_ttl_secs: 3600,
            password_cache_secs: 600,
            password_cache_entries: 10_000,
            argon2_concurrency: 2,
            throttle_failures: 5,
            throttle_window_secs: 60,
            throttle_block_secs: 60,
            throttle_entries: 65_536,
            new_torrent_authority: 0,
            publish_ciphers: Cipher::ALL.to_vec(),
            max_torrent_bytes: 16 * 1024 * 1024,
            nonce_window_secs: 300,
            nonce_cache_entries: 100_000,
            pending_key_ttl_secs: 24 * 3600,
            pending_keys_per_user: 64,
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_header_bytes: 32 * 1024,
            workers: 0,
            header_read_timeout_secs: 30,
            request_timeout_secs: 30,
            drain_timeout_secs: 10,
            authority_poll_secs: 2,
            audit: true,
            audit_queue: 4096,
            audit_on_failure: OnFailure::Refuse,
        }
    }
}

impl Config {
    /// Where the master key file is.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join(super::store::MASTER_KEY_FILE))
    }

    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has an unknown field, or fails
    /// [`Config::validate`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// As [`Config::load`], without the file.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations serde cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.publish_ciphers.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "publish_ciphers is empty: no torrent could be published; name at least one of {}",
                Cipher::known_names()
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: give both or neither".into(),
            ));
        }
        if self.metrics_listen == Some(self.listen) {
            return Err(ConfigError::Invalid(
                "metrics_listen must differ from listen".into(),
            ));
        }
        let positive = [
            ("interval_secs", self.interval_secs),
            ("relay_interval_secs", self.relay_interval_secs),
            ("token_ttl_secs", self.token_ttl_secs),
            ("nonce_window_secs", self.nonce_window_secs),
            ("pending_key_ttl_secs", self.pending_key_ttl_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("authority_poll_secs", self.authority_poll_secs),
            ("throttle_window_secs", self.throttle_window_secs),
            ("numwant_cap", self.numwant_cap as u64),
            ("max_peers_per_torrent", self.max_peers_per_torrent as u64),
            ("argon2_concurrency", self.argon2_concurrency as u64),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("max_torrent_bytes", self.max_torrent_bytes as u64),
            ("nonce_cache_entries", self.nonce_cache_entries as u64),
            ("throttle_entries", self.throttle_entries as u64),
            ("throttle_failures", u64::from(self.throttle_failures)),
            ("audit_queue", self.audit_queue as u64),
            ("waiting_interval_secs", self.waiting_interval_secs),
            ("pending_keys_per_user", self.pending_keys_per_user as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.min_interval_secs > self.interval_secs {
            return Err(ConfigError::Invalid(
                "min_interval_secs must not exceed interval_secs".into(),
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::Invalid(format!(
                "workers must be at most {MAX_WORKERS} (0: one per core)"
            )));
        }
        if self.max_header_bytes < 8192 {
            // hyper's own floor for its read buffer
            return Err(ConfigError::Invalid(
                "max_header_bytes must be at least 8192".into(),
            ));
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
    /// Peers that stop announcing expire after twice the interval (docs/protocol.md 4.1).
    pub fn peer_ttl(&self) -> Duration {
        Duration::from_secs(self.interval_secs.saturating_mul(2))
    }
    pub fn new_torrent_authority(&self) -> Authority {
        Authority(self.new_torrent_authority)
    }

    /// The suite new torrents should use: the first of `publish_ciphers`.
    pub fn preferred_cipher(&self) -> Cipher {
        // `validate` keeps the list from being empty; the protocol's first suite otherwise.
        self.publish_ciphers.first().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.token_ttl_secs, 3600);
        assert_eq!(c.new_torrent_authority, 0);
        assert_eq!(c.max_torrent_bytes, 16 * 1024 * 1024);
        assert_eq!(c.nonce_window_secs, 300);
        assert_eq!(c.pending_key_ttl_secs, 86_400);
        assert_eq!(c.peer_ttl(), Duration::from_secs(3600));
        assert_eq!(c.audit_on_failure, OnFailure::Refuse);
    }

    #[test]
    fn audit_on_failure_takes_refuse_or_continue() {
        let c = Config::from_toml("audit_on_failure = \"continue\"").unwrap();
        assert_eq!(c.audit_on_failure, OnFailure::Continue);
        let c = Config::from_toml("audit_on_failure = \"refuse\"").unwrap();
        assert_eq!(c.audit_on_failure, OnFailure::Refuse);
    }

    #[test]
    fn workers_zero_is_one_per_core_and_a_number_is_taken() {
        assert_eq!(Config::default().workers, 0);
        assert_eq!(Config::from_toml("workers = 1").unwrap().workers, 1);
    }

    #[test]
    fn publish_ciphers_default_to_both_and_take_names() {
        assert_eq!(Config::default().publish_ciphers, Cipher::ALL.to_vec());
        let c = Config::from_toml("publish_ciphers = [\"aes-256-ctr\"]").unwrap();
        assert_eq!(c.publish_ciphers, vec![Cipher::Aes256Ctr]);
    }

    #[test]
    fn an_unknown_publish_cipher_is_named_in_the_error() {
        let err = Config::from_toml("publish_ciphers = [\"rc4\"]").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown cipher \"rc4\" (known: rc4+, aes-256-ctr)"),
            "{err}"
        );
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../config/tracker.toml");
        Config::from_toml(text).unwrap();
    }

    macro_rules! invalid {
        ($name:ident, $toml:expr, $pat:pat) => {
            #[test]
            fn $name() {
                let r = Config::from_toml($toml);
                assert!(matches!(r, Err($pat)), "{r:?}");
            }
        };
    }
    invalid!(
        unknown_field,
        "intervall_secs = 5",
        ConfigError::Parse { .. }
    );
    invalid!(
        wrong_type,
        "interval_secs = \"5\"",
        ConfigError::Parse { .. }
    );
    invalid!(zero_interval, "interval_secs = 0", ConfigError::Invalid(_));
    invalid!(
        metrics_on_the_api_address,
        "listen = \"127.0.0.1:6969\"\nmetrics_listen = \"127.0.0.1:6969\"",
        ConfigError::Invalid(_)
    );
    invalid!(
        metrics_not_an_address,
        "metrics_listen = \"localhost\"",
        ConfigError::Parse { .. }
    );
    invalid!(
        min_above_interval,
        "interval_secs = 10\nmin_interval_secs = 11",
        ConfigError::Invalid(_)
    );
    invalid!(
        tiny_headers,
        "max_header_bytes = 100",
        ConfigError::Invalid(_)
    );
    invalid!(too_many_workers, "workers = 5000", ConfigError::Invalid(_));
    invalid!(
        no_publish_cipher,
        "publish_ciphers = []",
        ConfigError::Invalid(_)
    );
    invalid!(
        publish_cipher_not_a_list,
        "publish_ciphers = \"rc4+\"",
        ConfigError::Parse { .. }
    );
    invalid!(
        bad_listen,
        "listen = \"nowhere\"",
        ConfigError::Parse { .. }
    );
}
