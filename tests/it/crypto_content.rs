//! Block keying and content encryption against tests/data/vectors/blocks.json (CIPHER.md 6.2)
//! and tests/data/vectors/aes-256-ctr.json (docs/protocol.md 6.4, made with openssl by
//! aes-256-ctr.py beside it), and properties of `apply_keystream` over arbitrary ranges for
//! both suites.

use ivcsd::crypto::content::{BLOCK_LEN, Cipher, ContentCipher, ContentKey};
use ivcsd::crypto::rc4plus::Rc4Plus;
use proptest::prelude::*;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

fn vector_file(name: &str) -> Value {
    let path = format!("{}/tests/data/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("the vector file is in the repository");
    serde_json::from_str(&text).expect("the vector file is valid json")
}

fn vectors() -> Value {
    vector_file("blocks.json")
}

fn rc4plus(key: &ContentKey) -> ContentCipher {
    ContentCipher::new(Cipher::Rc4Plus, key)
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    let text = v[name]
        .as_str()
        .unwrap_or_else(|| panic!("field {name} is a string"));
    hex::decode(text).unwrap_or_else(|e| panic!("field {name}: {e}"))
}

fn vector_key(all: &Value) -> ContentKey {
    let bytes: [u8; 32] = hex_field(all, "content_key")
        .try_into()
        .expect("32-byte key");
    ContentKey::from_bytes(bytes)
}

fn usize_field(v: &Value, name: &str) -> usize {
    usize::try_from(v[name].as_u64().unwrap_or_else(|| panic!("field {name}"))).expect("fits")
}

#[test]
fn key_check_vector() {
    let all = vectors();
    let key = vector_key(&all);
    assert_eq!(key.key_check()[..], hex_field(&all, "key_check")[..]);
}

#[test]
fn every_block_vector() {
    let all = vectors();
    let key = vector_key(&all);
    let blocks = all["blocks"].as_array().expect("blocks is a list");
    assert_eq!(blocks.len(), 5, "the vector file changed; review this test");
    for v in blocks {
        let block = v["block"].as_u64().expect("block");
        let len = usize_field(v, "len");
        assert_eq!(
            key.block_key(block)[..],
            hex_field(v, "block_key")[..],
            "block {block} key"
        );

        // The bare cipher under the block key...
        let mut stream = vec![0u8; len];
        Rc4Plus::with_key32(&key.block_key(block)).fill_keystream(&mut stream);
        let digest: [u8; 32] = Sha256::digest(&stream).into();
        assert_eq!(
            digest[..],
            hex_field(v, "sha256")[..],
            "block {block} sha256"
        );
        assert_eq!(
            stream[..64],
            hex_field(v, "first64")[..],
            "block {block} first64"
        );
        assert_eq!(
            stream[len - 64..],
            hex_field(v, "last64")[..],
            "block {block} last64"
        );

        // ...is what the content functions apply at the block's absolute offset.
        let offset = block * BLOCK_LEN as u64;
        let mut zeros = vec![0u8; len];
        rc4plus(&key).apply_keystream(offset, &mut zeros);
        assert_eq!(zeros, stream, "block {block} through apply_keystream");
        let mut zeros = vec![0u8; len];
        rc4plus(&key).apply_keystream_parallel(offset, &mut zeros);
        assert_eq!(
            zeros, stream,
            "block {block} through apply_keystream_parallel"
        );
    }
}

/// The plaintext of the `content` vector: SHA-256("ivcsd plaintext shared/0"),
/// SHA-256("ivcsd plaintext shared/1"), ... concatenated and cut to `len`.
fn vector_plaintext(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut n = 0u64;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(format!("ivcsd plaintext shared/{n}")));
        n += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn content_vector() {
    check_content_vector(Cipher::Rc4Plus, &vectors());
}

#[test]
fn aes_256_ctr_content_vector() {
    check_content_vector(Cipher::Aes256Ctr, &vector_file("aes-256-ctr.json"));
}

/// The `content` vector of `all` under `suite`: the ciphertext, its piece hashes, the same
/// bytes piece by piece and in parallel, and the plaintext back.
fn check_content_vector(suite: Cipher, all: &Value) {
    let key = vector_key(all);
    let cipher = ContentCipher::new(suite, &key);
    let content = &all["content"];
    let len = usize_field(content, "length");
    let piece_length = usize_field(content, "piece_length");
    let mut data = vector_plaintext(len);
    assert_eq!(
        Sha256::digest(&data)[..],
        hex_field(&vectors()["content"], "plaintext_sha256")[..],
        "plaintext rule (blocks.json's for both suites)"
    );
    let plaintext = data.clone();

    cipher.apply_keystream(0, &mut data);
    assert_eq!(
        Sha256::digest(&data)[..],
        hex_field(content, "ciphertext_sha256")[..],
        "{suite}"
    );
    assert_eq!(data[..64], hex_field(content, "ciphertext_first64")[..]);
    let pieces = content["pieces_sha1"]
        .as_array()
        .expect("pieces_sha1 is a list");
    assert_eq!(pieces.len(), len.div_ceil(piece_length));
    for (index, (piece, expected)) in data.chunks(piece_length).zip(pieces).enumerate() {
        let expected = hex::decode(expected.as_str().expect("hex")).expect("hex");
        assert_eq!(
            Sha1::digest(piece)[..],
            expected[..],
            "{suite} piece {index}"
        );
    }

    // Piece by piece, and in parallel, give the same ciphertext.
    let mut by_piece = plaintext.clone();
    for (index, piece) in by_piece.chunks_mut(piece_length).enumerate() {
        cipher.apply_keystream((index * piece_length) as u64, piece);
    }
    assert_eq!(by_piece, data);
    let mut parallel = plaintext.clone();
    cipher.apply_keystream_parallel(0, &mut parallel);
    assert_eq!(parallel, data);

    // And decryption gives the plaintext back.
    cipher.apply_keystream(0, &mut data);
    assert_eq!(data, plaintext);
}

#[test]
fn aes_256_ctr_ranges_anywhere_match_openssl() {
    let all = vector_file("aes-256-ctr.json");
    let cipher = ContentCipher::new(Cipher::Aes256Ctr, &vector_key(&all));
    let ranges = all["ranges"].as_array().expect("ranges is a list");
    assert_eq!(ranges.len(), 7, "the vector file changed; review this test");
    for v in ranges {
        let offset = v["offset"].as_u64().expect("offset");
        let mut buf = vec![0u8; usize_field(v, "len")];
        cipher.apply_keystream(offset, &mut buf);
        assert_eq!(buf, hex_field(v, "keystream"), "range at offset {offset}");
    }
}

/// The keystream of content bytes `offset..offset + len`, block by block from each block's
/// start with the bare cipher: the reference the optimised paths are held to.
fn reference_keystream(key: &ContentKey, offset: u64, len: usize) -> Vec<u8> {
    let block_len = BLOCK_LEN as u64;
    let end = offset + len as u64;
    let mut out = Vec::with_capacity(len);
    let mut block = offset / block_len;
    while block * block_len < end {
        let mut stream = vec![0u8; BLOCK_LEN];
        Rc4Plus::with_key32(&key.block_key(block)).fill_keystream(&mut stream);
        let from = offset.max(block * block_len) - block * block_len;
        let to = end.min((block + 1) * block_len) - block * block_len;
        out.extend_from_slice(&stream[from as usize..to as usize]);
        block += 1;
    }
    out
}

fn key_strategy() -> impl Strategy<Value = ContentKey> {
    any::<[u8; 32]>().prop_map(ContentKey::from_bytes)
}

fn cipher_strategy() -> impl Strategy<Value = ContentCipher> {
    (key_strategy(), prop::sample::select(Cipher::ALL.to_vec()))
        .prop_map(|(key, suite)| ContentCipher::new(suite, &key))
}

/// Offsets near block boundaries are the interesting ones; mix them with arbitrary ones.
fn offset_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..40, -3i64..4)
            .prop_map(|(block, delta)| { (block * BLOCK_LEN as u64).saturating_add_signed(delta) }),
        0u64..(1 << 40),
        (u64::MAX >> 15)..(u64::MAX >> 14),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn decrypt_of_encrypt_is_identity(
        cipher in cipher_strategy(),
        offset in offset_strategy(),
        data in proptest::collection::vec(any::<u8>(), 0..5 * BLOCK_LEN),
    ) {
        let mut buf = data.clone();
        cipher.apply_keystream(offset, &mut buf);
        if data.len() >= 16 {
            prop_assert_ne!(&buf, &data);
        }
        cipher.apply_keystream(offset, &mut buf);
        prop_assert_eq!(buf, data);
    }

    #[test]
    fn any_range_matches_the_block_reference(
        key in key_strategy(),
        offset in offset_strategy(),
        len in 0usize..6 * BLOCK_LEN,
    ) {
        let mut buf = vec![0u8; len];
        rc4plus(&key).apply_keystream(offset, &mut buf);
        prop_assert_eq!(&buf, &reference_keystream(&key, offset, len));
    }

    #[test]
    fn random_splits_equal_the_whole_range(
        cipher in cipher_strategy(),
        offset in offset_strategy(),
        len in 0usize..5 * BLOCK_LEN,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut whole = vec![0u8; len];
        cipher.apply_keystream(offset, &mut whole);

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
        points.push(0);
        points.push(len);
        points.sort_unstable();
        let mut split = vec![0u8; len];
        for pair in points.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            cipher.apply_keystream(offset + from as u64, &mut split[from..to]);
        }
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn parallel_equals_sequential(
        cipher in cipher_strategy(),
        offset in offset_strategy(),
        len in 0usize..80 * BLOCK_LEN,
    ) {
        let mut sequential = vec![0x33u8; len];
        cipher.apply_keystream(offset, &mut sequential);
        let mut parallel = vec![0x33u8; len];
        cipher.apply_keystream_parallel(offset, &mut parallel);
        prop_assert_eq!(parallel, sequential);
    }
}

/// `ivcsd --version` names the rc4+ kernel in use and how it was chosen; the environment
/// variable forces each kernel of this build, and a name it does not know is an error.
#[test]
fn version_names_the_rc4plus_kernel_and_the_variable_forces_one() {
    use ivcsd::crypto::rc4plus::Kernel;
    use std::process::Command;
    let ivcsd = env!("CARGO_BIN_EXE_ivcsd");
    let run = |kernel: Option<&str>| {
        let mut command = Command::new(ivcsd);
        command.arg("--version").env_remove("IVCSD_RC4PLUS_KERNEL");
        if let Some(name) = kernel {
            command.env("IVCSD_RC4PLUS_KERNEL", name);
        }
        command.output().expect("ivcsd runs")
    };
    let measured = run(None);
    assert!(measured.status.success());
    let text = String::from_utf8_lossy(&measured.stdout).into_owned();
    let named = Kernel::ALL
        .iter()
        .filter(|k| text.contains(&format!("rc4+ kernel: {k} (measured fastest on this cpu)")))
        .count();
    assert_eq!(named, 1, "{text}");
    for kernel in Kernel::ALL {
        let out = run(Some(kernel.name()));
        assert!(out.status.success(), "{kernel}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!(
                "rc4+ kernel: {kernel} (forced by IVCSD_RC4PLUS_KERNEL)"
            )),
            "{kernel}"
        );
    }
    let bad = run(Some("fastest"));
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: IVCSD_RC4PLUS_KERNEL=fastest: unknown rc4+ kernel (known: "),
        "{err}"
    );
}
