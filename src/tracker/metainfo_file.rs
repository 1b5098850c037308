//! GET /torrent?info_hash=… (docs/protocol.md 4.5): the stored .torrent, for those who may read or
//! relay it. Unknown and forbidden torrents get the same 404.

use super::answer::Answer;
use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::query::Query;
use super::refusal::Refusal;
use super::{ApiRequest, TrackerState};

/// Serves a stored .torrent.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
) -> Result<Answer, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::Torrent;
    let auth = state.authenticate(req, query, ENDPOINT, None).await?;
    let user = Some(auth.username());
    let info_hash = match query.info_hash() {
        Ok(h) => h,
        Err(e) => return Err(state.refuse(req, ENDPOINT, user, None, e.into()).await),
    };
    let requester = auth.requester();
    let decision = state
        .catalogue
        .with_access(&info_hash, auth.username(), |t| {
            decide(&requester, t, Action::Metainfo)
        });
    let result = match decision {
        Err(refusal) => Err(refusal),
        Ok(grant) => match state.catalogue.metainfo(info_hash).await {
            Ok(Some(bytes)) => Ok((grant, bytes)),
            Ok(None) => Err(Refusal::not_found("torrent vanished from the store")),
            Err(e) => Err(Refusal::internal(e.to_string())),
        },
    };
    match result {
        Ok((grant, bytes)) => {
            state
                .audit(req, ENDPOINT, user, Some(info_hash), Ok(grant.as_str()))
                .await?;
            Ok(Answer::TorrentFile(bytes))
        }
        Err(refusal) => Err(state
            .refuse(req, ENDPOINT, user, Some(info_hash), refusal)
            .await),
    }
}
