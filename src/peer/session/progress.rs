//! What a session reports as it goes: a [`Progress`] value on a watch channel, the last value
//! always current, for the command's progress bar and the seeders' status lines.

use std::sync::atomic::Ordering;

use super::Torrent;

/// What a torrent session reports as it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub bytes_have: u64,
    pub bytes_total: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub peers: usize,
    pub complete: bool,
    /// A fatal error (a full disk, say); the session stops.
    pub error: Option<String>,
    /// The last tracker problem, if the last announce failed.
    pub tracker_error: Option<String>,
}

impl Torrent {
    pub(super) fn publish_progress(&self) {
        let (pieces_have, bytes_have, peers, complete) = {
            let state = self.lock();
            let have = state.picker.have();
            let bytes = self.geometry.bytes_in(have);
            (have.count(), bytes, state.peers.len(), state.complete)
        };
        let downloaded = self.downloaded.load(Ordering::Relaxed);
        let uploaded = self.uploaded.load(Ordering::Relaxed);
        let total = self.store.info().total_length;
        let pieces_total = self.geometry.piece_count();
        self.progress.send_if_modified(|p| {
            let new = Progress {
                pieces_have,
                pieces_total,
                bytes_have,
                bytes_total: total,
                downloaded,
                uploaded,
                peers,
                complete,
                error: p.error.clone(),
                tracker_error: p.tracker_error.clone(),
            };
            if *p == new {
                false
            } else {
                *p = new;
                true
            }
        });
    }
}
