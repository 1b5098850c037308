//! One audit entry as one JSON line (without its newline): the entry's fields in declaration
//! order, then `prev` (see `chain`).
//!
//! The hash of a line is the next line's `prev`, so these bytes must never change: they are
//! exactly what `serde_json` writes for the entry and `prev` (compact, its string escapes),
//! which is also what every earlier version wrote, and tests pin them byte for byte. The
//! fields are written one by one (the keys as constants, integers with `itoa`, strings with
//! `serde_json`) rather than by serializing a flattened struct, because every request
//! encodes a line and this costs no map serializer and no intermediate buffer.

use std::io::Write as _;
use std::net::IpAddr;

use super::chain::HexHash;
use super::entry::AuditEntry;

/// Appends one log line without its newline: the entry's fields in declaration order, then
/// `prev`, as `serde_json` encodes them (compact, strings escaped the same way).
pub(super) fn encode_line(out: &mut Vec<u8>, e: &AuditEntry, prev: &HexHash) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(digits.format(e.seq).as_bytes());
    out.extend_from_slice(b",\"time_ms\":");
    out.extend_from_slice(digits.format(e.time_ms).as_bytes());
    out.extend_from_slice(b",\"source\":\"");
    write_ip(out, e.source);
    out.extend_from_slice(b"\",\"user\":");
    match &e.user {
        Some(u) => write_json_str(out, u),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"endpoint\":");
    write_json_str(out, e.endpoint.name());
    out.extend_from_slice(b",\"info_hash\":");
    match &e.info_hash {
        Some(h) => {
            let mut hex = [0u8; 40];
            // Cannot fail: 20 bytes always fit 40 hex digits.
            hex::encode_to_slice(h.0, &mut hex).expect("40 hex digits for 20 bytes");
            out.push(b'"');
            out.extend_from_slice(&hex);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"decision\":\"");
    out.extend_from_slice(e.decision.as_str().as_bytes());
    out.extend_from_slice(b"\",\"reason\":");
    write_json_str(out, &e.reason);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev);
    out.extend_from_slice(b"\"}");
}

/// An address in its `Display` form (as `serde_json` writes an `IpAddr`), which has no
/// character JSON must escape; an IPv4 address, the common case, without the formatter.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        // Cannot fail: writing to a Vec only fails if Display does.
        IpAddr::V6(v6) => write!(out, "{v6}").expect("formatting an IPv6 address"),
    }
}

/// A JSON string as `serde_json` writes it: `"` and `\` escaped, the control characters
/// below 0x20 as `\b \t \n \f \r` or `\u00xx`, everything else (0x7f, non-ASCII) as is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Cannot fail: a str always serializes, and writing to a Vec cannot fail.
    serde_json::to_writer(out, s).expect("a JSON string into a Vec");
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use serde::Serialize;

    use super::*;
    use crate::tracker::audit::chain::{GENESIS, encode_lines, hex_hash};
    use crate::tracker::audit::entry::Decision;
    use crate::tracker::audit::testing::entry;
    use crate::tracker::audit::verify_chain;
    use crate::tracker::endpoint::Endpoint;
    use crate::types::InfoHash;

    /// What `serde_json` writes for an entry and its `prev`: the line format, as the reference.
    #[derive(Serialize)]
    struct SerdeLine<'a> {
        #[serde(flatten)]
        entry: &'a AuditEntry,
        prev: &'a str,
    }

    #[test]
    fn lines_are_what_serde_json_writes_for_the_entry_and_prev() {
        let mut all_controls = String::new();
        for c in 0u8..0x20 {
            all_controls.push(char::from(c));
        }
        let odd = [
            "",
            "plain",
            "quote \" and backslash \\ and slash /",
            "wrong password for user \"u3\"",
            "line\nbreak\r\ttab",
            &all_controls,
            "del \u{7f} and c1 \u{85}",
            "unicode é ü 中文 🦀 and separators \u{2028}\u{2029}",
            "\\u0000 spelled out",
            "ends with backslash \\",
        ];
        let sources: [IpAddr; 3] = [
            "10.0.0.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
        ];
        let prev = hex_hash(b"some earlier line");
        for (i, text) in odd.iter().enumerate() {
            for (j, source) in sources.iter().enumerate() {
                let e = AuditEntry {
                    seq: u64::MAX - i as u64,
                    time_ms: 1_790_000_000_000 + j as u64,
                    source: *source,
                    user: (j != 1).then(|| (*text).to_owned()),
                    endpoint: Endpoint::AnnounceGetCipher,
                    info_hash: (j != 2).then_some(InfoHash([i as u8; 20])),
                    decision: if j == 0 {
                        Decision::Allow
                    } else {
                        Decision::Refuse
                    },
                    reason: Cow::Owned((*text).to_owned()),
                };
                let mut ours = Vec::new();
                encode_line(&mut ours, &e, &prev);
                let reference = serde_json::to_vec(&SerdeLine {
                    entry: &e,
                    prev: std::str::from_utf8(&prev).unwrap(),
                })
                .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference),
                    "entry {i}/{j}"
                );
                // and it reads back to the same strings
                let back: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                assert_eq!(back["reason"], *text);
                assert_eq!(back["seq"], e.seq);
            }
        }
        for seq in [0, 10, u64::MAX] {
            let mut line = Vec::new();
            encode_line(
                &mut line,
                &AuditEntry {
                    seq,
                    ..entry("seq digits")
                },
                &prev,
            );
            let line = String::from_utf8(line).unwrap();
            assert!(line.starts_with(&format!("{{\"seq\":{seq},")), "{line}");
        }
    }

    /// Three lines as earlier versions wrote them, byte for byte: the chain hashes these bytes,
    /// so an encoder that wrote anything else (another escape for a control character, an
    /// escaped non-ASCII character or U+2028, digits of another form) would make the lines of
    /// a new version differ from an old one's. Line 2 has quotes and a backslash; line 3 every
    /// control character, DEL, a C1 control, non-ASCII text, U+2028/U+2029 and a spelled-out
    /// `\u0000`, on an IPv4-mapped IPv6 source.
    const PINNED_LOG: &str = concat!(
        r#"{"seq":1,"time_ms":1790000000000,"source":"10.0.0.255","user":"alice","endpoint":"announce","info_hash":"abababababababababababababababababababab","decision":"allow","reason":"ok","prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
        "\n",
        r#"{"seq":18446744073709551615,"time_ms":0,"source":"2001:db8::ff00:42:8329","user":null,"endpoint":"announce?getCipher","info_hash":null,"decision":"refuse","reason":"wrong password for user \"u3\" \\ and slash /","prev":"7bb458941d3640ac05accfafd217b88bb19369ec6f4206f029759eca6e66049e"}"#,
        "\n",
        r#"{"seq":10,"time_ms":9,"source":"::ffff:10.0.0.1","user":"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f","endpoint":"admin/set-authority","info_hash":"0101010101010101010101010101010101010101","decision":"refuse","reason":"line\nbreak\r\ttab \b\f del "#,
        "\u{7f} c1 \u{85} é ü 中文 🦀 \u{2028}\u{2029} ",
        r#"\\u0000 ends with \\","prev":"35c10834127bbdbd7d0b91633fced24844445419f5acae69cd37f0cd66d55cb2"}"#,
        "\n",
    );

    /// The entries of [`PINNED_LOG`].
    fn pinned_entries() -> Vec<Arc<AuditEntry>> {
        let controls: String = (0u8..0x20).map(char::from).collect();
        let entries = [
            AuditEntry {
                seq: 1,
                time_ms: 1_790_000_000_000,
                source: "10.0.0.255".parse().unwrap(),
                user: Some("alice".into()),
                endpoint: Endpoint::Announce,
                info_hash: Some(InfoHash([0xab; 20])),
                decision: Decision::Allow,
                reason: "ok".into(),
            },
            AuditEntry {
                seq: u64::MAX,
                time_ms: 0,
                source: "2001:db8::ff00:42:8329".parse().unwrap(),
                user: None,
                endpoint: Endpoint::AnnounceGetCipher,
                info_hash: None,
                decision: Decision::Refuse,
                reason: "wrong password for user \"u3\" \\ and slash /".into(),
            },
            AuditEntry {
                seq: 10,
                time_ms: 9,
                source: "::ffff:10.0.0.1".parse().unwrap(),
                user: Some(controls),
                endpoint: Endpoint::AdminSetAuthority,
                info_hash: Some(InfoHash([0x01; 20])),
                decision: Decision::Refuse,
                reason: "line\nbreak\r\ttab \u{8}\u{c} del \u{7f} c1 \u{85} é ü 中文 🦀 \
                         \u{2028}\u{2029} \\u0000 ends with \\"
                    .into(),
            },
        ];
        entries.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn lines_are_what_earlier_versions_wrote_byte_for_byte() {
        let entries = pinned_entries();
        let mut out = Vec::new();
        let (lines, last) = encode_lines(&mut out, &entries, GENESIS, usize::MAX);
        assert_eq!(lines, 3);
        assert_eq!(std::str::from_utf8(&out).unwrap(), PINNED_LOG);
        assert_eq!(
            last,
            hex_hash(PINNED_LOG.lines().last().unwrap().as_bytes())
        );
        // A log of earlier versions verifies, and reads back to the entries' strings.
        assert_eq!(verify_chain(PINNED_LOG), Ok(3));
        for (line, entry) in PINNED_LOG.lines().zip(&entries) {
            let back: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(back["seq"], entry.seq);
            assert_eq!(back["time_ms"], entry.time_ms);
            assert_eq!(back["source"], entry.source.to_string());
            assert_eq!(back["user"].as_str(), entry.user.as_deref());
            assert_eq!(back["reason"], *entry.reason);
        }
    }
}
