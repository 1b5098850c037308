//! The admin API (docs/protocol.md 4.5), for users with `<admin>true</admin>` only; every call,
//! allowed or refused, is audited, and every change names the old and new value in the audit log.
//!
//! - `GET /admin/torrents`: every torrent with name, size, owner, authority, relays and swarm
//!   counts, as `{"torrents": [...]}`.
//! - `GET /admin/torrent?info_hash=…`: one, as `{"torrent": {...}}`.
//! - `POST /admin/set-authority?info_hash=…&authority=N`.
//! - `POST /admin/relay/assign?info_hash=…&user=NAME`, `POST /admin/relay/unassign?…`.
//! - `POST /admin/remove?info_hash=…`: withdraws a torrent and destroys its content key (not
//!   docs/protocol.md 4.5 lists it beside the original endpoints; see [`remove`]).
//! - `GET /admin/audit?since=SEQ&limit=N`: recent audit entries (JSON lines) after `since`, as
//!   `{"entries": [...], "last": SEQ}`; `ivcsd admin audit --follow` polls it.
//!
//! Changes go through [`super::catalogue`], which commits each to the store before it changes
//! the copy in memory.

use crate::bencode::{Dict, Value};
use crate::types::{Authority, InfoHash};

use super::answer::{Answer, int};
use super::audit::AuditEntry;
use super::catalogue::CatalogueError;
use super::decide::decide_admin;
use super::endpoint::Endpoint;
use super::query::Query;
use super::refusal::Refusal;
use super::store::TorrentRecord;
use super::swarm::SwarmCounts;
use super::{ApiRequest, TrackerState};

/// Most audit entries one call returns.
const MAX_AUDIT_ENTRIES: usize = 1000;

/// What an admin call answers.
#[derive(Debug)]
pub enum AdminAnswer {
    /// `{"torrents": [...]}`, oldest publish first.
    Torrents(Vec<(TorrentRecord, SwarmCounts)>),
    /// `{"torrent": {...}}`.
    Torrent(TorrentRecord, SwarmCounts),
    AuthoritySet {
        info_hash: InfoHash,
        authority: Authority,
        previous: Authority,
    },
    /// Whether an assignment changed.
    RelayChanged(bool),
    /// The entries after `since`, and the `seq` to ask after next time.
    AuditTail {
        entries: Vec<AuditEntry>,
        last: u64,
    },
    Removed {
        info_hash: InfoHash,
        name: String,
    },
}

impl AdminAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let mut d = Dict::new();
        match self {
            AdminAnswer::Torrents(all) => {
                let list = all.iter().map(|(t, c)| torrent_dict(t, c)).collect();
                d.insert(&b"torrents"[..], Value::List(list));
            }
            AdminAnswer::Torrent(t, c) => {
                d.insert(&b"torrent"[..], torrent_dict(t, c));
            }
            AdminAnswer::AuthoritySet {
                info_hash,
                authority,
                previous,
            } => {
                d.insert(&b"info hash"[..], Value::from(info_hash.0.to_vec()));
                d.insert(&b"authority"[..], Value::from(authority.0));
                d.insert(&b"previous"[..], Value::from(previous.0));
            }
            AdminAnswer::RelayChanged(changed) => {
                d.insert(&b"changed"[..], Value::Int(i64::from(*changed)));
            }
            AdminAnswer::AuditTail { entries, last } => {
                let lines = entries
                    .iter()
                    .filter_map(|e| serde_json::to_string(e).ok())
                    .map(Value::from)
                    .collect();
                d.insert(&b"entries"[..], Value::List(lines));
                d.insert(&b"last"[..], int(*last));
            }
            AdminAnswer::Removed { info_hash, name } => {
                d.insert(&b"info hash"[..], Value::from(info_hash.0.to_vec()));
                d.insert(&b"name"[..], Value::from(name.clone()));
            }
        }
        d
    }
}

fn torrent_dict(t: &TorrentRecord, counts: &SwarmCounts) -> Value<'static> {
    let mut d = Dict::new();
    d.insert(&b"info hash"[..], Value::from(t.info_hash.0.to_vec()));
    d.insert(&b"name"[..], Value::from(t.name.clone()));
    d.insert(&b"size"[..], int(t.size));
    d.insert(&b"owner"[..], Value::from(t.owner.clone()));
    d.insert(&b"authority"[..], Value::from(t.authority.0));
    d.insert(&b"published"[..], int(t.published_ms));
    d.insert(&b"cipher"[..], Value::from(t.cipher.name()));
    d.insert(&b"complete"[..], int(counts.complete as u64));
    d.insert(&b"incomplete"[..], int(counts.incomplete as u64));
    d.insert(&b"downloaded"[..], int(counts.downloaded));
    d.insert(
        &b"relays"[..],
        Value::List(t.relays.iter().map(|r| Value::from(r.clone())).collect()),
    );
    Value::Dict(d)
}

/// Serves the admin call `endpoint`; `call` is the path after `/admin/`, which names an
/// unknown call in its refusal.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
    endpoint: Endpoint,
    call: &str,
) -> Result<Answer, Refusal> {
    let auth = state.authenticate(req, query, endpoint, None).await?;
    let user = Some(auth.username());
    if let Err(refusal) = decide_admin(&auth.requester()) {
        return Err(state.refuse(req, endpoint, user, None, refusal).await);
    }
    // A change is made only with its entry accepted: the place is taken first.
    let slot = state.reserve_audit().await?;
    let info_hash = query.info_hash().ok();
    let result = dispatch(state, req, query, endpoint, call).await;
    let outcome = result.as_ref().map(|(_, reason)| reason.as_str());
    state
        .audit_change(slot, req, endpoint, user, info_hash, outcome)
        .await?;
    let (answer, _) = result?;
    Ok(Answer::Admin(answer))
}

/// Refuses a call made with another method than its own (checked after authentication, so
/// that the refusal is audited).
fn require_method(req: &ApiRequest<'_>, endpoint: Endpoint) -> Result<(), Refusal> {
    match endpoint.method() {
        Some(method) if *req.method != method => Err(Refusal::malformed(format!(
            "this admin call takes {method}"
        ))),
        _ => Ok(()),
    }
}

/// The admin sees every torrent, so an unknown hash is simply "not found".
fn known(state: &TrackerState, hash: &InfoHash) -> Result<TorrentRecord, Refusal> {
    state
        .catalogue
        .get(hash)
        .ok_or_else(|| CatalogueError::UnknownTorrent.into())
}

fn with_counts(state: &TrackerState, t: TorrentRecord) -> (TorrentRecord, SwarmCounts) {
    let counts = state.swarms.lock().counts(&t.info_hash);
    (t, counts)
}

async fn dispatch(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
    endpoint: Endpoint,
    call: &str,
) -> Result<(AdminAnswer, String), Refusal> {
    require_method(req, endpoint)?;
    match endpoint {
        Endpoint::AdminTorrents => {
            let all: Vec<_> = state
                .catalogue
                .all()
                .into_iter()
                .map(|t| with_counts(state, t))
                .collect();
            let reason = format!("listed {} torrents", all.len());
            Ok((AdminAnswer::Torrents(all), reason))
        }
        Endpoint::AdminTorrent => {
            let (t, counts) = with_counts(state, known(state, &query.info_hash()?)?);
            Ok((AdminAnswer::Torrent(t, counts), "shown".into()))
        }
        Endpoint::AdminSetAuthority => {
            let hash = query.info_hash()?;
            let authority = u32::try_from(query.require_u64("authority")?)
                .map(Authority)
                .map_err(|_| Refusal::malformed("authority must fit in 32 bits"))?;
            let previous = state.catalogue.set_authority(hash, authority).await?;
            Ok((
                AdminAnswer::AuthoritySet {
                    info_hash: hash,
                    authority,
                    previous,
                },
                format!("authority {previous} -> {authority}"),
            ))
        }
        Endpoint::AdminRelayAssign | Endpoint::AdminRelayUnassign => {
            let assign = endpoint == Endpoint::AdminRelayAssign;
            let hash = query.info_hash()?;
            let relay = query
                .get_str("user")?
                .ok_or(super::query::QueryError::Missing("user"))?
                .to_owned();
            known(state, &hash)?;
            if assign && state.users.current().get(&relay).is_none() {
                return Err(Refusal::malformed(format!(
                    "no user {relay:?} in authority.xml"
                )));
            }
            let changed = if assign {
                state.catalogue.assign_relay(hash, &relay).await?
            } else {
                state.catalogue.unassign_relay(hash, &relay).await?
            };
            let verb = if assign { "assigned" } else { "unassigned" };
            let reason = if changed {
                format!("relay {relay:?} {verb}")
            } else {
                format!("relay {relay:?} already {verb}")
            };
            Ok((AdminAnswer::RelayChanged(changed), reason))
        }
        Endpoint::AdminAudit => {
            let since = query.get_u64("since")?.unwrap_or(0);
            let limit = query
                .get_u64("limit")?
                .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX))
                .min(MAX_AUDIT_ENTRIES);
            let entries = state.recent_audit(since, limit);
            let last = entries.last().map_or(since, |e| e.seq);
            Ok((
                AdminAnswer::AuditTail { entries, last },
                format!("audit tail after {since}"),
            ))
        }
        Endpoint::AdminRemove => remove(state, query.info_hash()?).await,
        _ => Err(Refusal::no_such_endpoint(format!("no admin call {call:?}"))),
    }
}

/// Withdraws a torrent: its record, relay assignments, stored .torrent and content key go,
/// and so does its swarm. Afterwards every request about it is answered as for an unknown
/// torrent, relays drop it at their next poll, and no one can get its key again. Peers that
/// already hold the key or the data keep them: removal stops distribution, it cannot recall
/// what was shared. docs/protocol.md 4.5 has no such call; an operator who published the
/// wrong data, or must withdraw it, needs one.
async fn remove(state: &TrackerState, hash: InfoHash) -> Result<(AdminAnswer, String), Refusal> {
    let before = state.catalogue.remove(hash).await?;
    let reason = format!(
        "removed {:?} of {:?}; key {} destroyed",
        before.name, before.owner, before.key_id
    );
    Ok((
        AdminAnswer::Removed {
            info_hash: hash,
            name: before.name,
        },
        reason,
    ))
}
