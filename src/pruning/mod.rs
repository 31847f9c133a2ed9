//! The pruning monitor: reads the datadir's disk space on an interval, turns health degraded
//! past `disk_warn_percent`, and past `disk_critical_percent` asks the writer to prune what the
//! mode allows at once. Routine pruning by size happens in the writer after each commit.

pub mod disk;
pub mod policy;

pub use policy::MIN_BLOCKS_TO_KEEP;

use crate::config::{PruningMode, StorageConfig};
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::storage::{PruneRequest, PruneTrigger};
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Sender, TrySendError};
use disk::{Level, Thresholds};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The RPC cookie, written here once space returns if the disk was full at start.
    pub cookie: Arc<crate::rpc::auth::CookieFile>,
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
        let mut marks = Thresholds::new(
            self.config.disk_warn_percent / 100.0,
            self.config.disk_critical_percent / 100.0,
        );
        self.metrics
            .disk
            .warn_ratio
            .set(self.config.disk_warn_percent / 100.0);
        self.metrics
            .disk
            .critical_ratio
            .set(self.config.disk_critical_percent / 100.0);
        let mut next_check = Instant::now();
        loop {
            self.heartbeat.beat();
            if Instant::now() >= next_check {
                self.check(&mut marks)?;
                next_check = Instant::now() + interval;
            }
            select! {
                recv(self.stop.receiver()) -> _ => return Ok(()),
                default(self.tick) => {}
            }
        }
    }

    fn check(&self, marks: &mut Thresholds) -> Result<(), PruningError> {
        let (avail, total) = match (fs2::available_space(&self.dir), fs2::total_space(&self.dir)) {
            (Ok(a), Ok(t)) => (a, t),
            (Err(e), _) | (_, Err(e)) => {
                self.heartbeat
                    .set_status(Status::Degraded, format!("cannot read disk space: {e}"));
                return Ok(());
            }
        };
        if !self.cookie.written() {
            match self.cookie.write() {
                Ok(()) => log::info!("RPC cookie {} written", self.cookie.path().display()),
                Err(e) => log::debug!("RPC cookie still not written: {e}"),
            }
        }
        self.metrics.disk_available_bytes.set(avail as i64);
        self.metrics.disk_total_bytes.set(total as i64);
        let used = disk::used_share(total, avail);
        self.metrics.disk.used_ratio.set(used);
        let changed = marks.observe(used);
        let percent = used * 100.0;
        let c = &self.config;
        let reason = match marks.level() {
            Level::Normal => String::new(),
            Level::Warn => format!(
                "disk {percent:.1}% used (warning at {}%, critical at {}%)",
                c.disk_warn_percent, c.disk_critical_percent
            ),
            Level::Critical => format!(
                "disk {percent:.1}% used (critical at {}%): {}",
                c.disk_critical_percent,
                self.critical_action()
            ),
        };
        match changed {
            Some(Level::Normal) => log::info!(
                used_percent = percent;
                "disk {percent:.1}% used: below the warning mark ({}%) again", c.disk_warn_percent
            ),
            Some(Level::Warn) => log::warn!(used_percent = percent; "{reason}"),
            Some(Level::Critical) => log::error!(used_percent = percent; "{reason}"),
            None => {}
        }
        match marks.level() {
            Level::Normal => self.heartbeat.set_status(Status::Healthy, ""),
            _ => self.heartbeat.set_status(Status::Degraded, reason),
        }
        if marks.level() == Level::Critical && c.pruning_mode.automatic() {
            let req = PruneRequest {
                trigger: PruneTrigger::DiskCritical,
                reply: None,
            };
            match self.prunes.try_send(req) {
                // A request already queued covers this one.
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return Err(PruningError::WriterGone),
            }
        }
        Ok(())
    }

    /// What the node does about a critical disk, in the operator's words.
    fn critical_action(&self) -> String {
        match self.config.pruning_mode {
            PruningMode::Normal => "pruning block files down to pruning_target_gb now".into(),
            PruningMode::Aggressive => {
                format!("pruning every block file but the last {MIN_BLOCKS_TO_KEEP} blocks now")
            }
            PruningMode::Custom => format!(
                "pruning every block file but the last {} blocks now",
                self.config.keep_recent_blocks
            ),
            PruningMode::Manual => {
                "pruning_mode = \"manual\" prunes nothing by itself: free space or call pruneblockchain".into()
            }
            PruningMode::Disabled => {
                "pruning is disabled: free space, or set pruning_mode (block data can be pruned)"
                    .into()
            }
        }
    }
}
