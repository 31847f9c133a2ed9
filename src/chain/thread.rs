//! The chain thread: owns the chain state, serves requests, and hands every change to the
//! storage writer. The only place consensus decisions are made.

use super::chainstate::{ChainState, Submitted, Update};
use super::mining::{op_true_payout, spend_op_true};
use super::persist::{prepare, PersistError, PersistJob};
use super::reject::Reject;
use crate::clock::unix_now;
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::state::{ChainView, Shared};
use crate::storage::writer::Sequenced;
use crate::supervisor::health::{Heartbeat, Status};
use bitcoin::{Block, BlockHash, OutPoint, ScriptBuf};
use crossbeam_channel::{select, Receiver, SendTimeoutError, Sender};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the p2p thread tells the chain thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection was accepted or established.
    Connected {
        /// The peer.
        addr: SocketAddr,
        /// Whether the peer connected to us.
        inbound: bool,
    },
    /// A connection ended.
    Disconnected {
        /// The peer.
        addr: SocketAddr,
    },
}

/// A read of the chain state, run on the chain thread; it sends its own reply.
pub type Query = Box<dyn FnOnce(&ChainState) + Send>;

/// A change of the chain state (invalidateblock, generateblock, ...), run on the chain thread;
/// it sends its own reply and returns the updates for the writer to persist.
pub type Mutation = Box<dyn FnOnce(&mut ChainState) -> Vec<Update> + Send>;

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
}

impl ChainThread {
    /// Serves requests and events until stopped; every change is handed to the writer.
    pub fn run(mut self) -> Result<(), ChainError> {
        let mut seq = self.committed.load(Ordering::Acquire);
        let mut pending: VecDeque<(u64, Vec<BlockHash>, u64)> = VecDeque::new();
        self.publish();
        let (tip, height) = self.state.tip();
        log::info!(height = height; "chain state loaded, tip {tip}");
        self.heartbeat.set_status(Status::Healthy, "");
        let mut next_mine = self.mine_every.map(|d| Instant::now() + d);
        loop {
            self.heartbeat.beat();
            self.evict_committed(&mut pending);
            let wait = next_mine
                .map(|t| t.saturating_duration_since(Instant::now()).min(self.tick))
                .unwrap_or(self.tick);
            select! {
                recv(self.requests) -> req => match req {
                    Ok(req) => self.handle(req, &mut seq, &mut pending)?,
                    Err(_) => break,
                },
                recv(self.peer_events) -> ev => match ev {
                    Ok(ev) => log::debug!("peer event: {ev:?}"),
                    Err(_) => break,
                },
                recv(self.stop.receiver()) -> _ => break,
                default(wait) => {}
            }
            if let (Some(every), Some(at)) = (self.mine_every, next_mine) {
                if Instant::now() >= at {
                    self.auto_mine(&mut seq, &mut pending)?;
                    next_mine = Some(Instant::now() + every);
                }
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
        log::info!(drained = drained; "chain stopped");
        Ok(())
    }

    fn handle(
        &mut self,
        req: ChainRequest,
        seq: &mut u64,
        pending: &mut VecDeque<(u64, Vec<BlockHash>, u64)>,
    ) -> Result<(), ChainError> {
        match req {
            ChainRequest::Query(query) => query(&self.state),
            ChainRequest::Mutate(mutation) => {
                let started = Instant::now();
                let updates = mutation(&mut self.state);
                self.after_change(&updates, started, seq, pending)?;
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
                    self.heartbeat.beat();
                    let started = Instant::now();
                    match self.state.mine(payout.clone(), Vec::new(), unix_now()) {
                        Ok((block, updates)) => {
                            self.after_change(&updates, started, seq, pending)?;
                            hashes.push(block.block_hash());
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                let _ = reply.send(result.map(|_| hashes));
            }
            ChainRequest::SubmitBlock { block, reply } => {
                let started = Instant::now();
                let outcome = self.state.submit_block(*block, unix_now());
                let result = match outcome {
                    Ok((submitted, updates)) => {
                        self.after_change(&updates, started, seq, pending)?;
                        Ok(submitted)
                    }
                    Err(r) => {
                        // A rejected block may still have changed index entries (marked invalid).
                        self.after_change(&[], started, seq, pending)?;
                        Err(r)
                    }
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    /// Test-only load: one block, spending the OP_TRUE coinbase from 100 blocks back.
    fn auto_mine(
        &mut self,
        seq: &mut u64,
        pending: &mut VecDeque<(u64, Vec<BlockHash>, u64)>,
    ) -> Result<(), ChainError> {
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
            Ok((_, updates)) => self.after_change(&updates, started, seq, pending),
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
        seq: &mut u64,
        pending: &mut VecDeque<(u64, Vec<BlockHash>, u64)>,
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
        let job = prepare(&mut self.state, updates)?;
        self.publish();
        if job.is_empty() {
            return Ok(());
        }
        *seq += 1;
        pending.push_back((*seq, job.written(), job.utxo_gen));
        let mut msg = Sequenced { seq: *seq, job };
        loop {
            match self.jobs.send_timeout(msg, self.tick) {
                Ok(()) => return Ok(()),
                // The writer is behind: wait (backpressure) but stay live.
                Err(SendTimeoutError::Timeout(m)) => {
                    self.heartbeat.beat();
                    self.evict_committed(pending);
                    msg = m;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(ChainError::WriterGone),
            }
        }
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
        let (tip, height) = self.state.tip();
        *self.shared.chain.write() = ChainView {
            initialized: true,
            height: u64::from(height),
            tip_hash: tip.to_string(),
        };
        self.metrics.chain_height.set(i64::from(height));
        self.metrics
            .headers_height
            .set(i64::from(self.state.tree().best_header().1.height));
        self.metrics.utxo_count.set(self.state.utxo_count() as i64);
        self.metrics
            .utxo_cache_bytes
            .set(self.state.utxo_cache_bytes() as i64);
    }
}
