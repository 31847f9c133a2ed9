//! systemd's notify protocol: READY, STATUS, WATCHDOG, STOPPING. A no-op outside systemd.

use std::time::{Duration, Instant};

/// Sends notifications when `NOTIFY_SOCKET` is set.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// Half of `WATCHDOG_USEC`, when systemd asked for a watchdog.
    pub watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let var = |k| std::env::var(k).ok();
        let watchdog_interval = enabled
            .then(|| {
                watchdog_usec(
                    var("WATCHDOG_USEC"),
                    var("WATCHDOG_PID"),
                    std::process::id(),
                )
            })
            .flatten()
            .map(|usec| Duration::from_micros(usec / 2))
            .filter(|d| !d.is_zero());
        Notifier {
            enabled,
            watchdog_interval,
        }
    }

    fn send(&self, state: &[sd_notify::NotifyState<'_>]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(false, state) {
                log::warn!("sd_notify failed: {e}");
            }
        }
    }

    /// Whether systemd listens (`NOTIFY_SOCKET` is set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `EXTEND_TIMEOUT_USEC=...`: the current state's timeout runs at least `by` more.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[sd_notify::NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }

    /// `RELOADING=1` (with the monotonic time systemd asks for) and a status line: the process
    /// is about to replace itself and will say `READY=1` again.
    pub fn reloading(&self, status: &str) {
        let mut states = vec![
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::Status(status),
        ];
        if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status(status),
        ]);
    }
}

/// systemd's `sd_watchdog_enabled()` rule: `WATCHDOG_USEC` applies unless `WATCHDOG_PID` names
/// another process. (The sd-notify crate also rejects an unset PID, which systemd accepts.)
fn watchdog_usec(usec: Option<String>, pid: Option<String>, own_pid: u32) -> Option<u64> {
    let usec = usec?.parse().ok().filter(|u| *u > 0)?;
    match pid {
        Some(p) if p.parse::<u32>().ok() != Some(own_pid) => None,
        _ => Some(usec),
    }
}

/// When the watchdog is due: every `interval`, and only while every heartbeat is fresh.
#[derive(Debug)]
pub struct WatchdogTimer {
    interval: Duration,
    last: Option<Instant>,
}

/// What to do with the watchdog now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogAction {
    /// Not due yet.
    Wait,
    /// Send `WATCHDOG=1`.
    Notify,
    /// Due, but a component is stale: let systemd's timer run out.
    Withhold,
}

impl WatchdogTimer {
    /// A timer that fires every `interval`.
    pub fn new(interval: Duration) -> WatchdogTimer {
        WatchdogTimer {
            interval,
            last: None,
        }
    }

    /// Pure decision given the time and whether every heartbeat is fresh.
    pub fn poll(&mut self, now: Instant, all_fresh: bool) -> WatchdogAction {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            return WatchdogAction::Wait;
        }
        self.last = Some(now);
        if all_fresh {
            WatchdogAction::Notify
        } else {
            WatchdogAction::Withhold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env_follows_systemd_rules() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(watchdog_usec(s("400000"), None, 7), Some(400_000));
        assert_eq!(watchdog_usec(s("400000"), s("7"), 7), Some(400_000));
        assert_eq!(watchdog_usec(s("400000"), s("8"), 7), None);
        assert_eq!(watchdog_usec(s("0"), None, 7), None);
        assert_eq!(watchdog_usec(s("soon"), None, 7), None);
        assert_eq!(watchdog_usec(None, s("7"), 7), None);
    }

    #[test]
    fn notifies_each_interval_and_withholds_while_stale() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = WatchdogTimer::new(s * 10);
        assert_eq!(w.poll(t0, true), WatchdogAction::Notify);
        assert_eq!(w.poll(t0 + s * 5, true), WatchdogAction::Wait);
        assert_eq!(w.poll(t0 + s * 10, false), WatchdogAction::Withhold);
        assert_eq!(w.poll(t0 + s * 15, true), WatchdogAction::Wait);
        assert_eq!(w.poll(t0 + s * 20, true), WatchdogAction::Notify);
    }
}
