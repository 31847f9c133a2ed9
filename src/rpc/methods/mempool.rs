//! Mempool methods that try transactions without (or before) keeping them: `testmempoolaccept`
//! and `submitpackage`, in Core's shapes. Both run on the chain thread against the real pool
//! inside a trial (`Pool::checkpoint`), rolled back unless a package is kept.

use super::super::protocol::{code, RpcError};
use crate::chain::chainstate::ChainState;
use crate::chain::reject::Reject;
use crate::mempool::pool::MIN_RELAY_FEE;
use bitcoin::{Transaction, Txid};
use serde_json::{json, Value};
use std::collections::HashSet;

/// Transactions a package may hold (Core's MAX_PACKAGE_COUNT).
pub const MAX_PACKAGE_COUNT: usize = 25;
/// Their total weight (MAX_PACKAGE_WEIGHT).
pub const MAX_PACKAGE_WEIGHT: u64 = 404_000;

fn btc(sat: u64) -> f64 {
    bitcoin::Amount::from_sat(sat).to_btc()
}

/// Core's check of a raw transaction list's length, for both methods.
pub fn check_count(n: usize) -> Result<(), RpcError> {
    if (1..=MAX_PACKAGE_COUNT).contains(&n) {
        Ok(())
    } else {
        Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("Array must contain between 1 and {MAX_PACKAGE_COUNT} transactions."),
        ))
    }
}

/// Core's `IsWellFormedPackage`: the reason a list of transactions is not a package.
fn malformed(txs: &[Transaction]) -> Option<&'static str> {
    if txs.iter().map(|t| t.weight().to_wu()).sum::<u64>() > MAX_PACKAGE_WEIGHT {
        return Some("package-too-large");
    }
    let ids: Vec<Txid> = txs.iter().map(|t| t.compute_txid()).collect();
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Some("package-contains-duplicates");
    }
    // Sorted: nothing spends a transaction that comes after it.
    for (i, tx) in txs.iter().enumerate() {
        if tx
            .input
            .iter()
            .any(|inp| ids[i + 1..].contains(&inp.previous_output.txid))
        {
            return Some("package-not-sorted");
        }
    }
    let mut spent = HashSet::new();
    if txs
        .iter()
        .flat_map(|t| t.input.iter())
        .any(|i| !spent.insert(i.previous_output))
    {
        return Some("conflict-in-package");
    }
    None
}

/// What Core's `TxValidationState::ToString` shows: the reason, then the detail.
fn state(r: &Reject) -> String {
    if r.detail.is_empty() {
        r.reason.clone()
    } else {
        format!("{}, {}", r.reason, r.detail)
    }
}

/// `testmempoolaccept`: each transaction tried in order as if the ones before it had entered;
/// nothing is kept. The first refusal ends the trial (the rest show only their ids).
pub fn testmempoolaccept(
    cs: &mut ChainState,
    txs: Vec<Transaction>,
    max_fee_rate: u64,
    now: i64,
) -> Value {
    let heads = |tx: &Transaction| json!({"txid": tx.compute_txid().to_string(), "wtxid": tx.compute_wtxid().to_string()});
    if txs.len() > 1 {
        if let Some(why) = malformed(&txs) {
            return Value::Array(
                txs.iter()
                    .map(|t| {
                        let mut v = heads(t);
                        v["package-error"] = why.into();
                        v
                    })
                    .collect(),
            );
        }
    }
    let cp = cs.mempool.checkpoint();
    let mut out = Vec::new();
    let mut done = false;
    for tx in txs {
        let mut v = heads(&tx);
        if done {
            out.push(v);
            continue;
        }
        let wtxid = tx.compute_wtxid();
        match cs.mempool_offer(tx, 0, now, true) {
            Ok(a) => {
                let fee_limit = max_fee_rate.saturating_mul(a.vsize) / 1000;
                if max_fee_rate > 0 && a.fee > fee_limit {
                    v["allowed"] = false.into();
                    v["reject-reason"] = "max-fee-exceeded".into();
                    done = true;
                } else {
                    let modified = cs.mempool.get(&a.txid).map_or(a.fee, |e| e.modified);
                    v["allowed"] = true.into();
                    v["vsize"] = a.vsize.into();
                    v["fees"] = json!({
                        "base": btc(a.fee),
                        "effective-feerate": btc(modified * 1000 / a.vsize.max(1)),
                        "effective-includes": [wtxid.to_string()],
                    });
                }
            }
            Err(r) => {
                v["allowed"] = false.into();
                if r.reason == "bad-txns-inputs-missingorspent" {
                    v["reject-reason"] = "missing-inputs".into();
                } else {
                    v["reject-reason"] = r.reason.clone().into();
                    v["reject-details"] = state(&r).into();
                }
                done = true;
            }
        }
        out.push(v);
    }
    cs.mempool.rollback(cp);
    Value::Array(out)
}

/// Why a fee-only refusal may still pass with the package's fee rate.
fn fee_only(r: &Reject) -> bool {
    matches!(
        r.reason.as_str(),
        "min relay fee not met" | "mempool min fee not met"
    )
}

/// `submitpackage`: a child with its unconfirmed parents. Each enters on its own merits; those
/// refused only for their fee enter on the fee rate of the package they form with the child
/// (CPFP), or none of them does. Accepted transactions are relayed like any others.
pub fn submitpackage(
    cs: &mut ChainState,
    txs: Vec<Transaction>,
    max_fee_rate: u64,
    now: i64,
) -> Result<Value, RpcError> {
    if malformed(&txs).is_some() || !child_with_parents(&txs) {
        return Err(RpcError::new(
            code::VERIFY_ERROR,
            "package topology disallowed. not child-with-parents or parents depend on each other.",
        ));
    }
    let floor = cs.mempool.min_fee(now).max(MIN_RELAY_FEE);
    let cp = cs.mempool.checkpoint();
    let mut results: Vec<Result<Option<Txid>, Reject>> = Vec::new();
    let mut deferred = Vec::new();
    let mut replaced = Vec::new();
    for tx in &txs {
        let txid = tx.compute_txid();
        if cs.mempool.get(&txid).is_some() {
            results.push(Ok(None));
            continue;
        }
        let mut outcome = cs.mempool_offer(tx.clone(), max_fee_rate, now, true);
        if outcome.as_ref().is_err_and(fee_only) {
            // Its child may pay for it: judged with the package's fee rate below.
            outcome = cs.mempool_offer(tx.clone(), max_fee_rate, now, false);
            if outcome.is_ok() {
                deferred.push(txid);
            }
        }
        match outcome {
            Ok(a) => {
                replaced.extend(a.replaced);
                results.push(Ok(Some(txid)));
            }
            Err(r) => results.push(Err(r)),
        }
    }
    // The package the low-fee transactions form with the child (last), if any were deferred.
    let child = txs.last().map(|t| t.compute_txid());
    let mut cpfp: Vec<Txid> = deferred.clone();
    if !deferred.is_empty() {
        cpfp.extend(child.filter(|c| !deferred.contains(c)));
    }
    let (pkg_fee, pkg_vsize) = cpfp
        .iter()
        .filter_map(|t| cs.mempool.get(t))
        .fold((0u64, 0u64), |(f, v), e| (f + e.modified, v + e.vsize));
    let pkg_rate = pkg_fee * 1000 / pkg_vsize.max(1);
    let failed = results.iter().any(|r| r.is_err());
    let too_cheap = !deferred.is_empty() && pkg_rate < floor;
    // What the package's entries show, read before a rollback could take them away.
    let shown: Vec<Option<(u64, u64)>> = txs
        .iter()
        .map(|t| cs.mempool.get(&t.compute_txid()).map(|e| (e.vsize, e.fee)))
        .collect();
    let mut tx_results = serde_json::Map::new();
    let msg = if failed || too_cheap {
        cs.mempool.rollback(cp);
        "transaction failed"
    } else {
        cs.mempool.commit();
        "success"
    };
    let package_wtxids: Vec<String> = txs
        .iter()
        .filter(|t| cpfp.contains(&t.compute_txid()))
        .map(|t| t.compute_wtxid().to_string())
        .collect();
    for ((tx, result), shown) in txs.iter().zip(&results).zip(&shown) {
        let txid = tx.compute_txid();
        let mut v = json!({ "txid": txid.to_string() });
        match (result, shown) {
            (Err(r), _) => v["error"] = state(r).into(),
            (Ok(_), _) if too_cheap && deferred.contains(&txid) => {
                v["error"] =
                    format!("min relay fee not met, package fee rate {pkg_rate} < {floor} sat/kvB")
                        .into()
            }
            (Ok(_), _) if failed || too_cheap => v["error"] = "unevaluated".into(),
            (Ok(fresh), Some((vsize, fee))) => {
                v["vsize"] = (*vsize).into();
                v["fees"] = json!({ "base": btc(*fee) });
                if fresh.is_some() {
                    let (rate, includes) = if cpfp.contains(&txid) {
                        (pkg_rate, package_wtxids.clone())
                    } else {
                        (
                            fee * 1000 / (*vsize).max(1),
                            vec![tx.compute_wtxid().to_string()],
                        )
                    };
                    v["fees"]["effective-feerate"] = btc(rate).into();
                    v["fees"]["effective-includes"] = includes.into();
                }
            }
            (Ok(_), None) => v["error"] = "unevaluated".into(),
        }
        tx_results.insert(tx.compute_wtxid().to_string(), v);
    }
    let replaced: Vec<String> = if msg == "success" {
        replaced.iter().map(|t| t.to_string()).collect()
    } else {
        Vec::new()
    };
    Ok(json!({
        "package_msg": msg,
        "tx-results": tx_results,
        "replaced-transactions": replaced,
    }))
}

/// Core's `IsChildWithParents`: the last transaction spends every other one, and none of the
/// others spends another.
fn child_with_parents(txs: &[Transaction]) -> bool {
    let Some((child, parents)) = txs.split_last() else {
        return false;
    };
    let spent: HashSet<Txid> = child.input.iter().map(|i| i.previous_output.txid).collect();
    let ids: HashSet<Txid> = parents.iter().map(|t| t.compute_txid()).collect();
    parents.iter().all(|p| spent.contains(&p.compute_txid()))
        && parents.iter().all(|p| {
            p.input
                .iter()
                .all(|i| !ids.contains(&i.previous_output.txid))
        })
}
