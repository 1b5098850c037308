//! GET /getcipher (docs/protocol.md 4.3), also reached as the paper's `/announce?getCipher=yes`.
//!
//! Order of checks, each refusal audited with its true reason:
//! 1. credentials (as every endpoint);
//! 2. parameters: `info_hash` xor `new=1`, `key` and `sign` (lenient base64), `ts`, `nonce`
//!    (32 to 64 hex digits) — 400 when malformed;
//! 3. `ts` within `nonce_window_secs` of the tracker's clock — 401;
//! 4. the key: an RSA SPKI of at least 2048 bits, and the user's pinned `<public_key>` if set —
//!    401;
//! 5. the PSS signature over [`GetcipherMessage`] — 401;
//! 6. the nonce not seen within the window (recorded only after the signature verified, so
//!    nobody without a valid signature can fill the cache) — 401;
//! 7. the authority rules ([`decide`], relays always refused) — 404 like an unknown torrent;
//! 8. the key: the torrent's, or with `new=1` a fresh one recorded as pending for the
//!    requester; wrapped with OAEP for the given key.
//!
//! RSA work (2048 bits, aws-lc: ≈35 µs CPU with a cached key, ≈57 µs parsing it first;
//! docs/benchmarks.md) runs on the blocking pool behind a semaphore; parsed keys are cached
//! ([`super::key_cache`]).

use std::collections::HashMap;

use crate::bencode::{Dict, Value};
use crate::crypto::content::Cipher;
use crate::crypto::identity::{
    CipherTarget, GetcipherMessage, IdentityError, PublicIdentity, decode_base64_lenient,
};
use crate::types::{InfoHash, KeyId};

use super::answer::Answer;
use super::decide::{Action, decide};
use super::endpoint::Endpoint;
use super::query::{Query, QueryError};
use super::refusal::Refusal;
use super::{ApiRequest, TrackerState};

/// Longest `key` accepted after base64 (an 8192-bit SPKI is about 1.1 KB).
const MAX_KEY_DER: usize = 2048;
/// Longest `sign` accepted after base64 (8192 bits).
const MAX_SIGNATURE: usize = 1024;

/// The parameters of a getcipher request, checked for form only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetcipherParams {
    pub target: CipherTarget,
    pub key_der: Vec<u8>,
    pub signature: Vec<u8>,
    pub ts: u64,
    /// Lowercased.
    pub nonce: String,
}

impl GetcipherParams {
    /// # Errors
    /// A [`QueryError`] naming the parameter.
    pub fn parse(q: &Query<'_>) -> Result<Self, QueryError> {
        let new = q.get_flag("new")?.unwrap_or(false);
        let target = match (q.get("info_hash")?.is_some(), new) {
            (true, true) => {
                return Err(QueryError::Invalid {
                    name: "new",
                    reason: "give info_hash or new=1, not both",
                });
            }
            (true, false) => CipherTarget::Torrent(q.info_hash()?),
            (false, true) => CipherTarget::New,
            (false, false) => return Err(QueryError::Missing("info_hash")),
        };
        let key_der =
            decode_base64_lenient(q.require("key")?).map_err(|_| QueryError::Invalid {
                name: "key",
                reason: "not base64",
            })?;
        if key_der.len() > MAX_KEY_DER {
            return Err(QueryError::Invalid {
                name: "key",
                reason: "longer than any supported RSA key",
            });
        }
        let signature =
            decode_base64_lenient(q.require("sign")?).map_err(|_| QueryError::Invalid {
                name: "sign",
                reason: "not base64",
            })?;
        if signature.len() > MAX_SIGNATURE {
            return Err(QueryError::Invalid {
                name: "sign",
                reason: "longer than any supported RSA signature",
            });
        }
        let ts = q.require_u64("ts")?;
        let nonce = q.require("nonce")?;
        if !(32..=64).contains(&nonce.len()) || !nonce.iter().all(u8::is_ascii_hexdigit) {
            return Err(QueryError::Invalid {
                name: "nonce",
                reason: "must be 32 to 64 hex digits",
            });
        }
        let nonce = String::from_utf8_lossy(nonce).to_ascii_lowercase();
        Ok(GetcipherParams {
            target,
            key_der,
            signature,
            ts,
            nonce,
        })
    }
}

/// Nonces seen within the window: bounded, expiring.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashMap<String, u64>,
    max: usize,
}

/// Why a nonce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    Replayed,
    Full,
}

impl NonceCache {
    pub fn new(max: usize) -> Self {
        NonceCache {
            seen: HashMap::new(),
            max,
        }
    }

    /// Records `nonce` until `expires` (Unix seconds) unless it is already there.
    ///
    /// # Errors
    /// [`NonceRefusal::Replayed`] for a nonce seen and not expired; [`NonceRefusal::Full`] when
    /// the cache holds `max` live nonces (refusing is safer than forgetting one early).
    pub fn insert(&mut self, nonce: &str, now: u64, expires: u64) -> Result<(), NonceRefusal> {
        if let Some(&until) = self.seen.get(nonce)
            && until > now
        {
            return Err(NonceRefusal::Replayed);
        }
        if self.seen.len() >= self.max {
            self.clean(now);
            if self.seen.len() >= self.max {
                return Err(NonceRefusal::Full);
            }
        }
        self.seen.insert(nonce.to_owned(), expires);
        Ok(())
    }

    /// Drops expired nonces.
    pub fn clean(&mut self, now: u64) {
        self.seen.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The answer to a getcipher: the content key wrapped for the requester. Built only once its
/// handout is recorded: none is ever built and then not sent.
#[derive(Debug)]
pub struct CipherAnswer {
    /// The torrent's suite; for a new key (which serves any suite), the tracker's preferred one.
    pub cipher: Cipher,
    pub key_id: KeyId,
    /// The content key wrapped (RSA-OAEP) for the requester's key.
    pub wrapped: Vec<u8>,
}

impl CipherAnswer {
    pub fn to_bencode(&self) -> Dict<'static> {
        let mut d = Dict::new();
        d.insert(&b"cipher"[..], Value::from(self.cipher.name()));
        d.insert(&b"key id"[..], Value::from(self.key_id.0.to_vec()));
        d.insert(&b"key"[..], Value::from(self.wrapped.clone()));
        d
    }
}

/// Serves a getcipher query; `endpoint` is /getcipher or the paper's announce alias, which
/// the audit log and the metrics tell apart.
///
/// # Errors
/// The refusal to answer, already recorded.
pub async fn handle(
    state: &TrackerState,
    req: &ApiRequest<'_>,
    query: &Query<'_>,
    endpoint: Endpoint,
) -> Result<Answer, Refusal> {
    let info_hash = query.info_hash().ok();
    let auth = state.authenticate(req, query, endpoint, info_hash).await?;
    // A key goes out only with its entry accepted: the place is taken before any key work.
    let slot = state.reserve_audit().await?;
    let user = Some(auth.username());
    match getcipher(state, query, &auth).await {
        Ok(granted) => {
            let recorded = state
                .audit_change(slot, req, endpoint, user, info_hash, Ok(&granted.reason))
                .await;
            if let Err(unavailable) = recorded {
                if granted.new_key {
                    // Answered 503 instead: the key never left, so it must not hold one of
                    // the user's `pending_keys_per_user` places until it expires.
                    forget_new_key(state, granted.key_id).await;
                }
                return Err(unavailable.into());
            }
            Ok(Answer::Cipher(CipherAnswer {
                cipher: granted.cipher,
                key_id: granted.key_id,
                wrapped: granted.wrapped,
            }))
        }
        Err(refusal) => {
            state
                .audit_change(slot, req, endpoint, user, info_hash, Err(&refusal))
                .await?;
            Err(refusal)
        }
    }
}

/// Deletes a new pending key that was not handed out after all.
async fn forget_new_key(state: &TrackerState, key_id: KeyId) {
    match state.catalogue.forget_pending_key(key_id).await {
        Ok(_) => tracing::warn!(
            "new pending key {key_id} was not handed out (its audit line could not be written \
             in time) and is deleted"
        ),
        Err(e) => tracing::error!("error deleting pending key {key_id}, not handed out: {e}"),
    }
}

/// A key granted, wrapped for the requester, whose handout is yet to be recorded.
struct Granted {
    cipher: Cipher,
    key_id: KeyId,
    wrapped: Vec<u8>,
    /// For the audit log.
    reason: String,
    /// A pending key made by this request (`new=1`).
    new_key: bool,
}

fn identity_refusal(e: IdentityError) -> Refusal {
    match e {
        IdentityError::KeyTooShort { .. } | IdentityError::KeyTooLong { .. } => {
            Refusal::identity(e.to_string())
        }
        IdentityError::BadSignature => Refusal::identity("signature does not verify"),
        _ => Refusal::malformed(format!("key is not an RSA SubjectPublicKeyInfo: {e}")),
    }
}

async fn getcipher(
    state: &TrackerState,
    query: &Query<'_>,
    auth: &super::credentials::Authenticated,
) -> Result<Granted, Refusal> {
    let params = GetcipherParams::parse(query)?;
    let user = auth.user();
    let username = auth.username().to_owned();
    if username.contains('\n') {
        return Err(Refusal::malformed("username has a line break"));
    }
    let now = state.clock.unix_secs();
    let window = state.config.nonce_window_secs;
    if params.ts.abs_diff(now) > window {
        return Err(Refusal::identity(format!(
            "ts {} is more than {window} s from the tracker's clock",
            params.ts
        )));
    }
    if let Some(pinned) = &user.public_key
        && *pinned != params.key_der
    {
        return Err(Refusal::identity(
            "key is not the public key registered for this user",
        ));
    }
    // Parse and verify off the reactor.
    let permit = state
        .rsa
        .acquire()
        .await
        .map_err(|_| Refusal::internal("tracker is shutting down"))?;
    // A requester's key is parsed once and then served from the cache (key_cache.rs).
    let cached = state.public_keys.lock().get(&params.key_der);
    let was_cached = cached.is_some();
    let verify = {
        let params = params.clone();
        let username = username.clone();
        tokio::task::spawn_blocking(move || {
            let key = match cached {
                Some(key) => key,
                None => PublicIdentity::from_spki_der(&params.key_der)?,
            };
            let message = GetcipherMessage {
                username: &username,
                target: params.target,
                ts: params.ts,
                nonce: &params.nonce,
                spki_sha256: key.spki_sha256(),
            };
            key.verify(&message.to_bytes(), &params.signature)?;
            Ok::<_, IdentityError>(key)
        })
    };
    let key = verify
        .await
        .map_err(|_| Refusal::internal("signature check panicked"))?
        .map_err(identity_refusal)?;
    drop(permit);
    if !was_cached {
        state.public_keys.lock().insert(key.clone());
    }
    let nonce = state
        .nonces
        .lock()
        .insert(&params.nonce, now, now + 2 * window + 1);
    match nonce {
        Ok(()) => {}
        Err(NonceRefusal::Replayed) => return Err(Refusal::identity("nonce already used")),
        Err(NonceRefusal::Full) => {
            return Err(Refusal::internal("nonce cache full; try again later"));
        }
    }
    let (cipher, key_id, content_key, reason) = match params.target {
        CipherTarget::Torrent(hash) => {
            let grant = may_read(state, &hash, auth)?;
            let (cipher, key_id, key) = state.catalogue.content_key(&hash).await?;
            (cipher, key_id, key, format!("key handed out ({grant})"))
        }
        CipherTarget::New => {
            let max_pending = state.config.pending_keys_per_user;
            let made = state
                .catalogue
                .new_pending_key(&username, state.clock.unix_ms(), max_pending)
                .await
                .map_err(|e| Refusal::internal(e.to_string()))?;
            let Some((key_id, key)) = made else {
                return Err(Refusal::malformed(format!(
                    "too many unpublished keys (at most {max_pending}); publish or wait for them to expire"
                )));
            };
            (
                // The key serves any suite; the answer names the one this tracker prefers for
                // new torrents, which `peer publish` uses unless told otherwise.
                state.config.preferred_cipher(),
                key_id,
                key,
                format!("new pending key {key_id}"),
            )
        }
    };
    let _permit = state
        .rsa
        .acquire()
        .await
        .map_err(|_| Refusal::internal("tracker is shutting down"))?;
    let wrapped = tokio::task::spawn_blocking(move || key.wrap_content_key(&content_key))
        .await
        .map_err(|_| Refusal::internal("key wrapping panicked"))?;
    Ok(Granted {
        cipher,
        key_id,
        wrapped,
        reason,
        new_key: params.target == CipherTarget::New,
    })
}

/// Whether the requester may read the torrent, with the grant's reason.
fn may_read(
    state: &TrackerState,
    hash: &InfoHash,
    auth: &super::credentials::Authenticated,
) -> Result<&'static str, Refusal> {
    let requester = auth.requester();
    let grant = state.catalogue.with_access(hash, auth.username(), |t| {
        decide(&requester, t, Action::Getcipher)
    })?;
    Ok(grant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_cache_refuses_replays_and_expires() {
        let mut c = NonceCache::new(2);
        assert_eq!(c.insert("a", 0, 10), Ok(()));
        assert_eq!(c.insert("a", 5, 15), Err(NonceRefusal::Replayed));
        assert_eq!(c.insert("b", 5, 15), Ok(()));
        assert_eq!(c.insert("c", 5, 15), Err(NonceRefusal::Full));
        assert_eq!(c.insert("c", 10, 20), Ok(())); // "a" expired and was swept
        assert_eq!(c.insert("a", 10, 20), Err(NonceRefusal::Full));
        c.clean(20);
        assert!(c.is_empty());
    }

    fn parse(q: &str) -> Result<GetcipherParams, QueryError> {
        GetcipherParams::parse(&Query::parse(q).unwrap())
    }

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    macro_rules! malformed {
        ($name:ident, $q:expr, $err:expr) => {
            #[test]
            fn $name() {
                assert_eq!(parse(&$q), Err($err));
            }
        };
    }
    malformed!(
        no_target,
        format!("key=AAAA&sign=AAAA&ts=1&nonce={NONCE}"),
        QueryError::Missing("info_hash")
    );
    malformed!(
        both_targets,
        format!(
            "new=1&info_hash={}&key=AAAA&sign=AAAA&ts=1&nonce={NONCE}",
            "%00".repeat(20)
        ),
        QueryError::Invalid {
            name: "new",
            reason: "give info_hash or new=1, not both"
        }
    );
    malformed!(
        bad_key_base64,
        format!("new=1&key=A*A&sign=AAAA&ts=1&nonce={NONCE}"),
        QueryError::Invalid {
            name: "key",
            reason: "not base64"
        }
    );
    malformed!(
        huge_key,
        format!(
            "new=1&key={}&sign=AAAA&ts=1&nonce={NONCE}",
            "A".repeat(4000)
        ),
        QueryError::Invalid {
            name: "key",
            reason: "longer than any supported RSA key"
        }
    );
    malformed!(
        bad_sign_base64,
        format!("new=1&key=AAAA&sign=%25&ts=1&nonce={NONCE}"),
        QueryError::Invalid {
            name: "sign",
            reason: "not base64"
        }
    );
    malformed!(
        no_ts,
        format!("new=1&key=AAAA&sign=AAAA&nonce={NONCE}"),
        QueryError::Missing("ts")
    );
    malformed!(
        short_nonce,
        "new=1&key=AAAA&sign=AAAA&ts=1&nonce=abcd",
        QueryError::Invalid {
            name: "nonce",
            reason: "must be 32 to 64 hex digits"
        }
    );
    malformed!(
        non_hex_nonce,
        format!("new=1&key=AAAA&sign=AAAA&ts=1&nonce={}", "g".repeat(32)),
        QueryError::Invalid {
            name: "nonce",
            reason: "must be 32 to 64 hex digits"
        }
    );

    #[test]
    fn url_safe_unpadded_and_percent_encoded_base64_all_parse() {
        let p = parse(&format!(
            "new=1&key=-_8&sign=%2B%2F8%3D&ts=7&nonce={}",
            NONCE.to_uppercase()
        ))
        .unwrap();
        assert_eq!(p.key_der, vec![0xfb, 0xff]);
        assert_eq!(p.signature, vec![0xfb, 0xff]);
        assert_eq!(p.nonce, NONCE);
        assert_eq!(p.target, CipherTarget::New);
    }
}
