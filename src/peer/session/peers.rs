//! The session's registry of connected peers: taking handshaken connections, dialing
//! addresses from the tracker, removing peers when their connection ends, and striking and
//! banning peers that break the protocol or send corrupt data.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::Instrument as _;

use super::bans::{PeerFault, Strike};
use super::handler::PeerHandler;
use super::{PeerKey, State, Torrent, send};
use crate::peer::connection::{self, Command, ConnectionHandle, Handshaken};
use crate::types::PeerId;

/// One connected peer.
pub(super) struct PeerSlot {
    pub(super) handle: ConnectionHandle,
    pub(super) addr: Option<SocketAddr>,
    pub(super) peer_id: PeerId,
    pub(super) am_choking: bool,
    pub(super) am_interested: bool,
    pub(super) peer_choking: bool,
    pub(super) peer_interested: bool,
    /// The peer's `reqq`, if it sent one.
    pub(super) reqq: Option<u32>,
    /// Both sides speak BEP 6: a choke is followed by explicit rejects of our requests.
    pub(super) fast: bool,
    /// Bytes received from / sent to this peer since the last choking round.
    pub(super) received_round: u64,
    pub(super) sent_round: u64,
}

impl Torrent {
    /// Takes a connection whose handshake (for this torrent) completed, in either direction.
    pub fn add_peer(self: &Arc<Self>, handshaken: Handshaken) {
        let addr = handshaken.peer_addr();
        let peer_id = handshaken.peer_id();
        let fast = handshaken.fast();
        let span = self.peer_span(addr);
        let mut state = self.lock();
        if self.shutdown.is_cancelled()
            || state.peers.len() >= self.config.max_peers
            || state.bans.refuses(peer_id, addr)
            || state.peers.values().any(|p| p.peer_id == peer_id)
        {
            span.in_scope(|| {
                tracing::debug!(?addr, "connection not taken (full, banned or duplicate)");
            });
            return;
        }
        let key = state.next_key;
        state.next_key += 1;
        state.picker.add_peer(key);
        let handler = PeerHandler {
            torrent: Arc::clone(self),
            key,
        };
        let (connection, handle) = handshaken.into_connection(
            self.geometry,
            state.picker.have(),
            handler,
            &self.config.connection,
        );
        state.peers.insert(
            key,
            PeerSlot {
                handle,
                addr,
                peer_id,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                reqq: None,
                fast,
                received_round: 0,
                sent_round: 0,
            },
        );
        drop(state);
        self.publish_progress();
        let me = Arc::clone(self);
        let token = self.shutdown.child_token();
        let run = async move {
            let result = connection.run(token).await;
            match &result {
                Ok(()) => tracing::debug!(?addr, "connection closed"),
                Err(e) => tracing::debug!(?addr, error = %e, "connection ended"),
            }
            if let Err(e) = &result
                && e.blames_peer()
            {
                me.strike(peer_id, addr, PeerFault::BrokeProtocol);
            }
            me.remove_peer(key);
        };
        // In the peer's span: its handler's log lines (and the tasks it starts for the peer)
        // name the torrent and the peer.
        self.tasks.spawn(run.instrument(span));
    }

    pub(super) fn remove_peer(&self, key: PeerKey) {
        let mut state = self.lock();
        if let Some(slot) = state.peers.remove(&key)
            && let Some(addr) = slot.addr
        {
            state.dialing.remove(&addr);
        }
        state.picker.remove_peer(key);
        state.choking.peer_gone(key);
        // Its requests went back to the pool: give them to others.
        let keys: Vec<PeerKey> = state.peers.keys().copied().collect();
        for other in keys {
            self.fill_requests(&mut state, other, None);
        }
        drop(state);
        self.publish_progress();
    }

    /// Dials addresses we are not connected to (bounded by `max_peers`).
    pub(super) fn dial(self: &Arc<Self>, addrs: &[SocketAddr]) {
        let mut state = self.lock();
        let mut room = self
            .config
            .max_peers
            .saturating_sub(state.peers.len().max(state.dialing.len()));
        for &addr in addrs {
            if room == 0 {
                break;
            }
            if state.dialing.contains(&addr) || state.bans.refuses_addr(addr) {
                continue;
            }
            if state.complete
                && state
                    .peers
                    .values()
                    .any(|p| p.addr.is_some_and(|a| a.ip() == addr.ip()))
            {
                continue;
            }
            state.dialing.insert(addr);
            room -= 1;
            let me = Arc::clone(self);
            let span = self.peer_span(Some(addr));
            let dial = async move {
                let dialed = tokio::time::timeout(
                    me.config.connection.handshake_timeout,
                    TcpStream::connect(addr),
                )
                .await;
                let handshaken = match dialed {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        connection::connect(stream, me.info_hash, &me.config.connection).await
                    }
                    Ok(Err(e)) => Err(connection::ConnectionError::Io {
                        op: "connecting",
                        source: e,
                    }),
                    Err(_) => Err(connection::ConnectionError::Timeout("connecting")),
                };
                match handshaken {
                    Ok(h) => me.add_peer(h),
                    Err(connection::ConnectionError::OwnPeerId) => {
                        // Ourselves, as the tracker lists us: keep it in `dialing` for good.
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "could not connect");
                    }
                }
                // Connected peers are tracked by their slot; forget the dial either way.
                let mut state = me.lock();
                if !state.peers.values().any(|p| p.addr == Some(addr)) {
                    state.dialing.remove(&addr);
                }
            };
            self.tasks.spawn(dial.instrument(span));
        }
    }

    /// Closes the connections of a (banned) peer.
    pub(super) fn close_peer(&self, peer_id: PeerId) {
        let state = self.lock();
        for slot in state.peers.values().filter(|s| s.peer_id == peer_id) {
            send(&slot.handle, Command::Close);
        }
    }

    /// Counts `fault` against a peer, and bans it when it reaches the fault's limit.
    pub(super) fn strike(&self, peer_id: PeerId, addr: Option<SocketAddr>, fault: PeerFault) {
        let mut state = self.lock();
        Self::strike_locked(&mut state, peer_id, addr, fault);
    }

    /// As [`Torrent::strike`], under the lock already held.
    pub(super) fn strike_locked(
        state: &mut State,
        peer_id: PeerId,
        addr: Option<SocketAddr>,
        fault: PeerFault,
    ) {
        if state.bans.strike(peer_id, addr, fault) == (Strike::Banned { newly: true }) {
            tracing::warn!(?addr, %peer_id, "banning a peer that sent corrupt data or broke the protocol");
        }
    }
}
