//! GET /scrape (BEP 48, SPEC 4.2): swarm counts of the requested torrents that the requester
//! may read or relay.
//!
//! A torrent the requester may not see is left out exactly as an unknown one is, so a scrape is
//! no existence oracle either. Without any `info_hash`, every torrent the requester may see is
//! listed. Refusals are HTTP 200 with `failure reason`.

use hyper::Response;

use crate::bencode::{Dict, Value};
use crate::types::InfoHash;

use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::refusal::Refusal;
use super::response::{self, Body, RefusalStatus};
use super::{ApiRequest, TrackerState};

pub async fn handle(state: &TrackerState, req: &ApiRequest<'_>) -> Response<Body> {
    let query = match state
        .parse_query(req, Endpoint::Scrape, RefusalStatus::Always200)
        .await
    {
        Ok(q) => q,
        Err(response) => return response,
    };
    let auth = match state
        .authenticate(
            req,
            &query,
            Endpoint::Scrape,
            None,
            RefusalStatus::Always200,
        )
        .await
    {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let requested = match query.info_hashes() {
        Ok(h) => h,
        Err(e) => {
            let refusal = Refusal::from(e);
            state
                .audit(
                    req,
                    Endpoint::Scrape,
                    Some(auth.username()),
                    None,
                    Err(&refusal),
                )
                .await;
            return response::refusal(&refusal, RefusalStatus::Always200);
        }
    };
    let requester = auth.requester();
    let candidates: Vec<InfoHash> = if requested.is_empty() {
        state.catalogue.info_hashes()
    } else {
        requested.clone()
    };
    let mut visible = Vec::new();
    for hash in candidates {
        let decision = state.catalogue.with_access(&hash, auth.username(), |t| {
            decide(&requester, t, Action::Scrape)
        });
        match decision {
            Ok(_) => visible.push(hash),
            Err(refusal) if !requested.is_empty() => {
                state
                    .audit(
                        req,
                        Endpoint::Scrape,
                        Some(auth.username()),
                        Some(hash),
                        Err(&refusal),
                    )
                    .await;
            }
            Err(_) => {}
        }
    }
    let mut files = Dict::new();
    {
        let swarms = state.swarms.lock();
        for hash in &visible {
            let c = swarms.counts(hash);
            let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
            let mut d = Dict::new();
            d.insert(&b"complete"[..], int(c.complete as u64));
            d.insert(&b"incomplete"[..], int(c.incomplete as u64));
            d.insert(&b"downloaded"[..], int(c.downloaded));
            files.insert(hash.0.to_vec(), Value::Dict(d));
        }
    }
    // one entry per request (per-hash refusals above carry their own true reasons)
    let single = match (requested.len(), visible.as_slice()) {
        (1, [only]) => Some(*only),
        _ => None,
    };
    let reason = format!(
        "{} of {} torrents visible",
        visible.len(),
        if requested.is_empty() {
            "all".to_owned()
        } else {
            requested.len().to_string()
        }
    );
    state
        .audit(
            req,
            Endpoint::Scrape,
            Some(auth.username()),
            single,
            Ok(&reason),
        )
        .await;
    let mut top = Dict::new();
    top.insert(&b"files"[..], Value::Dict(files));
    if let Some(token) = &auth.token {
        top.insert(&b"token"[..], Value::from(token.token.clone()));
        top.insert(
            &b"token expires"[..],
            Value::Int(i64::try_from(token.expires).unwrap_or(i64::MAX)),
        );
    }
    response::bencoded(&Value::Dict(top))
}
