//! The tracker over real HTTP on 127.0.0.1: the paper's Table II, every refusal of issue 3,
//! tokens, scrape, relays, restarts and authority reloads.

use crate::common_tracker::*;
use hyper::Method;
use ivcsd::crypto::identity::CipherTarget;
use ivcsd::types::InfoHash;

const NOT_FOUND: &str = "torrent not found or not permitted";
const BAD_CREDENTIALS: &str = "invalid credentials";

/// docs/protocol.md 2, the paper's Table II, step by step.
#[tokio::test]
async fn table_ii() {
    let t = TestTracker::start(&standard_users()).await;
    // peer u3 (3) publishes: T = 0
    let p = t.publish("u3", b"the paper's data set").await;
    let shown = t
        .admin(
            Method::GET,
            "torrent",
            &format!("info_hash={}", enc(&p.info_hash.0)),
        )
        .await
        .ok();
    let torrent = shown.value();
    let d = torrent
        .as_dict()
        .unwrap()
        .get(b"torrent")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(d.get(b"authority").unwrap().as_int(), Some(0));
    assert_eq!(d.get(b"owner").unwrap().as_str(), Some("u3"));
    // u3 seeds its own torrent whatever T
    t.announce("u3", &p.info_hash, 7003, 0).await.ok();
    // u1 (1) announces to download: refused
    let a = t.announce("u1", &p.info_hash, 7001, 100).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.failure().as_deref(), Some(NOT_FOUND));
    // administrator sets T = 4: logged
    t.set_authority(&p.info_hash, 4).await;
    // u1 (1) announces: allowed, and sees u3
    let a = t.announce("u1", &p.info_hash, 7001, 100).await.ok();
    assert_eq!(a.int("complete"), 1);
    assert_eq!(a.bytes("peers"), [127, 0, 0, 1, 0x1b, 0x5b]); // 7003
    // u3 (3) announces: allowed
    t.announce("u3", &p.info_hash, 7003, 0).await.ok();
    // u5 (5) announces: refused
    let a = t.announce("u5", &p.info_hash, 7005, 100).await;
    assert_eq!(a.failure().as_deref(), Some(NOT_FOUND));

    let mut t = t;
    t.stop().await;
    let log = t.audit_log();
    assert!(
        log.lines()
            .any(|l| l.contains("admin/set-authority") && l.contains("authority 0 -> 4")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.contains("\"user\":\"u5\"")
        && l.contains("\"decision\":\"refuse\"")
        && l.contains("authority 5 does not reach torrent authority 4")));
    // never a password in the log
    assert!(!log.contains("pw-"));
    assert_eq!(
        ivcsd::tracker::audit::verify_chain(&log).map(|n| n > 0),
        Ok(true)
    );
}

/// A downloader alone in its swarm is told to come back soon, not at the 30-minute interval;
/// once a seeder is there, everyone gets the normal interval.
#[tokio::test]
async fn a_downloader_without_peers_is_asked_back_soon() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"waiting for a seeder").await;
    t.set_authority(&p.info_hash, 4).await;
    let (interval, min) = (
        t.config.interval_secs as i64,
        t.config.min_interval_secs as i64,
    );
    let wait = t.config.waiting_interval_secs as i64;
    assert!(
        wait < min,
        "the test needs a waiting interval below min interval"
    );
    let alone = t.announce("u1", &p.info_hash, 7001, 100).await.ok();
    assert_eq!(
        (alone.int("interval"), alone.int("min interval")),
        (wait, wait)
    );
    // A seeder with no downloader in sight waits the full interval.
    let seeder = t.announce("u3", &p.info_hash, 7003, 0).await.ok();
    assert_eq!(seeder.bytes("peers"), [127, 0, 0, 1, 0x1b, 0x59]); // 7001
    assert_eq!(seeder.int("interval"), interval);
    let joined = t.announce("u1", &p.info_hash, 7001, 100).await.ok();
    assert_eq!(joined.bytes("peers"), [127, 0, 0, 1, 0x1b, 0x5b]); // 7003
    assert_eq!(
        (joined.int("interval"), joined.int("min interval")),
        (interval, min)
    );
}

#[tokio::test]
async fn identity_refusals() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"identity").await;
    let hash = enc(&p.info_hash.0);
    let base = format!("info_hash={hash}&peer_id=-IV0001-abcdefghijkl&port=1&left=0");
    // no credentials
    let a = t.get(&format!("/announce?{base}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.failure().as_deref(),
        Some("missing credentials: give username and psw, or token")
    );
    // wrong password and unknown user look the same
    let wrong = t
        .get(&format!("/announce?username=u3&psw=nope&{base}"))
        .await;
    let unknown = t
        .get(&format!("/announce?username=nobody&psw=nope&{base}"))
        .await;
    assert_eq!(wrong.failure().as_deref(), Some(BAD_CREDENTIALS));
    assert_eq!(wrong.body, unknown.body);
    // wrong source address: "faraway" may only come from 10.9.9.9
    let a = t
        .get(&format!("/announce?{}&{base}", creds("faraway")))
        .await;
    assert_eq!(a.failure().as_deref(), Some(BAD_CREDENTIALS));
    // the same refusals on a non-BitTorrent endpoint are 401
    let a = t
        .get(&format!("/torrent?username=u3&psw=nope&info_hash={hash}"))
        .await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (401, Some(BAD_CREDENTIALS))
    );
    let mut t = t;
    t.stop().await;
    let log = t.audit_log();
    for reason in [
        "no credentials",
        "wrong password for user \\\"u3\\\"",
        "unknown user \\\"nobody\\\"",
        "source address not allowed for user \\\"faraway\\\"",
    ] {
        assert!(log.contains(reason), "{reason} not in {log}");
    }
}

#[tokio::test]
async fn throttled_source() {
    let t = TestTracker::start_with(&standard_users(), |c| {
        c.throttle_failures = 3;
        c.throttle_block_secs = 3600;
    })
    .await;
    for _ in 0..3 {
        let a = t.get("/scrape?username=u1&psw=wrong").await;
        assert_eq!(a.failure().as_deref(), Some(BAD_CREDENTIALS));
    }
    // now even the right password is refused from this address, without an argon2 run
    let a = t.get(&format!("/scrape?{}", creds("u1"))).await;
    assert_eq!(
        a.failure().as_deref(),
        Some("too many failed logins from this address; try again later")
    );
}

#[tokio::test]
async fn unknown_torrent_is_answered_like_a_forbidden_one() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"secret").await; // T = 0: u1 may not read it
    let unknown = InfoHash([0x42; 20]);
    // announce
    let forbidden = t.announce("u1", &p.info_hash, 1, 1).await;
    let missing = t.announce("u1", &unknown, 1, 1).await;
    assert_eq!(
        (forbidden.status, &forbidden.body),
        (missing.status, &missing.body)
    );
    // torrent file
    let forbidden = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("u1"),
            enc(&p.info_hash.0)
        ))
        .await;
    let missing = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("u1"),
            enc(&unknown.0)
        ))
        .await;
    assert_eq!(forbidden.status, 404);
    assert_eq!(
        (forbidden.status, &forbidden.body),
        (missing.status, &missing.body)
    );
    // getcipher
    let forbidden = t
        .getcipher(
            "u1",
            CipherTarget::Torrent(p.info_hash),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await;
    let missing = t
        .getcipher(
            "u1",
            CipherTarget::Torrent(unknown),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await;
    assert_eq!(forbidden.status, 404);
    assert_eq!(
        (forbidden.status, &forbidden.body),
        (missing.status, &missing.body)
    );
    // scrape leaves both out the same way
    let scrape = t
        .get(&format!(
            "/scrape?{}&info_hash={}&info_hash={}",
            creds("u1"),
            enc(&p.info_hash.0),
            enc(&unknown.0)
        ))
        .await
        .ok();
    let v = scrape.value();
    assert!(
        v.as_dict()
            .unwrap()
            .get(b"files")
            .unwrap()
            .as_dict()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn getcipher_hands_out_the_torrent_key_and_refuses_everything_else() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"keys").await;
    t.set_authority(&p.info_hash, 4).await;
    let torrent = CipherTarget::Torrent(p.info_hash);

    // u1 may read: the key unwraps to the publisher's key, under any key of 2048+ bits
    let a = t
        .getcipher("u1", torrent, key3072(), now(), &fresh_nonce())
        .await
        .ok();
    assert_eq!(a.bytes("key id"), p.key_id.0);
    assert_eq!(
        a.value()
            .as_dict()
            .unwrap()
            .get(b"cipher")
            .unwrap()
            .as_str(),
        Some("rc4+")
    );
    let key = key3072().unwrap_content_key(&a.bytes("key")).unwrap();
    assert_eq!(key.as_bytes(), p.key.as_bytes());

    // stale ts, both ways (the window is 300 s; 10 s of margin so that a second ticking
    // over between signing and checking cannot bring ts back into the window)
    for ts in [now() - 310, now() + 310] {
        let a = t
            .getcipher("u1", torrent, key2048(), ts, &fresh_nonce())
            .await;
        assert_eq!(a.status, 401);
        assert!(
            a.failure().unwrap().contains("from the tracker's clock"),
            "{:?}",
            a.failure()
        );
    }
    // replayed nonce
    let nonce = fresh_nonce();
    t.getcipher("u1", torrent, key2048(), now(), &nonce)
        .await
        .ok();
    let a = t.getcipher("u1", torrent, key2048(), now(), &nonce).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (401, Some("nonce already used"))
    );

    // bad signature: signed by another key than the one sent
    let sign_with_other = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let nonce = fresh_nonce();
        let ts = now();
        let message = ivcsd::crypto::identity::GetcipherMessage {
            username: "u1",
            target: torrent,
            ts,
            nonce: &nonce,
            spki_sha256: key2048().public().spki_sha256(),
        };
        let sig = key3072().sign(&message.to_bytes());
        format!(
            "/getcipher?{}&info_hash={}&key={}&sign={}&ts={ts}&nonce={nonce}",
            creds("u1"),
            enc(&p.info_hash.0),
            b64.encode(key2048().public().spki_der()),
            b64.encode(sig)
        )
    };
    let a = t.get(&sign_with_other).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (401, Some("signature does not verify"))
    );

    // short key (1024 bits)
    let short = std::fs::read(data("rsa1024.spki.der")).unwrap();
    let a = t
        .get(&format!(
            "/getcipher?{}&new=1&key={}&sign=AAAA&ts={}&nonce={}",
            creds("u1"),
            enc(base64_std(&short).as_bytes()),
            now(),
            fresh_nonce()
        ))
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.failure().as_deref(),
        Some("rsa key of 1024 bits is too short: at least 2048 bits are required")
    );

    // a key that is not RSA at all
    let ec = std::fs::read(data("ec.spki.der")).unwrap();
    let a = t
        .get(&format!(
            "/getcipher?{}&new=1&key={}&sign=AAAA&ts={}&nonce={}",
            creds("u1"),
            enc(base64_std(&ec).as_bytes()),
            now(),
            fresh_nonce()
        ))
        .await;
    assert_eq!(a.status, 400);

    // unpinned key: "pinned" registered the 2048-bit key
    let a = t
        .getcipher(
            "pinned",
            CipherTarget::New,
            key3072(),
            now(),
            &fresh_nonce(),
        )
        .await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (
            401,
            Some("key is not the public key registered for this user")
        )
    );
    t.getcipher(
        "pinned",
        CipherTarget::New,
        key2048(),
        now(),
        &fresh_nonce(),
    )
    .await
    .ok();

    // a relay never gets a key, even for a torrent it carries
    t.admin(
        Method::POST,
        "relay/assign",
        &format!("info_hash={}&user=relay", enc(&p.info_hash.0)),
    )
    .await
    .ok();
    let a = t
        .getcipher("relay", torrent, key2048(), now(), &fresh_nonce())
        .await;
    assert_eq!((a.status, a.failure().as_deref()), (404, Some(NOT_FOUND)));
    // ...but it may announce and fetch the torrent
    t.announce("relay", &p.info_hash, 9000, 100).await.ok();
    let file = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("relay"),
            enc(&p.info_hash.0)
        ))
        .await;
    assert_eq!(file.status, 200);
    assert_eq!(file.body.as_ref(), p.torrent.as_slice());
    let assignments = t
        .get(&format!("/relay/assignments?{}", creds("relay")))
        .await
        .ok();
    let v = assignments.value();
    let list = v
        .as_dict()
        .unwrap()
        .get(b"info hashes")
        .unwrap()
        .as_list()
        .unwrap()
        .to_vec();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].as_bytes(), Some(&p.info_hash.0[..]));

    // the paper's alias
    let alias = t
        .getcipher("u1", torrent, key2048(), now(), &fresh_nonce())
        .await
        .ok();
    assert_eq!(alias.bytes("key id"), p.key_id.0);
}

/// `%AB` → `%ab`, leaving literal characters alone.
fn lowercase_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escape = 0;
    for c in s.chars() {
        if c == '%' {
            escape = 2;
            out.push(c);
        } else if escape > 0 {
            escape -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn announce_alias_get_cipher_yes() {
    let t = TestTracker::start(&standard_users()).await;
    let nonce = fresh_nonce();
    let ts = now();
    let public = key2048().public();
    let message = ivcsd::crypto::identity::GetcipherMessage {
        username: "u1",
        target: CipherTarget::New,
        ts,
        nonce: &nonce,
        spki_sha256: public.spki_sha256(),
    };
    let sig = key2048().sign(&message.to_bytes());
    let a = t
        .get(&format!(
            "/announce?{}&getCipher=yes&new=1&key={}&sign={}&ts={ts}&nonce={nonce}",
            creds("u1"),
            enc(base64_std(public.spki_der()).as_bytes()),
            enc(base64_std(&sig).as_bytes()),
        ))
        .await
        .ok();
    assert_eq!(a.bytes("key id").len(), 16);
    key2048().unwrap_content_key(&a.bytes("key")).unwrap();
}

#[tokio::test]
async fn tokens_work_and_end_when_the_user_changes() {
    let t = TestTracker::start(&standard_users()).await;
    let a = t.get(&format!("/scrape?{}", creds("u1"))).await.ok();
    assert!(a.value().as_dict().unwrap().get(b"token").is_none());
    // tokens come with announce and scrape answers; other endpoints ignore getToken
    t.get(&format!("/relay/assignments?{}&getToken=y", creds("u1")))
        .await
        .ok();
    let a = t
        .get(&format!("/scrape?{}&getToken=y", creds("u1")))
        .await
        .ok();
    let scrape_token = String::from_utf8(a.bytes("token")).unwrap();
    t.get(&format!("/scrape?token={}", enc(scrape_token.as_bytes())))
        .await
        .ok();
    let p = t.publish("u1", b"token data").await;
    let a = t
        .get(&format!(
            "/announce?{}&getToken=y&info_hash={}&peer_id=-IV0001-abcdefghijkl&port=5&left=0",
            creds("u1"),
            enc(&p.info_hash.0)
        ))
        .await
        .ok();
    let token = String::from_utf8(a.bytes("token")).unwrap();
    let expires = a.int("token expires") as u64;
    assert!(expires >= now() + 3590 && expires <= now() + 3610);
    let with_token = format!(
        "/announce?token={}&info_hash={}&peer_id=-IV0001-abcdefghijkl&port=5&left=0",
        enc(token.as_bytes()),
        enc(&p.info_hash.0)
    );
    t.get(&with_token).await.ok();
    // a forged token
    // (the last character is changed to another one, whatever it was)
    let last = if token.ends_with('A') { "B" } else { "A" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    let a = t
        .get(&with_token.replace(&enc(token.as_bytes()), &enc(forged.as_bytes())))
        .await;
    assert_eq!(a.failure().as_deref(), Some(BAD_CREDENTIALS));
    // u1's authority changes: the token ends
    let mut users = standard_users();
    users[0].authority = 2;
    write_authority(&t.authority_path(), &users);
    assert!(t.users.reload().unwrap());
    let a = t.get(&with_token).await;
    assert_eq!(a.failure().as_deref(), Some(BAD_CREDENTIALS));
}

#[tokio::test]
async fn broken_authority_file_keeps_the_previous_one() {
    let t = TestTracker::start(&standard_users()).await;
    std::fs::write(
        t.authority_path(),
        "<peerAuthority><peer><usernme>x</usernme>",
    )
    .unwrap();
    assert!(t.users.reload().is_err());
    t.get(&format!("/scrape?{}", creds("u1"))).await.ok();
}

#[tokio::test]
async fn malformed_requests() {
    let t = TestTracker::start(&standard_users()).await;
    let c = creds("u1");
    // (path and query, status, failure reason)
    let cases: &[(&str, u16, &str)] = &[
        (
            "/announce?info_hash=%zz",
            200,
            "malformed query: bad percent-encoding at byte 10 of the query",
        ),
        (
            "/announce?info_hash=%4",
            200,
            "malformed query: bad percent-encoding at byte 10 of the query",
        ),
        (
            "/announce?{c}&info_hash=abc&peer_id=-IV0001-abcdefghijkl&port=1&left=0",
            200,
            "malformed query: info_hash must be 20 bytes, got 3",
        ),
        (
            "/announce?{c}&info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=-IV0001-abcdefghijkl&left=0",
            200,
            "malformed query: missing parameter `port`",
        ),
        (
            "/announce?{c}&info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=-IV0001-abcdefghijkl&port=70000&left=0",
            200,
            "malformed query: parameter `port` is invalid: must be 1 to 65535",
        ),
        (
            "/announce?{c}&psw=again&info_hash=aaaaaaaaaaaaaaaaaaaa",
            200,
            "malformed query: parameter `psw` is given more than once",
        ),
        (
            "/scrape?{c}&info_hash=short",
            200,
            "malformed query: info_hash must be 20 bytes, got 5",
        ),
        (
            "/torrent?{c}",
            400,
            "malformed query: missing parameter `info_hash`",
        ),
        (
            "/getcipher?{c}&new=1&key=AAAA&sign=AAAA&ts=1&nonce=xyz",
            400,
            "malformed query: parameter `nonce` is invalid: must be 32 to 64 hex digits",
        ),
        (
            "/getcipher?{c}&new=1&key=A$A&sign=AAAA&ts=1&nonce=00112233445566778899aabbccddeeff",
            400,
            "malformed query: parameter `key` is invalid: not base64",
        ),
        ("/nowhere", 404, "no such endpoint /nowhere"),
    ];
    for (path, status, reason) in cases {
        let path = path.replace("{c}", &c);
        let a = t.get(&path).await;
        assert_eq!(
            (a.status, a.failure().as_deref()),
            (*status, Some(*reason)),
            "{path}"
        );
    }
    // wrong methods
    let a = t.post("/announce", vec![]).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (400, Some("/announce takes GET"))
    );
    let a = t.get(&format!("/publish?{c}")).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (400, Some("/publish takes POST"))
    );
}

#[tokio::test]
async fn publish_refusals() {
    let t = TestTracker::start(&standard_users()).await;
    let c = creds("u3");
    // oversized body (the test limit is 64 KiB)
    let a = t
        .post(&format!("/publish?{c}"), vec![b'x'; 64 * 1024 + 1])
        .await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (400, Some("request body larger than 65536 bytes"))
    );
    // broken torrent
    let a = t
        .post(&format!("/publish?{c}"), b"d4:infoi1ee".to_vec())
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.failure().unwrap().starts_with("invalid torrent: "),
        "{:?}",
        a.failure()
    );
    // a plain (not private, not ivcsd) torrent
    let file = t.dir.path().join("plain");
    std::fs::write(&file, b"plain data").unwrap();
    let plain = ivcsd::metainfo::create_plain(&file, "", None).unwrap();
    let a = t.post(&format!("/publish?{c}"), plain.bytes).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (400, Some("torrent is not private (info.private must be 1)"))
    );
    // another user's pending key cannot be used; the owner republishing is idempotent
    let p = t.publish("u3", b"mine").await;
    let again = t
        .post(&format!("/publish?{c}"), p.torrent.clone())
        .await
        .ok();
    assert_eq!(again.bytes("info hash"), p.info_hash.0);
    let a = t
        .post(&format!("/publish?{}", creds("u1")), p.torrent.clone())
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.failure().as_deref(),
        Some("info.ivcsd.key id names no pending key of yours")
    );
    // no credentials
    let a = t.post("/publish", p.torrent.clone()).await;
    assert_eq!(a.status, 401);
    // an announce URL that carries the publisher's password would be served to every reader
    let leaky = {
        use ivcsd::bencode::{self, Value};
        let v = bencode::decode(&p.torrent).unwrap().into_owned();
        let Value::Dict(mut d) = v else { panic!() };
        d.insert(
            &b"announce"[..],
            Value::from("http://t/announce?username=u3&psw=pw-u3"),
        );
        Value::Dict(d).encode()
    };
    let a = t.post(&format!("/publish?{c}"), leaky).await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (
            400,
            Some("the torrent's announce URL carries credentials; peers add their own")
        )
    );
}

#[tokio::test]
async fn publish_ciphers_limit_new_torrents_and_getcipher_names_the_preferred_suite() {
    use ivcsd::crypto::content::Cipher;
    use ivcsd::metainfo::TorrentBuilder;
    use ivcsd::types::KeyId;
    let t = TestTracker::start_with(&standard_users(), |c| {
        c.publish_ciphers = vec![Cipher::Aes256Ctr];
    })
    .await;
    let c = creds("u3");
    let grant = t
        .getcipher("u3", CipherTarget::New, key2048(), now(), &fresh_nonce())
        .await
        .ok();
    assert_eq!(
        grant.bytes("cipher"),
        b"aes-256-ctr",
        "a new key serves either suite; the answer names the tracker's preferred one"
    );
    let key_id = KeyId::from_slice(&grant.bytes("key id")).unwrap();
    let key = key2048().unwrap_content_key(&grant.bytes("key")).unwrap();
    let file = t.dir.path().join("policy.bin");
    std::fs::write(&file, vec![7u8; 70_000]).unwrap();
    let build = |cipher| {
        TorrentBuilder::new(&file)
            .cipher(cipher)
            .encrypted(&key, key_id)
            .unwrap()
    };

    let refused = t
        .post(&format!("/publish?{c}"), build(Cipher::Rc4Plus).bytes)
        .await;
    assert_eq!(
        (refused.status, refused.failure().as_deref()),
        (
            400,
            Some(
                "this tracker accepts torrents encrypted with aes-256-ctr only, not rc4+ (publish with --cipher aes-256-ctr)"
            )
        )
    );
    assert!(
        t.audit_log()
            .contains("accepts torrents encrypted with aes-256-ctr only"),
        "the refusal is audited"
    );

    // The same key, now with the allowed suite: stored, and named by getcipher.
    let aes = build(Cipher::Aes256Ctr);
    let published = t.post(&format!("/publish?{c}"), aes.bytes).await.ok();
    assert_eq!(published.bytes("info hash"), aes.metainfo.info_hash.0);
    let grant = t
        .getcipher(
            "u3",
            CipherTarget::Torrent(aes.metainfo.info_hash),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await
        .ok();
    assert_eq!(grant.bytes("cipher"), b"aes-256-ctr");
}

#[tokio::test]
async fn admin_api_is_for_admins_only() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"admin").await;
    for (method, call, params) in [
        (Method::GET, "torrents", String::new()),
        (
            Method::POST,
            "set-authority",
            format!("info_hash={}&authority=9", enc(&p.info_hash.0)),
        ),
        (
            Method::POST,
            "relay/assign",
            format!("info_hash={}&user=u1", enc(&p.info_hash.0)),
        ),
        (Method::GET, "audit", String::new()),
        (
            Method::POST,
            "remove",
            format!("info_hash={}", enc(&p.info_hash.0)),
        ),
    ] {
        let body = (method == Method::POST).then(bytes::Bytes::new);
        let a = t
            .request(
                method,
                &format!("/admin/{call}?{}&{params}", creds("u3")),
                body,
            )
            .await;
        assert_eq!(
            (a.status, a.failure().as_deref()),
            (401, Some("administrators only")),
            "{call}"
        );
    }
    // nothing changed
    let list = t.admin(Method::GET, "torrents", "").await.ok();
    let v = list.value();
    let torrents = v
        .as_dict()
        .unwrap()
        .get(b"torrents")
        .unwrap()
        .as_list()
        .unwrap()
        .to_vec();
    assert_eq!(torrents.len(), 1);
    let d = torrents[0].as_dict().unwrap();
    assert_eq!(d.get(b"authority").unwrap().as_int(), Some(0));
    assert_eq!(d.get(b"size").unwrap().as_int(), Some(5));
    // the audit tail shows the refusals
    let tail = t
        .admin(Method::GET, "audit", "since=0&limit=1000")
        .await
        .ok();
    let body = String::from_utf8_lossy(&tail.body).into_owned();
    assert!(body.contains("administrators only"));
    assert!(!body.contains("pw-"));
}

#[tokio::test]
async fn admin_remove_refuses_malformed_calls_and_removes_nothing() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"still here").await;
    let hash = enc(&p.info_hash.0);
    let unknown = enc(&[7u8; 20]);
    for (method, params, status, reason) in [
        (
            Method::GET,
            format!("info_hash={hash}"),
            400,
            "this admin call takes POST",
        ),
        (
            Method::POST,
            String::new(),
            400,
            "malformed query: missing parameter `info_hash`",
        ),
        (
            Method::POST,
            "info_hash=abc".into(),
            400,
            "malformed query: info_hash must be 20 bytes, got 3",
        ),
        (
            Method::POST,
            format!("info_hash={unknown}"),
            404,
            "torrent not found or not permitted",
        ),
    ] {
        let body = (method == Method::POST).then(bytes::Bytes::new);
        let a = t
            .request(
                method,
                &format!("/admin/remove?{}&{params}", creds("admin")),
                body,
            )
            .await;
        assert_eq!(
            (a.status, a.failure().as_deref()),
            (status, Some(reason)),
            "{params}"
        );
    }
    // The torrent and its key are untouched.
    let target = CipherTarget::Torrent(p.info_hash);
    t.getcipher("u3", target, key2048(), now(), &fresh_nonce())
        .await
        .ok();
}

#[tokio::test]
async fn stock_client_announces_and_scrapes() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"stock").await;
    t.set_authority(&p.info_hash, 5).await;
    // lowercase percent-encoding, the client's own parameters appended after credentials
    let hash_lower = lowercase_escapes(&enc(&p.info_hash.0));
    for (user, port, left) in [("u3", 6881u16, 0u64), ("u5", 6882, 10)] {
        let peer_id = format!("-AR1360-{user:x>12}");
        t.get(&format!(
            "/announce?{}&info_hash={hash_lower}&peer_id={peer_id}&port={port}\
             &uploaded=0&downloaded=0&left={left}&compact=1&key=0123abcd&supportcrypto=1\
             &event=started&numwant=50&no_peer_id=1&corrupt=0",
            creds(user)
        ))
        .await
        .ok();
    }
    // compact=0: the dictionary list
    let a = t
        .get(&format!(
            "/announce?{}&info_hash={}&peer_id=-AR1360-xxxxxxxxxxxx&port=6883&left=10&compact=0",
            creds("u1"),
            enc(&p.info_hash.0)
        ))
        .await
        .ok();
    let v = a.value();
    let d = v.as_dict().unwrap();
    assert_eq!(d.get(b"interval").unwrap().as_int(), Some(1800));
    assert_eq!(d.get(b"complete").unwrap().as_int(), Some(1));
    assert_eq!(d.get(b"incomplete").unwrap().as_int(), Some(2));
    let peers = d.get(b"peers").unwrap().as_list().unwrap();
    assert_eq!(peers.len(), 2);
    for p in peers {
        let p = p.as_dict().unwrap();
        assert_eq!(p.get(b"ip").unwrap().as_str(), Some("127.0.0.1"));
    }
    // scrape by u5 counts the swarm
    let s = t
        .get(&format!(
            "/scrape?{}&info_hash={}",
            creds("u5"),
            enc(&p.info_hash.0)
        ))
        .await
        .ok();
    let v = s.value();
    let files = v
        .as_dict()
        .unwrap()
        .get(b"files")
        .unwrap()
        .as_dict()
        .unwrap();
    let f = files.get(&p.info_hash.0).unwrap().as_dict().unwrap();
    assert_eq!(f.get(b"complete").unwrap().as_int(), Some(1));
    assert_eq!(f.get(b"incomplete").unwrap().as_int(), Some(2));
    // stopped leaves the swarm
    t.get(&format!(
        "/announce?{}&info_hash={}&peer_id=-AR1360-xxxxxxxxxxxx&port=6883&left=10&event=stopped",
        creds("u1"),
        enc(&p.info_hash.0)
    ))
    .await
    .ok();
    let s = t
        .get(&format!(
            "/scrape?{}&info_hash={}",
            creds("u5"),
            enc(&p.info_hash.0)
        ))
        .await
        .ok();
    let v = s.value();
    let files = v
        .as_dict()
        .unwrap()
        .get(b"files")
        .unwrap()
        .as_dict()
        .unwrap();
    let f = files.get(&p.info_hash.0).unwrap().as_dict().unwrap();
    assert_eq!(f.get(b"incomplete").unwrap().as_int(), Some(1));
}

#[tokio::test]
async fn restart_keeps_torrents_keys_authorities_and_relays() {
    let t = TestTracker::start(&standard_users()).await;
    let p = t.publish("u3", b"durable").await;
    t.set_authority(&p.info_hash, 1).await;
    t.admin(
        Method::POST,
        "relay/assign",
        &format!("info_hash={}&user=relay", enc(&p.info_hash.0)),
    )
    .await
    .ok();
    let t = t.restart().await;
    // authority 1 kept: u1 reads, u3 owns, u5 does not
    let a = t
        .getcipher(
            "u1",
            CipherTarget::Torrent(p.info_hash),
            key2048(),
            now(),
            &fresh_nonce(),
        )
        .await
        .ok();
    let key = key2048().unwrap_content_key(&a.bytes("key")).unwrap();
    assert_eq!(key.as_bytes(), p.key.as_bytes());
    t.announce("u3", &p.info_hash, 1, 0).await.ok();
    assert_eq!(
        t.announce("u5", &p.info_hash, 1, 0)
            .await
            .failure()
            .as_deref(),
        Some(NOT_FOUND)
    );
    let file = t
        .get(&format!(
            "/torrent?{}&info_hash={}",
            creds("relay"),
            enc(&p.info_hash.0)
        ))
        .await;
    assert_eq!(file.body.as_ref(), p.torrent.as_slice());
    // the master key file is private
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.config.data_dir.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // the audit log continues its chain across the restart
    let mut t = t;
    t.stop().await;
    assert!(ivcsd::tracker::audit::verify_chain(&t.audit_log()).is_ok());
}

/// docs/protocol.md 4.3: a pending key that no torrent claims in time cannot be published with.
/// (Real time: the store and the HTTP stack run on threads that tokio's paused clock would
/// race; the TTL is one second.)
#[tokio::test]
async fn expired_pending_keys_cannot_be_claimed() {
    let t = TestTracker::start_with(&standard_users(), |c| c.pending_key_ttl_secs = 1).await;
    let answer = t
        .getcipher("u3", CipherTarget::New, key2048(), now(), &fresh_nonce())
        .await
        .ok();
    let key_id = ivcsd::types::KeyId::from_slice(&answer.bytes("key id")).unwrap();
    let key = key2048().unwrap_content_key(&answer.bytes("key")).unwrap();
    let file = t.dir.path().join("late");
    std::fs::write(&file, b"too late").unwrap();
    let created = ivcsd::metainfo::create_encrypted(&file, &key, key_id, "", None).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = t
        .post(&format!("/publish?{}", creds("u3")), created.bytes)
        .await;
    assert_eq!(
        (a.status, a.failure().as_deref()),
        (400, Some("info.ivcsd.key id names no pending key of yours"))
    );
}

/// BEP 7 via BEP 23's `peers6`: peers that reach the tracker over IPv6 are handed out as
/// 18-byte compact entries, and not in `peers`.
#[tokio::test]
async fn ipv6_peers_are_compact_in_peers6() {
    let t = TestTracker::start_on(&standard_users(), "[::1]:0").await;
    let p = t.publish("u3", b"over ipv6").await;
    t.announce("u3", &p.info_hash, 6881, 0).await.ok();
    let a = t.announce("u3", &p.info_hash, 6882, 0).await.ok(); // same peer id: updated
    assert_eq!(a.int("complete"), 1);
    t.set_authority(&p.info_hash, 1).await;
    let a = t.announce("u1", &p.info_hash, 7001, 10).await.ok();
    assert_eq!(a.bytes("peers"), Vec::<u8>::new());
    let mut expected = std::net::Ipv6Addr::LOCALHOST.octets().to_vec();
    expected.extend_from_slice(&6882u16.to_be_bytes());
    assert_eq!(a.bytes("peers6"), expected);
}
