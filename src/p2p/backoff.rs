//! Reconnection with exponential backoff: plain state, time and randomness passed in.

use std::time::{Duration, Instant};

/// `[network]` reconnect settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// First delay.
    pub initial: Duration,
    /// Cap of the doubling delay.
    pub max: Duration,
    /// Attempts before a gossip address is given up.
    pub max_retries: u32,
    /// Relative jitter, e.g. 0.2 for ±20%.
    pub jitter: f64,
}

/// Whether the node keeps trying forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Learned from gossip or seeds: given up after `max_retries`.
    Gossip,
    /// `--addnode`/`--connect`: retried forever at the capped delay.
    Permanent,
}

/// One address's reconnection state.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    persistence: Persistence,
    failures: u32,
    next: Option<Instant>,
}

impl Reconnect {
    /// A fresh state: may connect at once.
    pub fn new(persistence: Persistence) -> Reconnect {
        Reconnect {
            persistence,
            failures: 0,
            next: None,
        }
    }

    /// Whether a connection attempt may start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A connection succeeded: the next failure starts from the initial delay again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.next = None;
    }

    /// After a gossip address was given up: try it again no sooner than the longest delay
    /// (a small address book keeps what it has through a long outage). Returns when.
    pub fn keep_trying(&mut self, policy: &Policy, now: Instant, unit: f64) -> Instant {
        let factor = 1.0 + policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let at = now + policy.max.mul_f64(factor);
        self.next = Some(at);
        at
    }

    /// A connection failed or dropped at `now`; `unit` is a uniform random number in [0, 1).
    /// Returns when to try next, or `None` when a gossip address is given up.
    pub fn failed(&mut self, policy: &Policy, now: Instant, unit: f64) -> Option<Instant> {
        self.failures += 1;
        if self.persistence == Persistence::Gossip && self.failures > policy.max_retries {
            self.next = None;
            return None;
        }
        let doublings = (self.failures - 1).min(32);
        let base = policy
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(policy.max);
        let factor = 1.0 + policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let at = now + base.mul_f64(factor);
        self.next = Some(at);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(3600),
        max_retries: 10,
        jitter: 0.2,
    };

    #[test]
    fn delays_double_from_5s_to_the_cap_within_jitter() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(Persistence::Gossip);
        let mut delays = Vec::new();
        for i in 0..10 {
            // unit 0.5 = no jitter; then the extremes stay within ±20%.
            let at = r.failed(&P, t0, 0.5).unwrap();
            delays.push((at - t0).as_secs());
            assert!(!r.due(t0) && r.due(at), "attempt {i}");
        }
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]);
        let mut r = Reconnect::new(Persistence::Permanent);
        let lo = r.failed(&P, t0, 0.0).unwrap() - t0;
        let mut r2 = Reconnect::new(Persistence::Permanent);
        let hi = r2.failed(&P, t0, 0.999_999).unwrap() - t0;
        assert_eq!(lo, Duration::from_secs(4));
        assert!(hi > Duration::from_millis(5990) && hi <= Duration::from_secs(6));
    }

    #[test]
    fn gossip_gives_up_and_addnode_never_does() {
        let t0 = Instant::now();
        let mut gossip = Reconnect::new(Persistence::Gossip);
        let mut manual = Reconnect::new(Persistence::Permanent);
        for _ in 0..10 {
            assert!(gossip.failed(&P, t0, 0.5).is_some());
        }
        assert_eq!(
            gossip.failed(&P, t0, 0.5),
            None,
            "the 11th failure gives up"
        );
        for _ in 0..40 {
            manual.failed(&P, t0, 0.5).unwrap();
        }
        assert_eq!(
            manual.failed(&P, t0, 0.5).unwrap() - t0,
            Duration::from_secs(3600)
        );
        manual.succeeded();
        assert!(manual.due(t0));
        assert_eq!(
            manual.failed(&P, t0, 0.5).unwrap() - t0,
            Duration::from_secs(5)
        );
    }
}
