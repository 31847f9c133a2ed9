//! Which pool transactions go into a block: Bitcoin Core's ancestor-feerate selection
//! (`BlockAssembler::addPackageTxs`). The best package (a transaction with its ancestors not yet
//! in the block) goes in whole, parents first, while it fits the weight and sigop limits;
//! packages change as their ancestors go in, so scores are recomputed when they are taken.

use super::pool::Pool;
use bitcoin::{Transaction, Txid};
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::sync::Arc;

/// Block weight left for transactions: Core's 4,000,000 less its 4,000 reserved for the coinbase.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000 - 4_000;
/// Signature operation cost left for transactions: 80,000 less the coinbase's 400.
pub const MAX_BLOCK_SIGOPS: u64 = 80_000 - 400;
/// Packages that did not fit, in a row, before a nearly full block is called done (Core's
/// MAX_CONSECUTIVE_FAILURES).
const MAX_CONSECUTIVE_FAILURES: usize = 1000;

/// What the block takes.
#[derive(Debug, Default)]
pub struct Selected {
    /// Transactions, every parent before its children.
    pub txs: Vec<Arc<Transaction>>,
    /// Their fees.
    pub fees: u64,
    /// Their weight.
    pub weight: u64,
    /// Their sigop cost.
    pub sigops: u64,
}

/// A package's fee and size, ordered by feerate (exact, by cross-multiplication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Score {
    fee: u64,
    vsize: u64,
}

impl Ord for Score {
    fn cmp(&self, o: &Score) -> Ordering {
        (u128::from(self.fee) * u128::from(o.vsize))
            .cmp(&(u128::from(o.fee) * u128::from(self.vsize)))
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Score) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A package not yet in the block: its members (parents first), score, weight and sigops.
struct Package {
    members: Vec<Txid>,
    score: Score,
    weight: u64,
    sigops: u64,
}

fn package(pool: &Pool, txid: &Txid, taken: &HashSet<Txid>) -> Package {
    let mut members: Vec<(usize, Txid)> = pool
        .ancestors(txid)
        .into_iter()
        .chain(std::iter::once(*txid))
        .filter(|t| !taken.contains(t))
        .map(|t| (pool.get(&t).map_or(0, |e| e.with_ancestors.count), t))
        .collect();
    // Fewer ancestors first: every parent before its children.
    members.sort();
    let mut p = Package {
        members: Vec::with_capacity(members.len()),
        score: Score { fee: 0, vsize: 0 },
        weight: 0,
        sigops: 0,
    };
    for (_, t) in members {
        if let Some(e) = pool.get(&t) {
            p.score.fee += e.modified;
            p.score.vsize += e.vsize;
            p.weight += e.tx.weight().to_wu();
            p.sigops += e.sigops;
            p.members.push(t);
        }
    }
    p
}

/// The best packages of `pool` within `max_weight` and `max_sigops`; `is_final` says whether a
/// transaction may be in the block being built.
pub fn select(
    pool: &Pool,
    max_weight: u64,
    max_sigops: u64,
    is_final: impl Fn(&Transaction) -> bool,
) -> Selected {
    // Before anything is taken, a package is the entry with its ancestors: the pool keeps that.
    let mut heap: BinaryHeap<(Score, std::cmp::Reverse<Txid>)> = pool
        .iter()
        .map(|(t, e)| {
            let a = e.with_ancestors;
            let score = Score {
                fee: a.fee,
                vsize: a.vsize,
            };
            (score, std::cmp::Reverse(*t))
        })
        .collect();
    let mut taken: HashSet<Txid> = HashSet::new();
    let mut failed: HashSet<Txid> = HashSet::new();
    let mut out = Selected::default();
    let mut failures = 0;
    while let Some((stored, std::cmp::Reverse(txid))) = heap.pop() {
        if taken.contains(&txid) || failed.contains(&txid) {
            continue;
        }
        let p = package(pool, &txid, &taken);
        if p.score != stored {
            // Stale: an ancestor went in since it was scored.
            heap.push((p.score, std::cmp::Reverse(txid)));
            continue;
        }
        let fits = out.weight + p.weight <= max_weight
            && out.sigops + p.sigops <= max_sigops
            && p.members
                .iter()
                .all(|t| !failed.contains(t) && pool.get(t).is_some_and(|e| is_final(&e.tx)));
        if !fits {
            failed.insert(txid);
            failures += 1;
            if failures > MAX_CONSECUTIVE_FAILURES && out.weight + 4_000 > max_weight {
                break;
            }
            continue;
        }
        failures = 0;
        let mut children = BTreeSet::new();
        for t in &p.members {
            let e = pool.get(t).expect("members are held");
            taken.insert(*t);
            out.txs.push(e.tx.clone());
            children.extend(e.children.iter().copied());
        }
        out.fees += p.score.fee;
        out.weight += p.weight;
        out.sigops += p.sigops;
        // Their descendants' packages shrank: score them again.
        for c in children.iter().filter(|c| !taken.contains(*c)) {
            heap.push((package(pool, c, &taken).score, std::cmp::Reverse(*c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, TxIn, TxOut};

    fn tx(inputs: &[OutPoint], tag: u8) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    ..Default::default()
                })
                .collect(),
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::from_bytes(vec![0x6a, tag]),
            }],
        }
    }

    fn confirmed(n: u8) -> OutPoint {
        use bitcoin::hashes::Hash;
        OutPoint::new(Txid::from_byte_array([n; 32]), 0)
    }

    fn ids(s: &Selected) -> Vec<Txid> {
        s.txs.iter().map(|t| t.compute_txid()).collect()
    }

    #[test]
    fn a_child_paying_for_its_parent_lifts_the_package_above_a_middling_transaction() {
        let mut pool = Pool::default();
        let parent = tx(&[confirmed(1)], 1);
        let child = tx(&[OutPoint::new(parent.compute_txid(), 0)], 2);
        let middle = tx(&[confirmed(2)], 3);
        let v = parent.vsize() as u64;
        pool.add(parent.clone(), v, 0, 0, 1).unwrap(); // 1 sat/vB
        pool.add(child.clone(), 20 * v, 0, 0, 1).unwrap(); // 20 sat/vB
        pool.add(middle.clone(), 5 * v, 0, 0, 1).unwrap(); // 5 sat/vB
        let all = select(&pool, MAX_BLOCK_WEIGHT, MAX_BLOCK_SIGOPS, |_| true);
        // The package (21 v over 2 v: 10.5 sat/vB) first, parent before child.
        assert_eq!(
            ids(&all),
            [
                parent.compute_txid(),
                child.compute_txid(),
                middle.compute_txid()
            ]
        );
        assert_eq!(all.fees, 26 * v);
        // Room for one transaction only: the package cannot go, the middling one does.
        let one = parent.weight().to_wu();
        let s = select(&pool, one, MAX_BLOCK_SIGOPS, |_| true);
        assert_eq!(ids(&s), [middle.compute_txid()]);
    }

    #[test]
    fn sigop_limits_and_finality_keep_transactions_out() {
        let mut pool = Pool::default();
        let heavy = tx(&[confirmed(1)], 1);
        let light = tx(&[confirmed(2)], 2);
        let late = tx(&[confirmed(3)], 3);
        pool.add(heavy.clone(), 10_000, 70_000, 0, 1).unwrap();
        pool.add(light.clone(), 1_000, 20_000, 0, 1).unwrap();
        pool.add(late.clone(), 9_000, 0, 0, 1).unwrap();
        let late_id = late.compute_txid();
        let s = select(&pool, MAX_BLOCK_WEIGHT, MAX_BLOCK_SIGOPS, |t| {
            t.compute_txid() != late_id
        });
        assert_eq!(ids(&s), [heavy.compute_txid()]);
        assert_eq!(s.sigops, 70_000);
    }
}
