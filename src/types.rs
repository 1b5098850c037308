//! Small domain types shared by every part of ivcsd, so that a 20-byte info hash, a
//! 16-byte key id and an authority level cannot be confused with other bytes or numbers.

use std::fmt;
use std::str::FromStr;

/// Why a hex identifier could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexIdError {
    #[error("expected {expected} hex digits, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not a hex digit at position {0}")]
    Digit(usize),
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexIdError> {
    if s.len() != 2 * N {
        return Err(HexIdError::Length {
            expected: 2 * N,
            got: s.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { index, .. } => HexIdError::Digit(index),
        _ => HexIdError::Length {
            expected: 2 * N,
            got: s.len(),
        },
    })?;
    Ok(out)
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            /// Takes exactly `LEN` bytes; `None` for any other length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// Lowercase hex, as used in the CLI, the audit log and signed messages.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = HexIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex::<$len>(s).map(Self)
            }
        }
    };
}

byte_id!(
    /// SHA-1 of a torrent's raw `info` dictionary (BEP 3).
    InfoHash,
    20
);
byte_id!(
    /// A peer's 20-byte id; ivcsd's own start with `-IV` + 4 version digits + `-`.
    PeerId,
    20
);
byte_id!(
    /// Names a content key at the tracker without revealing it (`info.ivcsd.key id`).
    KeyId,
    16
);

/// An authority level: **a smaller number is a higher authority**, 0 the highest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Authority(pub u32);

impl Authority {
    /// The highest authority, given to every newly published torrent by default.
    pub const HIGHEST: Authority = Authority(0);

    /// The one place where "smaller is higher" is written: a peer with authority `self`
    /// may read a torrent with authority `torrent` when `self <= torrent`.
    pub fn may_read(self, torrent: Authority) -> bool {
        self.0 <= torrent.0
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Authority {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse::<u32>().map(Authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaller_number_is_higher_authority() {
        let table = [
            (0, 0, true),
            (0, 4, true),
            (1, 4, true),
            (4, 4, true),
            (5, 4, false),
            (1, 0, false),
        ];
        for (peer, torrent, expected) in table {
            assert_eq!(
                Authority(peer).may_read(Authority(torrent)),
                expected,
                "P={peer} T={torrent}"
            );
        }
    }

    #[test]
    fn info_hash_hex_round_trip_and_errors() {
        let h: InfoHash = "00112233445566778899aabbccddeeff00112233".parse().unwrap();
        assert_eq!(h.to_hex(), "00112233445566778899aabbccddeeff00112233");
        assert_eq!(
            "0011".parse::<InfoHash>(),
            Err(HexIdError::Length {
                expected: 40,
                got: 4
            })
        );
        assert_eq!(
            "zz112233445566778899aabbccddeeff00112233".parse::<InfoHash>(),
            Err(HexIdError::Digit(0))
        );
        assert!(InfoHash::from_slice(&[0u8; 19]).is_none());
    }
}
