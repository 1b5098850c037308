//! Uploads: answering a peer's request with the block's ciphertext, read off the reactor.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{Instrument as _, Span};

use super::{Failure, PeerKey, Torrent};
use crate::peer::connection::{Command, ConnectionHandle};
use crate::peer::storage::StorageError;
use crate::peer::wire::BlockRequest;

impl Torrent {
    /// Answers a request of `key` with the block's ciphertext, read off the reactor. Called by
    /// the peer's handler: the task runs in the current span, the peer's.
    pub(super) fn serve(
        self: &Arc<Self>,
        key: PeerKey,
        handle: ConnectionHandle,
        request: BlockRequest,
    ) {
        let Some(piece) = self.store.info().piece_index(request.index) else {
            // The connection validates requests against the torrent, so this does not happen;
            // if it did, the peer gets a refusal, not a block of some other piece.
            tracing::warn!(
                index = request.index,
                "request for a piece the torrent does not have"
            );
            let _ = handle.try_send(Command::Reject(request));
            return;
        };
        let me = Arc::clone(self);
        let upload = async move {
            match me.cache.block(piece, request.begin, request.length).await {
                Ok(data) if data.len() == request.length as usize => {
                    let len = data.len() as u64;
                    if handle
                        .send(Command::Piece {
                            index: request.index,
                            begin: request.begin,
                            data,
                        })
                        .await
                        .is_ok()
                    {
                        me.uploaded.fetch_add(len, Ordering::Relaxed);
                        me.config.traffic.add_uploaded(len);
                        if let Some(slot) = me.lock().peers.get_mut(&key) {
                            slot.sent_round += len;
                        }
                    }
                }
                Ok(_) => {
                    let _ = handle.send(Command::Reject(request)).await;
                }
                // Content changed under a seeder: nothing it serves can be trusted any more.
                Err(e @ StorageError::Changed { .. }) => {
                    let _ = handle.send(Command::Reject(request)).await;
                    me.fail(Failure::ContentChanged(e));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a block to upload");
                    let _ = handle.send(Command::Reject(request)).await;
                }
            }
        };
        self.tasks.spawn(upload.instrument(Span::current()));
    }
}
