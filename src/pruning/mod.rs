//! The pruning monitor: reads disk space on an interval and asks the writer to prune.

use crate::config::{PruningMode, StorageConfig};
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::storage::PruneRequest;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Sender, TrySendError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GB: f64 = 1e9;

/// Pure: whether block data of `used_bytes` must be pruned, and to what size.
pub fn decide(cfg: &StorageConfig, used_bytes: u64) -> Option<PruneRequest> {
    if cfg.pruning_mode != PruningMode::Auto {
        return None;
    }
    let threshold = (cfg.pruning_threshold_gb * GB) as u64;
    (used_bytes > threshold).then_some(PruneRequest {
        target_bytes: (cfg.pruning_target_gb * GB) as u64,
    })
}

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum PruningError {
    /// The storage writer is gone.
    #[error("storage writer is gone")]
    WriterGone,
}

/// Everything the pruning-monitor thread owns.
pub struct PruningMonitor {
    /// Thresholds and interval.
    pub config: StorageConfig,
    /// `<datadir>/<network>/`.
    pub dir: PathBuf,
    /// Requests to the writer.
    pub prunes: Sender<PruneRequest>,
    /// Disk gauges.
    pub metrics: Arc<Metrics>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// How often to beat.
    pub tick: Duration,
}

impl PruningMonitor {
    /// Checks the disk every `pruning_check_interval_secs` until stopped.
    pub fn run(self) -> Result<(), PruningError> {
        let interval = Duration::from_secs_f64(self.config.pruning_check_interval_secs);
        let mut next_check = Instant::now();
        loop {
            self.heartbeat.beat();
            if Instant::now() >= next_check {
                self.check()?;
                next_check = Instant::now() + interval;
            }
            select! {
                recv(self.stop.receiver()) -> _ => return Ok(()),
                default(self.tick) => {}
            }
        }
    }

    fn check(&self) -> Result<(), PruningError> {
        match (fs2::available_space(&self.dir), fs2::total_space(&self.dir)) {
            (Ok(avail), Ok(total)) => {
                self.metrics.disk_available_bytes.set(avail as i64);
                self.metrics.disk_total_bytes.set(total as i64);
                self.heartbeat.set_status(Status::Healthy, "");
            }
            (Err(e), _) | (_, Err(e)) => {
                self.heartbeat
                    .set_status(Status::Degraded, format!("cannot read disk space: {e}"));
            }
        }
        let used = dir_size(&self.dir.join("blocks"));
        self.metrics.block_files_bytes.set(used as i64);
        if let Some(req) = decide(&self.config, used) {
            match self.prunes.try_send(req) {
                // A request already queued covers this one.
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return Err(PruningError::WriterGone),
            }
        }
        Ok(())
    }
}

/// Sum of file sizes directly in `dir` (block files are not nested); 0 if absent.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_only_in_auto_mode_past_the_threshold() {
        let mut cfg = StorageConfig {
            pruning_threshold_gb: 0.010,
            pruning_target_gb: 0.005,
            ..StorageConfig::default()
        };
        assert_eq!(decide(&cfg, 20_000_000), None);
        cfg.pruning_mode = PruningMode::Auto;
        assert_eq!(decide(&cfg, 10_000_000), None);
        assert_eq!(
            decide(&cfg, 10_000_001),
            Some(PruneRequest {
                target_bytes: 5_000_000
            })
        );
    }
}
