//! POST /publish (docs/protocol.md 4.4): the body is the .torrent (at most `max_torrent_bytes`,
//! enforced while reading it). The tracker validates it, requires `info.private = 1` and an
//! `info.ivcsd.key id` naming a pending key owned by the requester whose `check` matches,
//! binds the key to the info hash, and stores the torrent with the configured new-torrent
//! authority and the requester as owner. The answer (`info hash`, `authority`) is sent only
//! after the transaction is on disk. Publishing the same torrent again by its owner is
//! idempotent; anything else about a stored info hash is refused.

use crate::bencode::{Dict, Value};
use crate::crypto::content::Cipher;
use crate::metainfo::Metainfo;
use crate::types::{Authority, InfoHash};

use super::answer::Answer;
use super::credentials::Authenticated;
use super::endpoint::Endpoint;
use super::query::Query;
use super::refusal::Refusal;
use super::store::{PublishOutcome, TorrentRecord};
use super::{ApiRequest, TrackerState};

const ENDPOINT: Endpoint = Endpoint::Publish;

/// The answer to a publish: the torrent as stored.
#[derive(Debug)]
pub struct PublishAnswer {
    pub info_hash: InfoHash,
    pub authority: Authority,
}

impl PublishAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let mut d = Dict::new();
        d.insert(&b"info hash"[..], Value::from(self.info_hash.0.to_vec()));
        d.insert(&b"authority"[..], Value::from(self.authority.0));
        d
    }
}

/// Serves a publish.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
) -> Result<Answer, Refusal> {
    let auth = state.authenticate(req, query, ENDPOINT, None).await?;
    // A torrent is stored only with its entry accepted: the place is taken first.
    let slot = state.reserve_audit().await?;
    let (info_hash, result) = publish(state, req, &auth).await;
    let user = Some(auth.username());
    let outcome = result.as_ref().map(|(_, reason)| *reason);
    state
        .audit_change(slot, req, ENDPOINT, user, info_hash, outcome)
        .await?;
    let (record, _) = result?;
    Ok(Answer::Published(PublishAnswer {
        info_hash: record.info_hash,
        authority: record.authority,
    }))
}

type StoredPublish = (TorrentRecord, &'static str);

async fn publish(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    auth: &Authenticated,
) -> (Option<InfoHash>, Result<StoredPublish, Refusal>) {
    // Parsing a 16 MiB torrent takes milliseconds: off the reactor.
    let body = req.body.clone();
    let parsed = tokio::task::spawn_blocking(move || Metainfo::from_bytes(&body)).await;
    let metainfo = match parsed {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            return (
                None,
                Err(Refusal::malformed(format!("invalid torrent: {e}"))),
            );
        }
        Err(_) => return (None, Err(Refusal::internal("torrent parser panicked"))),
    };
    let info_hash = metainfo.info_hash;
    (
        Some(info_hash),
        publish_valid(state, req, auth, metainfo).await,
    )
}

async fn publish_valid(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    auth: &Authenticated,
    metainfo: Metainfo,
) -> Result<StoredPublish, Refusal> {
    if !metainfo.info.private {
        return Err(Refusal::malformed(
            "torrent is not private (info.private must be 1)",
        ));
    }
    let urls = metainfo
        .announce
        .iter()
        .chain(metainfo.announce_list.iter().flatten());
    for url in urls {
        if crate::metainfo::announce_credentials(url).is_some() {
            // /torrent hands these bytes to every reader: they must not carry a password
            return Err(Refusal::malformed(
                "the torrent's announce URL carries credentials; peers add their own",
            ));
        }
    }
    let Some(ivcsd) = metainfo.info.ivcsd else {
        return Err(Refusal::malformed(
            "torrent has no info.ivcsd: not encrypted for ivcsd",
        ));
    };
    let allowed = &state.config.publish_ciphers;
    if !allowed.contains(&ivcsd.cipher) {
        return Err(Refusal::malformed(format!(
            "this tracker accepts torrents encrypted with {} only, not {} (publish with --cipher {})",
            Cipher::names(allowed, " or "),
            ivcsd.cipher,
            state.config.preferred_cipher()
        )));
    }
    let owner = auth.username().to_owned();
    let now_ms = state.clock.unix_ms();
    let pending_since_ms =
        now_ms.saturating_sub(state.config.pending_key_ttl_secs.saturating_mul(1000));
    let no_key = || Refusal::malformed("info.ivcsd.key id names no pending key of yours");
    // The check bytes must match the key, or every downloader would refuse the key later.
    let key = state
        .catalogue
        .owned_key(ivcsd.key_id, &owner)
        .await?
        .ok_or_else(no_key)?;
    if !key.matches_check(&ivcsd.check) {
        return Err(Refusal::malformed(
            "info.ivcsd.check does not match the key named by info.ivcsd.key id",
        ));
    }
    let record = TorrentRecord {
        info_hash: metainfo.info_hash,
        name: metainfo.info.name.clone(),
        size: metainfo.info.total_length,
        owner,
        authority: state.config.new_torrent_authority(),
        published_ms: now_ms,
        key_id: ivcsd.key_id,
        cipher: ivcsd.cipher,
        relays: Vec::new(),
    };
    let outcome = state
        .catalogue
        .publish(record, req.body.to_vec(), pending_since_ms)
        .await
        .map_err(|e| Refusal::internal(e.to_string()))?;
    match outcome {
        PublishOutcome::Published(record) => Ok((record, "published")),
        PublishOutcome::AlreadyPublished(record) => Ok((record, "already published by this owner")),
        PublishOutcome::UnknownKey => Err(no_key()),
        PublishOutcome::Conflict => Err(Refusal::malformed(
            "this info hash is already published by another user or with another key",
        )),
    }
}
