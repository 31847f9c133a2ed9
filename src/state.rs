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
    /// Height of the best known header.
    pub headers: u64,
    /// The tip's timestamp.
    pub time: u32,
    /// Median time past of the tip.
    pub mediantime: u32,
    /// The tip's difficulty.
    pub difficulty: f64,
    /// Total work of the active chain, hex as Core prints it.
    pub chainwork: String,
    /// The tip's header (`getblockheader` of the tip while the chain thread is stuck).
    pub tip_header: Option<bitcoin::block::Header>,
    /// Transactions in the tip block, when known.
    pub tip_n_tx: Option<usize>,
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
    /// Set while commits fail (a full disk): why. New blocks are refused meanwhile.
    pub write_error: Option<String>,
    /// Highest block height whose data was pruned.
    pub prune_height: Option<u32>,
    /// Bytes of the block and undo files.
    pub block_files_bytes: u64,
}

/// What the p2p thread publishes.
#[derive(Debug, Clone, Default)]
pub struct NetworkView {
    /// Connected peers (after handshake).
    pub peers_connected: usize,
    /// Of which inbound.
    pub peers_inbound: usize,
    /// The connection limit.
    pub peers_max: usize,
    /// `setnetworkactive`.
    pub active: bool,
    /// Every connection, handshake done or not.
    pub peers: Vec<PeerInfo>,
    /// Bytes sent and received since start.
    pub bytes_sent: u64,
    /// Bytes received since start.
    pub bytes_recv: u64,
    /// Current bans.
    pub bans: Vec<BanInfo>,
    /// `addnode` peers: address and whether connected.
    pub added: Vec<(std::net::SocketAddr, bool)>,
    /// Services we announce (`localservices`).
    pub local_services: u64,
}

/// One connection as `getpeerinfo` shows it.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// Peer id.
    pub id: u64,
    /// Its address.
    pub addr: Option<std::net::SocketAddr>,
    /// Our end of the socket.
    pub local: Option<std::net::SocketAddr>,
    /// Whether it connected to us.
    pub inbound: bool,
    /// "inbound", "outbound-full-relay" or "manual".
    pub connection_type: &'static str,
    /// Handshake done.
    pub ready: bool,
    /// Services it announced.
    pub services: u64,
    /// Protocol version.
    pub version: u32,
    /// User agent.
    pub subver: String,
    /// Height it announced at the handshake.
    pub starting_height: i32,
    /// Best height we know it has.
    pub synced_headers: i64,
    /// Blocks requested from it.
    pub inflight: usize,
    /// Unix seconds connected.
    pub conntime: i64,
    /// Unix seconds of the last send.
    pub lastsend: i64,
    /// Unix seconds of the last receive.
    pub lastrecv: i64,
    /// Bytes sent.
    pub bytessent: u64,
    /// Bytes received.
    pub bytesrecv: u64,
    /// Bytes sent per command.
    pub bytessent_per_msg: Vec<(&'static str, u64)>,
    /// Bytes received per command.
    pub bytesrecv_per_msg: Vec<(&'static str, u64)>,
    /// Last ping round trip, seconds.
    pub pingtime: Option<f64>,
    /// Lowest ping round trip, seconds.
    pub minping: Option<f64>,
    /// Bytes waiting in its send queue.
    pub send_queue_bytes: usize,
    /// BIP339, BIP155, BIP130.
    pub wtxid_relay: bool,
    /// Whether the peer takes addrv2.
    pub addr_v2: bool,
    /// Whether the peer asked for headers announcements.
    pub send_headers: bool,
}

/// One ban as `listbanned` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// The banned address (a single IP, /32 or /128).
    pub address: String,
    /// Unix seconds created.
    pub created: i64,
    /// Unix seconds it ends.
    pub until: i64,
    /// Why.
    pub reason: String,
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
    /// What start-up is doing (loading, a reindex and its progress); `None` once started.
    pub startup: RwLock<Option<String>>,
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
    /// Start-up is still under way (RPC not served yet).
    pub starting: bool,
}

impl Readiness {
    /// Serving: chain loaded, storage open, not stopping. systemd's READY=1 uses the same rule.
    pub fn ready(self) -> bool {
        self.chain_initialized && self.storage_available && !self.shutting_down && !self.starting
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
            starting: self.startup.read().is_some(),
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
            startup: RwLock::new(None),
            rpc_enabled,
            rpc_breakers: RwLock::new(std::collections::BTreeMap::new()),
        }
    }
}
