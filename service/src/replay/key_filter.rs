//! A fixed-size filter of keys (a Bloom filter): "certainly never inserted" or "maybe
//! inserted". The replay fold remembers the keys it evicted from its cache here, so a rebuild
//! of millions of items keeps new keys read-free in bounded memory; a false positive only
//! costs one store read, which finds nothing.

use std::hash::{DefaultHasher, Hash, Hasher};

/// 2^23 bits (1 MiB): under 1% false positives up to about a million keys per projection.
const BITS: usize = 1 << 23;
/// Bits set per key.
const PROBES: u64 = 3;

pub struct KeyFilter {
    words: Vec<u64>,
}

impl Default for KeyFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyFilter {
    pub fn new() -> Self {
        Self {
            words: vec![0; BITS / 64],
        }
    }

    /// The bit positions of `key`: double hashing over one 64-bit hash. `DefaultHasher::new`
    /// has fixed keys, and the filter never leaves the process, so any stable hash will do.
    fn positions(key: &str) -> impl Iterator<Item = usize> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % BITS as u64) as usize)
    }

    pub fn insert(&mut self, key: &str) {
        for bit in Self::positions(key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False only for a key never inserted.
    pub fn may_contain(&self, key: &str) -> bool {
        Self::positions(key).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_rarely() {
        let mut filter = KeyFilter::new();
        for n in 0..200_000 {
            filter.insert(&format!("crm#001Dn{n:013}"));
        }
        assert!((0..200_000).all(|n| filter.may_contain(&format!("crm#001Dn{n:013}"))));
        let false_positives = (200_000..300_000)
            .filter(|n| filter.may_contain(&format!("crm#001Dn{n:013}")))
            .count();
        assert!(false_positives < 1_000, "{false_positives} of 100000");
    }
}
