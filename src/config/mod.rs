//! The node's configuration: TOML file, command-line overrides, defaults per network, validation.

mod chain;
mod load;

pub use chain::Chain;
pub use load::{load, ConfigError, Overrides};

use crate::component::Component;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The commented default configuration printed by `bllvm-node config default`.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Everything the node reads at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which network to run (`--network`).
    pub chain: Chain,
    /// Root data directory; the network's files live in `<datadir>/<network>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datadir: Option<PathBuf>,
    /// How long the ordered shutdown may take before the node gives up and exits 1.
    pub shutdown_timeout_secs: f64,
    /// A component whose heartbeat is older than this is unhealthy.
    pub heartbeat_timeout_secs: f64,
    /// P2P settings.
    pub network: NetworkConfig,
    /// Store and pruning settings.
    pub storage: StorageConfig,
    /// RPC, health and metrics server settings.
    pub rpc: RpcConfig,
    /// Log format and level.
    pub logging: LoggingConfig,
    /// Block validation.
    pub validation: ValidationConfig,
    /// Unconfirmed transactions.
    pub mempool: MempoolConfig,
    /// Capacities of the bounded channels between threads.
    pub channels: ChannelConfig,
    /// Fault injection for tests; never set in production.
    #[serde(skip_serializing_if = "DebugConfig::is_empty")]
    pub debug: DebugConfig,
}

/// `[network]`: the P2P side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// P2P listen address; default per network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Connect only to these peers (`--connect`).
    pub connect: Vec<String>,
    /// Peers to keep connected in addition to the others (`--addnode`).
    pub addnode: Vec<String>,
    /// Target number of outbound full-relay connections.
    pub max_outbound: usize,
    /// Maximum number of connections, inbound and outbound.
    pub max_connections: usize,
    /// Whether dropped peers are reconnected.
    pub reconnect_enabled: bool,
    /// Attempts before a gossip address is given up.
    pub reconnect_max_retries: u32,
    /// First reconnection delay; doubles each attempt.
    pub reconnect_initial_delay_secs: f64,
    /// Cap of the reconnection delay.
    pub reconnect_max_delay_secs: f64,
}

/// `[storage]`: backend and pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Which key-value store holds the chain state.
    pub backend: Backend,
    /// Whether and how block files are pruned.
    pub pruning_mode: PruningMode,
    /// `normal` and `aggressive`: prune once block files use more than this many GB.
    pub pruning_threshold_gb: f64,
    /// `normal`: prune down to this many GB.
    pub pruning_target_gb: f64,
    /// `custom`: keep block data of this many blocks below the tip (at least 288).
    pub keep_recent_blocks: u32,
    /// How often the pruning monitor looks at the disk.
    pub pruning_check_interval_secs: f64,
    /// Used share of the datadir's filesystem at which health turns degraded.
    pub disk_warn_percent: f64,
    /// Used share at which the node prunes what its mode allows at once.
    pub disk_critical_percent: f64,
    /// Regtest only: 64 KiB block files, so pruning can be tried on small chains (Core's fastprune).
    pub fastprune: bool,
    /// Memory budget of the UTXO cache.
    pub dbcache_mb: u64,
    /// Seconds between two block records (with their undo data) read back by the background
    /// integrity check; 0 turns it off. Unset: off on regtest, 1 s elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity_check_interval_secs: Option<f64>,
    /// What corruption found in stored data does: repair what can be, or stop (exit 3).
    pub on_corruption: OnCorruption,
    /// Seconds between scheduled backups of the chain-state store; 0 turns them off.
    pub backup_interval_secs: f64,
    /// Where backups go; default `<datadir>/<network>/backups/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
    /// Past a day, the newest backup of each of this many days is kept.
    pub backup_keep_daily: u32,
    /// And the newest of each of this many weeks.
    pub backup_keep_weekly: u32,
}

/// The key-value store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// redb, falling back to sled when redb cannot be opened.
    Auto,
    /// redb only.
    Redb,
    /// sled only.
    Sled,
}

/// How block files are pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruningMode {
    /// Keep every block.
    Disabled,
    /// Past the threshold, prune down to the target (`auto` is accepted for older files).
    #[serde(alias = "auto")]
    Normal,
    /// Past the threshold, prune everything but the last 288 blocks.
    Aggressive,
    /// Keep the last `keep_recent_blocks` blocks, prune the rest.
    Custom,
    /// Prune only when asked (`pruneblockchain`; Core's `prune=1`).
    Manual,
}

impl PruningMode {
    /// Whether any pruning may happen (the node then serves only recent blocks).
    pub fn enabled(self) -> bool {
        self != PruningMode::Disabled
    }

    /// Whether the node prunes by itself (Core's `automatic_pruning`).
    pub fn automatic(self) -> bool {
        matches!(
            self,
            PruningMode::Normal | PruningMode::Aggressive | PruningMode::Custom
        )
    }
}

/// What the node does when it finds corruption in its stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCorruption {
    /// Keep serving, degraded, and repair what can be (blocks are fetched again from peers).
    Repair,
    /// Stop cleanly with exit code 3 and a message naming the damage and what to run.
    Shutdown,
}

/// Bitcoin Core's `-dbcache` range, MiB.
pub const DBCACHE_MB_RANGE: std::ops::RangeInclusive<u64> = 4..=16_384;

/// `[rpc]`: the HTTP server for JSON-RPC, health and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Listen address; default `127.0.0.1:<network's RPC port>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Serve `/metrics`.
    pub metrics_enabled: bool,
    /// Serve `/health*`.
    pub health_checks_enabled: bool,
    /// RPC worker threads.
    pub threads: usize,
    /// RPC requests that may wait for a worker before new ones get 503.
    pub work_queue: usize,
    /// Longest JSON-RPC batch answered; a longer one gets one error for the whole batch.
    pub max_batch: usize,
    /// Open connections to the port in total; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_connections_per_ip: usize,
    /// A request's head must arrive within this of its first byte (or of the connection).
    pub header_timeout_secs: f64,
    /// A keep-alive connection silent this long between requests is closed.
    pub idle_timeout_secs: f64,
    /// A body must arrive at least this fast, after a grace of `header_timeout_secs`.
    pub body_min_bytes_per_sec: u64,
    /// Longest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Longest request body (413 beyond).
    pub max_body_bytes: u64,
    /// Largest answer a batch builds; calls past it are answered -7 without being run.
    pub max_response_mb: usize,
    /// Longest an RPC call waits for the chain thread.
    pub timeout_secs: f64,
    /// Per-method overrides of `timeout_secs`.
    pub method_timeout_secs: BTreeMap<String, f64>,
    /// Per-method circuit breakers.
    pub breaker: BreakerConfig,
    /// Static credentials (in addition to the cookie).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Core-format `user:salt$hash` entries.
    pub rpcauth: Vec<String>,
    /// Client ranges allowed besides loopback (`ADDR` or `ADDR/PREFIX`).
    pub allow_ip: Vec<String>,
    /// Who may read the cookie file (Core's `-rpccookieperms`).
    pub cookie_perms: CookiePerms,
    /// Serve Core's REST interface (Core's `-rest`): unauthenticated, read-only.
    pub rest: bool,
    /// REST worker threads (their own pool: a REST flood never holds a JSON-RPC worker).
    pub rest_threads: usize,
    /// REST requests that may wait for a REST worker before new ones get 503.
    pub rest_work_queue: usize,
    /// Rate limits and credentials.
    pub auth: RpcAuthConfig,
}

/// `[rpc.breaker]`: when a method's failures open its breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether breakers apply.
    pub enabled: bool,
    /// Sliding window of outcomes.
    pub window_secs: f64,
    /// Fewest calls in the window before the failure ratio counts.
    pub min_calls: usize,
    /// Failure ratio (internal errors and timeouts) that opens the breaker.
    pub failure_ratio: f64,
    /// How long an open breaker fails calls fast.
    pub cooldown_secs: f64,
    /// Trial calls when half-open; all must succeed to close.
    pub half_open_trials: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            window_secs: 60.0,
            min_calls: 10,
            failure_ratio: 0.5,
            cooldown_secs: 30.0,
            half_open_trials: 2,
        }
    }
}

/// `[rpc.auth]`: rate limiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcAuthConfig {
    /// Whether token buckets apply.
    pub rate_limit_enabled: bool,
    /// Requests per second refilled into each bucket.
    pub rate_limit_rate: f64,
    /// Bucket size.
    pub rate_limit_burst: u32,
    /// Per-method overrides.
    pub per_method_limits: BTreeMap<String, MethodLimit>,
}

/// A token bucket's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodLimit {
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: u32,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Human lines or JSON lines.
    pub format: LogFormat,
    /// Minimum level.
    pub level: LogLevel,
    /// The level of the line logged for each JSON-RPC request.
    pub rpc_requests: RequestLog,
}

/// `[rpc] cookie_perms`: who may read the cookie file, as Core's `-rpccookieperms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookiePerms {
    /// The node's user only (0600).
    Owner,
    /// And its group (0640): an indexer or LND running as another user of that group.
    Group,
    /// Everyone (0644).
    All,
}

impl CookiePerms {
    /// The file mode.
    pub fn mode(self) -> u32 {
        match self {
            CookiePerms::Owner => 0o600,
            CookiePerms::Group => 0o640,
            CookiePerms::All => 0o644,
        }
    }
}

/// `[logging] rpc_requests`: at what level each JSON-RPC request is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestLog {
    /// Always (with the default `level`).
    Info,
    /// As Core: only with debug logging, or the `rpc` category switched on (`logging`).
    Debug,
    /// Never.
    Off,
}

impl RequestLog {
    /// The level to log at, if any.
    pub fn level(self) -> Option<log::Level> {
        match self {
            RequestLog::Info => Some(log::Level::Info),
            RequestLog::Debug => Some(log::Level::Debug),
            RequestLog::Off => None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Diagnostic detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// `[validation]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Core's assumevalid: scripts of this block's ancestors are not verified (hex block hash;
    /// `"0"` verifies every script; unset uses the network's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assumevalid: Option<String>,
}

impl ValidationConfig {
    /// The block whose ancestors' scripts are assumed valid: the configured one, else the
    /// network's default; `None` when set to `"0"`.
    pub fn assume_valid(&self, chain: Chain) -> Option<bitcoin::BlockHash> {
        match self.assumevalid.as_deref() {
            Some("0") => None,
            Some(h) => h.parse().ok(),
            None => crate::chain::params::default_assume_valid(chain),
        }
    }
}

/// `[mempool]`: the pool of unconfirmed transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Memory the pool may use, MB (Core's -maxmempool). Default 100: a third of Core's 300,
    /// for small machines; still tens of thousands of transactions, several blocks' worth.
    pub max_mb: u64,
    /// Transactions unconfirmed this long leave the pool (Core's -mempoolexpiry).
    pub expiry_hours: u64,
    /// IP ranges whose peers' BIP35 `mempool` requests are answered; other peers sending one
    /// are disconnected (Core's `mempool` permission).
    pub allow_mempool_requests_from: Vec<String>,
    /// Write the pool to `mempool.dat` at shutdown and load it at start (Core's
    /// -persistmempool).
    pub persist_mempool: bool,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_mb: 100,
            expiry_hours: 336,
            allow_mempool_requests_from: Vec::new(),
            persist_mempool: true,
        }
    }
}

/// The smallest `max_mb`: a full package of descendants (101 kvB) forty times over, as Core
/// requires of -maxmempool.
pub const MIN_MEMPOOL_MB: u64 = 5;

impl MempoolConfig {
    /// The memory budget in bytes.
    pub fn max_usage(&self) -> usize {
        usize::try_from(self.max_mb.saturating_mul(1_000_000)).unwrap_or(usize::MAX)
    }

    /// The ranges allowed to send `mempool` (checked at start).
    pub fn mempool_requests_from(&self) -> Vec<crate::subnet::Subnet> {
        self.allow_mempool_requests_from
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect()
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.max_mb < MIN_MEMPOOL_MB {
            return Err((
                "mempool.max_mb".into(),
                format!("must be at least {MIN_MEMPOOL_MB}, got {}", self.max_mb),
            ));
        }
        if self.expiry_hours == 0 {
            return Err(("mempool.expiry_hours".into(), "must be at least 1".into()));
        }
        for r in &self.allow_mempool_requests_from {
            r.parse::<crate::subnet::Subnet>().map_err(|b| {
                (
                    "mempool.allow_mempool_requests_from".to_string(),
                    b.to_string(),
                )
            })?;
        }
        Ok(())
    }
}

/// `[channels]`: capacity of each bounded channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// p2p -> chain.
    pub peer_events: usize,
    /// chain/rpc -> p2p.
    pub p2p_commands: usize,
    /// rpc -> chain.
    pub chain_requests: usize,
    /// chain -> storage writer.
    pub write_batches: usize,
    /// pruning monitor -> storage writer.
    pub prune_requests: usize,
    /// http dispatcher -> probe workers.
    pub probe_queue: usize,
}

/// `[debug]`: test-only fault injection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// This component stops heartbeating and ignores shutdown after `stall_after_secs`.
    pub stall_component: Option<Component>,
    /// Delay before the stall.
    pub stall_after_secs: f64,
    /// This component panics after `panic_after_secs`.
    pub panic_component: Option<Component>,
    /// Delay before the panic.
    pub panic_after_secs: f64,
    /// The chain thread mines a block this often (regtest load for crash tests and benchmarks).
    pub mine_every_secs: Option<f64>,
    /// This RPC method fails with an internal error for its next `fail_rpc_calls` calls.
    pub fail_rpc_method: Option<String>,
    /// How many calls of `fail_rpc_method` fail.
    pub fail_rpc_calls: u32,
    /// Descriptors opened at start (after the open-file limit is checked) and held: pressure
    /// on the limit from elsewhere in the process, for tests of running out.
    pub hold_fds: usize,
    /// How often start-up progress extends systemd's start timeout (default 10 s).
    pub startup_notify_secs: Option<f64>,
}

/// Whether `s` names a peer: an IP address with or without a port, or a host name (RFC 1123
/// labels) with or without one.
fn is_peer_address(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() || s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = match s.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        Some(_) => return false,
        None => s,
    };
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl DebugConfig {
    fn is_empty(&self) -> bool {
        self.stall_component.is_none()
            && self.panic_component.is_none()
            && self.mine_every_secs.is_none()
            && self.fail_rpc_method.is_none()
            && self.hold_fds == 0
            && self.startup_notify_secs.is_none()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chain: Chain::Mainnet,
            datadir: None,
            shutdown_timeout_secs: 10.0,
            heartbeat_timeout_secs: 30.0,
            network: NetworkConfig::default(),
            storage: StorageConfig::default(),
            rpc: RpcConfig::default(),
            logging: LoggingConfig::default(),
            validation: ValidationConfig::default(),
            mempool: MempoolConfig::default(),
            channels: ChannelConfig::default(),
            debug: DebugConfig::default(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bind: None,
            connect: Vec::new(),
            addnode: Vec::new(),
            max_outbound: 8,
            max_connections: 125,
            reconnect_enabled: true,
            reconnect_max_retries: 10,
            reconnect_initial_delay_secs: 5.0,
            reconnect_max_delay_secs: 3600.0,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Auto,
            pruning_mode: PruningMode::Disabled,
            pruning_threshold_gb: 10.0,
            pruning_target_gb: 8.0,
            keep_recent_blocks: 288,
            pruning_check_interval_secs: 60.0,
            disk_warn_percent: 80.0,
            disk_critical_percent: 90.0,
            fastprune: false,
            dbcache_mb: 64,
            integrity_check_interval_secs: None,
            on_corruption: OnCorruption::Repair,
            backup_interval_secs: 0.0,
            backup_dir: None,
            backup_keep_daily: 7,
            backup_keep_weekly: 4,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            bind: None,
            metrics_enabled: true,
            health_checks_enabled: true,
            threads: 4,
            work_queue: 16,
            max_batch: 1000,
            max_connections: 256,
            max_connections_per_ip: 32,
            header_timeout_secs: 10.0,
            idle_timeout_secs: 30.0,
            body_min_bytes_per_sec: 16 * 1024,
            max_header_bytes: 8192,
            max_body_bytes: crate::rpc::MAX_BODY_BYTES,
            max_response_mb: 64,
            timeout_secs: 30.0,
            method_timeout_secs: BTreeMap::new(),
            breaker: BreakerConfig::default(),
            user: None,
            password: None,
            rpcauth: Vec::new(),
            allow_ip: Vec::new(),
            cookie_perms: CookiePerms::Owner,
            rest: false,
            rest_threads: 2,
            rest_work_queue: 16,
            auth: RpcAuthConfig::default(),
        }
    }
}

impl Default for RpcAuthConfig {
    fn default() -> Self {
        RpcAuthConfig {
            rate_limit_enabled: true,
            rate_limit_rate: 100.0,
            rate_limit_burst: 200,
            per_method_limits: BTreeMap::new(),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Text,
            level: LogLevel::Info,
            rpc_requests: RequestLog::Debug,
        }
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            peer_events: 1024,
            p2p_commands: 256,
            chain_requests: 256,
            write_batches: 64,
            prune_requests: 4,
            probe_queue: 256,
        }
    }
}

impl Config {
    /// The RPC/health/metrics listen address, defaulting to loopback on the network's port.
    pub fn rpc_bind(&self) -> SocketAddr {
        self.rpc.bind.unwrap_or_else(|| {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                self.chain.default_rpc_port(),
            )
        })
    }

    /// The P2P listen address: all interfaces as Core does, loopback only on regtest.
    pub fn p2p_bind(&self) -> SocketAddr {
        self.network.bind.unwrap_or_else(|| {
            let ip = if self.chain == Chain::Regtest {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::UNSPECIFIED
            };
            SocketAddr::new(IpAddr::V4(ip), self.chain.default_p2p_port())
        })
    }

    /// The root datadir: configured, else `$XDG_DATA_HOME/bllvm`, else `~/.bllvm`.
    pub fn datadir_root(&self) -> PathBuf {
        if let Some(d) = &self.datadir {
            return d.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("bllvm");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".bllvm")
    }

    /// The pause between two records of the background integrity check; `None` when off.
    pub fn integrity_check_interval(&self) -> Option<std::time::Duration> {
        let secs =
            self.storage
                .integrity_check_interval_secs
                .unwrap_or(if self.chain == Chain::Regtest {
                    0.0
                } else {
                    1.0
                });
        (secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs))
    }

    /// Where backups of the chain-state store go.
    pub fn backup_root(&self) -> PathBuf {
        self.storage
            .backup_dir
            .clone()
            .unwrap_or_else(|| self.network_dir().join("backups"))
    }

    /// `<datadir>/<network>/`, where every file of this network lives.
    pub fn network_dir(&self) -> PathBuf {
        let root = self.datadir_root();
        match self.chain.subdir() {
            "" => root,
            sub => root.join(sub),
        }
    }

    /// The same config with every default that depends on the network written out.
    pub fn resolved(&self) -> Config {
        let mut c = self.clone();
        c.datadir = Some(self.datadir_root());
        c.rpc.bind = Some(self.rpc_bind());
        c.network.bind = Some(self.p2p_bind());
        c
    }

    /// Checks values that are well-typed but inconsistent or out of range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        fn positive(key: &str, v: f64) -> Result<(), (String, String)> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((key.into(), format!("must be a number above 0, got {v}")))
            }
        }
        fn at_least_one(key: &str, v: usize) -> Result<(), (String, String)> {
            if v >= 1 {
                Ok(())
            } else {
                Err((key.into(), "must be at least 1, got 0".into()))
            }
        }
        positive("shutdown_timeout_secs", self.shutdown_timeout_secs)?;
        positive("heartbeat_timeout_secs", self.heartbeat_timeout_secs)?;
        let s = &self.storage;
        positive("storage.pruning_threshold_gb", s.pruning_threshold_gb)?;
        positive("storage.pruning_target_gb", s.pruning_target_gb)?;
        positive(
            "storage.pruning_check_interval_secs",
            s.pruning_check_interval_secs,
        )?;
        if s.pruning_target_gb > s.pruning_threshold_gb {
            return Err((
                "storage.pruning_target_gb".into(),
                format!(
                    "({}) must not exceed storage.pruning_threshold_gb ({})",
                    s.pruning_target_gb, s.pruning_threshold_gb
                ),
            ));
        }
        if s.keep_recent_blocks < crate::pruning::MIN_BLOCKS_TO_KEEP {
            return Err((
                "storage.keep_recent_blocks".into(),
                format!(
                    "must be at least {} (Core's MIN_BLOCKS_TO_KEEP: reorgs need them), got {}",
                    crate::pruning::MIN_BLOCKS_TO_KEEP,
                    s.keep_recent_blocks
                ),
            ));
        }
        for (key, v) in [
            ("storage.disk_warn_percent", s.disk_warn_percent),
            ("storage.disk_critical_percent", s.disk_critical_percent),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                return Err((key.into(), format!("must be in (0, 100], got {v}")));
            }
        }
        if s.disk_warn_percent > s.disk_critical_percent {
            return Err((
                "storage.disk_warn_percent".into(),
                format!(
                    "({}) must not exceed storage.disk_critical_percent ({})",
                    s.disk_warn_percent, s.disk_critical_percent
                ),
            ));
        }
        if let Some(v) = s.integrity_check_interval_secs {
            if !(v.is_finite() && v >= 0.0) {
                return Err((
                    "storage.integrity_check_interval_secs".into(),
                    format!("must be 0 (off) or more, got {v}"),
                ));
            }
        }
        if !(s.backup_interval_secs.is_finite() && s.backup_interval_secs >= 0.0) {
            return Err((
                "storage.backup_interval_secs".into(),
                format!("must be 0 (off) or more, got {}", s.backup_interval_secs),
            ));
        }
        if s.fastprune && self.chain != Chain::Regtest {
            return Err((
                "storage.fastprune".into(),
                "is only allowed on regtest".into(),
            ));
        }
        if !DBCACHE_MB_RANGE.contains(&s.dbcache_mb) {
            return Err((
                "storage.dbcache_mb".into(),
                format!(
                    "must be in {} to {} (MiB, as Bitcoin Core's -dbcache), got {}",
                    DBCACHE_MB_RANGE.start(),
                    DBCACHE_MB_RANGE.end(),
                    s.dbcache_mb
                ),
            ));
        }
        let n = &self.network;
        positive(
            "network.reconnect_initial_delay_secs",
            n.reconnect_initial_delay_secs,
        )?;
        positive(
            "network.reconnect_max_delay_secs",
            n.reconnect_max_delay_secs,
        )?;
        if n.reconnect_initial_delay_secs > n.reconnect_max_delay_secs {
            return Err((
                "network.reconnect_initial_delay_secs".into(),
                format!(
                    "({}) must not exceed network.reconnect_max_delay_secs ({})",
                    n.reconnect_initial_delay_secs, n.reconnect_max_delay_secs
                ),
            ));
        }
        if n.max_outbound > n.max_connections {
            return Err((
                "network.max_outbound".into(),
                format!(
                    "({}) must not exceed network.max_connections ({})",
                    n.max_outbound, n.max_connections
                ),
            ));
        }
        self.mempool.validate()?;
        at_least_one("rpc.threads", self.rpc.threads)?;
        at_least_one("rpc.rest_threads", self.rpc.rest_threads)?;
        at_least_one("rpc.rest_work_queue", self.rpc.rest_work_queue)?;
        positive("rpc.timeout_secs", self.rpc.timeout_secs)?;
        for (m, t) in &self.rpc.method_timeout_secs {
            positive(&format!("rpc.method_timeout_secs.{m}"), *t)?;
        }
        let b = &self.rpc.breaker;
        positive("rpc.breaker.window_secs", b.window_secs)?;
        positive("rpc.breaker.cooldown_secs", b.cooldown_secs)?;
        at_least_one("rpc.breaker.min_calls", b.min_calls)?;
        at_least_one("rpc.breaker.half_open_trials", b.half_open_trials as usize)?;
        if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
            return Err((
                "rpc.breaker.failure_ratio".into(),
                format!("must be in (0, 1], got {}", b.failure_ratio),
            ));
        }
        if self.rpc.user.is_some() != self.rpc.password.is_some() {
            return Err((
                "rpc.user".into(),
                "and rpc.password must be set together".into(),
            ));
        }
        for e in &self.rpc.rpcauth {
            crate::rpc::auth::parse_rpcauth(e)
                .map_err(|b| ("rpc.rpcauth".to_string(), b.to_string()))?;
        }
        for r in &self.rpc.allow_ip {
            r.parse::<crate::subnet::Subnet>()
                .map_err(|b| ("rpc.allow_ip".to_string(), b.to_string()))?;
        }
        if !self.rpc_bind().ip().is_loopback() {
            if self.rpc.allow_ip.is_empty() {
                return Err((
                    "rpc.bind".into(),
                    format!(
                        "{} is not loopback: set rpc.allow_ip to the client ranges allowed",
                        self.rpc_bind()
                    ),
                ));
            }
            if self.rpc.user.is_none() && self.rpc.rpcauth.is_empty() {
                return Err((
                    "rpc.bind".into(),
                    format!(
                        "{} is not loopback: set rpc.user/rpc.password or rpc.rpcauth",
                        self.rpc_bind()
                    ),
                ));
            }
        }
        for (key, list) in [
            ("network.connect", &self.network.connect),
            ("network.addnode", &self.network.addnode),
        ] {
            if let Some(bad) = list.iter().find(|p| !is_peer_address(p)) {
                return Err((
                    key.into(),
                    format!("`{bad}` is not an address (IP, IP:port, [IPv6]:port) or a host name"),
                ));
            }
        }
        at_least_one("rpc.work_queue", self.rpc.work_queue)?;
        if !(1..=100_000).contains(&self.rpc.max_batch) {
            return Err((
                "rpc.max_batch".into(),
                format!("must be 1 to 100000, got {}", self.rpc.max_batch),
            ));
        }
        let r = &self.rpc;
        if !(8..=1_000_000).contains(&r.max_connections) {
            return Err((
                "rpc.max_connections".into(),
                format!("must be 8 to 1000000, got {}", r.max_connections),
            ));
        }
        if !(1..=r.max_connections).contains(&r.max_connections_per_ip) {
            return Err((
                "rpc.max_connections_per_ip".into(),
                format!(
                    "must be 1 to rpc.max_connections ({}), got {}",
                    r.max_connections, r.max_connections_per_ip
                ),
            ));
        }
        positive("rpc.header_timeout_secs", r.header_timeout_secs)?;
        positive("rpc.idle_timeout_secs", r.idle_timeout_secs)?;
        at_least_one(
            "rpc.body_min_bytes_per_sec",
            r.body_min_bytes_per_sec as usize,
        )?;
        if !(1024..=1024 * 1024).contains(&r.max_header_bytes) {
            return Err((
                "rpc.max_header_bytes".into(),
                format!("must be 1024 to 1048576, got {}", r.max_header_bytes),
            ));
        }
        if !(1024..=crate::rpc::MAX_BODY_BYTES).contains(&r.max_body_bytes) {
            return Err((
                "rpc.max_body_bytes".into(),
                format!(
                    "must be 1024 to {} (32 MiB), got {}",
                    crate::rpc::MAX_BODY_BYTES,
                    r.max_body_bytes
                ),
            ));
        }
        if !(1..=4096).contains(&r.max_response_mb) {
            return Err((
                "rpc.max_response_mb".into(),
                format!("must be 1 to 4096, got {}", r.max_response_mb),
            ));
        }
        let a = &self.rpc.auth;
        positive("rpc.auth.rate_limit_rate", a.rate_limit_rate)?;
        at_least_one("rpc.auth.rate_limit_burst", a.rate_limit_burst as usize)?;
        for (method, limit) in &a.per_method_limits {
            positive(
                &format!("rpc.auth.per_method_limits.{method}.rate"),
                limit.rate,
            )?;
            at_least_one(
                &format!("rpc.auth.per_method_limits.{method}.burst"),
                limit.burst as usize,
            )?;
        }
        if let Some(h) = &self.validation.assumevalid {
            if h != "0" && h.parse::<bitcoin::BlockHash>().is_err() {
                return Err((
                    "validation.assumevalid".into(),
                    format!("`{h}` is not a block hash (64 hex digits)"),
                ));
            }
        }
        let c = &self.channels;
        for (key, v) in [
            ("channels.peer_events", c.peer_events),
            ("channels.p2p_commands", c.p2p_commands),
            ("channels.chain_requests", c.chain_requests),
            ("channels.write_batches", c.write_batches),
            ("channels.prune_requests", c.prune_requests),
            ("channels.probe_queue", c.probe_queue),
        ] {
            at_least_one(key, v)?;
        }
        if let Some(every) = self.debug.startup_notify_secs {
            positive("debug.startup_notify_secs", every)?;
        }
        if self.debug.stall_after_secs < 0.0 || self.debug.panic_after_secs < 0.0 {
            return Err(("debug".into(), "delays must not be negative".into()));
        }
        if let Some(every) = self.debug.mine_every_secs {
            positive("debug.mine_every_secs", every)?;
            if self.chain != Chain::Regtest {
                return Err((
                    "debug.mine_every_secs".into(),
                    "is only allowed on regtest".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_default_matches_built_in_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn peers_must_be_addresses_or_host_names() {
        for good in [
            "127.0.0.1",
            "127.0.0.1:18444",
            "::1",
            "[::1]:18444",
            "localhost",
            "seed.example-1.org:8333",
        ] {
            assert!(is_peer_address(good), "{good}");
        }
        for bad in [
            "::::",
            "",
            "host:port",
            "a..b",
            "-x.org",
            "sp ace",
            "x:70000",
        ] {
            assert!(!is_peer_address(bad), "{bad}");
        }
        let mut c = Config::default();
        c.network.connect = vec!["::::".into()];
        assert_eq!(c.validate().unwrap_err().0, "network.connect");
        let mut c = Config::default();
        c.rpc.max_connections_per_ip = 1000;
        assert_eq!(c.validate().unwrap_err().0, "rpc.max_connections_per_ip");
    }

    #[test]
    fn target_above_threshold_is_rejected_naming_the_key() {
        let mut c = Config::default();
        c.storage.pruning_target_gb = 20.0;
        let (key, why) = c.validate().unwrap_err();
        assert_eq!(key, "storage.pruning_target_gb");
        assert!(why.contains("pruning_threshold_gb"));
    }

    #[test]
    fn pruning_modes_load_with_auto_as_normal() {
        for (text, mode) in [
            ("auto", PruningMode::Normal),
            ("normal", PruningMode::Normal),
            ("aggressive", PruningMode::Aggressive),
            ("custom", PruningMode::Custom),
            ("manual", PruningMode::Manual),
            ("disabled", PruningMode::Disabled),
        ] {
            let c: Config =
                toml::from_str(&format!("[storage]\npruning_mode = \"{text}\"\n")).unwrap();
            assert_eq!(c.storage.pruning_mode, mode, "{text}");
        }
        assert!(toml::from_str::<Config>("[storage]\npruning_mode = \"sometimes\"\n").is_err());
    }

    #[test]
    fn resource_settings_out_of_range_are_refused_naming_the_key() {
        let refused = |edit: &dyn Fn(&mut Config)| {
            let mut c = Config {
                chain: Chain::Regtest,
                ..Config::default()
            };
            edit(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(refused(&|c| c.storage.dbcache_mb = 3), "storage.dbcache_mb");
        assert_eq!(
            refused(&|c| c.storage.dbcache_mb = 99_999_999_999),
            "storage.dbcache_mb"
        );
        assert_eq!(
            refused(&|c| c.storage.keep_recent_blocks = 287),
            "storage.keep_recent_blocks"
        );
        assert_eq!(
            refused(&|c| c.storage.disk_warn_percent = 95.0),
            "storage.disk_warn_percent"
        );
        assert_eq!(refused(&|c| c.mempool.max_mb = 4), "mempool.max_mb");
        assert_eq!(
            refused(&|c| c.mempool.expiry_hours = 0),
            "mempool.expiry_hours"
        );
        assert_eq!(
            refused(&|c| c.mempool.allow_mempool_requests_from = vec!["10.0.0.0/33".into()]),
            "mempool.allow_mempool_requests_from"
        );
        assert_eq!(
            refused(&|c| c.storage.disk_critical_percent = 101.0),
            "storage.disk_critical_percent"
        );
        assert_eq!(
            refused(&|c| {
                c.chain = Chain::Testnet4;
                c.storage.fastprune = true;
            }),
            "storage.fastprune"
        );
        assert_eq!(
            refused(&|c| c.validation.assumevalid = Some("00zz".into())),
            "validation.assumevalid"
        );
    }

    #[test]
    fn assumevalid_defaults_per_network_and_zero_turns_it_off() {
        let mut v = ValidationConfig::default();
        assert_eq!(
            v.assume_valid(Chain::Mainnet),
            crate::chain::params::default_assume_valid(Chain::Mainnet)
        );
        assert_eq!(v.assume_valid(Chain::Regtest), None);
        v.assumevalid = Some("0".into());
        assert_eq!(v.assume_valid(Chain::Mainnet), None);
        let h = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";
        v.assumevalid = Some(h.into());
        assert_eq!(v.assume_valid(Chain::Regtest).unwrap().to_string(), h);
    }

    #[test]
    fn binds_default_per_network() {
        let mut c = Config {
            chain: Chain::Regtest,
            ..Config::default()
        };
        assert_eq!(c.rpc_bind().to_string(), "127.0.0.1:18443");
        assert_eq!(c.p2p_bind().to_string(), "127.0.0.1:18444");
        c.chain = Chain::Testnet4;
        assert_eq!(c.rpc_bind().to_string(), "127.0.0.1:48332");
        assert_eq!(c.p2p_bind().to_string(), "0.0.0.0:48333");
    }

    #[test]
    fn network_dir_follows_core_layout() {
        let mut c = Config {
            datadir: Some("/data".into()),
            ..Config::default()
        };
        assert_eq!(c.network_dir(), PathBuf::from("/data"));
        c.chain = Chain::Regtest;
        assert_eq!(c.network_dir(), PathBuf::from("/data/regtest"));
    }
}
