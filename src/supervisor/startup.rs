//! While the node starts, systemd is told it is still working (`EXTEND_TIMEOUT_USEC`), for as
//! long as it is: a store being opened or repaired, an index rebuilt, a reindex. Work is what
//! the process reads and writes on disk and the CPU it uses (this thread's own left out). A
//! start-up that stops moving gets no more extensions, so the unit's `TimeoutStartSec=` ends
//! it and `Restart=` tries again, where a start timeout of `infinity` would wait for ever.

use super::systemd::Notifier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often progress is looked at and the timeout extended, in production.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the process has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Bytes read from and written to storage.
    pub io_bytes: u64,
    /// CPU ticks of every thread but the one looking.
    pub cpu_ticks: u64,
}

/// Decides, from samples of the work done, whether start-up still moves.
#[derive(Debug)]
pub struct Progress {
    last: Work,
    moved_at: Instant,
    stall_limit: Duration,
}

impl Progress {
    /// Starts watching at `now`; no movement for `stall_limit` is a stall.
    pub fn new(now: Instant, work: Work, stall_limit: Duration) -> Progress {
        Progress {
            last: work,
            moved_at: now,
            stall_limit,
        }
    }

    /// Records a sample; whether start-up moved within the stall limit (extend, then).
    pub fn moving(&mut self, now: Instant, work: Work) -> bool {
        if work != self.last {
            self.last = work;
            self.moved_at = now;
        }
        now.saturating_duration_since(self.moved_at) < self.stall_limit
    }
}

/// The process's work as /proc tells it, without the calling thread's CPU.
pub fn work_now() -> Work {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let ticks = |path: &str| {
        let stat = std::fs::read_to_string(path).unwrap_or_default();
        // After the command (which may hold spaces): utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    };
    Work {
        io_bytes: field(&io, "read_bytes:") + field(&io, "write_bytes:"),
        cpu_ticks: ticks("/proc/self/stat").saturating_sub(ticks("/proc/thread-self/stat")),
    }
}

/// Extends systemd's start timeout every `every` while start-up moves, until `done`. Outside
/// systemd it does nothing and returns `None`.
pub fn spawn(every: Duration, done: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    let notifier = Notifier::from_env();
    if !notifier.enabled() {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("startup-notify".into())
        .spawn(move || {
            let mut progress = Progress::new(Instant::now(), work_now(), every * 12);
            let mut logged_stall = false;
            while !done.load(Ordering::Acquire) {
                std::thread::park_timeout(every);
                if done.load(Ordering::Acquire) {
                    return;
                }
                if progress.moving(Instant::now(), work_now()) {
                    // Three intervals: one missed wake-up is no reason to be killed.
                    notifier.extend_timeout(every * 3);
                    logged_stall = false;
                } else if !logged_stall {
                    logged_stall = true;
                    log::warn!(
                        "start-up has made no progress for {} s: systemd's start timeout is no longer extended",
                        (every * 12).as_secs()
                    );
                }
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            log::warn!("cannot start the start-up notifier: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_while_work_moves_and_stops_after_the_stall_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let w = |io, cpu| Work {
            io_bytes: io,
            cpu_ticks: cpu,
        };
        let mut p = Progress::new(t0, w(0, 0), 5 * s);
        assert!(p.moving(t0 + s, w(10, 0)), "reading");
        assert!(p.moving(t0 + 2 * s, w(10, 3)), "computing");
        assert!(
            p.moving(t0 + 6 * s, w(10, 3)),
            "quiet for less than the limit"
        );
        assert!(
            !p.moving(t0 + 7 * s, w(10, 3)),
            "quiet for the limit: a stall"
        );
        assert!(p.moving(t0 + 8 * s, w(11, 3)), "moving again");
    }

    #[test]
    fn this_process_has_done_work() {
        let before = work_now();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let after = work_now();
        assert!(x > 0);
        assert!(after.cpu_ticks >= before.cpu_ticks);
    }
}
