//! `ivcsd peer keygen`, run as the real binary in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use ivcsd::crypto::identity::Identity;

fn ivcsd(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(args)
        // Keep the default identity path, should a test reach it, inside the tempdir.
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the ivcsd binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn keygen_writes_a_0600_identity_that_loads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keys/me.pem");
    let path_arg = path.to_str().expect("utf-8 tempdir");

    let out = ivcsd(
        &["peer", "keygen", "--identity", path_arg, "--bits", "2048"],
        dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let identity = Identity::load(&path).expect("the key loads");
    assert_eq!(identity.public().bits(), 2048);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(path_arg), "{stdout}");
    let fingerprint = hex::encode(identity.public().spki_sha256());
    assert!(stdout.contains(&fingerprint), "{stdout}");

    // A second run must not replace the key...
    let before = std::fs::read(&path).unwrap();
    let out = ivcsd(
        &["peer", "keygen", "--identity", path_arg, "--bits", "2048"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // ...unless told to. The global option may also come before the subcommand.
    let out = ivcsd(
        &[
            "peer",
            "--identity",
            path_arg,
            "keygen",
            "--bits",
            "2048",
            "--force",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_ne!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    Identity::load(&path).expect("the new key loads");
}

#[test]
fn keygen_refuses_short_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("me.pem");
    let out = ivcsd(
        &[
            "peer",
            "keygen",
            "--identity",
            path.to_str().unwrap(),
            "--bits",
            "1024",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("1024 bits is too short"), "{stderr}");
    assert!(!path.exists());
}

#[test]
fn keygen_defaults_to_the_config_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ivcsd(&["peer", "keygen", "--bits", "2048"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let path = dir.path().join("config/ivcsd/identity.pem");
    Identity::load(&path).expect("the key is at the default path");
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}
