//! The session's side of one connection: every event a peer sends, handled under the
//! session's lock.

use std::sync::Arc;

use super::choking::Choking;
use super::{PeerKey, Torrent};
use crate::metainfo::PieceIndex;
use crate::peer::connection::{Command, Event, Handler, HandlerError, Outbox};

/// Why the session closes a connection from its handler.
#[derive(Debug, thiserror::Error)]
enum PeerEventError {
    /// The peer was removed (its connection is ending) while an event was on its way.
    #[error("peer removed from the session")]
    PeerRemoved,
    /// The connection validates every message against the torrent (docs/protocol.md section
    /// 7), so this is a bug on our side, not the peer's: the connection closes, unblamed.
    #[error("piece {index} is past the torrent's {piece_count} pieces")]
    PieceOutOfRange { index: u32, piece_count: u32 },
}

/// Piece `index` of a checked wire message, as the picker and the assembly name it.
fn piece_index(torrent: &Torrent, index: u32) -> Result<PieceIndex, PeerEventError> {
    let info = torrent.info();
    info.piece_index(index)
        .ok_or(PeerEventError::PieceOutOfRange {
            index,
            piece_count: info.piece_count(),
        })
}

/// The session's side of one connection.
pub struct PeerHandler {
    pub(super) torrent: Arc<Torrent>,
    pub(super) key: PeerKey,
}

impl Handler for PeerHandler {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        let torrent = &self.torrent;
        let key = self.key;
        let mut state = torrent.lock();
        if !state.peers.contains_key(&key) {
            return Err(PeerEventError::PeerRemoved.into());
        }
        match event {
            Event::ExtendedHandshake(h) => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.reqq = h.reqq;
                }
            }
            Event::Bitfield(has) => {
                if state.complete && has.is_full() {
                    // Two seeds have nothing to say to each other.
                    out.send(Command::Close);
                    return Ok(());
                }
                state.picker.peer_bitfield(key, has);
                Torrent::update_interest(&mut state, key, out);
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Have(index) => {
                let index = piece_index(torrent, index)?;
                // Once every connected peer has the piece, nobody will ask us for it: its
                // cached ciphertext only keeps pieces that are still wanted out of the cache.
                if state.picker.peer_have(key, index)
                    && state.picker.availability(index) as usize >= state.peers.len()
                {
                    torrent.cache.forget_piece(index);
                }
                Torrent::update_interest(&mut state, key, out);
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Choke => {
                let fast = match state.peers.get_mut(&key) {
                    Some(slot) => {
                        slot.peer_choking = true;
                        slot.fast
                    }
                    None => false,
                };
                // Without the fast extension the peer dropped our requests; with it, it
                // rejects each one, and the picker is told then.
                if !fast {
                    state.picker.peer_choked(key);
                }
                let keys: Vec<PeerKey> =
                    state.peers.keys().copied().filter(|k| *k != key).collect();
                for other in keys {
                    torrent.fill_requests(&mut state, other, None);
                }
            }
            Event::Unchoke => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_choking = false;
                }
                torrent.fill_requests(&mut state, key, Some(out));
            }
            Event::Interested => {
                let unchoked = state.peers.values().filter(|s| !s.am_choking).count();
                let room =
                    Choking::<PeerKey>::unchoke_at_once(unchoked, torrent.config.unchoke_slots);
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_interested = true;
                    // A free slot is given at once rather than at the next round.
                    if room && slot.am_choking {
                        slot.am_choking = false;
                        out.send(Command::Unchoke);
                    }
                }
            }
            Event::NotInterested => {
                if let Some(slot) = state.peers.get_mut(&key) {
                    slot.peer_interested = false;
                }
            }
            Event::Request(request) => {
                let has = state.picker.have().get(request.index);
                let choking = state.peers.get(&key).is_none_or(|s| s.am_choking);
                if !has || choking {
                    out.send(Command::Reject(request));
                } else if let Some(slot) = state.peers.get(&key) {
                    let handle = slot.handle.clone();
                    drop(state);
                    torrent.serve(key, handle, request);
                    return Ok(());
                }
            }
            Event::Cancel(_) => {
                // The connection drops a cancelled block if it is still queued.
            }
            Event::Block { index, begin, data } => {
                let index = piece_index(torrent, index)?;
                torrent.on_block(&mut state, key, index, begin, data, out);
            }
            Event::Rejected(request) => {
                state.picker.request_rejected(key, &request);
            }
            Event::Suggest(_) | Event::AllowedFast(_) | Event::Extended { .. } => {}
        }
        Ok(())
    }
}
