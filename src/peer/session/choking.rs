//! Choking decisions across rounds (BEP 3): which interested peers we upload to, round after
//! round, with an optimistic slot that moves every third round. A plain type with no I/O, so
//! that plain `#[test]`s check it; the policy of one round is [`crate::peer::choker::choose`].
//!
//! What it will not do: send choke or unchoke messages, or measure traffic; the session
//! counts each peer's bytes per round, asks [`Choking::round`], and sends what changed.

use crate::peer::choker::{self, Candidate};

/// The optimistic slot moves every this many rounds (30 s at a round every 10 s).
const ROUNDS_PER_OPTIMISTIC: u64 = 3;

/// The choking state of one torrent: the rounds so far and the optimistically unchoked peer.
#[derive(Debug)]
pub(super) struct Choking<K> {
    /// Rounds run so far.
    rounds: u64,
    /// The peer unchoked optimistically, if any; forgotten when it goes away.
    optimistic: Option<K>,
}

impl<K: Copy + Eq> Choking<K> {
    pub(super) fn new() -> Self {
        Choking {
            rounds: 0,
            optimistic: None,
        }
    }

    /// One choking round: the peers to unchoke (all others are choked). The first round and
    /// every [`ROUNDS_PER_OPTIMISTIC`]th after it pick a new optimistic peer; `random` picks
    /// an index below its argument.
    pub(super) fn round(
        &mut self,
        candidates: &[Candidate<K>],
        seeding: bool,
        regular_slots: usize,
        random: &mut dyn FnMut(usize) -> usize,
    ) -> Vec<K> {
        self.rounds += 1;
        let rotate = self.rounds % ROUNDS_PER_OPTIMISTIC == 1;
        let (unchoke, optimistic) = choker::choose(
            candidates,
            seeding,
            regular_slots,
            self.optimistic,
            rotate,
            random,
        );
        self.optimistic = optimistic;
        unchoke
    }

    /// The peer `key` is gone.
    pub(super) fn peer_gone(&mut self, key: K) {
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
    }

    /// Whether a peer that became interested between rounds is unchoked at once, with
    /// `unchoked` peers unchoked now: a free slot (regular or optimistic) is given rather
    /// than left idle until the next round.
    pub(super) fn unchoke_at_once(unchoked: usize, regular_slots: usize) -> bool {
        unchoked < regular_slots + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peer `key`, interested, that gave us `received` bytes last round.
    fn giver(key: u32, received: u64) -> Candidate<u32> {
        Candidate {
            key,
            interested: true,
            received,
            sent: 0,
        }
    }

    fn sorted(mut keys: Vec<u32>) -> Vec<u32> {
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_downloader_unchokes_its_best_givers_and_one_optimistic_peer() {
        let mut choking = Choking::new();
        let mut peers = vec![giver(1, 500), giver(2, 10), giver(3, 300), giver(4, 0)];
        peers.push(Candidate {
            key: 5,
            interested: false,
            received: 9_999,
            sent: 0,
        });
        // Peers 1 and 3 gave most; the optimistic slot goes to the first of the others.
        let unchoked = choking.round(&peers, false, 2, &mut |_| 0);
        assert_eq!(sorted(unchoked), vec![1, 2, 3]);
    }

    #[test]
    fn a_seeder_unchokes_the_peers_that_take_most() {
        let mut choking = Choking::new();
        let takers = [(1, 5), (2, 700), (3, 90)].map(|(key, sent)| Candidate {
            key,
            interested: true,
            received: 0,
            sent,
        });
        let unchoked = choking.round(&takers, true, 1, &mut |_| 1);
        assert_eq!(
            unchoked,
            vec![2, 1],
            "the top taker, then the optimistic pick"
        );
    }

    #[test]
    fn the_optimistic_slot_moves_every_third_round() {
        let mut choking = Choking::new();
        let peers = [giver(1, 100), giver(2, 0), giver(3, 0), giver(4, 0)];
        let mut pick = 0;
        let mut optimistic_of_round = Vec::new();
        for _ in 0..4 {
            let unchoked = choking.round(&peers, false, 1, &mut |n| {
                pick += 1;
                pick % n
            });
            assert_eq!(unchoked[0], 1, "the regular slot");
            optimistic_of_round.push(unchoked[1]);
        }
        // Rounds 1 to 3 keep the first pick; round 4 picks again.
        assert_eq!(optimistic_of_round[..3], [optimistic_of_round[0]; 3]);
        assert_ne!(optimistic_of_round[3], optimistic_of_round[0]);
    }

    #[test]
    fn a_gone_optimistic_peer_is_replaced_at_the_next_round() {
        let mut choking = Choking::new();
        let peers = [giver(1, 100), giver(2, 0), giver(3, 0)];
        assert_eq!(choking.round(&peers, false, 1, &mut |_| 0), vec![1, 2]);
        choking.peer_gone(2);
        let left = [giver(1, 100), giver(3, 0)];
        // Round 2 rotates nothing, but peer 2 is gone: peer 3 takes the slot.
        assert_eq!(choking.round(&left, false, 1, &mut |_| 0), vec![1, 3]);
        choking.peer_gone(1);
        assert_eq!(
            choking.optimistic,
            Some(3),
            "only the optimistic peer is forgotten"
        );
    }

    #[test]
    fn a_free_slot_is_given_at_once() {
        assert!(Choking::<u32>::unchoke_at_once(0, 4));
        assert!(Choking::<u32>::unchoke_at_once(4, 4), "the optimistic slot");
        assert!(!Choking::<u32>::unchoke_at_once(5, 4));
    }
}
