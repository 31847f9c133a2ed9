//! Where corruption found anywhere in stored data is recorded: counted by kind, logged once per
//! place, and kept for health until the node restarts. Readers report into it (the block files
//! source, the start-up check); the writer turns it into the storage status, metrics count it.

use bitcoin::BlockHash;
use parking_lot::Mutex;
use prometheus::IntCounterVec;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::OnceLock;

/// Why a damaged record could not be rebuilt where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// Data it needs could not be read (that damage is recorded and repaired on its own).
    #[error("{0}")]
    Fault(String),
    /// Data it needs is beyond the reach of a repair in place (older than the blocks scanned,
    /// pruned, or a damaged key that names nothing): a reindex rebuilds it.
    #[error("{0}: a reindex rebuilds it")]
    NeedsReindex(String),
    /// The record does not matter any more (its block left the active chain).
    #[error("{0}")]
    Moot(String),
}

/// Kinds of damage, the label values of `bllvm_corruption_detected_total`.
pub const KINDS: [&str; 5] = ["block", "undo", "coin", "index", "block_file"];

/// The record of what was found.
#[derive(Default)]
pub struct Integrity {
    seen: Mutex<HashSet<String>>,
    /// Findings not repaired yet, in the order found (key -> description).
    open: Mutex<BTreeMap<u64, (String, String)>>,
    next: std::sync::atomic::AtomicU64,
    /// Blocks whose record is corrupt, to fetch again from a peer.
    refetch: Mutex<BTreeSet<BlockHash>>,
    /// Blocks whose undo record is corrupt, to rebuild.
    rebuild_undo: Mutex<BTreeSet<BlockHash>>,
    /// Coins whose record is corrupt, to rebuild.
    rebuild_coin: Mutex<BTreeSet<bitcoin::OutPoint>>,
    counter: OnceLock<IntCounterVec>,
}

impl Integrity {
    /// Counts into `counter` from now on (set once metrics exist; earlier findings are added).
    pub fn attach(&self, counter: IntCounterVec) {
        for what in self.seen.lock().iter() {
            if let Some(kind) = what.split(':').next() {
                counter.with_label_values(&[kind]).inc();
            }
        }
        let _ = self.counter.set(counter);
    }

    /// Records damage of `kind` (one of [`KINDS`]) described by `detail`; logged and counted
    /// the first time it is seen.
    pub fn found(&self, kind: &'static str, detail: &str) {
        let key = format!("{kind}:{detail}");
        if !self.seen.lock().insert(key) {
            return;
        }
        log::error!(kind = kind; "corruption detected ({kind}): {detail}");
        if let Some(c) = self.counter.get() {
            c.with_label_values(&[kind]).inc();
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open
            .lock()
            .insert(n, (detail.to_owned(), format!("{kind}: {detail}")));
    }

    /// A corrupt block record: recorded as damage and queued to be fetched again.
    pub fn corrupt_block(&self, hash: BlockHash, detail: &str) {
        self.found("block", detail);
        self.refetch.lock().insert(hash);
    }

    /// A corrupt undo record: recorded as damage and queued to be rebuilt.
    pub fn corrupt_undo(&self, hash: BlockHash, detail: &str) {
        self.found("undo", detail);
        self.rebuild_undo.lock().insert(hash);
    }

    /// A corrupt coin record: recorded as damage and queued to be rebuilt.
    pub fn corrupt_coin(&self, op: bitcoin::OutPoint, detail: &str) {
        self.found("coin", detail);
        self.rebuild_coin.lock().insert(op);
    }

    /// Coins queued to be rebuilt since the last call.
    pub fn take_rebuild_coin(&self) -> Vec<bitcoin::OutPoint> {
        std::mem::take(&mut *self.rebuild_coin.lock())
            .into_iter()
            .collect()
    }

    /// Blocks whose undo data is queued to be rebuilt since the last call.
    pub fn take_rebuild_undo(&self) -> Vec<BlockHash> {
        std::mem::take(&mut *self.rebuild_undo.lock())
            .into_iter()
            .collect()
    }

    /// Blocks queued to be fetched again since the last call.
    pub fn take_refetch(&self) -> Vec<BlockHash> {
        std::mem::take(&mut *self.refetch.lock())
            .into_iter()
            .collect()
    }

    /// The damage naming `what` (a block hash, a file) was repaired: it no longer counts for
    /// health. Counts and logs stay.
    pub fn repaired(&self, what: &str) {
        let mut open = self.open.lock();
        let fixed: Vec<u64> = open
            .iter()
            .filter(|(_, (detail, _))| detail.contains(what))
            .map(|(n, _)| *n)
            .collect();
        for n in fixed {
            if let Some((_, d)) = open.remove(&n) {
                log::info!("repaired: {d}");
            }
        }
    }

    /// The latest finding not repaired yet, for health.
    pub fn last(&self) -> Option<String> {
        self.open.lock().values().last().map(|(_, d)| d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_is_counted_once() {
        let i = Integrity::default();
        i.found("block", "blk00000.dat missing");
        let c = IntCounterVec::new(prometheus::Opts::new("x", "x"), &["kind"]).unwrap();
        i.attach(c.clone());
        i.found("block", "blk00000.dat missing");
        i.found("undo", "rev00001.dat at 8 fails its checksum");
        assert_eq!(c.with_label_values(&["block"]).get(), 1);
        assert_eq!(c.with_label_values(&["undo"]).get(), 1);
        assert_eq!(
            i.last().as_deref(),
            Some("undo: rev00001.dat at 8 fails its checksum")
        );
        i.repaired("rev00001.dat");
        assert_eq!(i.last().as_deref(), Some("block: blk00000.dat missing"));
        i.repaired("blk00000.dat");
        assert_eq!(i.last(), None);
    }
}
