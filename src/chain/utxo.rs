//! Connecting a block to a UTXO view: the UTXO rules, fees, sigops and scripts.
//! Pure: it reads a view and returns the changes (and undo data) for the caller to apply.

use super::params::{Params, COINBASE_MATURITY, MAX_BLOCK_SIGOPS_COST, MAX_MONEY};
use super::reject::{ensure, Reject, StorageFault};
use super::script::{block_flags, verify_inputs};
use super::sigops::sigop_cost;
use bitcoin::{Block, OutPoint, Transaction, TxOut};
use std::collections::HashMap;

/// Scripts longer than this can never be spent (Core's MAX_SCRIPT_SIZE).
const MAX_SCRIPT_SIZE: usize = 10_000;

/// An unspent output and where it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// Value and script.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether a coinbase created it (maturity applies).
    pub coinbase: bool,
}

/// Read access to the UTXO set as of the block's parent.
pub trait UtxoView {
    /// The unspent coin at `outpoint`; a fault when the store could not say.
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StorageFault>;
}

impl UtxoView for HashMap<OutPoint, Coin> {
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StorageFault> {
        Ok(self.get(outpoint).cloned())
    }
}

/// What connecting a block does to the UTXO set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockChanges {
    /// Outputs added (spendable ones only; OP_RETURN never enters the set).
    pub created: Vec<(OutPoint, Coin)>,
    /// Coins spent, in order: the undo data that disconnecting restores.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Sum of fees.
    pub fees: u64,
}

/// The block's place in the chain, as connecting it needs.
pub struct ConnectContext<'a> {
    /// Network rules.
    pub params: &'a Params,
    /// Height of the block.
    pub height: u32,
    /// Median time past of the block's parent (BIP113 cutoff, BIP68 time locks).
    pub prev_mtp: u32,
    /// Median time past of the block at a given height on this branch (BIP68).
    pub mtp_at: &'a dyn Fn(u32) -> u32,
    /// False for ancestors of the assumevalid block.
    pub verify_scripts: bool,
}

/// Whether an output can ever be spent (Core's IsUnspendable, inverted).
pub fn is_spendable(out: &TxOut) -> bool {
    let s = out.script_pubkey.as_bytes();
    !(s.first() == Some(&0x6a) || s.len() > MAX_SCRIPT_SIZE)
}

/// Mainnet blocks 91842 and 91880 repeat earlier coinbases; Core exempts them from BIP30.
fn bip30_exempt(params: &Params, height: u32) -> bool {
    params.chain == crate::config::Chain::Mainnet && (height == 91_842 || height == 91_880)
}

/// Applies the UTXO rules to `block` over `view`; returns the changes or Core's reject reason.
pub fn connect_block(
    block: &Block,
    ctx: &ConnectContext<'_>,
    view: &dyn UtxoView,
) -> Result<BlockChanges, Reject> {
    let params = ctx.params;
    let flags = block_flags(params, ctx.height, &block.block_hash());
    let csv = ctx.height >= params.csv_height;
    // Outputs created earlier in this block may be spent later in it.
    let mut local: HashMap<OutPoint, Coin> = HashMap::new();
    let mut spent_here: HashMap<OutPoint, ()> = HashMap::new();
    let mut changes = BlockChanges::default();
    let mut sigops = 0u64;
    for (tx_index, tx) in block.txdata.iter().enumerate() {
        let txid = tx.compute_txid();
        let mut spent_outs = Vec::with_capacity(tx.input.len());
        if !tx.is_coinbase() {
            let mut value_in = 0u64;
            let mut min_height: i64 = -1;
            let mut min_time: i64 = -1;
            for input in &tx.input {
                let op = input.previous_output;
                // A store that cannot answer is a local fault, never "missing or spent".
                let coin = if spent_here.contains_key(&op) {
                    None
                } else {
                    match local.get(&op) {
                        Some(c) => Some(c.clone()),
                        None => view.coin(&op)?,
                    }
                };
                let coin = coin.ok_or_else(|| {
                    Reject::new(
                        "bad-txns-inputs-missingorspent",
                        format!("tx {txid} input {op} missing or spent"),
                    )
                })?;
                if coin.coinbase {
                    ensure(
                        ctx.height - coin.height >= COINBASE_MATURITY,
                        "bad-txns-premature-spend-of-coinbase",
                        || {
                            format!(
                                "tried to spend coinbase at depth {}",
                                ctx.height - coin.height
                            )
                        },
                    )?;
                }
                let v = coin.output.value.to_sat();
                value_in += v;
                ensure(
                    v <= MAX_MONEY && value_in <= MAX_MONEY,
                    "bad-txns-inputvalues-outofrange",
                    String::new,
                )?;
                // BIP68 relative lock times (version 2+, once CSV is active).
                let seq = input.sequence.0;
                if csv && tx.version.0 >= 2 && seq & (1 << 31) == 0 {
                    let value = i64::from(seq & 0xffff);
                    if seq & (1 << 22) != 0 {
                        let coin_time = i64::from((ctx.mtp_at)(coin.height.saturating_sub(1)));
                        min_time = min_time.max(coin_time + (value << 9) - 1);
                    } else {
                        min_height = min_height.max(i64::from(coin.height) + value - 1);
                    }
                }
                spent_here.insert(op, ());
                spent_outs.push(coin.output.clone());
                local.remove(&op);
                changes.spent.push((op, coin));
            }
            ensure(
                min_height < i64::from(ctx.height) && min_time < i64::from(ctx.prev_mtp),
                "bad-txns-nonfinal",
                || format!("contains a non-BIP68-final transaction {txid}"),
            )?;
            let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
            ensure(value_in >= value_out, "bad-txns-in-belowout", || {
                format!("value in ({value_in}) < value out ({value_out})")
            })?;
            let fee = value_in - value_out;
            changes.fees += fee;
            ensure(
                changes.fees <= MAX_MONEY,
                "bad-txns-fee-outofrange",
                String::new,
            )?;
        }
        sigops += sigop_cost(tx, &spent_outs);
        ensure(sigops <= MAX_BLOCK_SIGOPS_COST, "bad-blk-sigops", || {
            "too many sigops".into()
        })?;
        if ctx.verify_scripts && !tx.is_coinbase() {
            verify_inputs(tx, &spent_outs, flags)?;
        }
        for (vout, out) in tx.output.iter().enumerate() {
            if !is_spendable(out) {
                continue;
            }
            let op = OutPoint::new(txid, vout as u32);
            if !bip30_exempt(params, ctx.height) {
                ensure(
                    view.coin(&op)?.is_none() && !local.contains_key(&op),
                    "bad-txns-BIP30",
                    || format!("tried to overwrite transaction {txid}"),
                )?;
            }
            local.insert(
                op,
                Coin {
                    output: out.clone(),
                    height: ctx.height,
                    coinbase: tx_index == 0,
                },
            );
            changes.created.push((op, local[&op].clone()));
        }
    }
    // Outputs created and spent within the block never reach the set.
    changes.created.retain(|(op, _)| local.contains_key(op));
    let coinbase_out: u64 = block.txdata[0]
        .output
        .iter()
        .map(|o| o.value.to_sat())
        .sum();
    let allowed = params.subsidy(ctx.height) + changes.fees;
    ensure(coinbase_out <= allowed, "bad-cb-amount", || {
        format!("coinbase pays too much (actual={coinbase_out} vs limit={allowed})")
    })?;
    Ok(changes)
}

/// The spent outputs of `tx` from `view`, for script checks outside a block (`None` when one
/// is missing).
pub fn spent_outputs(
    tx: &Transaction,
    view: &dyn UtxoView,
) -> Result<Option<Vec<TxOut>>, StorageFault> {
    let mut outs = Vec::with_capacity(tx.input.len());
    for i in &tx.input {
        match view.coin(&i.previous_output)? {
            Some(c) => outs.push(c.output),
            None => return Ok(None),
        }
    }
    Ok(Some(outs))
}
