//! The maintenance task: a choking round every 10 s, request time-outs every second and a
//! resume record every 5 s, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::{PeerKey, Torrent, send};
use crate::peer::choker::Candidate;
use crate::peer::connection::Command;

impl Torrent {
    /// Choking, request time-outs and resume records, until shutdown.
    pub(super) async fn maintain(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            ticks += 1;
            self.expire_requests();
            if ticks % 10 == 1 {
                self.choke_round();
            }
            if ticks.is_multiple_of(5) {
                self.save_resume().await;
            }
            self.publish_progress();
        }
        // Wait for pieces being written, then record what is on disk.
        let all = u32::try_from(self.verifier_count).unwrap_or(u32::MAX);
        let _quiet = self.verifiers.acquire_many(all).await;
        self.save_resume().await;
    }

    pub(super) fn choke_round(&self) {
        let mut state = self.lock();
        let candidates: Vec<Candidate<PeerKey>> = state
            .peers
            .iter()
            .map(|(&key, s)| Candidate {
                key,
                interested: s.peer_interested,
                received: s.received_round,
                sent: s.sent_round,
            })
            .collect();
        let seeding = state.complete;
        let unchoke =
            state
                .choking
                .round(&candidates, seeding, self.config.unchoke_slots, &mut |n| {
                    rand::random_range(0..n.max(1))
                });
        for (key, slot) in state.peers.iter_mut() {
            let should_choke = !unchoke.contains(key);
            if slot.am_choking != should_choke {
                slot.am_choking = should_choke;
                send(
                    &slot.handle,
                    if should_choke {
                        Command::Choke
                    } else {
                        Command::Unchoke
                    },
                );
            }
            slot.received_round = 0;
            slot.sent_round = 0;
        }
    }
}
