//! Per-method circuit breakers. Plain state: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Breaker settings (`[rpc.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Outcomes older than this are forgotten.
    pub window: Duration,
    /// Fewest calls in the window before the ratio counts.
    pub min_calls: usize,
    /// Failure ratio that opens the breaker.
    pub failure_ratio: f64,
    /// How long an open breaker refuses calls.
    pub cooldown: Duration,
    /// Trial calls let through when half-open; all must succeed to close.
    pub trials: u32,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the instant.
    Open(Instant),
    /// Some trial calls go through.
    HalfOpen {
        /// Trials not yet started.
        left: u32,
        /// Trials that succeeded.
        passed: u32,
    },
}

impl State {
    /// Label and JSON value.
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open(_) => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }

    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(&self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open(_) => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// One method's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: Settings,
    outcomes: VecDeque<(Instant, bool)>,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: Settings) -> Breaker {
        Breaker {
            settings,
            outcomes: VecDeque::new(),
            state: State::Closed,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a call may go through now (a half-open trial is taken if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open(until) if now >= until => {
                self.state = State::HalfOpen {
                    left: self.settings.trials.saturating_sub(1),
                    passed: 0,
                };
                true
            }
            State::Open(_) => false,
            State::HalfOpen { left: 0, .. } => false,
            State::HalfOpen { left, passed } => {
                self.state = State::HalfOpen {
                    left: left - 1,
                    passed,
                };
                true
            }
        }
    }

    /// Records a call's outcome; `failed` only for internal errors and timeouts.
    pub fn record(&mut self, now: Instant, failed: bool) {
        match self.state {
            State::HalfOpen { left, passed } => {
                if failed {
                    self.state = State::Open(now + self.settings.cooldown);
                } else if passed + 1 >= self.settings.trials {
                    self.state = State::Closed;
                    self.outcomes.clear();
                } else {
                    self.state = State::HalfOpen {
                        left,
                        passed: passed + 1,
                    };
                }
            }
            State::Open(_) => {}
            State::Closed => {
                self.outcomes.push_back((now, failed));
                while self
                    .outcomes
                    .front()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.settings.window)
                {
                    self.outcomes.pop_front();
                }
                let n = self.outcomes.len();
                let failures = self.outcomes.iter().filter(|(_, f)| *f).count();
                if n >= self.settings.min_calls
                    && failures as f64 / n as f64 >= self.settings.failure_ratio
                {
                    self.state = State::Open(now + self.settings.cooldown);
                    self.outcomes.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Settings = Settings {
        window: Duration::from_secs(60),
        min_calls: 4,
        failure_ratio: 0.5,
        cooldown: Duration::from_secs(30),
        trials: 2,
    };

    #[test]
    fn opens_on_failures_fails_fast_then_half_opens_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(S);
        for ok in [true, false, true] {
            assert!(b.allow(t0));
            b.record(t0, !ok);
        }
        assert_eq!(b.state(), State::Closed, "3 calls: below min_calls");
        b.record(t0, true);
        assert_eq!(b.state(), State::Open(t0 + S.cooldown), "2 of 4 failed");
        assert!(!b.allow(t0 + Duration::from_secs(29)));
        // Cooldown over: two trials go through, a third waits.
        let t1 = t0 + S.cooldown;
        assert!(b.allow(t1));
        assert!(b.allow(t1));
        assert!(!b.allow(t1));
        b.record(t1, false);
        assert_eq!(b.state().name(), "half-open");
        b.record(t1, false);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_failed_trial_reopens_and_old_failures_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Breaker::new(S);
        for _ in 0..4 {
            b.record(t0, true);
        }
        let t1 = t0 + S.cooldown;
        assert!(b.allow(t1));
        b.record(t1, true);
        assert_eq!(b.state(), State::Open(t1 + S.cooldown));

        let mut c = Breaker::new(S);
        for _ in 0..3 {
            c.record(t0, true);
        }
        // Outside the window those three no longer count.
        let late = t0 + Duration::from_secs(61);
        c.record(late, true);
        assert_eq!(c.state(), State::Closed);
    }
}
