//! The picker's policy, driven by plain tests and properties (no sockets, no clock).

use super::*;
use proptest::prelude::*;

const B: u32 = BLOCK_LEN;

/// `pieces` pieces of 2 blocks each, the last one a block and a half.
fn geometry(pieces: u32) -> Geometry {
    Geometry::new(
        u64::from(2 * B),
        u64::from(2 * B) * u64::from(pieces) - u64::from(B / 2),
    )
    .unwrap()
}

/// Piece `index` of the largest test torrent, [`geometry`]`(64)`: each test names only
/// pieces its own torrent has.
fn piece(index: u32) -> PieceIndex {
    geometry(64).piece_index(index).unwrap()
}

fn picker(pieces: u32) -> Picker<u32> {
    let g = geometry(pieces);
    Picker::with_seed(g, Bitfield::new(g.piece_count()), 7)
}

fn bits(len: u32, set: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(len);
    for &i in set {
        b.set(i);
    }
    b
}

fn req(index: u32, block: u32, length: u32) -> BlockRequest {
    BlockRequest {
        index,
        begin: block * B,
        length,
    }
}

#[test]
fn rarest_piece_first() {
    let mut p = picker(4);
    let now = Instant::now();
    for peer in 0..3 {
        p.add_peer(peer);
    }
    p.peer_bitfield(0, Bitfield::full(4));
    p.peer_bitfield(1, bits(4, &[0, 1, 3]));
    p.peer_bitfield(2, bits(4, &[0, 3]));
    // Availability: 0 → 3, 1 → 2, 2 → 1, 3 → 3. Peer 0 gets piece 2 first, then 1.
    let r = p.next_requests(0, 3, now);
    assert_eq!(r, vec![req(2, 0, B), req(2, 1, B), req(1, 0, B)]);
    p.check_invariants();
}

#[test]
fn ties_are_broken_at_random() {
    let g = geometry(64);
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
        p.add_peer(0);
        p.peer_bitfield(0, Bitfield::full(64));
        firsts.insert(p.next_requests(0, 1, Instant::now())[0].index);
    }
    assert!(firsts.len() > 5, "20 seeds picked only {firsts:?}");
}

#[test]
fn ties_go_to_the_piece_the_peer_announced_last() {
    let g = geometry(64);
    for seed in 0..10 {
        let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
        let now = Instant::now();
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, Bitfield::full(64));
        // Peer 1 had 40 pieces, then announced 50 and 45 (in that order): all 42 are held
        // by two peers, and 45, its newest, comes first, then 50.
        p.peer_bitfield(1, bits(64, &(0..40).collect::<Vec<_>>()));
        p.peer_have(1, piece(50));
        p.peer_have(1, piece(45));
        let r = p.next_requests(1, 4, now);
        assert_eq!(
            r,
            vec![req(45, 0, B), req(45, 1, B), req(50, 0, B), req(50, 1, B)]
        );
        p.check_invariants();

        // Rarity still comes first: a piece only peer 1 has beats its recent ones.
        let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(64), seed);
        p.add_peer(0);
        p.add_peer(1);
        p.peer_bitfield(0, bits(64, &[60, 61, 3]));
        p.peer_bitfield(1, bits(64, &(0..40).collect::<Vec<_>>()));
        p.peer_have(1, piece(60));
        p.peer_have(1, piece(61));
        // Availability: 3, 60 and 61 → 2; peer 1's other pieces → 1.
        let first = p.next_requests(1, 1, now)[0].index;
        assert!(first < 40 && first != 3, "seed {seed}: picked {first}");
        p.check_invariants();
    }
}

#[test]
fn started_pieces_are_finished_first() {
    let mut p = picker(4);
    let now = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(4));
    p.peer_bitfield(1, Bitfield::full(4));
    let a = p.next_requests(0, 1, now);
    // Peer 1 joins peer 0's piece before starting another.
    let b = p.next_requests(1, 1, now);
    assert_eq!(a[0].index, b[0].index);
    assert_ne!(a[0].begin, b[0].begin);
    p.check_invariants();
}

#[test]
fn pipeline_is_kept_full_not_overfilled() {
    let mut p = picker(8);
    let now = Instant::now();
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(8));
    assert_eq!(p.next_requests(0, 5, now).len(), 5);
    assert_eq!(p.next_requests(0, 5, now).len(), 0);
    assert_eq!(p.outstanding(0), 5);
    let r = p.next_requests(0, 7, now);
    assert_eq!(r.len(), 2);
    assert_eq!(p.outstanding(0), 7);
    p.check_invariants();
}

#[test]
fn only_pieces_the_peer_has() {
    let mut p = picker(4);
    p.add_peer(0);
    p.peer_bitfield(0, bits(4, &[3]));
    let r = p.next_requests(0, 10, Instant::now());
    // Piece 3 is the short last piece: a full block and a half block.
    assert_eq!(r, vec![req(3, 0, B), req(3, 1, B / 2)]);
    assert!(
        p.next_requests(7, 10, Instant::now()).is_empty(),
        "unknown peer"
    );
}

#[test]
fn blocks_complete_a_piece_then_verify() {
    let mut p = picker(2);
    let now = Instant::now();
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(2));
    assert!(p.is_interesting(0));
    let r = p.next_requests(0, 2, now);
    let index = r[0].index;
    let len = |i| r[i as usize].length;
    assert_eq!(
        p.block_received(0, piece(index), 0, len(0)),
        BlockOutcome::Accepted {
            cancel: vec![],
            piece_complete: false
        }
    );
    assert_eq!(
        p.block_received(0, piece(index), 0, len(0)),
        BlockOutcome::Duplicate
    );
    assert_eq!(
        p.block_received(0, piece(index), B, len(1)),
        BlockOutcome::Accepted {
            cancel: vec![],
            piece_complete: true
        }
    );
    assert!(p.piece_verified(piece(index)));
    assert!(!p.piece_verified(piece(index)));
    assert!(p.have().get(index));
    assert_eq!(
        p.block_received(0, piece(index), 0, B),
        BlockOutcome::Duplicate
    );
    p.check_invariants();
}

#[test]
fn bad_blocks_are_invalid_or_unrequested() {
    let mut p = picker(2);
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(2));
    assert_eq!(p.block_received(0, piece(0), 1, B), BlockOutcome::Invalid);
    assert_eq!(
        p.block_received(0, piece(0), 0, B - 1),
        BlockOutcome::Invalid
    );
    assert_eq!(
        p.block_received(0, piece(1), B, B),
        BlockOutcome::Invalid,
        "last block is short"
    );
    // No piece 2: a wire index past the end never becomes a `PieceIndex`, and a request
    // naming it is none of ours.
    assert_eq!(p.geometry.piece_index(2), None, "no piece 2");
    assert!(!p.request_rejected(0, &req(2, 0, B)), "no piece 2");
    assert_eq!(
        p.block_received(0, piece(0), 0, B),
        BlockOutcome::Unrequested
    );
    p.check_invariants();
}

#[test]
fn end_game_duplicates_and_cancels() {
    let mut p = picker(1);
    let now = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(1));
    p.peer_bitfield(1, Bitfield::full(1));
    let a = p.next_requests(0, 2, now);
    assert_eq!(a.len(), 2);
    assert!(p.in_end_game());
    let b = p.next_requests(1, 2, now);
    assert_eq!(a, b, "peer 1 is asked for peer 0's outstanding blocks");
    p.check_invariants();
    assert_eq!(
        p.block_received(1, piece(0), 0, B),
        BlockOutcome::Accepted {
            cancel: vec![0],
            piece_complete: false
        }
    );
    assert_eq!(p.outstanding(0), 1);
    assert_eq!(p.outstanding(1), 1);
    // Peer 0 sends the block anyway (the cancel crossed it): a duplicate.
    assert_eq!(p.block_received(0, piece(0), 0, B), BlockOutcome::Duplicate);
    p.check_invariants();
}

#[test]
fn not_end_game_while_blocks_are_unrequested() {
    let mut p = picker(3);
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(3));
    p.peer_bitfield(1, bits(3, &[0]));
    let a = p.next_requests(0, 2, Instant::now());
    assert!(!p.in_end_game());
    // Peer 1 only has piece 0; if peer 0 took it, peer 1 gets nothing (no end game yet).
    let b = p.next_requests(1, 2, Instant::now());
    if a[0].index == 0 {
        assert!(b.is_empty());
    } else {
        assert!(b.iter().all(|r| r.index == 0));
    }
}

#[test]
fn timed_out_requests_go_back() {
    let mut p = picker(2);
    let t0 = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(2));
    p.peer_bitfield(1, Bitfield::full(2));
    let a = p.next_requests(0, 1, t0);
    let t1 = t0 + Duration::from_secs(10);
    let b = p.next_requests(1, 1, t1);
    let expired = p.expire_requests(t0 + Duration::from_secs(30), Duration::from_secs(30));
    assert_eq!(expired, vec![(0, a[0])]);
    p.check_invariants();
    // The expired block is the first one offered again.
    let again = p.next_requests(1, 2, t1);
    assert_eq!(again, vec![a[0]]);
    assert_ne!(a[0], b[0]);
    // A late answer from peer 0 after expiry is not wanted twice.
    assert!(matches!(
        p.block_received(0, piece(a[0].index), a[0].begin, a[0].length),
        BlockOutcome::Accepted { .. }
    ));
    p.check_invariants();
}

#[test]
fn choke_and_reject_release_requests() {
    let mut p = picker(4);
    let now = Instant::now();
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(4));
    let r = p.next_requests(0, 4, now);
    assert!(p.request_rejected(0, &r[0]));
    assert!(!p.request_rejected(0, &r[0]), "not outstanding any more");
    assert_eq!(p.outstanding(0), 3);
    let mut released = p.peer_choked(0);
    released.sort();
    let mut expected = r[1..].to_vec();
    expected.sort();
    assert_eq!(released, expected);
    assert_eq!(p.outstanding(0), 0);
    p.check_invariants();
}

#[test]
fn a_gone_peer_releases_requests_and_availability() {
    let mut p = picker(4);
    let now = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(4));
    p.peer_bitfield(1, bits(4, &[1]));
    assert!(p.peer_have(1, piece(2)));
    assert!(!p.peer_have(1, piece(2)));
    assert_eq!(p.availability(piece(2)), 2);
    p.next_requests(1, 3, now);
    p.remove_peer(1);
    assert_eq!(p.availability(piece(1)), 1);
    assert_eq!(p.availability(piece(2)), 1);
    p.check_invariants();
    assert_eq!(p.next_requests(0, 100, now).len(), 8);
}

#[test]
fn failed_piece_goes_back_whole_and_names_senders() {
    let mut p = picker(1);
    let now = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(1));
    p.peer_bitfield(1, Bitfield::full(1));
    p.next_requests(0, 1, now);
    p.next_requests(1, 1, now);
    p.block_received(0, piece(0), 0, B);
    let outcome = p.block_received(1, piece(0), B, B / 2);
    assert_eq!(
        outcome,
        BlockOutcome::Accepted {
            cancel: vec![],
            piece_complete: true
        }
    );
    assert_eq!(p.piece_failed(piece(0)), vec![0, 1]);
    assert!(p.piece_failed(piece(0)).is_empty(), "no longer complete");
    assert!(!p.in_end_game());
    p.check_invariants();
    assert_eq!(p.next_requests(1, 5, now).len(), 2);
}

#[test]
fn allowed_fast_pieces_only() {
    let mut p = picker(4);
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(4));
    let r = p.next_requests_among(0, &[piece(2)], 10, Instant::now());
    assert_eq!(r, vec![req(2, 0, B), req(2, 1, B)]);
    assert!(
        p.next_requests_among(0, &[piece(2)], 10, Instant::now())
            .is_empty()
    );
    p.check_invariants();
}

#[test]
fn in_progress_only_starts_nothing() {
    let mut p = picker(4);
    let now = Instant::now();
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(4));
    assert!(p.next_requests_in_progress(0, 10, now).is_empty());
    let first = p.next_requests(0, 1, now);
    let more = p.next_requests_in_progress(0, 10, now);
    assert_eq!(more.len(), 1, "the rest of the started piece only");
    assert_eq!(more[0].index, first[0].index);
    p.check_invariants();
}

#[test]
fn a_peer_with_nothing_new_is_not_searched_until_it_has() {
    let mut p = picker(4);
    let now = Instant::now();
    p.add_peer(0);
    p.add_peer(1);
    p.peer_bitfield(0, Bitfield::full(4));
    p.peer_bitfield(1, bits(4, &[1]));
    // Peer 0 is asked for all of piece 1; peer 1 then has nothing to start (and it is not
    // end game: pieces 0, 2 and 3 are not started).
    assert_eq!(p.next_requests_among(0, &[piece(1)], 100, now).len(), 2);
    assert!(p.next_requests(1, 4, now).is_empty());
    assert!(p.peers[&1].nothing_to_start);
    p.check_invariants();
    assert!(p.peer_have(1, piece(2)));
    assert!(!p.peers[&1].nothing_to_start);
    p.check_invariants();
}

#[test]
fn resumed_pieces_are_not_requested() {
    let g = geometry(3);
    let mut p: Picker<u32> = Picker::with_seed(g, bits(3, &[0, 2]), 1);
    p.add_peer(0);
    p.peer_bitfield(0, Bitfield::full(3));
    let r = p.next_requests(0, 10, Instant::now());
    assert!(r.iter().all(|r| r.index == 1));
    assert!(!p.peer_bitfield(0, Bitfield::full(4)), "wrong length");
    p.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Bitfield(u32, Vec<bool>),
    Have(u32, u32),
    Next(u32, usize),
    NextAmong(u32, u32, usize),
    NextInProgress(u32, usize),
    Receive(u32, u32),
    ReceiveAny(u32, u32, u32),
    Reject(u32, u32),
    Choke(u32),
    Remove(u32),
    Add(u32),
    Expire(u64),
    Verify(u32, bool),
    Tick(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let peer = 0u32..4;
    prop_oneof![
        1 => (peer.clone(), proptest::collection::vec(any::<bool>(), 5)).prop_map(|(p, b)| Op::Bitfield(p, b)),
        1 => (peer.clone(), 0u32..5).prop_map(|(p, i)| Op::Have(p, i)),
        4 => (peer.clone(), 0usize..8).prop_map(|(p, n)| Op::Next(p, n)),
        4 => (peer.clone(), any::<u32>()).prop_map(|(p, i)| Op::Receive(p, i)),
        1 => (peer.clone(), 0u32..5, 0u32..3).prop_map(|(p, i, b)| Op::ReceiveAny(p, i, b)),
        1 => (peer.clone(), any::<u32>()).prop_map(|(p, i)| Op::Reject(p, i)),
        1 => peer.clone().prop_map(Op::Choke),
        1 => peer.clone().prop_map(Op::Remove),
        1 => peer.clone().prop_map(Op::Add),
        1 => (0u64..60).prop_map(Op::Expire),
        1 => (0u32..5, any::<bool>()).prop_map(|(i, ok)| Op::Verify(i, ok)),
        1 => (0u64..20).prop_map(Op::Tick),
        1 => (peer.clone(), 0u32..5, 0usize..8).prop_map(|(p, i, n)| Op::NextAmong(p, i, n)),
        1 => (peer.clone(), 0usize..8).prop_map(|(p, n)| Op::NextInProgress(p, n)),
    ]
}

proptest! {
    /// Any sequence of events keeps every invariant, and a download always can finish.
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(arb_op(), 1..80)) {
        let g = geometry(5);
        let mut p: Picker<u32> = Picker::with_seed(g, Bitfield::new(5), 3);
        let mut now = Instant::now();
        for peer in 0..4 {
            p.add_peer(peer);
        }
        for op in ops {
            match op {
                Op::Bitfield(peer, b) => {
                    let set: Vec<u32> = (0..5).filter(|&i| b[i as usize]).collect();
                    p.peer_bitfield(peer, bits(5, &set));
                }
                Op::Have(peer, i) => { p.peer_have(peer, piece(i)); }
                Op::Next(peer, n) => {
                    let before = p.outstanding(peer);
                    let r = p.next_requests(peer, n, now);
                    prop_assert!(p.outstanding(peer) <= n.max(before));
                    let mut seen = r.clone();
                    seen.sort();
                    seen.dedup();
                    prop_assert_eq!(seen.len(), r.len(), "a request twice in one batch");
                }
                Op::NextInProgress(peer, n) => {
                    let started: Vec<u32> = p.pieces.keys().map(|i| i.get()).collect();
                    for r in p.next_requests_in_progress(peer, n, now) {
                        prop_assert!(started.contains(&r.index));
                    }
                }
                Op::NextAmong(peer, index, n) => {
                    for r in p.next_requests_among(peer, &[piece(index)], n, now) {
                        prop_assert_eq!(r.index, index);
                    }
                }
                Op::Receive(peer, pick) => {
                    let outstanding: Vec<BlockKey> = p.peers.get(&peer)
                        .map(|s| s.outstanding.keys().copied().collect()).unwrap_or_default();
                    if !outstanding.is_empty() {
                        let r = p.request_of(outstanding[pick as usize % outstanding.len()]);
                        let outcome = p.block_received(peer, piece(r.index), r.begin, r.length);
                        prop_assert!(matches!(outcome, BlockOutcome::Accepted { .. }), "{:?}", outcome);
                    }
                }
                Op::ReceiveAny(peer, i, b) => {
                    let len = g.piece_len(piece(i)).saturating_sub(b * B).min(B);
                    p.block_received(peer, piece(i), b * B, len);
                }
                Op::Reject(peer, pick) => {
                    let outstanding: Vec<BlockKey> = p.peers.get(&peer)
                        .map(|s| s.outstanding.keys().copied().collect()).unwrap_or_default();
                    if !outstanding.is_empty() {
                        let r = p.request_of(outstanding[pick as usize % outstanding.len()]);
                        prop_assert!(p.request_rejected(peer, &r));
                    }
                }
                Op::Choke(peer) => { p.peer_choked(peer); }
                Op::Remove(peer) => p.remove_peer(peer),
                Op::Add(peer) => p.add_peer(peer),
                Op::Expire(secs) => { p.expire_requests(now, Duration::from_secs(secs)); }
                Op::Verify(i, ok) => {
                    if ok { p.piece_verified(piece(i)); } else { p.piece_failed(piece(i)); }
                }
                Op::Tick(secs) => now += Duration::from_secs(secs),
            }
            p.check_invariants();
        }
        // Whatever happened, one seeder finishes the download.
        p.add_peer(9);
        p.peer_bitfield(9, Bitfield::full(5));
        for _ in 0..100 {
            if p.is_complete() {
                break;
            }
            for r in p.next_requests(9, 4, now) {
                if let BlockOutcome::Accepted { piece_complete: true, .. } =
                    p.block_received(9, piece(r.index), r.begin, r.length)
                {
                    p.piece_verified(piece(r.index));
                }
            }
            // Pieces completed by others earlier but never verified.
            for i in 0..5 {
                p.piece_verified(piece(i));
            }
            // Requests stuck at peers that never answer.
            now += Duration::from_secs(100);
            p.expire_requests(now, Duration::from_secs(60));
            p.check_invariants();
        }
        prop_assert!(p.is_complete());
    }
}
