//! Seeded randomness. Every draw comes from a stream named by what it is about (the seed,
//! a commit, a run of it), so the push runs of a seed come out the same whatever a policy
//! restarts in between.

use rand::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// SplitMix64's finalizer: a well-mixed u64 from any u64.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string, mixed.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}

/// A 40-hex commit sha for the n-th commit of a seed.
pub fn hash_sha(seed: u64, n: u64) -> String {
    let a = mix(seed ^ mix(n));
    let b = mix(a);
    let c = mix(b);
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(
            mix(seed) ^ mix(stream.wrapping_mul(31)),
        ))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.0.random::<f64>() < p
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.random::<f64>()
    }

    /// In [lo, hi).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..hi)
        }
    }

    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.0.random::<f64>()).ln()
    }
}
