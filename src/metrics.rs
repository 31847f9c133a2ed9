//! The Prometheus registry: every metric the node exports, named `bllvm_*` in base units.

use parking_lot::RwLock;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A function that reads a channel's current depth.
type DepthProbe = Box<dyn Fn() -> usize + Send + Sync>;

/// Paths that get their own label value; anything else is `other`, so labels stay bounded.
pub const KNOWN_PATHS: [&str; 6] = [
    "/",
    "/health",
    "/health/live",
    "/health/ready",
    "/health/detailed",
    "/metrics",
];

/// All metric handles; cheap to clone handles out of, shared by reference.
pub struct Metrics {
    registry: Registry,
    depth_probes: RwLock<Vec<(&'static str, DepthProbe)>>,
    /// Seconds since start, set at scrape time.
    pub uptime_seconds: Gauge,
    /// Log lines dropped because stderr did not keep up, brought up to date at scrape time.
    pub log_lines_dropped_total: IntCounter,
    /// Current depth of each bounded channel.
    pub channel_depth: IntGaugeVec,
    /// Capacity of each bounded channel.
    pub channel_capacity: IntGaugeVec,
    /// 0 healthy, 1 degraded, 2 unhealthy, per component.
    pub component_status: IntGaugeVec,
    /// Seconds since a component's last heartbeat.
    pub component_heartbeat_age_seconds: GaugeVec,
    /// 0 healthy, 1 degraded, 2 unhealthy.
    pub health_status: IntGauge,
    /// HTTP requests by path and status code.
    pub http_requests_total: IntCounterVec,
    /// HTTP request handling time by path.
    pub http_request_duration_seconds: HistogramVec,
    /// Open connections to the RPC/HTTP port.
    pub http_connections_open: IntGauge,
    /// Connections turned away at once, by reason.
    pub http_connections_rejected_total: IntCounterVec,
    /// Connections closed, by reason.
    pub http_connections_closed_total: IntCounterVec,
    /// Failed accepts on the RPC/HTTP port (out of descriptors or memory), by kind.
    pub http_accept_errors_total: IntCounterVec,
    /// 1 once shutdown has begun.
    pub shutdown_in_progress: IntGauge,
    /// Component failures (errors and panics) by component and kind.
    pub component_failures_total: IntCounterVec,
    /// Height of the active chain tip.
    pub chain_height: IntGauge,
    /// Connected peers.
    pub peers_connected: IntGauge,
    /// Free bytes on the datadir's filesystem.
    pub disk_available_bytes: IntGauge,
    /// Total bytes of the datadir's filesystem.
    pub disk_total_bytes: IntGauge,
    /// Bytes used by the store.
    pub storage_size_bytes: IntGauge,
    /// Watchdog notifications sent to systemd.
    pub watchdog_notifications_total: IntCounterVec,
    /// Height of the best known header.
    pub headers_height: IntGauge,
    /// Blocks connected to the active chain.
    pub blocks_connected_total: IntCounter,
    /// Blocks disconnected from the active chain.
    pub blocks_disconnected_total: IntCounter,
    /// Time to validate and connect a submitted block.
    pub block_validation_seconds: Histogram,
    /// Reorganisations.
    pub reorgs_total: IntCounter,
    /// Blocks disconnected per reorganisation.
    pub reorg_depth_blocks: Histogram,
    /// Unspent outputs.
    pub utxo_count: IntGauge,
    /// Approximate bytes of the UTXO cache.
    pub utxo_cache_bytes: IntGauge,
    /// Transactions in the mempool.
    pub mempool_transactions: IntGauge,
    /// Their total virtual size.
    pub mempool_bytes: IntGauge,
    /// Memory the mempool accounts for (what its budget bounds).
    pub mempool_usage_bytes: IntGauge,
    /// The lowest fee rate the mempool takes now, sat/vB.
    pub mempool_min_fee_rate: Gauge,
    /// Transactions that left the mempool, by cause.
    pub mempool_removed_total: IntCounterVec,
    /// Transactions taken into the mempool (from peers, RPC, reorganisations, orphans).
    pub mempool_accepted_total: IntCounter,
    /// Transactions refused, by Core's reason.
    pub mempool_rejected_total: IntCounterVec,
    /// Relayed transactions waiting for their parents.
    pub mempool_orphans: IntGauge,
    /// Memory the orphan pool accounts for.
    pub mempool_orphan_bytes: IntGauge,
    /// The pool's memory budget (`[mempool] max_mb`).
    pub mempool_max_bytes: IntGauge,
    /// The network the node runs on (`network` label, Core's chain name); always 1.
    pub network_info: IntGaugeVec,
    /// Seconds between scheduled backups (0: off).
    pub backup_interval_seconds: Gauge,
    /// Time of one storage commit (files, fsync, store).
    pub storage_commit_seconds: Histogram,
    /// Bytes in the block and undo files.
    pub block_files_bytes: IntGauge,
    /// RPC calls by method and outcome.
    pub rpc_requests_total: IntCounterVec,
    /// RPC request time by method (`batch` for batches).
    pub rpc_request_duration_seconds: HistogramVec,
    /// RPC requests refused before any method ran, by reason.
    pub rpc_rejections_total: IntCounterVec,
    /// Answers given from the published chain view while the chain thread did not answer.
    pub rpc_degraded_answers_total: IntCounterVec,
    /// Circuit breaker per method: 0 closed, 1 open, 2 half-open.
    pub rpc_breaker_state: IntGaugeVec,
    /// RPC calls being answered now.
    pub rpc_in_flight: IntGauge,
    /// P2P traffic and peer-management figures.
    pub net: NetMetrics,
    /// Disk, pruning and write-failure figures.
    pub disk: DiskMetrics,
}

/// The pruning monitor's and the writer's figures about disk space, pruning and failed writes.
#[derive(Clone)]
pub struct DiskMetrics {
    /// Used share of the datadir's filesystem, 0 to 1.
    pub used_ratio: Gauge,
    /// `disk_warn_percent` as a ratio.
    pub warn_ratio: Gauge,
    /// `disk_critical_percent` as a ratio.
    pub critical_ratio: Gauge,
    /// Prunes that deleted files, by trigger (auto, disk_critical, manual).
    pub prunes_total: IntCounterVec,
    /// Block and undo files deleted by pruning.
    pub pruned_files_total: IntCounter,
    /// Bytes freed by pruning.
    pub pruned_bytes_total: IntCounter,
    /// Highest pruned block height; -1 while nothing is pruned.
    pub prune_height: IntGauge,
    /// Commits that failed (the batch is kept and retried).
    pub write_failures_total: IntCounter,
    /// 1 while writes are failing and new blocks are refused.
    pub writes_paused: IntGauge,
    /// The UTXO cache's budget (`dbcache_mb`).
    pub utxo_cache_budget_bytes: IntGauge,
    /// Damage found in stored data, by kind (block, undo, coin, index, block_file).
    pub corruption_total: IntCounterVec,
    /// Blocks whose block and undo records the background check has read back.
    pub integrity_checked_total: IntCounter,
    /// When the last verified backup was written, unix seconds (0: none yet).
    pub backup_last_success: IntGauge,
    /// Backups that failed, were skipped for space, or failed verification.
    pub backup_failures_total: IntCounter,
    /// Size of the last backup.
    pub backup_bytes: IntGauge,
}

impl DiskMetrics {
    fn new(r: &Registry) -> Result<DiskMetrics, MetricsError> {
        let gauge = |name: &str, help: &str| reg(r, Gauge::new(name, help)?);
        let int_gauge = |name: &str, help: &str| reg(r, IntGauge::new(name, help)?);
        let counter = |name: &str, help: &str| reg(r, IntCounter::new(name, help)?);
        let m = DiskMetrics {
            used_ratio: gauge(
                "bllvm_disk_used_ratio",
                "Used share of the datadir's filesystem (0 to 1).",
            )?,
            warn_ratio: gauge(
                "bllvm_disk_warn_ratio",
                "Used share at which health turns degraded (storage.disk_warn_percent).",
            )?,
            critical_ratio: gauge(
                "bllvm_disk_critical_ratio",
                "Used share at which the node prunes at once (storage.disk_critical_percent).",
            )?,
            prunes_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_prunes_total",
                        "Prunes that deleted block files, by trigger.",
                    ),
                    &["trigger"],
                )?,
            )?,
            pruned_files_total: counter(
                "bllvm_pruned_files_total",
                "Block and undo files deleted by pruning.",
            )?,
            pruned_bytes_total: counter("bllvm_pruned_bytes_total", "Bytes freed by pruning.")?,
            prune_height: int_gauge(
                "bllvm_prune_height",
                "Highest block height whose data was pruned; -1 while nothing is pruned.",
            )?,
            write_failures_total: counter(
                "bllvm_storage_write_failures_total",
                "Storage commits that failed; the batch is kept and retried.",
            )?,
            writes_paused: int_gauge(
                "bllvm_storage_writes_paused",
                "1 while storage writes fail (a full disk) and new blocks are refused.",
            )?,
            utxo_cache_budget_bytes: int_gauge(
                "bllvm_utxo_cache_budget_bytes",
                "Memory budget of the UTXO cache (storage.dbcache_mb).",
            )?,
            backup_last_success: int_gauge(
                "bllvm_backup_last_success_timestamp_seconds",
                "When the last verified backup of the chain-state store was written (0: none).",
            )?,
            backup_failures_total: counter(
                "bllvm_backup_failures_total",
                "Backups that failed, were skipped for lack of space, or failed verification.",
            )?,
            backup_bytes: int_gauge("bllvm_backup_bytes", "Size of the last backup.")?,
            integrity_checked_total: counter(
                "bllvm_integrity_checked_blocks_total",
                "Blocks whose block and undo records the background check has read back.",
            )?,
            corruption_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_corruption_detected_total",
                        "Damage found in stored data (each place counted once), by kind.",
                    ),
                    &["kind"],
                )?,
            )?,
        };
        m.backup_last_success.set(0);
        for kind in crate::chain::integrity::KINDS {
            m.corruption_total.with_label_values(&[kind]);
        }
        for trigger in ["auto", "disk_critical", "manual"] {
            m.prunes_total.with_label_values(&[trigger]);
        }
        m.prune_height.set(-1);
        Ok(m)
    }
}

/// The p2p thread's metrics; every label is a bounded set (commands from a fixed list, reasons
/// from the code).
#[derive(Clone)]
pub struct NetMetrics {
    /// Connected peers by direction (inbound, outbound, manual).
    pub peers: IntGaugeVec,
    /// Connections opened, by direction.
    pub connections_opened_total: IntCounterVec,
    /// Connections closed, by reason.
    pub connections_closed_total: IntCounterVec,
    /// Bytes sent, by command.
    pub bytes_sent_total: IntCounterVec,
    /// Bytes received, by command.
    pub bytes_received_total: IntCounterVec,
    /// Messages sent, by command.
    pub messages_sent_total: IntCounterVec,
    /// Messages received, by command.
    pub messages_received_total: IntCounterVec,
    /// Addresses banned now.
    pub bans: IntGauge,
    /// Partition events.
    pub partitions_total: IntCounter,
    /// Outbound connection attempts.
    pub connect_attempts_total: IntCounter,
    /// Messages dropped because a peer's send queue was full.
    pub queue_drops_total: IntCounter,
    /// Bytes waiting in all send queues.
    pub send_queue_bytes: IntGauge,
    /// Bytes of unfinished incoming frames held, all peers.
    pub receive_buffer_bytes: IntGauge,
    /// Memory transaction relay holds on the P2P thread (estimated).
    pub relay_bytes: IntGauge,
    /// Blocks requested and not yet received.
    pub blocks_in_flight: IntGauge,
    /// Addresses in the address book.
    pub addresses_known: IntGauge,
}

impl NetMetrics {
    fn new(r: &Registry) -> Result<NetMetrics, MetricsError> {
        let vec = |name: &str, help: &str, label: &str| -> Result<IntCounterVec, MetricsError> {
            reg(r, IntCounterVec::new(Opts::new(name, help), &[label])?)
        };
        Ok(NetMetrics {
            peers: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("bllvm_p2p_peers", "Connected peers after the handshake."),
                    &["direction"],
                )?,
            )?,
            connections_opened_total: vec(
                "bllvm_p2p_connections_opened_total",
                "P2P connections opened.",
                "direction",
            )?,
            connections_closed_total: vec(
                "bllvm_p2p_connections_closed_total",
                "P2P connections closed.",
                "reason",
            )?,
            bytes_sent_total: vec(
                "bllvm_p2p_bytes_sent_total",
                "P2P bytes queued for sending.",
                "command",
            )?,
            bytes_received_total: vec(
                "bllvm_p2p_bytes_received_total",
                "P2P bytes received in whole messages.",
                "command",
            )?,
            messages_sent_total: vec(
                "bllvm_p2p_messages_sent_total",
                "P2P messages queued for sending.",
                "command",
            )?,
            messages_received_total: vec(
                "bllvm_p2p_messages_received_total",
                "P2P messages received.",
                "command",
            )?,
            bans: reg(
                r,
                IntGauge::new("bllvm_p2p_banned", "Addresses banned now.")?,
            )?,
            partitions_total: reg(
                r,
                IntCounter::new(
                    "bllvm_network_partitions_total",
                    "Times every outbound peer dropped at once.",
                )?,
            )?,
            connect_attempts_total: reg(
                r,
                IntCounter::new(
                    "bllvm_p2p_connect_attempts_total",
                    "Outbound connection attempts, reconnections included.",
                )?,
            )?,
            queue_drops_total: reg(
                r,
                IntCounter::new(
                    "bllvm_p2p_queue_drops_total",
                    "Messages dropped because a peer's send queue was full.",
                )?,
            )?,
            send_queue_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_p2p_send_queue_bytes",
                    "Bytes waiting in all peers' send queues.",
                )?,
            )?,
            receive_buffer_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_p2p_receive_buffer_bytes",
                    "Bytes of unfinished incoming frames held, all peers (inbound ones share a budget).",
                )?,
            )?,
            relay_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_p2p_relay_bytes",
                    "Memory transaction relay holds on the P2P thread, estimated: its index of the mempool, each peer's known and queued announcements, transactions asked for, recent rejects.",
                )?,
            )?,
            blocks_in_flight: reg(
                r,
                IntGauge::new(
                    "bllvm_sync_blocks_in_flight",
                    "Blocks requested from peers and not yet received.",
                )?,
            )?,
            addresses_known: reg(
                r,
                IntGauge::new(
                    "bllvm_p2p_addresses_known",
                    "Addresses in the address book.",
                )?,
            )?,
        })
    }
}

/// Registering a metric failed; only a programming error (duplicate name) causes it.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric, including the process collector.
    pub fn new(backend: &str) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let build_info = IntGaugeVec::new(
            Opts::new("bllvm_build_info", "Build information; always 1."),
            &["version", "backend"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), backend])
            .set(1);
        r.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // What the host allows, so alerts can use shares of it.
        let memory_limit = IntGauge::new(
            "bllvm_host_memory_limit_bytes",
            "Memory the node may use: its cgroup's limit, else the machine's total.",
        )?;
        memory_limit.set(crate::host::memory_limit_bytes().unwrap_or(0) as i64);
        r.register(Box::new(memory_limit))?;
        let cpus = IntGauge::new(
            "bllvm_host_cpus",
            "CPUs the node may use (cgroup quota and affinity).",
        )?;
        cpus.set(crate::host::cpus() as i64);
        r.register(Box::new(cpus))?;
        let m = Metrics {
            depth_probes: RwLock::new(Vec::new()),
            log_lines_dropped_total: reg(
                r,
                IntCounter::new(
                    "bllvm_log_lines_dropped_total",
                    "Log lines below warning dropped because stderr did not keep up.",
                )?,
            )?,
            uptime_seconds: reg(
                r,
                Gauge::new("bllvm_uptime_seconds", "Seconds since the node started.")?,
            )?,
            channel_depth: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("bllvm_channel_depth", "Messages waiting in a bounded channel."),
                    &["channel"],
                )?,
            )?,
            channel_capacity: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("bllvm_channel_capacity", "Capacity of a bounded channel."),
                    &["channel"],
                )?,
            )?,
            component_status: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "bllvm_component_status",
                        "Component health: 0 healthy, 1 degraded, 2 unhealthy.",
                    ),
                    &["component"],
                )?,
            )?,
            component_heartbeat_age_seconds: reg(
                r,
                GaugeVec::new(
                    Opts::new(
                        "bllvm_component_heartbeat_age_seconds",
                        "Seconds since the component's last heartbeat.",
                    ),
                    &["component"],
                )?,
            )?,
            health_status: reg(
                r,
                IntGauge::new(
                    "bllvm_health_status",
                    "Overall health: 0 healthy, 1 degraded, 2 unhealthy.",
                )?,
            )?,
            http_requests_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new("bllvm_http_requests_total", "HTTP requests by path and status."),
                    &["path", "status"],
                )?,
            )?,
            http_request_duration_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "bllvm_http_request_duration_seconds",
                        "Time from dispatch to response, by path.",
                    )
                    .buckets(latency_buckets(30.0)),
                    &["path"],
                )?,
            )?,
            http_connections_open: reg(
                r,
                IntGauge::new(
                    "bllvm_http_connections_open",
                    "Open connections to the RPC/HTTP port.",
                )?,
            )?,
            http_connections_rejected_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_http_connections_rejected_total",
                        "Connections to the RPC/HTTP port turned away at once, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            http_connections_closed_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_http_connections_closed_total",
                        "Connections to the RPC/HTTP port closed, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            http_accept_errors_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_http_accept_errors_total",
                        "Failed accepts on the RPC/HTTP port (out of file descriptors or memory), by kind.",
                    ),
                    &["kind"],
                )?,
            )?,
            shutdown_in_progress: reg(
                r,
                IntGauge::new(
                    "bllvm_shutdown_in_progress",
                    "1 once the ordered shutdown has begun.",
                )?,
            )?,
            component_failures_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_component_failures_total",
                        "Component threads that ended with an error or a panic.",
                    ),
                    &["component", "kind"],
                )?,
            )?,
            chain_height: reg(
                r,
                IntGauge::new("bllvm_chain_height", "Height of the active chain tip.")?,
            )?,
            peers_connected: reg(
                r,
                IntGauge::new("bllvm_peers_connected", "Connected P2P peers.")?,
            )?,
            disk_available_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_disk_available_bytes",
                    "Free bytes on the datadir's filesystem.",
                )?,
            )?,
            disk_total_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_disk_total_bytes",
                    "Size of the datadir's filesystem in bytes.",
                )?,
            )?,
            storage_size_bytes: reg(
                r,
                IntGauge::new("bllvm_storage_size_bytes", "Bytes used by the store.")?,
            )?,
            watchdog_notifications_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_watchdog_notifications_total",
                        "WATCHDOG=1 notifications sent, and ones withheld because a heartbeat was stale.",
                    ),
                    &["outcome"],
                )?,
            )?,
            headers_height: reg(
                r,
                IntGauge::new("bllvm_headers_height", "Height of the best known header.")?,
            )?,
            blocks_connected_total: reg(
                r,
                IntCounter::new(
                    "bllvm_blocks_connected_total",
                    "Blocks connected to the active chain.",
                )?,
            )?,
            blocks_disconnected_total: reg(
                r,
                IntCounter::new(
                    "bllvm_blocks_disconnected_total",
                    "Blocks disconnected from the active chain.",
                )?,
            )?,
            block_validation_seconds: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bllvm_block_validation_seconds",
                        "Time to validate and connect a block.",
                    )
                    .buckets(latency_buckets(10.0)),
                )?,
            )?,
            reorgs_total: reg(
                r,
                IntCounter::new("bllvm_reorgs_total", "Chain reorganisations.")?,
            )?,
            reorg_depth_blocks: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bllvm_reorg_depth_blocks",
                        "Blocks disconnected per reorganisation.",
                    )
                    .buckets(vec![1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 50.0, 100.0, 200.0, 1000.0]),
                )?,
            )?,
            utxo_count: reg(
                r,
                IntGauge::new("bllvm_utxo_set_outputs", "Unspent transaction outputs in the UTXO set.")?,
            )?,
            utxo_cache_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_utxo_cache_bytes",
                    "Approximate memory of the UTXO cache (bounded by dbcache_mb).",
                )?,
            )?,
            mempool_transactions: reg(
                r,
                IntGauge::new("bllvm_mempool_transactions", "Transactions in the mempool.")?,
            )?,
            mempool_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_mempool_bytes",
                    "Total virtual size of the mempool's transactions (getmempoolinfo.bytes).",
                )?,
            )?,
            mempool_usage_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_mempool_usage_bytes",
                    "Memory the mempool accounts for, what its budget bounds (getmempoolinfo.usage).",
                )?,
            )?,
            mempool_min_fee_rate: reg(
                r,
                Gauge::new(
                    "bllvm_mempool_min_fee_rate",
                    "Lowest fee rate the mempool takes now, sat/vB (getmempoolinfo.mempoolminfee).",
                )?,
            )?,
            mempool_removed_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_mempool_removed_total",
                        "Transactions that left the mempool, by cause (block, conflict, size_limit, expiry, replaced).",
                    ),
                    &["cause"],
                )?,
            )?,
            mempool_accepted_total: reg(
                r,
                IntCounter::new(
                    "bllvm_mempool_accepted_total",
                    "Transactions taken into the mempool (from peers, RPC, reorganisations, orphans).",
                )?,
            )?,
            mempool_rejected_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_mempool_rejected_total",
                        "Transactions refused by the mempool, by Core's reject reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            mempool_orphans: reg(
                r,
                IntGauge::new(
                    "bllvm_mempool_orphans",
                    "Relayed transactions waiting for their parents (at most 100).",
                )?,
            )?,
            mempool_orphan_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_mempool_orphan_bytes",
                    "Memory the orphan pool accounts for.",
                )?,
            )?,
            network_info: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "bllvm_network_info",
                        "The network the node runs on (Core's chain name in the label); always 1.",
                    ),
                    &["network"],
                )?,
            )?,
            backup_interval_seconds: reg(
                r,
                Gauge::new(
                    "bllvm_backup_interval_seconds",
                    "Seconds between scheduled backups of the chain-state store (0: off).",
                )?,
            )?,
            mempool_max_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_mempool_max_bytes",
                    "The mempool's memory budget ([mempool] max_mb; getmempoolinfo.maxmempool).",
                )?,
            )?,
            storage_commit_seconds: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bllvm_storage_commit_seconds",
                        "Time of one storage commit: block files, fsync, store transaction.",
                    )
                    .buckets(latency_buckets(5.0)),
                )?,
            )?,
            rpc_requests_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new("bllvm_rpc_requests_total", "RPC calls by method and outcome."),
                    &["method", "outcome"],
                )?,
            )?,
            rpc_request_duration_seconds: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "bllvm_rpc_request_duration_seconds",
                        "RPC request handling time by method.",
                    )
                    .buckets(latency_buckets(30.0)),
                    &["method"],
                )?,
            )?,
            rpc_degraded_answers_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_rpc_degraded_answers_total",
                        "RPC answers given from the last published chain view while the chain thread was not answering, by method.",
                    ),
                    &["method"],
                )?,
            )?,
            rpc_rejections_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "bllvm_rpc_rejections_total",
                        "RPC requests refused before a method ran, by reason.",
                    ),
                    &["reason"],
                )?,
            )?,
            rpc_breaker_state: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "bllvm_rpc_breaker_state",
                        "Circuit breaker per RPC method: 0 closed, 1 open, 2 half-open.",
                    ),
                    &["method"],
                )?,
            )?,
            net: NetMetrics::new(r)?,
            disk: DiskMetrics::new(r)?,
            rpc_in_flight: reg(
                r,
                IntGauge::new("bllvm_rpc_in_flight", "RPC calls being answered now.")?,
            )?,
            block_files_bytes: reg(
                r,
                IntGauge::new(
                    "bllvm_block_files_bytes",
                    "Bytes in the block and undo files.",
                )?,
            )?,
            registry,
        };
        // Series exist from the start, so `increase()` and alerts see the first event.
        for c in crate::component::Component::ALL {
            for kind in ["error", "panic"] {
                m.component_failures_total
                    .with_label_values(&[c.name(), kind]);
            }
        }
        for method in crate::rpc::methods::METHODS {
            m.rpc_breaker_state.with_label_values(&[method]).set(0);
        }
        // Exported before the first request is timed, so a scrape never misses the series
        // (a dashboard test caught a scrape racing the first probe's observation).
        for path in KNOWN_PATHS {
            m.http_request_duration_seconds.with_label_values(&[path]);
        }
        for reason in ["auth", "forbidden", "rate", "queue", "timeout", "breaker"] {
            m.rpc_rejections_total.with_label_values(&[reason]);
        }
        for r in crate::http::gate::admission::Refusal::ALL {
            m.http_connections_rejected_total
                .with_label_values(&[r.label()]);
        }
        for reason in crate::http::gate::CLOSE_REASONS {
            m.http_connections_closed_total.with_label_values(&[reason]);
        }
        for kind in ["emfile", "enfile", "enomem", "other"] {
            m.http_accept_errors_total.with_label_values(&[kind]);
        }
        for outcome in ["sent", "withheld"] {
            m.watchdog_notifications_total.with_label_values(&[outcome]);
        }
        for method in [
            "getbestblockhash",
            "getblockchaininfo",
            "getblockcount",
            "getchaintips",
        ] {
            m.rpc_degraded_answers_total.with_label_values(&[method]);
        }
        for why in crate::mempool::pool::Removal::ALL {
            m.mempool_removed_total.with_label_values(&[why.label()]);
        }
        for reason in crate::mempool::REASONS.iter().chain(&["other"]) {
            m.mempool_rejected_total.with_label_values(&[reason]);
        }
        Ok(m)
    }

    /// Registers a channel so its depth and capacity are exported at every scrape.
    pub fn watch_channel(
        &self,
        name: &'static str,
        capacity: usize,
        depth: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        self.channel_capacity
            .with_label_values(&[name])
            .set(capacity as i64);
        self.depth_probes.write().push((name, Box::new(depth)));
    }

    /// Samples channel depths and renders the text exposition format.
    pub fn render(&self) -> String {
        let dropped = crate::logging::queue::dropped();
        let counted = self.log_lines_dropped_total.get();
        if dropped > counted {
            self.log_lines_dropped_total.inc_by(dropped - counted);
        }
        for (name, probe) in self.depth_probes.read().iter() {
            self.channel_depth
                .with_label_values(&[name])
                .set(probe() as i64);
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The label value for a request path.
    pub fn path_label(path: &str) -> &'static str {
        if path.starts_with("/rest/") {
            return crate::rest::path::label(path);
        }
        KNOWN_PATHS
            .into_iter()
            .find(|p| *p == path)
            .unwrap_or("other")
    }
}

/// Latency buckets from 0.5 ms up to `max` seconds (1-2.5-5 steps), shared by every histogram.
fn latency_buckets(max: f64) -> Vec<f64> {
    const ALL: [f64; 15] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    ALL.into_iter().filter(|b| *b <= max).collect()
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> Result<C, MetricsError> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_and_channel_depths() {
        let m = Metrics::new("redb").unwrap();
        m.watch_channel("peer_events", 8, || 3);
        let text = m.render();
        assert!(text.contains("bllvm_channel_depth{channel=\"peer_events\"} 3"));
        assert!(text.contains("bllvm_channel_capacity{channel=\"peer_events\"} 8"));
        assert!(text.contains("bllvm_build_info{backend=\"redb\""));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(Metrics::path_label("/health"), "/health");
        assert_eq!(Metrics::path_label("/../../etc/passwd"), "other");
    }
}
