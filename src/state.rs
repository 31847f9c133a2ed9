//! Read-mostly state shared between threads: each part is written by its owner only.

use crate::supervisor::health::Vitals;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

/// What the chain thread publishes.
#[derive(Debug, Clone, Default)]
pub struct ChainView {
    /// The chain state is loaded and a tip is known.
    pub initialized: bool,
    /// Height of the active tip.
    pub height: u64,
    /// Hash of the active tip, hex as Core prints it.
    pub tip_hash: String,
}

/// What the storage writer publishes.
#[derive(Debug, Clone, Default)]
pub struct StorageView {
    /// The store is open and writable.
    pub available: bool,
    /// Bytes used by the store and block files.
    pub size_bytes: u64,
    /// The backend in use.
    pub backend: &'static str,
}

/// What the p2p thread publishes.
#[derive(Debug, Clone, Default)]
pub struct NetworkView {
    /// Connected peers (after handshake).
    pub peers_connected: usize,
    /// The connection limit.
    pub peers_max: usize,
}

/// State every thread can read without asking its owner.
#[derive(Debug)]
pub struct Shared {
    /// When the node started.
    pub started: Instant,
    /// Heartbeats and component statuses.
    pub vitals: Vitals,
    /// Published by the chain thread.
    pub chain: RwLock<ChainView>,
    /// Published by the storage writer.
    pub storage: RwLock<StorageView>,
    /// Published by the p2p thread.
    pub network: RwLock<NetworkView>,
    /// RPC requests answered so far.
    pub rpc_requests: AtomicU64,
    /// Set once shutdown begins; readiness fails from then on.
    pub shutting_down: AtomicBool,
    /// Whether JSON-RPC is served on the HTTP port.
    pub rpc_enabled: bool,
    /// RPC circuit breakers that are not closed: method -> state.
    pub rpc_breakers: RwLock<std::collections::BTreeMap<&'static str, &'static str>>,
}

/// The readiness facts, as `/health/ready` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The chain tip is loaded.
    pub chain_initialized: bool,
    /// The store is open.
    pub storage_available: bool,
    /// Shutdown has begun.
    pub shutting_down: bool,
}

impl Readiness {
    /// Serving: chain loaded, storage open, not stopping. systemd's READY=1 uses the same rule.
    pub fn ready(self) -> bool {
        self.chain_initialized && self.storage_available && !self.shutting_down
    }
}

impl Shared {
    /// Reads the readiness facts.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            chain_initialized: self.chain.read().initialized,
            storage_available: self.storage.read().available,
            shutting_down: self
                .shutting_down
                .load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Fresh state at start.
    pub fn new(rpc_enabled: bool) -> Shared {
        Shared {
            started: Instant::now(),
            vitals: Vitals::new(),
            chain: RwLock::new(ChainView::default()),
            storage: RwLock::new(StorageView::default()),
            network: RwLock::new(NetworkView::default()),
            rpc_requests: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            rpc_enabled,
            rpc_breakers: RwLock::new(std::collections::BTreeMap::new()),
        }
    }
}
