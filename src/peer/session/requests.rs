//! Which blocks we ask each peer for, and whether we are interested in it: the session's
//! side of the [`Picker`].

use std::time::Instant;

use super::{PeerKey, State, Torrent, send};
use crate::peer::connection::{Command, Outbox};

impl Torrent {
    /// Sends new requests to `key` if it unchoked us and has room in its pipeline.
    pub(super) fn fill_requests(&self, state: &mut State, key: PeerKey, out: Option<&mut Outbox>) {
        let Some(slot) = state.peers.get(&key) else {
            return;
        };
        if slot.peer_choking || state.complete {
            return;
        }
        let pipeline = slot.reqq.map_or(self.config.pipeline, |r| {
            (r as usize).clamp(1, self.config.pipeline)
        });
        // Do not start new pieces while assembly buffers are over budget.
        let budget_left = state.assembly.bytes() < self.config.piece_buffer_budget;
        let requests = if budget_left {
            state.picker.next_requests(key, pipeline, Instant::now())
        } else {
            state
                .picker
                .next_requests_in_progress(key, pipeline, Instant::now())
        };
        if requests.is_empty() {
            return;
        }
        match out {
            Some(out) => {
                for r in requests {
                    out.send(Command::Request(r));
                }
            }
            None => {
                let handle = slot.handle.clone();
                for r in requests {
                    send(&handle, Command::Request(r));
                }
            }
        }
    }

    /// Updates whether we are interested in `key`.
    pub(super) fn update_interest(state: &mut State, key: PeerKey, out: &mut Outbox) {
        let interesting = !state.complete && state.picker.is_interesting(key);
        if let Some(slot) = state.peers.get_mut(&key)
            && slot.am_interested != interesting
        {
            slot.am_interested = interesting;
            out.send(if interesting {
                Command::Interested
            } else {
                Command::NotInterested
            });
        }
    }

    pub(super) fn expire_requests(&self) {
        let mut state = self.lock();
        let expired = state
            .picker
            .expire_requests(Instant::now(), self.config.request_timeout);
        for (key, request) in &expired {
            if let Some(slot) = state.peers.get(key) {
                send(&slot.handle, Command::Cancel(*request));
            }
        }
        if !expired.is_empty() {
            let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
            for key in keys {
                self.fill_requests(&mut state, key, None);
            }
        }
    }
}
