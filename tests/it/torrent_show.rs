//! `ivcsd torrent show` through the real binary: valid torrents of every kind, and broken ones
//! failing with one clear line and exit status 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ivcsd::bencode::{Dict, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/torrents")
        .join(name)
}

fn show(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .arg("torrent")
        .arg("show")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn show_file(path: &Path) -> Output {
    show(&[path.as_os_str()])
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn shows_a_transmission_multi_file_torrent() {
    let out = show_file(&fixture("transmission-dir.torrent"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "name:         dir\n",
        "info hash:    b4333676da048095f05a9fe3ee82558e0cfe247e\n",
        "total size:   65001 bytes (63.5 KiB)\n",
        "piece length: 32768 bytes (32 KiB)\n",
        "pieces:       2\n",
        "private:      no\n",
        "encryption:   none (a plain BitTorrent torrent)\n",
        "announce:     http://127.0.0.1:6969/announce\n",
        "tier 2:       http://backup.example/announce\n",
        "comment:      fixture comment\n",
        "files:        3 (directory)\n",
        "  20000  dir/a.txt\n",
        "      1  dir/sub/c.bin\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(stderr(&out).is_empty());
}

#[test]
fn shows_a_private_single_file_torrent() {
    let out = show_file(&fixture("transmission-single-private.torrent"));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("private:      yes\n"), "{text}");
    assert!(
        text.contains("files:        1 (single file)\n  100000  single.bin\n"),
        "{text}"
    );
}

#[test]
fn long_file_lists_are_cut() {
    let path = fixture("mktorrent-dir-private.torrent");
    let out = show(&[path.as_os_str(), "--max-files".as_ref(), "2".as_ref()]);
    let text = stdout(&out);
    assert!(text.contains("   7000  dir/.hidden-dir/.h\n  20000  dir/a.txt\n  … and 3 more files (43.9 KiB); --max-files 0 lists all\n"), "{text}");
    let out = show(&[path.as_os_str(), "--max-files".as_ref(), "0".as_ref()]);
    assert!(stdout(&out).contains("      1  dir/sub/c.bin\n"));
}

#[test]
fn shows_cipher_and_key_id_of_an_ivcsd_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let info = Dict::new()
        .with("name", "data.bin")
        .with("length", 20_000i64)
        .with("piece length", 16384i64)
        .with("pieces", vec![1u8; 40])
        .with("private", 1i64)
        .with(
            "ivcsd",
            Dict::new()
                .with("v", 1i64)
                .with("cipher", "rc4+")
                .with("key id", &[0xabu8; 16])
                .with("check", &[1u8; 8]),
        );
    let bytes = Value::from(
        Dict::new()
            .with("announce", "http://t.example/announce")
            .with("info", info),
    )
    .encode();
    let path = dir.path().join("data.torrent");
    std::fs::write(&path, bytes).unwrap();
    let out = show_file(&path);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("encryption:   ivcsd v1, cipher rc4+\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("key id:       {}\n", "ab".repeat(16))),
        "{text}"
    );
}

/// Runs `torrent show` on `bytes` and returns stderr, checking status 1, one line, no stdout.
fn broken(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.torrent");
    std::fs::write(&path, bytes).unwrap();
    let out = show_file(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err.replace(&path.display().to_string(), "x.torrent")
}

#[test]
fn bad_piece_length_fails_with_one_line() {
    let err = broken(
        b"d4:infod6:lengthi5e4:name1:x12:piece lengthi1000e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
    );
    assert_eq!(
        err,
        "error: not a valid torrent: x.torrent: info.piece length 1000 is not a power of two of at least 16384\n"
    );
}

#[test]
fn path_traversal_fails_with_one_line() {
    let info = Dict::new()
        .with("name", "d")
        .with(
            "files",
            Value::List(vec![Value::from(
                Dict::new()
                    .with("length", 5i64)
                    .with("path", Value::List(vec!["..".into(), "x".into()])),
            )]),
        )
        .with("piece length", 16384i64)
        .with("pieces", vec![0u8; 20]);
    let err = broken(&Value::from(Dict::new().with("info", info)).encode());
    assert_eq!(
        err,
        "error: not a valid torrent: x.torrent: info.files[0].path[0]: '..' would escape the download directory\n"
    );
}

#[test]
fn garbage_fails_with_one_line() {
    let err = broken(b"<html>not found</html>");
    assert_eq!(
        err,
        "error: not a valid torrent: x.torrent: not bencode: unexpected byte '<' ('i', 'l', 'd' or a digit expected) at byte 0\n"
    );
}

#[test]
fn empty_file_fails_with_one_line() {
    let err = broken(b"");
    assert_eq!(
        err,
        "error: not a valid torrent: x.torrent: not bencode: input ends where a value was expected at byte 0\n"
    );
}

#[test]
fn missing_file_fails_with_one_line() {
    let out = show_file(Path::new("/nonexistent/ivcsd-test.torrent"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: cannot open /nonexistent/ivcsd-test.torrent: No such file or directory (os error 2)\n"
    );
}

#[test]
fn missing_argument_is_a_usage_error() {
    let out = show(&[]);
    assert_eq!(out.status.code(), Some(2));
}
