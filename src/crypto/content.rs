//! Content keys and block-wise encryption of content (docs/protocol.md section 6.2, CIPHER.md).
//!
//! The content of a torrent is cut into [`BLOCK_LEN`]-byte blocks by absolute offset. Block `b`
//! is XORed with the RC4+ keystream of `SHA-256("ivcsd/rc4+/block/v1" || K || u64_be(b))` and
//! an empty IV. Every block is keyed on its own, so any byte range can be encrypted or
//! decrypted alone, on any core, always to the same bytes; encryption and decryption are the
//! same operation.
//!
//! This module does no I/O and never allocates on the keystream paths: a block's cipher state
//! lives on the stack, and a range that starts inside a block advances that block's keystream
//! without producing it. [`apply_keystream_parallel`] spreads whole blocks over rayon's pool;
//! callers on the async reactor still belong in `spawn_blocking` or on rayon.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::rc4plus::Rc4Plus;

/// The length of a cipher block: the unit of keying, and the usual BitTorrent request size.
pub const BLOCK_LEN: usize = 16384;
/// [`BLOCK_LEN`] as a content offset.
const BLOCK_LEN_U64: u64 = BLOCK_LEN as u64;
/// The length of a content key in bytes.
pub const CONTENT_KEY_LEN: usize = 32;
/// The length of `info.ivcsd.check`.
pub const KEY_CHECK_LEN: usize = 8;

/// Domain separation of block keys; the `v1` names this keying, not the torrent format.
const BLOCK_KEY_DOMAIN: &[u8] = b"ivcsd/rc4+/block/v1";
/// The HMAC message of the key check.
const KEY_CHECK_MESSAGE: &[u8] = b"ivcsd-key-check";

/// The per-torrent content key `K`: 32 bytes from the operating system's CSPRNG.
///
/// Only the tracker stores it; everyone else holds it in memory after unwrapping it. It is
/// zeroized on drop, its `Debug` is redacted, and it has no `Display`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; CONTENT_KEY_LEN]);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(<redacted>)")
    }
}

impl ContentKey {
    /// A fresh key straight from the operating system's CSPRNG (getrandom), not from a
    /// user-space generator.
    ///
    /// # Panics
    /// If the operating system cannot provide randomness at all; there is no safe way to go
    /// on without a key, and rand's own generators make the same choice.
    pub fn generate() -> ContentKey {
        let mut key = [0u8; CONTENT_KEY_LEN];
        if let Err(err) = rand::rngs::SysRng.try_fill_bytes(&mut key) {
            panic!("the operating system's random number generator failed: {err}");
        }
        ContentKey(key)
    }

    /// The key of these bytes (for example an unwrapped key).
    pub fn from_bytes(bytes: [u8; CONTENT_KEY_LEN]) -> ContentKey {
        ContentKey(bytes)
    }

    /// The raw key, for wrapping and storage only.
    pub fn as_bytes(&self) -> &[u8; CONTENT_KEY_LEN] {
        &self.0
    }

    /// `info.ivcsd.check`: the first 8 bytes of `HMAC-SHA-256(K, "ivcsd-key-check")`.
    pub fn key_check(&self) -> [u8; KEY_CHECK_LEN] {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; `new_from_slice` fails only for fixed-size MACs.
            Err(_) => unreachable!("hmac accepts a key of any length"),
        };
        mac.update(KEY_CHECK_MESSAGE);
        let tag = mac.finalize().into_bytes();
        let mut check = [0u8; KEY_CHECK_LEN];
        check.copy_from_slice(&tag[..KEY_CHECK_LEN]);
        check
    }

    /// Whether `check` (from a torrent's `info.ivcsd.check`) belongs to this key, compared in
    /// constant time. A peer calls this before it decrypts anything.
    pub fn matches_check(&self, check: &[u8; KEY_CHECK_LEN]) -> bool {
        self.key_check().ct_eq(check).into()
    }

    /// The RC4+ key of block `block`: `SHA-256("ivcsd/rc4+/block/v1" || K || u64_be(block))`.
    pub fn block_key(&self, block: u64) -> [u8; 32] {
        Sha256::new()
            .chain_update(BLOCK_KEY_DOMAIN)
            .chain_update(self.0)
            .chain_update(block.to_be_bytes())
            .finalize()
            .into()
    }

    /// The keystreams of blocks `first..first + 4`, positioned at their starts, with the four
    /// key schedules interleaved ([`Rc4Plus::with_keys32_x4`]).
    fn block_ciphers_x4(&self, first: u64) -> [Rc4Plus; 4] {
        // Block numbers stay below 2^51 for any offset, so first + 3 cannot overflow.
        let mut block_keys: [[u8; 32]; 4] =
            std::array::from_fn(|n| self.block_key(first + n as u64));
        let ciphers = Rc4Plus::with_keys32_x4(&block_keys);
        block_keys.zeroize();
        ciphers
    }

    /// Block `block`'s keystream, positioned at its start.
    fn block_cipher(&self, block: u64) -> Rc4Plus {
        let mut block_key = self.block_key(block);
        let cipher = Rc4Plus::with_key32(&block_key);
        block_key.zeroize();
        cipher
    }
}

/// XORs the content keystream into `buf`, which holds the content bytes at absolute offsets
/// `offset..offset + buf.len()`. Encrypts plaintext and decrypts ciphertext alike.
///
/// A range may start and end anywhere: a partial first block has its keystream advanced to
/// the right position without allocating.
pub fn apply_keystream(key: &ContentKey, offset: u64, buf: &mut [u8]) {
    let (first_block, rest) = apply_head(key, offset, buf);
    apply_aligned(key, first_block, rest);
}

/// [`apply_keystream`] on all cores (rayon's global pool), split at block boundaries.
/// Identical output; worth it from a few blocks on.
pub fn apply_keystream_parallel(key: &ContentKey, offset: u64, buf: &mut [u8]) {
    /// Work per rayon task: four blocks (about 170 µs), enough to dwarf rayon's overhead.
    const TASK_LEN: usize = 4 * BLOCK_LEN;
    if buf.len() <= TASK_LEN {
        return apply_keystream(key, offset, buf);
    }
    let (first_block, rest) = apply_head(key, offset, buf);
    rest.par_chunks_mut(TASK_LEN)
        .enumerate()
        .for_each(|(task, chunk)| {
            // task < buf.len() / TASK_LEN, so the widening cast and product cannot overflow
            // (block numbers stay far below 2^64 for any buffer that fits in memory).
            let block = first_block + (task as u64) * (TASK_LEN / BLOCK_LEN) as u64;
            apply_aligned(key, block, chunk);
        });
}

/// Handles the part of `buf` before the first block boundary at or after `offset`. Returns
/// the number of that boundary's block and the rest of `buf`, which starts on it.
fn apply_head<'a>(key: &ContentKey, offset: u64, buf: &'a mut [u8]) -> (u64, &'a mut [u8]) {
    let block = offset / BLOCK_LEN_U64;
    // The remainder is below BLOCK_LEN, so it fits in usize.
    let within = (offset % BLOCK_LEN_U64) as usize;
    if within == 0 || buf.is_empty() {
        return (block, buf);
    }
    let head_len = (BLOCK_LEN - within).min(buf.len());
    let (head, rest) = buf.split_at_mut(head_len);
    let mut cipher = key.block_cipher(block);
    cipher.skip(within);
    cipher.apply_keystream(head);
    (block + 1, rest)
}

/// Encrypts `buf`, which starts at the beginning of block `first_block`.
///
/// The keystreams run one block at a time: interleaving four blocks' PRGA+
/// ([`Rc4Plus4`](super::rc4plus::Rc4Plus4)) was measured slower on the project's machine
/// (AMD EPYC: about 340 against 420 MB/s of CPU time, and the same in C), the core being
/// busy rather than waiting in PRGA+; see `benches/cipher.rs` and docs/benchmarks.md "Cipher".
/// The key schedules of runs of four blocks do run together
/// ([`ContentKey::block_ciphers_x4`]): one KSA+ is a latency-bound chain of swaps.
fn apply_aligned(key: &ContentKey, first_block: u64, buf: &mut [u8]) {
    const RUN: usize = 4;
    // Block numbers stay below 2^51 for any offset and any buffer that fits in memory.
    let mut block = first_block;
    for run in buf.chunks_mut(RUN * BLOCK_LEN) {
        if run.len() > (RUN - 1) * BLOCK_LEN {
            // Four blocks, the last possibly short.
            let ciphers = key.block_ciphers_x4(block);
            for (mut cipher, chunk) in ciphers.into_iter().zip(run.chunks_mut(BLOCK_LEN)) {
                cipher.apply_keystream(chunk);
            }
            block += RUN as u64;
        } else {
            for chunk in run.chunks_mut(BLOCK_LEN) {
                key.block_cipher(block).apply_keystream(chunk);
                block += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = ContentKey::from_bytes([0x42; 32]);
        assert_eq!(format!("{key:?}"), "ContentKey(<redacted>)");
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            ContentKey::generate().as_bytes(),
            ContentKey::generate().as_bytes()
        );
    }

    #[test]
    fn check_matches_only_its_key() {
        let key = ContentKey::from_bytes([1; 32]);
        assert!(key.matches_check(&key.key_check()));
        let other = ContentKey::from_bytes([2; 32]);
        assert!(!other.matches_check(&key.key_check()));
    }

    #[test]
    fn head_inside_one_block() {
        // A range entirely inside one block, not touching either boundary.
        let key = ContentKey::from_bytes([3; 32]);
        let mut whole = vec![0u8; BLOCK_LEN];
        apply_keystream(&key, 5 * BLOCK_LEN_U64, &mut whole);
        let mut part = vec![0u8; 100];
        apply_keystream(&key, 5 * BLOCK_LEN_U64 + 1000, &mut part);
        assert_eq!(part[..], whole[1000..1100]);
    }

    #[test]
    fn empty_ranges_anywhere() {
        let key = ContentKey::from_bytes([5; 32]);
        for offset in [0, 1, BLOCK_LEN_U64 - 1, BLOCK_LEN_U64, u64::MAX] {
            apply_keystream(&key, offset, &mut []);
            apply_keystream_parallel(&key, offset, &mut []);
        }
    }

    #[test]
    fn offsets_near_the_top_of_u64_do_not_panic() {
        let key = ContentKey::from_bytes([4; 32]);
        let mut buf = vec![0u8; 3 * BLOCK_LEN];
        apply_keystream(&key, u64::MAX - 10, &mut buf);
        apply_keystream_parallel(&key, u64::MAX - 10, &mut buf);
        assert!(
            buf.iter().all(|&b| b == 0),
            "the same keystream applied twice"
        );
    }
}
