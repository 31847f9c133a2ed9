//! The storage-writer thread: the only code that writes the store.

use super::{PruneRequest, StorageError, Store, WriteBatch};
use crate::lifecycle::StopSignal;
use crate::state::Shared;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Receiver};
use std::sync::Arc;
use std::time::Duration;

/// Everything the writer thread owns.
pub struct Writer {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Batches from the chain thread.
    pub batches: Receiver<WriteBatch>,
    /// Requests from the pruning monitor.
    pub prunes: Receiver<PruneRequest>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the storage view is published.
    pub shared: Arc<Shared>,
    /// How often to beat when idle.
    pub tick: Duration,
    /// Set when running on the sled fallback: storage reports degraded.
    pub fallback_reason: Option<String>,
}

impl Writer {
    /// Applies batches until stopped, then drains and commits what is queued.
    pub fn run(self) -> Result<(), StorageError> {
        self.publish(true);
        match &self.fallback_reason {
            Some(why) => self.heartbeat.set_status(
                Status::Degraded,
                format!("running on the sled fallback: {why}"),
            ),
            None => self.heartbeat.set_status(Status::Healthy, ""),
        }
        loop {
            self.heartbeat.beat();
            select! {
                recv(self.batches) -> msg => match msg {
                    Ok(batch) => self.apply(&batch)?,
                    // The chain thread is gone: nothing more can arrive.
                    Err(_) => break,
                },
                recv(self.prunes) -> msg => if let Ok(req) = msg {
                    // Block files arrive with the chain-state issue; until then there is nothing to delete.
                    log::debug!("prune request to {} bytes: no block files to prune", req.target_bytes);
                },
                recv(self.stop.receiver()) -> _ => break,
                default(self.tick) => self.publish(true),
            }
        }
        let mut drained = 0;
        while let Ok(batch) = self.batches.try_recv() {
            self.apply(&batch)?;
            drained += 1;
        }
        log::info!(drained = drained; "storage writer stopped after committing queued batches");
        self.publish(false);
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.store.apply(batch)?;
        self.publish(true);
        Ok(())
    }

    fn publish(&self, available: bool) {
        let mut view = self.shared.storage.write();
        view.available = available;
        view.size_bytes = self.store.size_bytes();
        view.backend = self.store.backend();
    }
}
