//! RPC methods: a table from name to a function of the request and a read view of the node.
//! Chain reads run on the chain thread as queries; node reads use the shared views.

pub mod blockchain;
pub mod format;
pub mod mempool;
pub mod network;

use super::protocol::{code, Answer, Args, Params, RpcError};
use crate::chain::chainstate::{ChainState, Submitted};
use crate::chain::ChainRequest;
use crate::config::Chain;
use crate::http::probes::{self, ProbeContext};
use crate::supervisor::signals::Signal;
use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What methods may read and whom they may ask.
pub struct Context {
    /// The network.
    pub chain: Chain,
    /// Requests to the chain thread.
    pub chain_requests: Sender<ChainRequest>,
    /// Commands to the p2p thread (network methods).
    pub p2p: crate::messages::P2pHandle,
    /// Signals to the supervisor (`stop`).
    pub signals: Sender<Signal>,
    /// Shared views and metrics (health, metrics, uptime).
    pub probes: Arc<ProbeContext>,
    /// Longest wait for the chain thread.
    pub timeout: Duration,
    /// Per-method overrides of `timeout`.
    pub method_timeouts: std::collections::BTreeMap<String, Duration>,
    /// Test-only: this method fails with an internal error for its next N calls.
    pub fault: Option<(String, std::sync::atomic::AtomicU32)>,
    /// Prune requests to the storage writer (`pruneblockchain`).
    pub prunes: Sender<crate::storage::PruneRequest>,
    /// Backup requests to the storage writer (`backupchainstate`).
    pub backups: Sender<crate::storage::BackupReply>,
    /// How block files are pruned (`getblockchaininfo`).
    pub pruning: crate::pruning::policy::PruneSettings,
    /// Where `savemempool` writes (`<datadir>/<network>/mempool.dat`).
    pub mempool_file: std::path::PathBuf,
}

impl Context {
    /// How long `method` may wait for the chain thread.
    pub fn timeout_for(&self, method: &str) -> Duration {
        self.method_timeouts
            .get(method)
            .copied()
            .unwrap_or(self.timeout)
    }

    /// Why the chain thread cannot be relied on now: its heartbeat is older than the health
    /// timeout (stalled, or stuck in a long step). `None` while it answers.
    pub fn chain_trouble(&self) -> Option<String> {
        let eval = self
            .probes
            .shared
            .vitals
            .evaluate(Instant::now(), self.probes.heartbeat_timeout);
        eval.components
            .iter()
            .find(|c| {
                c.component == crate::component::Component::Chain
                    && c.heartbeat_age > self.probes.heartbeat_timeout
            })
            .map(|c| {
                format!(
                    "the chain thread has not answered for {} s",
                    c.heartbeat_age.as_secs()
                )
            })
    }

    /// Counts an answer given from the published chain view while the chain thread is in
    /// trouble; the trouble, if any.
    fn degraded(&self, method: &str) -> Option<String> {
        let why = self.chain_trouble()?;
        self.probes
            .metrics
            .rpc_degraded_answers_total
            .with_label_values(&[method])
            .inc();
        Some(why)
    }

    /// An error naming why, while storage writes fail: changes could not be kept.
    fn writable(&self) -> Result<(), RpcError> {
        match &self.probes.shared.storage.read().write_error {
            None => Ok(()),
            Some(why) => Err(RpcError::new(code::MISC_ERROR, why.clone())),
        }
    }

    /// What `getblockchaininfo` says about pruning.
    fn prune_info(&self) -> blockchain::PruneInfo {
        let s = &self.pruning;
        blockchain::PruneInfo {
            enabled: s.mode.enabled(),
            prune_height: self.probes.shared.storage.read().prune_height,
            automatic: s.mode.automatic(),
            target_bytes: match s.mode {
                crate::config::PruningMode::Normal => Some(s.target_bytes),
                crate::config::PruningMode::Aggressive => Some(s.threshold_bytes),
                _ => None,
            },
        }
    }
}

/// Waits for `rx` up to `timeout`, warning at half of it.
fn wait<T>(
    rx: &crossbeam_channel::Receiver<T>,
    timeout: Duration,
    what: &str,
) -> Result<T, RpcError> {
    let half = timeout / 2;
    match rx.recv_timeout(half) {
        Ok(v) => return Ok(v),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            return Err(RpcError::internal(
                code::MISC_ERROR,
                "the chain is stopping",
            ))
        }
        Err(_) => log::warn!(
            "rpc {what} still running after {:.1}s (timeout {:.1}s)",
            half.as_secs_f64(),
            timeout.as_secs_f64()
        ),
    }
    rx.recv_timeout(timeout - half).map_err(|_| {
        RpcError::internal(
            code::MISC_ERROR,
            format!("request timed out after {:.1}s", timeout.as_secs_f64()),
        )
    })
}

/// Every method name; also the bounded label set of the RPC metrics.
pub const METHODS: &[&str] = &[
    "getbestblockhash",
    "getblock",
    "getblockchaininfo",
    "getblockcount",
    "getblockhash",
    "getblockheader",
    "getchaintips",
    "getdifficulty",
    "gettxout",
    "gettxoutsetinfo",
    "generatetoaddress",
    "submitblock",
    "getmininginfo",
    "getnetworkinfo",
    "getconnectioncount",
    "getpeerinfo",
    "getnettotals",
    "uptime",
    "stop",
    "help",
    "getrpcinfo",
    "gethealth",
    "getmetrics",
    "invalidateblock",
    "reconsiderblock",
    "verifychain",
    "pruneblockchain",
    "backupchainstate",
    "generateblock",
    "getblocktemplate",
    "getrawtransaction",
    "decoderawtransaction",
    "sendrawtransaction",
    "testmempoolaccept",
    "submitpackage",
    "prioritisetransaction",
    "estimatesmartfee",
    "getmempoolinfo",
    "getrawmempool",
    "getmempoolentry",
    "getmempoolancestors",
    "getmempooldescendants",
    "savemempool",
    "ping",
    "logging",
    "addnode",
    "disconnectnode",
    "getaddednodeinfo",
    "setban",
    "listbanned",
    "clearbanned",
    "setnetworkactive",
];

/// Methods answered from published views without waiting on any thread (once the chain is
/// loaded), so the HTTP gate may answer them itself.
pub const VIEW_METHODS: &[&str] = &[
    "getbestblockhash",
    "getblockchaininfo",
    "getblockcount",
    "getconnectioncount",
    "uptime",
];

/// Chain reads quick enough to hand from the HTTP gate straight to the chain thread, whose
/// answer comes back to the gate: no tiny_http, no worker.
pub fn chain_read(method: &str) -> Option<ChainFn> {
    match method {
        "getblockheader" => Some(blockchain::getblockheader),
        "getblockhash" => Some(blockchain::getblockhash),
        _ => None,
    }
}

/// The metric label of a method name: itself if known, else `unknown`.
pub fn label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("unknown")
}

/// A read of the chain state.
pub type ChainFn = fn(&ChainState, &Params) -> Result<Value, RpcError>;

/// A call that needs the chain thread fails at once, saying why, while the thread is known not
/// to answer, instead of waiting out its timeout.
fn fail_fast(ctx: &Context) -> Result<(), RpcError> {
    match ctx.chain_trouble() {
        Some(why) => Err(RpcError::internal(
            code::MISC_ERROR,
            format!("{why}; calls that need the chain state are refused until it recovers"),
        )),
        None => Ok(()),
    }
}

/// Runs `f` on the chain thread and waits for its answer (at most `ctx.timeout`).
pub(crate) fn on_chain<T: Send + 'static>(
    ctx: &Context,
    method: &str,
    f: impl FnOnce(&ChainState) -> T + Send + 'static,
) -> Result<T, RpcError> {
    fail_fast(ctx)?;
    let timeout = ctx.timeout_for(method);
    let (tx, rx) = bounded(1);
    let query = Box::new(move |cs: &ChainState| {
        let _ = tx.send(f(cs));
    });
    ctx.chain_requests
        .send_timeout(ChainRequest::Query(query), timeout)
        .map_err(|_| {
            RpcError::internal(code::MISC_ERROR, "chain is busy or stopping; try again")
        })?;
    wait(&rx, timeout, method)
}

/// Runs a change on the chain thread (persisted like any other) and waits for its answer.
fn mutate<T: Send + 'static>(
    ctx: &Context,
    method: &str,
    f: impl FnOnce(&mut ChainState) -> (T, Vec<crate::chain::chainstate::Update>) + Send + 'static,
) -> Result<T, RpcError> {
    ctx.writable()?;
    fail_fast(ctx)?;
    let timeout = ctx.timeout_for(method);
    let (tx, rx) = bounded(1);
    let mutation = Box::new(move |cs: &mut ChainState| {
        let (answer, updates) = f(cs);
        let acknowledge: crate::chain::thread::Acknowledge =
            Box::new(move |durable: Result<(), String>| {
                let _ = tx.send(durable.map(|()| answer));
            });
        (updates, acknowledge)
    });
    ctx.chain_requests
        .send_timeout(ChainRequest::Mutate(mutation), timeout)
        .map_err(|_| {
            RpcError::internal(code::MISC_ERROR, "chain is busy or stopping; try again")
        })?;
    wait(&rx, timeout, method)?.map_err(|why| RpcError::new(code::MISC_ERROR, why))
}

fn block_hash_param(params: &Params) -> Result<bitcoin::BlockHash, RpcError> {
    let a = Args::new(params, &["blockhash"])?;
    blockchain::parse_hash(a.required(0)?, "blockhash")
}

/// An amount in BTC (a fee rate per kvB, or a value), in satoshis; `default` when absent.
fn amount_arg(v: Option<&Value>, default: f64) -> Result<u64, RpcError> {
    match v {
        None | Some(Value::Null) => {
            Ok(bitcoin::Amount::from_btc(default).map_or(0, |x| x.to_sat()))
        }
        Some(v) => v
            .as_f64()
            .filter(|x| *x >= 0.0)
            .and_then(|x| bitcoin::Amount::from_btc(x).ok())
            .map(|x| x.to_sat())
            .ok_or_else(|| RpcError::new(code::TYPE_ERROR, "Amount out of range")),
    }
}

fn decode_tx(hex: &str) -> Result<bitcoin::Transaction, RpcError> {
    let bytes: Vec<u8> = bitcoin::hex::FromHex::from_hex(hex)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "TX decode failed"))?;
    bitcoin::consensus::deserialize(&bytes)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "TX decode failed"))
}

fn read(ctx: &Context, method: &str, f: ChainFn, params: &Params) -> Result<Value, RpcError> {
    let params = params.clone();
    on_chain(ctx, method, move |cs| f(cs, &params))?
}

/// A call without parameters answered from the published chain view (`answer`), or by the
/// chain thread (`f`) before the chain is loaded.
fn from_view(
    ctx: &Context,
    method: &str,
    params: &Params,
    f: ChainFn,
    answer: impl Fn(&crate::state::ChainView) -> Value,
) -> Result<Value, RpcError> {
    Args::new(params, &[])?;
    {
        let view = ctx.probes.shared.chain.read();
        if view.initialized {
            ctx.degraded(method);
            return Ok(answer(&view));
        }
    }
    read(ctx, method, f, params)
}

/// Answers one call; large answers (`getblock`) come as JSON text written straight from the
/// block.
pub fn call(ctx: &Context, method: &str, params: &Params) -> Result<Answer, RpcError> {
    if let Some((m, left)) = &ctx.fault {
        let take = |n: u32| n.checked_sub(1);
        if m == method
            && left
                .fetch_update(
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                    take,
                )
                .is_ok()
        {
            return Err(RpcError::internal(
                code::INTERNAL_ERROR,
                format!("debug fault injected in {method}"),
            ));
        }
    }
    if method == "getblockchaininfo" {
        let (size, prune) = (
            ctx.probes.shared.storage.read().size_bytes,
            ctx.prune_info(),
        );
        let view = ctx.probes.shared.chain.read();
        if view.initialized {
            Args::new(params, &[])?;
            // Core's `warnings`: say the answer is the last view the chain thread published.
            let warnings: Vec<String> = ctx
                .degraded(method)
                .map(|why| format!("{why}: this is the last chain state it published"))
                .into_iter()
                .collect();
            return Ok(Answer::Json(blockchain::chaininfo_json(
                ctx.chain, &view, size, &prune, &warnings,
            )));
        }
    }
    if method == "getblock" {
        let params = params.clone();
        let data = on_chain(ctx, method, move |cs| {
            blockchain::getblock_data(cs, &params)
        })??;
        return blockchain::getblock_json(data).map(Answer::Json);
    }
    dispatch(ctx, method, params).map(Answer::Value)
}

/// Answers one call (`getblock` is [`call`]'s).
fn dispatch(ctx: &Context, method: &str, params: &Params) -> Result<Value, RpcError> {
    use blockchain as b;
    if let Some(answer) = network::dispatch(ctx, method, params) {
        return answer;
    }
    match method {
        // Answered from the view the chain thread publishes before it acknowledges any change:
        // no hop to a busy chain thread for the calls made most.
        "getbestblockhash" => from_view(ctx, method, params, b::getbestblockhash, |v| {
            v.tip_hash.clone().into()
        }),
        "getblockcount" => from_view(ctx, method, params, b::getblockcount, |v| v.height.into()),
        "getblockhash" => read(ctx, method, b::getblockhash, params),
        "getblockheader" => {
            // With the chain thread in trouble, the tip's header from the published view.
            if ctx.chain_trouble().is_some() {
                let a = Args::new(params, &["blockhash", "verbose"])?;
                let view = ctx.probes.shared.chain.read().clone();
                let verbose = a.get(1).is_none_or(|v| v.as_bool().unwrap_or(true));
                if a.get(0).and_then(Value::as_str) == Some(view.tip_hash.as_str()) {
                    if let Some(v) = b::tip_header_from_view(&view, verbose) {
                        ctx.degraded(method);
                        return Ok(v);
                    }
                }
            }
            read(ctx, method, b::getblockheader, params)
        }
        "getchaintips" => {
            // With the chain thread in trouble: the active tip from the published view.
            let view = ctx.probes.shared.chain.read().clone();
            if view.initialized && ctx.chain_trouble().is_some() {
                Args::new(params, &[])?;
                ctx.degraded(method);
                return Ok(json!([{
                    "height": view.height,
                    "hash": view.tip_hash,
                    "branchlen": 0,
                    "status": "active",
                }]));
            }
            read(ctx, method, b::getchaintips, params)
        }
        "getdifficulty" => read(ctx, method, b::getdifficulty, params),
        "gettxout" => read(ctx, method, b::gettxout, params),
        "getblockchaininfo" => {
            let size = ctx.probes.shared.storage.read().size_bytes;
            let prune = ctx.prune_info();
            // Before the chain is loaded ([`call`] answers from the view after).
            let params = params.clone();
            on_chain(ctx, method, move |cs| {
                b::getblockchaininfo(cs, &params, size, &prune)
            })?
        }
        "gettxoutsetinfo" => {
            let size = ctx.probes.shared.storage.read().size_bytes;
            let params = params.clone();
            let deadline = Instant::now() + ctx.timeout_for(method);
            on_chain(ctx, method, move |cs| {
                b::gettxoutsetinfo(cs, &params, size, deadline)
            })?
        }
        "verifychain" => {
            let params = params.clone();
            let deadline = Instant::now() + ctx.timeout_for(method);
            on_chain(ctx, method, move |cs| b::verifychain(cs, &params, deadline))?
        }
        "getblocktemplate" => read(ctx, method, b::getblocktemplate, params),
        "getrawtransaction" => read(ctx, method, b::getrawtransaction, params),
        "invalidateblock" | "reconsiderblock" => {
            let hash = block_hash_param(params)?;
            let invalidate = method == "invalidateblock";
            mutate(ctx, method, move |cs| {
                let done = if invalidate {
                    cs.invalidate_block(&hash)
                } else {
                    cs.reconsider_block(&hash)
                };
                match done {
                    Ok(updates) => (Ok(Value::Null), updates),
                    // Unreadable undo data stopped it before anything changed.
                    Err(r) if r.kind == crate::chain::reject::RejectKind::LocalFault => (
                        Err(RpcError::internal(code::MISC_ERROR, r.to_string())),
                        Vec::new(),
                    ),
                    Err(_) => (
                        Err(RpcError::new(
                            code::INVALID_ADDRESS_OR_KEY,
                            "Block not found",
                        )),
                        Vec::new(),
                    ),
                }
            })?
        }
        "pruneblockchain" => pruneblockchain(ctx, params),
        "backupchainstate" => {
            Args::new(params, &[])?;
            let (tx, rx) = bounded(1);
            let timeout = ctx.timeout_for(method);
            ctx.backups
                .send_timeout(tx, timeout)
                .map_err(|_| RpcError::internal(code::MISC_ERROR, "storage is busy; try again"))?;
            match wait(&rx, timeout, method)? {
                Ok(r) => Ok(json!({
                    "path": r.path.display().to_string(),
                    "height": r.height,
                    "hash": r.hash,
                    "bytes": r.bytes,
                    "verified": true,
                })),
                Err(why) => Err(RpcError::internal(code::MISC_ERROR, why)),
            }
        }
        "generateblock" => generateblock(ctx, params),
        "decoderawtransaction" => {
            let a = Args::new(params, &["hexstring", "iswitness"])?;
            let hex = a.str(0)?.ok_or_else(|| {
                RpcError::new(code::MISC_ERROR, "Missing required argument hexstring")
            })?;
            let mut v = b::tx_json(&decode_tx(hex)?, ctx.chain);
            if let Some(o) = v.as_object_mut() {
                o.remove("hex");
            }
            Ok(v)
        }
        "sendrawtransaction" => {
            let a = Args::new(params, &["hexstring", "maxfeerate", "maxburnamount"])?;
            let hex = a.str(0)?.ok_or_else(|| {
                RpcError::new(code::MISC_ERROR, "Missing required argument hexstring")
            })?;
            let tx = decode_tx(hex)?;
            // Core's defaults: 0.10 BTC/kvB, and no value sent to unspendable outputs.
            let limits = b::SendLimits {
                max_fee_rate: amount_arg(a.get(1), 0.10)?,
                max_burn: amount_arg(a.get(2), 0.0)?,
            };
            mutate(ctx, method, move |cs| {
                let now = crate::clock::unix_now();
                (b::sendrawtransaction(cs, tx, limits, now), Vec::new())
            })?
        }
        "testmempoolaccept" | "submitpackage" => {
            let names: &[&str] = if method == "submitpackage" {
                &["package", "maxfeerate", "maxburnamount"]
            } else {
                &["rawtxs", "maxfeerate"]
            };
            let a = Args::new(params, names)?;
            let raw = a.get(0).and_then(Value::as_array).ok_or_else(|| {
                RpcError::new(
                    code::TYPE_ERROR,
                    format!("Expected type array for {}", names[0]),
                )
            })?;
            mempool::check_count(raw.len())?;
            let txs = raw
                .iter()
                .map(|v| decode_tx(v.as_str().unwrap_or("")))
                .collect::<Result<Vec<_>, _>>()?;
            let max_fee_rate = amount_arg(a.get(1), 0.10)?;
            if method == "testmempoolaccept" {
                mutate(ctx, method, move |cs| {
                    let now = crate::clock::unix_now();
                    (
                        Ok::<_, RpcError>(mempool::testmempoolaccept(cs, txs, max_fee_rate, now)),
                        Vec::new(),
                    )
                })?
            } else {
                let max_burn = amount_arg(a.get(2), 0.0)?;
                let burnt = txs
                    .iter()
                    .flat_map(|t| t.output.iter())
                    .filter(|o| o.script_pubkey.is_op_return())
                    .any(|o| o.value.to_sat() > max_burn);
                if burnt {
                    return Err(RpcError::new(
                        code::VERIFY_ERROR,
                        "Unspendable output exceeds maximum configured by user (maxburnamount)",
                    ));
                }
                mutate(ctx, method, move |cs| {
                    let now = crate::clock::unix_now();
                    (
                        mempool::submitpackage(cs, txs, max_fee_rate, now),
                        Vec::new(),
                    )
                })?
            }
        }
        "prioritisetransaction" => {
            let a = Args::new(params, &["txid", "dummy", "fee_delta"])?;
            let txid = b::parse_txid(a.required_str(0)?)?;
            if !matches!(a.get(1), None | Some(Value::Null))
                && a.get(1).and_then(Value::as_f64) != Some(0.0)
            {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Priority is no longer supported, dummy argument to prioritisetransaction must be 0.",
                ));
            }
            let delta = a.get(2).and_then(Value::as_i64).ok_or_else(|| {
                RpcError::new(code::TYPE_ERROR, "Missing required argument fee_delta")
            })?;
            mutate(ctx, method, move |cs| {
                cs.mempool.prioritise(txid, delta);
                (Ok::<_, RpcError>(Value::Bool(true)), Vec::new())
            })?
        }
        "estimatesmartfee" => {
            use crate::mempool::estimator::Mode;
            let a = Args::new(params, &["conf_target", "estimate_mode"])?;
            let target = a
                .get(0)
                .and_then(Value::as_i64)
                .filter(|t| (1..=1008).contains(t))
                .ok_or_else(|| {
                    RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid conf_target, must be between 1 and 1008",
                    )
                })? as usize;
            let mode = match a.get(1).and_then(Value::as_str).map(str::to_ascii_lowercase) {
                None => Mode::Economical,
                Some(m) if m == "unset" || m == "economical" => Mode::Economical,
                Some(m) if m == "conservative" => Mode::Conservative,
                Some(_) => {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                    ))
                }
            };
            on_chain(ctx, method, move |cs| {
                let now = crate::clock::unix_now();
                match cs.fee_estimator.estimate(target, mode) {
                    // Never below what the pool takes now.
                    Some((rate, blocks)) => json!({
                        "feerate": bitcoin::Amount::from_sat(rate.max(cs.mempool.floor(now))).to_btc(),
                        "blocks": blocks,
                    }),
                    None => json!({
                        "errors": ["Insufficient data or no feerate found"],
                        "blocks": 0,
                    }),
                }
            })
        }
        "getmempoolinfo" => {
            Args::new(params, &[])?;
            on_chain(ctx, method, |cs| {
                b::getmempoolinfo(&cs.mempool, crate::clock::unix_now())
            })
        }
        "getrawmempool" => {
            let a = Args::new(params, &["verbose", "mempool_sequence"])?;
            let verbose = a.get(0).and_then(Value::as_bool).unwrap_or(false);
            let sequence = a.get(1).and_then(Value::as_bool).unwrap_or(false);
            if verbose && sequence {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Verbose results cannot contain mempool sequence values.",
                ));
            }
            on_chain(ctx, method, move |cs| {
                let listing = b::getrawmempool(&cs.mempool, verbose);
                if sequence {
                    json!({"txids": listing, "mempool_sequence": cs.mempool.sequence()})
                } else {
                    listing
                }
            })
        }
        "getmempoolentry" => {
            let a = Args::new(params, &["txid"])?;
            let txid = b::parse_txid(a.required_str(0)?)?;
            on_chain(ctx, method, move |cs| {
                b::getmempoolentry(&cs.mempool, &txid)
            })?
        }
        "savemempool" => {
            Args::new(params, &[])?;
            let path = ctx.mempool_file.clone();
            on_chain(ctx, method, move |cs| {
                if !cs.mempool.loaded() {
                    return Err(RpcError::new(
                        code::MISC_ERROR,
                        "The mempool was not loaded yet.",
                    ));
                }
                let dump = crate::mempool::dump::of_pool(&cs.mempool);
                crate::mempool::dump::write(&path, &dump).map_err(|e| {
                    log::error!("savemempool: {e}");
                    RpcError::new(code::MISC_ERROR, "Unable to dump mempool to disk")
                })?;
                Ok(json!({ "filename": path.display().to_string() }))
            })?
        }
        "getmempoolancestors" | "getmempooldescendants" => {
            let a = Args::new(params, &["txid", "verbose"])?;
            let txid = b::parse_txid(a.required_str(0)?)?;
            let verbose = a.get(1).and_then(Value::as_bool).unwrap_or(false);
            let ancestors = method == "getmempoolancestors";
            on_chain(ctx, method, move |cs| {
                b::getmempoolrelatives(&cs.mempool, &txid, ancestors, verbose)
            })?
        }
        "generatetoaddress" => generatetoaddress(ctx, params),
        "submitblock" => submitblock(ctx, params),
        "getmininginfo" => getmininginfo(ctx, params),
        "uptime" => {
            Args::new(params, &[])?;
            Ok(ctx.probes.shared.started.elapsed().as_secs().into())
        }
        "stop" => {
            Args::new(params, &["wait"])?;
            ctx.signals
                .try_send(Signal::Terminate("stop RPC"))
                .map_err(|_| RpcError::new(code::MISC_ERROR, "shutdown already in progress"))?;
            Ok("bllvm-node stopping".into())
        }
        "help" => {
            let a = Args::new(params, &["command"])?;
            match a.str(0)? {
                Some(m) if METHODS.contains(&m) => {
                    Ok(format!("{m}: see Bitcoin Core's help for {m}").into())
                }
                Some(m) => Ok(format!("help: unknown command: {m}").into()),
                None => Ok(METHODS.join("\n").into()),
            }
        }
        "logging" => {
            let a = Args::new(params, &["include", "exclude"])?;
            let list = |i: usize| -> Result<Vec<String>, RpcError> {
                match a.get(i) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(items)) => Ok(items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()),
                    Some(_) => Err(RpcError::new(
                        code::TYPE_ERROR,
                        "include and exclude must be arrays",
                    )),
                }
            };
            let states =
                crate::logging::set_debug_categories(&list(0)?, &list(1)?).map_err(|c| {
                    RpcError::new(
                        code::INVALID_PARAMETER,
                        format!("unknown logging category {c}"),
                    )
                })?;
            Ok(Value::Object(
                states
                    .into_iter()
                    .map(|(c, on)| (c.to_owned(), on.into()))
                    .collect(),
            ))
        }
        "gethealth" => {
            Args::new(params, &[])?;
            let eval = ctx
                .probes
                .shared
                .vitals
                .evaluate(Instant::now(), ctx.probes.heartbeat_timeout);
            Ok(probes::detailed(&eval, &ctx.probes))
        }
        "getmetrics" => {
            Args::new(params, &[])?;
            let m = &ctx.probes.metrics;
            Ok(json!({
                "uptime_seconds": ctx.probes.shared.started.elapsed().as_secs(),
                "chain_height": m.chain_height.get(),
                "headers_height": m.headers_height.get(),
                "blocks_connected_total": m.blocks_connected_total.get(),
                "reorgs_total": m.reorgs_total.get(),
                "utxo_set_outputs": m.utxo_count.get(),
                "utxo_cache_bytes": m.utxo_cache_bytes.get(),
                "peers_connected": m.peers_connected.get(),
                "rpc_requests_processed": ctx.probes.shared.rpc_requests.load(std::sync::atomic::Ordering::Relaxed),
                "health_status": m.health_status.get(),
            }))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

/// Mining RPCs are regtest-only; their payout is an address of this network.
fn regtest_payout(
    ctx: &Context,
    method: &str,
    address: &str,
) -> Result<bitcoin::ScriptBuf, RpcError> {
    if ctx.chain != Chain::Regtest {
        return Err(RpcError::new(
            code::MISC_ERROR,
            format!("{method} is only available on regtest"),
        ));
    }
    bitcoin::Address::from_str(address)
        .ok()
        .and_then(|x| x.require_network(ctx.chain.bitcoin_network()).ok())
        .map(|a| a.script_pubkey())
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

/// Core's `pruneblockchain height`: a height, or a unix time (above 1e9) meaning the first block
/// at most two hours older; the last 288 blocks are always kept. Answers the height of the last
/// block pruned, -1 when none is.
fn pruneblockchain(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["height"])?;
    if !ctx.pruning.mode.enabled() {
        return Err(RpcError::new(
            code::MISC_ERROR,
            "Cannot prune blocks because node is not in prune mode.",
        ));
    }
    let h = a
        .int(0)?
        .ok_or_else(|| RpcError::new(code::MISC_ERROR, "Missing required argument height"))?;
    if h < 0 {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Negative block height.",
        ));
    }
    let height = on_chain(ctx, "pruneblockchain", move |cs| {
        blockchain::prune_height_for(cs, h)
    })??;
    let (tx, rx) = bounded(1);
    let timeout = ctx.timeout_for("pruneblockchain");
    ctx.prunes
        .send_timeout(
            crate::storage::PruneRequest {
                trigger: crate::storage::PruneTrigger::Manual(height),
                reply: Some(tx),
            },
            timeout,
        )
        .map_err(|_| RpcError::internal(code::MISC_ERROR, "storage is busy; try again"))?;
    match wait(&rx, timeout, "pruneblockchain")? {
        Ok(pruned) => Ok(pruned.map_or(-1, i64::from).into()),
        Err(why) => Err(RpcError::internal(code::MISC_ERROR, why)),
    }
}

fn generatetoaddress(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["nblocks", "address", "maxtries"])?;
    let n = a
        .int(0)?
        .ok_or_else(|| RpcError::new(code::MISC_ERROR, "Missing required argument nblocks"))?;
    let n = match u32::try_from(n) {
        Ok(n) => n,
        Err(_) if n < 0 => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                "nblocks must not be negative",
            ))
        }
        // Core reads nblocks as a 32-bit integer.
        Err(_) => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("nblocks {n} is out of range (at most {})", u32::MAX),
            ))
        }
    };
    let addr = a.required_str(1)?;
    let payout = regtest_payout(ctx, "generatetoaddress", addr)?;
    ctx.writable()?;
    let (tx, rx) = bounded(1);
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timeout = ctx.timeout_for("generatetoaddress");
    let request = ChainRequest::Generate {
        count: n,
        payout,
        reply: tx,
        cancel: cancel.clone(),
    };
    ctx.chain_requests
        .send_timeout(request, timeout)
        .map_err(|_| {
            RpcError::internal(code::MISC_ERROR, "chain is busy or stopping; try again")
        })?;
    match wait(&rx, timeout, "generatetoaddress") {
        Ok(Ok(hashes)) => Ok(hashes
            .iter()
            .map(|h| Value::from(h.to_string()))
            .collect::<Vec<_>>()
            .into()),
        Ok(Err(r)) => Err(RpcError::new(code::MISC_ERROR, r.to_string())),
        Err(e) => {
            // The work stops too: the chain thread checks this between blocks.
            cancel.store(true, std::sync::atomic::Ordering::Release);
            Err(e)
        }
    }
}

fn generateblock(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["output", "transactions", "submit"])?;
    let output = a.required_str(0)?;
    let payout = regtest_payout(ctx, "generateblock", output)?;
    let mut txs = Vec::new();
    for item in a
        .get(1)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let s = item.as_str().unwrap_or_default();
        // A txid names a mempool transaction.
        if s.len() == 64 {
            let txid: bitcoin::Txid = s.parse().map_err(|_| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    format!("Transaction {s} not in mempool."),
                )
            })?;
            let tx = on_chain(ctx, "generateblock", move |cs| {
                cs.mempool.get(&txid).map(|e| e.tx.as_ref().clone())
            })?
            .ok_or_else(|| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    format!("Transaction {s} not in mempool."),
                )
            })?;
            txs.push(tx);
            continue;
        }
        txs.push(decode_tx(s).map_err(|_| {
            RpcError::new(
                code::DESERIALIZATION_ERROR,
                format!("Transaction decode failed for {s}"),
            )
        })?);
    }
    mutate(ctx, "generateblock", move |cs| {
        let now = crate::clock::unix_now();
        match cs.mine(payout, txs, now) {
            Ok((block, updates)) => (Ok(json!({"hash": block.block_hash().to_string()})), updates),
            Err(r) => (
                Err(RpcError::new(
                    code::VERIFY_ERROR,
                    format!("TestBlockValidity failed: {}", r.reason),
                )),
                Vec::new(),
            ),
        }
    })?
}

fn submitblock(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["hexdata", "dummy"])?;
    let hex = a.required_str(0)?;
    let bytes: Vec<u8> = bitcoin::hex::FromHex::from_hex(hex)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
    let block: bitcoin::Block = bitcoin::consensus::deserialize(&bytes)
        .map_err(|_| RpcError::new(code::DESERIALIZATION_ERROR, "Block decode failed"))?;
    if block.txdata.first().is_none_or(|t| !t.is_coinbase()) {
        return Err(RpcError::new(
            code::DESERIALIZATION_ERROR,
            "Block does not start with a coinbase",
        ));
    }
    ctx.writable()?;
    let (tx, rx) = bounded(1);
    let timeout = ctx.timeout_for("submitblock");
    let request = ChainRequest::SubmitBlock {
        block: Box::new(block),
        reply: tx,
    };
    ctx.chain_requests
        .send_timeout(request, timeout)
        .map_err(|_| {
            RpcError::internal(code::MISC_ERROR, "chain is busy or stopping; try again")
        })?;
    // Core's BIP22 answers: null when accepted, otherwise a reason string.
    match wait(&rx, timeout, "submitblock")? {
        Ok(Submitted::Active) => Ok(Value::Null),
        Ok(Submitted::Duplicate) => Ok("duplicate".into()),
        Ok(Submitted::SideBranch) => Ok("inconclusive".into()),
        // Not the block's fault: an error, not a BIP22 verdict.
        Err(r) if r.is_storage() => Err(RpcError::new(code::MISC_ERROR, r.detail)),
        Err(r) if r.kind == crate::chain::reject::RejectKind::LocalFault => {
            Err(RpcError::internal(code::MISC_ERROR, r.to_string()))
        }
        Err(r) => Ok(r.reason.into()),
    }
}

fn getmininginfo(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    Args::new(params, &[])?;
    let chain = ctx.chain;
    on_chain(ctx, "getmininginfo", move |cs| {
        let (tip, height) = cs.tip();
        let difficulty = cs
            .tree()
            .get(&tip)
            .map(|e| e.header.target().difficulty_float())
            .unwrap_or(0.0);
        json!({
            "blocks": height,
            "difficulty": difficulty,
            "networkhashps": 0,
            "pooledtx": 0,
            "chain": blockchain::chain_name(chain),
            "warnings": [],
        })
    })
}

/// The Bitcoin Core release whose RPC and P2P behaviour the node matches (clients gate on it).
pub const CORE_VERSION: u32 = 290000;
