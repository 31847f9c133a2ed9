//! Relayed transactions whose parents we have not seen yet (Core's orphanage): bounded in
//! count, size and age, oldest out; when a parent enters the pool its orphans are tried again.

use crate::messages::PeerId;
use bitcoin::{Transaction, Txid, Weight};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Orphans held at most (Core's DEFAULT_MAX_ORPHAN_TRANSACTIONS).
pub const MAX_ORPHANS: usize = 100;
/// Orphans heavier than a standard transaction are not kept (Core's MAX_STANDARD_TX_WEIGHT).
pub const MAX_ORPHAN_WEIGHT: Weight = Weight::from_wu(400_000);
/// An orphan whose parents never come leaves after 20 minutes (ORPHAN_TX_EXPIRE_TIME).
pub const ORPHAN_EXPIRY_SECS: i64 = 20 * 60;

#[derive(Debug)]
struct Orphan {
    tx: Arc<Transaction>,
    from: PeerId,
    expires: i64,
    bytes: usize,
}

/// The orphan pool.
#[derive(Debug, Default)]
pub struct Orphans {
    by_txid: HashMap<Txid, Orphan>,
    /// Orphans spending each missing parent.
    by_parent: HashMap<Txid, BTreeSet<Txid>>,
    /// Arrival order, oldest first (entries already gone are skipped).
    order: VecDeque<Txid>,
    bytes: usize,
}

impl Orphans {
    /// Orphans held.
    pub fn len(&self) -> usize {
        self.by_txid.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.by_txid.is_empty()
    }

    /// Bytes of their transactions plus bookkeeping (a metric).
    pub fn usage(&self) -> usize {
        self.bytes
    }

    /// Whether `txid` is held.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.by_txid.contains_key(txid)
    }

    /// Keeps `tx` from `from` until its `parents` arrive; the oldest goes beyond the bound.
    /// False (not kept) when too heavy or already held.
    pub fn add(&mut self, tx: Transaction, from: PeerId, parents: &[Txid], now: i64) -> bool {
        let txid = tx.compute_txid();
        if tx.weight() > MAX_ORPHAN_WEIGHT || self.by_txid.contains_key(&txid) {
            return false;
        }
        for p in parents {
            self.by_parent.entry(*p).or_default().insert(txid);
        }
        let bytes = tx.total_size() + 200 + 40 * parents.len();
        self.bytes += bytes;
        self.by_txid.insert(
            txid,
            Orphan {
                tx: Arc::new(tx),
                from,
                expires: now + ORPHAN_EXPIRY_SECS,
                bytes,
            },
        );
        self.order.push_back(txid);
        while self.by_txid.len() > MAX_ORPHANS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.remove(&old);
        }
        true
    }

    fn remove(&mut self, txid: &Txid) -> Option<Orphan> {
        let o = self.by_txid.remove(txid)?;
        self.bytes -= o.bytes;
        for i in &o.tx.input {
            let parent = i.previous_output.txid;
            if let Some(set) = self.by_parent.get_mut(&parent) {
                set.remove(txid);
                if set.is_empty() {
                    self.by_parent.remove(&parent);
                }
            }
        }
        if self.order.len() > 2 * MAX_ORPHANS {
            let held = &self.by_txid;
            self.order.retain(|t| held.contains_key(t));
        }
        Some(o)
    }

    /// The orphans spending `parent`'s outputs, taken out to be tried again, with their senders.
    pub fn children_of(&mut self, parent: &Txid) -> Vec<(Arc<Transaction>, PeerId)> {
        let Some(kids) = self.by_parent.remove(parent) else {
            return Vec::new();
        };
        kids.iter()
            .filter_map(|k| self.remove(k))
            .map(|o| (o.tx, o.from))
            .collect()
    }

    /// Drops orphans past their expiry, and those a block confirmed or made double spends.
    pub fn sweep(&mut self, now: i64, block: &[Transaction]) -> usize {
        let spent: BTreeSet<bitcoin::OutPoint> = block
            .iter()
            .flat_map(|t| t.input.iter().map(|i| i.previous_output))
            .collect();
        let mined: BTreeSet<Txid> = block.iter().map(|t| t.compute_txid()).collect();
        let gone: Vec<Txid> = self
            .by_txid
            .iter()
            .filter(|(t, o)| {
                o.expires <= now
                    || mined.contains(*t)
                    || o.tx
                        .input
                        .iter()
                        .any(|i| spent.contains(&i.previous_output))
            })
            .map(|(t, _)| *t)
            .collect();
        gone.iter().filter(|t| self.remove(t).is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, TxIn, TxOut};

    fn tx(parent: Txid, n: u32) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(parent, n),
                ..Default::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    fn parent(n: u8) -> Txid {
        use bitcoin::hashes::Hash;
        Txid::from_byte_array([n; 32])
    }

    #[test]
    fn the_oldest_orphan_goes_beyond_the_bound_and_children_come_back_with_their_sender() {
        let mut o = Orphans::default();
        let first = tx(parent(1), 0);
        assert!(o.add(first.clone(), 7, &[parent(1)], 0));
        assert!(!o.add(first.clone(), 7, &[parent(1)], 0), "held already");
        for n in 1..=MAX_ORPHANS as u32 {
            assert!(o.add(tx(parent(2), n), 8, &[parent(2)], 0));
        }
        assert_eq!(o.len(), MAX_ORPHANS);
        assert!(!o.contains(&first.compute_txid()), "oldest out");
        assert!(o.children_of(&parent(1)).is_empty());
        let back = o.children_of(&parent(2));
        assert_eq!(back.len(), MAX_ORPHANS);
        assert!(back.iter().all(|(_, from)| *from == 8));
        assert!(o.is_empty());
        assert_eq!(o.usage(), 0);
    }

    #[test]
    fn orphans_expire_and_leave_when_a_block_spends_their_inputs() {
        let mut o = Orphans::default();
        let a = tx(parent(1), 0);
        let b = tx(parent(2), 0);
        o.add(a.clone(), 1, &[parent(1)], 0);
        o.add(b.clone(), 1, &[parent(2)], 100);
        // A block spends a's input another way.
        assert_eq!(o.sweep(10, &[tx(parent(1), 0)]), 1);
        assert!(!o.contains(&a.compute_txid()));
        assert_eq!(o.sweep(100 + ORPHAN_EXPIRY_SECS - 1, &[]), 0);
        assert_eq!(o.sweep(100 + ORPHAN_EXPIRY_SECS, &[]), 1);
        assert!(o.is_empty());
    }
}
