//! Blockchain reads: pure functions of the chain state and the parameters.

use crate::chain::chainstate::{BlockAccess, ChainState, TipStatus};
use crate::config::Chain;
use crate::rpc::protocol::{code, Args, Params, RpcError};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{BlockHash, OutPoint, Txid};
use serde_json::{json, Map, Value};
use std::str::FromStr;

fn not_found() -> RpcError {
    RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
}

/// Parses a 64-hex block hash parameter.
pub fn parse_hash(v: &Value, name: &str) -> Result<BlockHash, RpcError> {
    let s = v.as_str().ok_or_else(|| {
        RpcError::new(
            code::TYPE_ERROR,
            format!("{name} must be a hexadecimal string"),
        )
    })?;
    // Core's ParseHashV wording: length first, then hex.
    if s.len() != 64 {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    BlockHash::from_str(s).map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

/// Core's network names in RPC results.
pub fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Mainnet => "main",
        Chain::Testnet3 => "test",
        Chain::Testnet4 => "testnet4",
        Chain::Signet => "signet",
        Chain::Regtest => "regtest",
    }
}

fn work_hex(cs: &ChainState, hash: &BlockHash) -> String {
    cs.tree()
        .get(hash)
        .map(|e| bitcoin::hex::DisplayHex::to_lower_hex_string(&e.chain_work.to_be_bytes()[..]))
        .unwrap_or_default()
}

/// The header fields shared by getblockheader and getblock.
fn header_fields(
    cs: &ChainState,
    hash: &BlockHash,
    n_tx: Option<usize>,
) -> Option<Map<String, Value>> {
    let e = cs.tree().get(hash)?;
    let (_, tip_height) = cs.tip();
    let active = cs.hash_at(e.height) == Some(*hash);
    let next = active.then(|| cs.hash_at(e.height + 1)).flatten();
    Some(header_map(HeaderFacts {
        hash: &hash.to_string(),
        header: &e.header,
        height: e.height,
        confirmations: if active {
            i64::from(tip_height) - i64::from(e.height) + 1
        } else {
            -1
        },
        mediantime: cs.tree().median_time_past(hash),
        chainwork: &work_hex(cs, hash),
        n_tx,
        next,
    }))
}

/// What Core's header object shows of a block.
struct HeaderFacts<'a> {
    hash: &'a str,
    header: &'a bitcoin::block::Header,
    height: u32,
    confirmations: i64,
    mediantime: u32,
    chainwork: &'a str,
    n_tx: Option<usize>,
    next: Option<BlockHash>,
}

fn header_map(f: HeaderFacts) -> Map<String, Value> {
    let h = f.header;
    let mut m = Map::new();
    m.insert("hash".into(), f.hash.into());
    m.insert("confirmations".into(), f.confirmations.into());
    m.insert("height".into(), f.height.into());
    m.insert("version".into(), h.version.to_consensus().into());
    m.insert(
        "versionHex".into(),
        format!("{:08x}", h.version.to_consensus()).into(),
    );
    m.insert("merkleroot".into(), h.merkle_root.to_string().into());
    m.insert("time".into(), h.time.into());
    m.insert("mediantime".into(), f.mediantime.into());
    m.insert("nonce".into(), h.nonce.into());
    m.insert(
        "bits".into(),
        format!("{:08x}", h.bits.to_consensus()).into(),
    );
    m.insert("difficulty".into(), h.target().difficulty_float().into());
    m.insert("chainwork".into(), f.chainwork.into());
    m.insert("nTx".into(), f.n_tx.unwrap_or(0).into());
    if f.height > 0 {
        m.insert(
            "previousblockhash".into(),
            h.prev_blockhash.to_string().into(),
        );
    }
    if let Some(next) = f.next {
        m.insert("nextblockhash".into(), next.to_string().into());
    }
    m
}

/// `getblockheader` of the tip from the published view (verbose: Core's object, else hex).
pub fn tip_header_from_view(view: &crate::state::ChainView, verbose: bool) -> Option<Value> {
    let header = view.tip_header.as_ref()?;
    if !verbose {
        return Some(serialize_hex(header).into());
    }
    Some(Value::Object(header_map(HeaderFacts {
        hash: &view.tip_hash,
        header,
        height: u32::try_from(view.height).ok()?,
        confirmations: 1,
        mediantime: view.mediantime,
        chainwork: &view.chainwork,
        n_tx: view.tip_n_tx,
        next: None,
    })))
}

/// `getblockcount`.
pub fn getblockcount(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    Args::new(p, &[])?;
    Ok(cs.tip().1.into())
}

/// `getbestblockhash`.
pub fn getbestblockhash(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    Args::new(p, &[])?;
    Ok(cs.tip().0.to_string().into())
}

/// `getblockhash height`.
pub fn getblockhash(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    let a = Args::new(p, &["height"])?;
    a.required(0)?;
    let height = a.int(0)?.unwrap_or(-1);
    u32::try_from(height)
        .ok()
        .and_then(|h| cs.hash_at(h))
        .map(|h| h.to_string().into())
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMETER, "Block height out of range"))
}

/// `getblockheader blockhash (verbose=true)`.
pub fn getblockheader(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    let a = Args::new(p, &["blockhash", "verbose"])?;
    let hash = parse_hash(a.required(0)?, "blockhash")?;
    let verbose = a
        .get(1)
        .map(|v| v.as_bool().unwrap_or(true))
        .unwrap_or(true);
    let e = cs.tree().get(&hash).ok_or_else(not_found)?;
    if !verbose {
        return Ok(serialize_hex(&e.header).into());
    }
    let n_tx = cs.tx_count(&hash);
    Ok(Value::Object(
        header_fields(cs, &hash, n_tx).ok_or_else(not_found)?,
    ))
}

/// Core's decoded transaction object (with `hex`), as a value to add fields to.
pub fn tx_json(tx: &bitcoin::Transaction, chain: Chain) -> Value {
    serde_json::to_value(super::format::TxJson::new(tx, chain)).unwrap_or_default()
}

/// Core's scriptPubKey object.
pub fn script_json(script: &bitcoin::Script, network: bitcoin::Network) -> Value {
    serde_json::to_value(super::format::ScriptJson::new(script, network)).unwrap_or_default()
}

/// What `getblock` needs from the chain thread: where the block is and its header fields.
pub struct BlockData {
    hash: BlockHash,
    access: BlockAccess,
    fields: Map<String, Value>,
    verbosity: i64,
    chain: Chain,
    /// Verbosity 3: the coins the block's inputs spent, in order (its undo data), when kept.
    spent: Option<Vec<crate::chain::utxo::Coin>>,
}

/// `getblock` on the chain thread: only the lookups; the block is read and formatted by the
/// RPC worker, so a large block never holds the chain thread.
pub fn getblock_data(cs: &ChainState, p: &Params) -> Result<BlockData, RpcError> {
    let a = Args::new(p, &["blockhash", "verbosity"])?;
    let hash = parse_hash(a.required(0)?, "blockhash")?;
    let verbosity = match a.get(1) {
        None => 1,
        Some(Value::Bool(b)) => i64::from(*b),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| RpcError::new(code::TYPE_ERROR, "verbosity must be a number"))?,
    };
    cs.tree().get(&hash).ok_or_else(not_found)?;
    let access = cs.block_access(&hash).ok_or_else(pruned)?;
    let fields = header_fields(cs, &hash, cs.tx_count(&hash)).ok_or_else(not_found)?;
    // Without undo data (genesis, pruned undo) verbosity 3 is verbosity 2, as in Core.
    let spent = (verbosity >= 3)
        .then(|| cs.load_undo(&hash).ok().flatten())
        .flatten()
        .map(|c| c.spent.into_iter().map(|(_, coin)| coin).collect());
    Ok(BlockData {
        hash,
        access,
        fields,
        verbosity,
        chain: cs.params().chain,
        spent,
    })
}

fn pruned() -> RpcError {
    RpcError::new(code::MISC_ERROR, "Block not available (pruned data)")
}

/// `getblock blockhash (verbosity=1)` read and formatted off the chain thread, as JSON text
/// written straight from the block (no `Value` per transaction); verbosity may be a boolean,
/// as Core's legacy form. Verbosity 0 is the stored bytes, never decoded.
pub fn getblock_json(d: BlockData) -> Result<String, RpcError> {
    let BlockData {
        hash,
        access,
        mut fields,
        verbosity,
        chain,
        spent,
    } = d;
    let internal = |e: serde_json::Error| RpcError::internal(code::MISC_ERROR, e.to_string());
    if verbosity <= 1 {
        // Neither needs the block decoded: the checked bytes, or what checking them learnt.
        let raw = access
            .raw(&hash)
            .map_err(storage_fault)?
            .ok_or_else(pruned)?;
        if verbosity <= 0 {
            return Ok(crate::hex::json_string(&raw.bytes));
        }
        let (size, stripped) = (raw.bytes.len(), raw.summary.stripped_size);
        fields.insert("strippedsize".into(), stripped.into());
        fields.insert("size".into(), size.into());
        fields.insert("weight".into(), (stripped * 3 + size).into());
        let mut out = serde_json::to_vec(&fields).map_err(internal)?;
        out.pop();
        out.extend_from_slice(b",\"tx\":");
        let txids: Vec<String> = raw.summary.txids.iter().map(|t| t.to_string()).collect();
        serde_json::to_writer(&mut out, &txids).map_err(internal)?;
        out.push(b'}');
        return String::from_utf8(out)
            .map_err(|e| RpcError::internal(code::MISC_ERROR, e.to_string()));
    }
    let block = access
        .block(&hash)
        .map_err(storage_fault)?
        .ok_or_else(pruned)?;
    let stripped = block.txdata.iter().map(|t| t.base_size()).sum::<usize>()
        + 80
        + bitcoin::VarInt(block.txdata.len() as u64).size();
    fields.insert("strippedsize".into(), stripped.into());
    fields.insert("size".into(), block.total_size().into());
    fields.insert("weight".into(), block.weight().to_wu().into());
    // The header fields, then `tx` written one transaction at a time.
    let mut out = serde_json::to_vec(&fields).map_err(internal)?;
    out.pop();
    out.extend_from_slice(b",\"tx\":[");
    // Verbosity 3: each input's spent coin, taken in order from the undo data (which holds
    // one per input but the coinbase's); a count that does not match is not used.
    let inputs: usize = block.txdata.iter().skip(1).map(|t| t.input.len()).sum();
    let spent = spent.filter(|s| s.len() == inputs);
    let mut at = 0;
    for (i, tx) in block.txdata.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let prevouts = match &spent {
            Some(s) if i > 0 => {
                at += tx.input.len();
                Some(&s[at - tx.input.len()..at])
            }
            _ => None,
        };
        let json = super::format::TxJson::with_prevouts(tx, chain, prevouts);
        serde_json::to_writer(&mut out, &json).map_err(internal)?;
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).map_err(|e| RpcError::internal(code::MISC_ERROR, e.to_string()))
}

/// `getchaintips`.
pub fn getchaintips(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    Args::new(p, &[])?;
    let tips: Vec<Value> = cs
        .chain_tips()
        .into_iter()
        .map(|t| {
            let status = match t.status {
                TipStatus::Active => "active",
                TipStatus::ValidFork => "valid-fork",
                TipStatus::ValidHeaders => "valid-headers",
                TipStatus::HeadersOnly => "headers-only",
                TipStatus::Invalid => "invalid",
            };
            json!({"height": t.height, "hash": t.hash.to_string(), "branchlen": t.branch_len, "status": status})
        })
        .collect();
    Ok(tips.into())
}

/// `getdifficulty`.
pub fn getdifficulty(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    Args::new(p, &[])?;
    let tip = cs.tip().0;
    Ok(cs
        .tree()
        .get(&tip)
        .map(|e| e.header.target().difficulty_float())
        .unwrap_or(0.0)
        .into())
}

/// `getblockchaininfo`.
pub fn getblockchaininfo(
    cs: &ChainState,
    p: &Params,
    size_on_disk: u64,
    prune: &PruneInfo,
) -> Result<Value, RpcError> {
    Args::new(p, &[])?;
    let view = crate::chain::thread::chain_view(cs);
    Ok(chaininfo(cs.params().chain, &view, size_on_disk, prune))
}

/// `getblockchaininfo` of a published chain view.
pub fn chaininfo(
    chain: crate::config::Chain,
    view: &crate::state::ChainView,
    size_on_disk: u64,
    prune: &PruneInfo,
) -> Value {
    serde_json::to_value(ChainInfo::new(chain, view, size_on_disk, prune, &[])).unwrap_or_default()
}

/// `getblockchaininfo` as text, written from a struct in Core's field order (the call
/// monitoring polls most, answered in the HTTP gate).
pub fn chaininfo_json(
    chain: crate::config::Chain,
    view: &crate::state::ChainView,
    size_on_disk: u64,
    prune: &PruneInfo,
    warnings: &[String],
) -> String {
    serde_json::to_string(&ChainInfo::new(chain, view, size_on_disk, prune, warnings))
        .unwrap_or_default()
}

#[derive(serde::Serialize)]
struct ChainInfo<'a> {
    chain: &'static str,
    blocks: u64,
    headers: u64,
    bestblockhash: &'a str,
    difficulty: f64,
    time: u32,
    mediantime: u32,
    verificationprogress: f64,
    initialblockdownload: bool,
    chainwork: &'a str,
    size_on_disk: u64,
    pruned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pruneheight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    automatic_pruning: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune_target_size: Option<u64>,
    warnings: &'a [String],
}

impl<'a> ChainInfo<'a> {
    fn new(
        chain: crate::config::Chain,
        view: &'a crate::state::ChainView,
        size_on_disk: u64,
        prune: &PruneInfo,
        warnings: &'a [String],
    ) -> ChainInfo<'a> {
        let now = crate::clock::unix_now() as u64;
        ChainInfo {
            chain: chain_name(chain),
            blocks: view.height,
            headers: view.headers,
            bestblockhash: &view.tip_hash,
            difficulty: view.difficulty,
            time: view.time,
            mediantime: view.mediantime,
            verificationprogress: if view.headers == 0 {
                1.0
            } else {
                view.height as f64 / view.headers as f64
            },
            // Core's rule: in IBD while the tip is older than a day.
            initialblockdownload: u64::from(view.time) + 24 * 3600 < now,
            chainwork: &view.chainwork,
            size_on_disk,
            pruned: prune.enabled,
            // Core: the lowest height with a complete block stored.
            pruneheight: prune
                .enabled
                .then(|| prune.prune_height.map_or(0, |h| h + 1)),
            automatic_pruning: prune.enabled.then_some(prune.automatic),
            prune_target_size: prune.target_bytes.filter(|_| prune.enabled),
            warnings,
        }
    }
}

/// Pruning as `getblockchaininfo` reports it.
#[derive(Debug, Clone)]
pub struct PruneInfo {
    /// Any pruning mode but disabled (Core's `pruned`).
    pub enabled: bool,
    /// Highest pruned block height.
    pub prune_height: Option<u32>,
    /// The node prunes by itself.
    pub automatic: bool,
    /// Core's `prune_target_size`, bytes.
    pub target_bytes: Option<u64>,
}

/// A read that failed for this node's storage: an error that says so, never an answer built on
/// bad data ("pruned", "unknown" or a wrong amount).
fn storage_fault(f: crate::chain::reject::StorageFault) -> RpcError {
    RpcError::internal(
        code::MISC_ERROR,
        format!("Block data unreadable or corrupt on this node ({f}); see the node's log"),
    )
}

/// `pruneblockchain`'s height argument as Core reads it: above 1e9 a unix time, meaning the
/// first active block at most two hours older than it.
pub fn prune_height_for(cs: &ChainState, h: i64) -> Result<u32, RpcError> {
    const TIMESTAMP_WINDOW: i64 = 2 * 60 * 60;
    let (_, tip) = cs.tip();
    if h > 1_000_000_000 {
        let first = (0..=tip).find(|&height| {
            cs.hash_at(height)
                .and_then(|hash| cs.tree().get(&hash))
                .is_some_and(|e| i64::from(e.header.time) >= h - TIMESTAMP_WINDOW)
        });
        return first.ok_or_else(|| {
            RpcError::new(
                code::INVALID_PARAMETER,
                "Could not find block with at least the specified timestamp.",
            )
        });
    }
    match u32::try_from(h) {
        Ok(height) if height <= tip => Ok(height),
        _ => Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Blockchain is shorter than the attempt to prune it.",
        )),
    }
}

/// `gettxout txid n (include_mempool=true)`: `null` when spent or unknown.
pub fn gettxout(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    let a = Args::new(p, &["txid", "n", "include_mempool"])?;
    let txid = a.required_str(0)?;
    let txid = Txid::from_str(txid)
        .map_err(|_| RpcError::new(code::INVALID_PARAMETER, "txid must be of length 64"))?;
    let n = a
        .int(1)?
        .ok_or_else(|| RpcError::new(code::MISC_ERROR, "Missing required argument n"))?;
    let n = u32::try_from(n).map_err(|_| RpcError::new(code::INVALID_PARAMETER, "Invalid n"))?;
    let Some(coin) = cs
        .read_coin(&OutPoint::new(txid, n))
        .map_err(storage_fault)?
    else {
        return Ok(Value::Null);
    };
    let (tip, height) = cs.tip();
    Ok(json!({
        "bestblock": tip.to_string(),
        "confirmations": height - coin.height + 1,
        "value": coin.output.value.to_btc(),
        "scriptPubKey": script_json(&coin.output.script_pubkey, cs.params().chain.bitcoin_network()),
        "coinbase": coin.coinbase,
    }))
}

/// `gettxoutsetinfo`: counts, total and Core's hash_serialized_3 construction; stops at `deadline`.
pub fn gettxoutsetinfo(
    cs: &ChainState,
    p: &Params,
    disk_size: u64,
    deadline: std::time::Instant,
) -> Result<Value, RpcError> {
    let a = Args::new(p, &["hash_type", "hash_or_height", "use_index"])?;
    if let Some(t) = a.str(0)? {
        if t != "hash_serialized_3" {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                format!("{t} is not a valid hash_type"),
            ));
        }
    }
    let stats = cs
        .utxo_stats_until(&|| std::time::Instant::now() > deadline)
        .map_err(storage_fault)?
        .ok_or_else(timed_out)?;
    let (tip, height) = cs.tip();
    Ok(json!({
        "height": height,
        "bestblock": tip.to_string(),
        "txouts": stats.count,
        "bogosize": stats.count * 50,
        "hash_serialized_3": stats.hash.to_string(),
        "total_amount": bitcoin::Amount::from_sat(stats.total).to_btc(),
        "transactions": stats.count,
        "disk_size": disk_size,
    }))
}

fn timed_out() -> RpcError {
    RpcError::internal(code::MISC_ERROR, "request timed out; the work was stopped")
}

/// `verifychain (checklevel nblocks)`: re-reads and re-checks the last blocks and their undo
/// data; stops at `deadline`.
pub fn verifychain(
    cs: &ChainState,
    p: &Params,
    deadline: std::time::Instant,
) -> Result<Value, RpcError> {
    let a = Args::new(p, &["checklevel", "nblocks"])?;
    let level = a.int(0)?.unwrap_or(3);
    if !(0..=4).contains(&level) {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "checklevel must be 0-4",
        ));
    }
    let (_, tip) = cs.tip();
    let n = match a.int(1)?.unwrap_or(6) {
        n if n <= 0 => tip,
        n => (n as u32).min(tip),
    };
    for h in (tip + 1 - n)..=tip {
        if std::time::Instant::now() > deadline {
            log::warn!("verifychain stopped at its deadline before height {h}");
            return Err(timed_out());
        }
        let Some(hash) = cs.hash_at(h) else {
            return Ok(false.into());
        };
        let block = match cs.load_block(&hash) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(false.into()),
            Err(f) => {
                log::error!("verifychain: {f}");
                return Ok(false.into());
            }
        };
        if level >= 1 && crate::chain::block_check::check_block(&block, cs.params(), true).is_err()
        {
            log::error!("verifychain: block {hash} at {h} fails its checks");
            return Ok(false.into());
        }
        if level >= 2 && h > 0 && !matches!(cs.load_undo(&hash), Ok(Some(_))) {
            log::error!("verifychain: undo data of {hash} at {h} unreadable");
            return Ok(false.into());
        }
    }
    // Every coin record carries a checksum: one walk of the set finds a damaged one.
    if level >= 1 {
        match cs.utxo_stats_until(&|| std::time::Instant::now() > deadline) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(timed_out()),
            Err(f) => {
                log::error!("verifychain: {f}");
                return Ok(false.into());
            }
        }
    }
    Ok(true.into())
}

/// `getblocktemplate {"rules": ["segwit"]}`: BIP22/23 fields for a block on the tip.
pub fn getblocktemplate(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    let a = Args::new(p, &["template_request"])?;
    let rules = a
        .get(0)
        .and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !rules.iter().any(|r| r == "segwit") {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})",
        ));
    }
    let now = crate::clock::unix_now();
    let selected = cs.block_from_mempool();
    let t = cs.template(now, selected.fees);
    let mtp = cs.tree().median_time_past(&t.prev);
    let txs: Vec<bitcoin::Transaction> = selected.txs.iter().map(|t| (**t).clone()).collect();
    let block = crate::chain::mining::build_block(cs.params(), &t, bitcoin::ScriptBuf::new(), txs);
    let commitment =
        crate::chain::block_check::witness_commitment_index(&block.txdata[0]).map(|i| {
            bitcoin::hex::DisplayHex::to_lower_hex_string(
                block.txdata[0].output[i].script_pubkey.as_bytes(),
            )
        });
    // BIP22: each transaction with the 1-based positions of the template's transactions it
    // spends.
    let position: std::collections::HashMap<Txid, usize> = selected
        .txs
        .iter()
        .enumerate()
        .map(|(i, t)| (t.compute_txid(), i + 1))
        .collect();
    let transactions: Vec<Value> = selected
        .txs
        .iter()
        .map(|tx| {
            let txid = tx.compute_txid();
            let entry = cs.mempool.get(&txid);
            let mut depends: Vec<usize> = tx
                .input
                .iter()
                .filter_map(|i| position.get(&i.previous_output.txid).copied())
                .collect();
            depends.sort_unstable();
            depends.dedup();
            json!({
                "data": bitcoin::consensus::encode::serialize_hex(&**tx),
                "txid": txid.to_string(),
                "hash": tx.compute_wtxid().to_string(),
                "depends": depends,
                "fee": entry.map_or(0, |e| e.fee),
                "sigops": entry.map_or(0, |e| e.sigops),
                "weight": tx.weight().to_wu(),
            })
        })
        .collect();
    let target = bitcoin::Target::from_compact(t.bits).to_be_bytes();
    let mut m = json!({
        "capabilities": ["proposal"],
        "version": 0x2000_0000,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": t.prev.to_string(),
        "transactions": transactions,
        "coinbaseaux": {},
        "coinbasevalue": cs.params().subsidy(t.height) + selected.fees,
        "longpollid": format!("{}{}", t.prev, 0),
        "target": bitcoin::hex::DisplayHex::to_lower_hex_string(&target[..]),
        "mintime": mtp + 1,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": t.time,
        "bits": format!("{:08x}", t.bits.to_consensus()),
        "height": t.height,
    });
    if let (Some(c), Some(obj)) = (commitment, m.as_object_mut()) {
        obj.insert("default_witness_commitment".into(), c.into());
    }
    Ok(m)
}

/// `getrawtransaction txid (verbose blockhash)`: without a transaction index, a block hash is needed.
pub fn getrawtransaction(cs: &ChainState, p: &Params) -> Result<Value, RpcError> {
    let a = Args::new(p, &["txid", "verbose", "blockhash"])?;
    let txid = a.required_str(0)?;
    let txid = Txid::from_str(txid)
        .map_err(|_| RpcError::new(code::INVALID_PARAMETER, "txid must be of length 64"))?;
    let verbose = match a.get(1) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => v.as_i64().unwrap_or(0) > 0,
    };
    let Some(hash) = a.get(2) else {
        // Without a block hash: the mempool (Core's answer without -txindex).
        let held = cs.mempool.get(&txid).ok_or_else(|| {
            RpcError::new(
                code::INVALID_ADDRESS_OR_KEY,
                "No such mempool transaction. Use -txindex or provide a block hash to enable blockchain transaction queries. Use gettransaction for wallet transactions.",
            )
        })?;
        return Ok(if verbose {
            tx_json(&held.tx, cs.params().chain)
        } else {
            serialize_hex(&*held.tx).into()
        });
    };
    let hash = parse_hash(hash, "blockhash")?;
    let e = cs
        .tree()
        .get(&hash)
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
    let block = cs
        .block(&hash)
        .ok_or_else(|| RpcError::new(code::MISC_ERROR, "Block not available"))?;
    let tx = block
        .txdata
        .iter()
        .find(|t| t.compute_txid() == txid)
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "No such transaction found in the provided block. Use gettransaction for wallet transactions."))?;
    if !verbose {
        return Ok(serialize_hex(tx).into());
    }
    let (_, tip) = cs.tip();
    let active = cs.hash_at(e.height) == Some(hash);
    let mut v = tx_json(tx, cs.params().chain);
    if let Some(o) = v.as_object_mut() {
        o.insert("in_active_chain".into(), active.into());
        o.insert("blockhash".into(), hash.to_string().into());
        o.insert(
            "confirmations".into(),
            if active {
                (tip - e.height + 1).into()
            } else {
                0.into()
            },
        );
        o.insert("time".into(), e.header.time.into());
        o.insert("blocktime".into(), e.header.time.into());
    }
    Ok(v)
}

/// `sendrawtransaction hex`: into the mempool (`ChainState::mempool_accept`), answered with
/// Core's codes: -25 for missing inputs, -27 for a confirmed transaction, -26 with Core's reason
/// for the rest; a transaction already held answers its txid, as Core does.
pub fn sendrawtransaction(
    cs: &mut ChainState,
    tx: bitcoin::Transaction,
    limits: SendLimits,
    now: i64,
) -> Result<Value, RpcError> {
    let txid = tx.compute_txid();
    let burnt: u64 = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey.is_op_return())
        .map(|o| o.value.to_sat())
        .sum();
    if burnt > limits.max_burn {
        return Err(RpcError::new(
            code::VERIFY_ERROR,
            "Unspendable output exceeds maximum configured by user (maxburnamount)",
        ));
    }
    match cs.mempool_accept(tx, limits.max_fee_rate, now) {
        Ok(_) => Ok(txid.to_string().into()),
        Err(r) => Err(match r.reason.as_str() {
            "txn-already-in-mempool" => return Ok(txid.to_string().into()),
            "txn-already-known" => RpcError::new(
                code::VERIFY_ALREADY_IN_CHAIN,
                "Transaction already in block chain",
            ),
            "bad-txns-inputs-missingorspent" => RpcError::new(code::VERIFY_ERROR, r.reason),
            "max-fee-exceeded" => RpcError::new(
                code::VERIFY_ERROR,
                "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
            ),
            _ if r.detail.is_empty() => RpcError::new(code::VERIFY_REJECTED, r.reason),
            _ => RpcError::new(code::VERIFY_REJECTED, format!("{}, {}", r.reason, r.detail)),
        }),
    }
}

/// `sendrawtransaction`'s guards against mistakes, in satoshis (Core's `maxfeerate` per kvB,
/// `maxburnamount`); a fee rate of 0 means no limit, as in Core.
#[derive(Debug, Clone, Copy)]
pub struct SendLimits {
    /// Highest fee rate, sat/kvB.
    pub max_fee_rate: u64,
    /// Most value sent to unspendable outputs.
    pub max_burn: u64,
}

/// BTC per kvB from sat per kvB.
fn btc_per_kvb(sat: u64) -> f64 {
    bitcoin::Amount::from_sat(sat).to_btc()
}

/// `getmempoolinfo`, Core's fields.
pub fn getmempoolinfo(pool: &crate::mempool::pool::Pool, now: i64) -> Value {
    use crate::mempool::pool::{INCREMENTAL_RELAY_FEE, MIN_RELAY_FEE};
    let floor = pool.floor(now);
    json!({
        "loaded": pool.loaded(),
        "size": pool.len(),
        "bytes": pool.vsize(),
        "usage": pool.usage(),
        "total_fee": bitcoin::Amount::from_sat(pool.total_fee()).to_btc(),
        "maxmempool": pool.max_usage(),
        "mempoolminfee": btc_per_kvb(floor),
        "minrelaytxfee": btc_per_kvb(MIN_RELAY_FEE),
        "incrementalrelayfee": btc_per_kvb(INCREMENTAL_RELAY_FEE),
        "unbroadcastcount": 0,
        "fullrbf": true,
    })
}

/// A txid argument.
pub fn parse_txid(s: &str) -> Result<bitcoin::Txid, RpcError> {
    s.parse().map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("txid must be of length 64 (not {}, for '{s}')", s.len()),
        )
    })
}

/// Core's mempool entry object.
fn entry_json(pool: &crate::mempool::pool::Pool, t: &bitcoin::Txid) -> Option<Value> {
    let e = pool.get(t)?;
    let btc = |sat: u64| bitcoin::Amount::from_sat(sat).to_btc();
    Some(json!({
        "vsize": e.vsize,
        "weight": e.tx.weight().to_wu(),
        "time": e.time,
        "height": e.height,
        "descendantcount": e.with_descendants.count,
        "descendantsize": e.with_descendants.vsize,
        "ancestorcount": e.with_ancestors.count,
        "ancestorsize": e.with_ancestors.vsize,
        "wtxid": e.wtxid.to_string(),
        "fees": {
            "base": btc(e.fee),
            "modified": btc(e.modified),
            "ancestor": btc(e.with_ancestors.fee),
            "descendant": btc(e.with_descendants.fee),
        },
        "depends": e.parents.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "spentby": e.children.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable": true,
        "unbroadcast": false,
    }))
}

/// `txids` as Core lists them: an array, or entry objects by txid.
fn txid_listing(
    pool: &crate::mempool::pool::Pool,
    txids: impl IntoIterator<Item = bitcoin::Txid>,
    verbose: bool,
) -> Value {
    let mut txids: Vec<_> = txids.into_iter().collect();
    txids.sort();
    if !verbose {
        return json!(txids.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    }
    let mut out = serde_json::Map::new();
    for t in txids {
        if let Some(e) = entry_json(pool, &t) {
            out.insert(t.to_string(), e);
        }
    }
    Value::Object(out)
}

/// `getrawmempool [verbose]`: txids, or Core's entry objects by txid.
pub fn getrawmempool(pool: &crate::mempool::pool::Pool, verbose: bool) -> Value {
    txid_listing(pool, pool.iter().map(|(t, _)| *t), verbose)
}

fn not_in_mempool() -> RpcError {
    RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
}

/// `getmempoolentry txid`.
pub fn getmempoolentry(
    pool: &crate::mempool::pool::Pool,
    txid: &bitcoin::Txid,
) -> Result<Value, RpcError> {
    entry_json(pool, txid).ok_or_else(not_in_mempool)
}

/// `getmempoolancestors` / `getmempooldescendants txid [verbose]`: the relatives, without the
/// transaction itself.
pub fn getmempoolrelatives(
    pool: &crate::mempool::pool::Pool,
    txid: &bitcoin::Txid,
    ancestors: bool,
    verbose: bool,
) -> Result<Value, RpcError> {
    if pool.get(txid).is_none() {
        return Err(not_in_mempool());
    }
    let mut set = if ancestors {
        pool.ancestors(txid)
    } else {
        pool.descendants(txid)
    };
    set.remove(txid);
    Ok(txid_listing(pool, set, verbose))
}
