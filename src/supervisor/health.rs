//! The health model: per-component heartbeats and statuses, and the pure evaluation of them.

use crate::component::Component;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A component's or the node's health; the order is "worse is greater".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working normally.
    Healthy,
    /// Working with reduced capacity or on a fallback.
    Degraded,
    /// Not working; probes fail.
    Unhealthy,
}

impl Status {
    /// Label value and JSON string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// Gauge value: 0 healthy, 1 degraded, 2 unhealthy.
    pub fn as_gauge(self) -> i64 {
        self as i64
    }
}

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    status: Status,
    reason: String,
}

/// One component's cell: written by its owner, read by probes and the supervisor.
#[derive(Debug)]
struct Cell {
    /// Milliseconds since the vitals were created; lock-free so beating never blocks.
    last_beat_ms: AtomicU64,
    report: Mutex<Report>,
}

/// A test-only fault a component's heartbeat injects on itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Stop beating and never return (ignores shutdown too).
    Stall {
        /// Measured from the vitals' creation.
        after: Duration,
    },
    /// Panic in the component's thread.
    Panic {
        /// Measured from the vitals' creation.
        after: Duration,
    },
}

/// Every component's cell; created once at wiring time.
#[derive(Debug)]
pub struct Vitals {
    epoch: Instant,
    cells: BTreeMap<Component, Arc<Cell>>,
}

/// The handle a component uses to report liveness and status.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    component: Component,
    epoch: Instant,
    cell: Arc<Cell>,
    fault: Option<Fault>,
}

/// A component's state at one moment, as probes and the supervisor see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentHealth {
    /// Which component.
    pub component: Component,
    /// Its own status, made unhealthy when its heartbeat is stale.
    pub status: Status,
    /// Why, empty when healthy.
    pub reason: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: Duration,
}

/// The evaluation of all components.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The worst component status.
    pub overall: Status,
    /// Whether every heartbeat is fresher than the timeout (liveness, watchdog).
    pub all_fresh: bool,
    /// Each component, in a stable order.
    pub components: Vec<ComponentHealth>,
}

impl Vitals {
    /// Cells for every component, all beating "now" and healthy with reason "starting".
    pub fn new() -> Vitals {
        let cells = Component::ALL
            .into_iter()
            .map(|c| {
                let cell = Cell {
                    last_beat_ms: AtomicU64::new(0),
                    report: Mutex::new(Report {
                        status: Status::Healthy,
                        reason: "starting".into(),
                    }),
                };
                (c, Arc::new(cell))
            })
            .collect();
        Vitals {
            epoch: Instant::now(),
            cells,
        }
    }

    /// The handle for `component`, with an optional injected fault.
    pub fn heartbeat(&self, component: Component, fault: Option<Fault>) -> Heartbeat {
        Heartbeat {
            component,
            epoch: self.epoch,
            cell: self.cells[&component].clone(),
            fault,
        }
    }

    /// Reads every cell and evaluates them at `now`.
    pub fn evaluate(&self, now: Instant, timeout: Duration) -> Evaluation {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let observed = self.cells.iter().map(|(c, cell)| {
            let beat = cell.last_beat_ms.load(Ordering::Acquire);
            let report = cell.report.lock().clone();
            (
                *c,
                report.status,
                report.reason,
                Duration::from_millis(now_ms.saturating_sub(beat)),
            )
        });
        evaluate(observed, timeout)
    }
}

impl Default for Vitals {
    fn default() -> Self {
        Self::new()
    }
}

/// Pure: a stale heartbeat makes its component unhealthy; the overall status is the worst.
pub fn evaluate(
    observed: impl IntoIterator<Item = (Component, Status, String, Duration)>,
    timeout: Duration,
) -> Evaluation {
    let mut all_fresh = true;
    let components: Vec<ComponentHealth> = observed
        .into_iter()
        .map(|(component, status, reason, age)| {
            if age > timeout {
                all_fresh = false;
                ComponentHealth {
                    component,
                    status: Status::Unhealthy,
                    // The limit, not the age, so the text (and systemd's STATUS) is stable.
                    reason: format!("no heartbeat for over {:.1}s", timeout.as_secs_f64()),
                    heartbeat_age: age,
                }
            } else {
                ComponentHealth {
                    component,
                    status,
                    reason,
                    heartbeat_age: age,
                }
            }
        })
        .collect();
    let overall = components
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Healthy);
    Evaluation {
        overall,
        all_fresh,
        components,
    }
}

impl Heartbeat {
    /// Which component this handle belongs to.
    pub fn component(&self) -> Component {
        self.component
    }

    /// Records liveness; called on every turn of the component's loop.
    pub fn beat(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        match self.fault {
            Some(Fault::Stall { after }) if self.epoch.elapsed() >= after => {
                log::warn!("debug fault: {} stalls now", self.component);
                loop {
                    std::thread::park();
                }
            }
            Some(Fault::Panic { after }) if self.epoch.elapsed() >= after => {
                panic!("debug fault: injected panic in {}", self.component);
            }
            _ => {}
        }
        self.cell.last_beat_ms.store(now_ms, Ordering::Release);
    }

    /// Sets the component's own status; logs when it changes.
    pub fn set_status(&self, status: Status, reason: impl Into<String>) {
        let reason = reason.into();
        let mut report = self.cell.report.lock();
        if report.status != status || report.reason != reason {
            if status != Status::Healthy {
                log::warn!("{} is {}: {reason}", self.component, status.as_str());
            } else if report.status != Status::Healthy {
                log::info!("{} is healthy again", self.component);
            }
            *report = Report { status, reason };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn obs(c: Component, s: Status, age: u64) -> (Component, Status, String, Duration) {
        (c, s, String::new(), Duration::from_secs(age))
    }

    #[test]
    fn worst_status_wins() {
        let e = evaluate(
            [
                obs(Component::Chain, Status::Healthy, 1),
                obs(Component::Storage, Status::Degraded, 1),
            ],
            T,
        );
        assert_eq!(e.overall, Status::Degraded);
        assert!(e.all_fresh);
    }

    #[test]
    fn stale_heartbeat_is_unhealthy_and_not_fresh() {
        let e = evaluate(
            [
                obs(Component::Chain, Status::Healthy, 31),
                obs(Component::P2p, Status::Healthy, 0),
            ],
            T,
        );
        assert_eq!(e.overall, Status::Unhealthy);
        assert!(!e.all_fresh);
        assert!(e.components[0]
            .reason
            .contains("no heartbeat for over 30.0s"));
    }

    #[test]
    fn heartbeat_and_status_reach_the_evaluation() {
        let v = Vitals::new();
        let hb = v.heartbeat(Component::Chain, None);
        hb.set_status(Status::Degraded, "catching up");
        hb.beat();
        let e = v.evaluate(Instant::now(), T);
        let chain = e
            .components
            .iter()
            .find(|c| c.component == Component::Chain)
            .unwrap();
        assert_eq!(chain.status, Status::Degraded);
        assert_eq!(chain.reason, "catching up");
        // Evaluated 40 s later, every cell is stale.
        let e = v.evaluate(Instant::now() + Duration::from_secs(40), T);
        assert!(!e.all_fresh);
    }
}
