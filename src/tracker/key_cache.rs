//! Parsed public keys of recent getcipher requesters, keyed by the SHA-256 of their SPKI DER.
//!
//! A peer sends the same key with every getcipher, and parsing it (DER, modulus checks, aws-lc's
//! key objects) costs about as much as one of the two RSA operations a getcipher does
//! (docs/benchmarks.md, "getcipher's RSA work"). Only keys whose signature verified are stored,
//! and at most [`PublicKeyCache::max`] of them: when full, an arbitrary entry makes room, so a
//! user cycling through fresh keys can cost others a re-parse, never memory. A hit is checked
//! against the full DER, not only its hash. No I/O, no expiry: a cached key is as valid as a
//! freshly parsed one, and which keys a user may use is decided before the cache is asked.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::crypto::identity::PublicIdentity;

/// Keys kept by the tracker: about 2 KB each for 2048-bit keys (two parsed aws-lc keys and the
/// DER), so a few MB at most.
pub const PUBLIC_KEY_CACHE_ENTRIES: usize = 2048;

/// A bounded map from SPKI SHA-256 to the parsed key.
#[derive(Debug)]
pub struct PublicKeyCache {
    keys: HashMap<[u8; 32], PublicIdentity>,
    max: usize,
}

impl PublicKeyCache {
    /// An empty cache that holds at most `max` keys (at least one).
    pub fn new(max: usize) -> Self {
        PublicKeyCache {
            keys: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The parsed key for `spki_der`, if it is cached.
    pub fn get(&self, spki_der: &[u8]) -> Option<PublicIdentity> {
        let hash: [u8; 32] = Sha256::digest(spki_der).into();
        self.keys
            .get(&hash)
            .filter(|key| key.spki_der() == spki_der)
            .cloned()
    }

    /// Keeps `key`, evicting an arbitrary other key when the cache is full.
    pub fn insert(&mut self, key: PublicIdentity) {
        let hash = key.spki_sha256();
        if !self.keys.contains_key(&hash)
            && self.keys.len() >= self.max
            && let Some(victim) = self.keys.keys().next().copied()
        {
            self.keys.remove(&victim);
        }
        self.keys.insert(hash, key);
    }

    /// The most keys kept.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PublicIdentity {
        let path = format!("{}/tests/data/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        PublicIdentity::from_spki_der(&std::fs::read(path).expect("fixture")).expect("spki")
    }

    #[test]
    fn hits_only_the_same_der_and_stays_bounded() {
        let k2048 = key("rsa2048.spki.der");
        let k3072 = key("rsa3072.spki.der");
        let mut cache = PublicKeyCache::new(1);
        assert!(cache.get(k2048.spki_der()).is_none());
        cache.insert(k2048.clone());
        assert_eq!(cache.get(k2048.spki_der()), Some(k2048.clone()));
        assert!(cache.get(k3072.spki_der()).is_none());
        let mut longer = k2048.spki_der().to_vec();
        longer.push(0);
        assert!(cache.get(&longer).is_none());
        cache.insert(k2048.clone()); // already there: nothing evicted
        assert_eq!(cache.len(), 1);
        cache.insert(k3072.clone()); // full: the other key makes room
        assert_eq!(cache.len(), 1);
        assert!(cache.get(k2048.spki_der()).is_none());
        assert_eq!(cache.get(k3072.spki_der()), Some(k3072));
        assert_eq!(PublicKeyCache::new(0).max(), 1);
    }
}
