//! `ivcsd admin user …` edits authority.xml atomically, with argon2id hashes, and refuses
//! bad edits without touching the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use ivcsd::tracker::authority::{PasswordHash, load_file};
use ivcsd::types::Authority;

fn ivcsd(file: &Path, password: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivcsd"));
    cmd.args(["admin", "user"])
        .args(args)
        .arg("--authority-file")
        .arg(file)
        .env_remove("IVCSD_PASSWORD")
        .stdin(std::process::Stdio::null());
    if let Some(p) = password {
        cmd.env("IVCSD_PASSWORD", p);
    }
    cmd.output().expect("run ivcsd")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn add_passwd_set_authority_remove() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authority.xml");

    let out = ivcsd(
        &file,
        Some("pw-one"),
        &["add", "alice", "--authority", "3", "--ip", "10.0.0.0/8"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ivcsd(
        &file,
        Some("pw-two"),
        &["add", "root", "--authority", "0", "--admin"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let table = load_file(&file).unwrap();
    let alice = table.get("alice").unwrap();
    assert_eq!(alice.authority, Authority(3));
    assert!(!alice.admin);
    assert!(matches!(&alice.password, PasswordHash::Phc(p) if p.starts_with("$argon2id$")));
    assert!(alice.verify_password(b"pw-one"));
    assert!(alice.updated_ms > 1_700_000_000_000);
    assert!(table.get("root").unwrap().admin);
    let generation = alice.token_generation();

    let out = ivcsd(&file, Some("pw-new"), &["passwd", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ivcsd(&file, None, &["set-authority", "alice", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = load_file(&file).unwrap();
    let alice = table.get("alice").unwrap();
    assert!(alice.verify_password(b"pw-new"));
    assert!(!alice.verify_password(b"pw-one"));
    assert_eq!(alice.authority, Authority(5));
    assert_ne!(alice.token_generation(), generation);

    let out = ivcsd(&file, None, &["remove", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = load_file(&file).unwrap();
    assert!(table.get("alice").is_none());
    assert_eq!(table.len(), 1);
}

#[test]
fn refusals_leave_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authority.xml");
    assert!(
        ivcsd(&file, Some("pw"), &["add", "bob", "--authority", "2"])
            .status
            .success()
    );
    let before = std::fs::read(&file).unwrap();

    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["add", "bob", "--authority", "1"],
            Some("pw"),
            "user 'bob' exists already",
        ),
        (&["remove", "carol"], None, "no user 'carol'"),
        (&["set-authority", "carol", "1"], None, "no user 'carol'"),
        (&["passwd", "carol"], Some("x"), "no user 'carol'"),
        (&["add", "dave", "--authority", "1"], None, "no password"),
        (
            &["add", "dave", "--authority", "1", "--ip", "nowhere"],
            Some("pw"),
            "--ip nowhere",
        ),
        (&["add", "dave", "--authority", "-1"], Some("pw"), ""),
    ];
    for (args, password, message) in cases {
        let out = ivcsd(&file, *password, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
}

#[test]
fn a_broken_file_is_reported_with_its_line_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authority.xml");
    let broken =
        "<peerAuthority>\n  <peer>\n    <usernam>x</usernam>\n  </peer>\n</peerAuthority>\n";
    std::fs::write(&file, broken).unwrap();
    let out = ivcsd(&file, None, &["set-authority", "x", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("authority.xml:3: unknown element <usernam> in <peer>"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
}

/// The example file in the repository is what the README's walkthrough logs in with.
#[test]
fn the_example_authority_file_has_the_documented_users() {
    let table = load_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("authority.xml")
            .as_path(),
    )
    .unwrap();
    for (name, authority, admin) in [
        ("admin", 0, true),
        ("u1", 1, false),
        ("u3", 3, false),
        ("u5", 5, false),
        ("relay", 9, false),
    ] {
        let user = table.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(user.authority, Authority(authority), "{name}");
        assert_eq!(user.admin, admin, "{name}");
        assert!(
            user.verify_password(format!("{name}-password").as_bytes()),
            "{name}"
        );
    }
}
