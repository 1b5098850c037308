//! GET /relay/assignments (SPEC 4.5): the torrents the requesting user is assigned to relay,
//! `{"info hashes": [<20 bytes>, ...], "interval": <seconds>}`. Relays poll it: it is what
//! starts and stops them.

use hyper::Response;

use crate::bencode::{Dict, Value};

use super::query::Query;
use super::refusal::Refusal;
use super::response::{self, Body, RefusalStatus};
use super::{Request, State};

pub async fn handle(state: &State, req: &Request<'_>) -> Response<Body> {
    const ENDPOINT: &str = "relay/assignments";
    let query = match Query::parse(req.query) {
        Ok(q) => q,
        Err(e) => {
            let refusal = Refusal::from(e);
            state.audit(req, ENDPOINT, None, None, Err(&refusal)).await;
            return response::refusal(&refusal, RefusalStatus::ByKind);
        }
    };
    let auth = match state.credentials.authenticate(&query, req.source).await {
        Ok(auth) => auth,
        Err(refusal) => {
            let user = super::claimed_user(&query);
            state
                .audit(req, ENDPOINT, user.as_deref(), None, Err(&refusal))
                .await;
            return response::refusal(&refusal, RefusalStatus::ByKind);
        }
    };
    let mut hashes: Vec<[u8; 20]> = {
        let torrents = state.torrents.read().unwrap_or_else(|p| p.into_inner());
        torrents
            .values()
            .filter(|t| t.relays.iter().any(|r| r == auth.username()))
            .map(|t| t.info_hash.0)
            .collect()
    };
    hashes.sort_unstable();
    let reason = format!("{} assignments", hashes.len());
    state
        .audit(req, ENDPOINT, Some(auth.username()), None, Ok(&reason))
        .await;
    let list = hashes
        .into_iter()
        .map(|h| Value::from(h.to_vec()))
        .collect::<Vec<_>>();
    let mut d = Dict::new();
    d.insert(&b"info hashes"[..], Value::List(list));
    d.insert(
        &b"interval"[..],
        Value::Int(i64::try_from(state.config.relay_interval_secs).unwrap_or(i64::MAX)),
    );
    response::bencoded(&Value::Dict(d))
}
