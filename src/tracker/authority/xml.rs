//! Reading and writing authority.xml (docs/protocol.md 3.1) with quick-xml's event API, so that
//! every error carries the file and the line it was found on. Unknown elements, repeated
//! elements and users, DOCTYPEs and unknown entities are errors, never skipped.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use quick_xml::events::Event;

use crate::types::Authority;

use super::{IpRule, MAX_FILE_BYTES, MAX_USERNAME_LEN, PasswordHash, User, UserTable};

impl UserTable {
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
        for u in self.iter() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::authority::test_files::{GOOD, SHA256_OF_SECRET, parse, peer};

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
}
