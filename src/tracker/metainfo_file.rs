//! GET /torrent?info_hash=… (SPEC 4.5): the stored .torrent, for those who may read or relay
//! it. Unknown and forbidden torrents get the same 404.

use hyper::Response;

use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::refusal::Refusal;
use super::response::{self, Body, RefusalStatus};
use super::{ApiRequest, TrackerState};

pub async fn handle(state: &TrackerState, req: &ApiRequest<'_>) -> Response<Body> {
    const ENDPOINT: Endpoint = Endpoint::Torrent;
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
    let user = Some(auth.username());
    let info_hash = match query.info_hash() {
        Ok(h) => h,
        Err(e) => {
            let refusal = Refusal::from(e);
            state.audit(req, ENDPOINT, user, None, Err(&refusal)).await;
            return response::refusal(&refusal, RefusalStatus::ByKind);
        }
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
                .await;
            response::torrent_file(bytes)
        }
        Err(refusal) => {
            state
                .audit(req, ENDPOINT, user, Some(info_hash), Err(&refusal))
                .await;
            response::refusal(&refusal, RefusalStatus::ByKind)
        }
    }
}
