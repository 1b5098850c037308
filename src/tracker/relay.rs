//! GET /relay/assignments (docs/protocol.md 4.5): the torrents the requesting user is assigned to
//! relay, `{"info hashes": [<20 bytes>, ...], "interval": <seconds>}`. Relays poll it: it is what
//! starts and stops them.

use crate::bencode::{Dict, Value};
use crate::types::InfoHash;

use super::answer::{Answer, int};
use super::endpoint::Endpoint;
use super::query::Query;
use super::refusal::Refusal;
use super::{ApiRequest, TrackerState};

/// The torrents a relay is assigned to, and how often it should ask again.
#[derive(Debug)]
pub struct AssignmentsAnswer {
    /// Sorted.
    pub info_hashes: Vec<InfoHash>,
    pub interval_secs: u64,
}

impl AssignmentsAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let list = self
            .info_hashes
            .iter()
            .map(|h| Value::from(h.0.to_vec()))
            .collect::<Vec<_>>();
        let mut d = Dict::new();
        d.insert(&b"info hashes"[..], Value::List(list));
        d.insert(&b"interval"[..], int(self.interval_secs));
        d
    }
}

/// Serves a relay's poll.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
) -> Result<Answer, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::RelayAssignments;
    let auth = state.authenticate(req, query, ENDPOINT, None).await?;
    let info_hashes = state.catalogue.relayed_by(auth.username());
    let reason = format!("{} assignments", info_hashes.len());
    state
        .audit(req, ENDPOINT, Some(auth.username()), None, Ok(&reason))
        .await?;
    Ok(Answer::Assignments(AssignmentsAnswer {
        info_hashes,
        interval_secs: state.config.relay_interval_secs,
    }))
}
