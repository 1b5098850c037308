//! The tracker's metrics (served by [`crate::metrics`] on `metrics_listen`): request counts by
//! endpoint and decision, swarm and catalogue sizes, and whether requests are refused for want
//! of an audit log. Scrapes are not API requests: they are not counted or audited.
//!
//! Counting is one relaxed atomic add per request, in [`super::TrackerState::audit`], the one place
//! every answered request passes through with its endpoint and decision; 503s are counted
//! where every response passes, in the server, whichever check refused them.

use super::audit::Decision;
use super::endpoint::Endpoint;
use crate::metrics::Exposition;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tracker's counters; the gauges are read from the state when scraped.
#[derive(Debug)]
pub struct Metrics {
    /// `[endpoint.index()][decision]`: one row per [`Endpoint`], so every endpoint has its
    /// series and finding it is an index.
    requests: [[AtomicU64; 2]; Endpoint::COUNT],
    /// Requests answered 503 because the audit log could not take their entry.
    audit_unavailable: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            audit_unavailable: AtomicU64::new(0),
        }
    }
}

/// What [`Metrics::render`] reads from the tracker's state at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub torrents: usize,
    pub active_swarms: usize,
    pub seeders: usize,
    pub leechers: usize,
    pub users: usize,
    pub audit_refusing: bool,
    pub audit_failing: bool,
    pub uptime_secs: u64,
}

impl Metrics {
    pub fn count(&self, endpoint: Endpoint, decision: Decision) {
        let column = match decision {
            Decision::Allow => 0,
            Decision::Refuse => 1,
        };
        self.requests[endpoint.index()][column].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_audit_unavailable(&self) {
        self.audit_unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text: counters, then the gauges given.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut page = Exposition::default();
        page.family(
            "ivcsd_requests_total",
            "counter",
            "Requests answered, by endpoint and decision (as in the audit log).",
        );
        for (endpoint, counts) in Endpoint::ALL.iter().zip(&self.requests) {
            let endpoint = endpoint.name();
            for (decision, count) in ["allow", "refuse"].iter().zip(counts) {
                page.sample(
                    &format!(
                        "ivcsd_requests_total{{endpoint=\"{endpoint}\",decision=\"{decision}\"}}"
                    ),
                    count.load(Ordering::Relaxed),
                );
            }
        }
        page.counter(
            "ivcsd_audit_unavailable_total",
            "Requests answered 503 because the audit log could not record them.",
            self.audit_unavailable.load(Ordering::Relaxed),
        );
        page.gauge(
            "ivcsd_audit_failing",
            "1 while the audit log cannot be written, whatever audit_on_failure says.",
            u64::from(gauges.audit_failing),
        );
        page.gauge(
            "ivcsd_audit_refusing",
            "1 while requests are refused because the audit log cannot be written.",
            u64::from(gauges.audit_refusing),
        );
        page.gauge(
            "ivcsd_torrents",
            "Published torrents.",
            gauges.torrents as u64,
        );
        page.gauge(
            "ivcsd_active_swarms",
            "Torrents with at least one live peer.",
            gauges.active_swarms as u64,
        );
        page.gauges_by(
            "ivcsd_peers",
            "Live peers over all swarms, seeders and leechers.",
            "state",
            &[
                ("seeder", gauges.seeders as u64),
                ("leecher", gauges.leechers as u64),
            ],
        );
        page.gauge(
            "ivcsd_users",
            "Users in authority.xml as last loaded.",
            gauges.users as u64,
        );
        page.gauge(
            "ivcsd_uptime_seconds",
            "Seconds since the tracker started.",
            gauges.uptime_secs,
        );
        page.build_info("ivcsd");
        page.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metrics::sample_value as sample;

    fn requests(text: &str, endpoint: &str, decision: &str) -> Option<u64> {
        sample(
            text,
            &format!("ivcsd_requests_total{{endpoint=\"{endpoint}\",decision=\"{decision}\"}}"),
        )
    }

    #[test]
    fn counts_land_in_their_series() {
        let m = Metrics::default();
        m.count(Endpoint::Announce, Decision::Allow);
        m.count(Endpoint::Announce, Decision::Allow);
        m.count(Endpoint::Announce, Decision::Refuse);
        m.count(Endpoint::AdminSetAuthority, Decision::Refuse);
        m.count(Endpoint::AnnounceGetCipher, Decision::Allow);
        m.count_audit_unavailable();
        let text = m.render(&Gauges {
            torrents: 3,
            seeders: 2,
            leechers: 5,
            audit_refusing: true,
            ..Gauges::default()
        });
        let req = |e: &str, d: &str| requests(&text, e, d);
        assert_eq!(req("announce", "allow"), Some(2));
        assert_eq!(req("announce", "refuse"), Some(1));
        assert_eq!(req("admin/set-authority", "refuse"), Some(1));
        // The paper's alias has its own series: it used to be counted as `other`.
        assert_eq!(req("announce?getCipher", "allow"), Some(1));
        assert_eq!(req("other", "allow"), None, "no endpoint goes uncounted");
        assert_eq!(req("getcipher", "allow"), Some(0));
        assert_eq!(sample(&text, "ivcsd_audit_unavailable_total"), Some(1));
        assert_eq!(sample(&text, "ivcsd_audit_refusing"), Some(1));
        assert_eq!(sample(&text, "ivcsd_torrents"), Some(3));
        assert_eq!(sample(&text, "ivcsd_peers{state=\"seeder\"}"), Some(2));
        assert_eq!(sample(&text, "ivcsd_peers{state=\"leecher\"}"), Some(5));
    }

    /// Every route, the alias and the pre-routing refusal have a series of their own, under
    /// the name the audit log gives them.
    #[test]
    fn every_endpoint_has_a_metrics_series() {
        let m = Metrics::default();
        for (i, endpoint) in Endpoint::ALL.iter().enumerate() {
            for _ in 0..=i {
                m.count(*endpoint, Decision::Refuse);
            }
        }
        let text = m.render(&Gauges::default());
        for (i, endpoint) in Endpoint::ALL.iter().enumerate() {
            let name = endpoint.name();
            assert_eq!(
                requests(&text, name, "refuse"),
                Some(i as u64 + 1),
                "{name}"
            );
            assert_eq!(requests(&text, name, "allow"), Some(0), "{name}");
        }
    }
}
