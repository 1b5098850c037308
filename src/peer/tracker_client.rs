//! The peer's side of the tracker's HTTP API (docs/protocol.md section 4): announce, getcipher,
//! publish, fetching a torrent and relay assignments, with credentials handled in one place.
//!
//! The first request logs in with the password and asks for a token (`getToken=y`); later
//! requests send the token, and fall back to the password once when the token has ended (the
//! user's password, authority or admin flag changed, or it expired).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::Uri;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::bencode::{self, Dict, Value};
use crate::crypto::content::{Cipher, ContentKey};
use crate::crypto::identity::{CipherTarget, GetcipherMessage, Identity};
use crate::http_client::{self, HttpError};
use crate::types::{Authority, InfoHash, KeyId, PeerId};

/// Why a tracker request failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The tracker answered with a `failure reason`.
    #[error("tracker refused: {0}")]
    Refused(String),
    /// The tracker answered 503 with a `failure reason`: it cannot serve for now (its audit
    /// log cannot be written; docs/protocol.md 4), and asking again later may succeed.
    #[error("tracker temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("tracker answered HTTP {status} without a reason")]
    Status { status: u16 },
    #[error("tracker sent a malformed answer: {0}")]
    Malformed(String),
    #[error("the content key from the tracker cannot be unwrapped with this identity: {0}")]
    Unwrap(String),
    #[error("invalid tracker URL {url}: {reason}")]
    Url { url: String, reason: &'static str },
}

/// BEP 3 announce events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    Started,
    Completed,
    Stopped,
}

impl AnnounceEvent {
    fn as_str(self) -> &'static str {
        match self {
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
        }
    }
}

/// What a peer tells the tracker about itself in one announce.
#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<AnnounceEvent>,
    pub numwant: u32,
}

/// The tracker's answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval_secs: u64,
    pub min_interval_secs: Option<u64>,
    pub complete: u64,
    pub incomplete: u64,
    pub peers: Vec<SocketAddr>,
}

/// A content key obtained through getcipher.
#[derive(Debug)]
pub struct CipherGrant {
    /// The suite the tracker names: the torrent's, or for a new key (which serves either
    /// suite; the torrent built with it names its own) the one it prefers for new torrents.
    pub cipher: Cipher,
    pub key_id: KeyId,
    pub key: ContentKey,
}

/// A logged-in view of one tracker.
#[derive(Debug)]
pub struct TrackerClient {
    /// The announce URL without its query, e.g. `http://host:6969/announce`.
    announce: Uri,
    /// Scheme, authority and path prefix under which the other endpoints live.
    base: String,
    /// Query parameters the user put in the URL (kept, except credentials, which we set).
    extra_query: String,
    username: String,
    password: Zeroizing<String>,
    token: Mutex<Option<Zeroizing<String>>>,
    /// For an https tracker with a private CA (`--ca`); `None`: the public web's roots.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Percent-encodes every byte that is not unreserved (RFC 3986).
pub fn percent_encode(bytes: &[u8]) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::percent_encode(bytes, RESERVED).to_string()
}

impl TrackerClient {
    /// `url` is the tracker's announce URL (`http://host:port/announce`) or its base URL.
    /// Credentials already in its query (`username`, `psw`, `token`) are replaced by the given
    /// ones; other parameters are kept.
    ///
    /// # Errors
    /// The URL cannot be parsed or is not http(s).
    pub fn new(
        url: &str,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Self, TrackerError> {
        let url_err = |reason| TrackerError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| url_err("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(url_err("the scheme must be http or https"));
        }
        let authority = uri.authority().ok_or_else(|| url_err("no host"))?;
        let scheme = uri.scheme_str().unwrap_or("http");
        let path = uri.path().trim_end_matches('/');
        let prefix = path.strip_suffix("/announce").unwrap_or(path);
        let base = format!("{scheme}://{authority}{prefix}");
        let announce: Uri = format!("{base}/announce")
            .parse()
            .map_err(|_| url_err("not a URL"))?;
        let extra_query = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| {
                let key = kv.split('=').next().unwrap_or("");
                !kv.is_empty() && !matches!(key, "username" | "psw" | "token" | "getToken")
            })
            .collect::<Vec<_>>()
            .join("&");
        Ok(TrackerClient {
            announce,
            base,
            extra_query,
            username: username.to_owned(),
            password,
            token: Mutex::new(None),
            tls: None,
        })
    }

    /// Verifies an https tracker against this configuration (a private CA, `--ca FILE`).
    pub fn with_tls(mut self, tls: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The announce URL without credentials, as written into torrents.
    pub fn announce_url(&self) -> String {
        self.announce.to_string()
    }

    fn endpoint(&self, path: &str, query: &str, use_token: bool) -> Result<Uri, TrackerError> {
        let mut q = String::with_capacity(query.len() + 128);
        q.push_str(query);
        let token = if use_token {
            self.token.lock().clone()
        } else {
            None
        };
        match token {
            Some(token) => {
                let _ = write!(q, "&token={}", percent_encode(token.as_bytes()));
            }
            None => {
                let _ = write!(
                    q,
                    "&username={}&psw={}&getToken=y",
                    percent_encode(self.username.as_bytes()),
                    percent_encode(self.password.as_bytes())
                );
            }
        }
        if !self.extra_query.is_empty() {
            q.push('&');
            q.push_str(&self.extra_query);
        }
        let q = q.trim_start_matches('&');
        format!("{}{path}?{q}", self.base)
            .parse()
            .map_err(|_| TrackerError::Url {
                url: self.base.clone(),
                reason: "cannot build a request URL",
            })
    }

    /// Sends a request with the token if there is one, else the password; a refusal with the
    /// token is retried once with the password.
    async fn call(
        &self,
        path: &str,
        query: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, TrackerError> {
        let has_token = self.token.lock().is_some();
        match self.call_once(path, query, body.clone(), has_token).await {
            Err(TrackerError::Refused(_)) if has_token => {
                *self.token.lock() = None;
                self.call_once(path, query, body, false).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        path: &str,
        query: &str,
        body: Option<Bytes>,
        use_token: bool,
    ) -> Result<Bytes, TrackerError> {
        let uri = self.endpoint(path, query, use_token)?;
        let method = if body.is_some() {
            hyper::Method::POST
        } else {
            hyper::Method::GET
        };
        let response = http_client::request_with_tls(
            self.tls.as_ref(),
            method,
            &uri,
            body,
            http_client::Timeouts::default(),
            http_client::DEFAULT_MAX_RESPONSE_BYTES,
        )
        .await?;
        if response.body.first() == Some(&b'd')
            && let Ok(Value::Dict(d)) = bencode::decode(&response.body)
        {
            if let Some(reason) = d.get(b"failure reason") {
                let reason =
                    String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"?")).into_owned();
                // Not a verdict on this request: the token stays, the caller may retry.
                if response.status == 503 {
                    return Err(TrackerError::Unavailable(reason));
                }
                return Err(TrackerError::Refused(reason));
            }
            if let Some(token) = d.get(b"token").and_then(Value::as_str) {
                *self.token.lock() = Some(Zeroizing::new(token.to_owned()));
            }
        }
        if response.status != 200 {
            return Err(TrackerError::Status {
                status: response.status,
            });
        }
        Ok(response.body)
    }

    /// Announces and returns the swarm.
    ///
    /// # Errors
    /// Unreachable tracker, refusal, or a malformed answer.
    pub async fn announce(&self, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}",
            percent_encode(req.info_hash.as_bytes()),
            percent_encode(req.peer_id.as_bytes()),
            req.port,
            req.uploaded,
            req.downloaded,
            req.left,
            req.numwant
        );
        if let Some(event) = req.event {
            let _ = write!(q, "&event={}", event.as_str());
        }
        let body = self.call("/announce", &q, None).await?;
        parse_announce(&body)
    }

    /// Gets the content key of a torrent (`CipherTarget::Torrent`) or a fresh pending key
    /// (`CipherTarget::New`), signed with and wrapped for `identity`.
    ///
    /// # Errors
    /// Unreachable tracker, refusal, a malformed answer, or a key that does not unwrap.
    pub async fn get_cipher(
        &self,
        identity: &Arc<Identity>,
        target: CipherTarget,
    ) -> Result<CipherGrant, TrackerError> {
        let public = identity.public();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut nonce_bytes = [0u8; 16];
        rand::fill(&mut nonce_bytes);
        let nonce = hex::encode(nonce_bytes);
        let message = GetcipherMessage {
            username: &self.username,
            target,
            ts,
            nonce: &nonce,
            spki_sha256: public.spki_sha256(),
        };
        // Signing with a 3072-bit key takes milliseconds: keep it off the reactor.
        let msg_bytes = message.to_bytes();
        let signature = {
            let identity = Arc::clone(identity);
            tokio::task::spawn_blocking(move || identity.sign(&msg_bytes))
                .await
                .map_err(|e| TrackerError::Unwrap(e.to_string()))?
        };
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut q = match target {
            CipherTarget::Torrent(h) => format!("info_hash={}", percent_encode(h.as_bytes())),
            CipherTarget::New => "new=1".to_owned(),
        };
        let _ = write!(
            q,
            "&key={}&sign={}&ts={ts}&nonce={nonce}",
            b64.encode(public.spki_der()),
            b64.encode(&signature)
        );
        let body = self.call("/getcipher", &q, None).await?;
        let (cipher, key_id, wrapped) = parse_cipher_answer(&body)?;
        let identity = Arc::clone(identity);
        let key = tokio::task::spawn_blocking(move || identity.unwrap_content_key(&wrapped))
            .await
            .map_err(|e| TrackerError::Unwrap(e.to_string()))?
            .map_err(|e| TrackerError::Unwrap(e.to_string()))?;
        Ok(CipherGrant {
            cipher,
            key_id,
            key,
        })
    }

    /// Publishes a torrent; returns its info hash and authority.
    ///
    /// # Errors
    /// Unreachable tracker, refusal, or a malformed answer.
    pub async fn publish(&self, torrent: Bytes) -> Result<(InfoHash, Authority), TrackerError> {
        let body = self.call("/publish", "", Some(torrent)).await?;
        let value = bencode::decode(&body).map_err(|e| TrackerError::Malformed(e.to_string()))?;
        let dict = value
            .as_dict()
            .ok_or_else(|| TrackerError::Malformed("publish answer is not a dictionary".into()))?;
        let info_hash = dict
            .get(b"info hash")
            .and_then(Value::as_bytes)
            .and_then(InfoHash::from_slice)
            .ok_or_else(|| TrackerError::Malformed("missing info hash".into()))?;
        let authority = dict
            .get(b"authority")
            .and_then(Value::as_int)
            .and_then(|a| u32::try_from(a).ok())
            .ok_or_else(|| TrackerError::Malformed("missing authority".into()))?;
        Ok((info_hash, Authority(authority)))
    }

    /// Fetches the stored .torrent of `info_hash`.
    ///
    /// # Errors
    /// Unreachable tracker, refusal (unknown or not permitted), or a malformed answer.
    pub async fn fetch_torrent(&self, info_hash: InfoHash) -> Result<Bytes, TrackerError> {
        let q = format!("info_hash={}", percent_encode(info_hash.as_bytes()));
        self.call("/torrent", &q, None).await
    }

    /// The torrents this user is assigned to relay, and how often to ask again.
    ///
    /// # Errors
    /// Unreachable tracker, refusal, or a malformed answer.
    pub async fn relay_assignments(&self) -> Result<(Vec<InfoHash>, u64), TrackerError> {
        let body = self.call("/relay/assignments", "", None).await?;
        let value = bencode::decode(&body).map_err(|e| TrackerError::Malformed(e.to_string()))?;
        let dict = value.as_dict().ok_or_else(|| {
            TrackerError::Malformed("assignments answer is not a dictionary".into())
        })?;
        let hashes = dict
            .get(b"info hashes")
            .and_then(Value::as_list)
            .ok_or_else(|| TrackerError::Malformed("missing info hashes".into()))?
            .iter()
            .map(|v| v.as_bytes().and_then(InfoHash::from_slice))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TrackerError::Malformed("an info hash is not 20 bytes".into()))?;
        let interval = dict
            .get(b"interval")
            .and_then(Value::as_int)
            .and_then(|i| u64::try_from(i).ok())
            .unwrap_or(60);
        Ok((hashes, interval))
    }
}

/// Reads an announce answer (BEP 3, BEP 23 compact peers and `peers6`).
///
/// # Errors
/// Not bencode, a refusal, or missing or malformed fields.
pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let value = bencode::decode(body).map_err(|e| TrackerError::Malformed(e.to_string()))?;
    let dict: &Dict<'_> = value
        .as_dict()
        .ok_or_else(|| TrackerError::Malformed("announce answer is not a dictionary".into()))?;
    if let Some(reason) = dict.get(b"failure reason") {
        return Err(TrackerError::Refused(
            String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"?")).into_owned(),
        ));
    }
    let int = |key: &[u8]| {
        dict.get(key)
            .and_then(Value::as_int)
            .and_then(|i| u64::try_from(i).ok())
    };
    let interval_secs =
        int(b"interval").ok_or_else(|| TrackerError::Malformed("missing interval".into()))?;
    let mut peers = Vec::new();
    match dict.get(b"peers") {
        Some(Value::Bytes(compact)) => {
            if compact.len() % 6 != 0 {
                return Err(TrackerError::Malformed(
                    "compact peers not a multiple of 6 bytes".into(),
                ));
            }
            for p in compact.chunks_exact(6) {
                let ip = Ipv4Addr::new(p[0], p[1], p[2], p[3]);
                peers.push(SocketAddr::new(
                    IpAddr::V4(ip),
                    u16::from_be_bytes([p[4], p[5]]),
                ));
            }
        }
        Some(Value::List(list)) => {
            for p in list {
                let d = p
                    .as_dict()
                    .ok_or_else(|| TrackerError::Malformed("a peer is not a dictionary".into()))?;
                let ip: Option<IpAddr> = d
                    .get(b"ip")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok());
                let port = d
                    .get(b"port")
                    .and_then(Value::as_int)
                    .and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        None => {}
        Some(other) => {
            return Err(TrackerError::Malformed(format!(
                "peers is a {}",
                other.type_name()
            )));
        }
    }
    if let Some(Value::Bytes(compact)) = dict.get(b"peers6") {
        if compact.len() % 18 != 0 {
            return Err(TrackerError::Malformed(
                "peers6 not a multiple of 18 bytes".into(),
            ));
        }
        for p in compact.chunks_exact(18) {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&p[..16]);
            let port = u16::from_be_bytes([p[16], p[17]]);
            peers.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port));
        }
    }
    Ok(AnnounceResponse {
        interval_secs,
        min_interval_secs: int(b"min interval"),
        complete: int(b"complete").unwrap_or(0),
        incomplete: int(b"incomplete").unwrap_or(0),
        peers,
    })
}

/// A getcipher answer (docs/protocol.md 4.3): the suite, the key id and the wrapped key.
fn parse_cipher_answer(body: &[u8]) -> Result<(Cipher, KeyId, Vec<u8>), TrackerError> {
    let value = bencode::decode(body).map_err(|e| TrackerError::Malformed(e.to_string()))?;
    let dict = value
        .as_dict()
        .ok_or_else(|| TrackerError::Malformed("getcipher answer is not a dictionary".into()))?;
    let cipher = dict.get(b"cipher").and_then(Value::as_bytes);
    let cipher = cipher.and_then(Cipher::from_name).ok_or_else(|| {
        TrackerError::Malformed(format!(
            "unsupported cipher {:?}",
            cipher.map_or("(none)".into(), String::from_utf8_lossy)
        ))
    })?;
    let key_id = dict
        .get(b"key id")
        .and_then(Value::as_bytes)
        .and_then(KeyId::from_slice)
        .ok_or_else(|| TrackerError::Malformed("missing or bad key id".into()))?;
    let wrapped = dict
        .get(b"key")
        .and_then(Value::as_bytes)
        .ok_or_else(|| TrackerError::Malformed("missing key".into()))?
        .to_vec();
    Ok((cipher, key_id, wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_answers_parse_for_both_suites() {
        for (name, suite) in [
            ("4:rc4+", Cipher::Rc4Plus),
            ("11:aes-256-ctr", Cipher::Aes256Ctr),
        ] {
            let body = format!("d6:cipher{name}3:key3:abc6:key id16:0123456789abcdefe");
            let (cipher, key_id, wrapped) = parse_cipher_answer(body.as_bytes()).unwrap();
            assert_eq!(
                (cipher, key_id.0, &wrapped[..]),
                (suite, *b"0123456789abcdef", &b"abc"[..])
            );
        }
    }

    #[test]
    fn malformed_cipher_answers_are_errors_that_say_what() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "input ends where a value was expected at byte 0"),
            (b"le", "getcipher answer is not a dictionary"),
            (
                b"d3:key3:abc6:key id16:0123456789abcdefe",
                "unsupported cipher \"(none)\"",
            ),
            (
                b"d6:cipher8:chacha203:key3:abc6:key id16:0123456789abcdefe",
                "unsupported cipher \"chacha20\"",
            ),
            (
                b"d6:cipher4:rc4+3:key3:abc6:key id3:abce",
                "missing or bad key id",
            ),
            (
                b"d6:cipher4:rc4+6:key id16:0123456789abcdefe",
                "missing key",
            ),
            (
                b"d6:cipher4:rc4+3:keyi1e6:key id16:0123456789abcdefe",
                "missing key",
            ),
        ];
        for (body, expected) in cases {
            match parse_cipher_answer(body) {
                Err(TrackerError::Malformed(m)) => assert!(
                    m.contains(expected),
                    "{}: {m}",
                    String::from_utf8_lossy(body)
                ),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    fn client(url: &str) -> TrackerClient {
        TrackerClient::new(url, "u 1", Zeroizing::new("p&w".into())).unwrap()
    }

    #[test]
    fn urls_keep_other_parameters_and_replace_credentials() {
        let c = client("http://127.0.0.1:6969/announce?username=x&psw=y&passkey=abc");
        assert_eq!(c.announce_url(), "http://127.0.0.1:6969/announce");
        let uri = c.endpoint("/getcipher", "new=1", false).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:6969/getcipher?new=1&username=u%201&psw=p%26w&getToken=y&passkey=abc"
        );
        let c = client("http://tracker.example/ivcsd/announce");
        assert_eq!(
            c.endpoint("/torrent", "", false).unwrap().to_string(),
            "http://tracker.example/ivcsd/torrent?username=u%201&psw=p%26w&getToken=y"
        );
        *c.token.lock() = Some(Zeroizing::new("t/1".into()));
        assert_eq!(
            c.endpoint("/announce", "a=1", true).unwrap().to_string(),
            "http://tracker.example/ivcsd/announce?a=1&token=t%2F1"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["ftp://x/announce", "not a url", "/announce"] {
            assert!(
                TrackerClient::new(url, "u", Zeroizing::new("p".into())).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn announce_answers_parse() {
        let body = b"d8:completei2e10:incompletei1e8:intervali60e12:min intervali30e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
        let r = parse_announce(body).unwrap();
        assert_eq!(r.interval_secs, 60);
        assert_eq!(r.min_interval_secs, Some(30));
        assert_eq!((r.complete, r.incomplete), (2, 1));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        let dict_form = b"d8:intervali5e5:peersld2:ip3:::14:porti7eeee";
        assert_eq!(
            parse_announce(dict_form).unwrap().peers,
            vec!["[::1]:7".parse().unwrap()]
        );
    }

    #[test]
    fn malformed_announce_answers_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"le",
            b"d5:peers0:e",
            b"d8:intervali5e5:peers5:abcdee",
            b"d8:intervali5e5:peersi1ee",
            b"d8:intervali5e6:peers67:abcdefe",
        ];
        for body in cases {
            assert!(
                matches!(parse_announce(body), Err(TrackerError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_announce(b"d14:failure reason6:nope!!e"),
            Err(TrackerError::Refused(r)) if r == "nope!!"
        ));
    }
}
