//! Re-verification of a long-running seeder's or relay's data on disk, and what to do when it
//! no longer matches.

use std::sync::Arc;
use std::time::Duration;

use super::Torrent;
use super::failure::{Damage, Failure};
use crate::metainfo::{Geometry, PieceIndex};
use crate::peer::bitfield::Bitfield;

/// What [`Torrent::reverify_every`] does when pieces on disk no longer match.
#[derive(Debug, Clone)]
pub enum OnDamage {
    /// Stop, and delete the resume record: a seeder's plaintext is the user's, and data that
    /// changed under it must be restored or seeded again, not repaired behind their back.
    StopServing,
    /// Stop, with a resume record that leaves the damaged pieces out, so that the next start
    /// fetches them again from the swarm: a relay's ciphertext store is its own. `restart`
    /// (if any) is notified once the torrent has stopped, so that its owner starts it again
    /// at once instead of at its next routine look.
    Refetch {
        restart: Option<Arc<tokio::sync::Notify>>,
    },
}

impl Torrent {
    /// Hashes every piece on disk again every `every` (the first time `every` after this
    /// call), off the reactor, and stops the torrent with an error as soon as one no longer
    /// matches. A seeder or relay that runs for months must notice data that rots, or is
    /// changed without its size or modification time moving (which
    /// [`crate::peer::storage::StorageError::Changed`]
    /// catches), before downloaders reject it piece by piece. It runs on one blocking thread,
    /// a piece at a time, so that serving keeps the other cores (unlike the check before
    /// seeding, which someone waits for and which takes them all). What happens to the
    /// session's resume record (if it has one) on a mismatch is `on_damage`'s.
    pub fn reverify_every(self: &Arc<Self>, every: Duration, on_damage: OnDamage) {
        let me = Arc::clone(self);
        self.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = me.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // Only pieces verified before the pass can be damaged: a relay still
                // downloading has others that are simply not there yet.
                let had = me.lock().picker.have().clone();
                let (store, stop) = (Arc::clone(&me.store), me.shutdown.clone());
                // One thread: serving keeps the other cores however long this runs.
                let checked = tokio::task::spawn_blocking(move || {
                    crate::peer::storage::recheck_on_one_thread(&*store, &|| stop.is_cancelled())
                })
                .await;
                let Ok(good) = checked else { return };
                if me.shutdown.is_cancelled() {
                    return;
                }
                let bad = damaged(me.info().geometry(), &had, &good);
                let Some(&first) = bad.first() else {
                    tracing::info!(
                        info_hash = %me.info_hash,
                        pieces = had.count(),
                        "every piece verified again"
                    );
                    continue;
                };
                let damage = Damage {
                    damaged: bad.len(),
                    checked: good.len(),
                    first,
                };
                let record = me.resume_path.as_deref();
                let failure = match on_damage {
                    OnDamage::StopServing => {
                        if let Some(record) = record {
                            me.forget_resume_record(record).await;
                        }
                        Failure::DamagedData(damage)
                    }
                    OnDamage::Refetch { .. } => {
                        if let Some(record) = record {
                            me.save_resume_without(record, &bad).await;
                        }
                        Failure::DamagedCiphertext(damage)
                    }
                };
                me.fail(failure);
                if let OnDamage::Refetch {
                    restart: Some(restart),
                } = &on_damage
                {
                    restart.notify_one();
                }
                return;
            }
        });
    }
}

/// The pieces that were verified (`had`) and no longer are: `good` says, per piece, whether
/// it is intact on disk now; a piece it does not cover counts as damaged.
fn damaged(geometry: &Geometry, had: &Bitfield, good: &[bool]) -> Vec<PieceIndex> {
    geometry
        .pieces()
        .filter(|i| had.get(i.get()) && !good.get(i.as_usize()).copied().unwrap_or(false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pieces_verified_before_can_be_damaged() {
        let geometry = Geometry::new(16 * 1024, 5 * 16 * 1024).unwrap();
        let mut had = Bitfield::new(5);
        for index in [0, 1, 3, 4] {
            had.set(index);
        }
        // Piece 2 was never ours, so it is not damaged; 1 and 4 are; the pass stopped before
        // piece 4.
        let good = [true, false, false, true];
        let damaged: Vec<u32> = damaged(&geometry, &had, &good)
            .into_iter()
            .map(PieceIndex::get)
            .collect();
        assert_eq!(damaged, vec![1, 4]);
    }
}
