//! GET /scrape (BEP 48, docs/protocol.md 4.2): swarm counts of the requested torrents that the
//! requester may read or relay.
//!
//! A torrent the requester may not see is left out exactly as an unknown one is, so a scrape is
//! no existence oracle either. Without any `info_hash`, every torrent the requester may see is
//! listed. Refusals are HTTP 200 with `failure reason`.

use crate::bencode::{Dict, Value};
use crate::types::InfoHash;

use super::answer::{Answer, insert_token, int};
use super::credentials::IssuedToken;
use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::query::Query;
use super::refusal::Refusal;
use super::swarm::SwarmCounts;
use super::{ApiRequest, TrackerState};

/// The answer to a scrape: the counts of each visible torrent, and a token if one was asked
/// for.
#[derive(Debug)]
pub struct ScrapeAnswer {
    pub files: Vec<(InfoHash, SwarmCounts)>,
    pub token: Option<IssuedToken>,
}

impl ScrapeAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let mut files = Dict::new();
        for (hash, c) in &self.files {
            let mut d = Dict::new();
            d.insert(&b"complete"[..], int(c.complete as u64));
            d.insert(&b"incomplete"[..], int(c.incomplete as u64));
            d.insert(&b"downloaded"[..], int(c.downloaded));
            files.insert(hash.0.to_vec(), Value::Dict(d));
        }
        let mut top = Dict::new();
        top.insert(&b"files"[..], Value::Dict(files));
        insert_token(&mut top, self.token.as_ref());
        top
    }
}

/// Serves a scrape.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
) -> Result<Answer, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::Scrape;
    let auth = state.authenticate(req, query, ENDPOINT, None).await?;
    let user = Some(auth.username());
    let requested = match query.info_hashes() {
        Ok(h) => h,
        Err(e) => return Err(state.refuse(req, ENDPOINT, user, None, e.into()).await),
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
                    .audit(req, ENDPOINT, user, Some(hash), Err(&refusal))
                    .await?;
            }
            Err(_) => {}
        }
    }
    let files = {
        let swarms = state.swarms.lock();
        visible
            .iter()
            .map(|hash| (*hash, swarms.counts(hash)))
            .collect()
    };
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
        .audit(req, ENDPOINT, user, single, Ok(&reason))
        .await?;
    Ok(Answer::Scrape(ScrapeAnswer {
        files,
        token: auth.token,
    }))
}
