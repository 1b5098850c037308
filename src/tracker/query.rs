//! The raw query string of a tracker request, decoded to bytes (docs/protocol.md 4).
//!
//! Why not `form_urlencoded`: it yields `Cow<str>`, and an `info_hash` is 20 raw bytes that
//! are rarely UTF-8. So the query is split on `&` and `=` here and every value is
//! percent-decoded to bytes, accepting either hex case (stock clients differ). `+` is kept as
//! a literal `+`, not a space: no ivcsd parameter carries a space, while standard base64 (`key`,
//! `sign`) carries `+` and a careless client may forget to encode it.
//!
//! Everything a remote client controls is bounded: the query length, the number of parameters
//! and the number of `info_hash` values a scrape may ask for.
//!
//! Pure: no I/O, no async.

use std::borrow::Cow;

use crate::types::InfoHash;

/// Longest query accepted, in bytes. A getcipher query with a 4096-bit key and signature,
/// percent-encoded, stays well below it; the HTTP header limit bounds it too.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Most `name=value` pairs in one query (a scrape's `info_hash` values included).
pub const MAX_PARAMS: usize = 256;
/// Most `info_hash` values one scrape may name.
pub const MAX_SCRAPE_HASHES: usize = 64;

/// Why a query could not be read. Messages are safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("query of {len} bytes is longer than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("query has more than {max} parameters")]
    TooManyParams { max: usize },
    #[error("bad percent-encoding at byte {offset} of the query")]
    BadPercent { offset: usize },
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{0}` is given more than once")]
    Repeated(&'static str),
    #[error("parameter `{name}` is invalid: {reason}")]
    Invalid {
        name: &'static str,
        reason: &'static str,
    },
    #[error("info_hash must be 20 bytes, got {got}")]
    InfoHashLength { got: usize },
    #[error("more than {max} info_hash values")]
    TooManyInfoHashes { max: usize },
}

/// A decoded query: `(name, value)` pairs in the order received. Values borrow from the raw
/// query when they contained no `%`.
/// A decoded `(name, value)` pair.
type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

#[derive(Default)]
pub struct Query<'a> {
    pairs: Vec<Pair<'a>>,
}

/// Only parameter names: values include passwords and tokens.
impl std::fmt::Debug for Query<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(n, _)| String::from_utf8_lossy(n)))
            .finish()
    }
}

/// Decodes `%XX` escapes (either hex case) to bytes. `base` is the offset of `s` in the whole
/// query, for the error.
fn percent_decode(s: &str, base: usize) -> Result<Cow<'_, [u8]>, QueryError> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_digit(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_digit(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(QueryError::BadPercent { offset: base + i }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl<'a> Query<'a> {
    /// Parses the query part of a URI (without the `?`). Empty segments (`a=1&&b=2`) are
    /// skipped; a segment without `=` is a name with an empty value.
    ///
    /// # Errors
    /// [`QueryError::TooLong`], [`QueryError::TooManyParams`], [`QueryError::BadPercent`].
    pub fn parse(raw: &'a str) -> Result<Self, QueryError> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong {
                len: raw.len(),
                max: MAX_QUERY_LEN,
            });
        }
        let mut pairs = Vec::new();
        let mut offset = 0;
        for segment in raw.split('&') {
            let start = offset;
            offset += segment.len() + 1;
            if segment.is_empty() {
                continue;
            }
            if pairs.len() == MAX_PARAMS {
                return Err(QueryError::TooManyParams { max: MAX_PARAMS });
            }
            let (name, value, value_start) = match segment.find('=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..], start + eq + 1),
                None => (segment, "", start + segment.len()),
            };
            pairs.push((
                percent_decode(name, start)?,
                percent_decode(value, value_start)?,
            ));
        }
        Ok(Query { pairs })
    }

    /// Every value of `name`, in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.pairs
            .iter()
            .filter(move |(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v.as_ref())
    }

    /// The value of a parameter that may appear at most once.
    ///
    /// # Errors
    /// [`QueryError::Repeated`] when it appears twice: two `psw` or two `info_hash` values on
    /// an announce are ambiguous, and ambiguity in credentials is refused.
    pub fn get(&self, name: &'static str) -> Result<Option<&[u8]>, QueryError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(QueryError::Repeated(name));
        }
        Ok(first)
    }

    /// The value of a required parameter.
    pub fn require(&self, name: &'static str) -> Result<&[u8], QueryError> {
        self.get(name)?.ok_or(QueryError::Missing(name))
    }

    /// A parameter as UTF-8 text, if present.
    pub fn get_str(&self, name: &'static str) -> Result<Option<&str>, QueryError> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .map(Some)
                .map_err(|_| QueryError::Invalid {
                    name,
                    reason: "not UTF-8",
                }),
        }
    }

    /// A parameter as a non-negative decimal integer, if present.
    pub fn get_u64(&self, name: &'static str) -> Result<Option<u64>, QueryError> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => parse_u64(v).map(Some).ok_or(QueryError::Invalid {
                name,
                reason: "not a non-negative decimal integer",
            }),
        }
    }

    /// A required non-negative integer.
    pub fn require_u64(&self, name: &'static str) -> Result<u64, QueryError> {
        self.get_u64(name)?.ok_or(QueryError::Missing(name))
    }

    /// The single `info_hash` of an announce, getcipher or torrent request.
    pub fn info_hash(&self) -> Result<InfoHash, QueryError> {
        let raw = self.require("info_hash")?;
        InfoHash::from_slice(raw).ok_or(QueryError::InfoHashLength { got: raw.len() })
    }

    /// The `info_hash` values of a scrape (BEP 48): any number up to [`MAX_SCRAPE_HASHES`],
    /// duplicates removed, order kept.
    pub fn info_hashes(&self) -> Result<Vec<InfoHash>, QueryError> {
        let mut out: Vec<InfoHash> = Vec::new();
        for raw in self.all("info_hash") {
            let hash =
                InfoHash::from_slice(raw).ok_or(QueryError::InfoHashLength { got: raw.len() })?;
            if !out.contains(&hash) {
                if out.len() == MAX_SCRAPE_HASHES {
                    return Err(QueryError::TooManyInfoHashes {
                        max: MAX_SCRAPE_HASHES,
                    });
                }
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// A boolean flag such as `getToken=y`, `new=1`, `compact=0`: true for `1`, `y`, `yes`,
    /// `true` (any case); false for `0`, `n`, `no`, `false`; absent is `None`.
    pub fn get_flag(&self, name: &'static str) -> Result<Option<bool>, QueryError> {
        let Some(v) = self.get(name)? else {
            return Ok(None);
        };
        let v = v.to_ascii_lowercase();
        match v.as_slice() {
            b"1" | b"y" | b"yes" | b"true" => Ok(Some(true)),
            b"0" | b"n" | b"no" | b"false" => Ok(Some(false)),
            _ => Err(QueryError::Invalid {
                name,
                reason: "not a flag (1/0, y/n, yes/no, true/false)",
            }),
        }
    }
}

/// Decimal digits only, no sign, at most 20 digits, no overflow.
fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";

    #[test]
    fn binary_info_hash_either_case() {
        let upper = format!("info_hash={HASH}&port=6881");
        // lowercase only the escapes: the literal bytes ("4Vx", "Eg") are data
        let lower = upper
            .replace("%9A", "%9a")
            .replace("%BC", "%bc")
            .replace("%DE", "%de");
        let a = Query::parse(&upper).unwrap().info_hash().unwrap();
        let b = Query::parse(&lower).unwrap().info_hash().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_hex(), "123456789abcdef123456789abcdef123456789a");
    }

    #[test]
    fn stock_client_appends_to_credentials() {
        // aria2c-style: the tracker URL already had username & psw, the client appends.
        let raw = format!(
            "username=u1&psw=p%20w&info_hash={HASH}&peer_id=-AR1360-abcdefghijkl&port=6881\
             &uploaded=0&downloaded=0&left=10&compact=1&key=abc&supportcrypto=1&event=started"
        );
        let q = Query::parse(&raw).unwrap();
        assert_eq!(q.get_str("username").unwrap(), Some("u1"));
        assert_eq!(q.get("psw").unwrap(), Some(&b"p w"[..]));
        assert_eq!(q.require_u64("port").unwrap(), 6881);
        assert_eq!(q.get_flag("compact").unwrap(), Some(true));
    }

    #[test]
    fn debug_shows_no_values() {
        let q = Query::parse("username=u&psw=secret").unwrap();
        let shown = format!("{q:?}");
        assert!(
            shown.contains("psw") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn plus_is_literal_and_empty_segments_skipped() {
        let q = Query::parse("sign=ab+c/=&&x").unwrap();
        assert_eq!(q.get("sign").unwrap(), Some(&b"ab+c/="[..]));
        assert_eq!(q.get("x").unwrap(), Some(&b""[..]));
    }

    #[test]
    fn scrape_hashes_repeated_and_deduplicated() {
        let h2 = "%00".repeat(20);
        let raw = format!("info_hash={HASH}&info_hash={h2}&info_hash={HASH}");
        let q = Query::parse(&raw).unwrap();
        assert_eq!(q.info_hashes().unwrap().len(), 2);
        assert_eq!(Query::parse("").unwrap().info_hashes().unwrap(), vec![]);
    }

    /// One line per malformed query, with the exact error.
    macro_rules! malformed {
        ($name:ident, $query:expr, $op:expr, $err:expr) => {
            #[test]
            fn $name() {
                let query: String = $query.into();
                let result = Query::parse(&query).and_then(|q| {
                    let op: fn(&Query<'_>) -> Result<(), QueryError> = $op;
                    op(&q)
                });
                assert_eq!(result, Err($err));
            }
        };
    }

    fn hash(q: &Query<'_>) -> Result<(), QueryError> {
        q.info_hash().map(drop)
    }
    fn port(q: &Query<'_>) -> Result<(), QueryError> {
        q.require_u64("port").map(drop)
    }
    fn nothing(_: &Query<'_>) -> Result<(), QueryError> {
        Ok(())
    }

    malformed!(
        truncated_escape,
        "info_hash=%1",
        hash,
        QueryError::BadPercent { offset: 10 }
    );
    malformed!(
        non_hex_escape,
        "a=1&b=%zz",
        nothing,
        QueryError::BadPercent { offset: 6 }
    );
    malformed!(
        bad_escape_in_name,
        "%g0=1",
        nothing,
        QueryError::BadPercent { offset: 0 }
    );
    malformed!(
        short_hash,
        "info_hash=abc",
        hash,
        QueryError::InfoHashLength { got: 3 }
    );
    malformed!(
        long_hash,
        format!("info_hash={}", "a".repeat(21)),
        hash,
        QueryError::InfoHashLength { got: 21 }
    );
    malformed!(
        missing_hash,
        "port=1",
        hash,
        QueryError::Missing("info_hash")
    );
    malformed!(
        repeated_hash,
        format!("info_hash={HASH}&info_hash={HASH}"),
        hash,
        QueryError::Repeated("info_hash")
    );
    malformed!(
        negative_port,
        "port=-1",
        port,
        QueryError::Invalid {
            name: "port",
            reason: "not a non-negative decimal integer"
        }
    );
    malformed!(
        overflowing_int,
        "port=99999999999999999999",
        port,
        QueryError::Invalid {
            name: "port",
            reason: "not a non-negative decimal integer"
        }
    );
    malformed!(
        empty_int,
        "port=",
        port,
        QueryError::Invalid {
            name: "port",
            reason: "not a non-negative decimal integer"
        }
    );
    malformed!(
        too_long,
        "a".repeat(MAX_QUERY_LEN + 1),
        nothing,
        QueryError::TooLong {
            len: MAX_QUERY_LEN + 1,
            max: MAX_QUERY_LEN
        }
    );
    malformed!(
        too_many_params,
        "a=1&".repeat(MAX_PARAMS + 1),
        nothing,
        QueryError::TooManyParams { max: MAX_PARAMS }
    );
    malformed!(
        bad_flag,
        "compact=maybe",
        |q| q.get_flag("compact").map(drop),
        QueryError::Invalid {
            name: "compact",
            reason: "not a flag (1/0, y/n, yes/no, true/false)"
        }
    );
    malformed!(
        not_utf8_name,
        "username=%ff",
        |q| q.get_str("username").map(drop),
        QueryError::Invalid {
            name: "username",
            reason: "not UTF-8"
        }
    );
    malformed!(
        too_many_scrape_hashes,
        (0..=MAX_SCRAPE_HASHES)
            .map(|i| format!("info_hash={i:020}"))
            .collect::<Vec<_>>()
            .join("&"),
        |q| q.info_hashes().map(drop),
        QueryError::TooManyInfoHashes {
            max: MAX_SCRAPE_HASHES
        }
    );
}
