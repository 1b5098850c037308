//! The HTTP side of the tracker's answers: an [`Answer`] as a response, and the one mapping
//! from a [`Refusal`] to a status and a `failure reason`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

use crate::bencode::{Dict, Value};

use super::answer::Answer;
use super::endpoint::Endpoint;
use super::refusal::{Refusal, RefusalKind};

pub type Body = Full<Bytes>;

/// Whether a refusal is answered with HTTP 200 (BitTorrent's /announce and /scrape, which
/// stock clients only read as 200) or with its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalStatus {
    Always200,
    ByKind,
}

impl RefusalStatus {
    /// How `endpoint` sends its refusals: /announce and /scrape with 200 (docs/protocol.md
    /// 4.1, 4.2), every other endpoint with the status of the refusal's kind.
    pub fn of(endpoint: Endpoint) -> RefusalStatus {
        match endpoint {
            Endpoint::Announce | Endpoint::Scrape => RefusalStatus::Always200,
            _ => RefusalStatus::ByKind,
        }
    }
}

/// An answer as a 200 response: a stored .torrent as it was published, anything else as its
/// bencoded dictionary.
pub fn answer(answer: Answer) -> Response<Body> {
    let dict = match answer {
        Answer::TorrentFile(bytes) => return torrent_file(bytes),
        Answer::Announce(a) => a.to_bencode(),
        Answer::Scrape(a) => a.to_bencode(),
        Answer::Cipher(a) => a.to_bencode(),
        Answer::Published(a) => a.to_bencode(),
        Answer::Assignments(a) => a.to_bencode(),
        Answer::Admin(a) => a.to_bencode(),
    };
    bencoded(&Value::Dict(dict))
}

/// A 200 response with a bencoded body.
pub fn bencoded(value: &Value<'_>) -> Response<Body> {
    with_status(StatusCode::OK, value.encode())
}

fn with_status(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Raw bytes (a stored .torrent).
pub fn torrent_file(bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-bittorrent"),
    );
    response
}

/// Seconds a client is asked to wait (`Retry-After`) when the audit log cannot be written:
/// the audit writer's longest pause between two attempts.
const AUDIT_RETRY_AFTER_SECS: &str = "5";

/// `{"failure reason": <public text>}` with the status `how` asks for; a
/// [`RefusalKind::Unavailable`] refusal is a 503 with `Retry-After` whatever `how` says, so
/// that BitTorrent clients too see that nothing was answered.
pub fn refusal(refusal: &Refusal, how: RefusalStatus) -> Response<Body> {
    let body = Value::from(Dict::new().with("failure reason", refusal.public.as_ref())).encode();
    if refusal.kind == RefusalKind::Unavailable {
        let mut response = with_status(StatusCode::SERVICE_UNAVAILABLE, body);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(AUDIT_RETRY_AFTER_SECS),
        );
        return response;
    }
    let status = match how {
        RefusalStatus::Always200 => StatusCode::OK,
        RefusalStatus::ByKind => {
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    with_status(status, body)
}
