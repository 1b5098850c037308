//! The tracker's master key and the sealing of content keys at rest under it
//! (docs/protocol.md section 8).
//!
//! - The master key is 32 random bytes in a file of mode 0600 (`master.key` in the data
//!   directory unless `--master-key` names another), created on first start and never
//!   replaced: a damaged file is an error, not a new key that would open none of the sealed
//!   keys.
//! - A content key is sealed with AES-256-GCM under the master key, the key id as associated
//!   data, so that a sealed key cannot be moved to another key id's row.
//! - Other secrets (the token key) are derived from it with HMAC-SHA-256 and a purpose string,
//!   so the master key itself does one thing only.
//!
//! This module knows no database: the store keeps sealed keys as opaque bytes, whatever its
//! engine.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

use crate::types::KeyId;

/// The master key's file name in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";
const NONCE_LEN: usize = 12;

/// Why the master key cannot be read or made, or a sealed key cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("error reading or creating master key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("master key {path} is {len} bytes, expected 32")]
    Length { path: PathBuf, len: usize },
    #[error("sealed content key for key id {0} cannot be opened (wrong master key or damaged row)")]
    Unseal(KeyId),
}

/// A content key in the clear, only ever held briefly to wrap it for a requester.
pub type RawKey = Zeroizing<[u8; 32]>;

/// The master key: seals content keys at rest.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads `path`, or creates it (mode 0600, 32 bytes from the OS CSPRNG) if it is absent.
    ///
    /// # Errors
    /// I/O errors, or a file that is not exactly 32 bytes.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, MasterKeyError> {
        let io = |source| MasterKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut key = Zeroizing::new([0u8; 32]);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                rand::fill(&mut key[..]);
                file.write_all(&key[..]).map_err(io)?;
                file.sync_all().map_err(io)?;
                if let Some(dir) = path.parent() {
                    crate::fsutil::sync_dir(dir).map_err(io)?;
                }
                tracing::info!("created master key {}", path.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut bytes = Zeroizing::new(Vec::with_capacity(33));
                std::fs::File::open(path)
                    .and_then(|f| f.take(33).read_to_end(&mut bytes))
                    .map_err(io)?;
                if bytes.len() != 32 {
                    return Err(MasterKeyError::Length {
                        path: path.to_owned(),
                        len: bytes.len(),
                    });
                }
                key.copy_from_slice(&bytes);
            }
            Err(e) => return Err(io(e)),
        }
        Ok(MasterKey(key))
    }

    /// A subkey for another purpose (e.g. signing tokens), so the master key itself is used
    /// for one thing only.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC accepts keys of any length");
        m.update(purpose.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0[..]).expect("the master key is 32 bytes")
    }

    /// Seals a content key: nonce ‖ ciphertext ‖ tag, the key id as associated data.
    pub fn seal(&self, key_id: &KeyId, key: &[u8; 32]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: key,
                    aad: key_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed content key.
    ///
    /// # Errors
    /// [`MasterKeyError::Unseal`] if the tag does not verify (wrong master key, damaged row, or a
    /// row moved to another key id).
    pub fn open(&self, key_id: &KeyId, sealed: &[u8]) -> Result<RawKey, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Unseal(*key_id));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce),
                    Payload {
                        msg: ct,
                        aad: key_id.as_bytes(),
                    },
                )
                .map_err(|_| MasterKeyError::Unseal(*key_id))?,
        );
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Unseal(*key_id))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_are_bound_to_their_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("m")).unwrap();
        let sealed = master.seal(&KeyId([1; 16]), &[3; 32]);
        assert!(matches!(
            master.open(&KeyId([2; 16]), &sealed),
            Err(MasterKeyError::Unseal(_))
        ));
        assert!(matches!(
            master.open(&KeyId([1; 16]), &sealed[..5]),
            Err(MasterKeyError::Unseal(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("m"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // a damaged master key file is refused, not silently replaced
        std::fs::write(dir.path().join("short"), b"abc").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&dir.path().join("short")),
            Err(MasterKeyError::Length { len: 3, .. })
        ));
    }
}
