//! POST /publish (SPEC 4.4): the body is the .torrent (at most `max_torrent_bytes`, enforced
//! while reading it). The tracker validates it, requires `info.private = 1` and an
//! `info.ivcsd.key id` naming a pending key owned by the requester whose `check` matches,
//! binds the key to the info hash, and stores the torrent with the configured new-torrent
//! authority and the requester as owner. The answer (`info hash`, `authority`) is sent only
//! after the transaction is on disk. Publishing the same torrent again by its owner is
//! idempotent; anything else about a stored info hash is refused.

use hyper::Response;

use crate::bencode::{Dict, Value};
use crate::crypto::content::Cipher;
use crate::metainfo::Metainfo;

use super::credentials::Authenticated;
use super::endpoint::Endpoint;
use super::refusal::Refusal;
use super::response::{self, Body, RefusalStatus};
use super::store::{PublishOutcome, TorrentRecord};
use super::{ApiRequest, TrackerState};

const ENDPOINT: Endpoint = Endpoint::Publish;

pub async fn handle(state: &TrackerState, req: &ApiRequest<'_>) -> Response<Body> {
    let query = match state
        .parse_query(req, ENDPOINT, RefusalStatus::ByKind)
        .await
    {
        Ok(q) => q,
        Err(response) => return response,
    };
    let auth = match state
        .authenticate(req, &query, ENDPOINT, None, RefusalStatus::ByKind)
        .await
    {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    // A torrent is stored only with its entry accepted: the place is taken first.
    if let Err(response) = state.reserve_audit(req).await {
        return response;
    }
    let (info_hash, result) = publish(state, req, &auth).await;
    let user = Some(auth.username());
    match result {
        Ok((record, reason)) => {
            state
                .audit(req, ENDPOINT, user, info_hash, Ok(reason))
                .await;
            let mut d = Dict::new();
            d.insert(&b"info hash"[..], Value::from(record.info_hash.0.to_vec()));
            d.insert(&b"authority"[..], Value::from(record.authority.0));
            response::bencoded(&Value::Dict(d))
        }
        Err(refusal) => {
            state
                .audit(req, ENDPOINT, user, info_hash, Err(&refusal))
                .await;
            response::refusal(&refusal, RefusalStatus::ByKind)
        }
    }
}

type Published = (TorrentRecord, &'static str);

async fn publish(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    auth: &Authenticated,
) -> (Option<crate::types::InfoHash>, Result<Published, Refusal>) {
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
) -> Result<Published, Refusal> {
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
