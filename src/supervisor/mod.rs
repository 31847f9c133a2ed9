//! The supervisor: watches heartbeats, speaks to systemd, and runs the ordered shutdown.

pub mod health;
pub mod signals;
pub mod startup;
pub mod systemd;

use crate::lifecycle::StopSender;
use crate::messages::P2pCommand;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::thread::{ComponentFailed, Failure};
use crossbeam_channel::{select, Receiver, Sender};
use health::{Heartbeat, Status};
use signals::Signal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use systemd::{Notifier, WatchdogAction, WatchdogTimer};

/// Exit code when a component failed (error or panic).
pub const EXIT_COMPONENT_FAILED: i32 = 2;
/// Exit code when shutdown did not finish in time.
pub const EXIT_SHUTDOWN_TIMEOUT: i32 = 1;

/// One step of the shutdown order: stop these threads and wait for them.
pub struct Stage {
    /// Name used in logs ("rpc", "p2p", ...).
    pub name: &'static str,
    /// Dropping it asks the threads to stop.
    pub stop: StopSender,
    /// The threads of this stage.
    pub threads: Vec<JoinHandle<()>>,
}

/// Everything the supervisor loop owns.
pub struct Supervisor {
    /// Shared views.
    pub shared: Arc<Shared>,
    /// Registry.
    pub metrics: Arc<Metrics>,
    /// systemd.
    pub notifier: Notifier,
    /// The supervisor's own heartbeat.
    pub heartbeat: Heartbeat,
    /// Component failures.
    pub failures: Receiver<ComponentFailed>,
    /// Signals.
    pub signals: Receiver<Signal>,
    /// Commands to p2p (close the listener first).
    pub p2p_commands: Sender<P2pCommand>,
    /// Wakes the p2p loop after a command.
    pub p2p_waker: Arc<mio::Waker>,
    /// Shutdown order.
    pub stages: Vec<Stage>,
    /// Loop interval.
    pub tick: Duration,
    /// Heartbeat staleness limit.
    pub heartbeat_timeout: Duration,
    /// Overall shutdown deadline.
    pub shutdown_timeout: Duration,
    /// Held so the chain's request channel stays open until shutdown; RPC workers get clones.
    pub chain_requests: Sender<crate::chain::ChainRequest>,
}

impl Supervisor {
    /// Runs until a signal or a failure, then shuts down; returns the process exit code.
    pub fn run(self) -> i32 {
        let mut watchdog = self.notifier.watchdog_interval.map(WatchdogTimer::new);
        let mut ready_sent = false;
        let mut last_status = String::new();
        self.heartbeat.set_status(Status::Healthy, "");
        let exit_code = loop {
            self.heartbeat.beat();
            let now = Instant::now();
            let eval = self.shared.vitals.evaluate(now, self.heartbeat_timeout);
            if !ready_sent && self.shared.readiness().ready() {
                ready_sent = true;
                log::info!("node is ready");
                self.notifier.ready("ready");
            }
            let status = status_line(&eval);
            if status != last_status {
                self.notifier.status(&status);
                last_status = status;
            }
            if let Some(w) = watchdog.as_mut() {
                match w.poll(now, eval.all_fresh) {
                    WatchdogAction::Wait => {}
                    WatchdogAction::Notify => {
                        self.notifier.watchdog();
                        self.count_watchdog("sent");
                    }
                    WatchdogAction::Withhold => {
                        log::warn!(
                            "watchdog withheld: a component heartbeat is stale ({last_status})"
                        );
                        self.count_watchdog("withheld");
                    }
                }
            }
            select! {
                recv(self.signals) -> sig => match sig {
                    Ok(Signal::Terminate(_)) => break 0,
                    Ok(Signal::Corruption) => break signals::CORRUPTION_EXIT_CODE,
                    Ok(Signal::Restart) => break signals::RESTART_EXIT_CODE,
                    Err(_) => {}
                },
                recv(self.failures) -> f => if let Ok(f) = f {
                    self.record_failure(&f);
                    break EXIT_COMPONENT_FAILED;
                },
                default(self.tick) => {}
            }
        };
        self.shutdown(exit_code)
    }

    fn count_watchdog(&self, outcome: &str) {
        self.metrics
            .watchdog_notifications_total
            .with_label_values(&[outcome])
            .inc();
    }

    fn record_failure(&self, f: &ComponentFailed) {
        let (kind, what) = match &f.failure {
            Failure::Error(e) => ("error", e.as_str()),
            Failure::Panic(p) => ("panic", p.as_str()),
        };
        log::error!(component = f.component.name(), thread = f.thread.as_str(); "component {} ({kind} in thread {}) failed: {what}; shutting down", f.component, f.thread);
        self.metrics
            .component_failures_total
            .with_label_values(&[f.component.name(), kind])
            .inc();
        self.shared
            .vitals
            .heartbeat(f.component, None)
            .set_status(Status::Unhealthy, format!("{kind}: {what}"));
    }

    /// The design's shutdown order; returns `code`, or 1 if a stage missed its deadline. Stage
    /// `i` of `n` must be done by `(i + 1) / n` of the shutdown timeout: what a quick stage
    /// leaves goes to the later ones, and a stuck stage uses only its share, so the stages
    /// after it still get theirs (the storage writer's flush among them).
    fn shutdown(mut self, code: i32) -> i32 {
        let started = Instant::now();
        self.shared.shutting_down.store(true, Ordering::Release);
        self.metrics.shutdown_in_progress.set(1);
        if code == signals::RESTART_EXIT_CODE {
            self.notifier
                .reloading("restarting to rebuild the chain state from the block files");
        } else {
            self.notifier.stopping("stopping");
        }
        log::info!("shutdown started");
        // Stop accepting peers first; the dispatcher already refuses new RPC.
        if self
            .p2p_commands
            .try_send(P2pCommand::CloseListener)
            .is_ok()
        {
            let _ = self.p2p_waker.wake();
        }
        let mut stuck = Vec::new();
        let stages = std::mem::take(&mut self.stages);
        let n = stages.len().max(1) as u32;
        for (i, stage) in stages.into_iter().enumerate() {
            stage.stop.stop();
            let deadline = started + self.shutdown_timeout * (i as u32 + 1) / n;
            let finished = wait_until(&stage.threads, deadline, || self.heartbeat.beat());
            if finished {
                log::info!("shutdown: {} stopped", stage.name);
            } else {
                stuck.push(stage.name);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // A component that failed while stopping (the writer with blocks it could not write)
        // makes the exit unclean, so systemd's on-failure restart applies.
        let mut code = code;
        for f in self.failures.try_iter() {
            self.record_failure(&f);
            code = code.max(EXIT_COMPONENT_FAILED);
        }
        if stuck.is_empty() {
            log::info!(elapsed_secs = format!("{elapsed:.3}").as_str(); "all components stopped");
            code
        } else {
            log::error!(
                "shutdown timed out after {:.1}s; stuck: {}",
                self.shutdown_timeout.as_secs_f64(),
                stuck.join(", ")
            );
            EXIT_SHUTDOWN_TIMEOUT
        }
    }
}

/// Polls until every thread has finished or the deadline passes; `beat` keeps the caller live.
fn wait_until(threads: &[JoinHandle<()>], deadline: Instant, beat: impl Fn()) -> bool {
    loop {
        if threads.iter().all(|t| t.is_finished()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        beat();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `healthy`, or `degraded: chain: catching up; ...`.
fn status_line(eval: &health::Evaluation) -> String {
    let problems: Vec<String> = eval
        .components
        .iter()
        .filter(|c| c.status != Status::Healthy)
        .map(|c| format!("{}: {}", c.component, c.reason))
        .collect();
    if problems.is_empty() {
        eval.overall.as_str().to_owned()
    } else {
        format!("{}: {}", eval.overall.as_str(), problems.join("; "))
    }
}
