//! Creating torrents from real files in temporary directories: the shared vector, round trips
//! over random layouts, piece hashes of the ciphertext checked independently, and every
//! refusal.

use std::path::Path;

use ivcsd::crypto::content::{ContentCipher, ContentKey};
use ivcsd::metainfo::{
    Cipher, CreateError, GeometryError, Layout, Metainfo, NameProblem, TorrentBuilder,
    create_encrypted, create_plain,
};
use ivcsd::types::KeyId;
use proptest::prelude::*;
use sha1::{Digest, Sha1};
use sha2::Sha256;

const ANNOUNCE: &str = "http://127.0.0.1:6969/announce";

fn key() -> ContentKey {
    ContentKey::from_bytes([0x42; 32])
}

fn key_id() -> KeyId {
    KeyId([0x17; 16])
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Deterministic content that differs per seed and offset.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// SHA-1 of each `piece_length` chunk of `bytes`.
fn piece_hashes(bytes: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    bytes
        .chunks(piece_length)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The shared vector (shared/vectors/blocks.json, `content`): a 50,152-byte plaintext whose
/// ciphertext pieces at 32 KiB have known SHA-1s.
#[test]
fn shared_vector_piece_hashes() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/vectors/blocks.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let c = &vectors["content"];
    let length = c["length"].as_u64().unwrap() as usize;
    let mut plaintext = Vec::new();
    let mut i = 0;
    while plaintext.len() < length {
        plaintext.extend_from_slice(&Sha256::digest(format!("ivcsd plaintext shared/{i}")));
        i += 1;
    }
    plaintext.truncate(length);
    assert_eq!(
        hex(&Sha256::digest(&plaintext)),
        c["plaintext_sha256"].as_str().unwrap()
    );
    let mut key_bytes = [0u8; 32];
    hex_to(vectors["content_key"].as_str().unwrap(), &mut key_bytes);
    let key = ContentKey::from_bytes(key_bytes);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    write(&path, &plaintext);
    let created = create_encrypted(&path, &key, key_id(), ANNOUNCE, Some(32768)).unwrap();
    let info = &created.metainfo.info;
    let expected: Vec<String> = c["pieces_sha1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    let got: Vec<String> = info.pieces.iter().map(|h| hex(h)).collect();
    assert_eq!(got, expected);
    assert_eq!(
        hex(&info.ivcsd.unwrap().check),
        vectors["key_check"].as_str().unwrap()
    );
}

fn hex_to(s: &str, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
}

#[test]
fn an_aes_256_ctr_build_names_its_suite_and_hashes_its_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let plain = content(100_000, 2);
    write(&path, &plain);
    let created = TorrentBuilder::new(&path)
        .announce(ANNOUNCE)
        .piece_length(Some(32768))
        .cipher(Cipher::Aes256Ctr)
        .encrypted(&key(), key_id())
        .unwrap();
    let m = Metainfo::from_bytes(&created.bytes).unwrap();
    assert_eq!(m, created.metainfo);
    let iv = m.info.ivcsd.unwrap();
    assert_eq!(
        (iv.cipher, iv.check),
        (Cipher::Aes256Ctr, key().key_check())
    );
    let mut cipher = plain.clone();
    ContentCipher::new(Cipher::Aes256Ctr, &key()).apply_keystream(0, &mut cipher);
    assert_eq!(m.info.pieces, piece_hashes(&cipher, 32768));
    // The suite is part of the info dictionary: the same content and key under RC4+ is
    // another torrent.
    let rc4plus = create_encrypted(&path, &key(), key_id(), ANNOUNCE, Some(32768)).unwrap();
    assert_ne!(rc4plus.metainfo.info_hash, m.info_hash);
}

#[test]
fn encrypted_single_file_has_spec_5_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let plain = content(100_000, 1);
    write(&path, &plain);
    let created = create_encrypted(&path, &key(), key_id(), ANNOUNCE, None).unwrap();
    let m = &created.metainfo;
    assert_eq!(m.announce.as_deref(), Some(ANNOUNCE));
    assert_eq!(
        m.created_by.as_deref(),
        Some(concat!("ivcsd/", env!("CARGO_PKG_VERSION")))
    );
    assert!(m.creation_date.is_some());
    assert_eq!(m.info.name, "data.bin");
    assert_eq!(m.info.layout, Layout::SingleFile);
    assert_eq!(m.info.piece_length, 256 * 1024);
    assert!(m.info.private);
    let iv = m.info.ivcsd.unwrap();
    assert_eq!(
        (iv.version, iv.cipher, iv.key_id),
        (1, Cipher::Rc4Plus, key_id())
    );
    assert_eq!(iv.check, key().key_check());
    // The pieces are of the ciphertext, not of the plaintext.
    let mut cipher = plain.clone();
    ContentCipher::new(Cipher::Rc4Plus, &key()).apply_keystream(0, &mut cipher);
    assert_eq!(m.info.pieces, piece_hashes(&cipher, 256 * 1024));
    assert_ne!(m.info.pieces, piece_hashes(&plain, 256 * 1024));
    // The bytes are the torrent that was parsed, and parse again to the same value.
    assert_eq!(&Metainfo::from_bytes(&created.bytes).unwrap(), m);
    // The plain variant of the same file: plaintext hashes, no ivcsd, not private.
    let plain_torrent = create_plain(&path, ANNOUNCE, None).unwrap().metainfo;
    assert_eq!(plain_torrent.info.pieces, piece_hashes(&plain, 256 * 1024));
    assert!(plain_torrent.info.ivcsd.is_none());
    assert!(!plain_torrent.info.private);
    assert_ne!(plain_torrent.info_hash, m.info_hash);
}

#[test]
fn directory_order_hidden_files_and_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    write(&root.join("b.txt"), b"bbb");
    write(&root.join("a/z.txt"), b"zz");
    write(&root.join("a-c"), b"c");
    write(&root.join(".hidden"), b"h");
    write(&root.join("a/.x/y"), b"y");
    write(&root.join("empty-file"), b"");
    std::fs::create_dir_all(root.join("empty-dir/deeper")).unwrap();
    let m = create_encrypted(&root, &key(), key_id(), ANNOUNCE, Some(16384))
        .unwrap()
        .metainfo;
    assert_eq!(m.info.layout, Layout::MultiFile);
    assert_eq!(m.info.name, "set");
    let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            "set/.hidden",
            "set/a/.x/y",
            "set/a/z.txt",
            "set/a-c",
            "set/b.txt",
            "set/empty-file"
        ]
    );
    assert_eq!(m.info.total_length, 8);
}

#[test]
fn a_directory_with_one_file_is_still_multi_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/only"), b"x");
    let m = create_plain(&dir.path().join("d"), "", None)
        .unwrap()
        .metainfo;
    assert_eq!(m.info.layout, Layout::MultiFile);
    assert_eq!(m.info.files[0].path, ["d", "only"]);
    assert_eq!(m.announce, None);
}

/// More than one 32 MiB batch, with a last piece that is short: batching must not shift
/// anything.
#[test]
fn content_larger_than_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("big");
    let a = content(20 * 1024 * 1024 + 3, 5);
    let b = content(15 * 1024 * 1024 + 11, 6);
    write(&root.join("a"), &a);
    write(&root.join("b"), &b);
    let mut reports = Vec::new();
    let mut progress = |done: u64, total: u64| reports.push((done, total));
    let m = TorrentBuilder::new(&root)
        .announce(ANNOUNCE)
        .piece_length(Some(16384))
        .progress(&mut progress)
        .plain()
        .unwrap()
        .metainfo;
    let all = [a, b].concat();
    assert_eq!(m.info.pieces, piece_hashes(&all, 16384));
    // One report per 32 MiB batch, the last at the total.
    let total = all.len() as u64;
    assert_eq!(reports, [(32 * 1024 * 1024, total), (total, total)]);
}

// ---- refusals ----

#[test]
fn missing_path_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let err = create_plain(&path, ANNOUNCE, None).unwrap_err();
    assert!(
        matches!(&err, CreateError::Io { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("error reading {}: ", path.display()))
    );
}

#[test]
fn empty_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("e/f")).unwrap();
    let err = create_plain(&dir.path().join("e"), ANNOUNCE, None).unwrap_err();
    assert!(matches!(err, CreateError::Empty { .. }), "{err}");
}

#[test]
fn only_empty_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("e/zero"), b"");
    let err = create_plain(&dir.path().join("e"), ANNOUNCE, None).unwrap_err();
    assert!(matches!(err, CreateError::Empty { .. }), "{err}");
}

#[test]
fn empty_single_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("zero"), b"");
    let err = create_plain(&dir.path().join("zero"), ANNOUNCE, None).unwrap_err();
    assert!(matches!(err, CreateError::Empty { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn symlink_inside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/real"), b"x");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("d/link")).unwrap();
    let err = create_plain(&dir.path().join("d"), ANNOUNCE, None).unwrap_err();
    assert!(
        matches!(&err, CreateError::Symlink { path } if path.ends_with("d/link")),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("is a symbolic link; links are not followed inside a torrent's directory")
    );
}

#[cfg(unix)]
#[test]
fn symlink_given_on_the_command_line_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("real.bin"), b"abc");
    std::os::unix::fs::symlink(dir.path().join("real.bin"), dir.path().join("link.bin")).unwrap();
    let m = create_plain(&dir.path().join("link.bin"), ANNOUNCE, None)
        .unwrap()
        .metainfo;
    assert_eq!(m.info.name, "link.bin");
    assert_eq!(m.info.total_length, 3);
}

#[cfg(unix)]
#[test]
fn fifo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/real"), b"x");
    let fifo = dir.path().join("d/fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let err = create_plain(&dir.path().join("d"), ANNOUNCE, None).unwrap_err();
    assert!(
        matches!(&err, CreateError::SpecialFile { path } if *path == fifo),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn non_utf8_file_name_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    write(&dir.path().join("d").join(name), b"x");
    let err = create_plain(&dir.path().join("d"), ANNOUNCE, None).unwrap_err();
    assert!(matches!(err, CreateError::NotUtf8 { .. }), "{err}");
}

#[test]
fn unsafe_file_names_are_refused() {
    for (name, problem) in [
        ("CON", NameProblem::Reserved),
        ("aux.txt", NameProblem::Reserved),
        ("trailing.", NameProblem::TrailingDotOrSpace),
        ("ab:c", NameProblem::Colon),
        ("back\\slash", NameProblem::Separator),
        ("tab\there", NameProblem::Control),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("d").join(name), b"x");
        let err = create_plain(&dir.path().join("d"), ANNOUNCE, None).unwrap_err();
        assert!(
            matches!(&err, CreateError::UnsafeName { problem: p, .. } if *p == problem),
            "{name}: {err}"
        );
    }
}

#[test]
fn bad_piece_lengths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("f"), b"x");
    for (bad, expected) in [
        (0, GeometryError::PieceLength(0)),
        (1000, GeometryError::PieceLength(1000)),
        (8192, GeometryError::PieceLength(8192)),
        (1 << 30, GeometryError::PieceLengthTooLarge(1 << 30)),
    ] {
        let err = create_plain(&dir.path().join("f"), ANNOUNCE, Some(bad)).unwrap_err();
        assert!(
            matches!(err, CreateError::PieceLength(e) if e == expected),
            "{bad}"
        );
    }
    let err = create_plain(&dir.path().join("f"), ANNOUNCE, Some(1000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--piece-length: piece length 1000 is not a power of two of at least 16384"
    );
}

#[test]
fn announce_with_credentials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("f"), b"x");
    for url in [
        "http://user:pw@tracker/announce",
        "http://tracker/announce?username=u&psw=p",
        "http://tracker/announce?x=1&token=abc",
        "http://tracker/announce?%70sw=p",
    ] {
        let err = create_encrypted(&dir.path().join("f"), &key(), key_id(), url, None).unwrap_err();
        assert!(
            matches!(err, CreateError::AnnounceCredentials { .. }),
            "{url}: {err}"
        );
    }
    for url in [
        "http://tracker/announce",
        "http://tracker/announce?passkeyless=1",
        "https://t:8443/a#psw=x",
    ] {
        assert!(
            create_plain(&dir.path().join("f"), url, None).is_ok(),
            "{url}"
        );
    }
}

// ---- round trips over random layouts ----

/// A random directory: file paths (1 to 3 components from a small alphabet so that paths
/// share directories) and lengths (often 0 or around piece and block boundaries).
fn layout() -> impl Strategy<Value = Vec<(Vec<String>, usize)>> {
    let component = prop::sample::select(vec!["a", "b", "c.txt", ".h", "d d", "é"]);
    let path = prop::collection::vec(component, 1..=3)
        .prop_map(|p| p.into_iter().map(String::from).collect::<Vec<_>>());
    let length = prop_oneof![
        Just(0usize),
        1usize..100,
        16_380usize..16_390,
        0usize..70_000,
    ];
    prop::collection::vec((path, length), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn create_then_parse_round_trips(
        files in layout(),
        shift in 14u32..=16,
        key_bytes in any::<[u8; 32]>(),
        seed in any::<u8>(),
    ) {
        // Keep only paths that are neither duplicates nor inside another file's path.
        let mut kept: Vec<(Vec<String>, usize)> = Vec::new();
        for (path, len) in files {
            let clash = kept.iter().any(|(p, _)| p.starts_with(&path) || path.starts_with(p));
            if !clash {
                kept.push((path, len));
            }
        }
        let total: usize = kept.iter().map(|(_, l)| l).sum();
        prop_assume!(total > 0);

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for (i, (path, len)) in kept.iter().enumerate() {
            let p = path.iter().fold(root.clone(), |acc, c| acc.join(c));
            write(&p, &content(*len, seed.wrapping_add(i as u8)));
        }
        let piece_length = 1u64 << shift;
        let key = ContentKey::from_bytes(key_bytes);
        let created = create_encrypted(&root, &key, key_id(), ANNOUNCE, Some(piece_length)).unwrap();
        let m = Metainfo::from_bytes(&created.bytes).unwrap();
        prop_assert_eq!(&m, &created.metainfo);

        // Files come out sorted component by component, with consistent offsets.
        let mut expected = kept.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(m.info.files.len(), expected.len());
        let mut offset = 0u64;
        let mut plaintext = Vec::new();
        for (f, (path, len)) in m.info.files.iter().zip(&expected) {
            prop_assert_eq!(&f.path[0], "root");
            prop_assert_eq!(&f.path[1..], &path[..]);
            prop_assert_eq!(f.length, *len as u64);
            prop_assert_eq!(f.offset, offset);
            offset += f.length;
            plaintext.extend_from_slice(&std::fs::read(dir.path().join(f.relative_path())).unwrap());
        }
        prop_assert_eq!(m.info.total_length, offset);

        // Piece hashes are SHA-1 of the ciphertext, computed here independently.
        let mut ciphertext = plaintext.clone();
        ContentCipher::new(Cipher::Rc4Plus, &key).apply_keystream(0, &mut ciphertext);
        prop_assert_eq!(&m.info.pieces, &piece_hashes(&ciphertext, piece_length as usize));

        // Every piece's file segments read back exactly the piece's bytes.
        for index in m.info.geometry().pieces() {
            let range = m.info.geometry().piece_range(index);
            let mut bytes = Vec::new();
            for seg in m.info.piece_segments(index) {
                let file = std::fs::read(dir.path().join(m.info.files[seg.file].relative_path())).unwrap();
                let start = seg.file_offset as usize;
                bytes.extend_from_slice(&file[start..start + seg.len as usize]);
            }
            prop_assert_eq!(&bytes[..], &plaintext[range.start as usize..range.end as usize]);
        }
    }
}

#[test]
fn a_path_without_a_final_name_is_named_after_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/sub/x"), b"x");
    let m = create_plain(&dir.path().join("d/sub/.."), ANNOUNCE, None)
        .unwrap()
        .metainfo;
    assert_eq!(m.info.name, "d");
    assert_eq!(m.info.files[0].path, ["d", "sub", "x"]);
}

#[cfg(unix)]
#[test]
fn a_device_given_on_the_command_line_is_refused() {
    let err = create_plain(Path::new("/dev/null"), ANNOUNCE, None).unwrap_err();
    assert!(matches!(err, CreateError::SpecialFile { .. }), "{err}");
}
