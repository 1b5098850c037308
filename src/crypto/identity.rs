//! Peer identities: RSA keys, the signed getcipher message, and content-key wrapping
//! (docs/protocol.md sections 3 and 4.3).
//!
//! A peer proves who it is to the tracker's getcipher with an RSASSA-PSS signature (SHA-256,
//! MGF1-SHA-256, 32-byte salt) over [`GetcipherMessage::to_bytes`], and receives the content key
//! wrapped for its public key with RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label). Keys under
//! [`MIN_RSA_BITS`] are refused wherever a key enters: generation, PEM, SPKI.
//!
//! Private keys are stored as unencrypted PKCS#8 PEM files with mode 0600, written atomically.
//! Public keys travel as SubjectPublicKeyInfo DER (base64 in queries and authority.xml).
//! This module does no network I/O; RSA private-key operations take milliseconds, so callers on
//! the async reactor run them in `spawn_blocking`.
//!
//! Two RSA implementations, each where it is strongest:
//! - the peers' private-key side ([`Identity`]: generation of any size, PKCS#8 PEM, PSS signing,
//!   OAEP decryption) uses the pure-Rust `rsa` crate;
//! - the public-key side ([`PublicIdentity::verify`], [`PublicIdentity::wrap_content_key`]),
//!   which is the tracker's whole per-getcipher cost, uses `aws-lc-rs`, whose assembly
//!   Montgomery multiplication is about 4 times faster than `rsa` 0.10 here
//!   (docs/benchmarks.md, "getcipher's RSA work").
//!
//! Both follow the same standards (RFC 8017 PSS with a 32-byte salt = SHA-256's length, and
//! OAEP with SHA-256 and MGF1-SHA-256, empty label), so one side's output is the other's input;
//! tests/it/crypto_identity.rs checks both directions. The SPKI is still parsed by the `rsa` crate
//! first, so malformed and short keys are refused with the same errors as before.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::content::{CONTENT_KEY_LEN, ContentKey};
use crate::types::InfoHash;

/// The smallest RSA modulus ivcsd accepts, in bits (docs/protocol.md 4.3).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus ivcsd accepts, in bits: the limit of the `rsa` crate's public keys
/// and of aws-lc-rs's `RSA_PSS_2048_8192_SHA256`, and far beyond what anyone needs.
pub const MAX_RSA_BITS: usize = 8192;
/// The size `ivcsd peer keygen` uses unless told otherwise.
pub const DEFAULT_RSA_BITS: usize = 3072;

/// The first line of the signed getcipher message; the `/1` versions its layout.
const GETCIPHER_MAGIC: &str = "ivcsd-getcipher/1";

/// Anything that can go wrong with a key, a signature, a wrapped key or an identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("rsa key of {bits} bits is too short: at least 2048 bits are required")]
    KeyTooShort { bits: usize },
    #[error("rsa key of {bits} bits is too long: at most 8192 bits are supported")]
    KeyTooLong { bits: usize },
    #[error("error generating a {bits}-bit rsa key: {error}")]
    Generate { bits: usize, error: rsa::Error },
    #[error("invalid pkcs#8 pem private key: {0}")]
    PrivateKeyPem(rsa::pkcs8::Error),
    #[error(
        "a pkcs#1 pem private key (BEGIN RSA PRIVATE KEY) is not supported: convert it with \
         `openssl pkcs8 -topk8 -nocrypt`"
    )]
    Pkcs1Pem,
    #[error(
        "an encrypted pkcs#8 private key is not supported: store it unencrypted with mode 0600"
    )]
    EncryptedPem,
    #[error("error encoding the private key as pkcs#8 pem: {0}")]
    EncodePrivateKey(rsa::pkcs8::Error),
    #[error("invalid spki der public key: {0}")]
    PublicKeyDer(rsa::pkcs8::spki::Error),
    #[error("error encoding the public key as spki der: {0}")]
    EncodePublicKey(rsa::pkcs8::spki::Error),
    /// aws-lc refused a key the `rsa` crate accepted (not expected: both check the same DER
    /// and sizes); the text is aws-lc's reason.
    #[error("rsa public key rejected: {0}")]
    PublicKeyRejected(&'static str),
    #[error("error reading identity file {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("error writing identity file {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("identity file {path}: {error}")]
    InFile {
        path: PathBuf,
        error: Box<IdentityError>,
    },
    #[error("signature does not verify")]
    BadSignature,
    #[error("cannot unwrap the content key: {len} bytes wrapped, expected {expected} for this key")]
    WrappedKeyLength { len: usize, expected: usize },
    #[error("cannot unwrap the content key: it was not wrapped for this identity, or is corrupt")]
    UnwrapFailed,
    #[error("cannot unwrap the content key: it holds {len} bytes, expected 32")]
    UnwrappedKeyLength { len: usize },
    #[error("invalid base64: {0}")]
    Base64(base64::DecodeError),
    #[error("invalid base64: mixes the standard (+/) and url-safe (-_) alphabets")]
    Base64MixedAlphabet,
}

/// Refuses moduli outside [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
fn check_bits(bits: usize) -> Result<(), IdentityError> {
    if bits < MIN_RSA_BITS {
        Err(IdentityError::KeyTooShort { bits })
    } else if bits > MAX_RSA_BITS {
        Err(IdentityError::KeyTooLong { bits })
    } else {
        Ok(())
    }
}

/// The size of a key's modulus in bits (the position of its top set bit).
fn modulus_bits(key: &PublicKey) -> usize {
    // A u32 bit count always fits in usize on the platforms ivcsd supports (64-bit Unix).
    key.n().bit_width() as usize
}

/// A peer's RSA private key, with its public half ready for use.
///
/// `Debug` shows only the size and the public fingerprint; the private key zeroizes itself on
/// drop (the `rsa` crate does that).
pub struct Identity {
    key: PrivateKey,
    public: PublicIdentity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("bits", &self.public.bits())
            .field("spki_sha256", &hex::encode(self.public.spki_sha256()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh key of `bits` bits (2048 to 8192) from the operating system's RNG.
    /// Takes from tens of milliseconds (2048) to seconds (4096 and up).
    ///
    /// # Errors
    /// [`IdentityError::KeyTooShort`] / [`IdentityError::KeyTooLong`] for a size outside the
    /// accepted range, [`IdentityError::Generate`] if generation fails (an RNG failure).
    pub fn generate(bits: usize) -> Result<Identity, IdentityError> {
        check_bits(bits)?;
        let key = PrivateKey::new(&mut rand::rngs::SysRng, bits)
            .map_err(|error| IdentityError::Generate { bits, error })?;
        Identity::from_private_key(key)
    }

    fn from_private_key(key: PrivateKey) -> Result<Identity, IdentityError> {
        let public = PublicIdentity::from_public_key(key.to_public_key())?;
        Ok(Identity { key, public })
    }

    /// Parses an unencrypted PKCS#8 PEM private key (`BEGIN PRIVATE KEY`).
    ///
    /// # Errors
    /// [`IdentityError::PrivateKeyPem`] for anything that is not a valid RSA PKCS#8 key, a
    /// specific error for PKCS#1 and encrypted PEM, and [`IdentityError::KeyTooShort`] for
    /// keys under 2048 bits.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Identity, IdentityError> {
        let key = PrivateKey::from_pkcs8_pem(pem).map_err(|error| {
            if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
                IdentityError::Pkcs1Pem
            } else if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                IdentityError::EncryptedPem
            } else {
                IdentityError::PrivateKeyPem(error)
            }
        })?;
        check_bits(modulus_bits(key.as_public_key()))?;
        Identity::from_private_key(key)
    }

    /// The private key as unencrypted PKCS#8 PEM, in memory that is zeroized on drop.
    ///
    /// # Errors
    /// [`IdentityError::EncodePrivateKey`] if encoding fails (not expected for a valid key).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, IdentityError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(IdentityError::EncodePrivateKey)
    }

    /// Reads an identity file written by [`Identity::save`] (or by
    /// `openssl genpkey -algorithm RSA`). Logs a warning if others may read the file.
    ///
    /// # Errors
    /// [`IdentityError::Read`] if the file cannot be read, [`IdentityError::InFile`] naming the
    /// file around any parse error of [`Identity::from_pkcs8_pem`].
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let read_error = |error| IdentityError::Read {
            path: path.to_owned(),
            error,
        };
        let mut file = fs::File::open(path).map_err(read_error)?;
        let mode = file.metadata().map_err(read_error)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "identity file is readable by other users; it should have mode 0600"
            );
        }
        let mut pem = Zeroizing::new(String::new());
        io::Read::read_to_string(&mut file, &mut pem).map_err(read_error)?;
        Identity::from_pkcs8_pem(&pem).map_err(|error| IdentityError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Writes the key to `path` as PKCS#8 PEM with mode 0600, atomically: a temporary file in
    /// the same directory (created 0600, so the key is never readable by others), `sync_all`,
    /// rename over `path`, then fsync of the directory. Creates missing parent directories
    /// with mode 0700. Replaces an existing file; refusing to is the caller's decision.
    ///
    /// # Errors
    /// [`IdentityError::Write`] naming the path of whatever step failed.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let pem = self.to_pkcs8_pem()?;
        write_secret_file(path, pem.as_bytes())
    }

    /// Loads the identity at `path`, or, if there is no file there, generates one of `bits`
    /// bits and saves it (mode 0600): docs/protocol.md 10's "created on first use". Returns whether
    /// it was created.
    ///
    /// # Errors
    /// As [`Identity::load`] for an existing file (a broken file is never replaced), and as
    /// [`Identity::generate`] and [`Identity::save`] otherwise.
    pub fn load_or_create(path: &Path, bits: usize) -> Result<(Identity, bool), IdentityError> {
        match Identity::load(path) {
            Ok(identity) => Ok((identity, false)),
            Err(IdentityError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                let identity = Identity::generate(bits)?;
                identity.save(path)?;
                Ok((identity, true))
            }
            Err(err) => Err(err),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicIdentity {
        self.public.clone()
    }

    /// The public half, borrowed.
    pub fn public_ref(&self) -> &PublicIdentity {
        &self.public
    }

    /// RSASSA-PSS signature of `msg` (SHA-256, MGF1-SHA-256, salt 32 bytes), blinded.
    ///
    /// # Panics
    /// If the operating system's RNG fails (the salt and the blinding need randomness); a
    /// loaded key is otherwise always able to sign.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self.key.pss_sign::<Sha256>(msg) {
            Ok(sig) => sig,
            Err(err) => panic!("rsa-pss signing failed (operating system rng?): {err}"),
        }
    }

    /// Unwraps a content key that [`PublicIdentity::wrap_content_key`] wrapped for this
    /// identity (RSAES-OAEP, SHA-256, MGF1-SHA-256, empty label).
    ///
    /// # Errors
    /// [`IdentityError::WrappedKeyLength`] if `wrapped` is not one modulus long,
    /// [`IdentityError::UnwrapFailed`] if it was wrapped for another key or altered (the cause
    /// is deliberately not detailed), [`IdentityError::UnwrappedKeyLength`] if it does not hold
    /// 32 bytes.
    pub fn unwrap_content_key(&self, wrapped: &[u8]) -> Result<ContentKey, IdentityError> {
        let expected = self.key.size();
        if wrapped.len() != expected {
            return Err(IdentityError::WrappedKeyLength {
                len: wrapped.len(),
                expected,
            });
        }
        let plain = Zeroizing::new(
            self.key
                .oaep_decrypt::<Sha256>(wrapped)
                .map_err(|_| IdentityError::UnwrapFailed)?,
        );
        let bytes = <[u8; CONTENT_KEY_LEN]>::try_from(plain.as_slice())
            .map_err(|_| IdentityError::UnwrappedKeyLength { len: plain.len() })?;
        Ok(ContentKey::from_bytes(bytes))
    }
}

/// Writes `bytes` to `path` with mode 0600 as [`Identity::save`] describes.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |error| IdentityError::Write { path, error }
    };
    let file_name = path.file_name().ok_or_else(|| IdentityError::Write {
        path: path.to_owned(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_error(dir))?;

    // A name no one else uses: this process, and a random suffix against stale leftovers.
    let mut suffix = [0u8; 8];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut suffix).map_err(|err| {
        IdentityError::Write {
            path: path.to_owned(),
            error: io::Error::other(err),
        }
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        hex::encode(suffix)
    ));
    let temp = dir.join(temp_name);

    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(write_error(&temp))?;
        file.write_all(bytes).map_err(write_error(&temp))?;
        file.sync_all().map_err(write_error(&temp))?;
        drop(file);
        fs::rename(&temp, path).map_err(write_error(path))?;
        // The rename is durable only once the directory is.
        crate::fsutil::sync_dir(dir).map_err(write_error(dir))
    })();
    if result.is_err() {
        // Best effort: the temporary file may not exist, or may already be renamed.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A peer's RSA public key, with the exact SPKI DER it came as and that DER's SHA-256.
///
/// The key is parsed once, here, into aws-lc's form for both of its uses (PSS verification and
/// OAEP encryption); cloning shares it, so a cache of parsed keys (the tracker keeps one keyed
/// by [`Self::spki_sha256`]) costs one reference count per hit.
#[derive(Clone)]
pub struct PublicIdentity {
    inner: Arc<PublicInner>,
}

struct PublicInner {
    /// For [`PublicIdentity::verify`]: RSASSA-PSS, SHA-256, salt length = digest length (32).
    verifier: ParsedPublicKey,
    /// For [`PublicIdentity::wrap_content_key`]: RSAES-OAEP, SHA-256, MGF1-SHA-256.
    encrypter: OaepPublicEncryptingKey,
    /// The SubjectPublicKeyInfo DER, byte for byte as received or encoded.
    spki_der: Box<[u8]>,
    /// SHA-256 of `spki_der`: what the getcipher message names.
    spki_sha256: [u8; 32],
    /// The modulus size, within `MIN_RSA_BITS..=MAX_RSA_BITS`.
    bits: usize,
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("bits", &self.inner.bits)
            .field("spki_sha256", &hex::encode(self.inner.spki_sha256))
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.inner.spki_der == other.inner.spki_der
    }
}

impl Eq for PublicIdentity {}

impl PublicIdentity {
    /// Parses a SubjectPublicKeyInfo DER RSA public key (the `key` of getcipher, and
    /// `<public_key>` in authority.xml after base64).
    ///
    /// # Errors
    /// [`IdentityError::PublicKeyDer`] for anything that is not an RSA SPKI (trailing bytes
    /// included), [`IdentityError::KeyTooShort`] under 2048 bits, [`IdentityError::KeyTooLong`]
    /// over 8192.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicIdentity, IdentityError> {
        // The `rsa` crate's parser is the strict gate (exact DER, no trailing bytes, sane
        // exponent) and names what is wrong; aws-lc then parses the same bytes for use.
        let key = PublicKey::from_public_key_der(der).map_err(IdentityError::PublicKeyDer)?;
        PublicIdentity::from_checked_spki(der.into(), modulus_bits(&key))
    }

    fn from_public_key(key: PublicKey) -> Result<PublicIdentity, IdentityError> {
        let spki_der = key
            .to_public_key_der()
            .map_err(IdentityError::EncodePublicKey)?
            .into_vec();
        PublicIdentity::from_checked_spki(spki_der.into(), modulus_bits(&key))
    }

    /// Builds the aws-lc keys from an SPKI that the `rsa` crate parsed as a `bits`-bit key.
    fn from_checked_spki(
        spki_der: Box<[u8]>,
        bits: usize,
    ) -> Result<PublicIdentity, IdentityError> {
        check_bits(bits)?;
        let rejected =
            |e: aws_lc_rs::error::KeyRejected| IdentityError::PublicKeyRejected(e.description_());
        let verifier =
            ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &spki_der).map_err(rejected)?;
        let encrypter = PublicEncryptingKey::from_der(&spki_der)
            .map_err(rejected)
            .and_then(|key| {
                OaepPublicEncryptingKey::new(key)
                    .map_err(|_| IdentityError::PublicKeyRejected("not usable for rsa-oaep"))
            })?;
        let spki_sha256 = Sha256::digest(&spki_der).into();
        Ok(PublicIdentity {
            inner: Arc::new(PublicInner {
                verifier,
                encrypter,
                spki_der,
                spki_sha256,
                bits,
            }),
        })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.inner.spki_der
    }

    /// SHA-256 of [`Self::spki_der`]: the key's fingerprint, and the last line of the signed
    /// getcipher message.
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.inner.spki_sha256
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.bits
    }

    /// Checks an RSASSA-PSS signature (SHA-256, MGF1-SHA-256, salt 32 bytes) over `msg`.
    ///
    /// aws-lc's `RSA_PSS_2048_8192_SHA256` requires the salt to be the digest's length, which
    /// is docs/protocol.md 4.3's 32 bytes and what [`Identity::sign`] and `openssl dgst -sigopt
    /// rsa_pss_saltlen:32` (or `:digest`) produce; other salt lengths do not verify.
    ///
    /// # Errors
    /// [`IdentityError::BadSignature`] when it does not verify, whatever the reason.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
        self.inner
            .verifier
            .verify_sig(msg, sig)
            .map_err(|_| IdentityError::BadSignature)
    }

    /// Wraps `key` for this public key: RSAES-OAEP, SHA-256, MGF1-SHA-256, empty label.
    /// The result is one modulus long and differs on every call (OAEP is randomized).
    ///
    /// # Panics
    /// If aws-lc's RNG fails. (A 32-byte key always fits: OAEP-SHA-256 under a 2048-bit key
    /// carries up to 190 bytes.)
    pub fn wrap_content_key(&self, key: &ContentKey) -> Vec<u8> {
        let encrypter = &self.inner.encrypter;
        let mut wrapped = vec![0u8; encrypter.ciphertext_size()];
        match encrypter.encrypt(&OAEP_SHA256_MGF1SHA256, key.as_bytes(), &mut wrapped, None) {
            Ok(out) => {
                let len = out.len();
                wrapped.truncate(len);
                wrapped
            }
            Err(err) => panic!("rsa-oaep wrapping failed (rng?): {err}"),
        }
    }
}

/// What a getcipher request asks for: the key of an existing torrent, or a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherTarget {
    Torrent(InfoHash),
    New,
}

/// The message a peer signs for `GET /getcipher` (docs/protocol.md 4.3). Built here and nowhere
/// else, so the peer that signs and the tracker that verifies cannot disagree on a byte.
///
/// The lines cannot be confused with one another only if `username` has no line break and
/// `nonce` is 32 to 64 hex digits; the tracker checks both before it verifies.
#[derive(Debug, Clone, Copy)]
pub struct GetcipherMessage<'a> {
    pub username: &'a str,
    pub target: CipherTarget,
    /// Unix seconds.
    pub ts: u64,
    pub nonce: &'a str,
    /// SHA-256 of the SPKI DER of the key that signs ([`PublicIdentity::spki_sha256`]).
    pub spki_sha256: [u8; 32],
}

impl GetcipherMessage<'_> {
    /// The UTF-8 lines `ivcsd-getcipher/1`, username, lowercase hex info hash or `new`, ts,
    /// nonce, lowercase hex SPKI SHA-256, joined by `\n`, without a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let target = match self.target {
            CipherTarget::Torrent(info_hash) => info_hash.to_hex(),
            CipherTarget::New => "new".to_owned(),
        };
        [
            GETCIPHER_MAGIC,
            self.username,
            &target,
            &self.ts.to_string(),
            self.nonce,
            &hex::encode(self.spki_sha256),
        ]
        .join("\n")
        .into_bytes()
    }
}

/// `=` padding is optional: some clients strip it, others keep it.
const LENIENT_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_CONFIG);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_CONFIG);

/// Decodes base64 in the standard or the URL-safe alphabet, with or without `=` padding, as
/// getcipher's `key` and `sign` may come (docs/protocol.md 4.3). Percent-decoding is the caller's
/// job.
///
/// # Errors
/// [`IdentityError::Base64MixedAlphabet`] if both alphabets' special characters occur, and
/// [`IdentityError::Base64`] for any other invalid input (bad characters, bad length,
/// misplaced padding, non-zero trailing bits).
pub fn decode_base64_lenient(s: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let standard = s.iter().any(|&c| c == b'+' || c == b'/');
    let url_safe = s.iter().any(|&c| c == b'-' || c == b'_');
    let engine = match (standard, url_safe) {
        (true, true) => return Err(IdentityError::Base64MixedAlphabet),
        (false, true) => &LENIENT_URL_SAFE,
        _ => &LENIENT_STANDARD,
    };
    engine.decode(s).map_err(IdentityError::Base64)
}
