//! What an operator's monitoring scrapes: request counts by endpoint and decision, swarm and
//! catalogue sizes, and whether requests are refused for want of an audit log, in the Prometheus text format
//! (version 0.0.4) on a listener of its own (`metrics_listen`, off by default).
//!
//! Only totals are exposed, never a user, torrent name, info hash or address, so the listener
//! needs no credentials and its scrapes add nothing to the audit log; bind it to loopback or a
//! monitoring network all the same. The format is a dozen lines written by hand: a metrics
//! crate would bring a registry and encoders for far more than this needs.
//!
//! Counting is one relaxed atomic add per request, in [`super::State::audit`], the one place
//! every answered request passes through with its endpoint and decision.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The endpoints counted separately, as the audit log names them; others count as `other`.
const ENDPOINTS: [&str; 15] = [
    "announce",
    "scrape",
    "getcipher",
    "publish",
    "torrent",
    "relay/assignments",
    "admin/torrents",
    "admin/torrent",
    "admin/set-authority",
    "admin/relay/assign",
    "admin/relay/unassign",
    "admin/audit",
    "admin/remove",
    "admin",
    "http",
];
const OTHER: usize = ENDPOINTS.len();

/// How a request ended, as far as the counters tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
}

/// The tracker's counters; the gauges are read from the state when scraped.
#[derive(Debug)]
pub struct Metrics {
    /// `[endpoint][outcome]`; the last row is `other`.
    requests: [[AtomicU64; 2]; ENDPOINTS.len() + 1],
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
    pub uptime_secs: u64,
}

impl Metrics {
    pub fn count(&self, endpoint: &str, outcome: Outcome) {
        let row = ENDPOINTS
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(OTHER);
        let column = match outcome {
            Outcome::Allowed => 0,
            Outcome::Refused => 1,
        };
        self.requests[row][column].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_audit_unavailable(&self) {
        self.audit_unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text: counters, then the gauges given.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "ivcsd_requests_total",
            "counter",
            "Requests answered, by endpoint and decision (as in the audit log).",
        );
        for (row, counts) in self.requests.iter().enumerate() {
            let endpoint = ENDPOINTS.get(row).copied().unwrap_or("other");
            for (outcome, count) in ["allow", "refuse"].iter().zip(counts) {
                let n = count.load(Ordering::Relaxed);
                // Writing to a String cannot fail.
                let _ = writeln!(
                    out,
                    "ivcsd_requests_total{{endpoint=\"{endpoint}\",decision=\"{outcome}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "ivcsd_audit_unavailable_total",
            "counter",
            "Requests answered 503 because the audit log could not record them.",
        );
        let _ = writeln!(
            out,
            "ivcsd_audit_unavailable_total {}",
            self.audit_unavailable.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "ivcsd_audit_refusing",
            "1 while requests are refused because the audit log cannot be written.",
            u64::from(gauges.audit_refusing),
        );
        gauge(
            &mut out,
            "ivcsd_torrents",
            "Published torrents.",
            gauges.torrents as u64,
        );
        gauge(
            &mut out,
            "ivcsd_active_swarms",
            "Torrents with at least one live peer.",
            gauges.active_swarms as u64,
        );
        header(
            &mut out,
            "ivcsd_peers",
            "gauge",
            "Live peers over all swarms, seeders and leechers.",
        );
        let _ = writeln!(out, "ivcsd_peers{{state=\"seeder\"}} {}", gauges.seeders);
        let _ = writeln!(out, "ivcsd_peers{{state=\"leecher\"}} {}", gauges.leechers);
        gauge(
            &mut out,
            "ivcsd_users",
            "Users in authority.xml as last loaded.",
            gauges.users as u64,
        );
        gauge(
            &mut out,
            "ivcsd_uptime_seconds",
            "Seconds since the tracker started.",
            gauges.uptime_secs,
        );
        header(
            &mut out,
            "ivcsd_build_info",
            "gauge",
            "The running version, as a label.",
        );
        let _ = writeln!(
            out,
            "ivcsd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series ` (name and labels).
    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counts_land_in_their_series_and_unknown_endpoints_in_other() {
        let m = Metrics::default();
        m.count("announce", Outcome::Allowed);
        m.count("announce", Outcome::Allowed);
        m.count("announce", Outcome::Refused);
        m.count("admin/set-authority", Outcome::Refused);
        m.count("no/such/thing", Outcome::Allowed);
        m.count_audit_unavailable();
        let text = m.render(&Gauges {
            torrents: 3,
            seeders: 2,
            leechers: 5,
            audit_refusing: true,
            ..Gauges::default()
        });
        let req = |e: &str, d: &str| {
            sample(
                &text,
                &format!("ivcsd_requests_total{{endpoint=\"{e}\",decision=\"{d}\"}}"),
            )
        };
        assert_eq!(req("announce", "allow"), Some(2));
        assert_eq!(req("announce", "refuse"), Some(1));
        assert_eq!(req("admin/set-authority", "refuse"), Some(1));
        assert_eq!(req("other", "allow"), Some(1));
        assert_eq!(req("getcipher", "allow"), Some(0));
        assert_eq!(sample(&text, "ivcsd_audit_unavailable_total"), Some(1));
        assert_eq!(sample(&text, "ivcsd_audit_refusing"), Some(1));
        assert_eq!(sample(&text, "ivcsd_torrents"), Some(3));
        assert_eq!(sample(&text, "ivcsd_peers{state=\"seeder\"}"), Some(2));
        assert_eq!(sample(&text, "ivcsd_peers{state=\"leecher\"}"), Some(5));
        // Every series is announced once by HELP and TYPE before its samples.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
    }
}
