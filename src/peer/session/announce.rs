//! The announce loop: started, every interval (with back-off while the tracker is away),
//! completed, and stopped at the end (docs/protocol.md section 4.1).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Torrent;
use crate::peer::tracker_client::{AnnounceEvent, AnnounceRequest};

impl Torrent {
    /// Announces started, then at the tracker's interval, completed once, and stopped at the end.
    /// While the tracker is unreachable it retries with back-off, and the swarm keeps going.
    pub(super) async fn announce_loop(self: Arc<Self>) {
        let Some(tracker) = self.tracker.clone() else {
            return;
        };
        let mut event = Some(AnnounceEvent::Started);
        let mut completed_sent = self.is_complete();
        let mut backoff = Duration::from_secs(5);
        loop {
            let request = self.announce_request(event);
            let wait = match tracker.announce(&request).await {
                Ok(response) => {
                    backoff = Duration::from_secs(5);
                    event = None;
                    self.progress.send_modify(|p| p.tracker_error = None);
                    self.dial(&response.peers);
                    Duration::from_secs(
                        response
                            .interval_secs
                            .max(response.min_interval_secs.unwrap_or(0))
                            .clamp(5, 3600),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "announce failed");
                    self.progress
                        .send_modify(|p| p.tracker_error = Some(e.to_string()));
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    wait
                }
            };
            if event.is_none() && !completed_sent && self.is_complete() {
                event = Some(AnnounceEvent::Completed);
                completed_sent = true;
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.completed.notified(), if !completed_sent => {
                    event = Some(AnnounceEvent::Completed);
                    completed_sent = true;
                }
            }
        }
        // A download that completed just before the end still reports it, then leaves.
        if !completed_sent && self.is_complete() {
            let request = self.announce_request(Some(AnnounceEvent::Completed));
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.announce(&request)).await;
        }
        let request = self.announce_request(Some(AnnounceEvent::Stopped));
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.announce(&request)).await;
    }

    fn announce_request(&self, event: Option<AnnounceEvent>) -> AnnounceRequest {
        let state = self.lock();
        let have = state.picker.have();
        let info = self.store.info();
        let bytes_have = self.geometry.bytes_in(have);
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.config.connection.peer_id,
            port: self.config.announce_port,
            uploaded: self.uploaded.load(Ordering::Relaxed),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            left: info.total_length - bytes_have.min(info.total_length),
            event,
            numwant: self.config.numwant,
        }
    }
}
