//! The tracker over https with a private CA made inside the test: clients that trust the CA
//! (`--ca`) get answers; clients that do not, and plain http, get nothing.

use crate::common_tracker;

use std::path::Path;
use std::process::Stdio;

use crate::common_tracker::{TestTracker, UserSpec, password};
use hyper::{Method, Uri};
use ivcsd::http_client::{self, HttpError, Timeouts};

/// Writes ca.pem, cert.pem and key.pem (a certificate for 127.0.0.1 and localhost) into `dir`.
fn make_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

async fn https_tracker(pki: &Path) -> TestTracker {
    let users = vec![UserSpec::new("u1", 1), UserSpec::new("admin", 0).admin()];
    TestTracker::start_with(&users, |config| {
        config.tls_cert = Some(pki.join("cert.pem"));
        config.tls_key = Some(pki.join("key.pem"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let tracker = https_tracker(pki.path()).await;
    let url: Uri = format!(
        "https://127.0.0.1:{}/relay/assignments?username=u1&psw={}",
        tracker.addr.port(),
        password("u1")
    )
    .parse()
    .unwrap();

    // Trusting the CA: a real answer.
    let tls = ivcsd::tls::client_config(Some(&pki.path().join("ca.pem"))).unwrap();
    let answer = http_client::request_with_tls(
        Some(&tls),
        Method::GET,
        &url,
        None,
        Timeouts::default(),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(answer.body.starts_with(b"d"), "a bencoded answer");

    // The public roots do not know the private CA: no connection, no password sent.
    let err = http_client::request(Method::GET, &url, None, Timeouts::default(), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("TLS with 127.0.0.1"), "{err}");

    // Plain http to the https port gets no answer.
    let plain: Uri = url
        .to_string()
        .replacen("https", "http", 1)
        .parse()
        .unwrap();
    assert!(
        http_client::request(Method::GET, &plain, None, Timeouts::default(), 1 << 20)
            .await
            .is_err()
    );

    // The admin CLI with --ca works; without it, one clear line and exit 1.
    let base = format!("https://127.0.0.1:{}/announce", tracker.addr.port());
    let run = |with_ca: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"));
        cmd.env("IVCSD_PASSWORD", password("admin"))
            .args(["admin", "--tracker", &base, "--user", "admin"])
            .stdin(Stdio::null());
        if with_ca {
            cmd.arg("--ca").arg(pki.path().join("ca.pem"));
        }
        cmd.args(["torrent", "list"]);
        cmd
    };
    let out = run(true).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(false).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[test]
fn unusable_certificate_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), b"").unwrap();
    std::fs::write(
        dir.path().join("junk.pem"),
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ivcsd::tls::client_config(Some(&dir.path().join("empty.pem"))).unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
    assert!(ivcsd::tls::client_config(Some(&dir.path().join("junk.pem"))).is_err());
    let err = ivcsd::tls::client_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err =
        ivcsd::tls::server_config(&dir.path().join("empty.pem"), &dir.path().join("empty.pem"))
            .unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_publishes_over_https_with_ca() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let tracker = https_tracker(pki.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("u1.pem");
    std::fs::copy(common_tracker::data("rsa2048.pem"), &identity).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("data.bin"), vec![7u8; 100_000]).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .env("IVCSD_PASSWORD", password("u1"))
        .args([
            "--quiet",
            "peer",
            "--user",
            "u1",
            "--listen",
            "127.0.0.1:0",
            "--ca",
        ])
        .arg(pki.path().join("ca.pem"))
        .arg("--identity")
        .arg(&identity)
        .arg("publish")
        .arg(dir.path().join("data.bin"))
        .args([
            "--no-seed",
            "--tracker",
            &format!("https://127.0.0.1:{}/announce", tracker.addr.port()),
        ])
        .arg("--output")
        .arg(dir.path().join("data.torrent"))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let torrent = ivcsd::metainfo::Metainfo::from_bytes(
        &std::fs::read(dir.path().join("data.torrent")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        torrent.announce.as_deref(),
        Some(format!("https://127.0.0.1:{}/announce", tracker.addr.port()).as_str())
    );
}
