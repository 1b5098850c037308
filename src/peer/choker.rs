//! Which interested peers we upload to (BEP 3 choking), as a pure function of what each peer
//! did in the last round, so that a plain `#[test]` checks the policy.
//!
//! Policy: up to `regular_slots` interested peers that gave us the most (while we download)
//! or took the most from us (while we seed, which favours peers that can use the bandwidth),
//! plus one optimistic slot that rotates among the others so that newcomers get a chance.

/// One peer as the choker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<K> {
    pub key: K,
    pub interested: bool,
    /// Bytes received from the peer in the last round.
    pub received: u64,
    /// Bytes sent to the peer in the last round.
    pub sent: u64,
}

/// Picks the peers to unchoke. `optimistic` is the current optimistic peer; `rotate` says
/// whether to pick a new one this round; `random` picks an index below its argument.
pub fn choose<K: Copy + Eq>(
    candidates: &[Candidate<K>],
    seeding: bool,
    regular_slots: usize,
    optimistic: Option<K>,
    rotate: bool,
    random: &mut dyn FnMut(usize) -> usize,
) -> (Vec<K>, Option<K>) {
    let mut interested: Vec<&Candidate<K>> = candidates.iter().filter(|c| c.interested).collect();
    interested.sort_by_key(|c| std::cmp::Reverse(if seeding { c.sent } else { c.received }));
    let mut unchoked: Vec<K> = interested
        .iter()
        .take(regular_slots)
        .map(|c| c.key)
        .collect();
    let others: Vec<K> = interested
        .iter()
        .skip(regular_slots)
        .map(|c| c.key)
        .collect();
    let keep = optimistic.filter(|k| !rotate && others.contains(k));
    let optimistic = keep.or_else(|| {
        if others.is_empty() {
            None
        } else {
            Some(others[random(others.len()) % others.len()])
        }
    });
    if let Some(k) = optimistic {
        unchoked.push(k);
    }
    (unchoked, optimistic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: u32, interested: bool, received: u64, sent: u64) -> Candidate<u32> {
        Candidate {
            key,
            interested,
            received,
            sent,
        }
    }

    #[test]
    fn downloading_rewards_the_peers_that_give_most() {
        let peers = [
            c(1, true, 10, 0),
            c(2, true, 50, 0),
            c(3, false, 99, 0),
            c(4, true, 30, 0),
            c(5, true, 0, 0),
        ];
        let (mut chosen, optimistic) = choose(&peers, false, 2, None, true, &mut |_| 0);
        assert_eq!(optimistic, Some(1));
        chosen.sort();
        assert_eq!(chosen, vec![1, 2, 4]);
    }

    #[test]
    fn seeding_favours_peers_that_take_most_and_optimistic_rotates_only_when_asked() {
        let peers = [c(1, true, 0, 5), c(2, true, 0, 500), c(3, true, 0, 50)];
        let (chosen, optimistic) = choose(&peers, true, 1, Some(1), false, &mut |_| 1);
        assert_eq!(chosen, vec![2, 1], "the optimistic peer is kept");
        assert_eq!(optimistic, Some(1));
        let (chosen, optimistic) = choose(&peers, true, 1, Some(1), true, &mut |_| 0);
        assert_eq!(chosen, vec![2, 3]);
        assert_eq!(optimistic, Some(3));
    }

    #[test]
    fn few_peers_are_all_unchoked() {
        let peers = [c(1, true, 0, 0), c(2, true, 0, 0)];
        let (chosen, optimistic) = choose(&peers, true, 4, None, true, &mut |_| 0);
        assert_eq!(chosen.len(), 2);
        assert_eq!(optimistic, None);
        let (chosen, _) = choose::<u32>(&[], false, 4, Some(9), false, &mut |_| 0);
        assert!(chosen.is_empty());
    }
}
