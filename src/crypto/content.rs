//! Content keys and block-wise encryption of content (docs/protocol.md section 6, CIPHER.md).
//!
//! The content of a torrent is encrypted with one of two suites ([`Cipher`]), named by the
//! torrent's `info.ivcsd.cipher`:
//! - `rc4+` (the protocol's first suite, the default): content cut into [`BLOCK_LEN`]-byte
//!   blocks by absolute offset; block `b` is XORed with the RC4+ keystream of
//!   `SHA-256("ivcsd/rc4+/block/v1" || K || u64_be(b))` and an empty IV.
//! - `aes-256-ctr` (ivcsd's addition, docs/protocol.md 6.4): the content is one AES-256-CTR
//!   stream under `SHA-256("ivcsd/aes-256-ctr/v1" || K)`, 128-bit big-endian counter from zero,
//!   so byte `o` is XORed with keystream byte `o` and block `b` starts at counter `1024·b`.
//!   About thirteen times cheaper than RC4+ on CPUs with AES instructions.
//!
//! Either way any byte range can be encrypted or decrypted alone, on any core, always to the
//! same bytes; encryption and decryption are the same operation.
//!
//! This module does no I/O and never allocates on the keystream paths: a block's cipher state
//! lives on the stack, and a range that starts inside a block advances that block's keystream
//! without producing it. [`ContentCipher::apply_keystream_parallel`] spreads whole blocks over
//! rayon's pool; callers on the async reactor still belong in `spawn_blocking` or on rayon.

use std::fmt;

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
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
/// Domain separation of the AES-256-CTR key, so K itself never keys AES.
const AES_KEY_DOMAIN: &[u8] = b"ivcsd/aes-256-ctr/v1";
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

/// The content cipher suites ivcsd knows: `info.ivcsd.cipher` and getcipher's `cipher`.
///
/// Both take the same 32-byte content key, so the tracker's keys serve either; the torrent
/// names its suite, and the info hash binds that choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cipher {
    /// RC4+ keyed per 16 KiB block (docs/protocol.md 6.2), named `rc4+`: the protocol's first suite
    /// and the default.
    #[default]
    Rc4Plus,
    /// AES-256-CTR over the whole content (docs/protocol.md 6.4), named `aes-256-ctr`: for
    /// transfers that must not be bound by the cipher.
    Aes256Ctr,
}

impl Cipher {
    /// Every suite, in the order help texts list them.
    pub const ALL: [Cipher; 2] = [Cipher::Rc4Plus, Cipher::Aes256Ctr];

    /// The name written in torrents and getcipher responses.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Rc4Plus => "rc4+",
            Cipher::Aes256Ctr => "aes-256-ctr",
        }
    }

    /// The names of every suite, for messages: "rc4+, aes-256-ctr".
    pub fn known_names() -> String {
        Cipher::names(&Cipher::ALL, ", ")
    }

    /// The names of `suites` joined by `separator`, for messages.
    pub fn names(suites: &[Cipher], separator: &str) -> String {
        let names: Vec<&str> = suites.iter().map(|c| c.name()).collect();
        names.join(separator)
    }

    /// The suite for a name, `None` if ivcsd does not know it.
    pub fn from_name(name: &[u8]) -> Option<Cipher> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.name().as_bytes() == name)
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// By name, as in configuration files (`publish_ciphers = ["aes-256-ctr"]`).
impl<'de> serde::Deserialize<'de> for Cipher {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cipher, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Cipher {
    type Err = String;

    fn from_str(s: &str) -> Result<Cipher, String> {
        Cipher::from_name(s.as_bytes())
            .ok_or_else(|| format!("unknown cipher {s:?} (known: {})", Cipher::known_names()))
    }
}

/// A content key ready to encrypt and decrypt under one suite.
///
/// Holds only key material derived for that suite's keystream, zeroized on drop; its `Debug`
/// is redacted.
pub struct ContentCipher(Keystream);

/// The per-suite key material.
enum Keystream {
    /// The content key itself: every block derives its own RC4+ key from it.
    Rc4Plus(ContentKey),
    /// The expanded AES-256 key, in aws-lc (whose CTR runs at twice the speed of the `aes` +
    /// `ctr` crates here, 8.2 against 4.2 GB/s a core, in place); zeroized on drop by aws-lc-rs.
    Aes256Ctr(Box<EncryptingKey>),
}

impl fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentCipher({}, <redacted>)", self.suite())
    }
}

impl ContentCipher {
    /// `key` under `suite`.
    pub fn new(suite: Cipher, key: &ContentKey) -> ContentCipher {
        ContentCipher(match suite {
            Cipher::Rc4Plus => Keystream::Rc4Plus(key.clone()),
            Cipher::Aes256Ctr => {
                let mut aes_key: [u8; 32] = Sha256::new()
                    .chain_update(AES_KEY_DOMAIN)
                    .chain_update(key.as_bytes())
                    .finalize()
                    .into();
                let aes = UnboundCipherKey::new(&AES_256, &aes_key)
                    .and_then(EncryptingKey::ctr)
                    // Fails only for a key of the wrong length, and this one has 32 bytes.
                    .unwrap_or_else(|_| unreachable!("AES-256 takes a 32-byte key"));
                aes_key.zeroize();
                Keystream::Aes256Ctr(Box::new(aes))
            }
        })
    }

    /// The suite this cipher runs.
    pub fn suite(&self) -> Cipher {
        match self.0 {
            Keystream::Rc4Plus(_) => Cipher::Rc4Plus,
            Keystream::Aes256Ctr(_) => Cipher::Aes256Ctr,
        }
    }

    /// XORs the content keystream into `buf`, which holds the content bytes at absolute
    /// offsets `offset..offset + buf.len()`. Encrypts plaintext and decrypts ciphertext alike.
    ///
    /// A range may start and end anywhere: a partial first block has its keystream advanced
    /// to the right position without allocating.
    pub fn apply_keystream(&self, offset: u64, buf: &mut [u8]) {
        match &self.0 {
            Keystream::Rc4Plus(key) => {
                let (first_block, rest) = apply_head(key, offset, buf);
                apply_aligned(key, first_block, rest);
            }
            Keystream::Aes256Ctr(aes) => apply_aes_ctr(aes, offset, buf),
        }
    }

    /// [`apply_keystream`](Self::apply_keystream) on all cores (rayon's global pool), split
    /// at block boundaries. Identical output; worth it from a few blocks on.
    pub fn apply_keystream_parallel(&self, offset: u64, buf: &mut [u8]) {
        // Work per rayon task, enough to dwarf rayon's overhead: four blocks of RC4+ (about
        // 100 µs), and as much time of AES.
        let task_len = match self.0 {
            Keystream::Rc4Plus(_) => 4 * BLOCK_LEN,
            Keystream::Aes256Ctr(_) => 64 * BLOCK_LEN,
        };
        // (A range that would run past offset 2^64 exists in no torrent; it stays sequential.)
        if buf.len() <= task_len || offset.checked_add(buf.len() as u64).is_none() {
            return self.apply_keystream(offset, buf);
        }
        // The part before the first block boundary runs here, the rest in whole tasks.
        let within = (offset % BLOCK_LEN_U64) as usize;
        let head_len = if within == 0 { 0 } else { BLOCK_LEN - within };
        let (head, rest) = buf.split_at_mut(head_len);
        self.apply_keystream(offset, head);
        let rest_offset = offset + head_len as u64;
        rest.par_chunks_mut(task_len)
            .enumerate()
            .for_each(|(task, chunk)| {
                // task * task_len < buf.len(), and offset + buf.len() fits in u64 (above).
                self.apply_keystream(rest_offset + (task * task_len) as u64, chunk);
            });
    }
}

/// AES-256-CTR from content offset `offset`: the counter block is `offset / 16`, and a range
/// that starts inside a 16-byte block takes the rest of that block's keystream first.
fn apply_aes_ctr(aes: &EncryptingKey, offset: u64, buf: &mut [u8]) {
    const AES_BLOCK: usize = 16;
    let mut counter = u128::from(offset / AES_BLOCK as u64);
    // The remainder is below 16.
    let within = (offset % AES_BLOCK as u64) as usize;
    let mut rest = buf;
    if within != 0 && !rest.is_empty() {
        let head_len = (AES_BLOCK - within).min(rest.len());
        let (head, tail) = rest.split_at_mut(head_len);
        let mut block = [0u8; AES_BLOCK];
        block[within..within + head_len].copy_from_slice(head);
        aes_ctr_at(aes, counter, &mut block);
        head.copy_from_slice(&block[within..within + head_len]);
        block.zeroize();
        counter += 1;
        rest = tail;
    }
    if !rest.is_empty() {
        aes_ctr_at(aes, counter, rest);
    }
}

/// XORs the keystream from counter block `counter` into `buf`, in place.
fn aes_ctr_at(aes: &EncryptingKey, counter: u128, buf: &mut [u8]) {
    // The counter is at most 2^60 (a u64 offset over 16), so it never wraps; aws-lc carries
    // the low 32 bits it increments into the rest of the 128-bit block.
    let context = EncryptionContext::Iv128(counter.to_be_bytes().into());
    if aes.less_safe_encrypt(buf, context).is_err() {
        // CTR takes any length and a 16-byte IV is the one it needs, so aws-lc has no reason
        // to refuse; a refusal would leave `buf` unencrypted, which must never go out.
        unreachable!("aws-lc refused AES-256-CTR on {} bytes", buf.len());
    }
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
    fn cipher_debug_is_redacted() {
        let key = ContentKey::from_bytes([0x42; 32]);
        for suite in Cipher::ALL {
            let shown = format!("{:?}", ContentCipher::new(suite, &key));
            assert_eq!(shown, format!("ContentCipher({suite}, <redacted>)"));
        }
    }

    #[test]
    fn suite_names_round_trip_and_unknown_names_are_refused() {
        for suite in Cipher::ALL {
            assert_eq!(Cipher::from_name(suite.name().as_bytes()), Some(suite));
            assert_eq!(suite.name().parse::<Cipher>(), Ok(suite));
        }
        assert_eq!(Cipher::from_name(b"rc4"), None);
        assert_eq!(
            "aes".parse::<Cipher>(),
            Err("unknown cipher \"aes\" (known: rc4+, aes-256-ctr)".to_owned())
        );
    }

    #[test]
    fn suites_give_different_keystreams_from_one_key() {
        let key = ContentKey::from_bytes([6; 32]);
        let stream = |suite| {
            let mut buf = vec![0u8; 64];
            ContentCipher::new(suite, &key).apply_keystream(0, &mut buf);
            buf
        };
        assert_ne!(stream(Cipher::Rc4Plus), stream(Cipher::Aes256Ctr));
    }

    #[test]
    fn head_inside_one_block() {
        // A range entirely inside one block, not touching either boundary.
        let key = ContentKey::from_bytes([3; 32]);
        for suite in Cipher::ALL {
            let cipher = ContentCipher::new(suite, &key);
            let mut whole = vec![0u8; BLOCK_LEN];
            cipher.apply_keystream(5 * BLOCK_LEN_U64, &mut whole);
            let mut part = vec![0u8; 100];
            cipher.apply_keystream(5 * BLOCK_LEN_U64 + 1000, &mut part);
            assert_eq!(part[..], whole[1000..1100], "{suite}");
        }
    }

    #[test]
    fn parallel_equals_sequential_from_any_offset() {
        let key = ContentKey::from_bytes([7; 32]);
        for suite in Cipher::ALL {
            let cipher = ContentCipher::new(suite, &key);
            for offset in [0, 1, 1000, BLOCK_LEN_U64 - 1, 3 * BLOCK_LEN_U64 + 17] {
                let mut sequential = vec![0u8; 70 * BLOCK_LEN + 5];
                cipher.apply_keystream(offset, &mut sequential);
                let mut parallel = vec![0u8; 70 * BLOCK_LEN + 5];
                cipher.apply_keystream_parallel(offset, &mut parallel);
                assert!(sequential == parallel, "{suite} from offset {offset}");
            }
        }
    }

    #[test]
    fn empty_ranges_anywhere() {
        let key = ContentKey::from_bytes([5; 32]);
        for suite in Cipher::ALL {
            let cipher = ContentCipher::new(suite, &key);
            for offset in [0, 1, BLOCK_LEN_U64 - 1, BLOCK_LEN_U64, u64::MAX] {
                cipher.apply_keystream(offset, &mut []);
                cipher.apply_keystream_parallel(offset, &mut []);
            }
        }
    }

    #[test]
    fn offsets_near_the_top_of_u64_do_not_panic() {
        let key = ContentKey::from_bytes([4; 32]);
        for suite in Cipher::ALL {
            let cipher = ContentCipher::new(suite, &key);
            let mut buf = vec![0u8; 70 * BLOCK_LEN];
            cipher.apply_keystream(u64::MAX - 10, &mut buf);
            cipher.apply_keystream_parallel(u64::MAX - 10, &mut buf);
            assert!(
                buf.iter().all(|&b| b == 0),
                "{suite}: the same keystream applied twice"
            );
        }
    }
}
