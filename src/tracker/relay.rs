//! GET /relay/assignments (SPEC 4.5): the torrents the requesting user is assigned to relay,
//! `{"info hashes": [<20 bytes>, ...], "interval": <seconds>}`. Relays poll it: it is what
//! starts and stops them.

use hyper::Response;

use crate::bencode::{Dict, Value};

use super::endpoint::Endpoint;
use super::response::{self, Body, RefusalStatus};
use super::{ApiRequest, TrackerState};

pub async fn handle(state: &TrackerState, req: &ApiRequest<'_>) -> Response<Body> {
    const ENDPOINT: Endpoint = Endpoint::RelayAssignments;
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
    let hashes = state.catalogue.relayed_by(auth.username());
    let reason = format!("{} assignments", hashes.len());
    state
        .audit(req, ENDPOINT, Some(auth.username()), None, Ok(&reason))
        .await;
    let list = hashes
        .into_iter()
        .map(|h| Value::from(h.0.to_vec()))
        .collect::<Vec<_>>();
    let mut d = Dict::new();
    d.insert(&b"info hashes"[..], Value::List(list));
    d.insert(
        &b"interval"[..],
        Value::Int(i64::try_from(state.config.relay_interval_secs).unwrap_or(i64::MAX)),
    );
    response::bencoded(&Value::Dict(d))
}
