//! Parsing and validation of torrent files: every malformed input is a named test with the
//! exact error, then valid torrents and the piece geometry built from them.

use ivcsd::bencode::{Dict, Value};
use ivcsd::metainfo::{Cipher, FileSegment, Layout, Metainfo, MetainfoError, NameProblem};
use ivcsd::types::KeyId;
use sha1::{Digest, Sha1};

const PL: i64 = 16384;

/// An `info` dictionary as a list of entries, so a test can replace or drop any of them.
#[derive(Clone)]
struct InfoBuilder(Vec<(&'static str, Value<'static>)>);

impl InfoBuilder {
    fn set(mut self, key: &'static str, value: impl Into<Value<'static>>) -> Self {
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value.into()));
        self
    }
    fn without(mut self, key: &'static str) -> Self {
        self.0.retain(|(k, _)| *k != key);
        self
    }
    fn dict(&self) -> Dict<'static> {
        let mut d = Dict::new();
        for (k, v) in &self.0 {
            d.insert(k.as_bytes(), v.clone());
        }
        d
    }
    fn torrent(&self) -> Vec<u8> {
        Value::from(
            Dict::new()
                .with("announce", "http://tracker.test/announce")
                .with("info", self.dict()),
        )
        .encode()
    }
}

fn pieces(count: usize) -> Value<'static> {
    Value::from(vec![0xabu8; 20 * count])
}

/// A valid single-file info: 40,000 bytes at 16 KiB pieces (3 pieces).
fn single() -> InfoBuilder {
    InfoBuilder(vec![
        ("name", Value::from("a.bin")),
        ("length", Value::Int(40_000)),
        ("piece length", Value::Int(PL)),
        ("pieces", pieces(3)),
    ])
}

fn file(length: i64, path: &[&'static str]) -> Value<'static> {
    let path = path.iter().map(|c| Value::from(*c)).collect::<Vec<_>>();
    Value::from(
        Dict::new()
            .with("length", Value::Int(length))
            .with("path", Value::List(path)),
    )
}

/// A valid multi-file info: 3 files of 10,000 + 0 + 30,000 bytes (3 pieces).
fn multi_with(files: Vec<Value<'static>>) -> InfoBuilder {
    InfoBuilder(vec![
        ("name", Value::from("dir")),
        ("files", Value::List(files)),
        ("piece length", Value::Int(PL)),
        ("pieces", pieces(3)),
    ])
}

fn multi() -> InfoBuilder {
    multi_with(vec![
        file(10_000, &["a.txt"]),
        file(0, &["empty"]),
        file(30_000, &["sub", "b.txt"]),
    ])
}

/// A multi-file info whose second file has `path`.
fn with_path(path: Value<'static>) -> Vec<u8> {
    let f = Value::from(
        Dict::new()
            .with("length", Value::Int(30_000))
            .with("path", path),
    );
    multi_with(vec![file(10_000, &["a.txt"]), f]).torrent()
}

fn path(components: &[&'static [u8]]) -> Value<'static> {
    Value::List(components.iter().map(|c| Value::from(*c)).collect())
}

fn ivcsd() -> Dict<'static> {
    Dict::new()
        .with("v", 1i64)
        .with("cipher", "rc4+")
        .with("key id", &[7u8; 16])
        .with("check", &[9u8; 8])
}

fn unsafe_name(at: &str, name: &str, problem: NameProblem) -> MetainfoError {
    MetainfoError::UnsafeName {
        at: at.into(),
        name: name.into(),
        problem,
    }
}

fn wrong(at: &str, expected: &'static str, found: &'static str) -> MetainfoError {
    MetainfoError::WrongType {
        at: at.into(),
        expected,
        found,
    }
}

fn missing(at: &str) -> MetainfoError {
    MetainfoError::Missing { at: at.into() }
}

/// One line per malformed torrent: the bytes and the exact error.
macro_rules! malformed {
    ($name:ident, $bytes:expr, $err:expr) => {
        #[test]
        fn $name() {
            let bytes: Vec<u8> = $bytes;
            assert_eq!(Metainfo::from_bytes(&bytes), Err($err));
        }
    };
}

// ---- not a torrent at all ----
malformed!(
    empty_input,
    vec![],
    MetainfoError::Bencode(ivcsd::bencode::decode(b"").unwrap_err())
);
malformed!(
    truncated,
    {
        let mut t = single().torrent();
        t.truncate(t.len() - 5);
        t
    },
    MetainfoError::Bencode(
        ivcsd::bencode::decode(&{
            let mut t = single().torrent();
            t.truncate(t.len() - 5);
            t
        })
        .unwrap_err()
    )
);
malformed!(
    top_level_list,
    b"le".to_vec(),
    wrong("torrent", "a dictionary", "a list")
);
malformed!(no_info, b"d8:announce1:xe".to_vec(), missing("info"));
malformed!(
    info_not_a_dict,
    b"d4:infoi1ee".to_vec(),
    wrong("info", "a dictionary", "an integer")
);

// ---- name ----
malformed!(
    missing_name,
    single().without("name").torrent(),
    missing("info.name")
);
malformed!(
    name_is_int,
    single().set("name", 5i64).torrent(),
    wrong("info.name", "a string", "an integer")
);
malformed!(
    name_not_utf8,
    single().set("name", &b"caf\xe9"[..]).torrent(),
    MetainfoError::NotUtf8 {
        at: "info.name".into()
    }
);
malformed!(
    name_utf8_not_utf8,
    single().set("name.utf-8", &b"\xff"[..]).torrent(),
    MetainfoError::NotUtf8 {
        at: "info.name.utf-8".into()
    }
);
malformed!(
    name_dotdot,
    single().set("name", "..").torrent(),
    unsafe_name("info.name", "..", NameProblem::DotDot)
);
malformed!(
    name_dot,
    single().set("name", ".").torrent(),
    unsafe_name("info.name", ".", NameProblem::Dot)
);
malformed!(
    name_empty,
    single().set("name", "").torrent(),
    unsafe_name("info.name", "", NameProblem::Empty)
);
malformed!(
    name_with_slash,
    single().set("name", "a/b").torrent(),
    unsafe_name("info.name", "a/b", NameProblem::Separator)
);
malformed!(
    name_absolute,
    single().set("name", "/etc").torrent(),
    unsafe_name("info.name", "/etc", NameProblem::Absolute)
);
malformed!(
    name_reserved,
    single().set("name", "con").torrent(),
    unsafe_name("info.name", "con", NameProblem::Reserved)
);

// ---- length / files ----
malformed!(
    both_length_and_files,
    single()
        .set("files", Value::List(vec![file(1, &["x"])]))
        .torrent(),
    MetainfoError::BothLengthAndFiles
);
malformed!(
    neither_length_nor_files,
    single().without("length").torrent(),
    MetainfoError::NeitherLengthNorFiles
);
malformed!(
    length_is_string,
    single().set("length", "40000").torrent(),
    wrong("info.length", "an integer", "a string")
);
malformed!(
    negative_length,
    single().set("length", -1i64).torrent(),
    MetainfoError::NegativeLength {
        at: "info.length".into(),
        value: -1
    }
);
malformed!(
    zero_length,
    single()
        .set("length", 0i64)
        .set("pieces", pieces(0))
        .torrent(),
    MetainfoError::EmptyContent
);
malformed!(
    huge_length,
    single().set("length", i64::MAX).torrent(),
    MetainfoError::TooManyPieces {
        count: 562_949_953_421_312
    }
);
malformed!(
    empty_files_list,
    multi_with(vec![]).torrent(),
    MetainfoError::EmptyFileList
);
malformed!(
    files_not_a_list,
    multi().set("files", 3i64).torrent(),
    wrong("info.files", "a list", "an integer")
);
malformed!(
    file_not_a_dict,
    multi_with(vec![Value::from("x")]).torrent(),
    wrong("info.files[0]", "a dictionary", "a string")
);
malformed!(
    file_without_length,
    multi_with(vec![Value::from(Dict::new().with("path", path(&[b"x"])))]).torrent(),
    missing("info.files[0].length")
);
malformed!(
    file_without_path,
    multi_with(vec![Value::from(Dict::new().with("length", 1i64))]).torrent(),
    missing("info.files[0].path")
);
malformed!(
    file_negative_length,
    multi_with(vec![file(5, &["a"]), file(-5, &["b"])]).torrent(),
    MetainfoError::NegativeLength {
        at: "info.files[1].length".into(),
        value: -5
    }
);
malformed!(
    files_total_overflow,
    multi_with(vec![
        file(i64::MAX, &["a"]),
        file(i64::MAX, &["b"]),
        file(i64::MAX, &["c"])
    ])
    .torrent(),
    MetainfoError::TotalLengthOverflow {
        at: "info.files[2].length".into()
    }
);
malformed!(
    path_not_a_list,
    with_path(Value::from("a/b")),
    wrong("info.files[1].path", "a list", "a string")
);
malformed!(
    path_empty_list,
    with_path(path(&[])),
    MetainfoError::EmptyPath {
        at: "info.files[1].path".into()
    }
);
malformed!(
    path_component_int,
    with_path(Value::List(vec![Value::Int(1)])),
    wrong("info.files[1].path[0]", "a string", "an integer")
);
malformed!(
    path_traversal,
    with_path(path(&[b"sub", b".."])),
    unsafe_name("info.files[1].path[1]", "..", NameProblem::DotDot)
);
malformed!(
    path_traversal_first,
    with_path(path(&[b"..", b"etc", b"passwd"])),
    unsafe_name("info.files[1].path[0]", "..", NameProblem::DotDot)
);
malformed!(
    path_dot,
    with_path(path(&[b".", b"x"])),
    unsafe_name("info.files[1].path[0]", ".", NameProblem::Dot)
);
malformed!(
    path_absolute,
    with_path(path(&[b"/etc", b"passwd"])),
    unsafe_name("info.files[1].path[0]", "/etc", NameProblem::Absolute)
);
malformed!(
    path_absolute_backslash,
    with_path(path(&[b"\\windows"])),
    unsafe_name(
        "info.files[1].path[0]",
        "\\\\windows",
        NameProblem::Absolute
    )
);
malformed!(
    path_drive_relative,
    with_path(path(&[b"a:stream"])),
    unsafe_name("info.files[1].path[0]", "a:stream", NameProblem::Absolute)
);
malformed!(
    path_windows_drive,
    with_path(path(&[b"C:", b"x"])),
    unsafe_name("info.files[1].path[0]", "C:", NameProblem::Absolute)
);
malformed!(
    path_empty_component,
    with_path(path(&[b"a", b"", b"b"])),
    unsafe_name("info.files[1].path[1]", "", NameProblem::Empty)
);
malformed!(
    path_component_with_slash,
    with_path(path(&[b"a/../../b"])),
    unsafe_name("info.files[1].path[0]", "a/../../b", NameProblem::Separator)
);
malformed!(
    path_component_with_backslash,
    with_path(path(&[b"a\\b"])),
    unsafe_name("info.files[1].path[0]", "a\\\\b", NameProblem::Separator)
);
malformed!(
    path_component_with_nul,
    with_path(path(&[b"a\0b"])),
    unsafe_name("info.files[1].path[0]", "a\\0b", NameProblem::Nul)
);
malformed!(
    path_component_with_newline,
    with_path(path(&[b"a\nb"])),
    unsafe_name("info.files[1].path[0]", "a\\nb", NameProblem::Control)
);
malformed!(
    path_component_with_colon,
    with_path(path(&[b"ab:stream"])),
    unsafe_name("info.files[1].path[0]", "ab:stream", NameProblem::Colon)
);
malformed!(
    path_reserved_nul,
    with_path(path(&[b"NUL"])),
    unsafe_name("info.files[1].path[0]", "NUL", NameProblem::Reserved)
);
malformed!(
    path_reserved_com1_ext,
    with_path(path(&[b"com1.txt"])),
    unsafe_name("info.files[1].path[0]", "com1.txt", NameProblem::Reserved)
);
malformed!(
    path_reserved_lpt9,
    with_path(path(&[b"dir", b"Lpt9"])),
    unsafe_name("info.files[1].path[1]", "Lpt9", NameProblem::Reserved)
);
malformed!(
    path_trailing_dot,
    with_path(path(&[b"x."])),
    unsafe_name(
        "info.files[1].path[0]",
        "x.",
        NameProblem::TrailingDotOrSpace
    )
);
malformed!(
    path_trailing_space,
    with_path(path(&[b"x "])),
    unsafe_name(
        "info.files[1].path[0]",
        "x ",
        NameProblem::TrailingDotOrSpace
    )
);
malformed!(
    path_not_utf8,
    with_path(path(&[b"\xc3\x28"])),
    MetainfoError::NotUtf8 {
        at: "info.files[1].path[0]".into()
    }
);
malformed!(
    path_utf8_bad_even_if_path_good,
    {
        let f = Value::from(
            Dict::new()
                .with("length", 30_000i64)
                .with("path", path(&[b"ok"]))
                .with("path.utf-8", path(&[b".."])),
        );
        multi_with(vec![file(10_000, &["a.txt"]), f]).torrent()
    },
    unsafe_name("info.files[1].path.utf-8[0]", "..", NameProblem::DotDot)
);
malformed!(
    duplicate_path,
    multi_with(vec![file(10_000, &["a"]), file(30_000, &["a"])]).torrent(),
    MetainfoError::DuplicatePath {
        at: "info.files[1].path".into(),
        path: "dir/a".into(),
        other: "info.files[0]".into()
    }
);
malformed!(
    path_inside_a_file,
    multi_with(vec![file(10_000, &["a"]), file(30_000, &["a", "b"])]).torrent(),
    MetainfoError::PathInsideFile {
        at: "info.files[1].path".into(),
        path: "dir/a/b".into(),
        file: "dir/a".into(),
        other: "info.files[0]".into()
    }
);

// ---- piece length and pieces ----
malformed!(
    missing_piece_length,
    single().without("piece length").torrent(),
    missing("info.piece length")
);
malformed!(
    piece_length_string,
    single().set("piece length", "16384").torrent(),
    wrong("info.piece length", "an integer", "a string")
);
malformed!(
    piece_length_zero,
    single().set("piece length", 0i64).torrent(),
    MetainfoError::BadPieceLength { value: 0 }
);
malformed!(
    piece_length_negative,
    single().set("piece length", -16384i64).torrent(),
    MetainfoError::BadPieceLength { value: -16384 }
);
malformed!(
    piece_length_1000,
    single().set("piece length", 1000i64).torrent(),
    MetainfoError::BadPieceLength { value: 1000 }
);
malformed!(
    piece_length_8192,
    single().set("piece length", 8192i64).torrent(),
    MetainfoError::BadPieceLength { value: 8192 }
);
malformed!(
    piece_length_not_power_of_two,
    single().set("piece length", 49152i64).torrent(),
    MetainfoError::BadPieceLength { value: 49152 }
);
malformed!(
    piece_length_too_large,
    single().set("piece length", 1i64 << 29).torrent(),
    MetainfoError::PieceLengthTooLarge { value: 1 << 29 }
);
malformed!(
    missing_pieces,
    single().without("pieces").torrent(),
    missing("info.pieces")
);
malformed!(
    pieces_is_list,
    single().set("pieces", Value::List(vec![])).torrent(),
    wrong("info.pieces", "a string", "a list")
);
malformed!(
    pieces_not_multiple_of_20,
    single().set("pieces", vec![0u8; 59]).torrent(),
    MetainfoError::PiecesNotMultipleOf20 { len: 59 }
);
malformed!(
    pieces_too_few,
    single().set("pieces", pieces(2)).torrent(),
    MetainfoError::PieceCountMismatch {
        found: 2,
        expected: 3,
        total_length: 40_000,
        piece_length: 16384
    }
);
malformed!(
    pieces_too_many,
    single().set("pieces", pieces(4)).torrent(),
    MetainfoError::PieceCountMismatch {
        found: 4,
        expected: 3,
        total_length: 40_000,
        piece_length: 16384
    }
);

// ---- private ----
malformed!(
    private_two,
    single().set("private", 2i64).torrent(),
    MetainfoError::BadPrivate { value: 2 }
);
malformed!(
    private_string,
    single().set("private", "1").torrent(),
    wrong("info.private", "an integer", "a string")
);

// ---- info.ivcsd ----
malformed!(
    ivcsd_not_a_dict,
    single().set("ivcsd", 1i64).torrent(),
    wrong("info.ivcsd", "a dictionary", "an integer")
);
malformed!(
    ivcsd_missing_v,
    single()
        .set(
            "ivcsd",
            Dict::new()
                .with("cipher", "rc4+")
                .with("key id", &[7u8; 16])
                .with("check", &[9u8; 8])
        )
        .torrent(),
    missing("info.ivcsd.v")
);
malformed!(
    ivcsd_version_2,
    single().set("ivcsd", ivcsd().with("v", 2i64)).torrent(),
    MetainfoError::IvcsdVersion { found: 2 }
);
malformed!(
    ivcsd_version_string,
    single().set("ivcsd", ivcsd().with("v", "1")).torrent(),
    wrong("info.ivcsd.v", "an integer", "a string")
);
malformed!(
    ivcsd_unknown_cipher,
    single()
        .set("ivcsd", ivcsd().with("cipher", "aes-128-ctr"))
        .torrent(),
    MetainfoError::UnknownCipher {
        cipher: "aes-128-ctr".into()
    }
);
malformed!(
    ivcsd_cipher_int,
    single()
        .set("ivcsd", ivcsd().with("cipher", 4i64))
        .torrent(),
    wrong("info.ivcsd.cipher", "a string", "an integer")
);
malformed!(
    ivcsd_missing_key_id,
    single()
        .set(
            "ivcsd",
            Dict::new()
                .with("v", 1i64)
                .with("cipher", "rc4+")
                .with("check", &[9u8; 8])
        )
        .torrent(),
    missing("info.ivcsd.key id")
);
malformed!(
    ivcsd_short_key_id,
    single()
        .set("ivcsd", ivcsd().with("key id", &[7u8; 15]))
        .torrent(),
    MetainfoError::WrongLength {
        at: "info.ivcsd.key id".into(),
        expected: 16,
        found: 15
    }
);
malformed!(
    ivcsd_hex_key_id,
    single()
        .set(
            "ivcsd",
            ivcsd().with("key id", "07070707070707070707070707070707")
        )
        .torrent(),
    MetainfoError::WrongLength {
        at: "info.ivcsd.key id".into(),
        expected: 16,
        found: 32
    }
);
malformed!(
    ivcsd_long_check,
    single()
        .set("ivcsd", ivcsd().with("check", &[9u8; 9]))
        .torrent(),
    MetainfoError::WrongLength {
        at: "info.ivcsd.check".into(),
        expected: 8,
        found: 9
    }
);
malformed!(
    ivcsd_check_list,
    single()
        .set("ivcsd", ivcsd().with("check", Value::List(vec![])))
        .torrent(),
    wrong("info.ivcsd.check", "a string", "a list")
);
malformed!(
    ivcsd_unknown_key,
    single()
        .set("ivcsd", ivcsd().with("key", &[1u8; 32]))
        .torrent(),
    MetainfoError::UnknownIvcsdKey { key: "key".into() }
);

// ---- outside info ----
malformed!(
    announce_int,
    Value::from(
        Dict::new()
            .with("announce", 1i64)
            .with("info", single().dict())
    )
    .encode(),
    wrong("announce", "a string", "an integer")
);
malformed!(
    announce_not_utf8,
    Value::from(
        Dict::new()
            .with("announce", &b"http://\xff"[..])
            .with("info", single().dict())
    )
    .encode(),
    MetainfoError::NotUtf8 {
        at: "announce".into()
    }
);
malformed!(
    announce_list_flat,
    Value::from(
        Dict::new()
            .with("announce-list", Value::List(vec![Value::from("http://a")]))
            .with("info", single().dict())
    )
    .encode(),
    wrong("announce-list[0]", "a list", "a string")
);
malformed!(
    creation_date_string,
    Value::from(
        Dict::new()
            .with("creation date", "today")
            .with("info", single().dict())
    )
    .encode(),
    wrong("creation date", "an integer", "a string")
);

#[test]
fn messages_name_the_field() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with_path(path(&[b"sub", b".."])),
            "info.files[1].path[1]: '..' would escape the download directory",
        ),
        (
            single().set("piece length", 1000i64).torrent(),
            "info.piece length 1000 is not a power of two of at least 16384",
        ),
        (
            single().set("pieces", pieces(2)).torrent(),
            "info.pieces has 2 hashes but 40000 bytes at piece length 16384 make 3 pieces",
        ),
        (
            single()
                .set("ivcsd", ivcsd().with("cipher", "aes"))
                .torrent(),
            "info.ivcsd.cipher 'aes' is not supported (known: rc4+, aes-256-ctr)",
        ),
        (
            single().without("pieces").torrent(),
            "info.pieces is missing",
        ),
        (
            single().set("name", &b"\xff"[..]).torrent(),
            "info.name is not UTF-8 (BEP 3 names are UTF-8) and there is no UTF-8 alternative",
        ),
        (
            b"d4:infoi1ee".to_vec(),
            "info: expected a dictionary, found an integer",
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(
            Metainfo::from_bytes(&bytes).unwrap_err().to_string(),
            message
        );
    }
}

#[test]
fn single_file_parses() {
    let bytes = single().set("private", 1i64).torrent();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.announce.as_deref(), Some("http://tracker.test/announce"));
    assert_eq!(m.info.name, "a.bin");
    assert_eq!(m.info.layout, Layout::SingleFile);
    assert_eq!(m.info.total_length, 40_000);
    assert_eq!(m.info.piece_length, 16384);
    assert_eq!(m.info.piece_count(), 3);
    assert!(m.info.private);
    assert!(m.info.ivcsd.is_none());
    assert_eq!(m.info.files.len(), 1);
    assert_eq!(m.info.files[0].path, vec!["a.bin".to_string()]);
    assert_eq!(
        (m.info.files[0].offset, m.info.files[0].length),
        (0, 40_000)
    );
    let last = m.info.piece_index(2).unwrap();
    assert_eq!(m.info.piece_len(last), 40_000 - 32768);
    assert_eq!(m.info.piece_hash(last), &[0xab; 20]);
    assert!(m.info.piece_index(3).is_none());
}

#[test]
fn info_hash_is_sha1_of_the_raw_info_including_unknown_keys() {
    let plain = single().torrent();
    let extra = single()
        .set("source", "somewhere")
        .set("x-unknown", Value::List(vec![Value::Int(1)]))
        .torrent();
    let a = Metainfo::from_bytes(&plain).unwrap();
    let b = Metainfo::from_bytes(&extra).unwrap();
    let raw: [u8; 20] = Sha1::digest(
        Value::from(
            single()
                .set("source", "somewhere")
                .set("x-unknown", Value::List(vec![Value::Int(1)]))
                .dict(),
        )
        .encode(),
    )
    .into();
    assert_eq!(b.info_hash.0, raw);
    assert_ne!(a.info_hash, b.info_hash);
    assert_eq!(a.info, b.info);
}

#[test]
fn utf8_alternatives_are_preferred() {
    let f = Value::from(
        Dict::new()
            .with("length", 30_000i64)
            .with("path", path(&[b"\xe9t\xe9"]))
            .with("path.utf-8", path(&[b"\xc3\xa9t\xc3\xa9"])),
    );
    let bytes = multi_with(vec![file(10_000, &["a.txt"]), f])
        .set("name", &b"caf\xe9"[..])
        .set("name.utf-8", "café")
        .torrent();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.name, "café");
    assert_eq!(
        m.info.files[1].path,
        vec!["café".to_string(), "été".to_string()]
    );
}

#[test]
fn ivcsd_dict_parses() {
    let bytes = single()
        .set("private", 1i64)
        .set("ivcsd", ivcsd())
        .torrent();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    let iv = m.info.ivcsd.unwrap();
    assert_eq!(iv.version, 1);
    assert_eq!(iv.cipher, Cipher::Rc4Plus);
    assert_eq!(iv.key_id, KeyId([7; 16]));
    assert_eq!(iv.check, [9; 8]);
}

#[test]
fn multi_file_offsets_and_segments() {
    let m = Metainfo::from_bytes(&multi().torrent()).unwrap();
    let info = &m.info;
    assert_eq!(info.layout, Layout::MultiFile);
    let files: Vec<_> = info
        .files
        .iter()
        .map(|f| (f.path.join("/"), f.offset, f.length))
        .collect();
    assert_eq!(
        files,
        vec![
            ("dir/a.txt".to_string(), 0, 10_000),
            ("dir/empty".to_string(), 10_000, 0),
            ("dir/sub/b.txt".to_string(), 10_000, 30_000),
        ]
    );
    assert_eq!(info.total_length, 40_000);
    // Piece 0 (0..16384) spans a.txt and the start of b.txt; the empty file is skipped.
    let p0 = info.piece_index(0).unwrap();
    let segs: Vec<_> = info.piece_segments(p0).collect();
    assert_eq!(
        segs,
        vec![
            FileSegment {
                file: 0,
                file_offset: 0,
                len: 10_000
            },
            FileSegment {
                file: 2,
                file_offset: 0,
                len: 6384
            },
        ]
    );
    let last = info.piece_index(2).unwrap();
    let segs: Vec<_> = info.piece_segments(last).collect();
    assert_eq!(
        segs,
        vec![FileSegment {
            file: 2,
            file_offset: 22_768,
            len: 7232
        }]
    );
    // An arbitrary range in the middle, and ranges that are empty or too long.
    let segs: Vec<_> = info.segments(9_999..10_001).unwrap().collect();
    assert_eq!(
        segs,
        vec![
            FileSegment {
                file: 0,
                file_offset: 9_999,
                len: 1
            },
            FileSegment {
                file: 2,
                file_offset: 0,
                len: 1
            },
        ]
    );
    assert!(info.segments(5..5).is_none());
    assert!(info.segments(0..40_001).is_none());
    assert_eq!(info.segments(39_999..40_000).unwrap().count(), 1);
    // A block request inside the last piece maps to its content range.
    let g = info.geometry();
    assert_eq!(g.block_range(last, 0, 7232), Some(32768..40_000));
}

#[test]
fn announce_list_and_extras() {
    let bytes = Value::from(
        Dict::new()
            .with("announce", "http://a/announce")
            .with(
                "announce-list",
                Value::List(vec![
                    Value::List(vec![
                        Value::from("http://a/announce"),
                        Value::from("http://b/announce"),
                    ]),
                    Value::List(vec![Value::from("udp://c:80")]),
                ]),
            )
            .with("comment", &b"hello \xff"[..])
            .with("created by", "mktorrent 1.1")
            .with("creation date", 1_700_000_000i64)
            .with("info", single().dict()),
    )
    .encode();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.announce_list.len(), 2);
    assert_eq!(m.announce_list[0][1], "http://b/announce");
    assert_eq!(m.comment.as_deref(), Some("hello \u{fffd}"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
}

#[test]
fn safe_names_pass() {
    for name in [
        ".hidden",
        "a..b",
        "...x",
        "con.",
        "CONSOLE",
        "com10",
        "file.tar.gz",
        "名前",
        "a b",
        "-x",
    ] {
        let expected = if name == "con." {
            Err(NameProblem::TrailingDotOrSpace)
        } else {
            Ok(())
        };
        assert_eq!(ivcsd::metainfo::check_name(name), expected, "{name}");
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        /// Valid torrents with a few bytes changed: an error or a valid torrent, never a panic.
        #[test]
        fn mutated_torrents(
            ivcsd_dict in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = if ivcsd_dict {
                single().set("private", 1i64).set("ivcsd", ivcsd()).torrent()
            } else {
                multi().torrent()
            };
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(m) = Metainfo::from_bytes(&bytes) {
                // Whatever parsed must hold the invariants the rest of ivcsd relies on.
                let info = &m.info;
                prop_assert_eq!(info.pieces.len() as u64, u64::from(info.piece_count()));
                let mut offset = 0;
                for f in &info.files {
                    prop_assert_eq!(f.offset, offset);
                    offset += f.length;
                }
                prop_assert_eq!(offset, info.total_length);
            }
        }

        #[test]
        fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Metainfo::from_bytes(&bytes);
        }
    }
}

#[test]
fn collisions_are_found_wherever_the_files_are() {
    // The clashing files are far apart in the list; a sibling sorts between them.
    let bytes = multi_with(vec![
        file(10_000, &["a", "b"]),
        file(10_000, &["a", "a"]),
        file(10_000, &["z"]),
        file(10_000, &["a"]),
    ])
    .set("pieces", pieces(3))
    .torrent();
    assert_eq!(
        Metainfo::from_bytes(&bytes),
        Err(MetainfoError::PathInsideFile {
            at: "info.files[0].path".into(),
            path: "dir/a/b".into(),
            file: "dir/a".into(),
            other: "info.files[3]".into(),
        })
    );
    let bytes = multi_with(vec![
        file(10_000, &["x"]),
        file(10_000, &["b"]),
        file(10_000, &["c"]),
        file(10_000, &["x"]),
    ])
    .torrent();
    assert_eq!(
        Metainfo::from_bytes(&bytes),
        Err(MetainfoError::DuplicatePath {
            at: "info.files[3].path".into(),
            path: "dir/x".into(),
            other: "info.files[0]".into(),
        })
    );
    // A name that merely starts like another is no collision.
    let bytes = multi_with(vec![file(20_000, &["ab"]), file(20_000, &["a", "b"])]).torrent();
    assert!(Metainfo::from_bytes(&bytes).is_ok());
}

mod segments {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// For any layout (zero-length files included) and any range, the segments cover the
        /// range exactly, in order, each inside its file, and agree with a byte-by-byte map.
        #[test]
        fn segments_match_a_naive_map(
            lengths in prop::collection::vec(prop_oneof![Just(0u64), 1u64..40_000], 1..8),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let total: u64 = lengths.iter().sum();
            prop_assume!(total > 0);
            let names = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];
            let files = lengths.iter().zip(names).map(|(&l, n)| file(l as i64, &[n])).collect();
            let count = total.div_ceil(16384) as usize;
            let bytes = multi_with(files).set("pieces", pieces(count)).torrent();
            let m = Metainfo::from_bytes(&bytes).unwrap();
            let (mut start, mut end) = (a.index(total as usize) as u64, b.index(total as usize + 1) as u64);
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            let Some(segments) = m.info.segments(start..end) else {
                prop_assert_eq!(start, end);
                return Ok(());
            };
            // Byte by byte: which file and file offset each content byte belongs to.
            let mut naive = Vec::new();
            for (i, f) in m.info.files.iter().enumerate() {
                for o in 0..f.length {
                    naive.push((i, o));
                }
            }
            let mut mapped = Vec::new();
            for s in segments {
                prop_assert!(s.len > 0);
                prop_assert!(s.file_offset + s.len <= m.info.files[s.file].length);
                for o in 0..s.len {
                    mapped.push((s.file, s.file_offset + o));
                }
            }
            prop_assert_eq!(&mapped[..], &naive[start as usize..end as usize]);
        }
    }
}
