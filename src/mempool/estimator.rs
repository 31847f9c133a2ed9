//! Fee estimation from what this node saw confirm (`estimatesmartfee`), a small version of
//! Core's `CBlockPolicyEstimator`: every transaction a block confirms that had been in our pool
//! is a sample (its fee rate, and how many blocks it waited); samples fall into fee-rate buckets
//! 5 % apart and decay by 0.998 a block (a half-life of about 350 blocks). The estimate for a
//! target of N blocks is the lowest rate at which, counting every sample paying at least that,
//! the share confirmed within N blocks stays at or above the threshold (85 % economical, 95 %
//! conservative), given enough samples. Transactions that never confirm are not counted (Core
//! counts them as failures); the estimator starts empty at each start.

/// Longest target estimated; longer targets are answered with this one (Core's medium horizon).
pub const MAX_TARGET: usize = 48;
/// Decay of every count per block.
const DECAY: f64 = 0.998;
/// Samples (decayed) at or above a rate before it may be the answer.
const MIN_SAMPLES: f64 = 10.0;
/// Lowest bucket, sat/kvB (Core's minimum tracked fee rate is 1 sat/vB here).
const FIRST_BUCKET: f64 = 1000.0;
/// Highest bucket, sat/kvB (10,000 sat/vB).
const LAST_BUCKET: f64 = 1e7;
/// Ratio between buckets (Core's FEE_SPACING).
const SPACING: f64 = 1.05;

/// How sure an estimate must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 85 % confirmed within the target.
    Economical,
    /// 95 %.
    Conservative,
}

impl Mode {
    fn threshold(self) -> f64 {
        match self {
            Mode::Economical => 0.85,
            Mode::Conservative => 0.95,
        }
    }
}

/// The estimator's state.
#[derive(Debug, Clone)]
pub struct Estimator {
    /// Lower bound of each bucket, sat/kvB.
    bounds: Vec<f64>,
    /// Samples per bucket.
    total: Vec<f64>,
    /// Per target (index 0: one block), samples per bucket confirmed within it.
    within: Vec<Vec<f64>>,
}

impl Default for Estimator {
    fn default() -> Estimator {
        let mut bounds = vec![0.0];
        let mut b = FIRST_BUCKET;
        while b <= LAST_BUCKET {
            bounds.push(b);
            b *= SPACING;
        }
        let n = bounds.len();
        Estimator {
            bounds,
            total: vec![0.0; n],
            within: vec![vec![0.0; n]; MAX_TARGET],
        }
    }
}

impl Estimator {
    fn bucket(&self, rate: u64) -> usize {
        let r = rate as f64;
        self.bounds.partition_point(|b| *b <= r).saturating_sub(1)
    }

    /// A block confirmed these (fee rate sat/kvB, blocks waited, at least 1) transactions.
    pub fn block(&mut self, samples: &[(u64, u32)]) {
        for v in self
            .total
            .iter_mut()
            .chain(self.within.iter_mut().flatten())
        {
            *v *= DECAY;
        }
        for &(rate, waited) in samples {
            let b = self.bucket(rate);
            self.total[b] += 1.0;
            let waited = waited.max(1) as usize;
            for t in waited..=MAX_TARGET {
                self.within[t - 1][b] += 1.0;
            }
        }
    }

    /// The fee rate (sat/kvB) that confirmed within `target` blocks as often as `mode` asks, and
    /// the target it was found for; `None` without enough samples.
    pub fn estimate(&self, target: usize, mode: Mode) -> Option<(u64, usize)> {
        let target = target.clamp(1, MAX_TARGET);
        let within = &self.within[target - 1];
        let (mut n, mut k) = (0.0, 0.0);
        let mut answer = None;
        for b in (0..self.bounds.len()).rev() {
            n += self.total[b];
            k += within[b];
            if n < MIN_SAMPLES || self.total[b] == 0.0 {
                continue;
            }
            if k / n < mode.threshold() {
                break;
            }
            answer = Some(self.bounds[b].max(FIRST_BUCKET) as u64);
        }
        answer.map(|rate| (rate, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_estimated_without_enough_samples() {
        let mut e = Estimator::default();
        assert_eq!(e.estimate(1, Mode::Economical), None);
        e.block(&[(5_000, 1); 9]);
        assert_eq!(e.estimate(1, Mode::Economical), None);
        e.block(&[(5_000, 1); 2]);
        let (rate, target) = e.estimate(1, Mode::Economical).unwrap();
        assert!((4_700..=5_000).contains(&rate), "{rate}");
        assert_eq!(target, 1);
    }

    #[test]
    fn cheap_transactions_that_waited_push_short_targets_up_and_not_long_ones() {
        let mut e = Estimator::default();
        // Ten blocks: two 20 sat/vB transactions confirming at once, two at 2 sat/vB after 3.
        for _ in 0..10 {
            e.block(&[(20_000, 1), (20_000, 1), (2_000, 3), (2_000, 3)]);
        }
        let (fast, _) = e.estimate(1, Mode::Economical).unwrap();
        assert!((19_000..=20_000).contains(&fast), "{fast}");
        let (slow, _) = e.estimate(3, Mode::Economical).unwrap();
        assert!((1_900..=2_000).contains(&slow), "{slow}");
        // Long targets are answered with the longest tracked.
        assert_eq!(e.estimate(1008, Mode::Economical).unwrap().1, MAX_TARGET);
    }

    #[test]
    fn conservative_asks_for_more_certainty() {
        let mut e = Estimator::default();
        // At 5 sat/vB, 9 in 10 confirm in the next block.
        for _ in 0..10 {
            let mut s = vec![(5_000, 1); 9];
            s.push((5_000, 2));
            e.block(&s);
        }
        assert!(e.estimate(1, Mode::Economical).is_some());
        assert_eq!(e.estimate(1, Mode::Conservative), None);
        assert!(e.estimate(2, Mode::Conservative).is_some());
    }
}
