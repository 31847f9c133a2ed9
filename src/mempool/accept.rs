//! Whether a transaction may enter the pool: Bitcoin Core's `MemPoolAccept` checks in Core's
//! order and with its reasons (consensus checks, standardness, finality, conflicts and
//! full-RBF, inputs from the UTXO set or unconfirmed parents, fees, sequence locks, sigops,
//! scripts, package limits). Plain code: the chain state is reached through `ChainView`.

use super::policy::{self, MAX_STANDARD_TX_SIGOPS_COST};
use super::pool::{Pool, Removal, INCREMENTAL_RELAY_FEE};
use crate::chain::block_check::is_final;
use crate::chain::params::COINBASE_MATURITY;
use crate::chain::reject::Reject;
use crate::chain::utxo::Coin;
use bitcoin::{OutPoint, Transaction, TxOut, Txid};
use std::collections::BTreeSet;

/// Replacements may evict at most this many transactions (Core's MAX_REPLACEMENT_CANDIDATES).
pub const MAX_REPLACEMENTS: usize = 100;

/// What acceptance needs of the chain.
pub struct ChainView<'a> {
    /// The confirmed coin at an outpoint.
    pub coin: &'a dyn Fn(&OutPoint) -> Option<Coin>,
    /// Height of the next block.
    pub next_height: u32,
    /// Median time past of the tip (BIP113 cutoff, BIP68 for unconfirmed parents).
    pub tip_mtp: u32,
    /// Median time past of the block at a height on the active chain (BIP68 time locks).
    pub mtp_at: &'a dyn Fn(u32) -> u32,
    /// Script flags for the next block (standard flags: libbitcoinconsensus offers no more).
    pub flags: u32,
}

/// Fee floors, sat/kvB.
#[derive(Debug, Clone, Copy)]
pub struct FeeFloors {
    /// `minrelaytxfee`.
    pub min_relay: u64,
    /// The pool's rolling minimum (after evictions).
    pub pool_min: u64,
    /// The caller's ceiling (`sendrawtransaction`'s `maxfeerate`), checked once the
    /// transaction is otherwise valid, as Core does; 0 for none.
    pub max: u64,
}

/// A transaction taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its id.
    pub txid: Txid,
    /// Its fee, satoshis.
    pub fee: u64,
    /// Its virtual size.
    pub vsize: u64,
    /// Transactions it replaced (with their descendants).
    pub replaced: Vec<Txid>,
}

fn reject(reason: &str, detail: impl Into<String>) -> Reject {
    Reject::new(reason, detail.into())
}

fn fee_for(rate: u64, vsize: u64) -> u64 {
    rate.saturating_mul(vsize) / 1000
}

/// Checks `tx` against the chain and the pool and adds it; on refusal nothing changes.
pub fn accept(
    pool: &mut Pool,
    chain: &ChainView,
    tx: Transaction,
    floors: FeeFloors,
    now: i64,
) -> Result<Accepted, Reject> {
    crate::chain::tx_check::check_transaction(&tx)?;
    if tx.is_coinbase() {
        return Err(reject("coinbase", ""));
    }
    policy::check_standard(&tx)?;
    if !is_final(&tx, chain.next_height, chain.tip_mtp) {
        return Err(reject("non-final", ""));
    }
    let txid = tx.compute_txid();
    if pool.get(&txid).is_some() {
        return Err(reject("txn-already-in-mempool", txid.to_string()));
    }
    // Conflicts: full RBF, every in-pool spender of our inputs is a replacement candidate.
    let direct: BTreeSet<Txid> = tx
        .input
        .iter()
        .filter_map(|i| pool.spender(&i.previous_output))
        .collect();
    // What replacing them evicts: they and their descendants.
    let conflicts: BTreeSet<Txid> = direct.iter().flat_map(|t| pool.descendants(t)).collect();
    // Inputs: unconfirmed parents' outputs, else the UTXO set.
    let mut spent: Vec<TxOut> = Vec::with_capacity(tx.input.len());
    let mut min_height = -1i64;
    let mut min_time = -1i64;
    for input in &tx.input {
        let op = input.previous_output;
        let (coin, unconfirmed) = match pool.get(&op.txid) {
            Some(parent) => {
                let out = parent
                    .tx
                    .output
                    .get(op.vout as usize)
                    .cloned()
                    .ok_or_else(|| reject("bad-txns-inputs-missingorspent", op.to_string()))?;
                (
                    Coin {
                        output: out,
                        height: chain.next_height,
                        coinbase: false,
                    },
                    true,
                )
            }
            None => match (chain.coin)(&op) {
                Some(c) => (c, false),
                None => {
                    // Every output of it confirmed and unspent: it is in the chain already.
                    let known = (0..tx.output.len() as u32)
                        .any(|n| (chain.coin)(&OutPoint::new(txid, n)).is_some());
                    return Err(if known {
                        reject("txn-already-known", txid.to_string())
                    } else {
                        reject("bad-txns-inputs-missingorspent", op.to_string())
                    });
                }
            },
        };
        // Spending what it replaces (or a descendant of it) would leave it without its input.
        if conflicts.contains(&op.txid) {
            return Err(reject(
                "bad-txns-spends-conflicting-tx",
                op.txid.to_string(),
            ));
        }
        if coin.coinbase && chain.next_height - coin.height < COINBASE_MATURITY {
            return Err(reject(
                "bad-txns-premature-spend-of-coinbase",
                op.to_string(),
            ));
        }
        // BIP68 relative locks against the next block (version 2+).
        let seq = input.sequence.0;
        if tx.version.0 >= 2 && seq & (1 << 31) == 0 {
            let value = i64::from(seq & 0xffff);
            if seq & (1 << 22) != 0 {
                let coin_time = if unconfirmed {
                    i64::from(chain.tip_mtp)
                } else {
                    i64::from((chain.mtp_at)(coin.height.saturating_sub(1)))
                };
                min_time = min_time.max(coin_time + (value << 9) - 1);
            } else {
                min_height = min_height.max(i64::from(coin.height) + value - 1);
            }
        }
        spent.push(coin.output);
    }
    if min_height >= i64::from(chain.next_height) || min_time >= i64::from(chain.tip_mtp) {
        return Err(reject("non-BIP68-final", ""));
    }
    let value_in: u64 = spent.iter().map(|o| o.value.to_sat()).sum();
    let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    if value_in < value_out {
        return Err(reject(
            "bad-txns-in-belowout",
            format!("value in ({value_in}) < value out ({value_out})"),
        ));
    }
    let fee = value_in - value_out;
    // Fee floors and replacement rules see `prioritisetransaction`'s delta, as in Core.
    let modified = pool.modified_fee(&txid, fee);
    let vsize = tx.vsize() as u64;
    let sigops = crate::chain::sigops::sigop_cost(&tx, &spent);
    if sigops > MAX_STANDARD_TX_SIGOPS_COST {
        return Err(reject("bad-txns-too-many-sigops", sigops.to_string()));
    }
    if modified < fee_for(floors.pool_min, vsize) {
        return Err(reject(
            "mempool min fee not met",
            format!("{modified} < {}", fee_for(floors.pool_min, vsize)),
        ));
    }
    if modified < fee_for(floors.min_relay, vsize) {
        return Err(reject(
            "min relay fee not met",
            format!("{modified} < {}", fee_for(floors.min_relay, vsize)),
        ));
    }
    let replaced = replacements(pool, &direct, &conflicts, modified, vsize)?;
    crate::chain::script::verify_inputs(&tx, &spent, chain.flags)?;
    if floors.max > 0 && fee > fee_for(floors.max, vsize) {
        return Err(reject(
            "max-fee-exceeded",
            format!("{fee} > {}", fee_for(floors.max, vsize)),
        ));
    }
    // Checked before anything leaves, so a refusal changes nothing.
    pool.check_limits(&tx, &conflicts)?;
    for t in &direct {
        pool.remove_with_descendants(t, Removal::Replaced);
    }
    pool.add(tx, fee, sigops, now, chain.next_height - 1)?;
    Ok(Accepted {
        txid,
        fee,
        vsize,
        replaced,
    })
}

/// Core's replacement rules (BIP125 as full-RBF applies them): at most 100 evicted, a higher
/// feerate than each transaction replaced directly, at least their fees, and enough more to pay
/// for its own relay.
fn replacements(
    pool: &Pool,
    direct: &BTreeSet<Txid>,
    conflicts: &BTreeSet<Txid>,
    fee: u64,
    vsize: u64,
) -> Result<Vec<Txid>, Reject> {
    if direct.is_empty() {
        return Ok(Vec::new());
    }
    if conflicts.len() > MAX_REPLACEMENTS {
        return Err(reject(
            "too many potential replacements",
            format!("{} > {MAX_REPLACEMENTS}", conflicts.len()),
        ));
    }
    let new_rate = fee.saturating_mul(1000) / vsize.max(1);
    for t in direct {
        if let Some(e) = pool.get(t) {
            let old_rate = e.modified.saturating_mul(1000) / e.vsize.max(1);
            if new_rate <= old_rate {
                return Err(reject(
                    "insufficient fee",
                    format!(
                        "rejecting replacement {t}; new feerate {new_rate} <= old feerate {old_rate}"
                    ),
                ));
            }
        }
    }
    let old_fees: u64 = conflicts
        .iter()
        .filter_map(|t| pool.get(t))
        .map(|e| e.modified)
        .sum();
    if fee < old_fees {
        return Err(reject(
            "insufficient fee",
            format!("less fees than conflicting txs; {fee} < {old_fees}"),
        ));
    }
    if fee - old_fees < fee_for(INCREMENTAL_RELAY_FEE, vsize) {
        return Err(reject(
            "insufficient fee",
            "not enough additional fees to relay",
        ));
    }
    Ok(conflicts.iter().copied().collect())
}
