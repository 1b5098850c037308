//! Swarm state: who holds which torrent (docs/protocol.md 4.1).
//!
//! Sync and free of I/O, so plain tests drive it with an explicit `now`. The server keeps one
//! [`Swarms`] behind a `parking_lot` mutex: every operation is short and never awaits.
//! Live peers are kept in memory only, as stock trackers do; a restart forgets them and they
//! come back with their next announce.
//!
//! Everything here is keyed by remote input and therefore bounded and expiring: a peer that
//! stops announcing is dropped after `peer_ttl` (twice the announce interval), a torrent holds
//! at most `max_peers_per_torrent` peers, and an answer carries at most `numwant_cap` peers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::types::{InfoHash, PeerId};

/// The BEP 3 `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A regular announce (no `event`, or an empty one).
    None,
    Started,
    Stopped,
    Completed,
}

impl SwarmEvent {
    /// Parses the `event` parameter; `None` for an unknown value.
    pub fn parse(raw: &[u8]) -> Option<SwarmEvent> {
        match raw {
            b"" | b"empty" => Some(SwarmEvent::None),
            b"started" => Some(SwarmEvent::Started),
            b"stopped" => Some(SwarmEvent::Stopped),
            b"completed" => Some(SwarmEvent::Completed),
            _ => None,
        }
    }
}

/// Limits of the swarm state.
#[derive(Debug, Clone, Copy)]
pub struct SwarmLimits {
    /// A peer that has not announced for this long is dropped (docs/protocol.md 4.1: twice the
    /// interval).
    pub peer_ttl: Duration,
    /// Most peers kept per torrent; announces beyond it are answered but not recorded.
    pub max_peers_per_torrent: usize,
    /// Most peers returned in one answer, whatever `numwant` asks.
    pub numwant_cap: usize,
    /// Peers returned when the client gives no `numwant`.
    pub numwant_default: usize,
}

/// One announce, already authenticated and authorised.
#[derive(Debug, Clone)]
pub struct AnnounceInput {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// The address other peers should connect to: the request's source address with the
    /// announced port.
    pub addr: SocketAddr,
    /// Bytes the peer still needs; 0 makes it a seeder.
    pub left: u64,
    pub event: SwarmEvent,
    pub numwant: Option<u64>,
}

/// What an announce answers: counts and a sample of other peers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AnnounceOutput {
    pub complete: usize,
    pub incomplete: usize,
    pub peers: Vec<(PeerId, SocketAddr)>,
}

/// Counts of one swarm (BEP 48).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SwarmCounts {
    /// Seeders.
    pub complete: usize,
    /// Leechers.
    pub incomplete: usize,
    /// `completed` events seen since the tracker started.
    pub downloaded: u64,
}

#[derive(Debug, Clone)]
struct PeerEntry {
    peer_id: PeerId,
    addr: SocketAddr,
    seeder: bool,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    /// Invariant: `index[peers[i].peer_id] == i` for every i.
    peers: Vec<PeerEntry>,
    index: HashMap<PeerId, usize>,
    /// Invariant: the number of entries of `peers` with `seeder` set.
    seeders: usize,
    downloaded: u64,
}

impl Swarm {
    fn remove_at(&mut self, i: usize) {
        let gone = self.peers.swap_remove(i);
        self.index.remove(&gone.peer_id);
        if gone.seeder {
            self.seeders -= 1;
        }
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.peer_id, i);
        }
    }

    fn counts(&self) -> SwarmCounts {
        SwarmCounts {
            complete: self.seeders,
            incomplete: self.peers.len() - self.seeders,
            downloaded: self.downloaded,
        }
    }

    fn remove_expired(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].expires <= now {
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
    }
}

/// Every swarm the tracker knows.
#[derive(Debug)]
pub struct Swarms {
    limits: SwarmLimits,
    torrents: HashMap<InfoHash, Swarm>,
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for
/// an IPv4 client) to plain IPv4, so it lands in compact `peers` and not `peers6`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Swarms {
    pub fn new(limits: SwarmLimits) -> Self {
        Swarms {
            limits,
            torrents: HashMap::new(),
        }
    }

    /// Records an announce and answers it. `stopped` removes the peer and returns no peers;
    /// the requester never appears in its own answer; expired peers are dropped first.
    pub fn announce(&mut self, input: &AnnounceInput, now: Instant) -> AnnounceOutput {
        let limits = self.limits;
        let swarm = self.torrents.entry(input.info_hash).or_default();
        swarm.remove_expired(now);
        let seeder = input.left == 0;
        let existing = swarm.index.get(&input.peer_id).copied();
        if input.event == SwarmEvent::Stopped {
            if let Some(i) = existing {
                swarm.remove_at(i);
            }
            let out = AnnounceOutput {
                complete: swarm.seeders,
                incomplete: swarm.peers.len() - swarm.seeders,
                peers: Vec::new(),
            };
            if swarm.peers.is_empty() {
                self.torrents.remove(&input.info_hash);
            }
            return out;
        }
        if input.event == SwarmEvent::Completed {
            swarm.downloaded += 1;
        }
        let expires = now + limits.peer_ttl;
        match existing {
            Some(i) => {
                let entry = &mut swarm.peers[i];
                if entry.seeder != seeder {
                    if seeder {
                        swarm.seeders += 1;
                    } else {
                        swarm.seeders -= 1;
                    }
                }
                entry.seeder = seeder;
                entry.addr = input.addr;
                entry.expires = expires;
            }
            None if swarm.peers.len() < limits.max_peers_per_torrent => {
                swarm.index.insert(input.peer_id, swarm.peers.len());
                swarm.peers.push(PeerEntry {
                    peer_id: input.peer_id,
                    addr: input.addr,
                    seeder,
                    expires,
                });
                if seeder {
                    swarm.seeders += 1;
                }
            }
            None => {} // full: answered, not recorded
        }
        let wanted = input
            .numwant
            .map_or(limits.numwant_default, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            })
            .min(limits.numwant_cap);
        let peers = sample_peers(swarm, &input.peer_id, seeder, wanted);
        let counts = swarm.counts();
        AnnounceOutput {
            complete: counts.complete,
            incomplete: counts.incomplete,
            peers,
        }
    }

    /// The counts of one torrent (zeros for an empty or unknown swarm).
    pub fn counts(&self, info_hash: &InfoHash) -> SwarmCounts {
        self.torrents
            .get(info_hash)
            .map(Swarm::counts)
            .unwrap_or_default()
    }

    /// Drops expired peers and empty swarms; run periodically.
    pub fn clean(&mut self, now: Instant) {
        self.torrents.retain(|_, swarm| {
            swarm.remove_expired(now);
            !swarm.peers.is_empty()
        });
    }

    /// Seeders and leechers over every swarm (peers expired since the last clean included).
    pub fn peer_totals(&self) -> (usize, usize) {
        self.torrents
            .values()
            .fold((0, 0), |(seeders, leechers), swarm| {
                let c = swarm.counts();
                (seeders + c.complete, leechers + c.incomplete)
            })
    }

    /// Forgets a torrent's swarm (the torrent was removed).
    pub fn remove(&mut self, info_hash: &InfoHash) {
        self.torrents.remove(info_hash);
    }

    /// How many torrents have at least one live peer.
    pub fn number_of_torrents(&self) -> usize {
        self.torrents.len()
    }
}

/// Up to `wanted` peers other than `me`, starting at a random position so that every peer is
/// handed out in turn. A seeder is not sent other seeders, which it has no use for.
fn sample_peers(
    swarm: &Swarm,
    me: &PeerId,
    seeder: bool,
    wanted: usize,
) -> Vec<(PeerId, SocketAddr)> {
    let n = swarm.peers.len();
    if n == 0 || wanted == 0 {
        return Vec::new();
    }
    let start = rand::random_range(0..n);
    swarm.peers[start..]
        .iter()
        .chain(&swarm.peers[..start])
        .filter(|p| p.peer_id != *me && !(seeder && p.seeder))
        .take(wanted)
        .map(|p| (p.peer_id, p.addr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limits() -> SwarmLimits {
        SwarmLimits {
            peer_ttl: Duration::from_secs(3600),
            max_peers_per_torrent: 3,
            numwant_cap: 2,
            numwant_default: 50,
        }
    }

    fn input(peer: u8, left: u64, event: SwarmEvent) -> AnnounceInput {
        AnnounceInput {
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId([peer; 20]),
            addr: SocketAddr::new(Ipv4Addr::new(10, 0, 0, peer).into(), 6881),
            left,
            event,
            numwant: None,
        }
    }

    #[test]
    fn counts_seeders_and_leechers_and_excludes_self() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        let out = s.announce(&input(1, 0, SwarmEvent::Started), t);
        assert_eq!((out.complete, out.incomplete), (1, 0));
        assert!(out.peers.is_empty());
        let out = s.announce(&input(2, 5, SwarmEvent::Started), t);
        assert_eq!((out.complete, out.incomplete), (1, 1));
        assert_eq!(
            out.peers,
            vec![(PeerId([1; 20]), input(1, 0, SwarmEvent::None).addr)]
        );
    }

    #[test]
    fn completed_turns_leecher_into_seeder_and_counts_download() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        s.announce(&input(1, 5, SwarmEvent::Started), t);
        s.announce(&input(1, 0, SwarmEvent::Completed), t);
        let c = s.counts(&InfoHash([7; 20]));
        assert_eq!(
            c,
            SwarmCounts {
                complete: 1,
                incomplete: 0,
                downloaded: 1
            }
        );
    }

    #[test]
    fn stopped_removes_the_peer_and_empty_swarm() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        s.announce(&input(1, 5, SwarmEvent::Started), t);
        let out = s.announce(&input(1, 5, SwarmEvent::Stopped), t);
        assert_eq!((out.complete, out.incomplete), (0, 0));
        assert_eq!(s.number_of_torrents(), 0);
    }

    #[test]
    fn peers_expire_after_ttl() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        s.announce(&input(1, 0, SwarmEvent::Started), t);
        s.announce(
            &input(2, 5, SwarmEvent::Started),
            t + Duration::from_secs(1800),
        );
        // peer 1 still alive just before its ttl
        let c = s.counts(&InfoHash([7; 20]));
        assert_eq!((c.complete, c.incomplete), (1, 1));
        let out = s.announce(
            &input(3, 5, SwarmEvent::Started),
            t + Duration::from_secs(3600),
        );
        assert_eq!((out.complete, out.incomplete), (0, 2));
        s.clean(t + Duration::from_secs(5401));
        assert_eq!(s.number_of_torrents(), 1);
        s.clean(t + Duration::from_secs(7200));
        assert_eq!(s.number_of_torrents(), 0);
    }

    #[test]
    fn numwant_is_capped_and_swarm_size_bounded() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        for p in 1..=5 {
            s.announce(&input(p, 5, SwarmEvent::Started), t);
        }
        // max_peers_per_torrent = 3: peers 4 and 5 were answered but not recorded
        assert_eq!(s.counts(&InfoHash([7; 20])).incomplete, 3);
        let mut req = input(9, 5, SwarmEvent::None);
        req.numwant = Some(u64::MAX);
        assert_eq!(s.announce(&req, t).peers.len(), 2);
        req.numwant = Some(1);
        assert_eq!(s.announce(&req, t).peers.len(), 1);
        req.numwant = Some(0);
        assert_eq!(s.announce(&req, t).peers.len(), 0);
    }

    #[test]
    fn seeders_get_no_seeders() {
        let mut s = Swarms::new(limits());
        let t = Instant::now();
        s.announce(&input(1, 0, SwarmEvent::Started), t);
        s.announce(&input(2, 5, SwarmEvent::Started), t);
        let out = s.announce(&input(3, 0, SwarmEvent::Started), t);
        assert_eq!(
            out.peers,
            vec![(PeerId([2; 20]), input(2, 0, SwarmEvent::None).addr)]
        );
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        let mapped = IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped());
        assert_eq!(canonical_ip(mapped), IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(
            canonical_ip(Ipv6Addr::LOCALHOST.into()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn events_parse() {
        assert_eq!(SwarmEvent::parse(b"started"), Some(SwarmEvent::Started));
        assert_eq!(SwarmEvent::parse(b""), Some(SwarmEvent::None));
        assert_eq!(SwarmEvent::parse(b"paused"), None);
    }
}
