//! One whole turn of PRGA+ (256 bytes from `i = 0`) in x86-64 assembly.
//!
//! Exactly the Rust `prga_turn` of the parent module, step for step; only the instruction
//! selection differs. PRGA+ is bound by the instructions the core issues (about 27 a byte from
//! the compiler, at about 4.4 a cycle on the project's AMD EPYC), and a quarter of them only
//! re-zero-extend bytes: the compiler cannot know that the upper bits of a register stay zero
//! when only its low byte is added to. Here every index lives in a 64-bit register whose upper
//! 56 bits are zero and is changed only through its low byte, so `j`, `t`, `t'` and `t''` need
//! no masking, and the choice of the next `S[i]` is a `cmov` instead of a branch and two moves:
//! 21 instructions a byte. See docs/benchmarks.md ("Cipher") for the figures.
//!
//! Writing a byte register and then using the whole register costs nothing on AMD cores and on
//! Intel cores from Haswell (2013) on; Sandy and Ivy Bridge insert a merging micro-op there, so
//! on those the gain may be smaller. Only the project's AMD EPYC has been measured.
//!
//! Memory safety rests on one invariant, checked by reading: every address is the table's base
//! plus a value below 256 (a byte, a constant below 256, or `(j & 7) << 5` plus a group index
//! below 32, or `j >> 3` plus a multiple of 32 below 256), or the turn buffer's base plus a
//! constant below 256.
#![allow(
    unsafe_code,
    reason = "inline assembly is unsafe; each block argues its bounds"
)]

use std::arch::asm;

/// One PRGA+ step whose `i` is the constant `8k + p`. `$j` and `$si` are `usize` values below
/// 256 (`j` and the step's `S[i]`); afterwards they are the new `j` and the next step's `S[i]`,
/// still below 256.
macro_rules! step {
    ($s:ident, $out:ident, $j:ident, $si:ident, $k:literal, $p:literal) => {
        let next: usize;
        // SAFETY: `$s` points to the 256-byte table and `$out` to the 256-byte turn buffer,
        // both exclusively borrowed by `prga_turn`. `$j` and `$si` are below 256 on entry
        // (the callers' invariant) and every register used as an index is either loaded with
        // `movzx` from a byte, or a copy of `j` changed only in its low byte (`shl` of the low
        // byte, or `shr` of a value below 256), so each address stays inside its array (see
        // the module doc). The block touches no stack and no memory beyond these two arrays.
        unsafe {
            asm!(
                // j = j + S[i] (mod 256: only the low byte is added to)
                "add {j:l}, {si:l}",
                // S[j], and S[i+1] read before the swap's stores (as prga_step_grouped does)
                "movzx {t:e}, byte ptr [{s} + {j}]",
                "movzx {nx:e}, byte ptr [{s} + {inext}]",
                // the swap, as two stores so that i == j is harmless
                "mov byte ptr [{s} + {i}], {t:l}",
                "mov byte ptr [{s} + {j}], {si:l}",
                // t = S[i] + S[j]
                "add {t:l}, {si:l}",
                // the swap wrote S[i+1] when j == i+1: take the stored value
                "cmp {j:l}, {inext}",
                "cmove {nx:e}, {si:e}",
                // t' = (S[k | (j << 5) & 0xE0] + S[(p << 5) | (j >> 3)]) ^ 0xAA
                "mov {a:e}, {j:e}",
                "shl {a:l}, 5",
                "mov {b:e}, {j:e}",
                "shr {b:e}, 3",
                "movzx {a:e}, byte ptr [{s} + {a} + {k}]",
                "add {a:l}, byte ptr [{s} + {b} + {p32}]",
                "xor {a:l}, 0xAA",
                // t'' = j + S[j] after the swap, which is the old S[i]
                "mov {b:e}, {j:e}",
                "add {b:l}, {si:l}",
                // Z = (S[t] + S[t']) ^ S[t''], XORed into the output
                "movzx {t:e}, byte ptr [{s} + {t}]",
                "add {t:l}, byte ptr [{s} + {a}]",
                "xor {t:l}, byte ptr [{s} + {b}]",
                "xor byte ptr [{out} + {o}], {t:l}",
                s = in(reg) $s,
                out = in(reg) $out,
                j = inout(reg) $j,
                si = in(reg) $si,
                nx = out(reg) next,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                i = const $k * 8 + $p,
                inext = const ($k * 8 + $p + 1) % 256,
                k = const $k,
                p32 = const $p * 32,
                o = const $k * 8 + $p,
                options(nostack),
            );
        }
        $si = next;
    };
}

/// The eight steps of group `k` (`i` from `8k` to `8k + 7`).
macro_rules! group {
    ($s:ident, $out:ident, $j:ident, $si:ident, $k:literal) => {
        step!($s, $out, $j, $si, $k, 0);
        step!($s, $out, $j, $si, $k, 1);
        step!($s, $out, $j, $si, $k, 2);
        step!($s, $out, $j, $si, $k, 3);
        step!($s, $out, $j, $si, $k, 4);
        step!($s, $out, $j, $si, $k, 5);
        step!($s, $out, $j, $si, $k, 6);
        step!($s, $out, $j, $si, $k, 7);
    };
}

/// One whole turn of `i` (0 to 255) from `j` and `S[0]` (`si`), XORed into `turn`; returns the
/// new `j` and `S[0]` of the next turn. The same contract as the Rust `prga_turn`.
#[inline(always)]
pub(super) fn prga_turn(
    s: &mut [u8; 256],
    j: usize,
    si: usize,
    turn: &mut [[u8; super::GROUP]; super::GROUPS_PER_TABLE],
) -> (usize, usize) {
    // The invariant every step relies on; the callers keep both below 256.
    let mut j = j & 0xFF;
    let mut si = si & 0xFF;
    let s = s.as_mut_ptr();
    let out = turn.as_mut_ptr().cast::<u8>();
    macro_rules! groups {
        ($($k:literal)*) => {$( group!(s, out, j, si, $k); )*};
    }
    groups!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    (j, si)
}

/// One PRGA+ step of a group whose base `8k` is only known at run time (`$ib`), at the
/// constant position `$p` (0 to 6). The same instructions as [`step!`] with the constant
/// offsets of `i` replaced by a pointer to `S[8k]` (`$sb`) and to `S[k]` (`$sk`), and one
/// `lea` more to compare `j` with the next `i`.
macro_rules! step_at {
    ($s:ident, $sb:ident, $sk:ident, $ib:ident, $out:ident, $j:ident, $si:ident, $p:literal) => {
        let next: usize;
        // SAFETY: as in `step!`; `$sb` is the table's base plus 8k and `$sk` its base plus k
        // (k < 32), so `[$sb + p]` and `[$sb + p + 1]` (p < 7) stay below 8k + 8 <= 256 and
        // `[$sk + a]` (a = (j & 7) << 5, at most 224) below 256; `$out` points to the group's
        // eight bytes.
        unsafe {
            asm!(
                "add {j:l}, {si:l}",
                "movzx {t:e}, byte ptr [{s} + {j}]",
                "movzx {nx:e}, byte ptr [{sb} + {inext}]",
                "mov byte ptr [{sb} + {p}], {t:l}",
                "mov byte ptr [{s} + {j}], {si:l}",
                "add {t:l}, {si:l}",
                // the next `i` is 8k + p + 1, below 256 for p < 7
                "lea {a:e}, [{ib} + {inext}]",
                "cmp {j:l}, {a:l}",
                "cmove {nx:e}, {si:e}",
                "mov {a:e}, {j:e}",
                "shl {a:l}, 5",
                "mov {b:e}, {j:e}",
                "shr {b:e}, 3",
                "movzx {a:e}, byte ptr [{sk} + {a}]",
                "add {a:l}, byte ptr [{s} + {b} + {p32}]",
                "xor {a:l}, 0xAA",
                "mov {b:e}, {j:e}",
                "add {b:l}, {si:l}",
                "movzx {t:e}, byte ptr [{s} + {t}]",
                "add {t:l}, byte ptr [{s} + {a}]",
                "xor {t:l}, byte ptr [{s} + {b}]",
                "xor byte ptr [{out} + {p}], {t:l}",
                s = in(reg) $s,
                sb = in(reg) $sb,
                sk = in(reg) $sk,
                ib = in(reg) $ib,
                out = in(reg) $out,
                j = inout(reg) $j,
                si = in(reg) $si,
                nx = out(reg) next,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                p = const $p,
                inext = const $p + 1,
                p32 = const $p * 32,
                options(nostack),
            );
        }
        $si = next;
    };
}

/// The last step of a group (position 7), whose next `i` is `8(k + 1) mod 256` (`$inext`,
/// below 256, a register: it wraps after the last group of a turn).
macro_rules! last_step_at {
    ($s:ident, $sb:ident, $sk:ident, $inext:ident, $out:ident, $j:ident, $si:ident) => {
        let next: usize;
        // SAFETY: as in `step_at!`; `$inext` is below 256, and `[$sb + 7]` is S[8k + 7].
        unsafe {
            asm!(
                "add {j:l}, {si:l}",
                "movzx {t:e}, byte ptr [{s} + {j}]",
                "movzx {nx:e}, byte ptr [{s} + {inext}]",
                "mov byte ptr [{sb} + 7], {t:l}",
                "mov byte ptr [{s} + {j}], {si:l}",
                "add {t:l}, {si:l}",
                "cmp {j:l}, {inext:l}",
                "cmove {nx:e}, {si:e}",
                "mov {a:e}, {j:e}",
                "shl {a:l}, 5",
                "mov {b:e}, {j:e}",
                "shr {b:e}, 3",
                "movzx {a:e}, byte ptr [{sk} + {a}]",
                "add {a:l}, byte ptr [{s} + {b} + 224]",
                "xor {a:l}, 0xAA",
                "mov {b:e}, {j:e}",
                "add {b:l}, {si:l}",
                "movzx {t:e}, byte ptr [{s} + {t}]",
                "add {t:l}, byte ptr [{s} + {a}]",
                "xor {t:l}, byte ptr [{s} + {b}]",
                "xor byte ptr [{out} + 7], {t:l}",
                s = in(reg) $s,
                sb = in(reg) $sb,
                sk = in(reg) $sk,
                inext = in(reg) $inext,
                out = in(reg) $out,
                j = inout(reg) $j,
                si = in(reg) $si,
                nx = out(reg) next,
                t = out(reg) _,
                a = out(reg) _,
                b = out(reg) _,
                options(nostack),
            );
        }
        $si = next;
    };
}

/// One turn as a loop over its 32 groups, each group's eight steps in assembly: the
/// `asm-groups` kernel, about 1 KiB of code against the whole turn's 27 KiB, for cores whose
/// instruction front end the whole turn overflows. The same contract as [`prga_turn`].
#[inline(always)]
pub(super) fn prga_turn_grouped(
    s: &mut [u8; 256],
    j: usize,
    si: usize,
    turn: &mut [[u8; super::GROUP]; super::GROUPS_PER_TABLE],
) -> (usize, usize) {
    let mut j = j & 0xFF;
    let mut si = si & 0xFF;
    let s = s.as_mut_ptr();
    for (k, group) in turn.iter_mut().enumerate() {
        // k < 32: the group's base 8k and the next group's base stay below 256.
        let ib = k * super::GROUP;
        let inext = (ib + super::GROUP) & 0xFF;
        let sb = s.wrapping_add(ib);
        let sk = s.wrapping_add(k);
        let out = group.as_mut_ptr();
        step_at!(s, sb, sk, ib, out, j, si, 0);
        step_at!(s, sb, sk, ib, out, j, si, 1);
        step_at!(s, sb, sk, ib, out, j, si, 2);
        step_at!(s, sb, sk, ib, out, j, si, 3);
        step_at!(s, sb, sk, ib, out, j, si, 4);
        step_at!(s, sb, sk, ib, out, j, si, 5);
        step_at!(s, sb, sk, ib, out, j, si, 6);
        last_step_at!(s, sb, sk, inext, out, j, si);
    }
    (j, si)
}
