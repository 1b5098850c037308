//! The BEP 3 handshake: 68 bytes that open every connection, with the reserved bits that say
//! which extensions a peer supports (docs/protocol.md section 7: ivcsd offers BEP 6 and BEP 10).

use std::fmt;

use crate::types::{InfoHash, PeerId};

use super::WireError;

/// The protocol string of the handshake.
pub const PSTR: &[u8; 19] = b"BitTorrent protocol";
/// Length of the handshake: pstrlen, pstr, 8 reserved bytes, info hash, peer id.
pub const HANDSHAKE_LEN: usize = 1 + 19 + 8 + 20 + 20;

/// The 8 reserved bytes of the handshake: which extensions a peer supports.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// What ivcsd announces: BEP 6 fast (0x04 in byte 7) and BEP 10 extensions (0x10 in byte 5).
    pub const IVCSD: Reserved = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x04]);

    /// BEP 6: the fast extension.
    pub fn fast(self) -> bool {
        self.0[7] & 0x04 != 0
    }

    /// BEP 10: the extension protocol.
    pub fn extended(self) -> bool {
        self.0[5] & 0x10 != 0
    }
}

impl fmt::Debug for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Reserved({}, fast: {}, extended: {})",
            hex::encode(self.0),
            self.fast(),
            self.extended()
        )
    }
}

/// The BEP 3 handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: Reserved,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake for `info_hash`, announcing the extensions ivcsd supports.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        Handshake {
            reserved: Reserved::IVCSD,
            info_hash,
            peer_id,
        }
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PSTR.len() as u8;
        out[1..20].copy_from_slice(PSTR);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(self.info_hash.as_bytes());
        out[48..68].copy_from_slice(self.peer_id.as_bytes());
        out
    }

    /// Decodes a handshake from the start of `buf`. `Ok(None)`: fewer than 68 bytes so far and
    /// nothing wrong with them yet; a wrong protocol string is reported as soon as its first
    /// wrong byte is in, so garbage is refused without waiting for 68 bytes.
    ///
    /// # Errors
    /// [`WireError::HandshakePstrLen`], [`WireError::HandshakePstr`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Handshake, usize)>, WireError> {
        let Some(&pstrlen) = buf.first() else {
            return Ok(None);
        };
        if usize::from(pstrlen) != PSTR.len() {
            return Err(WireError::HandshakePstrLen { found: pstrlen });
        }
        let pstr_seen = &buf[1..buf.len().min(20)];
        if pstr_seen != &PSTR[..pstr_seen.len()] {
            return Err(WireError::HandshakePstr);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let handshake = Handshake {
            reserved: Reserved(reserved),
            // Both slices are exactly 20 bytes long: the length was checked above.
            info_hash: InfoHash(read_array(&buf[28..48])),
            peer_id: PeerId(read_array(&buf[48..68])),
        };
        Ok(Some((handshake, HANDSHAKE_LEN)))
    }
}

/// Copies a slice whose length the caller has checked into an array.
fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::peer_id::generate_peer_id;

    #[test]
    fn handshake_round_trip_and_errors() {
        let ours = Handshake::new(InfoHash([7; 20]), generate_peer_id());
        let bytes = ours.encode();
        assert!(ours.reserved.fast() && ours.reserved.extended());
        assert_eq!(bytes[25], 0x10);
        assert_eq!(bytes[27], 0x04);
        assert_eq!(Handshake::decode(&bytes), Ok(Some((ours, HANDSHAKE_LEN))));
        for cut in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::decode(&bytes[..cut]), Ok(None));
        }
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1\r\n"),
            Err(WireError::HandshakePstrLen { found: b'G' })
        );
        // The wrong byte is seen before 68 bytes are in.
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent protocoX"),
            Err(WireError::HandshakePstr)
        );
        assert_eq!(Handshake::decode(b"\x13Bad"), Err(WireError::HandshakePstr));
        let plain = Reserved([0; 8]);
        assert!(!plain.fast() && !plain.extended());
    }
}
