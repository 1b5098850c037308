//! Blocks into pieces: assembling a piece from its blocks, verifying and storing it off the
//! reactor, and finding the peers that sent bad blocks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sha1::{Digest as _, Sha1};

use super::{BLOCK_LEN, PeerKey, State, Torrent, send};
use crate::peer::connection::{Command, Outbox};
use crate::peer::picker::BlockOutcome;
use crate::peer::storage::{StorageError, piece_matches};
use crate::peer::wire::BlockRequest;
use crate::types::PeerId;

/// A piece being assembled: its bytes and who sent each block.
pub(super) struct PartialPiece {
    pub(super) data: Vec<u8>,
    /// Per 16 KiB block, the peer that sent it.
    pub(super) senders: Vec<Option<(PeerId, Option<SocketAddr>)>>,
}

/// A block of a piece that failed verification.
#[derive(Clone, Copy)]
pub(super) struct SentBlock {
    pub(super) block: usize,
    pub(super) peer_id: PeerId,
    pub(super) addr: Option<SocketAddr>,
    pub(super) sha1: [u8; 20],
}

/// What verifying a complete piece found.
enum Verdict {
    /// Stored; these peers sent blocks that differ from the verified ones.
    Good { liars: Vec<SentBlock> },
    /// The hash did not match; the hash of each block, for telling liars apart later.
    Bad { block_hashes: Vec<[u8; 20]> },
}

impl Torrent {
    /// A block arrived from `key`: store it in its piece buffer; a complete piece goes to be
    /// verified.
    pub(super) fn on_block(
        self: &Arc<Self>,
        state: &mut State,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
        out: &mut Outbox,
    ) {
        let outcome = state
            .picker
            .block_received(key, index, begin, data.len() as u32);
        if let Some(slot) = state.peers.get_mut(&key) {
            slot.received_round += data.len() as u64;
        }
        match outcome {
            BlockOutcome::Accepted {
                cancel,
                piece_complete,
            } => {
                let request = BlockRequest {
                    index,
                    begin,
                    length: data.len() as u32,
                };
                for other in cancel {
                    if let Some(slot) = state.peers.get(&other) {
                        send(&slot.handle, Command::Cancel(request));
                    }
                }
                let piece_len = self.geometry.piece_len(index).unwrap_or(0) as usize;
                let sender = state.peers.get(&key).map(|s| (s.peer_id, s.addr));
                let mut added = 0;
                let piece = state.partial.entry(index).or_insert_with(|| {
                    added = piece_len as u64;
                    PartialPiece {
                        // Reused buffers hold old bytes; every block of the piece overwrites
                        // its part before the piece completes.
                        data: self.pieces.take(piece_len),
                        senders: vec![None; piece_len.div_ceil(BLOCK_LEN)],
                    }
                });
                let start = begin as usize;
                // The picker accepted the block, so it lies inside the piece.
                if let Some(dst) = piece.data.get_mut(start..start + data.len()) {
                    dst.copy_from_slice(data);
                }
                if let Some(slot) = piece.senders.get_mut(start / BLOCK_LEN) {
                    *slot = sender;
                }
                state.partial_bytes += added;
                if piece_complete && let Some(piece) = state.partial.remove(&index) {
                    // The piece stays counted in `partial_bytes` until it is verified and
                    // written (`verify_piece` releases it): if verification falls behind, no
                    // new pieces start, and memory stays bounded whatever the file's size.
                    let suspects = state.suspects.remove(&index).unwrap_or_default();
                    self.verify_piece(index, piece, suspects);
                }
            }
            BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
            BlockOutcome::Invalid => {
                tracing::debug!(key, index, begin, "block of the wrong shape");
            }
        }
        self.fill_requests(state, key, Some(out));
    }

    /// Hashes and stores a complete piece off the reactor, then records the outcome.
    /// `suspects` are the blocks of earlier failed attempts at this piece.
    fn verify_piece(self: &Arc<Self>, index: u32, piece: PartialPiece, suspects: Vec<SentBlock>) {
        let me = Arc::clone(self);
        let permits = Arc::clone(&self.verifiers);
        self.tasks.spawn(async move {
            let release = |me: &Torrent| me.lock().partial_bytes -= piece.data.len() as u64;
            let Ok(_permit) = permits.acquire_owned().await else {
                release(&me);
                return;
            };
            // After shutdown nothing more is written: the last resume record must describe
            // the files as they stay.
            if me.shutdown.is_cancelled() {
                release(&me);
                return;
            }
            let PartialPiece { data, senders } = piece;
            let piece_bytes = data.len() as u64;
            // Someone may ask us for this piece soon: keep its ciphertext for uploads.
            let offer = me.lock().peers.values().any(|p| p.peer_interested);
            let worker = Arc::clone(&me);
            let checked = tokio::task::spawn_blocking(move || {
                let mut data = data;
                let verdict = worker.check_and_store(index, &mut data, &suspects, offer);
                worker.pieces.give(data);
                verdict
            })
            .await;
            me.lock().partial_bytes -= piece_bytes;
            match checked {
                Ok(Ok(Verdict::Good { liars })) => {
                    for liar in liars {
                        me.strike(liar.peer_id, liar.addr, 1);
                        me.close_peer(liar.peer_id);
                    }
                    me.piece_done(index);
                }
                Ok(Ok(Verdict::Bad { block_hashes })) => {
                    me.config.traffic.add_rejected_piece();
                    me.piece_bad(index, &senders, &block_hashes)
                }
                Ok(Err(e)) => me.fail(format!("cannot store piece {index}: {e}")),
                Err(e) => me.fail(format!("piece {index}: verification task failed: {e}")),
            }
        });
    }

    /// Hashes a complete piece and, when it verifies, offers it to the upload cache (if
    /// `offer`) and stores it. Runs on a blocking thread.
    fn check_and_store(
        &self,
        index: u32,
        data: &mut [u8],
        suspects: &[SentBlock],
        offer: bool,
    ) -> Result<Verdict, StorageError> {
        let info = self.store.info();
        let blocks = data.len().div_ceil(BLOCK_LEN);
        let Some(piece) = info.piece_index(index) else {
            return Ok(Verdict::Bad {
                block_hashes: Vec::new(),
            });
        };
        let block_sha1 = |b: usize| -> [u8; 20] {
            let end = ((b + 1) * BLOCK_LEN).min(data.len());
            Sha1::digest(&data[b * BLOCK_LEN..end]).into()
        };
        if !piece_matches(info, piece, data) {
            let block_hashes = (0..blocks).map(block_sha1).collect();
            return Ok(Verdict::Bad { block_hashes });
        }
        let liars = suspects
            .iter()
            .filter(|s| s.block < blocks && block_sha1(s.block) != s.sha1)
            .copied()
            .collect();
        // Before the store decrypts the buffer in place. Nobody can ask for the piece before
        // `piece_done` marks it ours, and if the write fails the session ends.
        if offer {
            self.cache.offer_piece(index, data);
        }
        self.store
            .write_piece(piece, data)
            .map(|()| Verdict::Good { liars })
    }

    fn piece_done(self: &Arc<Self>, index: u32) {
        let len = u64::from(self.geometry.piece_len(index).unwrap_or(0));
        self.downloaded.fetch_add(len, Ordering::Relaxed);
        self.config.traffic.add_downloaded(len);
        let mut state = self.lock();
        if !state.picker.piece_verified(index) {
            return;
        }
        state.resume_dirty = true;
        for slot in state.peers.values() {
            send(&slot.handle, Command::Have(index));
        }
        let now_complete = state.picker.is_complete();
        if now_complete && !state.complete {
            state.complete = true;
            // Not interested in anyone any more; seeds among the peers are of no use now.
            for slot in state.peers.values_mut() {
                if slot.am_interested {
                    slot.am_interested = false;
                    send(&slot.handle, Command::NotInterested);
                }
            }
        } else {
            let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
            for key in keys {
                self.fill_requests(&mut state, key, None);
            }
        }
        drop(state);
        self.publish_progress();
        if now_complete {
            let me = Arc::clone(self);
            self.tasks.spawn(async move {
                me.save_resume().await;
                tracing::info!(info_hash = %me.info_hash, "download complete and verified");
                me.completed.notify_waiters();
                me.publish_progress();
            });
        }
    }

    /// A piece failed its hash check: it is wanted again. A peer that alone sent all of it is
    /// banned at once; otherwise who sent which block is kept, and the liars are found when
    /// the piece verifies (see [`State::suspects`]).
    fn piece_bad(
        &self,
        index: u32,
        senders: &[Option<(PeerId, Option<SocketAddr>)>],
        block_hashes: &[[u8; 20]],
    ) {
        let mut state = self.lock();
        state.picker.piece_failed(index);
        let mut distinct: Vec<(PeerId, Option<SocketAddr>)> = Vec::new();
        for (peer_id, addr) in senders.iter().flatten() {
            if !distinct.iter().any(|(p, _)| p == peer_id) {
                distinct.push((*peer_id, *addr));
            }
        }
        tracing::warn!(index, peers = distinct.len(), "piece failed verification");
        if let [(peer_id, addr)] = distinct[..] {
            Self::strike_locked(&mut state, peer_id, addr, 1);
            for slot in state.peers.values().filter(|s| s.peer_id == peer_id) {
                send(&slot.handle, Command::Close);
            }
        } else {
            let record = state.suspects.entry(index).or_default();
            for (block, sender) in senders.iter().enumerate() {
                if let (Some((peer_id, addr)), Some(sha1)) = (sender, block_hashes.get(block)) {
                    record.push(SentBlock {
                        block,
                        peer_id: *peer_id,
                        addr: *addr,
                        sha1: *sha1,
                    });
                }
            }
        }
        let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(&mut state, key, None);
        }
    }
}
