//! RC4+ (Maitra and Paul, INDOCRYPT 2008), the stream cipher the IVCSD paper names.
//!
//! Exactly the reading of docs/protocol.md section 6.1 (CIPHER.md 6.1), pinned by
//! `tests/data/vectors/rc4plus.json`: a three-layer key schedule (KSA+) that mixes in an optional
//! IV, and an output function (PRGA+) that combines three table lookups per byte. Nothing of the
//! keystream is dropped.
//!
//! This module is only the bare cipher. How content is cut into blocks and how each block is
//! keyed lives in [`super::content`]. The keystream functions never allocate: the state is one
//! 256-byte table and two indices. [`Rc4Plus4`] runs four independent streams in lock-step;
//! on the project's machine that is slower than one stream at a time, so [`super::content`]
//! does not use it (see its doc and `benches/cipher.rs`).
//!
//! All indexing is with `u8` values into `[u8; 256]`, so the bounds checks compile away and
//! this file needs no `unsafe`. Nearly every byte of a content block is made in whole turns of
//! PRGA+ (256 steps from `i = 0`); those run in one of several kernels ([`kernel`]): unrolled
//! whole or in groups, in Rust or in x86-64 assembly. Which is fastest depends on the CPU
//! model, so the process measures them once and uses the fastest; `steps` holds the Rust
//! shapes and `x86_64` the assembly ones.

use std::fmt;

use zeroize::Zeroize;

pub mod kernel;
mod steps;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use kernel::Kernel;
use steps::{GROUP, GROUPS_PER_TABLE, prga_group};

/// The largest key RC4+ accepts, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// The largest IV RC4+ accepts, in bytes.
pub const MAX_IV_LEN: usize = 128;

/// A key or IV of a length RC4+ is not defined for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rc4PlusError {
    #[error("rc4+ key of {len} bytes: it must be 1 to 256 bytes")]
    KeyLength { len: usize },
    #[error("rc4+ iv of {len} bytes: it must be at most 128 bytes")]
    IvLength { len: usize },
}

/// One RC4+ keystream: the permutation `S` and the PRGA+ indices `i`, `j`.
///
/// The state is secret (it determines the rest of the keystream), so it is zeroized on drop and
/// its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Rc4Plus {
    /// A permutation of 0..=255 at all times.
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl fmt::Debug for Rc4Plus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rc4Plus(<redacted>)")
    }
}

impl Drop for Rc4Plus {
    fn drop(&mut self) {
        self.s.zeroize();
        self.i.zeroize();
        self.j.zeroize();
    }
}

/// `j` and `S` after each layer of KSA+, for the intermediate-state test vectors.
type KsaTrace = [(u8, [u8; 256]); 3];

impl Rc4Plus {
    /// Runs KSA+ on `key` (1..=256 bytes) and `iv` (0..=128 bytes; empty and all-zero are the
    /// same IV).
    ///
    /// # Errors
    /// [`Rc4PlusError`] when a length is out of range.
    pub fn new(key: &[u8], iv: &[u8]) -> Result<Self, Rc4PlusError> {
        Self::new_traced(key, iv, None)
    }

    /// The keystream of a 32-byte key and an empty IV: the block cipher of
    /// [`super::content`], which cannot fail.
    pub fn with_key32(key: &[u8; 32]) -> Self {
        match Self::new(key, &[]) {
            Ok(cipher) => cipher,
            // 32 is within 1..=256 and the empty IV within 0..=128.
            Err(_) => unreachable!("a 32-byte key and an empty iv are always valid"),
        }
    }

    /// KSA+ of four 32-byte keys with empty IVs in lock-step: exactly
    /// `keys.map(|key| Rc4Plus::with_key32(&key))`, for the blocks of [`super::content`].
    ///
    /// One key schedule is a chain of 768 dependent swaps that leaves most of the core idle
    /// (about 1.7 µs, 5 % of a 16 KiB block); four independent chains interleaved cost little
    /// more than one.
    pub fn with_keys32_x4(keys: &[[u8; 32]; 4]) -> [Rc4Plus; 4] {
        const LANES: usize = 4;
        let mut s = [[0u8; 256]; LANES];
        for table in &mut s {
            for (y, slot) in table.iter_mut().enumerate() {
                // y < 256: the cast is exact.
                *slot = y as u8;
            }
        }
        let mut j = [0u8; LANES];
        // K[y] = key[y mod 32]; the IV is empty, so V = 0 and layer 2 mixes in K[i] alone.
        // Layer 1: the RC4 KSA.
        for i in 0..256usize {
            for lane in 0..LANES {
                j[lane] = j[lane]
                    .wrapping_add(s[lane][i])
                    .wrapping_add(keys[lane][i % 32]);
                s[lane].swap(i, usize::from(j[lane]));
            }
        }
        // Layer 2: 127 down to 0, then 128 up to 255.
        for i in (0..128usize).rev().chain(128..256) {
            for lane in 0..LANES {
                j[lane] = j[lane].wrapping_add(s[lane][i]) ^ keys[lane][i % 32];
                s[lane].swap(i, usize::from(j[lane]));
            }
        }
        // Layer 3: zig-zag order 0, 255, 1, 254, ..., 128.
        for y in 0..256usize {
            let i = if y % 2 == 0 {
                y / 2
            } else {
                256 - y.div_ceil(2)
            };
            for lane in 0..LANES {
                j[lane] = j[lane]
                    .wrapping_add(s[lane][i])
                    .wrapping_add(keys[lane][i % 32]);
                s[lane].swap(i, usize::from(j[lane]));
            }
        }
        let ciphers = std::array::from_fn(|lane| Rc4Plus {
            s: s[lane],
            i: 0,
            j: 0,
        });
        s.zeroize();
        j.zeroize();
        ciphers
    }

    fn new_traced(
        key: &[u8],
        iv: &[u8],
        mut trace: Option<&mut KsaTrace>,
    ) -> Result<Self, Rc4PlusError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Rc4PlusError::KeyLength { len: key.len() });
        }
        if iv.len() > MAX_IV_LEN {
            return Err(Rc4PlusError::IvLength { len: iv.len() });
        }
        // K[y] = key[y mod len(key)]; V as docs/protocol.md 6.1 lays the IV out around the middle.
        // Copied a key length at a time: `key[y % len]` per byte costs a division each.
        let mut k = [0u8; 256];
        for chunk in k.chunks_mut(key.len()) {
            chunk.copy_from_slice(&key[..chunk.len()]);
        }
        let mut v = [0u8; 256];
        for (n, &byte) in iv.iter().enumerate() {
            v[127 - n] = byte;
            v[128 + n] = byte;
        }

        let mut s = [0u8; 256];
        for (y, slot) in s.iter_mut().enumerate() {
            // y < 256: the cast is exact.
            *slot = y as u8;
        }
        let mut j: u8 = 0;

        // Layer 1: the RC4 KSA.
        for i in 0..=255u8 {
            let iu = usize::from(i);
            j = j.wrapping_add(s[iu]).wrapping_add(k[iu]);
            s.swap(iu, usize::from(j));
        }
        if let Some(trace) = trace.as_deref_mut() {
            trace[0] = (j, s);
        }

        // Layer 2: IV mixing, from the middle outwards (127 down to 0, then 128 up to 255).
        for i in (0..=127u8).rev().chain(128..=255u8) {
            let iu = usize::from(i);
            j = j.wrapping_add(s[iu]) ^ k[iu].wrapping_add(v[iu]);
            s.swap(iu, usize::from(j));
        }
        if let Some(trace) = trace.as_deref_mut() {
            trace[1] = (j, s);
        }

        // Layer 3: zig-zag order 0, 255, 1, 254, ..., 128.
        for y in 0..256usize {
            let i = if y % 2 == 0 {
                y / 2
            } else {
                256 - y.div_ceil(2)
            };
            j = j.wrapping_add(s[i]).wrapping_add(k[i]);
            s.swap(i, usize::from(j));
        }
        if let Some(trace) = trace {
            trace[2] = (j, s);
        }

        k.zeroize();
        v.zeroize();
        let cipher = Rc4Plus { s, i: 0, j: 0 };
        s.zeroize();
        Ok(cipher)
    }

    /// XORs the next `buf.len()` keystream bytes into `buf` (encryption and decryption alike),
    /// with the kernel chosen for this CPU ([`Kernel::active`]).
    pub fn apply_keystream(&mut self, buf: &mut [u8]) {
        self.apply_keystream_with(Kernel::active().0, buf);
    }

    /// [`Self::apply_keystream`] with the whole turns run by `kernel`: the same output with
    /// every kernel, for the tests that compare them and the benchmarks that time them.
    ///
    /// Runs of eight bytes whose PRGA+ index `i` covers `8k..=8k+7` take the specialised
    /// `prga_group`: there `i` is the group's base plus a constant, so the `i` halves of `t'`
    /// cost nothing and `i` needs no arithmetic at all. Whole turns of `i` (256 bytes from
    /// `i = 0`) go through the kernel. The few bytes before the first group and after the last go
    /// through the plain step. The output is the same keystream byte for byte (see the
    /// `grouped_equals_plain` property test).
    pub fn apply_keystream_with(&mut self, kernel: Kernel, buf: &mut [u8]) {
        // Steps until the next `i` is a multiple of GROUP: -(i + 1) mod 8.
        let head_len = usize::from(self.i.wrapping_add(1).wrapping_neg()) % GROUP;
        let (head, rest) = buf.split_at_mut(head_len.min(buf.len()));
        self.apply_plain(head);
        let (groups, tail) = rest.as_chunks_mut::<GROUP>();
        if !groups.is_empty() {
            let s = &mut self.s;
            let mut j = usize::from(self.j);
            // The next `i` is 8k: the first step of group k. k < 32.
            let mut k = usize::from(self.i.wrapping_add(1) >> 3);
            // Groups up to the end of the current turn of `i`, whole turns, then the rest.
            let to_turn = (GROUPS_PER_TABLE - k) % GROUPS_PER_TABLE;
            let (first, rest) = groups.split_at_mut(to_turn.min(groups.len()));
            let (turns, last) = rest.as_chunks_mut::<GROUPS_PER_TABLE>();
            // S[i] of the first step; each step hands the next one its S[i].
            let mut si = usize::from(s[k * GROUP]);
            for group in first {
                (j, si) = prga_group(s, k, j, si, group);
                k = (k + 1) % GROUPS_PER_TABLE;
            }
            (j, si) = kernel.run_turns(s, j, si, turns);
            for group in last {
                (j, si) = prga_group(s, k, j, si, group);
                k = (k + 1) % GROUPS_PER_TABLE;
            }
            // The last `i` used was 8k - 1 (mod 256); k < 32, so 8k fits in a u8.
            self.i = ((k * GROUP) as u8).wrapping_sub(1);
            // `j` is always masked to 0..=255 by the step.
            self.j = j as u8;
        }
        self.apply_plain(tail);
    }

    /// The plain PRGA+ loop, one byte at a time: the reference for [`Self::apply_keystream`],
    /// and its path for the bytes outside whole groups.
    #[inline]
    fn apply_plain(&mut self, buf: &mut [u8]) {
        let s = &mut self.s;
        let (mut i, mut j) = (self.i, self.j);
        for byte in buf.iter_mut() {
            let z;
            (i, j, z) = prga_step(s, i, j);
            *byte ^= z;
        }
        (self.i, self.j) = (i, j);
    }

    /// Writes the next `buf.len()` keystream bytes into `buf`.
    pub fn fill_keystream(&mut self, buf: &mut [u8]) {
        buf.fill(0);
        self.apply_keystream(buf);
    }

    /// Advances the keystream by `n` bytes without producing them: only the permutation walk
    /// of PRGA+ runs, which is what a range starting inside a block needs.
    pub fn skip(&mut self, n: usize) {
        let s = &mut self.s;
        let (mut i, mut j) = (self.i, self.j);
        for _ in 0..n {
            i = i.wrapping_add(1);
            let si = s[usize::from(i)];
            j = j.wrapping_add(si);
            s[usize::from(i)] = s[usize::from(j)];
            s[usize::from(j)] = si;
        }
        (self.i, self.j) = (i, j);
    }
}

/// One PRGA+ step: returns the new `i`, `j` and the output byte.
#[inline(always)]
fn prga_step(s: &mut [u8; 256], i: u8, j: u8) -> (u8, u8, u8) {
    let i = i.wrapping_add(1);
    let si = s[usize::from(i)];
    let j = j.wrapping_add(si);
    let sj = s[usize::from(j)];
    // The swap; written as two stores so that i == j is harmless.
    s[usize::from(i)] = sj;
    s[usize::from(j)] = si;
    let t = si.wrapping_add(sj);
    let t1 = s[usize::from((i >> 3) ^ (j << 5))].wrapping_add(s[usize::from((i << 5) ^ (j >> 3))])
        ^ 0xAA;
    // t'' = j + S[j] with S after the swap, where S[j] = the old S[i].
    let t2 = j.wrapping_add(si);
    let z = s[usize::from(t)].wrapping_add(s[usize::from(t1)]) ^ s[usize::from(t2)];
    (i, j, z)
}

/// Four independent RC4+ keystreams advanced in lock-step.
///
/// PRGA+ is a chain of dependent loads and stores through one table; interleaving four
/// streams gives an out-of-order core four independent chains. CIPHER.md reports a gain in C
/// (about 450 to 605 MB/s) on another machine; on the project's AMD EPYC it is a loss (about
/// 340 against 420 MB/s in Rust, 330 against 370 in C, CPU time), so the content paths use
/// single streams. Kept, tested and benchmarked so the choice can be re-measured on other
/// hardware. The output of each lane is exactly its own [`Rc4Plus`] keystream.
#[derive(Debug, Clone)]
pub struct Rc4Plus4 {
    lanes: [Rc4Plus; 4],
}

impl Rc4Plus4 {
    /// Bundles four streams; lane `n` produces the keystream of `lanes[n]`.
    pub fn new(lanes: [Rc4Plus; 4]) -> Self {
        Rc4Plus4 { lanes }
    }

    /// Splits the bundle back into its four streams, each positioned after what it produced.
    pub fn into_lanes(self) -> [Rc4Plus; 4] {
        self.lanes
    }

    /// XORs lane `n`'s next `len` keystream bytes into `bufs[n]`, where `len` is the length
    /// of the shortest buffer. Longer buffers keep their tail untouched; the caller finishes
    /// them with [`Rc4Plus::apply_keystream`] on [`Self::into_lanes`].
    pub fn apply_keystream(&mut self, bufs: [&mut [u8]; 4]) {
        let [b0, b1, b2, b3] = bufs;
        let len = b0.len().min(b1.len()).min(b2.len()).min(b3.len());
        let [l0, l1, l2, l3] = &mut self.lanes;
        let (mut i0, mut j0) = (l0.i, l0.j);
        let (mut i1, mut j1) = (l1.i, l1.j);
        let (mut i2, mut j2) = (l2.i, l2.j);
        let (mut i3, mut j3) = (l3.i, l3.j);
        let (s0, s1, s2, s3) = (&mut l0.s, &mut l1.s, &mut l2.s, &mut l3.s);
        for (((x0, x1), x2), x3) in b0[..len]
            .iter_mut()
            .zip(b1[..len].iter_mut())
            .zip(b2[..len].iter_mut())
            .zip(b3[..len].iter_mut())
        {
            let (z0, z1, z2, z3);
            (i0, j0, z0) = prga_step(s0, i0, j0);
            (i1, j1, z1) = prga_step(s1, i1, j1);
            (i2, j2, z2) = prga_step(s2, i2, j2);
            (i3, j3, z3) = prga_step(s3, i3, j3);
            *x0 ^= z0;
            *x1 ^= z1;
            *x2 ^= z2;
            *x3 ^= z3;
        }
        (l0.i, l0.j) = (i0, j0);
        (l1.i, l1.j) = (i1, j1);
        (l2.i, l2.j) = (i2, j2);
        (l3.i, l3.j) = (i3, j3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use sha2::{Digest, Sha256};

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/vectors/rc4plus.json"
        );
        let text = std::fs::read_to_string(path).expect("the vector file is in the repository");
        serde_json::from_str(&text).expect("the vector file is valid json")
    }

    fn hex_field(v: &Value, name: &str) -> Vec<u8> {
        hex::decode(v[name].as_str().unwrap_or_else(|| panic!("field {name}")))
            .unwrap_or_else(|e| panic!("field {name}: {e}"))
    }

    #[test]
    fn every_rc4plus_vector() {
        let all = vectors();
        let list = all["rc4plus"].as_array().expect("rc4plus is a list");
        assert_eq!(list.len(), 12, "the vector file changed; review this test");
        let mut ksa_checked = 0;
        for v in list {
            let name = v["name"].as_str().expect("name");
            let key = hex_field(v, "key");
            let iv = hex_field(v, "iv");
            let n = usize::try_from(v["n"].as_u64().expect("n")).expect("n fits");
            let mut trace = [(0u8, [0u8; 256]); 3];
            let mut cipher = Rc4Plus::new_traced(&key, &iv, Some(&mut trace)).expect(name);
            let mut stream = vec![0u8; n];
            cipher.fill_keystream(&mut stream);

            let digest: [u8; 32] = Sha256::digest(&stream).into();
            assert_eq!(
                hex::encode(digest),
                v["sha256"].as_str().unwrap(),
                "{name} sha256"
            );
            for kernel in Kernel::ALL {
                let mut by_kernel = vec![0u8; n];
                Rc4Plus::new(&key, &iv)
                    .expect(name)
                    .apply_keystream_with(*kernel, &mut by_kernel);
                assert!(by_kernel == stream, "{name} with kernel {kernel}");
            }
            if v.get("keystream").is_some() {
                assert_eq!(stream, hex_field(v, "keystream"), "{name} keystream");
            }
            if v.get("first64").is_some() {
                assert_eq!(stream[..64], hex_field(v, "first64")[..], "{name} first64");
                assert_eq!(
                    stream[n - 64..],
                    hex_field(v, "last64")[..],
                    "{name} last64"
                );
            }
            if let Some(layers) = v.get("ksa_layers").and_then(Value::as_array) {
                assert_eq!(layers.len(), 3, "{name}");
                for layer in layers {
                    let number = layer["layer"].as_u64().expect("layer");
                    let (j, s) = trace[usize::try_from(number - 1).unwrap()];
                    assert_eq!(
                        u64::from(j),
                        layer["j"].as_u64().unwrap(),
                        "{name} layer {number} j"
                    );
                    assert_eq!(s[..], hex_field(layer, "S")[..], "{name} layer {number} S");
                }
                ksa_checked += 1;
            }
        }
        assert_eq!(
            ksa_checked, 2,
            "both vectors with intermediate states were checked"
        );
    }

    /// Plain RC4 from the same building blocks, to check the RFC 6229 rows: layer 1 of KSA+
    /// is the RC4 KSA, so this pins the byte arithmetic shared with RC4.
    fn rc4_keystream(key: &[u8], len: usize) -> Vec<u8> {
        let mut s: [u8; 256] = std::array::from_fn(|y| y as u8);
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        let (mut i, mut j) = (0u8, 0u8);
        (0..len)
            .map(|_| {
                i = i.wrapping_add(1);
                j = j.wrapping_add(s[usize::from(i)]);
                s.swap(usize::from(i), usize::from(j));
                s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
            })
            .collect()
    }

    #[test]
    fn rfc6229_rc4_rows() {
        let all = vectors();
        let rows = all["rc4_rfc6229"]
            .as_array()
            .expect("rc4_rfc6229 is a list");
        assert_eq!(rows.len(), 9);
        for row in rows {
            let key = hex_field(row, "key");
            let offset = usize::try_from(row["offset"].as_u64().unwrap()).unwrap();
            let stream = rc4_keystream(&key, offset + 32);
            assert_eq!(stream[offset..], hex_field(row, "keystream32")[..], "{row}");
        }
    }

    #[test]
    fn bad_lengths_are_typed_errors() {
        macro_rules! bad {
            ($($key_len:expr, $iv_len:expr => $err:expr;)*) => {$(
                assert_eq!(
                    Rc4Plus::new(&[1u8; $key_len], &[2u8; $iv_len]).unwrap_err(),
                    $err,
                    "key {} bytes, iv {} bytes", $key_len, $iv_len
                );
            )*};
        }
        bad!(
            0, 0 => Rc4PlusError::KeyLength { len: 0 };
            0, 16 => Rc4PlusError::KeyLength { len: 0 };
            257, 0 => Rc4PlusError::KeyLength { len: 257 };
            4096, 0 => Rc4PlusError::KeyLength { len: 4096 };
            16, 129 => Rc4PlusError::IvLength { len: 129 };
            256, 1000 => Rc4PlusError::IvLength { len: 1000 };
        );
        assert!(Rc4Plus::new(&[1u8; 256], &[2u8; 128]).is_ok());
        assert!(Rc4Plus::new(&[1u8], &[]).is_ok());
    }

    #[test]
    fn empty_and_zero_iv_agree() {
        let (mut a, mut b) = (
            Rc4Plus::new(b"key", &[]).unwrap(),
            Rc4Plus::new(b"key", &[0; 128]).unwrap(),
        );
        let (mut x, mut y) = ([0u8; 300], [0u8; 300]);
        a.fill_keystream(&mut x);
        b.fill_keystream(&mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn skip_equals_discarding_output() {
        for skip in [0usize, 1, 255, 256, 257, 5000] {
            let mut whole = vec![0u8; skip + 100];
            Rc4Plus::with_key32(&[7; 32]).fill_keystream(&mut whole);
            let mut skipped = Rc4Plus::with_key32(&[7; 32]);
            skipped.skip(skip);
            let mut tail = [0u8; 100];
            skipped.fill_keystream(&mut tail);
            assert_eq!(tail[..], whole[skip..], "skip {skip}");
        }
    }

    #[test]
    fn split_calls_equal_one_call() {
        let mut whole = [0u8; 1000];
        Rc4Plus::with_key32(&[9; 32]).fill_keystream(&mut whole);
        let mut parts = [0u8; 1000];
        let mut cipher = Rc4Plus::with_key32(&[9; 32]);
        for chunk in parts.chunks_mut(77) {
            cipher.fill_keystream(chunk);
        }
        assert_eq!(parts, whole);
    }

    #[test]
    fn four_lanes_equal_four_single_streams() {
        let keys: [[u8; 32]; 4] = std::array::from_fn(|n| [n as u8 + 1; 32]);
        let lens = [1000usize, 1000, 999, 1200];
        let mut bufs: [Vec<u8>; 4] = std::array::from_fn(|n| vec![0x5a; lens[n]]);
        let mut four = Rc4Plus4::new(keys.map(|k| Rc4Plus::with_key32(&k)));
        {
            let [a, b, c, d] = &mut bufs;
            four.apply_keystream([a, b, c, d]);
        }
        // The shortest length (999) was done by the bundle; finish each lane alone.
        for (lane, buf) in four.into_lanes().iter_mut().zip(bufs.iter_mut()) {
            lane.apply_keystream(&mut buf[999..]);
        }
        for n in 0..4 {
            let mut expected = vec![0x5a; lens[n]];
            Rc4Plus::with_key32(&keys[n]).apply_keystream(&mut expected);
            assert_eq!(bufs[n], expected, "lane {n}");
        }
    }

    proptest::proptest! {
        /// The grouped fast path of `apply_keystream` against the plain byte-at-a-time PRGA+,
        /// from any stream position (a skip, then calls of random lengths, so groups start and
        /// end anywhere relative to the call boundaries and `i` wraps).
        #[test]
        fn grouped_equals_plain(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..=256),
            iv in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=128),
            skip in 0usize..600,
            lens in proptest::collection::vec(0usize..1400, 1..8),
            fill in proptest::prelude::any::<u8>(),
        ) {
            let total: usize = lens.iter().sum();
            let mut plain = Rc4Plus::new(&key, &iv).unwrap();
            plain.skip(skip);
            let mut expected = vec![fill; total];
            plain.apply_plain(&mut expected);

            for kernel in Kernel::ALL {
                let mut fast = Rc4Plus::new(&key, &iv).unwrap();
                fast.skip(skip);
                let mut got = vec![fill; total];
                let mut rest = &mut got[..];
                for &len in &lens {
                    let (part, after) = rest.split_at_mut(len);
                    fast.apply_keystream_with(*kernel, part);
                    rest = after;
                }
                proptest::prop_assert_eq!(&got, &expected, "{}", kernel);
                proptest::prop_assert_eq!(
                    (fast.i, fast.j, fast.s),
                    (plain.i, plain.j, plain.s),
                    "{}",
                    kernel
                );
            }
        }
    }

    #[test]
    fn grouped_path_over_several_turns_of_i() {
        // 16 KiB from the start of a block: one head of 7 bytes, 2047 groups, one tail byte.
        for len in [7usize, 8, 15, 16, 255, 256, 257, 2048, BLOCK_16K] {
            let mut fast = Rc4Plus::with_key32(&[0x61; 32]);
            let mut plain = fast.clone();
            let (mut a, mut b) = (vec![0xC3u8; len], vec![0xC3u8; len]);
            fast.apply_keystream(&mut a);
            plain.apply_plain(&mut b);
            assert_eq!(a, b, "length {len}");
            assert_eq!((fast.i, fast.j), (plain.i, plain.j), "length {len}");
        }
    }
    const BLOCK_16K: usize = 16384;

    proptest::proptest! {
        /// Every kernel's turn against the Rust whole turn, from any permutation and any `j`:
        /// the same output, table, `j` and next `S[i]`. A turn has 256 steps, so most cases
        /// also meet the step whose swap writes the next `S[i]` (`j` = `i + 1`).
        #[test]
        fn every_kernel_turn_equals_rust_turn(
            key in proptest::prelude::any::<[u8; 32]>(),
            j in 0usize..256,
            fill in proptest::prelude::any::<[u8; 256]>(),
        ) {
            let table = Rc4Plus::with_key32(&key).s;
            let mut expected_out = [[0u8; GROUP]; GROUPS_PER_TABLE];
            for (n, group) in expected_out.iter_mut().enumerate() {
                group.copy_from_slice(&fill[n * GROUP..][..GROUP]);
            }
            let si = usize::from(table[0]);
            let mut expected_s = table;
            let mut out = [expected_out];
            let expected = steps::prga_turn(&mut expected_s, j, si, &mut out[0]);
            let [expected_out] = out;
            for kernel in Kernel::ALL {
                let mut s = table;
                let mut out = [[[0u8; GROUP]; GROUPS_PER_TABLE]];
                for (n, group) in out[0].iter_mut().enumerate() {
                    group.copy_from_slice(&fill[n * GROUP..][..GROUP]);
                }
                let got = kernel.run_turns(&mut s, j, si, &mut out);
                proptest::prop_assert_eq!(got, expected, "{}", kernel);
                proptest::prop_assert_eq!(out[0], expected_out, "{}", kernel);
                proptest::prop_assert_eq!(s, expected_s, "{}", kernel);
            }
        }
    }

    #[test]
    fn four_key_schedules_equal_four_single_ones() {
        for seed in 0u8..8 {
            let keys: [[u8; 32]; 4] = std::array::from_fn(|n| {
                std::array::from_fn(|y| seed ^ (y as u8).wrapping_mul(37).wrapping_add(n as u8))
            });
            let four = Rc4Plus::with_keys32_x4(&keys);
            for (n, cipher) in four.iter().enumerate() {
                let single = Rc4Plus::with_key32(&keys[n]);
                assert_eq!(cipher.s, single.s, "seed {seed} lane {n}");
                assert_eq!((cipher.i, cipher.j), (single.i, single.j));
            }
        }
    }

    #[test]
    fn debug_shows_no_state() {
        let cipher = Rc4Plus::with_key32(&[1; 32]);
        assert_eq!(format!("{cipher:?}"), "Rc4Plus(<redacted>)");
    }
}
