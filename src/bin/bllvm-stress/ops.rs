//! The operation log and the seeded generator every decision comes from.
//!
//! `ops.log` holds what the harness decided to do, in the order it decided it, and nothing
//! measured: no time, port, path or process id. Two runs with the same scenario and seed write
//! the same file; the timings go to the report.

use parking_lot::Mutex;
use std::io::Write;
use std::path::Path;

/// splitmix64: small, fast, and the same sequence on every machine.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `stream` under `seed`: each driver draws from its own stream, so adding
    /// a driver does not shift another's choices.
    pub fn new(seed: u64, stream: &str) -> Rng {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in stream.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h)
    }

    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 32 bytes (hashes, payloads).
    pub fn next_bytes(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        b
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One of `items`, by weight.
    pub fn pick<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| *w as u64).sum();
        let mut r = self.below(total);
        for (item, w) in items {
            if r < *w as u64 {
                return item;
            }
            r -= *w as u64;
        }
        &items[items.len() - 1].0
    }
}

/// The ordered record of operations (shared by the scenario's threads, written by the
/// scenario's own thread in plan order).
#[derive(Default)]
pub struct OpsLog {
    lines: Mutex<Vec<String>>,
}

impl OpsLog {
    /// Records one operation.
    pub fn op(&self, line: impl Into<String>) {
        self.lines.lock().push(line.into());
    }

    /// How many operations so far.
    pub fn len(&self) -> usize {
        self.lines.lock().len()
    }

    /// Writes `ops.log` (numbered lines).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (i, l) in self.lines.lock().iter().enumerate() {
            writeln!(f, "{i:07} {l}")?;
        }
        f.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_fixed_by_seed_and_name() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, "peers").next()).collect();
        let mut r = Rng::new(7, "peers");
        let b: Vec<u64> = (0..4).map(|_| r.next()).collect();
        assert_eq!(a[0], b[0]);
        assert_ne!(b[0], b[1]);
        assert_ne!(Rng::new(7, "peers").next(), Rng::new(7, "rpc").next());
        assert_ne!(Rng::new(7, "peers").next(), Rng::new(8, "peers").next());
    }
}
