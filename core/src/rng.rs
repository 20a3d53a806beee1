//! Randomness as an input: HMAC-DRBG (NIST SP 800-90A rev. 1, §10.1.2) over HMAC-SHA256.
//!
//! The adapter hands the core a 32-byte seed from the operating system; everything random in
//! the core (jitter, token and query ids, IVs, nonces) is drawn from this generator, so the
//! same seed and the same inputs give the same outputs, byte for byte. HMAC-DRBG is a
//! cryptographically strong construction, so the same generator serves IVs and nonces.

use core::time::Duration;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Output drawn per DRBG `generate` call; small draws are served from this buffer.
const BLOCK: usize = 64;

/// A deterministic, cryptographically strong random generator (HMAC-DRBG with SHA-256).
///
/// ```
/// use muster_core::Rng;
/// let mut a = Rng::from_seed([7; 32]);
/// let mut b = Rng::from_seed([7; 32]);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Clone)]
pub struct Rng {
    drbg: HmacDrbg,
    buf: [u8; BLOCK],
    used: usize,
}

impl core::fmt::Debug for Rng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The state is secret: never print it.
        f.write_str("Rng { .. }")
    }
}

impl Rng {
    /// A generator instantiated from `seed` (the entropy input) with a fixed personalisation.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let drbg = HmacDrbg::instantiate(&seed, b"muster-core rng v1");
        Rng {
            drbg,
            buf: [0; BLOCK],
            used: BLOCK,
        }
    }

    /// A child generator for a sub-component, so that adding draws in one place does not shift
    /// every other component's sequence.
    pub fn fork(&mut self, label: &[u8]) -> Rng {
        let mut seed = [0u8; 32];
        self.fill_bytes(&mut seed);
        let drbg = HmacDrbg::instantiate(&seed, label);
        Rng {
            drbg,
            buf: [0; BLOCK],
            used: BLOCK,
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        if out.len() > BLOCK {
            // Large draws (keys, IVs in bulk) go straight to the DRBG.
            self.drbg.generate(out);
            return;
        }
        for b in out.iter_mut() {
            if self.used == BLOCK {
                self.drbg.generate(&mut self.buf);
                self.used = 0;
            }
            *b = self.buf[self.used];
            self.used += 1;
        }
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    /// A uniformly random integer in `lo..=hi` (returns `lo` when `hi <= lo`).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        let n = span + 1;
        // Rejection sampling removes the modulo bias.
        let zone = u64::MAX - (u64::MAX % n) - 1;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return lo + x % n;
            }
        }
    }

    /// A uniformly random duration in `lo..=hi`, at millisecond granularity.
    pub fn duration_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = u64::try_from(lo.as_millis()).unwrap_or(u64::MAX);
        let hi_ms = u64::try_from(hi.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.range_inclusive(lo_ms, hi_ms))
    }

    /// `true` with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits give a uniform float in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

/// HMAC_DRBG state (SP 800-90A §10.1.2.1): the key K and the value V.
#[derive(Clone)]
struct HmacDrbg {
    k: [u8; 32],
    v: [u8; 32],
}

impl HmacDrbg {
    /// §10.1.2.3: seed_material = entropy_input || personalization; K = 0x00.., V = 0x01..
    fn instantiate(entropy_and_nonce: &[u8], personalization: &[u8]) -> Self {
        let mut d = HmacDrbg {
            k: [0x00; 32],
            v: [0x01; 32],
        };
        d.update(&[entropy_and_nonce, personalization]);
        d
    }

    fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts a key of any length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// §10.1.2.2, HMAC_DRBG_Update, with the provided data given as concatenated parts.
    fn update(&mut self, provided: &[&[u8]]) {
        let empty = provided.iter().all(|p| p.is_empty());
        let mut parts: [&[u8]; 4] = [&[], &[], &[], &[]];
        parts[0] = &self.v;
        parts[1] = &[0x00];
        let n = provided.len().min(2);
        parts[2..2 + n].copy_from_slice(&provided[..n]);
        self.k = Self::mac(&self.k, &parts[..2 + n]);
        self.v = Self::mac(&self.k, &[&self.v]);
        if empty {
            return;
        }
        let mut parts: [&[u8]; 4] = [&[], &[], &[], &[]];
        parts[0] = &self.v;
        parts[1] = &[0x01];
        parts[2..2 + n].copy_from_slice(&provided[..n]);
        self.k = Self::mac(&self.k, &parts[..2 + n]);
        self.v = Self::mac(&self.k, &[&self.v]);
    }

    /// §10.1.2.5, HMAC_DRBG_Generate without additional input. The core never needs more than
    /// 2^48 requests per instance, so the reseed counter is not tracked.
    fn generate(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.v = Self::mac(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// NIST CAVP HMAC_DRBG.rsp, [SHA-256] [PredictionResistance = False]
    /// [EntropyInputLen = 256] [NonceLen = 128] [PersonalizationStringLen = 0]
    /// [AdditionalInputLen = 0] [ReturnedBitsLen = 1024], COUNT = 0: instantiate, generate
    /// twice, and the second output is the returned bits.
    #[test]
    fn matches_nist_cavp_vector() {
        let entropy = hex("ca851911349384bffe89de1cbdc46e6831e44d34a4fb935ee285dd14b71a7488");
        let nonce = hex("659ba96c601dc69fc902940805ec0ca8");
        let expected = hex(concat!(
            "e528e9abf2dece54d47c7e75e5fe302149f817ea9fb4bee6f4199697d04d5b89",
            "d54fbb978a15b5c443c9ec21036d2460b6f73ebad0dc2aba6e624abf07745bc1",
            "07694bb7547bb0995f70de25d6b29e2d3011bb19d27676c07162c8b5ccde0668",
            "961df86803482cb37ed6d5c0bb8d50cf1f50d476aa0458bdaba806f48be9dcb8"
        ));
        let mut seed = entropy.clone();
        seed.extend_from_slice(&nonce);
        let mut d = HmacDrbg::instantiate(&seed, &[]);
        let mut out = [0u8; 128];
        d.generate(&mut out);
        d.generate(&mut out);
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = Rng::from_seed([1; 32]);
        let mut b = Rng::from_seed([1; 32]);
        let mut c = Rng::from_seed([2; 32]);
        let xa: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn range_stays_in_bounds_and_covers_it() {
        let mut r = Rng::from_seed([3; 32]);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let x = r.range_inclusive(10, 16);
            assert!((10..=16).contains(&x));
            seen[(x - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.range_inclusive(5, 5), 5);
        assert_eq!(r.range_inclusive(9, 2), 9);
        let _ = r.range_inclusive(0, u64::MAX);
    }

    #[test]
    fn forks_are_independent_of_later_parent_draws() {
        let mut p1 = Rng::from_seed([4; 32]);
        let mut p2 = Rng::from_seed([4; 32]);
        let mut c1 = p1.fork(b"x");
        let mut c2 = p2.fork(b"x");
        p1.next_u64();
        assert_eq!(c1.next_u64(), c2.next_u64());
    }
}
