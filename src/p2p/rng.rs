//! The protocol's randomness: a seeded generator, so a simulator run is repeated exactly by its
//! seed. The node seeds it from the OS; nothing here needs to be unpredictable to a peer beyond
//! what a 64-bit seed gives (nonces, jitter, eviction keys).

/// splitmix64: small, fast, and good enough for nonces and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that repeats for the same seed.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator seeded by the operating system.
    pub fn from_os() -> Rng {
        Rng(bitcoin::secp256k1::rand::random())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<u64> = {
            let mut r = Rng::seeded(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::seeded(7);
        assert_eq!(a, (0..5).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut other = Rng::seeded(8);
        assert_ne!(a[0], other.next_u64());
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
    }
}
