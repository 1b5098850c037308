//! Strikes against peers and the bans they lead to: a plain type with no I/O, so that the ban
//! policy is tested without sockets.
//!
//! A peer that sends a block failing verification is banned at once; one that breaks the
//! protocol (docs/protocol.md section 7) is banned when it has ended [`PROTOCOL_STRIKES_TO_BAN`]
//! connections that way. A ban names the peer id and the address the peer came from, never a
//! whole IP address: many honest peers can share one behind a NAT, or on 127.0.0.1.
//!
//! What it will not do: close connections or log; the session does both with what
//! [`Bans::strike`] answers.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::types::PeerId;

/// Connections a peer may end by breaking the protocol (docs/protocol.md section 7) before it
/// is banned.
pub(super) const PROTOCOL_STRIKES_TO_BAN: u32 = 3;

/// A fault counted against a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerFault {
    /// It sent a block that failed verification: banned at once.
    CorruptData,
    /// Its connection ended because it broke the protocol.
    BrokeProtocol,
}

impl PeerFault {
    /// How many faults (of any kind) ban a peer whose latest fault is this one.
    fn strikes_to_ban(self) -> u32 {
        match self {
            PeerFault::CorruptData => 1,
            PeerFault::BrokeProtocol => PROTOCOL_STRIKES_TO_BAN,
        }
    }
}

/// What a strike did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strike {
    /// Counted; the peer is not banned (yet).
    Counted,
    /// The peer is banned; `newly` when this strike banned it.
    Banned { newly: bool },
}

/// The strikes of one torrent's peers, and who is banned. Invariant: every peer id in `ids`
/// has at least the strikes its last fault needed.
#[derive(Debug, Default)]
pub(super) struct Bans {
    /// Faults per peer id, kept for the session's life.
    strikes: HashMap<PeerId, u32>,
    /// Banned peer ids: their handshakes are refused.
    ids: HashSet<PeerId>,
    /// Addresses banned peers came from: never dialed or taken again.
    addrs: HashSet<SocketAddr>,
}

impl Bans {
    /// Counts `fault` against the peer `peer_id` (connected from `addr`, if known), and bans
    /// it (id and address) when it reaches the fault's limit.
    pub(super) fn strike(
        &mut self,
        peer_id: PeerId,
        addr: Option<SocketAddr>,
        fault: PeerFault,
    ) -> Strike {
        let strikes = self.strikes.entry(peer_id).or_insert(0);
        *strikes += 1;
        if *strikes < fault.strikes_to_ban() {
            return Strike::Counted;
        }
        let newly = self.ids.insert(peer_id);
        if let Some(addr) = addr {
            self.addrs.insert(addr);
        }
        Strike::Banned { newly }
    }

    /// Whether a connection from `peer_id` at `addr` is refused.
    pub(super) fn refuses(&self, peer_id: PeerId, addr: Option<SocketAddr>) -> bool {
        self.ids.contains(&peer_id) || addr.is_some_and(|a| self.addrs.contains(&a))
    }

    /// Whether `addr` is not to be dialed.
    pub(super) fn refuses_addr(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&addr)
    }

    /// How many peers are banned.
    pub(super) fn banned_count(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 20])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_peer_is_banned_when_it_reaches_the_protocol_strike_limit() {
        let mut bans = Bans::default();
        for _ in 1..PROTOCOL_STRIKES_TO_BAN {
            assert_eq!(
                bans.strike(peer(1), Some(addr(6881)), PeerFault::BrokeProtocol),
                Strike::Counted
            );
            assert!(!bans.refuses(peer(1), Some(addr(6881))));
        }
        assert_eq!(
            bans.strike(peer(1), Some(addr(6881)), PeerFault::BrokeProtocol),
            Strike::Banned { newly: true }
        );
        assert!(bans.refuses(peer(1), None), "by peer id");
        assert!(bans.refuses(peer(2), Some(addr(6881))), "by address");
        assert!(bans.refuses_addr(addr(6881)));
        assert_eq!(bans.banned_count(), 1);
        // A further fault finds it banned already.
        assert_eq!(
            bans.strike(peer(1), None, PeerFault::BrokeProtocol),
            Strike::Banned { newly: false }
        );
        assert_eq!(bans.banned_count(), 1);
    }

    #[test]
    fn corrupt_data_bans_at_once_and_counts_earlier_faults() {
        let mut bans = Bans::default();
        assert_eq!(
            bans.strike(peer(1), None, PeerFault::CorruptData),
            Strike::Banned { newly: true }
        );
        assert!(bans.refuses(peer(1), Some(addr(1))));
        assert!(!bans.refuses_addr(addr(1)), "no address was known");

        bans.strike(peer(2), Some(addr(2)), PeerFault::BrokeProtocol);
        assert!(!bans.refuses(peer(2), Some(addr(2))));
        assert_eq!(
            bans.strike(peer(2), Some(addr(2)), PeerFault::CorruptData),
            Strike::Banned { newly: true }
        );
        assert_eq!(bans.banned_count(), 2);
    }

    #[test]
    fn a_ban_spares_other_peers_on_the_same_ip() {
        let mut bans = Bans::default();
        bans.strike(peer(1), Some(addr(6881)), PeerFault::CorruptData);
        assert!(!bans.refuses(peer(2), Some(addr(6882))));
        assert!(!bans.refuses_addr(addr(6882)));
        assert!(!bans.refuses(peer(3), None));
    }
}
