//! The BEP 10 extension protocol: extended messages (id 20) and the extension handshake
//! (extended id 0), whose `v` is `ivcsd/<version>` (docs/protocol.md section 7). ivcsd enables
//! no extension message yet; it reads a peer's handshake for its `reqq` and port, and passes
//! any other extended message on undecoded.

use std::borrow::Cow;

use crate::bencode::{self, Dict, Value};

use super::{MAX_BLOCK_LEN, WireError};

/// The extended message id of the BEP 10 handshake.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;
/// Largest length field of an extended message (id, extended id, payload). Room for a BEP 9
/// metadata piece (16 KiB plus its small dictionary); the handshake dictionary is far smaller.
pub const MAX_EXTENDED_MSG_LEN: u32 = MAX_BLOCK_LEN + 1024;

/// The BEP 10 extension handshake: the dictionary of extended message 0. Only the keys ivcsd
/// reads are kept; others are ignored, as BEP 10 asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake<'a> {
    /// `m`: extension name to the extended message id the sender wants to receive it under
    /// (0 means "disabled"), sorted by name.
    pub m: Vec<(Cow<'a, [u8]>, u8)>,
    /// `v`: the client's name and version; ours is `ivcsd/<version>`.
    pub v: Option<Cow<'a, [u8]>>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// `p`: the sender's listening port.
    pub p: Option<u16>,
}

impl<'a> ExtendedHandshake<'a> {
    /// Ours: no extension messages yet, `v` = `ivcsd/<version>`, our `reqq` and port.
    pub fn ivcsd(reqq: u32, listen_port: Option<u16>) -> ExtendedHandshake<'static> {
        ExtendedHandshake {
            m: Vec::new(),
            v: Some(Cow::Borrowed(CLIENT_VERSION.as_bytes())),
            reqq: Some(reqq),
            p: listen_port,
        }
    }

    /// Copies borrowed bytes so the handshake outlives the read buffer.
    pub fn into_owned(self) -> ExtendedHandshake<'static> {
        ExtendedHandshake {
            m: self
                .m
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v))
                .collect(),
            v: self.v.map(|v| Cow::Owned(v.into_owned())),
            reqq: self.reqq,
            p: self.p,
        }
    }

    pub(super) fn to_value(&self) -> Value<'_> {
        let mut m = Dict::new();
        for (name, id) in &self.m {
            m.insert(name.as_ref(), Value::from(u32::from(*id)));
        }
        let mut d = Dict::new();
        d.insert(&b"m"[..], Value::Dict(m));
        if let Some(v) = &self.v {
            d.insert(&b"v"[..], Value::from(v.as_ref()));
        }
        if let Some(reqq) = self.reqq {
            d.insert(&b"reqq"[..], Value::from(reqq));
        }
        if let Some(p) = self.p {
            d.insert(&b"p"[..], Value::from(u32::from(p)));
        }
        Value::Dict(d)
    }

    /// Parses the dictionary. Strict about the types of the keys it reads (a wrong type is a
    /// broken peer), silent about keys it does not know.
    pub(super) fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        // The payload is at most MAX_EXTENDED_MSG_LEN bytes; these limits keep the value
        // count (and so the allocation) small whatever a peer puts in it.
        let limits = bencode::DecodeLimits {
            max_depth: 4,
            max_values: 1024,
        };
        let value =
            bencode::decode_with(payload, limits).map_err(WireError::ExtendedHandshakeBencode)?;
        let field = |field, problem| WireError::ExtendedHandshakeField { field, problem };
        let dict = value.as_dict().ok_or(field("", "is not a dictionary"))?;
        let mut hs = ExtendedHandshake::default();
        if let Some(m) = dict.get(b"m") {
            let m = m.as_dict().ok_or(field("m", "is not a dictionary"))?;
            for (name, id) in m.iter() {
                let id = id
                    .as_int()
                    .and_then(|i| u8::try_from(i).ok())
                    .ok_or(field("m", "has an id that is not an integer from 0 to 255"))?;
                hs.m.push((Cow::Owned(name.to_vec()), id));
            }
        }
        if let Some(v) = dict.get(b"v") {
            let v = v.as_bytes().ok_or(field("v", "is not a string"))?;
            hs.v = Some(Cow::Owned(v.to_vec()));
        }
        if let Some(reqq) = dict.get(b"reqq") {
            let reqq = reqq
                .as_int()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or(field("reqq", "is not a non-negative 32-bit integer"))?;
            hs.reqq = Some(reqq);
        }
        if let Some(p) = dict.get(b"p") {
            let p = p
                .as_int()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or(field("p", "is not a port number"))?;
            hs.p = Some(p);
        }
        Ok(hs)
    }
}

/// `ivcsd/<version>`: the `v` of our extension handshake (docs/protocol.md section 7).
pub const CLIENT_VERSION: &str = concat!("ivcsd/", env!("CARGO_PKG_VERSION"));

/// An extended message (BEP 10, id 20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended<'a> {
    /// Extended id 0.
    Handshake(ExtendedHandshake<'a>),
    /// Any other extended id: a message of an extension the sender believes we enabled.
    Other { id: u8, payload: &'a [u8] },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::wire::test_frames::{frame, malformed};
    use crate::peer::wire::{MSGID_EXTENDED, Message, decode};

    malformed!(
        extended_handshake_not_bencode,
        frame(MSGID_EXTENDED, b"\x00not bencode"),
        WireError::ExtendedHandshakeBencode(bencode::DecodeError {
            offset: 0,
            kind: bencode::ErrorKind::UnexpectedByte {
                found: b'n',
                expected: "'i', 'l', 'd' or a digit"
            }
        })
    );
    malformed!(
        extended_handshake_not_dict,
        frame(MSGID_EXTENDED, b"\x00i1e"),
        WireError::ExtendedHandshakeField {
            field: "",
            problem: "is not a dictionary"
        }
    );
    malformed!(
        extended_handshake_m_not_dict,
        frame(MSGID_EXTENDED, b"\x00d1:mi1ee"),
        WireError::ExtendedHandshakeField {
            field: "m",
            problem: "is not a dictionary"
        }
    );
    malformed!(
        extended_handshake_m_id_too_big,
        frame(MSGID_EXTENDED, b"\x00d1:md6:ut_foxi256eee"),
        WireError::ExtendedHandshakeField {
            field: "m",
            problem: "has an id that is not an integer from 0 to 255"
        }
    );
    malformed!(
        extended_handshake_reqq_negative,
        frame(MSGID_EXTENDED, b"\x00d4:reqqi-1ee"),
        WireError::ExtendedHandshakeField {
            field: "reqq",
            problem: "is not a non-negative 32-bit integer"
        }
    );
    malformed!(
        extended_handshake_port_too_big,
        frame(MSGID_EXTENDED, b"\x00d1:pi65536ee"),
        WireError::ExtendedHandshakeField {
            field: "p",
            problem: "is not a port number"
        }
    );
    malformed!(
        extended_handshake_v_not_string,
        frame(MSGID_EXTENDED, b"\x00d1:vi1ee"),
        WireError::ExtendedHandshakeField {
            field: "v",
            problem: "is not a string"
        }
    );
    malformed!(
        extended_handshake_too_deep,
        frame(MSGID_EXTENDED, b"\x00d1:xlllleeeee"),
        WireError::ExtendedHandshakeBencode(bencode::DecodeError {
            offset: 7,
            kind: bencode::ErrorKind::TooDeep { max: 4 }
        })
    );

    #[test]
    fn extended_handshake_reference() {
        let ours = Message::Extended(Extended::Handshake(ExtendedHandshake::ivcsd(
            250,
            Some(6881),
        )));
        let bytes = ours.encode();
        let dict = format!(
            "d1:mde1:pi6881e4:reqqi250e1:v{}:{}e",
            CLIENT_VERSION.len(),
            CLIENT_VERSION
        );
        assert_eq!(&bytes[6..], dict.as_bytes());
        assert_eq!(decode(&bytes).unwrap(), Some((ours, bytes.len())));
        // A typical stock client's dictionary: unknown keys are ignored.
        let theirs = frame(
            MSGID_EXTENDED,
            b"\x00d1:md11:ut_metadatai2e6:ut_pexi0ee13:metadata_sizei100e1:pi51413e4:reqqi500e1:v13:qBittorrent/4e",
        );
        let Some((Message::Extended(Extended::Handshake(h)), _)) = decode(&theirs).unwrap() else {
            panic!("not a handshake");
        };
        assert_eq!(h.reqq, Some(500));
        assert_eq!(h.p, Some(51413));
        assert_eq!(h.v.as_deref(), Some(&b"qBittorrent/4"[..]));
        assert_eq!(
            h.m,
            vec![
                (Cow::Borrowed(&b"ut_metadata"[..]), 2),
                (Cow::Borrowed(&b"ut_pex"[..]), 0)
            ]
        );
    }
}
