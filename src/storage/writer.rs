//! The storage-writer thread: the only code that writes the store and the block files. What a
//! job contains is the committer's business (the chain's `ChainDb`); the writer sequences jobs,
//! prunes, reports progress and stops cleanly. A failed commit (a full disk) is a state, not a
//! crash: the job is kept and retried, no new job is taken, and the chain sees the reason in
//! the shared storage view and refuses new blocks until a retry succeeds.

use super::{
    backup, BackupReply, BackupReport, PruneReport, PruneRequest, PruneTrigger, Store, Table,
    WriteBatch,
};
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{never, select, Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes jobs durable and prunes block files; implemented by the chain's persistence layer.
pub trait Committer: Send + 'static {
    /// One unit of work.
    type Job: Send + 'static;
    /// Why a commit failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Writes `job` durably and atomically (as far as the store is concerned). On failure
    /// nothing of it counts, and the same job may be committed again.
    fn commit(&mut self, job: &Self::Job) -> Result<(), Self::Error>;
    /// After a failed commit: makes the store usable again (reopens it).
    fn recover(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Deletes block files as `trigger` allows; `None` when nothing was deleted.
    fn prune(&mut self, _trigger: PruneTrigger) -> Result<Option<PruneReport>, Self::Error> {
        Ok(None)
    }
    /// Highest block height pruned so far.
    fn prune_height(&self) -> Option<u32> {
        None
    }
    /// Bytes of the block and undo files.
    fn block_files_bytes(&self) -> u64 {
        0
    }
    /// The latest damage found in stored data, for health.
    fn damage(&self) -> Option<String> {
        None
    }
}

/// A job with its sequence number; `committed` reaches `seq` once it is durable.
pub struct Sequenced<J> {
    /// Increasing per producer.
    pub seq: u64,
    /// The job.
    pub job: J,
}

/// The writer could not finish: a job it had taken is not durable at shutdown.
#[derive(Debug, thiserror::Error)]
#[error("storage writer stopped with {jobs} job(s) not written")]
pub struct WriterError {
    /// Jobs lost.
    pub jobs: usize,
    /// The last write error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// First wait between retries of a failed commit; it doubles up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A job whose commit failed, waiting for its retry.
struct Held<J> {
    job: Sequenced<J>,
    since: Instant,
    attempts: u32,
    retry_at: Instant,
    error: Box<dyn std::error::Error + Send + Sync>,
}

/// Everything the writer thread owns.
pub struct Writer<C: Committer> {
    /// Turns jobs into durable writes.
    pub committer: C,
    /// The store (for its size and backend).
    pub store: Arc<dyn Store>,
    /// Jobs from the chain thread.
    pub jobs: Receiver<Sequenced<C::Job>>,
    /// Requests from the pruning monitor and `pruneblockchain`.
    pub prunes: Receiver<PruneRequest>,
    /// Records for the `peers` table (address book, bans) from the p2p thread.
    pub peer_records: Receiver<Vec<(Vec<u8>, Vec<u8>)>>,
    /// The last durable sequence number, read by the producer.
    pub committed: Arc<AtomicU64>,
    /// Woken (without blocking) after each commit, so the producer need not poll.
    pub commit_notify: Sender<()>,
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
    /// `backupchainstate` requests.
    pub backup_requests: Receiver<BackupReply>,
    /// The last backup's failure, until one succeeds.
    pub backup_error: Option<String>,
    /// Set (`storage.on_corruption = "shutdown"`): damage found stops the node with exit 3.
    pub stop_on_corruption: Option<crossbeam_channel::Sender<crate::supervisor::signals::Signal>>,
    /// Where and how often backups are taken.
    pub backups: BackupSettings,
}

/// Backups of the store, from `[storage]`.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The directory backups go in.
    pub root: std::path::PathBuf,
    /// Between scheduled backups; `None`: only on request.
    pub every: Option<Duration>,
    /// Days of which the newest backup is kept.
    pub keep_daily: u32,
    /// Weeks of which the newest backup is kept.
    pub keep_weekly: u32,
    /// Core's network name, for the manifest.
    pub network: String,
    /// A backup that would take the filesystem past this used share is skipped.
    pub disk_warn_share: f64,
}

impl<C: Committer> Writer<C> {
    /// Commits jobs until stopped, then commits what is still queued.
    pub fn run(mut self) -> Result<(), WriterError> {
        self.publish(true);
        self.set_status(None);
        let mut held: Option<Held<C::Job>> = None;
        let mut next_backup = self.backups.every.map(|d| Instant::now() + d);
        loop {
            self.heartbeat.beat();
            if held.is_none() && next_backup.is_some_and(|t| Instant::now() >= t) {
                let _ = self.backup();
                next_backup = self.backups.every.map(|d| Instant::now() + d);
            }
            if held.as_ref().is_some_and(|h| Instant::now() >= h.retry_at) {
                held = held.and_then(|h| self.retry(h));
            }
            // While a job is held no other is taken: the queue fills and the chain pauses.
            let none = never();
            let jobs = if held.is_some() { &none } else { &self.jobs };
            let idle = match &held {
                Some(h) => h.retry_at.saturating_duration_since(Instant::now()),
                None => self.tick,
            }
            .min(self.tick);
            select! {
                recv(jobs) -> msg => match msg {
                    Ok(job) => held = self.commit(job),
                    // The chain thread is gone: nothing more can arrive.
                    Err(_) => break,
                },
                recv(self.prunes) -> msg => if let Ok(req) = msg {
                    self.prune_request(req, held.is_some());
                },
                recv(self.peer_records) -> msg => if let Ok(records) = msg {
                    self.write_peers(records);
                },
                recv(self.backup_requests) -> msg => if let Ok(reply) = msg {
                    // As fresh as the chain has handed over: what is queued is committed first.
                    while held.is_none() {
                        match self.jobs.try_recv() {
                            Ok(job) => held = self.commit(job),
                            Err(_) => break,
                        }
                    }
                    let result = match &held {
                        Some(h) => Err(format!("storage writes are failing ({}); no backup now", h.error)),
                        None => self.backup(),
                    };
                    let _ = reply.send(result);
                },
                recv(self.stop.receiver()) -> _ => break,
                default(idle) => {
                    self.publish(true);
                    if held.is_none() {
                        // Reads elsewhere may have found damage since.
                        self.set_status(None);
                    }
                }
            }
        }
        // Shutdown: one more try for a held job, then whatever is queued.
        let mut lost = 0;
        let mut last_error = None;
        if let Some(h) = held {
            if let Some(h) = self.retry(h) {
                lost += 1;
                last_error = Some(h.error);
            }
        }
        let mut drained = 0;
        while let Ok(job) = self.jobs.try_recv() {
            if last_error.is_some() {
                lost += 1;
                continue;
            }
            match self.commit(job) {
                None => drained += 1,
                Some(h) => {
                    lost += 1;
                    last_error = Some(h.error);
                }
            }
        }
        // p2p saves its tables as it stops, before this stage.
        while let Ok(records) = self.peer_records.try_recv() {
            self.write_peers(records);
        }
        self.publish(false);
        match last_error {
            None => {
                log::info!(drained = drained; "storage writer stopped after committing queued jobs");
                Ok(())
            }
            Some(source) => {
                log::error!(
                    lost = lost;
                    "storage writer stopped with {lost} job(s) not written ({source}): the blocks in them are fetched or mined again after restart"
                );
                Err(WriterError { jobs: lost, source })
            }
        }
    }

    /// Commits `job`; on failure returns it held for a retry.
    fn commit(&mut self, job: Sequenced<C::Job>) -> Option<Held<C::Job>> {
        let started = Instant::now();
        match self.committer.commit(&job.job) {
            Ok(()) => {
                self.committed(&job, started);
                None
            }
            Err(e) => {
                self.metrics.disk.write_failures_total.inc();
                self.metrics.disk.writes_paused.set(1);
                let reason = format!(
                    "storage writes are failing ({e}); new blocks are refused until a retry succeeds"
                );
                log::error!("{reason}");
                self.set_status(Some(&reason));
                self.shared.storage.write().write_error = Some(reason);
                Some(Held {
                    job,
                    since: started,
                    attempts: 1,
                    retry_at: Instant::now() + RETRY_FIRST,
                    error: Box::new(e),
                })
            }
        }
    }

    /// Reopens the store and commits the held job again; returns it when that failed too.
    fn retry(&mut self, mut h: Held<C::Job>) -> Option<Held<C::Job>> {
        let started = Instant::now();
        let outcome = self
            .committer
            .recover()
            .and_then(|()| self.committer.commit(&h.job.job));
        match outcome {
            Ok(()) => {
                log::info!(
                    attempts = h.attempts + 1;
                    "storage writes resumed after {:.1} s",
                    h.since.elapsed().as_secs_f64()
                );
                self.metrics.disk.writes_paused.set(0);
                self.shared.storage.write().write_error = None;
                self.set_status(None);
                self.committed(&h.job, started);
                None
            }
            Err(e) => {
                self.metrics.disk.write_failures_total.inc();
                // Logged once when it starts; each retry only at debug level.
                log::debug!("storage write retry {} failed: {e}", h.attempts);
                h.attempts += 1;
                let wait = (RETRY_FIRST * 2u32.saturating_pow(h.attempts.min(8))).min(RETRY_MAX);
                h.retry_at = Instant::now() + wait;
                h.error = Box::new(e);
                Some(h)
            }
        }
    }

    /// A job is durable: tell the producer, then prune if the settings ask for it.
    fn committed(&mut self, job: &Sequenced<C::Job>, started: Instant) {
        self.metrics
            .storage_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        // Pruned before the producer hears of the commit, so whoever waited for this block
        // sees the block files as the settings keep them.
        let _ = self.prune(PruneTrigger::Auto);
        self.committed.store(job.seq, Ordering::Release);
        let _ = self.commit_notify.try_send(());
    }

    /// Prunes as `trigger` allows, logging and counting what went; the answer for RPC.
    fn prune(&mut self, trigger: PruneTrigger) -> Result<Option<u32>, String> {
        match self.committer.prune(trigger) {
            Ok(None) => Ok(self.committer.prune_height()),
            Ok(Some(r)) => {
                let label = match trigger {
                    PruneTrigger::Auto => "auto",
                    PruneTrigger::DiskCritical => "disk_critical",
                    PruneTrigger::Manual(_) => "manual",
                };
                log::info!(
                    bytes = r.bytes, files = r.files.len(), trigger = label;
                    "pruned {} (block heights {} to {}): {} bytes freed",
                    r.files.join(", "), r.heights.0, r.heights.1, r.bytes
                );
                let d = &self.metrics.disk;
                d.prunes_total.with_label_values(&[label]).inc();
                d.pruned_files_total.inc_by(r.files.len() as u64);
                d.pruned_bytes_total.inc_by(r.bytes);
                self.publish(true);
                Ok(r.prune_height)
            }
            Err(e) => {
                log::error!("pruning failed: {e}");
                Err(format!("pruning failed: {e}"))
            }
        }
    }

    fn prune_request(&mut self, req: PruneRequest, paused: bool) {
        if paused {
            // Deleting files is what frees the space; the store must be usable to record it.
            if let Err(e) = self.committer.recover() {
                log::debug!("cannot reopen the store to prune: {e}");
            }
        }
        let result = self.prune(req.trigger);
        if let Some(reply) = req.reply {
            let _ = reply.send(result);
        }
    }

    /// The peers table is rewritten every 15 minutes, so a failed write is logged, not held.
    fn write_peers(&self, records: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut batch = WriteBatch::default();
        for (k, v) in records {
            batch.put(Table::Peers, k, v);
        }
        if let Err(e) = self.store.apply(&batch) {
            log::warn!("cannot save the address book and bans: {e}");
        }
    }

    /// Writes, verifies and keeps a backup between commits (so the copy is consistent), then
    /// applies retention. A failure is logged, counted and shown in health until one succeeds.
    fn backup(&mut self) -> Result<BackupReport, String> {
        let started = Instant::now();
        let result = self.try_backup();
        let d = &self.metrics.disk;
        match &result {
            Ok(r) => {
                log::info!(
                    height = r.height, bytes = r.bytes;
                    "backup written and verified in {:.1} s: {}",
                    started.elapsed().as_secs_f64(),
                    r.path.display()
                );
                d.backup_last_success.set(crate::clock::unix_now());
                d.backup_bytes.set(r.bytes as i64);
                self.backup_error = None;
            }
            Err(e) => {
                log::error!("backup failed: {e}");
                d.backup_failures_total.inc();
                self.backup_error = Some(e.clone());
            }
        }
        self.set_status(None);
        result
    }

    fn try_backup(&mut self) -> Result<BackupReport, String> {
        let b = &self.backups;
        std::fs::create_dir_all(&b.root)
            .map_err(|e| format!("cannot create {}: {e}", b.root.display()))?;
        // A backup never fills the disk: about the store's size must fit under the warning mark.
        if let Some(why) =
            backup::refuse_for_space(&b.root, self.store.size_bytes(), b.disk_warn_share)
        {
            return Err(why);
        }
        let beat = || self.heartbeat.beat();
        let now = crate::clock::unix_now() as u64;
        let (dir, manifest) =
            backup::write(self.store.as_ref(), &b.root, &b.network, now, "", &beat)
                .map_err(|e| e.to_string())?;
        let all = backup::list(&b.root);
        let times: Vec<u64> = all.iter().map(|(_, t)| *t).collect();
        for i in backup::expired(&times, now, b.keep_daily, b.keep_weekly) {
            let (old, _) = &all[i];
            match std::fs::remove_dir_all(old) {
                Ok(()) => log::info!("backup {} expired and removed", old.display()),
                Err(e) => log::warn!("cannot remove expired backup {}: {e}", old.display()),
            }
        }
        Ok(BackupReport {
            path: dir,
            height: manifest.tip_height,
            hash: manifest.tip_hash,
            bytes: manifest.files.iter().map(|f| f.bytes).sum(),
        })
    }

    fn set_status(&mut self, write_error: Option<&str>) {
        if let Some(damage) = self
            .committer
            .damage()
            .filter(|_| self.stop_on_corruption.is_some())
        {
            // Asked once: the supervisor runs the ordered shutdown from there.
            let stop = self.stop_on_corruption.take();
            if stop.is_some_and(|s| {
                s.try_send(crate::supervisor::signals::Signal::Corruption)
                    .is_ok()
            }) {
                log::error!(
                    "corruption detected ({damage}); stopping because storage.on_corruption = \"shutdown\". \
                     To recover: `bllvm-node restore <backup dir>` (backups are in the datadir's backups/), \
                     or move chainstate.redb aside to rebuild it from the block files, \
                     or start with on_corruption = \"repair\" to keep serving while damaged blocks are fetched again"
                );
            }
        }
        if write_error.is_none() {
            if let Some(e) = &self.backup_error {
                return self
                    .heartbeat
                    .set_status(Status::Degraded, format!("last backup failed: {e}"));
            }
        }
        match (write_error, self.committer.damage(), &self.fallback_reason) {
            (Some(why), _, _) => self.heartbeat.set_status(Status::Unhealthy, why),
            (None, Some(damage), _) => self
                .heartbeat
                .set_status(Status::Degraded, format!("corruption detected: {damage}")),
            (None, None, Some(why)) => self.heartbeat.set_status(
                Status::Degraded,
                format!("running on the sled fallback: {why}"),
            ),
            (None, None, None) => self.heartbeat.set_status(Status::Healthy, ""),
        }
    }

    fn publish(&self, available: bool) {
        let prune_height = self.committer.prune_height();
        let files = self.committer.block_files_bytes();
        self.metrics
            .disk
            .prune_height
            .set(prune_height.map_or(-1, i64::from));
        self.metrics.block_files_bytes.set(files as i64);
        let mut view = self.shared.storage.write();
        view.available = available;
        view.size_bytes = self.store.size_bytes();
        view.backend = self.store.backend();
        view.prune_height = prune_height;
        view.block_files_bytes = files;
    }
}
