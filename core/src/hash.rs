//! A fast keyed hasher for the core's tables.
//!
//! Node names come from the network, so the tables must resist hash flooding; std's SipHash
//! does, but reads the OS for its keys (the core has no random source of its own) and costs
//! about 20 ns per short name, which the 10,000-node reconcile cannot afford. This hasher is a
//! folded-multiply construction (the family of foldhash and ahash's fallback) keyed from the
//! core's seeded generator: fast, deterministic for a given seed, and not predictable without
//! the seed.

use core::hash::{BuildHasher, Hasher};

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A hash map keyed from the core's seed: its iteration order is the same for the same seed,
/// so it keeps the determinism contract where std's randomly keyed maps would not. The core
/// uses no other hash map (`core/clippy.toml` disallows std's).
#[allow(clippy::disallowed_types)]
pub(crate) type KeyedMap<K, V> = std::collections::HashMap<K, V, KeyedState>;

/// Builds [`KeyedHasher`]s that share one secret key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyedState {
    k0: u64,
    k1: u64,
}

impl KeyedState {
    pub(crate) fn new(k0: u64, k1: u64) -> Self {
        KeyedState { k0, k1 }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            acc: self.k0,
            k1: self.k1,
        }
    }
}

/// The hasher built by [`KeyedState`].
pub(crate) struct KeyedHasher {
    acc: u64,
    k1: u64,
}

impl Hasher for KeyedHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut acc = self.acc ^ (bytes.len() as u64).wrapping_mul(P0);
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let a = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let b = u64::from_le_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]);
            acc = fold_mul(a ^ acc, b ^ self.k1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 16];
            buf[..rest.len()].copy_from_slice(rest);
            let a = u64::from_le_bytes([
                buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
            ]);
            let b = u64::from_le_bytes([
                buf[8], buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15],
            ]);
            acc = fold_mul(a ^ acc ^ P1, b ^ self.k1);
        }
        self.acc = acc;
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.acc = fold_mul(self.acc ^ i, self.k1 ^ P0);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.k1 ^ P1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::BuildHasher;

    #[test]
    fn keys_change_the_hash_and_equal_inputs_hash_equal() {
        let a = KeyedState::new(1, 2);
        let b = KeyedState::new(3, 4);
        assert_eq!(a.hash_one("n@h"), a.hash_one("n@h"));
        assert_ne!(a.hash_one("n@h"), b.hash_one("n@h"));
        assert_ne!(a.hash_one("n@h"), a.hash_one("n@i"));
        // Lengths are mixed in, so a zero-padded tail is not a collision.
        assert_ne!(a.hash_one(&b"ab"[..]), a.hash_one(&b"ab\0"[..]));
    }

    #[test]
    fn spreads_similar_names_over_buckets() {
        let s = KeyedState::new(0x1234, 0x5678);
        let mut buckets = [0u32; 64];
        for i in 0..6400 {
            let name = format!("node{i}@10.0.{}.{}", i / 256, i % 256);
            buckets[(s.hash_one(name.as_str()) % 64) as usize] += 1;
        }
        // 100 per bucket expected; a broken mix would pile names into few buckets.
        assert!(
            buckets.iter().all(|&c| (50..=150).contains(&c)),
            "{buckets:?}"
        );
    }
}
