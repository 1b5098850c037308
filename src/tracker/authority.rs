//! authority.xml: the users, their password hashes and authority levels (docs/protocol.md 3.1).
//!
//! The file is the paper's format with two optional extensions (`<admin>`, `<public_key>`). It
//! is parsed in full and validated before it replaces the table in force, so a broken edit
//! never opens or closes access by accident: unknown elements are errors (a typo must not
//! silently drop an `<ip>` rule), every error names the file and line, and the last good table
//! stays in force ([`AuthoritySource::reload`]).
//!
//! This module reads and writes the file; deciding what a user may do is elsewhere.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine as _;
use quick_xml::events::Event;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::types::Authority;

/// Longest accepted user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// Largest accepted authority.xml; the file is read whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How a user's password is stored.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A PHC string (`$argon2id$v=19$...`), as `ivcsd admin user` writes.
    Phc(String),
    /// A bare 64-hex-digit SHA-256 of the password, from files of the paper's era.
    LegacySha256([u8; 32]),
    /// A bare 40-hex-digit SHA-1 of the password, from files of the paper's era.
    LegacySha1([u8; 20]),
}

impl PasswordHash {
    /// Hashes a new password with argon2id and a random salt (about 14 ms of CPU).
    pub fn new_argon2id(password: &[u8]) -> Result<PasswordHash, argon2::password_hash::Error> {
        use argon2::PasswordHasher as _;
        let phc = argon2::Argon2::default().hash_password(password)?;
        Ok(PasswordHash::Phc(phc.to_string()))
    }

    /// Reads the text of `<psw_hash>`.
    fn parse(text: &str) -> Result<PasswordHash, &'static str> {
        let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if text.starts_with('$') {
            argon2::PasswordHash::new(text).map_err(|_| "not a valid PHC string")?;
            return Ok(PasswordHash::Phc(text.to_owned()));
        }
        let mut out32 = [0u8; 32];
        let mut out20 = [0u8; 20];
        match text.len() {
            64 if is_hex(text) && hex::decode_to_slice(text, &mut out32).is_ok() => {
                Ok(PasswordHash::LegacySha256(out32))
            }
            40 if is_hex(text) && hex::decode_to_slice(text, &mut out20).is_ok() => {
                Ok(PasswordHash::LegacySha1(out20))
            }
            _ => Err(
                "expected a PHC string ($argon2id$...), or 64 or 40 hex digits (legacy SHA-256 or SHA-1)",
            ),
        }
    }

    /// The text written into `<psw_hash>`.
    fn to_text(&self) -> String {
        match self {
            PasswordHash::Phc(s) => s.clone(),
            PasswordHash::LegacySha256(h) => hex::encode(h),
            PasswordHash::LegacySha1(h) => hex::encode(h),
        }
    }

    /// True for the unsalted hashes of the paper's era, which deserve a warning.
    pub fn is_legacy(&self) -> bool {
        !matches!(self, PasswordHash::Phc(_))
    }

    /// Checks `password`. Slow for argon2 (about 14 ms): call it off the async reactor.
    /// Legacy hashes are compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Phc(phc) => {
                use argon2::PasswordVerifier as _;
                match argon2::PasswordHash::new(phc) {
                    Ok(parsed) => argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok(),
                    Err(_) => false,
                }
            }
            PasswordHash::LegacySha256(expected) => {
                let got: [u8; 32] = Sha256::digest(password).into();
                got.ct_eq(expected).into()
            }
            PasswordHash::LegacySha1(expected) => {
                let got: [u8; 20] = Sha1::digest(password).into();
                got.ct_eq(expected).into()
            }
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// Hashes are secrets too (they allow offline guessing): never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PasswordHash::Phc(_) => "phc",
            PasswordHash::LegacySha256(_) => "legacy-sha256",
            PasswordHash::LegacySha1(_) => "legacy-sha1",
        };
        write!(f, "PasswordHash({kind}, <redacted>)")
    }
}

/// Where a user's requests may come from (`<ip>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRule {
    /// `*`: anywhere.
    Any,
    /// One address, or a network in CIDR notation (`10.1.0.0/16`, `fd00::/8`).
    Net { addr: IpAddr, prefix: u8 },
}

impl IpRule {
    /// Reads `*`, an address, or `address/prefix`.
    pub fn parse(text: &str) -> Result<IpRule, &'static str> {
        if text == "*" {
            return Ok(IpRule::Any);
        }
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| "expected an IP address, address/prefix, or *")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err("prefix length out of range"),
            },
        };
        Ok(IpRule::Net { addr, prefix })
    }

    /// Whether a request from `source` may use this user. IPv4 addresses seen as IPv4-mapped
    /// IPv6 (on a dual-stack socket) match IPv4 rules.
    pub fn matches(&self, source: IpAddr) -> bool {
        let IpRule::Net { addr, prefix } = *self else {
            return true;
        };
        let source = source.to_canonical();
        match (addr, source) {
            (IpAddr::V4(rule), IpAddr::V4(src)) => prefix_eq(&rule.octets(), &src.octets(), prefix),
            (IpAddr::V6(rule), IpAddr::V6(src)) => prefix_eq(&rule.octets(), &src.octets(), prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl fmt::Display for IpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRule::Any => f.write_str("*"),
            IpRule::Net { addr, prefix } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if *prefix == max {
                    write!(f, "{addr}")
                } else {
                    write!(f, "{addr}/{prefix}")
                }
            }
        }
    }
}

/// One `<peer>` of authority.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password: PasswordHash,
    pub authority: Authority,
    pub admin: bool,
    /// When set, requests for this user must come from a matching address.
    pub ip: Option<IpRule>,
    /// When set (SPKI DER), getcipher accepts only this RSA key for the user.
    pub public_key: Option<Vec<u8>>,
    /// Milliseconds since 1970 of the last edit by the tools.
    pub updated_ms: u64,
}

impl User {
    /// See [`PasswordHash::verify`]: slow, call it off the reactor.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        self.password.verify(password)
    }

    /// Changes whenever the password, authority or admin flag changes; tokens embed it so
    /// that they end at such a change (docs/protocol.md 3.2).
    pub fn token_generation(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"ivcsd-token-generation/1\0");
        h.update(self.username.as_bytes());
        h.update([0]);
        h.update(self.password.to_text().as_bytes());
        h.update([0]);
        h.update(self.authority.0.to_be_bytes());
        h.update([u8::from(self.admin)]);
        h.finalize().into()
    }
}

/// All users of one version of authority.xml, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTable {
    users: Vec<User>,
    by_name: HashMap<String, usize>,
}

impl UserTable {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).map(|&i| &self.users[i])
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    /// Adds a user; `false` (and no change) if the name is taken.
    pub fn insert(&mut self, user: User) -> bool {
        if self.by_name.contains_key(&user.username) {
            return false;
        }
        self.by_name.insert(user.username.clone(), self.users.len());
        self.users.push(user);
        true
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut User> {
        let i = *self.by_name.get(name)?;
        Some(&mut self.users[i])
    }

    /// Removes a user; `None` if there is none of that name.
    pub fn remove(&mut self, name: &str) -> Option<User> {
        let i = self.by_name.remove(name)?;
        let user = self.users.remove(i);
        for index in self.by_name.values_mut() {
            if *index > i {
                *index -= 1;
            }
        }
        Some(user)
    }

    /// Parses and validates the text of an authority.xml; `path` is only used in errors.
    ///
    /// # Errors
    /// Malformed XML, unknown or repeated elements, missing or invalid values, and repeated
    /// user names, each with the line where it was found.
    pub fn parse(text: &str, path: &Path) -> Result<UserTable, AuthorityFileError> {
        Parser::new(text, path).document()
    }

    /// The file text for this table: the paper's structure, one `<peer>` per user.
    pub fn to_xml(&self) -> String {
        use std::fmt::Write as _;
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(
            "<!-- ivcsd authority.xml: a smaller authority number is a higher authority (0 is the highest).\n     Edited by `ivcsd admin user ...`; the tracker re-reads it when it changes. -->\n",
        );
        out.push_str("<peerAuthority>\n");
        for u in &self.users {
            out.push_str("  <peer>\n");
            if let Some(ip) = &u.ip {
                let _ = writeln!(out, "    <ip>{ip}</ip>");
            }
            let _ = writeln!(out, "    <username>{}</username>", esc(&u.username));
            let _ = writeln!(
                out,
                "    <psw_hash>{}</psw_hash>",
                esc(&u.password.to_text())
            );
            let _ = writeln!(out, "    <authority>{}</authority>", u.authority);
            let _ = writeln!(out, "    <updated>{}</updated>", u.updated_ms);
            if u.admin {
                out.push_str("    <admin>true</admin>\n");
            }
            if let Some(key) = &u.public_key {
                let b64 = base64::engine::general_purpose::STANDARD.encode(key);
                let _ = writeln!(out, "    <public_key>{b64}</public_key>");
            }
            out.push_str("  </peer>\n");
        }
        out.push_str("</peerAuthority>\n");
        out
    }
}

/// Reading authority.xml failed; the message names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}:{line}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: Problem,
    },
}

impl AuthorityFileError {
    /// The problem, for errors found in the file's content.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AuthorityFileError::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong inside authority.xml.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("a DOCTYPE is not allowed")]
    DocType,
    #[error("the root element must be <peerAuthority>, found <{0}>")]
    WrongRoot(String),
    #[error("no <peerAuthority> element")]
    MissingRoot,
    #[error("unknown element <{name}> in <{parent}>")]
    UnknownElement { name: String, parent: &'static str },
    #[error("<{0}> appears twice in one <peer>")]
    DuplicateElement(&'static str),
    #[error("<peer> without <{0}>")]
    MissingElement(&'static str),
    #[error("<{element}> {reason}")]
    InvalidValue {
        element: &'static str,
        reason: &'static str,
    },
    #[error("user '{0}' appears twice")]
    DuplicateUser(String),
    #[error("content after </peerAuthority>")]
    TrailingContent,
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
}

const PEER_ELEMENTS: [&str; 7] = [
    "ip",
    "username",
    "psw_hash",
    "authority",
    "updated",
    "admin",
    "public_key",
];

struct Parser<'a> {
    text: &'a str,
    path: &'a Path,
    reader: quick_xml::Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let mut reader = quick_xml::Reader::from_str(text);
        reader.config_mut().trim_text(true);
        Parser { text, path, reader }
    }

    /// The line of the first non-blank byte at or after `offset` (event positions include
    /// the blank text before the event, which trimming skips).
    fn line_at(&self, offset: u64) -> usize {
        let mut end = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        let bytes = self.text.as_bytes();
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn fail_at<T>(&self, offset: u64, problem: Problem) -> Result<T, AuthorityFileError> {
        Err(AuthorityFileError::Invalid {
            path: self.path.to_owned(),
            line: self.line_at(offset),
            problem,
        })
    }

    /// Reads the next event that matters, with the offset where it started.
    fn next(&mut self) -> Result<(u64, Event<'a>), AuthorityFileError> {
        loop {
            let at = self.reader.buffer_position();
            match self.reader.read_event() {
                Ok(Event::Comment(_) | Event::Decl(_) | Event::PI(_)) => continue,
                Ok(Event::DocType(_)) => return self.fail_at(at, Problem::DocType),
                Ok(event) => return Ok((at, event)),
                Err(e) => {
                    let pos = self.reader.error_position();
                    return self.fail_at(pos, Problem::Xml(e.to_string()));
                }
            }
        }
    }

    fn document(mut self) -> Result<UserTable, AuthorityFileError> {
        let mut table = UserTable::default();
        let (at, event) = self.next()?;
        match event {
            Event::Start(e) if e.name().as_ref() == "peerAuthority" => {}
            Event::Empty(e) if e.name().as_ref() == "peerAuthority" => {
                return self.finish(table);
            }
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_owned();
                return self.fail_at(at, Problem::WrongRoot(name));
            }
            Event::Eof => return self.fail_at(at, Problem::MissingRoot),
            _ => return self.fail_at(at, Problem::Xml("text outside any element".into())),
        }
        loop {
            let (at, event) = self.next()?;
            match event {
                Event::Start(e) if e.name().as_ref() == "peer" => {
                    let user = self.peer(at)?;
                    let name = user.username.clone();
                    if !table.insert(user) {
                        return self.fail_at(at, Problem::DuplicateUser(name));
                    }
                }
                Event::Empty(e) if e.name().as_ref() == "peer" => {
                    return self.fail_at(at, Problem::MissingElement("username"));
                }
                Event::Start(e) | Event::Empty(e) => {
                    let name = e.name().as_ref().to_owned();
                    return self.fail_at(
                        at,
                        Problem::UnknownElement {
                            name,
                            parent: "peerAuthority",
                        },
                    );
                }
                Event::End(_) => return self.finish(table),
                Event::Eof => {
                    return self.fail_at(at, Problem::Xml("missing </peerAuthority>".into()));
                }
                _ => {
                    return self.fail_at(
                        at,
                        Problem::Xml("text directly inside <peerAuthority>".into()),
                    );
                }
            }
        }
    }

    fn finish(mut self, table: UserTable) -> Result<UserTable, AuthorityFileError> {
        match self.next()? {
            (_, Event::Eof) => Ok(table),
            (at, _) => self.fail_at(at, Problem::TrailingContent),
        }
    }

    /// Reads one `<peer>` after its start tag.
    fn peer(&mut self, peer_at: u64) -> Result<User, AuthorityFileError> {
        let mut values: [Option<(u64, String)>; 7] = Default::default();
        loop {
            let (at, event) = self.next()?;
            let (name, empty) = match event {
                Event::Start(e) => (e.name().as_ref().to_owned(), false),
                Event::Empty(e) => (e.name().as_ref().to_owned(), true),
                Event::End(_) => break,
                Event::Eof => return self.fail_at(at, Problem::Xml("missing </peer>".into())),
                _ => return self.fail_at(at, Problem::Xml("text directly inside <peer>".into())),
            };
            let Some(slot) = PEER_ELEMENTS.iter().position(|n| *n == name) else {
                return self.fail_at(
                    at,
                    Problem::UnknownElement {
                        name,
                        parent: "peer",
                    },
                );
            };
            if values[slot].is_some() {
                return self.fail_at(at, Problem::DuplicateElement(PEER_ELEMENTS[slot]));
            }
            let text = if empty {
                String::new()
            } else {
                self.text_content(PEER_ELEMENTS[slot])?
            };
            values[slot] = Some((at, text));
        }
        let [
            ip,
            username,
            psw_hash,
            authority,
            updated,
            admin,
            public_key,
        ] = values;
        let Some((name_at, username)) = username else {
            return self.fail_at(peer_at, Problem::MissingElement("username"));
        };
        if username.is_empty()
            || username.len() > MAX_USERNAME_LEN
            || username
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return self.fail_at(
                name_at,
                Problem::InvalidValue {
                    element: "username",
                    reason: "must be 1 to 64 bytes without spaces or control characters",
                },
            );
        }
        let invalid = |element, reason| Problem::InvalidValue { element, reason };
        let Some((hash_at, hash_text)) = psw_hash else {
            return self.fail_at(peer_at, Problem::MissingElement("psw_hash"));
        };
        let password = match PasswordHash::parse(&hash_text) {
            Ok(p) => p,
            Err(reason) => return self.fail_at(hash_at, invalid("psw_hash", reason)),
        };
        let Some((auth_at, auth_text)) = authority else {
            return self.fail_at(peer_at, Problem::MissingElement("authority"));
        };
        let Ok(authority) = auth_text.parse::<u32>().map(Authority) else {
            return self.fail_at(
                auth_at,
                invalid("authority", "must be a whole number from 0 to 4294967295"),
            );
        };
        let updated_ms = match updated {
            None => 0,
            Some((at, text)) => match text.parse::<u64>() {
                Ok(ms) => ms,
                Err(_) => {
                    return self.fail_at(at, invalid("updated", "must be milliseconds since 1970"));
                }
            },
        };
        let admin = match admin.as_ref().map(|(at, t)| (*at, t.as_str())) {
            None | Some((_, "false")) => false,
            Some((_, "true")) => true,
            Some((at, _)) => return self.fail_at(at, invalid("admin", "must be true or false")),
        };
        let ip = match ip {
            None => None,
            Some((at, text)) => match IpRule::parse(&text) {
                Ok(rule) => Some(rule),
                Err(reason) => return self.fail_at(at, invalid("ip", reason)),
            },
        };
        let public_key = match public_key {
            None => None,
            Some((at, text)) => {
                let compact: String = text.split_whitespace().collect();
                match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                    Ok(der) if !der.is_empty() => Some(der),
                    _ => {
                        return self.fail_at(
                            at,
                            invalid(
                                "public_key",
                                "must be base64 of an RSA SubjectPublicKeyInfo (DER)",
                            ),
                        );
                    }
                }
            }
        };
        Ok(User {
            username,
            password,
            authority,
            admin,
            ip,
            public_key,
            updated_ms,
        })
    }

    /// The text of a simple element up to its end tag; nested elements are errors.
    fn text_content(&mut self, element: &'static str) -> Result<String, AuthorityFileError> {
        let mut out = String::new();
        loop {
            let (at, event) = self.next()?;
            match event {
                Event::Text(t) => out.push_str(&t.xml10_content()),
                Event::CData(c) => out.push_str(&c.xml10_content()),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        _ => match &*r.xml10_content() {
                            "lt" => Some('<'),
                            "gt" => Some('>'),
                            "amp" => Some('&'),
                            "quot" => Some('"'),
                            "apos" => Some('\''),
                            _ => None,
                        },
                    };
                    match resolved {
                        Some(c) => out.push(c),
                        None => {
                            let name = r.xml10_content().into_owned();
                            return self.fail_at(at, Problem::UnknownEntity(name));
                        }
                    }
                }
                Event::End(_) => return Ok(out.trim().to_owned()),
                Event::Start(e) | Event::Empty(e) => {
                    let name = e.name().as_ref().to_owned();
                    return self.fail_at(
                        at,
                        Problem::UnknownElement {
                            name,
                            parent: element,
                        },
                    );
                }
                _ => {
                    return self.fail_at(
                        at,
                        Problem::Xml(format!("unexpected content in <{element}>")),
                    );
                }
            }
        }
    }
}

/// Reads and validates an authority.xml file.
///
/// # Errors
/// The file cannot be read, is larger than [`MAX_FILE_BYTES`], or is invalid.
pub fn load_file(path: &Path) -> Result<UserTable, AuthorityFileError> {
    let read_err = |source| AuthorityFileError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(AuthorityFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let text = String::from_utf8(bytes).map_err(|e| AuthorityFileError::Invalid {
        path: path.to_owned(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        problem: Problem::Xml("not valid UTF-8".into()),
    })?;
    UserTable::parse(&text, path)
}

/// What identifies a version of the file on disk, to notice changes cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The table in force, swapped whole when authority.xml changes and validates.
#[derive(Debug)]
pub struct AuthoritySource {
    path: PathBuf,
    current: ArcSwap<UserTable>,
    /// The stamp of the file last read, good or bad, so a broken file is reported once.
    last_seen: Mutex<Option<FileStamp>>,
}

impl AuthoritySource {
    /// Loads the file; at start a broken file is an error (there is nothing to keep in force).
    ///
    /// # Errors
    /// As [`load_file`].
    pub fn load(path: impl Into<PathBuf>) -> Result<AuthoritySource, AuthorityFileError> {
        let path = path.into();
        let seen = stamp(&path);
        let table = load_file(&path)?;
        warn_legacy(&table, &path);
        Ok(AuthoritySource {
            path,
            current: ArcSwap::from_pointee(table),
            last_seen: Mutex::new(seen),
        })
    }

    /// A source with a fixed table, for tests and embedded use.
    pub fn from_table(path: impl Into<PathBuf>, table: UserTable) -> AuthoritySource {
        AuthoritySource {
            path: path.into(),
            current: ArcSwap::from_pointee(table),
            last_seen: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table in force (cheap; no lock).
    pub fn current(&self) -> Arc<UserTable> {
        self.current.load_full()
    }

    /// Re-reads the file. On success the new table replaces the old one and `Ok(true)` says
    /// whether anything changed; on error the last good table stays in force.
    ///
    /// # Errors
    /// As [`load_file`]; the error is also logged.
    pub fn reload(&self) -> Result<bool, AuthorityFileError> {
        let seen = stamp(&self.path);
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        match load_file(&self.path) {
            Ok(table) => {
                let changed = *self.current.load_full() != table;
                if changed {
                    warn_legacy(&table, &self.path);
                    tracing::info!(path = %self.path.display(), users = table.len(), "authority file reloaded");
                    self.current.store(Arc::new(table));
                }
                Ok(changed)
            }
            Err(err) => {
                tracing::error!(error = %err, "authority file rejected; the previous one stays in force");
                Err(err)
            }
        }
    }

    /// Reloads when the file's modification time or size changed since it was last read.
    pub fn reload_if_changed(&self) -> Option<Result<bool, AuthorityFileError>> {
        let now = stamp(&self.path);
        let last = *self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if now == last {
            return None;
        }
        Some(self.reload())
    }

    /// Polls the file every `poll` until `shutdown`, reloading it when it changes.
    pub fn spawn_watcher(
        self: Arc<Self>,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {
                        let source = Arc::clone(&self);
                        // File I/O and parsing stay off the reactor.
                        let _ = tokio::task::spawn_blocking(move || source.reload_if_changed()).await;
                    }
                }
            }
        })
    }
}

fn warn_legacy(table: &UserTable, path: &Path) {
    for user in table.iter().filter(|u| u.password.is_legacy()) {
        tracing::warn!(
            path = %path.display(),
            user = %user.username,
            "unsalted legacy password hash; set a new password with `ivcsd admin user passwd`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_OF_SECRET: &str =
        "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    fn parse(text: &str) -> Result<UserTable, AuthorityFileError> {
        UserTable::parse(text, Path::new("authority.xml"))
    }

    fn peer(body: &str) -> String {
        format!("<peerAuthority>\n<peer>\n{body}\n</peer>\n</peerAuthority>\n")
    }

    const GOOD: &str = "<username>u1</username><psw_hash>2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b</psw_hash><authority>1</authority>";

    /// One line per broken file: the text, the line reported and the problem.
    macro_rules! broken {
        ($name:ident, $text:expr, $line:expr, $problem:expr) => {
            #[test]
            fn $name() {
                match parse(&$text) {
                    Err(AuthorityFileError::Invalid { line, problem, .. }) => {
                        assert_eq!((line, problem), ($line, $problem));
                    }
                    other => panic!("expected an error, got {other:?}"),
                }
            }
        };
    }

    broken!(empty_file, "", 1, Problem::MissingRoot);
    broken!(
        wrong_root,
        "<users></users>",
        1,
        Problem::WrongRoot("users".into())
    );
    broken!(
        unknown_element,
        peer(&format!("{GOOD}\n<adminn>true</adminn>")),
        4,
        Problem::UnknownElement {
            name: "adminn".into(),
            parent: "peer"
        }
    );
    broken!(
        unknown_top_element,
        "<peerAuthority>\n<user/>\n</peerAuthority>",
        2,
        Problem::UnknownElement {
            name: "user".into(),
            parent: "peerAuthority"
        }
    );
    broken!(
        missing_username,
        peer("<psw_hash>x</psw_hash>"),
        2,
        Problem::MissingElement("username")
    );
    broken!(
        missing_hash,
        peer("<username>a</username><authority>1</authority>"),
        2,
        Problem::MissingElement("psw_hash")
    );
    broken!(
        missing_authority,
        peer(&format!(
            "<username>a</username><psw_hash>{SHA256_OF_SECRET}</psw_hash>"
        )),
        2,
        Problem::MissingElement("authority")
    );
    broken!(
        negative_authority,
        peer(&format!(
            "<username>a</username><psw_hash>{SHA256_OF_SECRET}</psw_hash>\n<authority>-1</authority>"
        )),
        4,
        Problem::InvalidValue {
            element: "authority",
            reason: "must be a whole number from 0 to 4294967295"
        }
    );
    broken!(
        bad_hash,
        peer("<username>a</username>\n<psw_hash>secret</psw_hash><authority>1</authority>"),
        4,
        Problem::InvalidValue {
            element: "psw_hash",
            reason: "expected a PHC string ($argon2id$...), or 64 or 40 hex digits (legacy SHA-256 or SHA-1)"
        }
    );
    broken!(
        bad_ip,
        peer(&format!("{GOOD}\n<ip>300.1.1.1</ip>")),
        4,
        Problem::InvalidValue {
            element: "ip",
            reason: "expected an IP address, address/prefix, or *"
        }
    );
    broken!(
        bad_prefix,
        peer(&format!("{GOOD}\n<ip>10.0.0.0/33</ip>")),
        4,
        Problem::InvalidValue {
            element: "ip",
            reason: "prefix length out of range"
        }
    );
    broken!(
        bad_admin,
        peer(&format!("{GOOD}\n<admin>yes</admin>")),
        4,
        Problem::InvalidValue {
            element: "admin",
            reason: "must be true or false"
        }
    );
    broken!(
        bad_public_key,
        peer(&format!("{GOOD}\n<public_key>!!!</public_key>")),
        4,
        Problem::InvalidValue {
            element: "public_key",
            reason: "must be base64 of an RSA SubjectPublicKeyInfo (DER)"
        }
    );
    broken!(
        duplicate_element,
        peer(&format!("{GOOD}\n<authority>2</authority>")),
        4,
        Problem::DuplicateElement("authority")
    );
    broken!(
        duplicate_user,
        format!("<peerAuthority>\n<peer>{GOOD}</peer>\n<peer>{GOOD}</peer>\n</peerAuthority>"),
        3,
        Problem::DuplicateUser("u1".into())
    );
    broken!(
        username_with_space,
        peer(&format!(
            "<username>a b</username><psw_hash>{SHA256_OF_SECRET}</psw_hash><authority>1</authority>"
        )),
        3,
        Problem::InvalidValue {
            element: "username",
            reason: "must be 1 to 64 bytes without spaces or control characters"
        }
    );
    broken!(
        nested_element,
        peer(&format!("{GOOD}\n<ip><b>1</b></ip>")),
        4,
        Problem::UnknownElement {
            name: "b".into(),
            parent: "ip"
        }
    );
    broken!(
        trailing,
        format!("{}<extra/>", peer(GOOD)),
        6,
        Problem::TrailingContent
    );
    broken!(
        doctype,
        "<!DOCTYPE x [<!ENTITY a \"b\">]>\n<peerAuthority/>",
        1,
        Problem::DocType
    );
    broken!(
        unknown_entity,
        peer("<username>a&foo;</username>"),
        3,
        Problem::UnknownEntity("foo".into())
    );

    #[test]
    fn unclosed_tag_is_malformed_xml_with_a_line() {
        let err = parse("<peerAuthority>\n<peer>\n<username>a</username>\n").unwrap_err();
        let AuthorityFileError::Invalid {
            line,
            problem: Problem::Xml(_),
            ..
        } = err
        else {
            panic!("expected malformed XML, got {err:?}");
        };
        assert!(line >= 3, "line {line}");
        assert!(err.to_string().starts_with("authority.xml:"), "{err}");
    }

    #[test]
    fn paper_format_with_extensions_parses() {
        let text = r#"<?xml version="1.0"?>
<!-- the paper's Fig. 3, plus ivcsd's extensions -->
<peerAuthority>
  <peer>
    <ip>192.168.5.253</ip>
    <username>wyf1</username>
    <psw_hash>2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b</psw_hash>
    <authority>1</authority>
    <updated>1363261627977</updated>
  </peer>
  <peer>
    <ip>10.0.0.0/8</ip>
    <username>admin&amp;co</username>
    <psw_hash>e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4</psw_hash>
    <authority>0</authority>
    <admin>true</admin>
    <public_key>AAECAw==</public_key>
  </peer>
</peerAuthority>
"#;
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 2);
        let u = t.get("wyf1").unwrap();
        assert_eq!(u.authority, Authority(1));
        assert_eq!(u.updated_ms, 1_363_261_627_977);
        assert!(!u.admin);
        assert!(u.verify_password(b"secret"));
        assert!(!u.verify_password(b"Secret"));
        let a = t.get("admin&co").unwrap();
        assert!(a.admin);
        assert!(a.verify_password(b"secret"));
        assert_eq!(a.public_key.as_deref(), Some(&[0u8, 1, 2, 3][..]));
        assert!(a.ip.unwrap().matches("10.200.1.1".parse().unwrap()));
        assert!(!a.ip.unwrap().matches("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn xml_round_trip_keeps_everything() {
        let mut t = UserTable::default();
        let password = PasswordHash::parse(SHA256_OF_SECRET).unwrap();
        assert!(t.insert(User {
            username: "x<y".into(),
            password: password.clone(),
            authority: Authority(7),
            admin: true,
            ip: Some(IpRule::parse("fd00::/8").unwrap()),
            public_key: Some(vec![1, 2, 3]),
            updated_ms: 5,
        }));
        assert!(!t.insert(User {
            username: "x<y".into(),
            password,
            authority: Authority(1),
            admin: false,
            ip: None,
            public_key: None,
            updated_ms: 0,
        }));
        let back = parse(&t.to_xml()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn argon2_hashes_verify() {
        let hash = PasswordHash::new_argon2id(b"pw").unwrap();
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"pW"));
        assert!(format!("{hash:?}").contains("redacted"));
        let PasswordHash::Phc(text) = &hash else {
            panic!("not phc")
        };
        assert!(text.starts_with("$argon2id$"));
        assert_eq!(PasswordHash::parse(text).unwrap(), hash);
    }

    #[test]
    fn token_generation_changes_with_what_ends_tokens() {
        let t = parse(&peer(GOOD)).unwrap();
        let u = t.get("u1").unwrap().clone();
        let g = u.token_generation();
        let mut changed = u.clone();
        changed.authority = Authority(2);
        assert_ne!(changed.token_generation(), g);
        let mut changed = u.clone();
        changed.admin = true;
        assert_ne!(changed.token_generation(), g);
        let mut changed = u.clone();
        changed.password = PasswordHash::LegacySha1([0; 20]);
        assert_ne!(changed.token_generation(), g);
        let mut same = u.clone();
        same.updated_ms = 99;
        same.ip = Some(IpRule::Any);
        assert_eq!(same.token_generation(), g);
    }

    #[test]
    fn ip_rules() {
        let rule = |s| IpRule::parse(s).unwrap();
        assert!(rule("*").matches("1.2.3.4".parse().unwrap()));
        assert!(rule("1.2.3.4").matches("1.2.3.4".parse().unwrap()));
        assert!(!rule("1.2.3.4").matches("1.2.3.5".parse().unwrap()));
        assert!(rule("1.2.3.4").matches("::ffff:1.2.3.4".parse().unwrap()));
        assert!(rule("10.1.0.0/17").matches("10.1.127.255".parse().unwrap()));
        assert!(!rule("10.1.0.0/17").matches("10.1.128.0".parse().unwrap()));
        assert!(rule("0.0.0.0/0").matches("8.8.8.8".parse().unwrap()));
        assert!(!rule("fd00::/8").matches("10.0.0.1".parse().unwrap()));
        assert!(rule("fd00::/8").matches("fdff::1".parse().unwrap()));
        assert_eq!(rule("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(rule("::1").to_string(), "::1");
    }

    #[test]
    fn remove_keeps_the_index_consistent() {
        let mut t = UserTable::default();
        for name in ["a", "b", "c"] {
            t.insert(User {
                username: name.into(),
                password: PasswordHash::LegacySha1([0; 20]),
                authority: Authority(1),
                admin: false,
                ip: None,
                public_key: None,
                updated_ms: 0,
            });
        }
        assert!(t.remove("a").is_some());
        assert!(t.remove("a").is_none());
        assert_eq!(t.get("c").unwrap().username, "c");
        assert_eq!(t.get("b").unwrap().username, "b");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reload_keeps_the_last_good_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.xml");
        std::fs::write(&path, peer(GOOD)).unwrap();
        let source = AuthoritySource::load(&path).unwrap();
        assert!(source.current().get("u1").is_some());
        assert!(
            source.reload_if_changed().is_none(),
            "unchanged file is not re-read"
        );

        std::fs::write(&path, "<peerAuthority><peer>").unwrap();
        assert!(source.reload().is_err());
        assert!(
            source.current().get("u1").is_some(),
            "old table stays in force"
        );

        std::fs::write(&path, peer(&GOOD.replace("u1", "u2"))).unwrap();
        assert!(source.reload().unwrap());
        assert!(source.current().get("u1").is_none());
        assert!(source.current().get("u2").is_some());
    }
}
