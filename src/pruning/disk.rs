//! Disk thresholds as a state machine: a used share goes in, a level and the transition to log
//! come out, so the monitor logs each crossing once (up and down) and tests need no disk.

/// How full the datadir's filesystem is, against the configured marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Below `disk_warn_percent`.
    Normal,
    /// At or past `disk_warn_percent`: health degraded.
    Warn,
    /// At or past `disk_critical_percent`: prune what the mode allows, now.
    Critical,
}

/// The marks and the last level seen.
#[derive(Debug, Clone)]
pub struct Thresholds {
    warn: f64,
    critical: f64,
    level: Level,
}

impl Thresholds {
    /// Marks as used shares (0 to 1).
    pub fn new(warn: f64, critical: f64) -> Thresholds {
        Thresholds {
            warn,
            critical,
            level: Level::Normal,
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Takes a reading; returns the new level when it changed.
    pub fn observe(&mut self, used: f64) -> Option<Level> {
        let level = if used >= self.critical {
            Level::Critical
        } else if used >= self.warn {
            Level::Warn
        } else {
            Level::Normal
        };
        (level != self.level).then(|| {
            self.level = level;
            level
        })
    }
}

/// The used share of a filesystem from its total and available bytes.
pub fn used_share(total: u64, available: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    1.0 - available.min(total) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_crossing_is_reported_once_up_and_down() {
        let mut t = Thresholds::new(0.80, 0.90);
        let seen: Vec<_> = [0.10, 0.80, 0.84, 0.89, 0.95, 0.97, 0.85, 0.50, 0.50, 0.95]
            .into_iter()
            .map(|u| t.observe(u))
            .collect();
        assert_eq!(
            seen,
            vec![
                None,
                Some(Level::Warn),
                None,
                None,
                Some(Level::Critical),
                None,
                Some(Level::Warn),
                Some(Level::Normal),
                None,
                Some(Level::Critical),
            ]
        );
    }

    #[test]
    fn used_share_of_a_filesystem() {
        assert_eq!(used_share(100, 25), 0.75);
        assert_eq!(used_share(100, 0), 1.0);
        assert_eq!(used_share(0, 0), 0.0);
        assert_eq!(used_share(100, 200), 0.0);
    }
}
