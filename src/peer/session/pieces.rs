//! Blocks into pieces, and pieces onto disk: the session's side of [`assembly::Assembly`].
//! A block the picker accepts goes into its piece; a complete piece is verified and stored on
//! a blocking thread, then the picker, the bans and the other peers are told the outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::assembly::{self, Blame, Block, PartialPiece, Sender, SentBlock, Verdict};
use super::bans::PeerFault;
use super::{Failure, PeerKey, State, Torrent, send};
use crate::metainfo::PieceIndex;
use crate::peer::connection::{Command, Outbox};
use crate::peer::picker::BlockOutcome;
use crate::peer::storage::StorageError;
use crate::peer::wire::BlockRequest;

impl Torrent {
    /// A block arrived from `key`: store it in its piece buffer; a complete piece goes to be
    /// verified.
    pub(super) fn on_block(
        self: &Arc<Self>,
        state: &mut State,
        key: PeerKey,
        index: PieceIndex,
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
                    index: index.get(),
                    begin,
                    length: data.len() as u32,
                };
                for other in cancel {
                    if let Some(slot) = state.peers.get(&other) {
                        send(&slot.handle, Command::Cancel(request));
                    }
                }
                let piece_len = self.info().piece_len(index) as usize;
                let sender = state.peers.get(&key).map(|s| Sender {
                    peer_id: s.peer_id,
                    addr: s.addr,
                });
                let block = Block { index, begin, data };
                if let Some(done) =
                    state
                        .assembly
                        .add_block(block, piece_len, sender, piece_complete, |len| {
                            self.pieces.take(len)
                        })
                {
                    // The piece stays counted in `Assembly::bytes` until it is verified and
                    // written (`verify_piece` releases it): if verification falls behind, no
                    // new pieces start, and memory stays bounded whatever the file's size.
                    self.verify_piece(index, done.piece, done.suspects);
                }
            }
            BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
            BlockOutcome::Invalid => {
                tracing::debug!(key, index = index.get(), begin, "block of the wrong shape");
            }
        }
        self.fill_requests(state, key, Some(out));
    }

    /// Hashes and stores a complete piece off the reactor, then records the outcome.
    /// `suspects` are the blocks of earlier failed attempts at this piece.
    fn verify_piece(
        self: &Arc<Self>,
        index: PieceIndex,
        piece: PartialPiece,
        suspects: Vec<SentBlock>,
    ) {
        let me = Arc::clone(self);
        let permits = Arc::clone(&self.verifiers);
        // In the torrent's span, not the span of the peer whose block completed the piece.
        self.spawn(async move {
            let release = |me: &Torrent| me.lock().assembly.release(piece.data.len() as u64);
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
            me.lock().assembly.release(piece_bytes);
            match checked {
                Ok(Ok(Verdict::Good { liars })) => {
                    for liar in liars {
                        me.strike(liar.peer_id, liar.addr, PeerFault::CorruptData);
                        me.close_peer(liar.peer_id);
                    }
                    me.piece_done(index);
                }
                Ok(Ok(Verdict::Bad { block_hashes })) => {
                    me.config.traffic.add_rejected_piece();
                    me.piece_bad(index, &senders, &block_hashes)
                }
                Ok(Err(source)) => me.fail(Failure::StorePiece { index, source }),
                Err(source) => me.fail(Failure::VerifyTask { index, source }),
            }
        });
    }

    /// Hashes a complete piece and, when it verifies, offers it to the upload cache (if
    /// `offer`) and stores it. Runs on a blocking thread.
    fn check_and_store(
        &self,
        piece: PieceIndex,
        data: &mut [u8],
        suspects: &[SentBlock],
        offer: bool,
    ) -> Result<Verdict, StorageError> {
        let info = self.store.info();
        let verdict = assembly::judge(info.piece_hash(piece), data, suspects);
        if let Verdict::Bad { .. } = verdict {
            return Ok(verdict);
        }
        // Before the store decrypts the buffer in place. Nobody can ask for the piece before
        // `piece_done` marks it ours, and if the write fails the session ends.
        if offer {
            self.cache.offer_piece(piece, data);
        }
        self.store.write_piece(piece, data).map(|()| verdict)
    }

    fn piece_done(self: &Arc<Self>, index: PieceIndex) {
        let len = u64::from(self.info().piece_len(index));
        self.downloaded.fetch_add(len, Ordering::Relaxed);
        self.config.traffic.add_downloaded(len);
        let mut state = self.lock();
        if !state.picker.piece_verified(index) {
            return;
        }
        state.resume_dirty = true;
        for slot in state.peers.values() {
            send(&slot.handle, Command::Have(index.get()));
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
            self.spawn(async move {
                me.save_resume().await;
                tracing::info!(info_hash = %me.info_hash, "download complete and verified");
                me.completed.notify_waiters();
                me.publish_progress();
            });
        }
    }

    /// A piece failed its hash check: it is wanted again. A peer that alone sent all of it is
    /// banned at once; otherwise the liars are found when the piece verifies
    /// ([`assembly::Assembly::piece_failed`]).
    fn piece_bad(&self, index: PieceIndex, senders: &[Option<Sender>], block_hashes: &[[u8; 20]]) {
        let mut state = self.lock();
        state.picker.piece_failed(index);
        let blame = state.assembly.piece_failed(index, senders, block_hashes);
        tracing::warn!(
            index = index.get(),
            peers = blame.peers(),
            "piece failed verification"
        );
        if let Blame::Sole(liar) = blame {
            Self::strike_locked(&mut state, liar.peer_id, liar.addr, PeerFault::CorruptData);
            for slot in state.peers.values().filter(|s| s.peer_id == liar.peer_id) {
                send(&slot.handle, Command::Close);
            }
        }
        let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(&mut state, key, None);
        }
    }
}
