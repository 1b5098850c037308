//! Our peer id: `-IV` + 4 version digits + `-`, then 12 random bytes (docs/protocol.md
//! section 7), made fresh for each run of a peer.

use crate::types::PeerId;

/// Four version digits for the peer id prefix: major, minor, patch, 0.
const fn version_digit(s: &str) -> u8 {
    let b = s.as_bytes();
    assert!(
        b.len() == 1 && b[0].is_ascii_digit(),
        "the peer id holds one digit per version part"
    );
    b[0]
}

/// `-IV` + 4 version digits + `-` (docs/protocol.md section 7), e.g. `-IV0100-` for version
/// 0.1.0.
pub const PEER_ID_PREFIX: [u8; 8] = [
    b'-',
    b'I',
    b'V',
    version_digit(env!("CARGO_PKG_VERSION_MAJOR")),
    version_digit(env!("CARGO_PKG_VERSION_MINOR")),
    version_digit(env!("CARGO_PKG_VERSION_PATCH")),
    b'0',
    b'-',
];

/// A fresh peer id: [`PEER_ID_PREFIX`] and 12 random bytes.
pub fn generate_peer_id() -> PeerId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&PEER_ID_PREFIX);
    rand::fill(&mut id[8..]);
    PeerId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_follow_spec() {
        let id = generate_peer_id();
        assert_eq!(&id.0[..3], b"-IV");
        assert!(id.0[3..7].iter().all(u8::is_ascii_digit));
        assert_eq!(id.0[7], b'-');
        assert_ne!(generate_peer_id(), id, "12 random bytes");
    }
}
