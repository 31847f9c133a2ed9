//! The chain thread: owns the chain state and applies the rules of its sibling modules.

use crate::config::Chain;
use crate::lifecycle::StopSignal;
use crate::state::{ChainView, Shared};
use crate::storage::{StorageError, Store, WriteBatch};
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Receiver, SendTimeoutError, Sender};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// Why the chain thread stopped working.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error("chain state unavailable")]
    Storage(#[from] StorageError),
    /// The storage writer exited while the chain still had work for it.
    #[error("storage writer is gone")]
    WriterGone,
    /// The tip recorded in the store is not readable.
    #[error("corrupt tip record in store: {0}")]
    CorruptTip(String),
}

/// Everything the chain thread owns.
pub struct ChainThread {
    /// Which network.
    pub chain: Chain,
    /// Read snapshots of the store.
    pub store: Arc<dyn Store>,
    /// Events from the p2p thread.
    pub peer_events: Receiver<PeerEvent>,
    /// Batches to the writer.
    pub batches: Sender<WriteBatch>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the chain view is published.
    pub shared: Arc<Shared>,
    /// How often to beat when idle.
    pub tick: Duration,
}

impl ChainThread {
    /// Loads the tip (writing genesis on a fresh store) and processes events until stopped.
    pub fn run(self) -> Result<(), ChainError> {
        let view = self.load_tip()?;
        log::info!(height = view.height; "chain state loaded, tip {}", view.tip_hash);
        *self.shared.chain.write() = view;
        self.heartbeat.set_status(Status::Healthy, "");
        loop {
            self.heartbeat.beat();
            select! {
                recv(self.peer_events) -> ev => match ev {
                    Ok(ev) => log::debug!("peer event: {ev:?}"),
                    Err(_) => break,
                },
                recv(self.stop.receiver()) -> _ => break,
                default(self.tick) => {}
            }
        }
        let drained = self.peer_events.try_iter().count();
        log::info!(drained = drained; "chain stopped");
        Ok(())
    }

    fn load_tip(&self) -> Result<ChainView, ChainError> {
        if let (Some(hash), Some(height)) = (
            self.store.get_meta("tip_hash")?,
            self.store.get_meta("tip_height")?,
        ) {
            let tip_hash =
                String::from_utf8(hash).map_err(|e| ChainError::CorruptTip(e.to_string()))?;
            let height = String::from_utf8_lossy(&height)
                .parse()
                .map_err(|e: std::num::ParseIntError| ChainError::CorruptTip(e.to_string()))?;
            return Ok(ChainView {
                initialized: true,
                height,
                tip_hash,
            });
        }
        let genesis = bitcoin::constants::genesis_block(self.chain.bitcoin_network());
        let tip_hash = genesis.block_hash().to_string();
        let mut batch = WriteBatch::default();
        batch.put_meta("tip_hash", tip_hash.clone().into_bytes());
        batch.put_meta("tip_height", b"0".to_vec());
        self.send(batch)?;
        Ok(ChainView {
            initialized: true,
            height: 0,
            tip_hash,
        })
    }

    /// Blocks while the writer's queue is full (backpressure) but keeps beating.
    fn send(&self, mut batch: WriteBatch) -> Result<(), ChainError> {
        loop {
            match self.batches.send_timeout(batch, self.tick) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(b)) => {
                    self.heartbeat.beat();
                    batch = b;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(ChainError::WriterGone),
            }
        }
    }
}
