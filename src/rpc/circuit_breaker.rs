//! Per-method circuit breakers. Plain state: time is passed in. Outcomes are counted in a fixed
//! ring of time slots covering the window, so a breaker's memory is a constant whatever the
//! call rate (it used to keep one record per call for the whole window).

use std::time::{Duration, Instant};

/// Slots the window is divided into; outcomes are forgotten a slot at a time.
const SLOTS: usize = 32;

/// Calls and failures in one slot of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which slot of time since the breaker's creation this counts.
    index: u64,
    calls: u32,
    failures: u32,
}

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
    epoch: Option<Instant>,
    slots: [Slot; SLOTS],
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: Settings) -> Breaker {
        Breaker {
            settings,
            epoch: None,
            slots: [Slot::default(); SLOTS],
            state: State::Closed,
        }
    }

    /// Counts an outcome at `now`; returns (calls, failures) within the window.
    fn count(&mut self, now: Instant, failed: bool) -> (usize, usize) {
        let epoch = *self.epoch.get_or_insert(now);
        let slot_len = (self.settings.window / SLOTS as u32).max(Duration::from_millis(1));
        let abs = (now.saturating_duration_since(epoch).as_nanos() / slot_len.as_nanos()) as u64;
        let slot = &mut self.slots[(abs % SLOTS as u64) as usize];
        if slot.index != abs || slot.calls == 0 {
            *slot = Slot {
                index: abs,
                calls: 0,
                failures: 0,
            };
        }
        slot.calls += 1;
        slot.failures += u32::from(failed);
        let oldest = abs.saturating_sub(SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| s.calls > 0 && s.index >= oldest && s.index <= abs)
            .fold((0, 0), |(c, f), s| {
                (c + s.calls as usize, f + s.failures as usize)
            })
    }

    fn forget(&mut self) {
        self.slots = [Slot::default(); SLOTS];
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
                    self.forget();
                } else {
                    self.state = State::HalfOpen {
                        left,
                        passed: passed + 1,
                    };
                }
            }
            State::Open(_) => {}
            State::Closed => {
                let (n, failures) = self.count(now, failed);
                if n >= self.settings.min_calls
                    && failures as f64 / n as f64 >= self.settings.failure_ratio
                {
                    self.state = State::Open(now + self.settings.cooldown);
                    self.forget();
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

    /// The fixed ring counts as the per-call list did: a million successes keep it closed, and
    /// failures later in the window are weighed against the calls still in it.
    #[test]
    fn the_slot_ring_counts_many_calls_right() {
        let t0 = Instant::now();
        let mut b = Breaker::new(S);
        for i in 0..1_000_000u64 {
            b.record(t0 + Duration::from_micros(i), false);
        }
        assert_eq!(b.state(), State::Closed);
        // 100 failures against a million successes a second ago: still closed.
        for _ in 0..100 {
            b.record(t0 + Duration::from_secs(1), true);
        }
        assert_eq!(b.state(), State::Closed);
        // The counts are right: half failures over many calls open it.
        let t1 = t0 + Duration::from_secs(120);
        for i in 0..100u64 {
            b.record(t1 + Duration::from_millis(i), i % 2 == 0);
        }
        assert!(matches!(b.state(), State::Open(_)));
    }
}
