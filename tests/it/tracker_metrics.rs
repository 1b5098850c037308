//! The tracker's metrics listener (`metrics_listen`): what it counts, what it shows and
//! hides, that it serves only `GET /metrics`, and a clear error when its address is taken.
//! Real tracker, real sockets on 127.0.0.1.

use std::sync::Arc;

use crate::common_tracker::*;
use hyper::Method;
use ivcsd::tracker::authority::AuthoritySource;

/// Waits up to 10 s for `done`.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not within 10 s");
}

fn requests(text: &str, endpoint: &str, decision: &str) -> u64 {
    metrics_sample(
        text,
        &format!("ivcsd_requests_total{{endpoint=\"{endpoint}\",decision=\"{decision}\"}}"),
    )
}

#[tokio::test]
async fn metrics_count_what_the_tracker_decided_and_name_no_one() {
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let tracker = TestTracker::start_with(&standard_users(), |c| {
        c.metrics_listen = Some(metrics_addr);
    })
    .await;
    // The tracker binds the metrics address itself, once it has started.
    wait_until_answering(metrics_addr).await;
    let (status, before) = scrape_metrics(metrics_addr, Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(requests(&before, "announce", "allow"), 0);
    assert_eq!(metrics_sample(&before, "ivcsd_torrents"), 0);

    let published = tracker.publish("u1", b"counted, not named").await;
    // The owner seeds; u5 (authority 5) may not read an authority-0 torrent; a wrong password.
    let mut allowed = 0;
    let mut refused = 0;
    for (user, left) in [("u1", 0), ("u5", 100), ("u1", 0)] {
        let answer = tracker
            .announce(user, &published.info_hash, 6881, left)
            .await;
        match answer.failure() {
            None => allowed += 1,
            Some(_) => refused += 1,
        }
    }
    let bad = tracker
        .get(&format!(
            "/announce?username=u1&psw=wrong&info_hash={}&peer_id=-IV0001-000000000001&port=1&uploaded=0&downloaded=0&left=0",
            enc(&published.info_hash.0)
        ))
        .await;
    assert!(bad.failure().is_some());
    refused += 1;
    assert_eq!(
        (allowed, refused),
        (2, 2),
        "the rules changed under this test"
    );

    let announce_allowed = "ivcsd_requests_total{endpoint=\"announce\",decision=\"allow\"}";
    let text = metrics_when(metrics_addr, announce_allowed, |n| n == allowed).await;
    assert_eq!(requests(&text, "announce", "refuse"), refused);
    assert_eq!(
        requests(&text, "getcipher", "allow"),
        1,
        "the key for publish"
    );
    assert_eq!(requests(&text, "publish", "allow"), 1);
    assert_eq!(requests(&text, "publish", "refuse"), 0);
    assert_eq!(metrics_sample(&text, "ivcsd_torrents"), 1);
    assert_eq!(metrics_sample(&text, "ivcsd_active_swarms"), 1);
    assert_eq!(metrics_sample(&text, "ivcsd_peers{state=\"seeder\"}"), 1);
    assert_eq!(metrics_sample(&text, "ivcsd_peers{state=\"leecher\"}"), 0);
    assert_eq!(
        metrics_sample(&text, "ivcsd_users"),
        standard_users().len() as u64
    );
    assert_eq!(metrics_sample(&text, "ivcsd_audit_refusing"), 0);
    assert_eq!(metrics_sample(&text, "ivcsd_audit_failing"), 0);
    assert_eq!(metrics_sample(&text, "ivcsd_audit_unavailable_total"), 0);
    // Totals only: no user, info hash or address.
    for secret in [
        "u1".to_owned(),
        "u5".to_owned(),
        published.info_hash.to_hex(),
        "127.0.0.1".to_owned(),
    ] {
        assert!(!text.contains(&secret), "{secret} shown:\n{text}");
    }
    // Scrapes are not requests of the API: they leave the counters and the audit log alone.
    // The log is written a moment after an announce is answered, so the check waits for the
    // line of one more announce made after the scrapes: every line is there by then.
    let announce_lines = || {
        tracker
            .audit_log()
            .lines()
            .filter(|l| l.contains("\"endpoint\":\"announce\""))
            .count()
    };
    wait_for(|| announce_lines() == 4).await;
    let audit_lines = tracker.audit_log().lines().count();
    let (_, again) = scrape_metrics(metrics_addr, Method::GET, "/metrics").await;
    assert_eq!(requests(&again, "announce", "allow"), allowed);
    tracker.announce("u1", &published.info_hash, 6881, 0).await;
    wait_for(|| announce_lines() == 5).await;
    assert_eq!(
        tracker.audit_log().lines().count(),
        audit_lines + 1,
        "a scrape was audited"
    );

    // Only GET /metrics here, and no /metrics on the API.
    assert_eq!(
        scrape_metrics(metrics_addr, Method::GET, "/announce")
            .await
            .0,
        404
    );
    assert_eq!(
        scrape_metrics(metrics_addr, Method::POST, "/metrics")
            .await
            .0,
        404
    );
    assert_eq!(tracker.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn a_taken_metrics_address_stops_the_tracker_with_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_authority(&dir.path().join("authority.xml"), &standard_users());
    let mut config = test_config(&dir.path().join("data"));
    config.metrics_listen = Some(taken.local_addr().unwrap());
    let users = Arc::new(AuthoritySource::load(dir.path().join("authority.xml")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        ivcsd::tracker::run(listener, config, users, std::future::pending()),
    )
    .await
    .expect("the tracker started anyway");
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "error listening for metrics on {}: ",
            taken.local_addr().unwrap()
        )),
        "{error}"
    );
}
