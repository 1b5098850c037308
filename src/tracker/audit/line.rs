//! One audit entry as one JSON line (without its newline): the entry's fields in declaration
//! order, then `prev` (see `chain`).
//!
//! Lines are encoded by hand ([`encode_line`]) rather than through `Serialize`, which is the
//! hot path of every request; the form is exactly what `serde_json` wrote for earlier versions
//! (a test checks the two agree), so the verifier reads old and new logs alike, and the hash of
//! a line (the next line's `prev`) depends on these bytes: they must never change.

use std::net::IpAddr;

use super::chain::HexHash;
use super::entry::AuditEntry;

/// Appends one log line without its newline: the entry's fields in declaration order, then
/// `prev`, as `serde_json` encodes them (compact, strings escaped the same way).
pub(super) fn encode_line(out: &mut Vec<u8>, e: &AuditEntry, prev: &HexHash) {
    out.extend_from_slice(b"{\"seq\":");
    write_u64(out, e.seq);
    out.extend_from_slice(b",\"time_ms\":");
    write_u64(out, e.time_ms);
    out.extend_from_slice(b",\"source\":\"");
    write_ip(out, e.source);
    out.extend_from_slice(b"\",\"user\":");
    match &e.user {
        Some(u) => write_json_str(out, u),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"endpoint\":");
    write_json_str(out, e.endpoint);
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

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(out, u64::from(octet));
            }
        }
        // Display of an address has no character JSON must escape.
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let mut s = String::with_capacity(39);
            // Cannot fail: writing to a String only fails if Display does.
            write!(s, "{v6}").expect("formatting an IPv6 address");
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A JSON string as `serde_json` writes it: `"` and `\` escaped, the control characters
/// below 0x20 as `\b \t \n \f \r` or `\u00xx`, everything else (0x7f, non-ASCII) as is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::Serialize;

    use super::*;
    use crate::tracker::audit::chain::hex_hash;
    use crate::tracker::audit::entry::Decision;
    use crate::types::InfoHash;

    /// The line format of the versions that encoded with serde_json, kept as the reference.
    #[derive(Serialize)]
    struct SerdeLine<'a> {
        #[serde(flatten)]
        entry: &'a AuditEntry,
        prev: &'a str,
    }

    #[test]
    fn hand_encoded_lines_are_what_serde_json_wrote() {
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
                    endpoint: "announce?getCipher",
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
        assert_eq!(write_u64_str(0), "0");
        assert_eq!(write_u64_str(10), "10");
        assert_eq!(write_u64_str(u64::MAX), u64::MAX.to_string());
    }

    fn write_u64_str(n: u64) -> String {
        let mut v = Vec::new();
        write_u64(&mut v, n);
        String::from_utf8(v).unwrap()
    }
}
