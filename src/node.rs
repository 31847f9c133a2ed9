//! Wiring: the only place that creates channels and threads and hands them to the supervisor.

use crate::chain::params::Params;
use crate::chain::persist::{rebuild, ChainDb, PersistError};
use crate::chain::ChainThread;
use crate::component::Component;
use crate::config::{Config, OnCorruption};
use crate::datadir::{self, DatadirError, DatadirLock};
use crate::http::gate::{request::Limits, Gate, GateConfig};
use crate::http::{self, probes::ProbeContext, route::Enabled, Dispatcher, HttpError};
use crate::lifecycle::stop_pair;
use crate::messages::P2pHandle;
use crate::metrics::{Metrics, MetricsError};
use crate::p2p::reactor::{P2pSetup, Reactor, ReactorError, ReactorLinks};
use crate::pruning::policy::PruneSettings;
use crate::pruning::PruningMonitor;
use crate::rpc::allow::AllowList;
use crate::rpc::auth::{CookieFile, Credentials};
use crate::rpc::{self, RpcServer};
use crate::state::Shared;
use crate::storage::writer::{BackupSettings, Writer};
use crate::storage::{self, StorageError, Store};
use crate::supervisor::health::Fault;
use crate::supervisor::systemd::Notifier;
use crate::supervisor::{signals, Stage, Supervisor};
use crate::thread::ComponentFailed;
use crate::thread::{self, error_chain};
use crossbeam_channel::{bounded, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Why the node could not start; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Datadir or lock.
    #[error(transparent)]
    Datadir(#[from] DatadirError),
    /// Store.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The configured backend cannot be used yet.
    #[error(
        "storage.backend = \"sled\" is not available in this build yet; use \"auto\" or \"redb\""
    )]
    BackendUnavailable,
    /// The RPC cookie could not be written.
    #[error("cannot write RPC cookie {path}")]
    Cookie {
        /// The cookie file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Chain state.
    #[error("cannot load the chain state")]
    Chain(#[from] PersistError),
    /// Metrics registry.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// HTTP listener.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// P2P listener.
    #[error(transparent)]
    P2p(#[from] ReactorError),
    /// The open-file limit cannot hold the configured connections.
    #[error(
        "the open file limit ({soft}) is below the {need} descriptors rpc.max_connections, \
         the HTTP server and network.max_connections need: raise it (LimitNOFILE= in the unit, \
         ulimit -n) or lower those limits"
    )]
    FdLimit {
        /// The soft limit, raised to the hard limit.
        soft: u64,
        /// What the configured limits need.
        need: u64,
    },
    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Spawn {
        /// Thread name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts the node and blocks until it has shut down; returns the process exit code
/// ([`signals::RESTART_EXIT_CODE`]: the caller starts the node again). `reindex` rebuilds the
/// chain state from the block files first (`--reindex`).
pub fn run(config: Config, reindex: bool) -> Ended {
    // Under systemd, a long start-up (a store repair, a reindex) says it is still working.
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let every = config
        .debug
        .startup_notify_secs
        .map_or(crate::supervisor::startup::EVERY, Duration::from_secs_f64);
    let notifier = crate::supervisor::startup::spawn(every, started.clone());
    let begun = start(&config, reindex);
    started.store(true, std::sync::atomic::Ordering::Release);
    if let Some(h) = notifier {
        h.thread().unpark();
        let _ = h.join();
    }
    let (supervisor, lock) = match begun {
        Ok(s) => s,
        Err(StartError::Chain(PersistError::Interrupted)) => {
            log::info!(exit_code = 0; "stopped during start-up; the reindex resumes at the next start");
            return Ended {
                code: 0,
                bound: None,
            };
        }
        Err(StartError::Chain(e @ PersistError::Corrupt { .. })) => {
            log::error!(
                exit_code = signals::CORRUPTION_EXIT_CODE;
                "cannot start: the chain state is damaged ({e}); stopping because storage.on_corruption = \"shutdown\". \
                 To recover: `bllvm-node restore <backup dir>`, or start with --reindex to rebuild it from the block files"
            );
            return Ended {
                code: signals::CORRUPTION_EXIT_CODE,
                bound: None,
            };
        }
        Err(e) => {
            log::error!("cannot start: {}", error_chain(&e));
            return Ended {
                code: 1,
                bound: None,
            };
        }
    };
    let code = supervisor.run();
    // Shutdown step 6: cookie and internal socket removed, then the lock released.
    let Held {
        cookie,
        socket,
        lock,
        bound,
    } = lock;
    drop(cookie);
    drop(socket);
    drop(lock);
    if code == 0 {
        log::info!(exit_code = code; "shutdown complete");
    } else {
        log::error!(exit_code = code; "shutdown complete with errors");
    }
    Ended {
        code,
        bound: Some(bound),
    }
}

/// What a running node holds until the last step of its shutdown: the cookie and the internal
/// socket are removed, then the datadir lock released.
struct Held {
    cookie: Arc<CookieFile>,
    socket: http::SocketFile,
    lock: DatadirLock,
    /// The HTTP and P2P addresses as bound.
    bound: (std::net::SocketAddr, std::net::SocketAddr),
}

/// How a run ended: the exit code, and the addresses it had bound (a restart binds them again,
/// so a node started on port 0 keeps its ports).
pub struct Ended {
    /// The process exit code.
    pub code: i32,
    /// HTTP and P2P addresses, if the node got as far as binding them.
    pub bound: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

/// Descriptors the configured connection limits can take at once: every RPC-port client, both
/// ends of each internal HTTP connection, every peer, and a margin for block files, the store,
/// listeners, logs and name lookups.
fn descriptors_needed(config: &Config) -> u64 {
    const MARGIN: usize = 128;
    let g = gate_config(config);
    (config.rpc.max_connections
        + 2 * (g.rpc_slots + g.probe_slots)
        + config.network.max_connections
        + MARGIN) as u64
}

/// What the gate in front of tiny_http enforces, from `[rpc]`.
fn gate_config(config: &Config) -> GateConfig {
    let r = &config.rpc;
    GateConfig {
        limits: Limits {
            max_header_bytes: r.max_header_bytes,
            max_body_bytes: r.max_body_bytes,
            header_timeout: Duration::from_secs_f64(r.header_timeout_secs),
            idle_timeout: Duration::from_secs_f64(r.idle_timeout_secs),
            body_min_bytes_per_sec: r.body_min_bytes_per_sec,
        },
        max_connections: r.max_connections,
        max_connections_per_ip: r.max_connections_per_ip,
        // Workers, their queue, and a few for requests the dispatcher answers itself (refused
        // authentication, rate limits, a full queue's 503), so Core's 503 still comes at once.
        // REST requests use the same internal connections while they wait or run.
        rpc_slots: r.threads
            + r.work_queue
            + 8
            + if r.rest {
                r.rest_threads + r.rest_work_queue
            } else {
                0
            },
        probe_slots: http::PROBE_WORKERS + 2,
        rpc_answer_timeout: Duration::from_secs_f64(
            r.method_timeout_secs
                .values()
                .fold(r.timeout_secs, |a, b| a.max(*b))
                + 30.0,
        ),
    }
}

/// Block file size with `fastprune` (Core's, for trying pruning on small chains).
const FASTPRUNE_FILE_SIZE: u64 = 64 * 1024;

/// How often idle loops wake to beat: well inside the staleness limit, at most a second.
fn tick_for(heartbeat_timeout: Duration) -> Duration {
    (heartbeat_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Starts a component thread; a failure to start is a start error naming the thread.
fn start_thread<F, E>(
    component: Component,
    name: &str,
    failures: &Sender<ComponentFailed>,
    body: F,
) -> Result<JoinHandle<()>, StartError>
where
    F: FnOnce() -> Result<(), E> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    thread::spawn(component, name.to_owned(), failures.clone(), body).map_err(|source| {
        StartError::Spawn {
            name: name.to_owned(),
            source,
        }
    })
}

/// Exports a channel's depth and capacity.
fn watch<T: Send + 'static>(
    metrics: &Metrics,
    name: &'static str,
    capacity: usize,
    rx: &crossbeam_channel::Receiver<T>,
) {
    let rx = rx.clone();
    metrics.watch_channel(name, capacity, move || rx.len());
}

fn fault_for(config: &Config, c: Component) -> Option<Fault> {
    let d = &config.debug;
    if d.stall_component == Some(c) {
        Some(Fault::Stall {
            after: Duration::from_secs_f64(d.stall_after_secs),
        })
    } else if d.panic_component == Some(c) {
        Some(Fault::Panic {
            after: Duration::from_secs_f64(d.panic_after_secs),
        })
    } else {
        None
    }
}

/// The p2p thread's settings, with the address book and bans saved by the last run.
fn p2p_setup(config: &Config, store: &dyn Store) -> Result<P2pSetup, StartError> {
    use crate::messages::parse_peer;
    use crate::p2p::resolver::Purpose;
    let n = &config.network;
    let port = config.chain.default_p2p_port();
    let mut names = Vec::new();
    let mut resolve = |list: &[String], purpose| -> Vec<std::net::SocketAddr> {
        list.iter()
            .filter_map(|s| match parse_peer(s, port) {
                Ok(a) => Some(a),
                Err((host, p)) => {
                    names.push((host, p, purpose));
                    None
                }
            })
            .collect()
    };
    let connect_only = resolve(&n.connect, Purpose::Connect);
    let addnode = resolve(&n.addnode, Purpose::AddNode);
    let secs = Duration::from_secs_f64;
    let manager = crate::p2p::peer_manager::Settings {
        target_outbound: n.max_outbound,
        max_connections: n.max_connections,
        connect_only,
        connect_mode: !n.connect.is_empty(),
        addnode,
        backoff: crate::p2p::backoff::Policy {
            initial: secs(n.reconnect_initial_delay_secs),
            max: secs(n.reconnect_max_delay_secs),
            // Disabled: a dropped gossip peer is replaced, not retried; manual peers always are.
            max_retries: if n.reconnect_enabled {
                n.reconnect_max_retries
            } else {
                0
            },
            jitter: 0.2,
        },
        fixed_seeds: crate::p2p::seeds::fixed_seeds(config.chain),
    };
    let table = |key: &[u8]| store.get(storage::Table::Peers, key);
    let book = table(b"addrbook")?
        .map(|b| crate::p2p::addrbook::AddrBook::decode(&b))
        .unwrap_or_default();
    let bans = table(b"bans")?
        .map(|b| crate::p2p::bans::BanList::decode(&b))
        .unwrap_or_default();
    Ok(P2pSetup {
        chain: config.chain,
        manager,
        names,
        default_port: port,
        send_queue_limit: crate::p2p::send_queue::DEFAULT_LIMIT,
        book,
        bans,
        mempool_requests_from: config.mempool.mempool_requests_from(),
    })
}

fn start(config: &Config, reindex: bool) -> Result<(Supervisor, Held), StartError> {
    // First, so a SIGTERM during start-up is queued for an orderly stop instead of killing us.
    let (sig_tx, sig_rx) = bounded(4);
    let (fail_tx, fail_rx) = bounded(64);
    let forward = signals::listen(sig_tx.clone()).map_err(|source| StartError::Spawn {
        name: "signals".into(),
        source,
    })?;
    // Not joined: it blocks in signal-hook until the process exits.
    start_thread(Component::Supervisor, "signals", &fail_tx, forward)?;
    let dir = config.network_dir();
    let lock = datadir::lock(&dir)?;
    match datadir::raise_fd_limit() {
        Ok((soft, _)) => {
            log::info!("open file limit {soft}");
            let need = descriptors_needed(config);
            if soft < need {
                return Err(StartError::FdLimit { soft, need });
            }
        }
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
    for _ in 0..config.debug.hold_fds {
        // Held for the life of the process, on purpose (fault injection).
        if let Ok(f) = std::fs::File::open("/dev/null") {
            std::mem::forget(f);
        }
    }
    // Core writes the cookie at start and removes it on a clean exit. On a full disk the node
    // still starts (degraded, see storage); the pruning monitor writes the cookie once it can.
    let cookie = Arc::new(CookieFile::new(&dir, config.rpc.cookie_perms.mode()));
    if let Err(source) = cookie.write() {
        if source.kind() != std::io::ErrorKind::StorageFull {
            return Err(StartError::Cookie {
                path: cookie.path().to_owned(),
                source,
            });
        }
        log::error!(
            "cannot write the RPC cookie {}: the disk is full; it is written once space returns (rpc.user/rpcauth work meanwhile)",
            cookie.path().display()
        );
    }
    let user_password = config.rpc.user.clone().zip(config.rpc.password.clone());
    // rpcauth entries were validated by the config loader.
    let credentials = Credentials::new(
        Some(cookie.secret().to_owned()),
        user_password,
        &config.rpc.rpcauth,
    )
    .map_err(|e| StartError::Cookie {
        path: dir.join(".cookie"),
        source: std::io::Error::other(e),
    })?;
    log::info!(
        "starting bllvm-node {} on {} in {}",
        env!("CARGO_PKG_VERSION"),
        config.chain,
        dir.display()
    );
    let now_unix = crate::clock::unix_now() as u64;
    let opened = storage::open::open(&dir, config.storage.backend, now_unix)?;
    let store: Arc<dyn Store> = opened.store;
    let fallback_reason = opened.fallback_reason;
    let metrics = Arc::new(Metrics::new(store.backend())?);
    metrics
        .network_info
        .with_label_values(&[crate::rpc::methods::blockchain::chain_name(config.chain)])
        .set(1);
    metrics
        .backup_interval_seconds
        .set(config.storage.backup_interval_secs);
    let shared = Arc::new(Shared::new(true));
    shared.network.write().peers_max = config.network.max_connections;
    let heartbeat_timeout = Duration::from_secs_f64(config.heartbeat_timeout_secs);
    let tick = tick_for(heartbeat_timeout);
    let beat = |c| shared.vitals.heartbeat(c, fault_for(config, c));

    let ch = &config.channels;
    let (peer_tx, peer_rx) = bounded(ch.peer_events);
    let (cmd_tx, cmd_rx) = bounded(ch.p2p_commands);
    let (batch_tx, batch_rx) = bounded(ch.write_batches);
    let (req_tx, req_rx) = bounded(ch.chain_requests);
    let (prune_tx, prune_rx) = bounded(ch.prune_requests);
    let (backup_tx, backup_rx) = bounded(4);
    let (probe_tx, probe_rx) = bounded(ch.probe_queue);
    let (rpc_tx, rpc_rx) = bounded(config.rpc.work_queue);
    let (rest_tx, rest_rx) = bounded(config.rpc.rest_work_queue);
    let (records_tx, records_rx) = bounded(4);
    watch(&metrics, "peer_events", ch.peer_events, &peer_rx);
    watch(&metrics, "p2p_commands", ch.p2p_commands, &cmd_rx);
    // Watched through a sender: a receiver clone would keep the queue open after the writer
    // exits, and the chain thread would never learn that it is gone.
    let depth_of = batch_tx.clone();
    metrics.watch_channel("write_batches", ch.write_batches, move || depth_of.len());
    watch(&metrics, "chain_requests", ch.chain_requests, &req_rx);
    watch(&metrics, "prune_requests", ch.prune_requests, &prune_rx);
    watch(&metrics, "probe_queue", ch.probe_queue, &probe_rx);
    watch(&metrics, "rpc_work_queue", config.rpc.work_queue, &rpc_rx);
    if config.rpc.rest {
        watch(
            &metrics,
            "rest_work_queue",
            config.rpc.rest_work_queue,
            &rest_rx,
        );
    }

    // Bind both listeners before any thread starts, so a taken port is a clean exit 1.
    let bound = http::bind(config.rpc_bind(), &dir)?;
    log::info!("http (rpc, health, metrics) listening on {}", bound.addr);
    let reactor = Reactor::bind(config.p2p_bind())?;
    let (bound_http, bound_p2p) = (bound.addr, reactor.local_addr);
    // A full disk must not stop start-up; the same addresses are in the log.
    if let Err(e) = crate::datadir::write_listening(&dir, bound.addr, reactor.local_addr) {
        let why = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        log::warn!("{e}: {why}");
    }
    let p2p_waker = reactor.waker();

    // Probes answer from here on, through long start-up steps (a reindex): readiness says what
    // the node is doing, RPC answers 503 until the chain is loaded.
    *shared.startup.write() = Some("loading the chain state".into());
    let socket = bound.backend;
    // Filled with the RPC server once the chain is loaded; until then the gate forwards all.
    let lane: http::gate::LaneSlot = Arc::default();
    let front = Gate::new(
        bound.listener,
        socket.path.clone(),
        gate_config(config),
        metrics.clone(),
        lane.clone(),
    )
    .map_err(|e| {
        StartError::Http(HttpError::Bind {
            addr: bound.addr,
            message: e.to_string(),
        })
    })?;
    // The gate sleeps in mio's poll: its waker makes the stop immediate.
    let (http_stop, http_sig) = stop_pair(Some(front.waker()));
    let probe_ctx = Arc::new(ProbeContext {
        shared: shared.clone(),
        metrics: metrics.clone(),
        heartbeat_timeout,
    });
    let mut http_threads = Vec::new();
    for i in 0..http::PROBE_WORKERS {
        let (jobs, stop, ctx) = (probe_rx.clone(), http_sig.clone(), probe_ctx.clone());
        let name = format!("probe-{i}");
        http_threads.push(start_thread(Component::Http, &name, &fail_tx, move || {
            http::probe_worker(jobs, stop, ctx)
        })?);
    }
    let gate = Arc::new(rpc::RpcGate {
        credentials,
        // Validated by the config loader.
        allow: AllowList(
            config
                .rpc
                .allow_ip
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
        ),
        limiter: parking_lot::Mutex::new(rpc::rate_limit::RateLimiter::new(&config.rpc.auth)),
        metrics: metrics.clone(),
    });
    let (stop, heartbeat) = (http_sig.clone(), beat(Component::Http));
    http_threads.push(start_thread(
        Component::Http,
        "http-gate",
        &fail_tx,
        move || front.run(stop, heartbeat, tick),
    )?);
    let dispatcher = Dispatcher {
        gate: gate.clone(),
        server: bound.server,
        enabled: Enabled {
            health: config.rpc.health_checks_enabled,
            metrics: config.rpc.metrics_enabled,
            rest: config.rpc.rest,
        },
        probes: probe_tx,
        rest: rest_tx,
        rpc: rpc_tx,
        shared: shared.clone(),
        metrics: metrics.clone(),
        stop: http_sig,
        heartbeat: beat(Component::Http),
        tick,
    };
    http_threads.push(start_thread(
        Component::Http,
        "http",
        &fail_tx,
        move || dispatcher.run(),
    )?);

    // Cuts uncommitted block-file tails and loads the chain: the crash repair happens here.
    let file_size = if config.storage.fastprune {
        FASTPRUNE_FILE_SIZE
    } else {
        storage::block_files::MAX_FILE_SIZE
    };
    // A SIGTERM during a long reindex stops it between blocks (the signal stays queued for the
    // supervisor, or ends start-up cleanly).
    let stop_requested = || !sig_rx.is_empty();
    let progress = |step: String| *shared.startup.write() = Some(step);
    let backups = BackupSettings {
        root: config.backup_root(),
        every: (config.storage.backup_interval_secs > 0.0)
            .then(|| Duration::from_secs_f64(config.storage.backup_interval_secs)),
        keep_daily: config.storage.backup_keep_daily,
        keep_weekly: config.storage.backup_keep_weekly,
        network: crate::rpc::methods::blockchain::chain_name(config.chain).to_owned(),
        disk_warn_share: config.storage.disk_warn_percent / 100.0,
    };
    if let Some(why) = rebuild::requested(&dir, reindex) {
        progress("backing up the chain state before a reindex".into());
        rebuild::prepare(&*store, &dir, &backups, &why, now_unix)?;
    }
    let open = || {
        ChainDb::open_until(
            &dir,
            store.clone(),
            Params::for_chain(config.chain),
            file_size,
            &stop_requested,
            &progress,
        )
    };
    let (mut chain_db, mut chain_state) = match open() {
        // A chain state that cannot be loaded at all (a damaged index entry or tip) is rebuilt
        // from the block files, as Core's -reindex would, instead of failing every start.
        Err(e @ PersistError::Corrupt { .. })
            if config.storage.on_corruption == OnCorruption::Repair =>
        {
            metrics
                .disk
                .corruption_total
                .with_label_values(&["index"])
                .inc();
            log::error!("corruption detected (index): {e}");
            progress("backing up the chain state before a reindex".into());
            rebuild::prepare(&*store, &dir, &backups, &e.to_string(), now_unix)?;
            open()?
        }
        other => other?,
    };
    chain_db.set_pruning(PruneSettings::from_config(&config.storage));
    let utxo_budget = config.storage.dbcache_mb as usize * 1024 * 1024;
    chain_state.set_utxo_budget(utxo_budget);
    chain_state.assume_valid = config.validation.assume_valid(config.chain);
    chain_state.mempool = crate::mempool::pool::Pool::with_limits(
        config.mempool.max_usage(),
        config.mempool.expiry_hours.saturating_mul(3600) as i64,
    );
    if let Some(h) = chain_state.assume_valid {
        log::info!("assumevalid {h}: scripts of it and its ancestors are not verified");
    }
    metrics.disk.utxo_cache_budget_bytes.set(utxo_budget as i64);
    let integrity = chain_db.integrity();
    integrity.attach(metrics.disk.corruption_total.clone());

    let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (commit_tx, commit_rx) = bounded(1);
    let (storage_stop, storage_sig) = stop_pair(None);
    let writer = Writer {
        committer: chain_db,
        store: store.clone(),
        jobs: batch_rx,
        prunes: prune_rx,
        peer_records: records_rx,
        committed: committed.clone(),
        commit_notify: commit_tx,
        metrics: metrics.clone(),
        stop: storage_sig,
        heartbeat: beat(Component::Storage),
        shared: shared.clone(),
        tick,
        fallback_reason,
        backup_requests: backup_rx,
        backup_error: None,
        stop_on_corruption: (config.storage.on_corruption == OnCorruption::Shutdown)
            .then(|| sig_tx.clone()),
        backups: backups.clone(),
    };
    let storage_thread = start_thread(Component::Storage, "storage", &fail_tx, move || {
        writer.run()
    })?;

    let (chain_stop, chain_sig) = stop_pair(None);
    let chain = ChainThread {
        state: chain_state,
        peer_events: peer_rx,
        requests: req_rx,
        jobs: batch_tx,
        committed,
        commits: commit_rx,
        pruned: config.storage.pruning_mode.enabled(),
        integrity,
        integrity_check: config.integrity_check_interval(),
        stop: chain_sig,
        heartbeat: beat(Component::Chain),
        shared: shared.clone(),
        metrics: metrics.clone(),
        tick,
        mine_every: config.debug.mine_every_secs.map(Duration::from_secs_f64),
        p2p: P2pHandle::new(cmd_tx.clone(), Some(p2p_waker.clone())),
        told_floor: 0,
        mempool_file: config
            .mempool
            .persist_mempool
            .then(|| dir.join("mempool.dat")),
        reindex_on_damage: (config.storage.on_corruption == OnCorruption::Repair)
            .then(|| (dir.clone(), sig_tx.clone())),
    };
    let chain_thread = start_thread(Component::Chain, "chain", &fail_tx, move || chain.run())?;

    let (pruning_stop, pruning_sig) = stop_pair(None);
    let monitor = PruningMonitor {
        config: config.storage.clone(),
        dir: dir.clone(),
        prunes: prune_tx.clone(),
        cookie: cookie.clone(),
        metrics: metrics.clone(),
        stop: pruning_sig,
        heartbeat: beat(Component::Pruning),
        tick,
    };
    let pruning_thread = start_thread(Component::Pruning, "pruning", &fail_tx, move || {
        monitor.run()
    })?;

    let (p2p_stop, p2p_sig) = stop_pair(Some(p2p_waker.clone()));
    let (lookup_tx, lookup_rx) = bounded(64);
    let (resolved_tx, resolved_rx) = bounded(64);
    let links = ReactorLinks {
        commands: cmd_rx,
        events: peer_tx,
        persist: records_tx,
        stop: p2p_sig,
        heartbeat: beat(Component::P2p),
        shared: shared.clone(),
        metrics: metrics.clone(),
        tick,
        lookups: lookup_tx,
        resolved: resolved_rx,
    };
    let setup = p2p_setup(config, store.as_ref())?;
    // Not joined: a lookup stuck in the system resolver must not hold up shutdown.
    let waker = p2p_waker.clone();
    start_thread(Component::P2p, "resolver", &fail_tx, move || {
        crate::p2p::resolver::run(lookup_rx, resolved_tx, waker)
    })?;
    let p2p_thread = start_thread(Component::P2p, "p2p", &fail_tx, move || {
        reactor.run(setup, links)
    })?;

    let rpc_server = Arc::new(RpcServer {
        methods: rpc::methods::Context {
            chain: config.chain,
            chain_requests: req_tx.clone(),
            p2p: P2pHandle::new(cmd_tx.clone(), Some(p2p_waker.clone())),
            signals: sig_tx.clone(),
            probes: probe_ctx.clone(),
            timeout: Duration::from_secs_f64(config.rpc.timeout_secs),
            method_timeouts: config
                .rpc
                .method_timeout_secs
                .iter()
                .map(|(m, t)| (m.clone(), Duration::from_secs_f64(*t)))
                .collect(),
            prunes: prune_tx,
            backups: backup_tx,
            pruning: PruneSettings::from_config(&config.storage),
            mempool_file: dir.join("mempool.dat"),
            fault: config.debug.fail_rpc_method.clone().map(|m| {
                (
                    m,
                    std::sync::atomic::AtomicU32::new(config.debug.fail_rpc_calls),
                )
            }),
        },
        gate: gate.clone(),
        metrics: metrics.clone(),
        next_id: std::sync::atomic::AtomicU64::new(1),
        breakers: rpc::Breakers::new(&config.rpc.breaker),
        active: parking_lot::Mutex::new(Vec::new()),
        max_batch: config.rpc.max_batch,
        max_response_bytes: config.rpc.max_response_mb << 20,
        request_log: config.logging.rpc_requests.level(),
    });
    let _ = lane.set(Arc::new(rpc::lane::RpcLane(rpc_server.clone())));
    let (rpc_stop, rpc_sig) = stop_pair(None);
    let mut rpc_threads = Vec::new();
    for i in 0..config.rpc.threads {
        let (jobs, stop, server) = (rpc_rx.clone(), rpc_sig.clone(), rpc_server.clone());
        let name = format!("rpc-{i}");
        rpc_threads.push(start_thread(Component::Http, &name, &fail_tx, move || {
            http::rpc_worker(jobs, stop, server)
        })?);
    }
    if config.rpc.rest {
        let rest = Arc::new(crate::rest::RestServer {
            rpc: rpc_server.clone(),
        });
        for i in 0..config.rpc.rest_threads {
            let (jobs, stop, server) = (rest_rx.clone(), rpc_sig.clone(), rest.clone());
            let name = format!("rest-{i}");
            rpc_threads.push(start_thread(Component::Http, &name, &fail_tx, move || {
                http::rest_worker(jobs, stop, server)
            })?);
        }
    }
    // The design's order: in-flight RPC, peers, the monitor, chain (drains), writer (commits), probes last.
    let stages = vec![
        Stage {
            name: "rpc",
            stop: rpc_stop,
            threads: rpc_threads,
        },
        Stage {
            name: "p2p",
            stop: p2p_stop,
            threads: vec![p2p_thread],
        },
        Stage {
            name: "pruning",
            stop: pruning_stop,
            threads: vec![pruning_thread],
        },
        Stage {
            name: "chain",
            stop: chain_stop,
            threads: vec![chain_thread],
        },
        Stage {
            name: "storage",
            stop: storage_stop,
            threads: vec![storage_thread],
        },
        Stage {
            name: "http",
            stop: http_stop,
            threads: http_threads,
        },
    ];

    let supervisor = Supervisor {
        chain_requests: req_tx,
        shared: shared.clone(),
        metrics,
        notifier: Notifier::from_env(),
        heartbeat: beat(Component::Supervisor),
        failures: fail_rx,
        signals: sig_rx,
        p2p_commands: cmd_tx,
        p2p_waker,
        stages,
        tick,
        heartbeat_timeout,
        shutdown_timeout: Duration::from_secs_f64(config.shutdown_timeout_secs),
    };
    *shared.startup.write() = None;
    Ok((
        supervisor,
        Held {
            cookie,
            socket,
            lock,
            bound: (bound_http, bound_p2p),
        },
    ))
}
