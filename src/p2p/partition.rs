//! Partition detection: every outbound peer lost within a short window is a `network_partition`
//! event; health is degraded while it lasts and unhealthy after five minutes without peers.

use crate::supervisor::health::Status;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// All outbound peers dropping within this window counts as a partition.
pub const WINDOW: Duration = Duration::from_secs(30);
/// No peers at all for this long is unhealthy (the operator's alert threshold).
pub const NO_PEERS_UNHEALTHY: Duration = Duration::from_secs(300);

/// What the detector concluded from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to report.
    Quiet,
    /// A partition began: log and count `network_partition`, re-query DNS seeds now.
    Partitioned,
    /// Peers are back after a partition.
    Recovered,
}

/// The detector.
#[derive(Debug, Clone, Default)]
pub struct PartitionDetector {
    outbound: usize,
    drops: VecDeque<Instant>,
    partitioned: bool,
    empty_since: Option<Instant>,
}

impl PartitionDetector {
    /// An outbound peer completed its handshake.
    pub fn connected(&mut self) -> Verdict {
        self.outbound += 1;
        self.empty_since = None;
        if std::mem::take(&mut self.partitioned) {
            Verdict::Recovered
        } else {
            Verdict::Quiet
        }
    }

    /// An outbound peer was lost.
    pub fn disconnected(&mut self, now: Instant) -> Verdict {
        let had = self.outbound;
        self.outbound = self.outbound.saturating_sub(1);
        self.drops.push_back(now);
        while self
            .drops
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.drops.pop_front();
        }
        if self.outbound == 0 {
            self.empty_since.get_or_insert(now);
            // Every peer we had went within the window, and there was more than one.
            if !self.partitioned && had >= 1 && self.drops.len() >= 2 {
                self.partitioned = true;
                return Verdict::Partitioned;
            }
        }
        Verdict::Quiet
    }

    /// The network component's health at `now`, with a reason.
    pub fn health(&self, now: Instant) -> (Status, String) {
        match self.empty_since {
            Some(t) if now.saturating_duration_since(t) >= NO_PEERS_UNHEALTHY => (
                Status::Unhealthy,
                format!(
                    "no peers for {}s",
                    now.saturating_duration_since(t).as_secs()
                ),
            ),
            _ if self.partitioned => (
                Status::Degraded,
                "network partition: every outbound peer dropped".into(),
            ),
            _ => (Status::Healthy, String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_outbound_dropping_together_is_a_partition_until_peers_return() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::default();
        for _ in 0..3 {
            d.connected();
        }
        assert_eq!(d.disconnected(t0 + Duration::from_secs(1)), Verdict::Quiet);
        assert_eq!(d.disconnected(t0 + Duration::from_secs(2)), Verdict::Quiet);
        assert_eq!(
            d.disconnected(t0 + Duration::from_secs(3)),
            Verdict::Partitioned
        );
        assert_eq!(d.health(t0 + Duration::from_secs(4)).0, Status::Degraded);
        assert_eq!(
            d.health(t0 + Duration::from_secs(3) + NO_PEERS_UNHEALTHY).0,
            Status::Unhealthy
        );
        assert_eq!(d.connected(), Verdict::Recovered);
        assert_eq!(d.health(t0 + Duration::from_secs(401)).0, Status::Healthy);
    }

    #[test]
    fn slow_churn_is_not_a_partition() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::default();
        d.connected();
        d.connected();
        assert_eq!(d.disconnected(t0), Verdict::Quiet);
        // The second loss comes long after the first: normal churn.
        assert_eq!(
            d.disconnected(t0 + WINDOW + Duration::from_secs(1)),
            Verdict::Quiet
        );
        assert_eq!(
            d.health(t0 + WINDOW + Duration::from_secs(2)).0,
            Status::Healthy
        );
    }
}
