//! Torrents made by stock tools (mktorrent 1.1, transmission-create 3.00) parse, give the info
//! hashes those tools' `transmission-show` prints, and their piece hashes match the input files
//! read through our file-segment mapping. Fixtures: tests/data/torrents/ (regenerate.sh).

use std::path::{Path, PathBuf};

use ivcsd::metainfo::{Layout, Metainfo, create_plain};
use sha1::{Digest, Sha1};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torrents")
}

fn load(name: &str) -> Metainfo {
    let bytes = std::fs::read(data().join(name)).unwrap();
    Metainfo::from_bytes(&bytes).unwrap()
}

/// Reads every piece through `piece_segments` from the files under `root` and checks its SHA-1.
fn verify_pieces_against_files(m: &Metainfo, root: &Path) {
    let info = &m.info;
    let mut buf = Vec::new();
    for index in info.geometry().pieces() {
        buf.clear();
        for seg in info.piece_segments(index) {
            let file = &info.files[seg.file];
            let bytes = std::fs::read(root.join(file.relative_path())).unwrap();
            let start = seg.file_offset as usize;
            buf.extend_from_slice(&bytes[start..start + seg.len as usize]);
        }
        assert_eq!(buf.len(), info.piece_len(index) as usize);
        let h: [u8; 20] = Sha1::digest(&buf).into();
        assert_eq!(&h, info.piece_hash(index), "piece {index} of {}", info.name);
    }
}

fn files(m: &Metainfo) -> Vec<(String, u64)> {
    m.info
        .files
        .iter()
        .map(|f| (f.path.join("/"), f.length))
        .collect()
}

#[test]
fn mktorrent_single_file() {
    let m = load("mktorrent-single.torrent");
    assert_eq!(
        m.info_hash.to_hex(),
        "03a2210c96dea39c682aa69e72dbee1e784badcb"
    );
    assert_eq!(m.info.name, "single.bin");
    assert_eq!(m.info.layout, Layout::SingleFile);
    assert_eq!(m.info.total_length, 100_000);
    assert_eq!(m.info.piece_length, 32768);
    assert_eq!(m.info.piece_count(), 4);
    assert!(!m.info.private);
    assert_eq!(
        m.announce.as_deref(),
        Some("http://127.0.0.1:6969/announce")
    );
    verify_pieces_against_files(&m, &data().join("input"));
}

#[test]
fn mktorrent_directory_private_with_hidden_and_empty_files() {
    let m = load("mktorrent-dir-private.torrent");
    assert_eq!(
        m.info_hash.to_hex(),
        "0e5ea4ff89c530329128ccb236d238b35928693d"
    );
    assert_eq!(m.info.layout, Layout::MultiFile);
    assert!(m.info.private);
    assert_eq!(
        files(&m),
        vec![
            ("dir/.hidden-dir/.h".into(), 7000),
            ("dir/a.txt".into(), 20000),
            ("dir/empty".into(), 0),
            ("dir/sub/b.bin".into(), 45000),
            ("dir/sub/c.bin".into(), 1),
        ]
    );
    assert_eq!(m.info.total_length, 72_001);
    verify_pieces_against_files(&m, &data().join("input"));
}

#[test]
fn transmission_single_file_private() {
    let m = load("transmission-single-private.torrent");
    assert_eq!(
        m.info_hash.to_hex(),
        "9d3635ecbac5892cd99ac45a3db1d39e66932452"
    );
    assert!(m.info.private);
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(m.info.piece_count(), 7);
    assert!(
        m.created_by
            .as_deref()
            .unwrap()
            .starts_with("Transmission/")
    );
    verify_pieces_against_files(&m, &data().join("input"));
}

#[test]
fn transmission_directory_with_announce_list_and_comment() {
    let m = load("transmission-dir.torrent");
    assert_eq!(
        m.info_hash.to_hex(),
        "b4333676da048095f05a9fe3ee82558e0cfe247e"
    );
    assert!(!m.info.private);
    // transmission-create leaves out hidden and empty files.
    assert_eq!(
        files(&m),
        vec![
            ("dir/a.txt".into(), 20000),
            ("dir/sub/b.bin".into(), 45000),
            ("dir/sub/c.bin".into(), 1),
        ]
    );
    assert_eq!(
        m.announce_list,
        vec![
            vec!["http://127.0.0.1:6969/announce".to_string()],
            vec!["http://backup.example/announce".to_string()],
        ]
    );
    assert_eq!(m.comment.as_deref(), Some("fixture comment"));
    verify_pieces_against_files(&m, &data().join("input"));
}

/// Our plain creation writes the same `info` keys as mktorrent for a single file, so the same
/// input and piece length must give the very same info hash.
#[test]
fn create_plain_matches_mktorrent_info_hash() {
    let created = create_plain(
        &data().join("input/single.bin"),
        "http://127.0.0.1:6969/announce",
        Some(32768),
    )
    .unwrap();
    assert_eq!(
        created.metainfo.info_hash.to_hex(),
        "03a2210c96dea39c682aa69e72dbee1e784badcb"
    );
}

/// An ivcsd torrent is a standard torrent: transmission-show reads the committed fixture (made
/// by `create_encrypted` with a fixed key; `IVCSD_REGENERATE_FIXTURES=1` rewrites it) and prints
/// the info hash recorded here, and creating it again gives the same info hash.
#[test]
fn ivcsd_torrent_is_read_by_stock_tools() {
    use ivcsd::crypto::content::ContentKey;
    use ivcsd::metainfo::create_encrypted;
    use ivcsd::types::KeyId;

    // As printed by `transmission-show tests/data/torrents/ivcsd-dir.torrent` (Transmission 3.00).
    const HASH: &str = "dd7f1afeeb7ab9f07f039cab78c1cc4d6d7ddb91";
    let key = ContentKey::from_bytes([0x5a; 32]);
    let created = create_encrypted(
        &data().join("input/dir"),
        &key,
        KeyId([0x11; 16]),
        "http://127.0.0.1:6969/announce",
        Some(16384),
    )
    .unwrap();
    let fixture = data().join("ivcsd-dir.torrent");
    if std::env::var_os("IVCSD_REGENERATE_FIXTURES").is_some() {
        std::fs::write(&fixture, &created.bytes).unwrap();
    }
    let m = load("ivcsd-dir.torrent");
    assert_eq!(m.info_hash, created.metainfo.info_hash);
    assert_eq!(m.info, created.metainfo.info);
    assert_eq!(m.info_hash.to_hex(), HASH);
    assert!(m.info.private);
    assert_eq!(m.info.ivcsd.unwrap().check, key.key_check());
}
