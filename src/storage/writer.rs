//! The storage-writer thread: the only code that writes the store and the block files. What a
//! job contains is the committer's business (the chain's `ChainDb`); the writer sequences jobs,
//! reports progress and stops cleanly.

use super::{PruneRequest, Store, Table, WriteBatch};
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Receiver};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes jobs durable; implemented by the chain's persistence layer.
pub trait Committer: Send + 'static {
    /// One unit of work.
    type Job: Send + 'static;
    /// Why a commit failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Writes `job` durably and atomically (as far as the store is concerned).
    fn commit(&mut self, job: &Self::Job) -> Result<(), Self::Error>;
}

/// A job with its sequence number; `committed` reaches `seq` once it is durable.
pub struct Sequenced<J> {
    /// Increasing per producer.
    pub seq: u64,
    /// The job.
    pub job: J,
}

/// A commit failed: the writer stops and the node restarts, repairing on start.
#[derive(Debug, thiserror::Error)]
#[error("storage commit failed")]
pub struct WriterError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Everything the writer thread owns.
pub struct Writer<C: Committer> {
    /// Turns jobs into durable writes.
    pub committer: C,
    /// The store (for its size and backend).
    pub store: Arc<dyn Store>,
    /// Jobs from the chain thread.
    pub jobs: Receiver<Sequenced<C::Job>>,
    /// Requests from the pruning monitor.
    pub prunes: Receiver<PruneRequest>,
    /// Records for the `peers` table (address book, bans) from the p2p thread.
    pub peer_records: Receiver<Vec<(Vec<u8>, Vec<u8>)>>,
    /// The last durable sequence number, read by the producer.
    pub committed: Arc<AtomicU64>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the storage view is published.
    pub shared: Arc<Shared>,
    /// Commit timings.
    pub metrics: Arc<Metrics>,
    /// How often to beat when idle.
    pub tick: Duration,
    /// Set when running on the sled fallback: storage reports degraded.
    pub fallback_reason: Option<String>,
}

impl<C: Committer> Writer<C> {
    /// Commits jobs until stopped, then commits what is still queued.
    pub fn run(mut self) -> Result<(), WriterError> {
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
                recv(self.jobs) -> msg => match msg {
                    Ok(job) => self.commit(job)?,
                    // The chain thread is gone: nothing more can arrive.
                    Err(_) => break,
                },
                recv(self.prunes) -> msg => if let Ok(req) = msg {
                    // Deleting block files arrives with pruning; until then the request is noted.
                    log::debug!("prune request to {} bytes: pruning not implemented yet", req.target_bytes);
                },
                recv(self.peer_records) -> msg => if let Ok(records) = msg {
                    self.write_peers(records)?;
                },
                recv(self.stop.receiver()) -> _ => break,
                default(self.tick) => self.publish(true),
            }
        }
        let mut drained = 0;
        while let Ok(job) = self.jobs.try_recv() {
            self.commit(job)?;
            drained += 1;
        }
        // p2p saves its tables as it stops, before this stage.
        while let Ok(records) = self.peer_records.try_recv() {
            self.write_peers(records)?;
        }
        log::info!(drained = drained; "storage writer stopped after committing queued jobs");
        self.publish(false);
        Ok(())
    }

    fn commit(&mut self, job: Sequenced<C::Job>) -> Result<(), WriterError> {
        let started = Instant::now();
        self.committer
            .commit(&job.job)
            .map_err(|e| WriterError(Box::new(e)))?;
        self.metrics
            .storage_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.committed.store(job.seq, Ordering::Release);
        Ok(())
    }

    fn write_peers(&self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), WriterError> {
        let mut batch = WriteBatch::default();
        for (k, v) in records {
            batch.put(Table::Peers, k, v);
        }
        self.store
            .apply(&batch)
            .map_err(|e| WriterError(Box::new(e)))
    }

    fn publish(&self, available: bool) {
        let mut view = self.shared.storage.write();
        view.available = available;
        view.size_bytes = self.store.size_bytes();
        view.backend = self.store.backend();
    }
}
