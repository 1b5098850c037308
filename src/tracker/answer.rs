//! What the tracker answers, before it becomes HTTP: one value per kind of answer, each
//! encoding itself as the bencoded dictionary docs/protocol.md section 4 gives it.
//!
//! Handlers return an [`Answer`] or a refusal; only `response.rs` turns them into HTTP
//! responses (status, headers, body). A value that carries a content key
//! ([`CipherAnswer`]) is built only once the handout is recorded, so none is ever built and
//! then thrown away.

use crate::bencode::{Dict, Value};

use super::credentials::IssuedToken;

pub use super::admin::AdminAnswer;
pub use super::announce::AnnounceAnswer;
pub use super::getcipher::CipherAnswer;
pub use super::publish::PublishAnswer;
pub use super::relay::AssignmentsAnswer;
pub use super::scrape::ScrapeAnswer;

/// An answer to a request that was granted.
#[derive(Debug)]
pub enum Answer {
    Announce(AnnounceAnswer),
    Scrape(ScrapeAnswer),
    Cipher(CipherAnswer),
    Published(PublishAnswer),
    /// A stored .torrent, sent as it was published.
    TorrentFile(Vec<u8>),
    Assignments(AssignmentsAnswer),
    Admin(AdminAnswer),
}

/// A count as a bencoded integer (saturating: bencode integers are signed).
pub(crate) fn int(n: u64) -> Value<'static> {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Adds `token` and `token expires` when the request asked for a token (docs/protocol.md 3.2).
pub(crate) fn insert_token(d: &mut Dict<'static>, token: Option<&IssuedToken>) {
    if let Some(token) = token {
        d.insert(&b"token"[..], Value::from(token.token.clone()));
        d.insert(&b"token expires"[..], int(token.expires));
    }
}
