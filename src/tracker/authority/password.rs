//! [`PasswordHash`]: how a user's password is kept in authority.xml. New passwords are
//! argon2id PHC strings; the bare SHA-256 and SHA-1 hex digests of the paper's era are still
//! read and verified (in constant time), and warned about (docs/protocol.md 3.1).

use std::fmt;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    pub(super) fn parse(text: &str) -> Result<PasswordHash, &'static str> {
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
    pub(super) fn to_text(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
