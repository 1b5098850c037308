//! RSA identities (docs/protocol.md 4.3): keys, PSS signatures, OAEP wrapping, identity files,
//! the signed getcipher message and lenient base64. Keys are the PEM fixtures of tests/data/keys
//! (made with OpenSSL, which also made the interop signature and wrapped keys); the only key
//! generated here is one 2048-bit key, shared through a `OnceLock`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use ivcsd::crypto::content::ContentKey;
use ivcsd::crypto::identity::{
    CipherTarget, GetcipherMessage, Identity, IdentityError, MIN_RSA_BITS, PublicIdentity,
    decode_base64_lenient,
};
use ivcsd::types::InfoHash;
use sha2::{Digest, Sha256};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys")).join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("pem fixtures are text")
}

fn key2048() -> &'static Identity {
    static KEY: OnceLock<Identity> = OnceLock::new();
    KEY.get_or_init(|| Identity::from_pkcs8_pem(&fixture_text("rsa2048.pem")).expect("fixture"))
}

fn key3072() -> &'static Identity {
    static KEY: OnceLock<Identity> = OnceLock::new();
    KEY.get_or_init(|| Identity::from_pkcs8_pem(&fixture_text("rsa3072.pem")).expect("fixture"))
}

/// The one generated key of this test binary: another 2048-bit key, unrelated to the fixture.
fn generated() -> &'static Identity {
    static KEY: OnceLock<Identity> = OnceLock::new();
    KEY.get_or_init(|| Identity::generate(MIN_RSA_BITS).expect("key generation"))
}

#[test]
fn fixtures_load_with_the_openssl_public_key() {
    for (identity, bits, der) in [
        (key2048(), 2048, "rsa2048.spki.der"),
        (key3072(), 3072, "rsa3072.spki.der"),
    ] {
        let public = identity.public();
        assert_eq!(public.bits(), bits);
        assert_eq!(public.spki_der(), &fixture(der)[..], "{der}");
        let digest: [u8; 32] = Sha256::digest(fixture(der)).into();
        assert_eq!(public.spki_sha256(), digest);
        let parsed = PublicIdentity::from_spki_der(&fixture(der)).expect(der);
        assert_eq!(parsed, public);
        assert_eq!(parsed.bits(), bits);
    }
}

#[test]
fn generated_key_has_the_requested_size_and_survives_pem() {
    let identity = generated();
    assert_eq!(identity.public().bits(), 2048);
    let pem = identity.to_pkcs8_pem().expect("encode");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let again = Identity::from_pkcs8_pem(&pem).expect("decode");
    assert_eq!(again.public(), identity.public());
    assert_ne!(identity.public(), key2048().public());
}

#[test]
fn sign_verify_round_trip() {
    for identity in [key2048(), key3072()] {
        let msg = b"ivcsd-getcipher/1\nalice\nnew";
        let sig = identity.sign(msg);
        assert_eq!(sig.len(), identity.public().bits() / 8);
        identity
            .public()
            .verify(msg, &sig)
            .expect("own signature verifies");
        // PSS is randomized, and both signatures verify.
        let sig2 = identity.sign(msg);
        assert_ne!(sig, sig2);
        identity
            .public()
            .verify(msg, &sig2)
            .expect("second signature verifies");
    }
}

#[test]
fn verify_refuses_changed_message_signature_or_key() {
    let msg = b"the message".to_vec();
    let sig = key2048().sign(&msg);
    let public = key2048().public();

    let mut changed_msg = msg.clone();
    changed_msg[0] ^= 1;
    let mut changed_sig = sig.clone();
    changed_sig[100] ^= 0x80;
    macro_rules! refused {
        ($($what:literal: $public:expr, $msg:expr, $sig:expr;)*) => {$(
            assert!(
                matches!($public.verify($msg, $sig), Err(IdentityError::BadSignature)),
                $what
            );
        )*};
    }
    refused!(
        "changed message": public, &changed_msg, &sig;
        "changed signature": public, &msg, &changed_sig;
        "empty message": public, b"", &sig;
        "empty signature": public, &msg, &[];
        "truncated signature": public, &msg, &sig[..255];
        "signature with a byte appended": public, &msg, &[&sig[..], &[0]].concat();
        "signature of all zeros": public, &msg, &[0u8; 256];
        "signature of all ones": public, &msg, &[0xffu8; 256];
        "another key's public half": generated().public(), &msg, &sig;
        "a 3072-bit key": key3072().public(), &msg, &sig;
    );
}

#[test]
fn verifies_an_openssl_pss_signature() {
    // docs/protocol.md 4.3's parameters exactly: SHA-256, MGF1-SHA-256, salt 32, as OpenSSL
    // makes them.
    let msg = fixture("message.txt");
    let sig = fixture("message.rsa2048.pss.sig");
    key2048()
        .public()
        .verify(&msg, &sig)
        .expect("openssl signature");
    let mut other = msg.clone();
    other.push(b'x');
    assert!(matches!(
        key2048().public().verify(&other, &sig),
        Err(IdentityError::BadSignature)
    ));
}

#[test]
fn wrap_unwrap_round_trip() {
    for identity in [key2048(), key3072()] {
        let key = ContentKey::generate();
        let wrapped = identity.public().wrap_content_key(&key);
        assert_eq!(wrapped.len(), identity.public().bits() / 8);
        let again = identity.public().wrap_content_key(&key);
        assert_ne!(wrapped, again, "oaep is randomized");
        let unwrapped = identity.unwrap_content_key(&wrapped).expect("unwrap");
        assert_eq!(unwrapped.as_bytes(), key.as_bytes());
        assert_eq!(
            identity
                .unwrap_content_key(&again)
                .expect("unwrap")
                .as_bytes(),
            key.as_bytes()
        );
    }
}

#[test]
fn unwraps_an_openssl_oaep_wrapped_key() {
    let key = identity_unwrap(&fixture("key32.rsa2048.oaep")).expect("openssl-wrapped key");
    assert_eq!(&key.as_bytes()[..], &fixture("key32.bin")[..]);
}

fn identity_unwrap(wrapped: &[u8]) -> Result<ContentKey, IdentityError> {
    key2048().unwrap_content_key(wrapped)
}

#[test]
fn unwrap_refuses_what_is_not_a_key_for_it() {
    let key = ContentKey::generate();
    let for_2048 = key2048().public().wrap_content_key(&key);
    let for_other = generated().public().wrap_content_key(&key);
    let for_3072 = key3072().public().wrap_content_key(&key);
    let mut corrupted = for_2048.clone();
    corrupted[17] ^= 1;

    macro_rules! refused {
        ($($what:literal: $wrapped:expr => $pattern:pat,)*) => {$(
            let result = identity_unwrap($wrapped);
            assert!(matches!(result, Err($pattern)), "{}: {:?}", $what, result);
        )*};
    }
    refused!(
        "wrapped for another 2048-bit key": &for_other => IdentityError::UnwrapFailed,
        "corrupted": &corrupted => IdentityError::UnwrapFailed,
        "all zeros": &[0u8; 256] => IdentityError::UnwrapFailed,
        "all ones (above the modulus)": &[0xffu8; 256] => IdentityError::UnwrapFailed,
        "wrapped for a 3072-bit key": &for_3072
            => IdentityError::WrappedKeyLength { len: 384, expected: 256 },
        "empty": &[] => IdentityError::WrappedKeyLength { len: 0, expected: 256 },
        "one byte short": &for_2048[..255] => IdentityError::WrappedKeyLength { len: 255, expected: 256 },
        "a 31-byte key": &fixture("key31.rsa2048.oaep") => IdentityError::UnwrappedKeyLength { len: 31 },
    );
}

#[test]
fn short_and_long_keys_are_refused() {
    macro_rules! refused {
        ($($what:literal: $result:expr => $pattern:pat,)*) => {$(
            let result = $result;
            assert!(matches!(result, Err($pattern)), "{}: {:?}", $what, result);
        )*};
    }
    refused!(
        "1024-bit pem": Identity::from_pkcs8_pem(&fixture_text("rsa1024.pem"))
            => IdentityError::KeyTooShort { bits: 1024 },
        "1024-bit spki": PublicIdentity::from_spki_der(&fixture("rsa1024.spki.der"))
            => IdentityError::KeyTooShort { bits: 1024 },
        "generate 1024": Identity::generate(1024) => IdentityError::KeyTooShort { bits: 1024 },
        "generate 2047": Identity::generate(2047) => IdentityError::KeyTooShort { bits: 2047 },
        "generate 0": Identity::generate(0) => IdentityError::KeyTooShort { bits: 0 },
        "generate 8200": Identity::generate(8200) => IdentityError::KeyTooLong { bits: 8200 },
        "generate usize::MAX": Identity::generate(usize::MAX)
            => IdentityError::KeyTooLong { bits: usize::MAX },
    );
    let message = Identity::generate(1024).unwrap_err().to_string();
    assert_eq!(
        message,
        "rsa key of 1024 bits is too short: at least 2048 bits are required"
    );
}

#[test]
fn malformed_private_keys() {
    let good = fixture_text("rsa2048.pem");
    let truncated = &good[..good.len() / 2];
    let body_changed = good.replacen("MII", "MIJ", 1);
    let public_pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
    macro_rules! malformed {
        ($($what:literal: $pem:expr => $pattern:pat,)*) => {$(
            let result = Identity::from_pkcs8_pem($pem);
            assert!(matches!(result, Err($pattern)), "{}: {:?}", $what, result);
        )*};
    }
    malformed!(
        "empty": "" => IdentityError::PrivateKeyPem(_),
        "not pem": "hello" => IdentityError::PrivateKeyPem(_),
        "truncated": truncated => IdentityError::PrivateKeyPem(_),
        "changed body": &body_changed => IdentityError::PrivateKeyPem(_),
        "a public key": public_pem => IdentityError::PrivateKeyPem(_),
        "pkcs#1": &fixture_text("rsa2048.pkcs1.pem") => IdentityError::Pkcs1Pem,
        "encrypted pkcs#8": &fixture_text("rsa2048.encrypted.pem") => IdentityError::EncryptedPem,
    );
    assert!(
        Identity::from_pkcs8_pem(&fixture_text("rsa2048.pkcs1.pem"))
            .unwrap_err()
            .to_string()
            .contains("openssl pkcs8 -topk8 -nocrypt")
    );
}

#[test]
fn malformed_public_keys() {
    let good = fixture("rsa2048.spki.der");
    let mut trailing = good.clone();
    trailing.push(0);
    let mut changed_tag = good.clone();
    changed_tag[0] = 0x31;
    macro_rules! malformed {
        ($($what:literal: $der:expr => $pattern:pat,)*) => {$(
            let result = PublicIdentity::from_spki_der($der);
            assert!(matches!(result, Err($pattern)), "{}: {:?}", $what, result);
        )*};
    }
    malformed!(
        "empty": &[] => IdentityError::PublicKeyDer(_),
        "garbage": b"not a key at all" => IdentityError::PublicKeyDer(_),
        "truncated": &good[..good.len() - 1] => IdentityError::PublicKeyDer(_),
        "half": &good[..good.len() / 2] => IdentityError::PublicKeyDer(_),
        "trailing byte": &trailing => IdentityError::PublicKeyDer(_),
        "not a sequence": &changed_tag => IdentityError::PublicKeyDer(_),
        "an ec key": &fixture("ec.spki.der") => IdentityError::PublicKeyDer(_),
        "a pem file": fixture("rsa2048.pem").as_slice() => IdentityError::PublicKeyDer(_),
    );
    let message = PublicIdentity::from_spki_der(b"x").unwrap_err().to_string();
    assert!(
        message.starts_with("invalid spki der public key: "),
        "{message}"
    );
}

#[test]
fn save_writes_mode_0600_atomically_and_load_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/config/identity.pem");
    key2048().save(&path).expect("save");

    let mode = std::fs::metadata(&path)
        .expect("saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "file mode {mode:o}");
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "directory mode {dir_mode:o}");
    let loaded = Identity::load(&path).expect("load");
    assert_eq!(loaded.public(), key2048().public());

    // Saving again replaces the file, still 0600, and leaves no temporary file behind.
    generated().save(&path).expect("save over");
    assert_eq!(
        Identity::load(&path).expect("load").public(),
        generated().public()
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["identity.pem"]);
}

#[test]
fn load_or_create_creates_once_then_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ivcsd/identity.pem");
    // The second (and last) key this test binary generates.
    let (created, was_created) = Identity::load_or_create(&path, 2048).expect("create");
    assert!(was_created);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (loaded, was_created) = Identity::load_or_create(&path, 2048).expect("load");
    assert!(!was_created);
    assert_eq!(loaded.public(), created.public());

    // A broken file is reported, never replaced.
    std::fs::write(&path, "broken").unwrap();
    let err = Identity::load_or_create(&path, 2048).unwrap_err();
    assert!(matches!(err, IdentityError::InFile { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"broken");
}

#[test]
fn load_and_save_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let err = Identity::load(&missing).unwrap_err();
    assert!(matches!(err, IdentityError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "garbage").unwrap();
    let err = Identity::load(&garbage).unwrap_err();
    assert!(
        matches!(&err, IdentityError::InFile { error, .. } if matches!(**error, IdentityError::PrivateKeyPem(_))),
        "{err:?}"
    );
    assert!(err.to_string().starts_with(&format!(
        "identity file {}: invalid pkcs#8",
        garbage.display()
    )));

    let short = dir.path().join("short.pem");
    std::fs::write(&short, fixture("rsa1024.pem")).unwrap();
    let err = Identity::load(&short).unwrap_err();
    assert!(
        matches!(&err, IdentityError::InFile { error, .. } if matches!(**error, IdentityError::KeyTooShort { bits: 1024 })),
        "{err:?}"
    );

    // The parent is a file, so the directory cannot be created.
    let blocked = garbage.join("identity.pem");
    let err = key2048().save(&blocked).unwrap_err();
    assert!(matches!(err, IdentityError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    // A path that names a directory is refused.
    let err = key2048().save(dir.path()).unwrap_err();
    assert!(matches!(err, IdentityError::Write { .. }), "{err:?}");
}

#[test]
fn debug_shows_no_private_key() {
    let pem = key2048().to_pkcs8_pem().unwrap();
    let debug = format!("{:?}", key2048());
    assert!(
        debug.starts_with("Identity { bits: 2048, spki_sha256: \""),
        "{debug}"
    );
    // No line of the key's base64 appears in it.
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(&line[..16]), "{debug}");
    }
}

#[test]
fn getcipher_message_bytes_are_pinned() {
    let spki_sha256: [u8; 32] = std::array::from_fn(|n| n as u8);
    let info_hash = InfoHash(std::array::from_fn(|n| 0xa0 + n as u8));
    let torrent = GetcipherMessage {
        username: "alice",
        target: CipherTarget::Torrent(info_hash),
        ts: 1_700_000_000,
        nonce: "00112233445566778899aabbccddeeff",
        spki_sha256,
    };
    assert_eq!(
        torrent.to_bytes(),
        b"ivcsd-getcipher/1\n\
          alice\n\
          a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3\n\
          1700000000\n\
          00112233445566778899aabbccddeeff\n\
          000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    );
    let new = GetcipherMessage {
        username: "wyf1",
        target: CipherTarget::New,
        ts: 0,
        nonce: "ABCDEF0123456789abcdef0123456789",
        spki_sha256: [0xff; 32],
    };
    let expected = format!(
        "ivcsd-getcipher/1\nwyf1\nnew\n0\nABCDEF0123456789abcdef0123456789\n{}",
        "ff".repeat(32)
    );
    assert_eq!(new.to_bytes(), expected.as_bytes());
    // And what a peer signs, the tracker verifies.
    let msg = GetcipherMessage {
        spki_sha256: key2048().public().spki_sha256(),
        ..torrent
    }
    .to_bytes();
    key2048()
        .public()
        .verify(&msg, &key2048().sign(&msg))
        .expect("verifies");
}

#[test]
fn lenient_base64() {
    // 0xfb 0xff 0xbf encodes as "+/+/" (standard) and "-_-_" (url-safe).
    let bytes: &[u8] = &[0xfb, 0xff, 0xbf, 0x01];
    macro_rules! decodes {
        ($($input:literal => $expected:expr;)*) => {$(
            assert_eq!(decode_base64_lenient($input).expect(stringify!($input)), $expected, "{:?}", $input);
        )*};
    }
    decodes!(
        b"+/+/AQ==" => bytes;
        b"+/+/AQ" => bytes;
        b"-_-_AQ==" => bytes;
        b"-_-_AQ" => bytes;
        b"" => b"";
        b"aGVsbG8=" => b"hello";
        b"aGVsbG8" => b"hello";
    );
    let der = fixture("rsa2048.spki.der");
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    assert_eq!(
        decode_base64_lenient(STANDARD.encode(&der).as_bytes()).unwrap(),
        der
    );
    assert_eq!(
        decode_base64_lenient(URL_SAFE_NO_PAD.encode(&der).as_bytes()).unwrap(),
        der
    );

    macro_rules! malformed {
        ($($input:literal => $pattern:pat,)*) => {$(
            let result = decode_base64_lenient($input);
            assert!(matches!(result, Err($pattern)), "{:?}: {:?}", $input, result);
        )*};
    }
    malformed!(
        b"+/-_" => IdentityError::Base64MixedAlphabet,
        b"a+b_" => IdentityError::Base64MixedAlphabet,
        b"a" => IdentityError::Base64(_),
        b"aGVsbG8==" => IdentityError::Base64(_),
        b"aGV sbG8=" => IdentityError::Base64(_),
        b"aGVs%2B" => IdentityError::Base64(_),
        b"=aGVsbG8" => IdentityError::Base64(_),
        b"aGVsbG9=" => IdentityError::Base64(_),
        b"aGVsbG8=\n" => IdentityError::Base64(_),
    );
}

// --- Interoperability of the two RSA implementations (src/crypto/identity.rs module doc) -------
// Peers sign and unwrap with the `rsa` crate; the tracker verifies and wraps with aws-lc-rs.
// Each direction is checked against the other library called directly, not only through
// ivcsd's own wrappers, so a change on either side cannot pass by agreeing with itself.

/// The fixtures' private keys as the `rsa` crate and aws-lc-rs each load them.
fn both_private_keys(pem: &str) -> (rsa::PrivateKey, Vec<u8>) {
    use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let key = rsa::PrivateKey::from_pkcs8_pem(pem).expect("pkcs8 fixture");
    let der = key.to_pkcs8_der().expect("pkcs8 der").as_bytes().to_vec();
    (key, der)
}

const INTEROP_MESSAGE: &[u8] =
    b"ivcsd-getcipher/1\nu1\nnew\n1790000000\n00112233445566778899aabbccddeeff\n00";

#[test]
fn rsa_crate_pss_signatures_verify_under_aws_lc() {
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
    for identity in [key2048(), key3072(), generated()] {
        let public = identity.public();
        let sig = identity.sign(INTEROP_MESSAGE);
        let aws = UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, public.spki_der());
        aws.verify(INTEROP_MESSAGE, &sig)
            .expect("aws-lc verifies an rsa-crate signature");
        public
            .verify(INTEROP_MESSAGE, &sig)
            .expect("ivcsd verifies");
        let mut changed = sig.clone();
        changed[9] ^= 0x40;
        assert!(aws.verify(INTEROP_MESSAGE, &changed).is_err());
        assert!(matches!(
            public.verify(INTEROP_MESSAGE, &changed),
            Err(IdentityError::BadSignature)
        ));
    }
}

#[test]
fn aws_lc_pss_signatures_verify_under_the_rsa_crate() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
    for name in ["rsa2048.pem", "rsa3072.pem"] {
        let (rsa_key, der) = both_private_keys(&fixture_text(name));
        let pair = RsaKeyPair::from_pkcs8(&der).expect("aws-lc loads the fixture");
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &RSA_PSS_SHA256,
            &SystemRandom::new(),
            INTEROP_MESSAGE,
            &mut sig,
        )
        .expect("aws-lc signs");
        rsa_key
            .to_public_key()
            .pss_verify::<Sha256>(INTEROP_MESSAGE, &sig)
            .expect("the rsa crate verifies an aws-lc signature");
        let public = PublicIdentity::from_spki_der(&fixture(&name.replace(".pem", ".spki.der")))
            .expect("fixture spki");
        public
            .verify(INTEROP_MESSAGE, &sig)
            .expect("ivcsd verifies");
    }
}

#[test]
fn aws_lc_wraps_unwrap_under_the_rsa_crate() {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    for (identity, name) in [(key2048(), "rsa2048.pem"), (key3072(), "rsa3072.pem")] {
        let (rsa_key, _) = both_private_keys(&fixture_text(name));
        let key = ContentKey::generate();
        // Through ivcsd's wrapper (aws-lc inside) ...
        let by_ivcsd = identity.public().wrap_content_key(&key);
        // ... and with aws-lc called directly.
        let aws = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(identity.public().spki_der()).expect("spki"),
        )
        .expect("oaep key");
        let mut by_aws = vec![0u8; aws.ciphertext_size()];
        let by_aws = aws
            .encrypt(&OAEP_SHA256_MGF1SHA256, key.as_bytes(), &mut by_aws, None)
            .expect("aws-lc wraps")
            .to_vec();
        for wrapped in [&by_ivcsd, &by_aws] {
            let plain = rsa_key
                .oaep_decrypt::<Sha256>(wrapped)
                .expect("the rsa crate unwraps an aws-lc wrap");
            assert_eq!(&plain[..], &key.as_bytes()[..]);
            let unwrapped = identity.unwrap_content_key(wrapped).expect("ivcsd unwraps");
            assert_eq!(unwrapped.as_bytes(), key.as_bytes());
        }
    }
}

#[test]
fn rsa_crate_wraps_unwrap_under_aws_lc() {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
    for name in ["rsa2048.pem", "rsa3072.pem"] {
        let (rsa_key, der) = both_private_keys(&fixture_text(name));
        let key = ContentKey::generate();
        let wrapped = rsa_key
            .to_public_key()
            .oaep_encrypt::<Sha256>(key.as_bytes())
            .expect("the rsa crate wraps");
        let aws = OaepPrivateDecryptingKey::new(
            PrivateDecryptingKey::from_pkcs8(&der).expect("aws-lc loads the fixture"),
        )
        .expect("oaep key");
        let mut plain = vec![0u8; aws.min_output_size()];
        let plain = aws
            .decrypt(&OAEP_SHA256_MGF1SHA256, &wrapped, &mut plain, None)
            .expect("aws-lc unwraps an rsa-crate wrap");
        assert_eq!(plain, &key.as_bytes()[..]);
    }
}

#[test]
fn pss_salt_must_be_32_bytes() {
    // docs/protocol.md 4.3 fixes the salt at 32 bytes (SHA-256's length). aws-lc's
    // RSA_PSS_2048_8192_SHA256 checks exactly that, as the rsa crate's pss_verify did.
    use rsa::sha2::Digest as _;
    let (rsa_key, _) = both_private_keys(&fixture_text("rsa2048.pem"));
    let hashed = rsa::sha2::Sha256::digest(INTEROP_MESSAGE);
    for (salt, verifies) in [(32, true), (20, false), (0, false), (64, false)] {
        let sig = rsa_key
            .sign_with_rng(
                &mut rand::rngs::SysRng,
                rsa::pss::Pss::<rsa::sha2::Sha256>::new_with_salt(salt),
                &hashed,
            )
            .expect("rsa crate signs");
        let result = key2048().public().verify(INTEROP_MESSAGE, &sig);
        if verifies {
            result.expect("salt 32 verifies");
        } else {
            assert!(
                matches!(result, Err(IdentityError::BadSignature)),
                "salt {salt}: {result:?}"
            );
        }
    }
}
