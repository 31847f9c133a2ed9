//! The chain thread: owns the chain state, serves requests, and hands every change to the
//! storage writer. The only place consensus decisions are made.

use super::chainstate::{ChainState, Submitted, Update};
use super::integrity::RepairError;
use super::mining::{op_true_payout, spend_op_true};
use super::persist::{prepare, PersistError, PersistJob};
use super::reject::Reject;
use super::serve::{
    blocks_after, blocks_for, fork_height, headers_after, mempool_delta, requested_height, summary,
    take_headers, MAX_ANNOUNCE_HEADERS,
};
use crate::clock::unix_now;
use crate::lifecycle::StopSignal;
use crate::messages::{MempoolDelta, P2pCommand, P2pHandle, PeerEvent, PeerId};
use crate::metrics::Metrics;
use crate::state::{ChainView, Shared};
use crate::storage::writer::Sequenced;
use crate::supervisor::health::{Heartbeat, Status};
use crate::supervisor::signals::Signal;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::{Block, BlockHash, OutPoint, ScriptBuf};
use crossbeam_channel::{select, Receiver, SendTimeoutError, Sender};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A read of the chain state, run on the chain thread; it sends its own reply.
pub type Query = Box<dyn FnOnce(&ChainState) + Send>;

/// A change of the chain state (invalidateblock, generateblock, ...), run on the chain thread.
/// It returns the updates for the writer to persist and its reply, which the chain thread calls
/// once they are durable (`Err` with the reason when they could not be stored), so nothing is
/// acknowledged that a crash could take back.
pub type Mutation = Box<dyn FnOnce(&mut ChainState) -> (Vec<Update>, Acknowledge) + Send>;

/// Sends a mutation's answer, told whether its changes are durable.
pub type Acknowledge = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Requests from RPC (and tests) with a reply channel each.
pub enum ChainRequest {
    /// Change the chain state; the updates are persisted like any other.
    Mutate(Mutation),
    /// Run a read-only closure against the chain state (RPC reads).
    Query(Query),
    /// Mine `count` blocks paying `payout` (regtest `generatetoaddress`).
    Generate {
        /// Blocks to mine.
        count: u32,
        /// Coinbase output script.
        payout: ScriptBuf,
        /// The new block hashes, or why mining stopped.
        reply: Sender<Result<Vec<BlockHash>, Reject>>,
        /// Set by the requester on timeout: mining stops before the next block.
        cancel: Arc<std::sync::atomic::AtomicBool>,
    },
    /// Validate and store a block (`submitblock`).
    SubmitBlock {
        /// The block.
        block: Box<Block>,
        /// The outcome.
        reply: Sender<Result<Submitted, Reject>>,
    },
}

/// Why the chain thread stopped working.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Preparing data for the writer failed (unreadable block or undo data).
    #[error("cannot prepare chain changes for storage")]
    Persist(#[from] PersistError),
    /// The storage writer exited while the chain still had work for it.
    #[error("storage writer is gone")]
    WriterGone,
}

/// Everything the chain thread owns.
pub struct ChainThread {
    /// The chain state, loaded from the store.
    pub state: ChainState,
    /// Events from the p2p thread.
    pub peer_events: Receiver<PeerEvent>,
    /// Requests from RPC.
    pub requests: Receiver<ChainRequest>,
    /// Jobs to the writer.
    pub jobs: Sender<Sequenced<PersistJob>>,
    /// The last sequence number the writer made durable.
    pub committed: Arc<AtomicU64>,
    /// Woken by the writer after each commit.
    pub commits: Receiver<()>,
    /// Whether block files may be pruned (peers are told `NODE_NETWORK_LIMITED`).
    pub pruned: bool,
    /// Damage found in stored data; corrupt blocks listed there are fetched again.
    pub integrity: Arc<super::integrity::Integrity>,
    /// Pause between two blocks read back by the background check; `None`: off.
    pub integrity_check: Option<Duration>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the chain view is published.
    pub shared: Arc<Shared>,
    /// Chain metrics.
    pub metrics: Arc<Metrics>,
    /// How often to beat when idle.
    pub tick: Duration,
    /// Test-only: mine a block this often.
    pub mine_every: Option<Duration>,
    /// Answers and chain summaries to the p2p thread.
    pub p2p: P2pHandle,
    /// The mempool floor relay last heard of (sat/kvB).
    pub told_floor: u64,
    /// `mempool.dat`: loaded at start and written at stop (`persist_mempool`), else `None`.
    pub mempool_file: Option<std::path::PathBuf>,
    /// Set (`storage.on_corruption = "repair"`): damage a repair in place cannot reach leaves
    /// the reindex marker in this network directory and asks the supervisor for a restart.
    pub reindex_on_damage: Option<(std::path::PathBuf, Sender<Signal>)>,
}

/// Where the loop stands between iterations.
struct Progress {
    /// Last job sequence number handed to the writer.
    seq: u64,
    /// Jobs handed over but not yet durable: (seq, blocks written, UTXO generation).
    pending: VecDeque<(u64, Vec<BlockHash>, u64)>,
    /// Jobs made while the writer was failing, in order, to hand over once it takes them.
    unsent: VecDeque<Sequenced<PersistJob>>,
    /// Whether the last summary went out while block storage was refused.
    paused: bool,
    /// A storage fault stopped block connection: when to try again.
    retry_fault_at: Option<Instant>,
    /// The background check: next height to read back, and when.
    check_height: u32,
    check_at: Instant,
    /// Headers connected since the last summary (only the last few are kept).
    connected: Vec<bitcoin::block::Header>,
    /// The chain changed since the last summary.
    dirty: bool,
    /// When the last summary went out.
    sent: Instant,
    /// When the mempool's expiry is next applied.
    expire_at: Instant,
    /// `mempool.dat` entries still to be offered to the pool.
    to_load: VecDeque<crate::mempool::dump::Dumped>,
}

/// `mempool.dat` entries offered per turn of the loop, so requests are served while it loads.
const LOAD_BATCH: usize = 100;

/// How far back a damaged record's data is looked for in the blocks (beyond: a reindex).
const REPAIR_SCAN_BLOCKS: u32 = 10_000;

/// How long a chain summary may lag behind a busy stream of changes.
const SUMMARY_EVERY: Duration = Duration::from_millis(200);

impl ChainThread {
    /// Serves requests and events until stopped; every change is handed to the writer.
    pub fn run(mut self) -> Result<(), ChainError> {
        let mut progress = Progress {
            seq: self.committed.load(Ordering::Acquire),
            pending: VecDeque::new(),
            unsent: VecDeque::new(),
            paused: false,
            retry_fault_at: None,
            check_height: 0,
            check_at: Instant::now(),
            connected: Vec::new(),
            dirty: false,
            sent: Instant::now(),
            expire_at: Instant::now(),
            to_load: self.read_mempool_file(),
        };
        self.publish();
        self.publish_mempool(MempoolDelta::default());
        self.metrics
            .utxo_cache_bytes
            .set(self.state.utxo_cache_bytes() as i64);
        let (tip, height) = self.state.tip();
        log::info!(height = height; "chain state loaded, tip {tip}");
        self.heartbeat.set_status(Status::Healthy, "");
        let mut next_mine = self.mine_every.map(|d| Instant::now() + d);
        self.send_summary(&mut progress);
        loop {
            self.heartbeat.beat();
            for hash in self.integrity.take_refetch() {
                log::warn!("block {hash} is corrupt on disk: asking peers for it again");
                self.state.refetch(&hash);
                progress.dirty = true;
            }
            for hash in self.integrity.take_rebuild_undo() {
                let rebuilt = self.state.rebuild_undo(&hash, REPAIR_SCAN_BLOCKS);
                self.finish_repair("the undo data of", hash.to_string(), rebuilt, &mut progress)?;
            }
            for op in self.integrity.take_rebuild_coin() {
                let rebuilt = self.state.rebuild_coin(&op, REPAIR_SCAN_BLOCKS);
                self.finish_repair("coin", op.to_string(), rebuilt, &mut progress)?;
            }
            self.flush_jobs(&mut progress, false)?;
            self.evict_committed(&mut progress.pending);
            let paused = self.refusal(&progress).is_some();
            if paused != progress.paused {
                // The summary tells p2p to stop (or resume) asking peers for blocks.
                progress.paused = paused;
                progress.dirty = true;
            }
            let mut wait = next_mine
                .map(|t| t.saturating_duration_since(Instant::now()).min(self.tick))
                .unwrap_or(self.tick);
            if self.integrity_check.is_some() {
                wait = wait.min(progress.check_at.saturating_duration_since(Instant::now()));
            }
            if !progress.to_load.is_empty() {
                wait = Duration::ZERO;
            }
            select! {
                recv(self.requests) -> req => match req {
                    Ok(req) => self.handle(req, &mut progress)?,
                    Err(_) => break,
                },
                recv(self.peer_events) -> ev => match ev {
                    Ok(ev) => self.on_peer_event(ev, &mut progress)?,
                    Err(_) => break,
                },
                recv(self.commits) -> _ => {}
                recv(self.stop.receiver()) -> _ => break,
                default(wait) => {}
            }
            if let (Some(every), Some(at)) = (self.mine_every, next_mine) {
                if Instant::now() >= at {
                    self.auto_mine(&mut progress)?;
                    next_mine = Some(Instant::now() + every);
                }
            }
            self.retry_after_fault(&mut progress)?;
            self.check_integrity(&mut progress);
            self.load_mempool_batch(&mut progress.to_load);
            if Instant::now() >= progress.expire_at {
                // Acceptance expires old entries too; this covers a pool nothing enters.
                progress.expire_at = Instant::now() + Duration::from_secs(60);
                let now = unix_now();
                if self.state.mempool.expire(now) > 0 || self.state.orphans.sweep(now, &[]) > 0 {
                    self.publish_mempool(MempoolDelta::default());
                }
            }
            if progress.dirty
                && (self.peer_events.is_empty() || progress.sent.elapsed() >= SUMMARY_EVERY)
            {
                self.send_summary(&mut progress);
            }
        }
        for req in self.requests.try_iter() {
            let err = Reject::new("shutting down", "");
            match req {
                // Dropping the query drops its reply sender: the caller sees the disconnect.
                ChainRequest::Query(_) | ChainRequest::Mutate(_) => {}
                ChainRequest::Generate { reply, .. } => {
                    let _ = reply.send(Err(err));
                }
                ChainRequest::SubmitBlock { reply, .. } => {
                    let _ = reply.send(Err(err));
                }
            }
        }
        let drained = self.peer_events.try_iter().count();
        self.write_mempool_file(&progress.to_load);
        // The writer stops after this stage and commits what it was handed; what it cannot take
        // within a second is lost, as in a crash (the store stays consistent).
        while let Some(job) = progress.unsent.pop_front() {
            if self.jobs.send_timeout(job, Duration::from_secs(1)).is_err() {
                log::error!(
                    lost = progress.unsent.len() + 1;
                    "chain stopped with changes the storage writer could not take"
                );
                break;
            }
        }
        log::info!(drained = drained; "chain stopped");
        Ok(())
    }

    /// The entries of `mempool.dat`, if persistence is on and the file reads; a missing file is
    /// an empty pool, a corrupt one is logged and left alone (never fatal).
    fn read_mempool_file(&mut self) -> VecDeque<crate::mempool::dump::Dumped> {
        let Some(path) = &self.mempool_file else {
            return VecDeque::new();
        };
        if !path.exists() {
            return VecDeque::new();
        }
        match crate::mempool::dump::read(path) {
            Ok(dump) => {
                log::info!(
                    "loading {} transactions from {}",
                    dump.txs.len(),
                    path.display()
                );
                for (txid, delta) in dump.deltas.iter().copied().chain(
                    dump.txs
                        .iter()
                        .filter(|d| d.fee_delta != 0)
                        .map(|d| (d.tx.compute_txid(), d.fee_delta)),
                ) {
                    self.state.mempool.prioritise(txid, delta);
                }
                self.state.mempool.set_loaded(dump.txs.is_empty());
                dump.txs.into()
            }
            Err(e) => {
                log::warn!("mempool not loaded, starting empty: {e}");
                VecDeque::new()
            }
        }
    }

    /// Offers the next batch of loaded entries to the pool (revalidated like any transaction;
    /// expired ones are skipped).
    fn load_mempool_batch(&mut self, to_load: &mut VecDeque<crate::mempool::dump::Dumped>) {
        if to_load.is_empty() {
            return;
        }
        let now = unix_now();
        let cutoff = now.saturating_sub(self.state.mempool.expiry_secs());
        for d in to_load.drain(..LOAD_BATCH.min(to_load.len())) {
            if d.time >= cutoff {
                let _ = self.state.mempool_accept(d.tx, 0, d.time.min(now));
            }
        }
        // Refusals of stale entries are not the mempool's news.
        self.state.mempool_refusals.clear();
        if to_load.is_empty() {
            self.state.mempool.set_loaded(true);
            log::info!(
                transactions = self.state.mempool.len();
                "mempool loaded"
            );
        }
        self.publish_mempool(MempoolDelta::default());
    }

    /// Writes the pool (and what was not loaded yet) to `mempool.dat`, if persistence is on.
    fn write_mempool_file(&self, unloaded: &VecDeque<crate::mempool::dump::Dumped>) {
        let Some(path) = &self.mempool_file else {
            return;
        };
        let mut dump = crate::mempool::dump::of_pool(&self.state.mempool);
        dump.txs.extend(unloaded.iter().cloned());
        match crate::mempool::dump::write(path, &dump) {
            Ok(()) => log::info!(
                "{} transactions written to {}",
                dump.txs.len(),
                path.display()
            ),
            Err(e) => log::error!("mempool not saved: {e}"),
        }
    }

    /// The background integrity check: reads back one active block and its undo data (a fault
    /// is recorded by the read itself; a corrupt block is then fetched again), then waits the
    /// configured pause and at least 19 times the read's cost, so it takes at most 5% of this
    /// thread. It walks from genesis to the tip and around again; pruned blocks are skipped.
    fn check_integrity(&mut self, progress: &mut Progress) {
        let Some(pause) = self.integrity_check else {
            return;
        };
        if Instant::now() < progress.check_at {
            return;
        }
        let started = Instant::now();
        if progress.check_height > self.state.tip().1 {
            progress.check_height = 0;
        }
        if let Some(hash) = self.state.hash_at(progress.check_height) {
            let _ = self.state.load_block(&hash);
            if progress.check_height > 0 {
                let _ = self.state.load_undo(&hash);
            }
            self.metrics.disk.integrity_checked_total.inc();
        }
        progress.check_height += 1;
        progress.check_at = Instant::now() + pause.max(started.elapsed() * 19);
    }

    /// Writes a record rebuilt in the chain state (`rebuilt` is its outcome) and marks the
    /// damage found at `key` (a block hash, an outpoint) repaired; when it could not be rebuilt,
    /// says why (a reindex can).
    fn finish_repair(
        &mut self,
        what: &str,
        key: String,
        rebuilt: Result<(), RepairError>,
        progress: &mut Progress,
    ) -> Result<(), ChainError> {
        match rebuilt {
            Ok(()) => {
                self.after_change(&[], Instant::now(), progress)?;
                log::info!("{what} {key} rebuilt from the block files and written again");
                self.integrity.repaired(&key);
            }
            Err(RepairError::NeedsReindex(why)) => {
                log::error!("cannot rebuild {what} {key} in place: {why}");
                self.restart_to_reindex(&format!("{what} {key}: {why}"));
            }
            Err(why) => log::warn!("cannot rebuild {what} {key}: {why}"),
        }
        Ok(())
    }

    /// Leaves the reindex marker and asks for the orderly stop after which the node starts
    /// again and rebuilds (once: the supervisor is already stopping after the first).
    fn restart_to_reindex(&mut self, why: &str) {
        let Some((dir, restart)) = self.reindex_on_damage.take() else {
            return;
        };
        match super::persist::rebuild::request(&dir, why) {
            Ok(()) => {
                log::error!("restarting to rebuild the chain state from the block files");
                let _ = restart.try_send(Signal::Restart);
            }
            Err(e) => log::error!(
                "cannot leave the reindex marker in {} ({e}): the damage stays until `bllvm-node --reindex`",
                dir.display()
            ),
        }
    }

    /// While a storage fault stops block connection: health says why, and activation is tried
    /// again every few seconds, so the chain moves on by itself once the data reads again.
    fn retry_after_fault(&mut self, progress: &mut Progress) -> Result<(), ChainError> {
        const RETRY: Duration = Duration::from_secs(2);
        match (self.state.fault().cloned(), progress.retry_fault_at) {
            (None, None) => {}
            (None, Some(_)) => {
                progress.retry_fault_at = None;
                log::info!("block connection resumed after a storage fault");
                self.heartbeat.set_status(Status::Healthy, "");
            }
            (Some(f), None) => {
                progress.retry_fault_at = Some(Instant::now() + RETRY);
                self.heartbeat.set_status(
                    Status::Unhealthy,
                    format!("storage fault, block connection stopped (retrying): {f}"),
                );
            }
            (Some(_), Some(at)) if Instant::now() >= at && self.refusal(progress).is_none() => {
                progress.retry_fault_at = Some(Instant::now() + RETRY);
                let started = Instant::now();
                let updates = self.state.activate();
                self.after_change(&updates, started, progress)?;
            }
            (Some(_), Some(_)) => {}
        }
        Ok(())
    }

    /// Why new blocks cannot be taken now: the writer reports failing writes, or it has not yet
    /// taken the jobs made while it was failing.
    fn refusal(&self, progress: &Progress) -> Option<String> {
        self.shared.storage.read().write_error.clone().or_else(|| {
            (!progress.unsent.is_empty())
                .then(|| "storage writer has not caught up after failing writes".to_owned())
        })
    }

    /// Waits until job `seq` is durable, so RPC acknowledges only stored blocks; the reason
    /// when the writer is failing (or the node stops) first.
    fn wait_durable(
        &mut self,
        seq: u64,
        progress: &mut Progress,
    ) -> Result<Result<(), String>, ChainError> {
        loop {
            self.flush_jobs(progress, false)?;
            if self.committed.load(Ordering::Acquire) >= seq {
                self.evict_committed(&mut progress.pending);
                return Ok(Ok(()));
            }
            if let Some(why) = self.shared.storage.read().write_error.clone() {
                return Ok(Err(why));
            }
            if self.stop.requested() {
                return Ok(Err("shutting down before the block was stored".into()));
            }
            self.heartbeat.beat();
            let _ = self
                .commits
                .recv_timeout(self.tick.min(Duration::from_millis(50)));
        }
    }

    fn handle(&mut self, req: ChainRequest, progress: &mut Progress) -> Result<(), ChainError> {
        match req {
            ChainRequest::Query(query) => query(&self.state),
            // Dropping a refused mutation drops its reply: RPC checks the same state first and
            // says why, so this only covers the race.
            ChainRequest::Mutate(_) if self.refusal(progress).is_some() => {}
            ChainRequest::Mutate(mutation) => {
                let started = Instant::now();
                let (updates, acknowledge) = mutation(&mut self.state);
                self.after_change(&updates, started, progress)?;
                acknowledge(self.wait_durable(progress.seq, progress)?);
            }
            ChainRequest::Generate {
                count,
                payout,
                reply,
                cancel,
            } => {
                let mut hashes = Vec::new();
                let mut result = Ok(());
                for _ in 0..count {
                    if cancel.load(Ordering::Acquire) || self.stop.requested() {
                        log::info!(mined = hashes.len(); "generate cancelled");
                        result = Err(Reject::new("cancelled", "timed out or shutting down"));
                        break;
                    }
                    if let Some(why) = self.refusal(progress) {
                        result = Err(Reject::storage(why));
                        break;
                    }
                    self.heartbeat.beat();
                    let started = Instant::now();
                    // What the mempool pays best for, as Core's generatetoaddress takes.
                    let txs = self
                        .state
                        .block_from_mempool()
                        .txs
                        .into_iter()
                        .map(|t| (*t).clone())
                        .collect();
                    match self.state.mine(payout.clone(), txs, unix_now()) {
                        Ok((block, updates)) => {
                            self.after_change(&updates, started, progress)?;
                            hashes.push(block.block_hash());
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if result.is_ok() && !hashes.is_empty() {
                    if let Err(why) = self.wait_durable(progress.seq, progress)? {
                        result = Err(Reject::storage(format!(
                            "{} block(s) mined but not all stored: {why}",
                            hashes.len()
                        )));
                    }
                }
                let _ = reply.send(result.map(|_| hashes));
            }
            ChainRequest::SubmitBlock { block, reply } => {
                if let Some(why) = self.refusal(progress) {
                    let _ = reply.send(Err(Reject::storage(why)));
                    return Ok(());
                }
                let started = Instant::now();
                let outcome = self.state.submit_block(*block, unix_now());
                let result = match outcome {
                    Ok((Submitted::Duplicate, updates)) => {
                        self.after_change(&updates, started, progress)?;
                        Ok(Submitted::Duplicate)
                    }
                    Ok((submitted, updates)) => {
                        self.after_change(&updates, started, progress)?;
                        match self.wait_durable(progress.seq, progress)? {
                            Ok(()) => Ok(submitted),
                            Err(why) => Err(Reject::storage(why)),
                        }
                    }
                    Err(r) => {
                        // A rejected block may still have changed index entries (marked invalid).
                        self.after_change(&[], started, progress)?;
                        Err(r)
                    }
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    /// Test-only load: one block, spending the OP_TRUE coinbase from 100 blocks back.
    fn auto_mine(&mut self, progress: &mut Progress) -> Result<(), ChainError> {
        if self.refusal(progress).is_some() {
            return Ok(());
        }
        let height = self.state.tip().1;
        let mut txs = Vec::new();
        if height >= 101 {
            if let Some(block) = self
                .state
                .hash_at(height - 100)
                .and_then(|h| self.state.block(&h))
            {
                let cb = &block.txdata[0];
                let op = OutPoint::new(cb.compute_txid(), 0);
                if cb.output[0].script_pubkey == op_true_payout() && self.state.coin(&op).is_some()
                {
                    txs.push(spend_op_true(op, cb.output[0].value.to_sat()));
                }
            }
        }
        let started = Instant::now();
        match self.state.mine(op_true_payout(), txs, unix_now()) {
            Ok((_, updates)) => self.after_change(&updates, started, progress),
            Err(e) => {
                log::warn!("debug miner: {e}");
                Ok(())
            }
        }
    }

    /// Records metrics, publishes the view and hands the changes to the writer.
    fn after_change(
        &mut self,
        updates: &[Update],
        started: Instant,
        progress: &mut Progress,
    ) -> Result<(), ChainError> {
        let connected = updates
            .iter()
            .filter(|u| matches!(u, Update::Connected { .. }))
            .count() as u64;
        let disconnected = updates.len() as u64 - connected;
        if connected > 0 {
            self.metrics
                .block_validation_seconds
                .observe(started.elapsed().as_secs_f64() / connected as f64);
        }
        self.metrics.blocks_connected_total.inc_by(connected);
        self.metrics.blocks_disconnected_total.inc_by(disconnected);
        if disconnected > 0 {
            self.metrics.reorgs_total.inc();
            self.metrics.reorg_depth_blocks.observe(disconnected as f64);
            log::info!(depth = disconnected; "chain reorganisation");
        }
        progress.dirty = true;
        for u in updates {
            if let Update::Connected { hash, height, .. } = u {
                log::debug!("block {hash} connected at height {height}");
                if let Some(e) = self.state.tree().get(hash) {
                    progress.connected.push(e.header);
                }
            }
        }
        // Only whether there were more than announceable matters.
        if progress.connected.len() > MAX_ANNOUNCE_HEADERS + 1 {
            progress
                .connected
                .drain(..progress.connected.len() - MAX_ANNOUNCE_HEADERS - 1);
        }
        self.publish_mempool(MempoolDelta::default());
        let job = prepare(&mut self.state, updates)?;
        self.publish();
        if job.is_empty() {
            return Ok(());
        }
        progress.seq += 1;
        progress
            .pending
            .push_back((progress.seq, job.written(), job.utxo_gen));
        progress.unsent.push_back(Sequenced {
            seq: progress.seq,
            job,
        });
        self.flush_jobs(progress, true)?;
        // Over budget with uncommitted coins: let the writer catch up so they can be evicted
        // (Core flushes its cache when full). Clean entries were evicted already.
        while self.state.utxo_over_budget() && progress.unsent.is_empty() {
            if self.wait_durable(progress.seq, progress)?.is_err() {
                break;
            }
        }
        self.metrics
            .utxo_cache_bytes
            .set(self.state.utxo_cache_bytes() as i64);
        Ok(())
    }

    /// Hands queued jobs to the writer in order. `wait`: wait for room while the writer is
    /// merely behind (backpressure), beating; otherwise, and whenever the writer is failing,
    /// leave the rest queued for a later turn.
    fn flush_jobs(&mut self, progress: &mut Progress, wait: bool) -> Result<(), ChainError> {
        while let Some(job) = progress.unsent.pop_front() {
            let mut msg = job;
            loop {
                let sent = if wait {
                    self.jobs.send_timeout(msg, self.tick)
                } else {
                    self.jobs.try_send(msg).map_err(|e| match e {
                        crossbeam_channel::TrySendError::Full(m) => SendTimeoutError::Timeout(m),
                        crossbeam_channel::TrySendError::Disconnected(m) => {
                            SendTimeoutError::Disconnected(m)
                        }
                    })
                };
                match sent {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(m)) => {
                        if !wait || self.shared.storage.read().write_error.is_some() {
                            progress.unsent.push_front(m);
                            return Ok(());
                        }
                        // The writer is behind: wait (backpressure) but stay live.
                        self.heartbeat.beat();
                        self.evict_committed(&mut progress.pending);
                        msg = m;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Err(ChainError::WriterGone),
                }
            }
        }
        Ok(())
    }

    /// A message from the network: headers and blocks are validated here, requests answered.
    fn on_peer_event(&mut self, ev: PeerEvent, progress: &mut Progress) -> Result<(), ChainError> {
        match ev {
            // While blocks cannot be stored nothing new is taken; the summary told p2p to stop
            // asking, and nothing here is the peer's fault.
            PeerEvent::Headers { peer, .. } if self.refusal(progress).is_some() => {
                self.tell_p2p(P2pCommand::HeadersDone {
                    peer,
                    last: None,
                    more: false,
                    unconnected: false,
                });
            }
            PeerEvent::Block { block, .. } if self.refusal(progress).is_some() => {
                log::debug!(
                    "block {} dropped: storage writes are failing",
                    block.block_hash()
                );
            }
            PeerEvent::Headers { peer, headers } => self.on_headers(peer, headers, progress)?,
            PeerEvent::Block { peer, block } => {
                let started = Instant::now();
                let hash = block.block_hash();
                let refetched = self.state.refetching().any(|(_, h)| *h == hash);
                match self.state.submit_block(*block, unix_now()) {
                    Ok((_, updates)) => {
                        self.after_change(&updates, started, progress)?;
                        if refetched {
                            log::info!("block {hash} fetched again from peer {peer}: a good copy is stored");
                            self.integrity.repaired(&hash.to_string());
                        }
                    }
                    Err(r) => {
                        self.after_change(&[], started, progress)?;
                        // Only a consensus failure is the peer's doing: not a clock disagreement,
                        // not malleated data, never our own storage.
                        if r.is_consensus() {
                            self.misbehaved(peer, format!("invalid block: {}", r.reason));
                        }
                    }
                }
            }
            PeerEvent::GetHeaders {
                peer,
                locator,
                stop,
            } => {
                let height = fork_height(&self.state, &locator);
                if height > 0 {
                    self.tell_p2p(P2pCommand::PeerHas { peer, height });
                }
                let msg = NetworkMessage::Headers(headers_after(&self.state, &locator, &stop));
                self.tell_p2p(P2pCommand::Send { peer, msg });
            }
            PeerEvent::GetBlocks {
                peer,
                locator,
                stop,
            } => {
                let hashes = blocks_after(&self.state, &locator, &stop);
                self.tell_p2p(P2pCommand::BlocksAfter { peer, hashes });
            }
            PeerEvent::Tx { peer, tx } => {
                let mut report = MempoolDelta::default();
                self.state.offer_relayed(*tx, peer, unix_now(), &mut report);
                self.publish_mempool(report);
            }
            PeerEvent::GetData { peer, items } => {
                if let Some(height) = requested_height(&self.state, &items) {
                    self.tell_p2p(P2pCommand::PeerHas { peer, height });
                }
                for msg in blocks_for(&self.state, &items) {
                    self.tell_p2p(P2pCommand::Send { peer, msg });
                }
            }
        }
        Ok(())
    }

    fn on_headers(
        &mut self,
        peer: PeerId,
        headers: Vec<bitcoin::block::Header>,
        progress: &mut Progress,
    ) -> Result<(), ChainError> {
        let started = Instant::now();
        let (answer, touched) = take_headers(&mut self.state, peer, headers, unix_now());
        if touched {
            self.after_change(&[], started, progress)?;
        }
        match answer {
            P2pCommand::Misbehaved { peer, reason } => self.misbehaved(peer, reason),
            other => self.tell_p2p(other),
        }
        Ok(())
    }

    /// The mempool's gauges; what entered and left it since the last call (with `report`'s
    /// refusals and orphans' parents) goes to relay.
    fn publish_mempool(&mut self, mut report: MempoolDelta) {
        use crate::mempool::pool::Event;
        let m = &self.metrics;
        for e in mempool_delta(&mut self.state, &mut report, unix_now()) {
            match e {
                Event::Added(_) => m.mempool_accepted_total.inc(),
                Event::Removed(_, why) => m
                    .mempool_removed_total
                    .with_label_values(&[why.label()])
                    .inc(),
            }
        }
        let pool = &self.state.mempool;
        m.mempool_transactions.set(pool.len() as i64);
        m.mempool_bytes.set(pool.vsize() as i64);
        m.mempool_usage_bytes.set(pool.usage() as i64);
        m.mempool_max_bytes.set(pool.max_usage() as i64);
        m.mempool_min_fee_rate.set(report.floor as f64 / 1000.0);
        m.mempool_orphans.set(self.state.orphans.len() as i64);
        m.mempool_orphan_bytes
            .set(self.state.orphans.usage() as i64);
        let unchanged = report.changes.is_empty()
            && report.rejected.is_empty()
            && report.fetch.is_empty()
            && report.floor == self.told_floor;
        if !unchanged {
            self.told_floor = report.floor;
            self.tell_p2p(P2pCommand::Mempool(Box::new(report)));
        }
        // Counted once relay has been told: whoever sees a refusal counted knows relay
        // has it queued.
        for reason in self.state.mempool_refusals.drain(..) {
            self.metrics
                .mempool_rejected_total
                .with_label_values(&[reason])
                .inc();
        }
    }

    fn misbehaved(&self, peer: PeerId, reason: String) {
        log::info!(peer = peer; "peer misbehaved: {reason}");
        self.tell_p2p(P2pCommand::Misbehaved { peer, reason });
    }

    /// Sends to p2p, waiting while its queue is full (it never blocks, so it drains); dropped once
    /// p2p has stopped.
    fn tell_p2p(&self, cmd: P2pCommand) {
        let mut cmd = cmd;
        loop {
            match self.p2p.send(cmd, self.tick).map_err(|e| *e) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) if !self.stop.requested() => {
                    self.heartbeat.beat();
                    cmd = back;
                }
                Err(_) => return,
            }
        }
    }

    fn send_summary(&self, progress: &mut Progress) {
        let mut s = summary(&self.state, &progress.connected, self.pruned, unix_now());
        if progress.paused {
            // No block can be stored: p2p asks peers for none until this clears.
            s.wanted.clear();
            s.paused = true;
        }
        progress.connected.clear();
        progress.dirty = false;
        progress.sent = Instant::now();
        self.tell_p2p(P2pCommand::Chain(Box::new(s)));
    }

    /// Drops in-memory block data the writer has made durable.
    fn evict_committed(&mut self, pending: &mut VecDeque<(u64, Vec<BlockHash>, u64)>) {
        let done = self.committed.load(Ordering::Acquire);
        while pending.front().is_some_and(|(s, _, _)| *s <= done) {
            if let Some((_, hashes, utxo_gen)) = pending.pop_front() {
                self.state.evict(&hashes);
                self.state.utxo_committed(utxo_gen);
            }
        }
    }

    fn publish(&self) {
        let (_, height) = self.state.tip();
        *self.shared.chain.write() = chain_view(&self.state);
        self.metrics.chain_height.set(i64::from(height));
        self.metrics
            .headers_height
            .set(i64::from(self.state.tree().best_header().1.height));
        self.metrics.utxo_count.set(self.state.utxo_count() as i64);
    }
}

/// What the chain thread publishes of `cs` (and what RPC reads the tip from).
pub fn chain_view(cs: &ChainState) -> ChainView {
    let (tip, height) = cs.tip();
    let tree = cs.tree();
    let entry = tree.get(&tip);
    ChainView {
        initialized: true,
        height: u64::from(height),
        tip_hash: tip.to_string(),
        headers: u64::from(tree.best_header().1.height),
        time: entry.map_or(0, |e| e.header.time),
        mediantime: tree.median_time_past(&tip),
        difficulty: entry.map_or(0.0, |e| e.header.target().difficulty_float()),
        chainwork: entry
            .map(|e| bitcoin::hex::DisplayHex::to_lower_hex_string(&e.chain_work.to_be_bytes()[..]))
            .unwrap_or_default(),
        tip_header: entry.map(|e| e.header),
        tip_n_tx: cs.tx_count(&tip),
    }
}
