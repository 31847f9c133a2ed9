//! The scenarios, and the context each one runs in.

mod crash_loop;
mod disk_full;
mod hostile_peers;
mod ibd;
mod partition;
mod rpc_flood;
mod soak;

use crate::drivers::chain_gen::{self, GenChain};
use crate::drivers::peers::{Kind, Plan};
use crate::drivers::rpc_load::{self, Holders, Load, Mix, Target};
use crate::node::Node;
use crate::ops::{OpsLog, Rng};
use crate::record::{Recorder, Sampler, Watch};
use crate::report::{Invariant, Report};
use crate::scenario::{Params, Scenario};
use parking_lot::Mutex;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a scenario runs with.
pub struct Ctx {
    /// The scenario.
    pub scenario: Scenario,
    /// Its parameters at this size.
    pub p: Params,
    /// The run's seed.
    pub seed: u64,
    /// Smoke size.
    pub smoke: bool,
    /// The node binary.
    pub bin: PathBuf,
    /// The report directory.
    pub out: PathBuf,
    work: tempfile::TempDir,
    /// The operation log.
    pub ops: OpsLog,
    /// The measurements.
    pub rec: Arc<Recorder>,
    /// Nodes being sampled.
    pub watch: Watch,
    sampler: Mutex<Option<Sampler>>,
    invariants: Mutex<Vec<Invariant>>,
    logs: Mutex<Vec<(String, PathBuf)>>,
    /// Transactions in the chain up to each height, for tx/s (set by scenarios that load one).
    pub txs_upto: Mutex<Vec<u64>>,
}

impl Ctx {
    /// A context with a fresh work directory and the sampler running.
    pub fn new(
        s: &Scenario,
        p: Params,
        seed: u64,
        smoke: bool,
        bin: &Path,
        out: &Path,
    ) -> std::io::Result<Ctx> {
        let work = tempfile::Builder::new().prefix("bllvm-stress-").tempdir()?;
        let rec = Recorder::new();
        let watch = Watch::default();
        let sampler = Sampler::start(
            rec.clone(),
            watch.clone(),
            Duration::from_millis(p.sample_ms.max(50)),
        );
        Ok(Ctx {
            scenario: s.clone(),
            p,
            seed,
            smoke,
            bin: bin.to_owned(),
            out: out.to_owned(),
            work,
            ops: OpsLog::default(),
            rec,
            watch,
            sampler: Mutex::new(Some(sampler)),
            invariants: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            txs_upto: Mutex::new(Vec::new()),
        })
    }

    /// The generator for `stream`.
    pub fn rng(&self, stream: &str) -> Rng {
        Rng::new(self.seed, stream)
    }

    /// Where scenarios keep their own files.
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// A node (not started) with P2P on `ip`, the scenario's node config and `config` after it.
    pub fn node(&self, name: &str, ip: Ipv4Addr, config: &str) -> Node {
        let n = Node::new(
            &self.bin,
            self.work.path(),
            name,
            ip,
            &[&self.p.node_config, config],
        );
        self.logs.lock().push((name.to_owned(), n.log.clone()));
        n
    }

    /// Starts `n`, waits until it is ready and samples it.
    pub fn start(&self, n: &mut Node) -> Result<(), String> {
        n.start().map_err(|e| format!("starting {}: {e}", n.name))?;
        n.wait_ready(Duration::from_secs(120))?;
        self.watch.set(&n.name, n.pid(), n.rpc);
        self.rec.sample_now(&n.name, n.pid(), n.rpc);
        Ok(())
    }

    /// Records an invariant's outcome.
    pub fn check(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let detail = detail.into();
        if ok {
            log::info!("invariant holds: {name}: {detail}");
        } else {
            log::error!("INVARIANT FAILED: {name}: {detail}");
        }
        self.invariants.lock().push(Invariant {
            name: name.to_owned(),
            ok,
            detail,
        });
    }

    /// Ends the run: the common invariants, `ops.log`, the nodes' logs, and the report.
    pub fn finish(self, result: Result<(), String>) -> Report {
        self.sampler.lock().take();
        match &result {
            Ok(()) => self.check("scenario ran to the end", true, "every step completed"),
            Err(e) => self.check("scenario ran to the end", false, e.clone()),
        }
        let logs = self.logs.lock().clone();
        let mut panics = Vec::new();
        for (name, path) in &logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            panics.extend(
                text.lines()
                    .filter(|l| l.contains("panicked"))
                    .map(|l| format!("{name}: {l}")),
            );
            let _ = std::fs::create_dir_all(self.out.join("logs"));
            let _ = std::fs::copy(path, self.out.join("logs").join(format!("{name}.log")));
        }
        self.check(
            "no panic in any node's log",
            panics.is_empty(),
            if panics.is_empty() {
                format!("{} logs read", logs.len())
            } else {
                panics.join("; ")
            },
        );
        let recorded = self.rec.take();
        let peak = recorded
            .samples
            .iter()
            .map(|s| s.rss_mib)
            .fold(0.0, f64::max);
        // No sample is no evidence: every started node is sampled at once.
        self.check(
            "memory within the configured bound",
            !recorded.samples.is_empty() && peak <= self.p.max_rss_mib,
            format!(
                "peak RSS {peak:.1} MiB of {:.0} MiB allowed ({} samples)",
                self.p.max_rss_mib,
                recorded.samples.len()
            ),
        );
        let _ = self.ops.write(&self.out.join("ops.log"));
        let invariants = std::mem::take(&mut *self.invariants.lock());
        Report::build(&self, recorded, invariants)
    }
}

/// The generated chain for this run's seed and size, recorded for tx/s and in `ops.log`.
pub fn chain(ctx: &Ctx) -> GenChain {
    let c = chain_gen::chain(ctx.seed, ctx.p.blocks, ctx.p.txs_per_block);
    let (h, tip) = c.tip();
    ctx.ops.op(format!(
        "chain blocks={h} txs={} bytes={} tip={tip}",
        c.txs_upto[h as usize], c.bytes
    ));
    *ctx.txs_upto.lock() = c.txs_upto.clone();
    c
}

/// A started node holding the generated chain, submitted over JSON-RPC.
pub fn loaded(ctx: &Ctx, chain: &GenChain, name: &str, ip: Ipv4Addr) -> Result<Node, String> {
    let mut n = ctx.node(name, ip, "");
    ctx.start(&mut n)?;
    ctx.ops
        .op(format!("{name}: submit {} blocks", chain.blocks.len()));
    chain.submit_to(&n)?;
    Ok(n)
}

/// Block hashes by height (0 = genesis), for calls that take one.
pub fn hashes(chain: &GenChain) -> Vec<String> {
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).block_hash();
    std::iter::once(genesis.to_string())
        .chain(chain.blocks.iter().map(|b| b.block_hash().to_string()))
        .collect()
}

/// Checks `n` holds the generated chain's tip, and that its UTXO digest is `reference`'s.
pub fn check_same_chain(ctx: &Ctx, n: &Node, tip: &(u64, String), reference: Option<&Node>) {
    let got = n.tip();
    ctx.check(
        &format!("{}: tip equals the reference", n.name),
        got.as_ref() == Some(tip),
        format!("tip {got:?}, reference {tip:?}"),
    );
    if let Some(r) = reference {
        let (a, b) = (n.utxo_digest(), r.utxo_digest());
        ctx.check(
            &format!("{}: UTXO digest equals {}'s", n.name, r.name),
            a.is_some() && a == b,
            format!("{a:?} against {b:?}"),
        );
    }
}

/// `count` hostile peers' plans from the run's `peers` stream: kinds by weight, from ten /16s
/// (so netgroup-based protection has something to choose between), 20 to 200 actions each,
/// `gap_ms` apart.
pub fn hostile_plans(ctx: &Ctx, count: usize, gap_ms: (u64, u64)) -> Vec<Plan> {
    let mut rng = ctx.rng("peers");
    (0..count)
        .map(|i| Plan {
            id: i,
            kind: *rng.pick(Kind::HOSTILE),
            from: loopback(100 + (i % 10) as u8, i / 10),
            actions: rng.range(20, 200) as u32,
            gap_ms: rng.range(gap_ms.0, gap_ms.1),
            seed: rng.next(),
        })
        .collect()
}

/// Plans `total` calls with `weights` (cheap, expensive, bad auth, REST) over the scenario's
/// connections, writes them to `ops.log`, and starts them at `rate` (0: back to back) with the
/// scenario's slowloris and idle connections.
pub fn start_load(
    ctx: &Ctx,
    n: &Node,
    chain: &GenChain,
    weights: [u32; 4],
    rate: f64,
    total: usize,
) -> (Holders, Load) {
    let workers = ctx.p.rpc_workers.max(1);
    ctx.ops.op(format!(
        "load rate={rate} calls={total} workers={workers} holders={}",
        ctx.p.slow_connections
    ));
    let mix = Mix {
        weights,
        height: chain.blocks.len() as u64,
    };
    let plans = rpc_load::plan(
        &mut ctx.rng("rpc"),
        &mix,
        workers,
        total / workers,
        &ctx.ops,
    );
    let target = Target {
        addr: n.rpc,
        cookie: n.cookie(),
        hashes: hashes(chain).into(),
    };
    let holders = Holders::start(ctx.p.slow_connections, n.rpc, ctx.rec.clone());
    (holders, Load::start(plans, rate, target, ctx.rec.clone()))
}

/// Runs the scenario's kind.
pub fn run(ctx: &Ctx) -> Result<(), String> {
    ctx.ops.op(format!(
        "scenario {} kind={} seed={} size={}",
        ctx.scenario.name,
        ctx.scenario.kind,
        ctx.seed,
        if ctx.smoke { "smoke" } else { "full" }
    ));
    match ctx.scenario.kind.as_str() {
        "ibd" => ibd::run(ctx),
        "rpc-flood" => rpc_flood::run(ctx),
        "hostile-peers" => hostile_peers::run(ctx),
        "crash-loop" => crash_loop::run(ctx),
        "disk-full" => disk_full::run(ctx),
        "partition" => partition::run(ctx),
        "soak" => soak::run(ctx),
        other => Err(format!("no runner for {other}")),
    }
}

/// The loopback address of peer or node `i` in netgroup `group` (127.group.x.y): distinct
/// groups are distinct /16s to the node.
pub fn loopback(group: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, group, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Polls `f` every `every` until it answers or `limit` passes.
pub fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(every);
    }
    None
}

/// The regtest address scenarios mine to.
pub fn payout() -> String {
    let script = crate::chain::Wallet::new(9).p2wpkh();
    bitcoin::Address::from_script(&script, bitcoin::Network::Regtest)
        .expect("a P2WPKH script has an address")
        .to_string()
}
