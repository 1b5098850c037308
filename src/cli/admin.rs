//! `ivcsd admin …`: torrents, relays and the audit log through the tracker's admin API, and
//! users by editing authority.xml locally.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::{Method, Uri};
use zeroize::Zeroizing;

use ivcsd::bencode::{self, Dict, Value};
use ivcsd::http_client;
use ivcsd::tracker::audit;
use ivcsd::types::InfoHash;

use super::GlobalArgs;
use super::peer::Credentials;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The tracker's URL (its announce URL or its base URL).
    #[arg(long, global = true, value_name = "URL", env = "IVCSD_TRACKER")]
    pub tracker: Option<String>,
    #[command(flatten)]
    pub credentials: Credentials,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List, show and set the authority of torrents.
    #[command(subcommand)]
    Torrent(AdminTorrentCommand),
    /// Assign and unassign relays.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Read the audit log (`--follow` to keep reading), or verify its hash chain.
    Audit(AuditArgs),
    /// Edit users in authority.xml (locally; the tracker reloads it).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminTorrentCommand {
    /// Every torrent with its size, owner, authority, swarm counts and cipher.
    List {
        /// One JSON object a line (info_hash, name, size, owner, authority, published_ms,
        /// cipher, seeders, leechers, completed, relays), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One torrent in detail.
    Show {
        /// The 40-digit hex info hash.
        hash: String,
        /// One JSON object, as `list --json` prints them.
        #[arg(long)]
        json: bool,
    },
    /// Set a torrent's authority (a smaller number is a higher authority).
    SetAuthority { hash: String, authority: u32 },
    /// Withdraw a torrent: the tracker forgets it and destroys its content key, so no one
    /// can get the key again and relays stop carrying it. Peers that already have the key or
    /// the data keep them.
    Remove {
        hash: String,
        /// Confirm: the content key cannot be recovered afterwards.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Let USER carry the torrent's ciphertext (it never gets the key).
    Assign {
        hash: String,
        /// The relay's user name. (Its own id: `user` is the global --user flag, and clap
        /// would let this positional silently replace the admin's login name.)
        #[arg(id = "relay_user", value_name = "USER")]
        user: String,
    },
    /// Stop USER carrying the torrent.
    Unassign {
        hash: String,
        #[arg(id = "relay_user", value_name = "USER")]
        user: String,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// Keep printing new entries as they come.
    #[arg(long)]
    pub follow: bool,
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and report the first line edited, removed or reordered.
    ///
    /// A rotated log is checked whole by naming its files oldest first
    /// (`verify audit.log.1 audit.log`): the chain runs on from one file to the next.
    Verify {
        /// The audit log's files, oldest first [default: ./ivcsd-data/audit.log].
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct AuthorityFile {
    /// The authority.xml to edit.
    #[arg(long, value_name = "FILE", default_value = "authority.xml")]
    pub authority_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password comes from IVCSD_PASSWORD, --password-file or a prompt.
    Add {
        name: String,
        /// The user's authority (a smaller number is a higher authority).
        #[arg(long)]
        authority: u32,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Accept the user's requests only from this address, CIDR or `*`.
        #[arg(long, value_name = "ADDR")]
        ip: Option<String>,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Set a user's password (this ends the user's tokens).
    Passwd {
        name: String,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Change a user's authority (this ends the user's tokens).
    SetAuthority {
        name: String,
        authority: u32,
        #[command(flatten)]
        file: AuthorityFile,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[command(flatten)]
        file: AuthorityFile,
    },
}

pub fn run(args: AdminArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::User(command) => super::users::run(command, &args.credentials),
        AdminCommand::Audit(AuditArgs {
            command: Some(AuditCommand::Verify { files }),
            ..
        }) => verify_audit(files),
        command => {
            let client = AdminClient::new(args.tracker.as_deref(), &args.credentials)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("error starting the async runtime")?;
            runtime.block_on(remote(client, command))
        }
    }
}

/// Talks to the tracker's admin API (docs/protocol.md 4.5) with the admin's credentials.
struct AdminClient {
    /// `http://host:port`, without a path.
    base: String,
    /// `username=…&psw=…`, percent-encoded.
    credentials: Zeroizing<String>,
    /// A private CA for an https tracker (`--ca`).
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Everything but unreserved characters is percent-encoded in query values.
fn encode(bytes: &[u8]) -> String {
    ivcsd::peer::tracker_client::percent_encode(bytes)
}

/// `http://host:port/announce?x` or `http://host:port/` → `http://host:port`.
fn base_url(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid tracker URL {url:?}"))?;
    let scheme = uri
        .scheme_str()
        .with_context(|| format!("tracker URL {url:?} has no scheme (http://...)"))?;
    let authority = uri
        .authority()
        .with_context(|| format!("tracker URL {url:?} has no host"))?;
    Ok(format!("{scheme}://{authority}"))
}

fn parse_hash(hex: &str) -> anyhow::Result<InfoHash> {
    hex.parse::<InfoHash>()
        .with_context(|| format!("invalid info hash {hex:?} (expected 40 hex digits)"))
}

impl AdminClient {
    fn new(tracker: Option<&str>, credentials: &Credentials) -> anyhow::Result<AdminClient> {
        let tracker = tracker.context("no tracker: pass --tracker URL or set IVCSD_TRACKER")?;
        let user = credentials
            .user
            .as_deref()
            .context("no user name: pass --user NAME or set IVCSD_USER")?;
        let password = super::read_password(
            credentials.password_file.as_deref(),
            &format!("Password of {user}: "),
            false,
        )?;
        Ok(AdminClient {
            base: base_url(tracker)?,
            credentials: Zeroizing::new(format!(
                "username={}&psw={}",
                encode(user.as_bytes()),
                encode(password.as_bytes())
            )),
            tls: match &credentials.ca {
                Some(ca) => Some(ivcsd::tls::client_config(Some(ca))?),
                None => None,
            },
        })
    }

    /// Sends one admin call and returns the bencoded answer, or the tracker's refusal.
    async fn call(&self, method: Method, path: &str, params: &str) -> anyhow::Result<Vec<u8>> {
        let sep = if params.is_empty() { "" } else { "&" };
        let url = format!(
            "{}/admin/{path}?{}{sep}{params}",
            self.base, *self.credentials
        );
        let uri: Uri = url.parse().context("invalid admin URL")?;
        let body = match method {
            Method::POST => Some(bytes::Bytes::new()),
            _ => None,
        };
        let response = http_client::request_with_tls(
            self.tls.as_ref(),
            method,
            &uri,
            body,
            http_client::Timeouts::default(),
            http_client::DEFAULT_MAX_RESPONSE_BYTES,
        )
        .await
        .with_context(|| format!("error calling the tracker's admin/{path}"))?;
        if response.status != 200 {
            let reason = bencode::decode(&response.body)
                .ok()
                .and_then(|v| {
                    v.as_dict()
                        .and_then(|d| d.get(b"failure reason"))
                        .and_then(|r| r.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("HTTP status {}", response.status));
            anyhow::bail!("tracker refused: {reason}");
        }
        Ok(response.body.to_vec())
    }
}

fn field_str<'a>(d: &'a Dict<'_>, key: &str) -> &'a str {
    d.get(key.as_bytes()).and_then(Value::as_str).unwrap_or("?")
}

fn field_int(d: &Dict<'_>, key: &str) -> i64 {
    d.get(key.as_bytes()).and_then(Value::as_int).unwrap_or(0)
}

fn field_hash(d: &Dict<'_>, key: &str) -> String {
    d.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .map_or_else(|| "?".repeat(40), hex::encode)
}

fn answer_dict<'a>(value: &'a Value<'a>) -> anyhow::Result<&'a Dict<'a>> {
    value
        .as_dict()
        .context("the tracker's answer is not a dictionary")
}

/// A torrent of the admin API as JSON, for `--json`.
fn torrent_json(t: &Dict<'_>) -> serde_json::Value {
    serde_json::json!({
        "info_hash": field_hash(t, "info hash"),
        "name": field_str(t, "name"),
        "size": field_int(t, "size"),
        "owner": field_str(t, "owner"),
        "authority": field_int(t, "authority"),
        "published_ms": field_int(t, "published"),
        "cipher": field_str(t, "cipher"),
        "seeders": field_int(t, "complete"),
        "leechers": field_int(t, "incomplete"),
        "completed": field_int(t, "downloaded"),
        "relays": relays_of(t),
    })
}

fn relays_of<'a>(t: &'a Dict<'_>) -> Vec<&'a str> {
    t.get(b"relays")
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn print_torrent_line(t: &Dict<'_>) {
    println!(
        "{}  {:>4}  {:<12}  {:>14}  {:>5}/{:<5}  {:<11}  {}",
        field_hash(t, "info hash"),
        field_int(t, "authority"),
        field_str(t, "owner"),
        field_int(t, "size"),
        field_int(t, "complete"),
        field_int(t, "incomplete"),
        field_str(t, "cipher"),
        field_str(t, "name"),
    );
}

async fn remote(client: AdminClient, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Torrent(AdminTorrentCommand::List { json }) => {
            let body = client.call(Method::GET, "torrents", "").await?;
            let value = bencode::decode(&body).context("invalid answer from the tracker")?;
            let list = answer_dict(&value)?
                .get(b"torrents")
                .and_then(Value::as_list)
                .context("the tracker's answer has no torrent list")?;
            if json {
                for t in list.iter().filter_map(Value::as_dict) {
                    println!("{}", torrent_json(t));
                }
                return Ok(());
            }
            println!(
                "{:<40}  {:>4}  {:<12}  {:>14}  {:>11}  {:<11}  name",
                "info hash", "auth", "owner", "size (bytes)", "seed/leech", "cipher"
            );
            for t in list.iter().filter_map(Value::as_dict) {
                print_torrent_line(t);
            }
            Ok(())
        }
        AdminCommand::Torrent(AdminTorrentCommand::Show { hash, json }) => {
            let hash = parse_hash(&hash)?;
            let params = format!("info_hash={}", encode(&hash.0));
            let body = client.call(Method::GET, "torrent", &params).await?;
            let value = bencode::decode(&body).context("invalid answer from the tracker")?;
            let t = answer_dict(&value)?
                .get(b"torrent")
                .and_then(Value::as_dict)
                .context("the tracker's answer has no torrent")?;
            if json {
                println!("{}", torrent_json(t));
                return Ok(());
            }
            let relays = relays_of(t);
            println!("info hash:   {}", field_hash(t, "info hash"));
            println!("name:        {}", field_str(t, "name"));
            println!("size:        {} bytes", field_int(t, "size"));
            println!("owner:       {}", field_str(t, "owner"));
            println!("authority:   {}", field_int(t, "authority"));
            println!("published:   {} ms since 1970", field_int(t, "published"));
            println!("cipher:      {}", field_str(t, "cipher"));
            println!(
                "swarm:       {} seeders, {} leechers, {} completed",
                field_int(t, "complete"),
                field_int(t, "incomplete"),
                field_int(t, "downloaded")
            );
            println!("relays:      {}", relays.join(", "));
            Ok(())
        }
        AdminCommand::Torrent(AdminTorrentCommand::SetAuthority { hash, authority }) => {
            let hash = parse_hash(&hash)?;
            let params = format!("info_hash={}&authority={authority}", encode(&hash.0));
            let body = client.call(Method::POST, "set-authority", &params).await?;
            let value = bencode::decode(&body).context("invalid answer from the tracker")?;
            let d = answer_dict(&value)?;
            println!(
                "authority of {hash}: {} -> {}",
                field_int(d, "previous"),
                field_int(d, "authority")
            );
            Ok(())
        }
        AdminCommand::Torrent(AdminTorrentCommand::Remove { hash, yes }) => {
            let hash = parse_hash(&hash)?;
            if !yes {
                anyhow::bail!(
                    "not removing {hash} without --yes: its content key is destroyed and cannot be recovered"
                );
            }
            let params = format!("info_hash={}", encode(&hash.0));
            let body = client.call(Method::POST, "remove", &params).await?;
            let value = bencode::decode(&body).context("invalid answer from the tracker")?;
            let d = answer_dict(&value)?;
            println!(
                "removed {hash} ({}); its content key is destroyed",
                field_str(d, "name")
            );
            Ok(())
        }
        AdminCommand::Relay(command) => {
            let (path, hash, user, verb) = match command {
                RelayCommand::Assign { hash, user } => ("relay/assign", hash, user, "assigned"),
                RelayCommand::Unassign { hash, user } => {
                    ("relay/unassign", hash, user, "unassigned")
                }
            };
            let hash = parse_hash(&hash)?;
            let params = format!(
                "info_hash={}&user={}",
                encode(&hash.0),
                encode(user.as_bytes())
            );
            let body = client.call(Method::POST, path, &params).await?;
            let value = bencode::decode(&body).context("invalid answer from the tracker")?;
            if field_int(answer_dict(&value)?, "changed") == 1 {
                println!("relay {user} {verb} for {hash}");
            } else {
                println!("relay {user} was already {verb} for {hash}");
            }
            Ok(())
        }
        AdminCommand::Audit(AuditArgs { follow, .. }) => {
            let mut since = 0u64;
            loop {
                let body = client
                    .call(Method::GET, "audit", &format!("since={since}&limit=1000"))
                    .await?;
                let value = bencode::decode(&body).context("invalid answer from the tracker")?;
                let d = answer_dict(&value)?;
                for line in d
                    .get(b"entries")
                    .and_then(Value::as_list)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    println!("{line}");
                }
                since = u64::try_from(field_int(d, "last")).unwrap_or(since);
                if !follow {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
        AdminCommand::User(_) => unreachable!("handled locally in run"),
    }
}

/// How often `audit --follow` asks for new entries.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(1);

fn verify_audit(mut files: Vec<PathBuf>) -> anyhow::Result<()> {
    if files.is_empty() {
        files.push(PathBuf::from("ivcsd-data").join(audit::AUDIT_FILE));
    }
    let mut chain = audit::ChainCheck::default();
    let mut total = 0;
    for (i, path) in files.iter().enumerate() {
        let reading = || format!("error reading audit log {}", path.display());
        let file = std::fs::File::open(path).with_context(reading)?;
        let checked = chain
            .next_file(std::io::BufReader::with_capacity(256 * 1024, file))
            .with_context(reading)?;
        match checked {
            Ok(n) => total += n,
            Err(line) => {
                let hint = if line == 1 && i == 0 {
                    " (if this file continues a rotated log, name the earlier files first)"
                } else if line == 1 {
                    " (or it does not continue the file named before it)"
                } else {
                    ""
                };
                anyhow::bail!(
                    "{}: hash chain broken at line {line}: that line or the one before it was edited, removed or reordered{hint}",
                    path.display()
                )
            }
        }
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    println!("{}: {total} entries, hash chain intact", names.join(", "));
    Ok(())
}
