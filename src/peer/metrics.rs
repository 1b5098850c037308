//! A peer process's metrics (`--metrics-listen`, served by [`crate::metrics`]): what a relay or
//! seeder operator alerts on. Traffic and rejected pieces are counted for the whole process in
//! [`Traffic`], so the counters never go down when a torrent stops; the gauges are summed over
//! the torrents running at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::Exposition;
use crate::peer::listener::Registry;

/// Counters every torrent session of one process adds to.
#[derive(Debug, Default)]
pub struct Traffic {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    pieces_rejected: AtomicU64,
    torrents_failed: AtomicU64,
}

impl Traffic {
    pub fn add_uploaded(&self, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_downloaded(&self, bytes: u64) {
        self.downloaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_rejected_piece(&self) {
        self.pieces_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A torrent stopped by an error; counted here because it then leaves the registry.
    pub fn add_failed_torrent(&self) {
        self.torrents_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The page: process counters, then totals over the running torrents.
pub fn render(traffic: &Traffic, registry: &Registry) -> String {
    let (mut complete, mut incomplete, mut tracker_failing) = (0u64, 0u64, 0u64);
    let (mut have, mut total, mut peers, mut banned) = (0u64, 0u64, 0u64, 0u64);
    for torrent in registry.torrents() {
        let p = torrent.subscribe().borrow().clone();
        if p.complete {
            complete += 1;
        } else {
            incomplete += 1;
        }
        tracker_failing += u64::from(p.tracker_error.is_some());
        have += p.bytes_have;
        total += p.bytes_total;
        peers += p.peers as u64;
        banned += torrent.banned_count() as u64;
    }
    let mut page = Exposition::default();
    page.counter(
        "ivcsd_peer_uploaded_bytes_total",
        "Bytes of ciphertext sent to other peers.",
        traffic.uploaded.load(Ordering::Relaxed),
    );
    page.counter(
        "ivcsd_peer_downloaded_bytes_total",
        "Bytes of verified pieces received.",
        traffic.downloaded.load(Ordering::Relaxed),
    );
    page.counter(
        "ivcsd_peer_pieces_rejected_total",
        "Pieces received whose hash did not match (their senders are struck, then banned).",
        traffic.pieces_rejected.load(Ordering::Relaxed),
    );
    page.gauges_by(
        "ivcsd_peer_torrents",
        "Running torrents, complete (seeding) or not (downloading).",
        "state",
        &[("complete", complete), ("incomplete", incomplete)],
    );
    page.counter(
        "ivcsd_peer_torrents_failed_total",
        "Torrents stopped by an error (a full disk, data changed or damaged on disk).",
        traffic.torrents_failed.load(Ordering::Relaxed),
    );
    page.gauge(
        "ivcsd_peer_torrents_tracker_failing",
        "Torrents whose last announce failed.",
        tracker_failing,
    );
    page.gauges_by(
        "ivcsd_peer_content_bytes",
        "Content of the running torrents: verified on disk, and in all.",
        "state",
        &[("have", have), ("total", total)],
    );
    page.gauge("ivcsd_peer_connections", "Connected peers.", peers);
    page.gauge("ivcsd_peer_banned", "Peers banned for bad data.", banned);
    page.build_info("ivcsd");
    page.finish()
}
