//! The PRGA+ steps in Rust that the whole-turn kernels are built from (docs/protocol.md 6.1).
//!
//! A *turn* is 256 steps from `i = 0`: every `i` of it is known in advance, so a turn can be
//! written with constant indices. How far to unroll it is a trade the CPU decides: a turn
//! unrolled whole (about 25 KiB of code) issues the fewest instructions, but on a core whose
//! instruction front end it overflows it runs several times slower than a short loop. So
//! each shape here is a kernel of its own ([`super::kernel::Kernel`]), measured at start-up.
//!
//! Every function takes `j` held as a `usize` in `0..=255` and the step's `S[i]` (`si`), read
//! by the step before, and returns them for the next step.

/// Bytes per group of [`Rc4Plus::apply_keystream`]: the `i` of a group runs over `8k..=8k+7`.
pub(super) const GROUP: usize = 8;
/// Groups in one turn of `i` (256 / 8).
pub(super) const GROUPS_PER_TABLE: usize = 256 / GROUP;

/// The PRGA+ step whose `i` is `8k + P` (`k < 32`, `P < 8`), with `j` held as a `usize`
/// in `0..=255` and `S[i]` (`si`) read by the step before. Returns the new `j`, the output
/// byte, and `S[i]` of the next step.
///
/// Exactly [`prga_step`], rewritten for what a constant `P` allows: `S[i]` is at a constant
/// offset from the group's base; `(i >> 3) ^ (j << 5)` is `k | ((j << 5) & 0xE0)`
/// (k has only the low five bits, the other term only the top three); `(i << 5) ^ (j >> 3)`
/// is `(P << 5) | (j >> 3)`, a constant displacement. Working in `usize` with explicit masks
/// lets the compiler skip the zero-extensions that `u8` arithmetic costs it, and every index
/// is provably below 256, so no bound check remains.
///
/// The next step's `S[i]` is read here, before the swap's stores, and replaced by the stored
/// value when the swap wrote it (`j` is the next `i`, one time in 256). Read after the stores,
/// as the plain step does, the core cannot tell that the load does not depend on them and
/// makes the chain of `j` wait for the store addresses: 2–3 % faster in Rust here, 5 % in
/// the clang C reference and 19 % in the gcc one (docs/benchmarks.md).
#[inline(always)]
fn prga_step_grouped<const P: usize>(
    s: &mut [u8; 256],
    k: usize,
    j: usize,
    si: usize,
) -> (usize, u8, usize) {
    const { assert!(P < GROUP, "a position inside a group") };
    let k = k % GROUPS_PER_TABLE;
    let i = k * GROUP + P;
    let i_next = if P == GROUP - 1 {
        ((k + 1) % GROUPS_PER_TABLE) * GROUP
    } else {
        i + 1
    };
    let j = (j + si) & 0xFF;
    let sj = usize::from(s[j]);
    let s_next = usize::from(s[i_next]);
    // The swap as two stores, so that i == j is harmless; both values fit in a byte.
    s[i] = sj as u8;
    s[j] = si as u8;
    let s_next = if j == i_next { si } else { s_next };
    let t = (si + sj) & 0xFF;
    let t1 = ((usize::from(s[k | ((j << 5) & 0xE0)]) + usize::from(s[(P << 5) | (j >> 3)])) & 0xFF)
        ^ 0xAA;
    // t'' = j + S[j] with S after the swap, where S[j] = the old S[i].
    let t2 = (j + si) & 0xFF;
    let z = s[t].wrapping_add(s[t1]) ^ s[t2];
    (j, z, s_next)
}

/// The eight PRGA+ steps whose `i` runs over `8k..=8k+7`, XORed into `group`, from `j` and
/// the first step's `S[i]`; returns the new `j` and the next step's `S[i]`. Inlined, so that
/// `prga_turn`'s literal `k` makes every `i` a constant.
#[inline(always)]
pub(super) fn prga_group(
    s: &mut [u8; 256],
    k: usize,
    mut j: usize,
    mut si: usize,
    group: &mut [u8; GROUP],
) -> (usize, usize) {
    // Spelled out: a loop over the positions would make them variables again.
    let z;
    (j, z, si) = prga_step_grouped::<0>(s, k, j, si);
    group[0] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<1>(s, k, j, si);
    group[1] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<2>(s, k, j, si);
    group[2] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<3>(s, k, j, si);
    group[3] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<4>(s, k, j, si);
    group[4] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<5>(s, k, j, si);
    group[5] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<6>(s, k, j, si);
    group[6] ^= z;
    let z;
    (j, z, si) = prga_step_grouped::<7>(s, k, j, si);
    group[7] ^= z;
    (j, si)
}

/// One whole turn of `i` (0 to 255, 256 bytes) from `i = 0`; returns the new `j` and the
/// next step's `S[i]`.
///
/// The 32 groups are spelled out with literal `k`, so each of the 256 steps reads and writes
/// `S[i]` at a fixed offset and no register holds a group base (with a variable `k` the
/// compiler ran out of registers and reloaded `k` from the stack at every step). About 25 KiB
/// of code, inlined into the loop over turns (as a call it lost most of the gain), and about
/// 5 % faster than the loop over groups on the project's AMD EPYC (docs/benchmarks.md).
/// The `rust-turn` kernel; [`super::x86_64::prga_turn`] is the same turn in assembly.
#[inline(always)]
pub(super) fn prga_turn(
    s: &mut [u8; 256],
    mut j: usize,
    mut si: usize,
    turn: &mut [[u8; GROUP]; GROUPS_PER_TABLE],
) -> (usize, usize) {
    macro_rules! groups {
        ($($k:literal)*) => {$( (j, si) = prga_group(s, $k, j, si, &mut turn[$k]); )*};
    }
    groups!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    (j, si)
}

/// One turn as a loop over its 32 groups, each group's eight steps unrolled: the `rust-groups`
/// kernel, about a thirtieth of [`prga_turn`]'s code.
#[inline(always)]
pub(super) fn prga_turn_grouped(
    s: &mut [u8; 256],
    mut j: usize,
    mut si: usize,
    turn: &mut [[u8; GROUP]; GROUPS_PER_TABLE],
) -> (usize, usize) {
    for (k, group) in turn.iter_mut().enumerate() {
        (j, si) = prga_group(s, k, j, si, group);
    }
    (j, si)
}

/// One turn one step at a time, nothing unrolled: the `compact` kernel, the smallest code.
/// The same steps as [`prga_step_grouped`] with `i` in a register.
#[inline(always)]
pub(super) fn prga_turn_compact(
    s: &mut [u8; 256],
    mut j: usize,
    mut si: usize,
    turn: &mut [[u8; GROUP]; GROUPS_PER_TABLE],
) -> (usize, usize) {
    for (i, byte) in turn.as_flattened_mut().iter_mut().enumerate() {
        let i_next = (i + 1) & 0xFF;
        j = (j + si) & 0xFF;
        let sj = usize::from(s[j]);
        let s_next = usize::from(s[i_next]);
        // i < 256 (the turn has 256 bytes) and sj, si < 256: the casts are exact.
        s[i & 0xFF] = sj as u8;
        s[j] = si as u8;
        let s_next = if j == i_next { si } else { s_next };
        let t = (si + sj) & 0xFF;
        let t1 = ((usize::from(s[((i >> 3) ^ (j << 5)) & 0xFF])
            + usize::from(s[((i << 5) ^ (j >> 3)) & 0xFF]))
            & 0xFF)
            ^ 0xAA;
        let t2 = (j + si) & 0xFF;
        *byte ^= s[t].wrapping_add(s[t1]) ^ s[t2];
        si = s_next;
    }
    (j, si)
}
