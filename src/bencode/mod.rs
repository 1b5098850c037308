//! Strict bencode (BEP 3): decoding with a precise error for every malformed input, and
//! encoding of the values ivcsd sends.
//!
//! Why our own and not a crate: the info hash must be computed over the exact bytes of
//! `info` as received, every error must say what went wrong at which byte, and hostile input
//! must not exhaust stack or memory. Of the maintained crates only `bendy` keeps raw bytes,
//! but its errors carry no byte offset and it accepts trailing data; the lenient ones
//! (serde_bencode, bt_bencode) re-encode `info` and overflow the stack on deep nesting. The
//! decoder below is small, zero-copy (byte strings borrow from the input) and bounded:
//! - nesting depth is limited ([`DecodeLimits::max_depth`]), so recursion cannot overflow the stack;
//! - the number of values is limited ([`DecodeLimits::max_values`]), so a 16 MiB body of `0:0:0:…`
//!   cannot make millions of list entries;
//! - a string length is checked against the bytes that remain before anything is touched.
//!
//! Canonical form is enforced: integers without leading zeros or `-0`, dictionary keys sorted
//! by raw bytes and unique, nothing after the top-level value.
//!
//! This module does no I/O.

use std::borrow::Cow;
use std::fmt;

/// Bounds that keep decoding of hostile input cheap.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Deepest nesting of lists and dictionaries (the top level counts as 1).
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) in one document.
    pub max_values: usize,
}

impl Default for DecodeLimits {
    /// Generous for any real torrent (a 40,000-file torrent has about 250,000 values).
    fn default() -> Self {
        DecodeLimits {
            max_depth: 64,
            max_values: 2_000_000,
        }
    }
}

/// What is wrong with the input, without the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended while `expected` was still to come.
    UnexpectedEnd { expected: &'static str },
    /// A byte that cannot start or continue the current item.
    UnexpectedByte { found: u8, expected: &'static str },
    /// `i03e` or `03:abc`: a leading zero is not canonical.
    LeadingZero,
    /// `i-0e` is not canonical.
    NegativeZero,
    /// `ie` or `i-e`.
    EmptyInteger,
    /// The integer does not fit in 64 bits.
    IntegerOverflow,
    /// A string claims more bytes than the input has left.
    StringTooLong { claimed: u64, available: usize },
    /// Lists and dictionaries nest deeper than allowed.
    TooDeep { max: usize },
    /// More values than allowed.
    TooManyValues { max: usize },
    /// A dictionary key is not greater than the key before it.
    UnsortedKey,
    /// A dictionary key appears twice.
    DuplicateKey,
    /// Bytes follow the complete top-level value.
    TrailingData { extra: usize },
}

/// A decoding error: what went wrong and at which byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEnd { expected } => {
                write!(f, "input ends where {expected} was expected")
            }
            ErrorKind::UnexpectedByte { found, expected } => {
                write!(
                    f,
                    "unexpected byte {} ({expected} expected)",
                    show_byte(*found)
                )
            }
            ErrorKind::LeadingZero => f.write_str("number with a leading zero"),
            ErrorKind::NegativeZero => f.write_str("negative zero"),
            ErrorKind::EmptyInteger => f.write_str("integer without digits"),
            ErrorKind::IntegerOverflow => f.write_str("integer does not fit in 64 bits"),
            ErrorKind::StringTooLong { claimed, available } => write!(
                f,
                "string of {claimed} bytes claimed but only {available} bytes remain"
            ),
            ErrorKind::TooDeep { max } => write!(f, "nesting deeper than {max} levels"),
            ErrorKind::TooManyValues { max } => write!(f, "more than {max} values"),
            ErrorKind::UnsortedKey => f.write_str("dictionary keys not in sorted order"),
            ErrorKind::DuplicateKey => f.write_str("duplicate dictionary key"),
            ErrorKind::TrailingData { extra } => {
                write!(f, "{extra} bytes of trailing data after the value")
            }
        }
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// A bencoded value. Byte strings borrow from the decoded input; values built for sending
/// may own their bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(Cow<'a, [u8]>),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary: entries sorted by key, plus the raw bytes it was decoded from, which is
/// what an info hash is computed over. Equality compares entries only.
#[derive(Clone, Default)]
pub struct Dict<'a> {
    /// Invariant: sorted by key, keys unique.
    entries: Vec<(Cow<'a, [u8]>, Value<'a>)>,
    raw: Option<&'a [u8]>,
}

impl PartialEq for Dict<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}
impl Eq for Dict<'_> {}

impl<'a> Dict<'a> {
    pub fn new() -> Self {
        Dict::default()
    }

    /// Sets `key` to `value`, keeping the entries sorted (a later insert replaces).
    pub fn insert(&mut self, key: impl Into<Cow<'a, [u8]>>, value: Value<'a>) {
        let key = key.into();
        match self
            .entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref()))
        {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
        self.raw = None;
    }

    /// Builder form of [`Dict::insert`].
    pub fn with(mut self, key: &'a str, value: impl Into<Value<'a>>) -> Self {
        self.insert(key.as_bytes(), value.into());
        self
    }

    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact bytes this dictionary was decoded from; `None` for a dictionary built or
    /// changed in memory.
    pub fn raw(&self) -> Option<&'a [u8]> {
        self.raw
    }
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string as UTF-8, `None` if it is not a string or not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// Appends the canonical encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                if let Some(raw) = d.raw {
                    // Decoded and unchanged: the raw bytes are canonical already.
                    out.extend_from_slice(raw);
                    return;
                }
                out.push(b'd');
                for (k, v) in &d.entries {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Copies every borrowed byte so the value outlives its input.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Int(i) => Value::Int(i),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
            Value::Dict(d) => Value::Dict(Dict {
                entries: d
                    .entries
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
                raw: None,
            }),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if b.len() <= 64 => write!(f, "{s:?}"),
                _ => write!(f, "<{} bytes>", b.len()),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => fmt::Debug::fmt(d, f),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), v)),
            )
            .finish()
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u32> for Value<'_> {
    fn from(i: u32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(b: &'a [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(b))
    }
}
impl<'a, const N: usize> From<&'a [u8; N]> for Value<'a> {
    fn from(b: &'a [u8; N]) -> Self {
        Value::Bytes(Cow::Borrowed(b))
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Bytes(Cow::Borrowed(s.as_bytes()))
    }
}
impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::Bytes(Cow::Owned(s.into_bytes()))
    }
}
impl From<Vec<u8>> for Value<'_> {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(Cow::Owned(b))
    }
}
impl<'a> From<Dict<'a>> for Value<'a> {
    fn from(d: Dict<'a>) -> Self {
        Value::Dict(d)
    }
}
impl<'a> From<Vec<Value<'a>>> for Value<'a> {
    fn from(l: Vec<Value<'a>>) -> Self {
        Value::List(l)
    }
}

/// Decodes exactly one value that spans the whole input, with the default [`DecodeLimits`].
///
/// # Errors
/// Any malformed, non-canonical or over-limit input, with the byte offset where it was found.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    decode_with(input, DecodeLimits::default())
}

/// Like [`decode`], with explicit limits.
///
/// # Errors
/// As [`decode`].
pub fn decode_with(input: &[u8], limits: DecodeLimits) -> Result<Value<'_>, DecodeError> {
    let mut parser = Parser {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let value = parser.value(1)?;
    if parser.pos != input.len() {
        return Err(DecodeError {
            offset: parser.pos,
            kind: ErrorKind::TrailingData {
                extra: input.len() - parser.pos,
            },
        });
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    limits: DecodeLimits,
    values: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, offset: usize, kind: ErrorKind) -> Result<T, DecodeError> {
        Err(DecodeError { offset, kind })
    }

    fn peek(&self, expected: &'static str) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(self.pos, ErrorKind::UnexpectedEnd { expected }),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return self.err(
                self.pos,
                ErrorKind::TooManyValues {
                    max: self.limits.max_values,
                },
            );
        }
        match self.peek("a value")? {
            b'i' => self.integer().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(|b| Value::Bytes(Cow::Borrowed(b))),
            b'l' => {
                self.check_depth(depth)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek("a list item or 'e'")? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.check_depth(depth)?;
                self.dict(depth).map(Value::Dict)
            }
            found => self.err(
                self.pos,
                ErrorKind::UnexpectedByte {
                    found,
                    expected: "'i', 'l', 'd' or a digit",
                },
            ),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.limits.max_depth {
            return self.err(
                self.pos,
                ErrorKind::TooDeep {
                    max: self.limits.max_depth,
                },
            );
        }
        Ok(())
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>, DecodeError> {
        let start = self.pos;
        self.pos += 1;
        let mut entries: Vec<(Cow<'a, [u8]>, Value<'a>)> = Vec::new();
        loop {
            let b = self.peek("a dictionary key or 'e'")?;
            if b == b'e' {
                break;
            }
            let key_at = self.pos;
            if !b.is_ascii_digit() {
                return self.err(
                    key_at,
                    ErrorKind::UnexpectedByte {
                        found: b,
                        expected: "a string key",
                    },
                );
            }
            let key = self.bytes()?;
            if let Some((last, _)) = entries.last() {
                match last.as_ref().cmp(key) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return self.err(key_at, ErrorKind::DuplicateKey),
                    std::cmp::Ordering::Greater => {
                        return self.err(key_at, ErrorKind::UnsortedKey);
                    }
                }
            }
            let value = self.value(depth + 1)?;
            entries.push((Cow::Borrowed(key), value));
        }
        self.pos += 1;
        Ok(Dict {
            entries,
            raw: Some(&self.input[start..self.pos]),
        })
    }

    /// Reads the digits of a length or integer up to `end`, returning the value.
    fn digits(&mut self, end: u8, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut n: u64 = 0;
        loop {
            let b = self.peek(what)?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.err(
                    self.pos,
                    ErrorKind::UnexpectedByte {
                        found: b,
                        expected: what,
                    },
                );
            }
            if self.pos > start && self.input[start] == b'0' {
                return self.err(start, ErrorKind::LeadingZero);
            }
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return self.err(start, ErrorKind::IntegerOverflow),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(start, ErrorKind::EmptyInteger);
        }
        self.pos += 1; // the terminator
        Ok(n)
    }

    fn integer(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let negative = self.peek("digits")? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        let magnitude = self.digits(b'e', "a digit or 'e'")?;
        if negative {
            if magnitude == 0 {
                return self.err(digits_at, ErrorKind::NegativeZero);
            }
            // i64::MIN has a magnitude one larger than i64::MAX.
            if magnitude > i64::MAX as u64 + 1 {
                return self.err(start, ErrorKind::IntegerOverflow);
            }
            Ok((magnitude as i64).wrapping_neg())
        } else {
            i64::try_from(magnitude).or_else(|_| self.err(start, ErrorKind::IntegerOverflow))
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.digits(b':', "a digit or ':'")?;
        let available = self.input.len() - self.pos;
        if len > available as u64 {
            return self.err(
                start,
                ErrorKind::StringTooLong {
                    claimed: len,
                    available,
                },
            );
        }
        let len = len as usize; // fits: not larger than `available`
        let b = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(b)
    }
}

#[cfg(test)]
mod tests;
