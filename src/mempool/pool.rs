//! The mempool's contents as a plain data structure: entries with their in-pool parents and
//! children, the outpoints they spend, Core's package limits, eviction of the lowest
//! descendant feerate when over the size budget with the rolling minimum fee it leaves
//! behind, removal for blocks (with conflicts) and expiry. Time is passed in. Validation
//! (scripts, policy, fees against the UTXO set) happens before `add`.

use crate::chain::reject::Reject;
use bitcoin::{OutPoint, Transaction, Txid, Wtxid};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Ancestors a transaction may have in the pool, itself included (Core's -limitancestorcount).
pub const MAX_ANCESTORS: usize = 25;
/// Their total virtual size (Core's -limitancestorsize, 101 kvB).
pub const MAX_ANCESTOR_VSIZE: u64 = 101_000;
/// Descendants any in-pool transaction may have, itself included (-limitdescendantcount).
pub const MAX_DESCENDANTS: usize = 25;
/// Their total virtual size (-limitdescendantsize).
pub const MAX_DESCENDANT_VSIZE: u64 = 101_000;
/// Core's default `minrelaytxfee`, sat/kvB (1 sat/vB).
pub const MIN_RELAY_FEE: u64 = 1_000;
/// Memory the pool may use by default (`[mempool] max_mb` = 100): a third of Core's 300 MB,
/// for the small machines this node runs on; it still holds tens of thousands of typical
/// transactions, several blocks' worth.
pub const DEFAULT_MAX_USAGE: usize = 100 * 1000 * 1000;
/// Transactions leave after two weeks unconfirmed (Core's -mempoolexpiry, 336 hours).
pub const DEFAULT_EXPIRY_SECS: i64 = 336 * 3600;
/// Core's incremental relay fee, sat/kvB: what an eviction adds to the minimum fee.
pub const INCREMENTAL_RELAY_FEE: u64 = 1_000;
/// Core's rolling minimum fee halves every 12 hours (faster while the pool is small).
pub const ROLLING_FEE_HALFLIFE_SECS: i64 = 12 * 3600;
/// Memory per entry beyond the transaction's serialized bytes: the entry in its map, its
/// eviction key, relay's copy of its ids on the P2P thread, the transaction's own structs and
/// allocations. A deliberate overestimate: `usage` must not undercount what `max_mb` bounds
/// (`cargo bench --bench mempool` compares RSS with it: at 400 bytes, and 48 per input and
/// output, a full 50 MB pool of 1-in-1-out payments took 1.64 times its budget; at 1,200 a
/// full 100 MB pool took 1.03 times: the hash maps' spare capacity after they double costs an
/// entry about 1.6 kB in all).
pub const ENTRY_OVERHEAD: usize = 1_700;
/// Memory per input beyond its serialized bytes (the `TxIn`, its witness's allocation, its
/// entry in the map of spent outpoints).
pub const INPUT_OVERHEAD: usize = 120;
/// Memory per output beyond its serialized bytes (the `TxOut` and its script's allocation).
pub const OUTPUT_OVERHEAD: usize = 64;

/// One transaction in the pool.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Arc<Transaction>,
    /// Its witness id.
    pub wtxid: Wtxid,
    /// Fee in satoshis.
    pub fee: u64,
    /// The fee with its `prioritisetransaction` delta: what mining and eviction rank by.
    pub modified: u64,
    /// Virtual size.
    pub vsize: u64,
    /// Unix seconds it entered the pool.
    pub time: i64,
    /// Chain height when it entered.
    pub height: u32,
    /// Signature operation cost (what a block's 80,000 limit counts).
    pub sigops: u64,
    /// In-pool transactions it spends.
    pub parents: BTreeSet<Txid>,
    /// In-pool transactions spending it.
    pub children: BTreeSet<Txid>,
    /// It with its in-pool ancestors (kept up to date as they come and go).
    pub with_ancestors: Totals,
    /// It with its in-pool descendants.
    pub with_descendants: Totals,
    usage: usize,
}

/// A transaction with its in-pool ancestors or descendants: count, virtual size and modified fees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Transactions, itself included.
    pub count: usize,
    /// Their virtual size.
    pub vsize: u64,
    /// Their modified fees.
    pub fee: u64,
}

impl Totals {
    fn plus(self, o: Totals) -> Totals {
        Totals {
            count: self.count + o.count,
            vsize: self.vsize + o.vsize,
            fee: self.fee + o.fee,
        }
    }

    fn minus(self, o: Totals) -> Totals {
        Totals {
            count: self.count.saturating_sub(o.count),
            vsize: self.vsize.saturating_sub(o.vsize),
            fee: self.fee.saturating_sub(o.fee),
        }
    }
}

/// Where an entry sorts for eviction: its descendant package's fee rate (in millisatoshis per
/// vB, fine enough to order by), then its txid.
type ScoreKey = (u64, Txid);

fn score_key(txid: Txid, d: Totals) -> ScoreKey {
    (d.fee.saturating_mul(1_000_000) / d.vsize.max(1), txid)
}

impl Entry {
    /// It alone, as totals.
    fn own(&self) -> Totals {
        Totals {
            count: 1,
            vsize: self.vsize,
            fee: self.modified,
        }
    }

    /// Fee rate in sat/kvB.
    pub fn fee_rate(&self) -> u64 {
        rate(self.fee, self.vsize)
    }
}

fn rate(fee: u64, vsize: u64) -> u64 {
    fee.saturating_mul(1000) / vsize.max(1)
}

/// Why entries left the pool (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Removal {
    /// Mined in a block.
    Block,
    /// Conflicted with a block's transaction.
    Conflict,
    /// Evicted for size.
    SizeLimit,
    /// Older than the expiry.
    Expiry,
    /// Replaced (RBF).
    Replaced,
}

impl Removal {
    /// Every cause.
    pub const ALL: [Removal; 5] = [
        Removal::Block,
        Removal::Conflict,
        Removal::SizeLimit,
        Removal::Expiry,
        Removal::Replaced,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Removal::Block => "block",
            Removal::Conflict => "conflict",
            Removal::SizeLimit => "size_limit",
            Removal::Expiry => "expiry",
            Removal::Replaced => "replaced",
        }
    }
}

/// A change of the pool's contents, in the order it happened (for metrics and relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Entered.
    Added(Txid),
    /// Left, and why.
    Removed(Txid, Removal),
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    entries: HashMap<Txid, Entry>,
    spends: HashMap<OutPoint, Txid>,
    vsize: u64,
    usage: usize,
    fees: u64,
    /// Rolling minimum fee rate (sat/kvB) and when it was last decayed.
    rolling: (f64, i64),
    /// Changes not yet reported.
    events: Vec<Event>,
    max_usage: usize,
    expiry_secs: i64,
    /// False while `mempool.dat` is being loaded (`getmempoolinfo.loaded`).
    loaded: bool,
    /// `prioritisetransaction` deltas, for held transactions and ones yet to come.
    deltas: HashMap<Txid, i64>,
    /// During a trial (`checkpoint`): entries removed since, to put back on `rollback`.
    undo: Option<Vec<Entry>>,
    /// Entries by descendant score, lowest first: what eviction takes.
    by_score: BTreeSet<ScoreKey>,
    /// Counts every entry and exit (`getrawmempool`'s `mempool_sequence`).
    sequence: u64,
}

/// Where a trial started: `Pool::rollback` returns the pool to it.
#[derive(Debug)]
pub struct Checkpoint {
    events: usize,
    rolling: (f64, i64),
    sequence: u64,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::with_limits(DEFAULT_MAX_USAGE, DEFAULT_EXPIRY_SECS)
    }
}

impl Pool {
    /// An empty pool bounded to `max_usage` bytes whose entries expire after `expiry_secs`.
    pub fn with_limits(max_usage: usize, expiry_secs: i64) -> Pool {
        Pool {
            entries: HashMap::new(),
            spends: HashMap::new(),
            vsize: 0,
            usage: 0,
            fees: 0,
            rolling: (0.0, 0),
            events: Vec::new(),
            max_usage,
            expiry_secs,
            loaded: true,
            deltas: HashMap::new(),
            undo: None,
            by_score: BTreeSet::new(),
            sequence: 0,
        }
    }

    /// `fee` with `txid`'s `prioritisetransaction` delta (never below zero).
    pub fn modified_fee(&self, txid: &Txid, fee: u64) -> u64 {
        u64::try_from(i128::from(fee) + i128::from(self.delta(txid))).unwrap_or(0)
    }

    /// Adds `delta` satoshis to what `txid` is ranked as paying, held now or later.
    pub fn prioritise(&mut self, txid: Txid, delta: i64) {
        let d = self.deltas.entry(txid).or_insert(0);
        *d = d.saturating_add(delta);
        if *d == 0 {
            self.deltas.remove(&txid);
        }
        if let Some(e) = self.entries.get(&txid) {
            let (before, after) = (
                e.own(),
                Totals {
                    fee: self.modified_fee(&txid, e.fee),
                    ..e.own()
                },
            );
            // Every package it is part of changes with it.
            self.shift(&txid, before, after);
            if let Some(e) = self.entries.get_mut(&txid) {
                e.modified = after.fee;
            }
        }
    }

    /// `txid` (held) and its relatives' package totals, from counting `before` for it to
    /// counting `after`: its own and its descendants' ancestor totals, its own and its
    /// ancestors' descendant totals (re-keyed for eviction).
    fn shift(&mut self, txid: &Txid, before: Totals, after: Totals) {
        let ancestors = self.ancestors(txid);
        let mut descendants = self.descendants(txid);
        descendants.remove(txid);
        for a in ancestors.iter().chain(std::iter::once(txid)) {
            self.rekey(a, |e| {
                e.with_descendants = e.with_descendants.minus(before).plus(after)
            });
        }
        for d in descendants.iter().chain(std::iter::once(txid)) {
            if let Some(e) = self.entries.get_mut(d) {
                e.with_ancestors = e.with_ancestors.minus(before).plus(after);
            }
        }
    }

    /// Changes an entry's descendant totals, keeping the eviction index in step.
    fn rekey(&mut self, txid: &Txid, change: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.entries.get_mut(txid) {
            self.by_score.remove(&score_key(*txid, e.with_descendants));
            change(e);
            self.by_score.insert(score_key(*txid, e.with_descendants));
        }
    }

    /// `txid`'s `prioritisetransaction` delta (0 when none).
    pub fn delta(&self, txid: &Txid) -> i64 {
        self.deltas.get(txid).copied().unwrap_or(0)
    }

    /// Every delta, held or not (`mempool.dat` keeps them).
    pub fn deltas(&self) -> impl Iterator<Item = (&Txid, &i64)> {
        self.deltas.iter()
    }

    /// Starts a trial: what is added and removed from here on can be undone by `rollback`,
    /// events included (`testmempoolaccept`, a package that fails as a whole).
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.undo = Some(Vec::new());
        Checkpoint {
            events: self.events.len(),
            rolling: self.rolling,
            sequence: self.sequence,
        }
    }

    /// Ends a trial keeping its changes.
    pub fn commit(&mut self) {
        self.undo = None;
    }

    /// Ends a trial returning the pool to its checkpoint: what entered leaves, what left comes
    /// back (parents first), and no event of the trial remains.
    pub fn rollback(&mut self, cp: Checkpoint) {
        let removed = self.undo.take().unwrap_or_default();
        let trial = self.events.split_off(cp.events.min(self.events.len()));
        let added: BTreeSet<Txid> = trial
            .iter()
            .filter_map(|e| match e {
                Event::Added(t) => Some(*t),
                Event::Removed(..) => None,
            })
            .collect();
        for t in self.deepest_first(added.clone()) {
            self.remove_one(&t, Removal::Replaced);
        }
        let mut left: Vec<Entry> = removed
            .into_iter()
            .filter(|e| !added.contains(&e.tx.compute_txid()))
            .collect();
        while !left.is_empty() {
            let waiting: BTreeSet<Txid> = left.iter().map(|e| e.tx.compute_txid()).collect();
            let (ready, rest): (Vec<Entry>, Vec<Entry>) = left.into_iter().partition(|e| {
                e.tx.input
                    .iter()
                    .all(|i| !waiting.contains(&i.previous_output.txid))
            });
            if ready.is_empty() {
                break;
            }
            for e in ready {
                let _ = self.add((*e.tx).clone(), e.fee, e.sigops, e.time, e.height);
            }
            left = rest;
        }
        self.events.truncate(cp.events);
        self.rolling = cp.rolling;
        self.sequence = cp.sequence;
    }

    /// Whether loading `mempool.dat` has finished (or there was nothing to load).
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Marks loading as started (false) or finished (true).
    pub fn set_loaded(&mut self, loaded: bool) {
        self.loaded = loaded;
    }

    /// How long entries stay before they expire, seconds.
    pub fn expiry_secs(&self) -> i64 {
        self.expiry_secs
    }

    /// Every entry, parents before their children (what `mempool.dat` holds, in the order
    /// it can be loaded back).
    pub fn in_dependency_order(&self) -> Vec<&Entry> {
        let mut all: Vec<(usize, &Txid, &Entry)> = self
            .entries
            .iter()
            .map(|(t, e)| (e.with_ancestors.count, t, e))
            .collect();
        all.sort_by_key(|(depth, t, _)| (*depth, **t));
        all.into_iter().map(|(_, _, e)| e).collect()
    }

    /// Entries and exits so far (Core's mempool sequence number).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The memory budget (`getmempoolinfo.maxmempool`).
    pub fn max_usage(&self) -> usize {
        self.max_usage
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total virtual size (`getmempoolinfo.bytes`).
    pub fn vsize(&self) -> u64 {
        self.vsize
    }

    /// Memory accounted (`getmempoolinfo.usage`): what `max_mb` bounds.
    pub fn usage(&self) -> usize {
        self.usage
    }

    /// Total fees.
    pub fn total_fee(&self) -> u64 {
        self.fees
    }

    /// An entry.
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Txid, &Entry)> {
        self.entries.iter()
    }

    /// The in-pool transaction spending `op`, if any.
    pub fn spender(&self, op: &OutPoint) -> Option<Txid> {
        self.spends.get(op).copied()
    }

    /// Changes since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Every in-pool ancestor of the transaction spending `parents` (not itself).
    fn ancestors_of(&self, parents: &BTreeSet<Txid>) -> BTreeSet<Txid> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<Txid> = parents.iter().copied().collect();
        while let Some(t) = todo.pop() {
            if out.insert(t) {
                if let Some(e) = self.entries.get(&t) {
                    todo.extend(e.parents.iter().copied());
                }
            }
        }
        out
    }

    /// Every in-pool ancestor of `txid`.
    pub fn ancestors(&self, txid: &Txid) -> BTreeSet<Txid> {
        self.entries
            .get(txid)
            .map(|e| self.ancestors_of(&e.parents))
            .unwrap_or_default()
    }

    /// `txid` and every in-pool descendant.
    pub fn descendants(&self, txid: &Txid) -> BTreeSet<Txid> {
        let mut out = BTreeSet::new();
        let mut todo = vec![*txid];
        while let Some(t) = todo.pop() {
            if let Some(e) = self.entries.get(&t) {
                if out.insert(t) {
                    todo.extend(e.children.iter().copied());
                }
            }
        }
        out
    }

    /// Modified fees and virtual size of `txid` with its descendants.
    pub fn with_descendants(&self, txid: &Txid) -> (u64, u64) {
        self.entries.get(txid).map_or((0, 0), |e| {
            (e.with_descendants.fee, e.with_descendants.vsize)
        })
    }

    /// The in-pool transactions `tx` spends.
    fn parents_of(&self, tx: &Transaction) -> BTreeSet<Txid> {
        tx.input
            .iter()
            .map(|i| i.previous_output.txid)
            .filter(|t| self.entries.contains_key(t))
            .collect()
    }

    /// Whether `tx` keeps within Core's ancestor and descendant limits (`too-long-mempool-chain`)
    /// once the transactions in `gone` (what it replaces) have left.
    pub fn check_limits(&self, tx: &Transaction, gone: &BTreeSet<Txid>) -> Result<(), Reject> {
        let vsize = tx.vsize() as u64;
        let ancestors: BTreeSet<Txid> = self
            .ancestors_of(&self.parents_of(tx))
            .difference(gone)
            .copied()
            .collect();
        let anc_vsize: u64 = ancestors
            .iter()
            .filter_map(|t| self.entries.get(t))
            .map(|e| e.vsize)
            .sum::<u64>()
            + vsize;
        if ancestors.len() + 1 > MAX_ANCESTORS || anc_vsize > MAX_ANCESTOR_VSIZE {
            return Err(Reject::new(
                "too-long-mempool-chain",
                format!("too many unconfirmed ancestors [limit: {MAX_ANCESTORS}]"),
            ));
        }
        for a in &ancestors {
            let d: Vec<&Entry> = self
                .descendants(a)
                .difference(gone)
                .filter_map(|t| self.entries.get(t))
                .collect();
            let d_vsize: u64 = d.iter().map(|e| e.vsize).sum();
            if d.len() + 1 > MAX_DESCENDANTS || d_vsize + vsize > MAX_DESCENDANT_VSIZE {
                return Err(Reject::new(
                    "too-long-mempool-chain",
                    format!("exceeds descendant limits for {a}"),
                ));
            }
        }
        Ok(())
    }

    /// Adds a validated transaction paying `fee`; refuses it if it would break the package
    /// limits (`check_limits`), and `txn-already-in-mempool` if held.
    pub fn add(
        &mut self,
        tx: Transaction,
        fee: u64,
        sigops: u64,
        time: i64,
        height: u32,
    ) -> Result<(), Reject> {
        let txid = tx.compute_txid();
        if self.entries.contains_key(&txid) {
            return Err(Reject::new("txn-already-in-mempool", txid.to_string()));
        }
        self.check_limits(&tx, &BTreeSet::new())?;
        let parents = self.parents_of(&tx);
        let vsize = tx.vsize() as u64;
        for p in &parents {
            if let Some(e) = self.entries.get_mut(p) {
                e.children.insert(txid);
            }
        }
        for i in &tx.input {
            self.spends.insert(i.previous_output, txid);
        }
        let usage = tx.total_size()
            + ENTRY_OVERHEAD
            + INPUT_OVERHEAD * tx.input.len()
            + OUTPUT_OVERHEAD * tx.output.len();
        self.vsize += vsize;
        self.usage += usage;
        self.fees += fee;
        let wtxid = tx.compute_wtxid();
        self.events.push(Event::Added(txid));
        self.sequence += 1;
        let modified = self.modified_fee(&txid, fee);
        let own = Totals {
            count: 1,
            vsize,
            fee: modified,
        };
        let ancestors = self.ancestors_of(&parents);
        let mut with_ancestors = own;
        for a in &ancestors {
            if let Some(e) = self.entries.get(a) {
                with_ancestors = with_ancestors.plus(e.own());
            }
            self.rekey(a, |e| e.with_descendants = e.with_descendants.plus(own));
        }
        self.by_score.insert(score_key(txid, own));
        self.entries.insert(
            txid,
            Entry {
                tx: Arc::new(tx),
                wtxid,
                fee,
                modified,
                vsize,
                time,
                height,
                sigops,
                parents,
                children: BTreeSet::new(),
                with_ancestors,
                with_descendants: own,
                usage,
            },
        );
        Ok(())
    }

    /// Removes `txid` and its descendants.
    pub fn remove_with_descendants(&mut self, txid: &Txid, why: Removal) -> Vec<Arc<Transaction>> {
        let all = self.deepest_first(self.descendants(txid));
        all.iter().filter_map(|t| self.remove_one(t, why)).collect()
    }

    /// `txids` with every descendant before its ancestors: removed in that order, each removal
    /// still reaches (and updates) all of its ancestors.
    fn deepest_first(&self, txids: BTreeSet<Txid>) -> Vec<Txid> {
        let mut v: Vec<Txid> = txids.into_iter().collect();
        v.sort_by_key(|t| {
            std::cmp::Reverse(self.entries.get(t).map_or(0, |e| e.with_ancestors.count))
        });
        v
    }

    fn remove_one(&mut self, txid: &Txid, why: Removal) -> Option<Arc<Transaction>> {
        let own = self.entries.get(txid)?.own();
        // Its relatives' packages lose it.
        self.shift(txid, own, Totals::default());
        let e = self.entries.remove(txid)?;
        self.by_score.remove(&score_key(*txid, e.with_descendants));
        for p in &e.parents {
            if let Some(pe) = self.entries.get_mut(p) {
                pe.children.remove(txid);
            }
        }
        for c in &e.children {
            if let Some(ce) = self.entries.get_mut(c) {
                ce.parents.remove(txid);
            }
        }
        for i in &e.tx.input {
            if self.spends.get(&i.previous_output) == Some(txid) {
                self.spends.remove(&i.previous_output);
            }
        }
        self.vsize -= e.vsize;
        self.usage -= e.usage;
        self.fees -= e.fee;
        self.events.push(Event::Removed(*txid, why));
        self.sequence += 1;
        let tx = e.tx.clone();
        if let Some(undo) = self.undo.as_mut() {
            undo.push(e);
        }
        Some(tx)
    }

    /// A block connected: its transactions leave (their children stay, now confirmed-parented),
    /// and whatever spent the same outputs leaves with its descendants.
    pub fn remove_for_block(&mut self, txs: &[Transaction]) {
        for tx in txs {
            let txid = tx.compute_txid();
            self.remove_one(&txid, Removal::Block);
            for i in &tx.input {
                if let Some(other) = self.spends.get(&i.previous_output).copied() {
                    if other != txid {
                        self.remove_with_descendants(&other, Removal::Conflict);
                    }
                }
            }
        }
    }

    /// Evicts the package with the lowest descendant feerate until the pool's usage is within
    /// the budget, raising the rolling minimum fee to the evicted feerate plus the
    /// incremental relay fee. Returns how many transactions left.
    pub fn trim(&mut self, now: i64) -> usize {
        let mut gone = 0;
        while self.usage > self.max_usage && !self.entries.is_empty() {
            let Some(&(_, txid)) = self.by_score.first() else {
                break;
            };
            let (f, v) = self.with_descendants(&txid);
            let worst_rate = rate(f, v);
            let floor = (worst_rate + INCREMENTAL_RELAY_FEE) as f64;
            self.decay(now);
            if floor > self.rolling.0 {
                self.rolling = (floor, now);
            }
            gone += self
                .remove_with_descendants(&txid, Removal::SizeLimit)
                .len();
        }
        gone
    }

    /// Core's rolling minimum fee (sat/kvB) at `now`: what eviction raised it to, halving every
    /// 12 hours (every 6 while under half full, 3 under a quarter), and 0 once below half the
    /// incremental relay fee. Records the decay.
    pub fn min_fee(&mut self, now: i64) -> u64 {
        self.decay(now);
        self.min_fee_at(now)
    }

    /// The same, without recording the decay (for readers).
    pub fn min_fee_at(&self, now: i64) -> u64 {
        let fee = self.decayed(now);
        if fee < (INCREMENTAL_RELAY_FEE / 2) as f64 {
            0
        } else {
            fee as u64
        }
    }

    /// What a transaction must pay now, sat/kvB: the rolling minimum, but never below
    /// `minrelaytxfee` (`getmempoolinfo.mempoolminfee`).
    pub fn floor(&self, now: i64) -> u64 {
        self.min_fee_at(now).max(MIN_RELAY_FEE)
    }

    fn decayed(&self, now: i64) -> f64 {
        let (fee, since) = self.rolling;
        if fee == 0.0 || now <= since {
            return fee;
        }
        let mut halflife = ROLLING_FEE_HALFLIFE_SECS as f64;
        if self.usage < self.max_usage / 4 {
            halflife /= 4.0;
        } else if self.usage < self.max_usage / 2 {
            halflife /= 2.0;
        }
        fee / 2f64.powf((now - since) as f64 / halflife)
    }

    fn decay(&mut self, now: i64) {
        self.rolling = (self.decayed(now), now.max(self.rolling.1));
    }

    /// Removes transactions older than the expiry at `now` (unix seconds), with descendants.
    pub fn expire(&mut self, now: i64) -> usize {
        let cutoff = now.saturating_sub(self.expiry_secs);
        let old: Vec<Txid> = self
            .entries
            .iter()
            .filter(|(_, e)| e.time < cutoff)
            .map(|(t, _)| *t)
            .collect();
        old.iter()
            .map(|t| self.remove_with_descendants(t, Removal::Expiry).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, Amount, ScriptBuf, Sequence, TxIn, TxOut, Witness};

    /// A transaction spending `inputs`, with `outputs` outputs; `tag` makes it unique.
    fn tx(inputs: &[OutPoint], outputs: usize, tag: u8) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|op| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::from_slice(&[vec![tag; 72], vec![2u8; 33]]),
                })
                .collect(),
            output: (0..outputs)
                .map(|_| TxOut {
                    value: Amount::from_sat(10_000),
                    script_pubkey: ScriptBuf::new_op_return([tag; 4]),
                })
                .collect(),
        }
    }

    fn confirmed(n: u8) -> OutPoint {
        OutPoint::new(Txid::from_byte_array([n; 32]), 0)
    }

    #[test]
    fn a_chain_longer_than_25_is_refused() {
        let mut pool = Pool::default();
        let mut prev = confirmed(1);
        for i in 0..25u8 {
            let t = tx(&[prev], 1, i);
            prev = OutPoint::new(t.compute_txid(), 0);
            pool.add(t, 1_000, 0, 0, 1).unwrap();
        }
        let err = pool.add(tx(&[prev], 1, 99), 1_000, 0, 0, 1).unwrap_err();
        assert_eq!(err.reason, "too-long-mempool-chain");
        assert_eq!(pool.len(), 25);
        let first = pool
            .iter()
            .find(|(_, e)| e.parents.is_empty())
            .map(|(t, _)| *t)
            .unwrap();
        assert_eq!(pool.descendants(&first).len(), 25);
        let again = pool.get(&first).unwrap().tx.as_ref().clone();
        assert_eq!(
            pool.add(again, 1, 0, 0, 1).unwrap_err().reason,
            "txn-already-in-mempool"
        );
    }

    #[test]
    fn ancestor_and_descendant_limits_each_refuse_on_their_own() {
        let mut pool = Pool::default();
        // 25 unrelated parents and a child of them all: 26 with itself.
        let parents: Vec<OutPoint> = (0..25u8)
            .map(|i| {
                let t = tx(&[confirmed(i)], 1, i);
                let op = OutPoint::new(t.compute_txid(), 0);
                pool.add(t, 1_000, 0, 0, 1).unwrap();
                op
            })
            .collect();
        let err = pool.add(tx(&parents, 1, 200), 1_000, 0, 0, 1).unwrap_err();
        assert!(err.detail.contains("ancestors"), "{err:?}");
        // One parent with 25 outputs: 24 children fit, the 25th makes 26 descendants.
        let mut pool = Pool::default();
        let q = tx(&[confirmed(100)], 25, 100);
        let qid = q.compute_txid();
        pool.add(q, 1_000, 0, 0, 1).unwrap();
        for n in 0..24u32 {
            pool.add(tx(&[OutPoint::new(qid, n)], 1, n as u8), 1_000, 0, 0, 1)
                .unwrap();
        }
        let err = pool
            .add(tx(&[OutPoint::new(qid, 24)], 1, 240), 1_000, 0, 0, 1)
            .unwrap_err();
        assert!(err.detail.contains("descendant"), "{err:?}");
    }

    #[test]
    fn a_block_removes_its_transactions_and_their_conflicts() {
        let mut pool = Pool::default();
        let a = tx(&[confirmed(1)], 1, 1);
        let a_child = tx(&[OutPoint::new(a.compute_txid(), 0)], 1, 2);
        let b = tx(&[confirmed(2)], 1, 3);
        let b_child = tx(&[OutPoint::new(b.compute_txid(), 0)], 1, 4);
        for t in [&a, &a_child, &b, &b_child] {
            pool.add(t.clone(), 1_000, 0, 0, 1).unwrap();
        }
        // The block mines `a` and a different spend of `b`'s input.
        let double = tx(&[confirmed(2)], 2, 5);
        pool.remove_for_block(&[a.clone(), double]);
        let left: Vec<Txid> = pool.iter().map(|(t, _)| *t).collect();
        assert_eq!(left, vec![a_child.compute_txid()]);
        assert!(pool
            .get(&a_child.compute_txid())
            .unwrap()
            .parents
            .is_empty());
        let events = pool.take_events();
        assert!(events.contains(&Event::Removed(b.compute_txid(), Removal::Conflict)));
        assert!(events.contains(&Event::Removed(b_child.compute_txid(), Removal::Conflict)));
        assert!(events.contains(&Event::Removed(a.compute_txid(), Removal::Block)));
        // In order: every entry before its exit.
        let added = events
            .iter()
            .position(|e| *e == Event::Added(a.compute_txid()));
        let mined = events
            .iter()
            .position(|e| *e == Event::Removed(a.compute_txid(), Removal::Block));
        assert!(added < mined, "{events:?}");
        assert_eq!(
            pool.vsize(),
            pool.get(&a_child.compute_txid()).unwrap().vsize
        );
    }

    #[test]
    fn over_budget_the_lowest_descendant_feerate_goes_and_the_minimum_fee_rises_then_decays() {
        let mut pool = Pool::default();
        let cheap = tx(&[confirmed(1)], 1, 1);
        let dear = tx(&[confirmed(2)], 1, 2);
        // A child paying well lifts its cheap parent's package above `mid`.
        let mid = tx(&[confirmed(3)], 1, 3);
        pool.add(cheap.clone(), 200, 0, 0, 1).unwrap();
        pool.add(dear.clone(), 50_000, 0, 0, 1).unwrap();
        pool.add(mid.clone(), 5_000, 0, 0, 1).unwrap();
        pool.max_usage = pool.usage() - 1;
        assert_eq!(pool.trim(100), 1);
        assert!(pool.get(&cheap.compute_txid()).is_none());
        let evicted_rate = rate(200, cheap.vsize() as u64);
        let floor = pool.min_fee(100);
        assert_eq!(floor, evicted_rate + INCREMENTAL_RELAY_FEE);
        // Half a half-life later (the pool is over half full): down by a factor of sqrt(2).
        let later = pool.min_fee(100 + ROLLING_FEE_HALFLIFE_SECS / 2);
        assert!(
            (later as f64 - floor as f64 / 2f64.sqrt()).abs() < 2.0,
            "{later}"
        );
        assert_eq!(pool.min_fee(100 + 30 * ROLLING_FEE_HALFLIFE_SECS), 0);
    }

    #[test]
    fn expiry_takes_old_transactions_with_their_descendants() {
        let mut pool = Pool::with_limits(DEFAULT_MAX_USAGE, 1000);
        let old = tx(&[confirmed(1)], 1, 1);
        let young_child = tx(&[OutPoint::new(old.compute_txid(), 0)], 1, 2);
        let young = tx(&[confirmed(2)], 1, 3);
        pool.add(old, 1_000, 0, 10, 1).unwrap();
        pool.add(young_child, 1_000, 0, 500, 1).unwrap();
        pool.add(young.clone(), 1_000, 0, 500, 1).unwrap();
        assert_eq!(pool.expire(1100), 2);
        assert_eq!(pool.len(), 1);
        assert!(pool.get(&young.compute_txid()).is_some());
        assert_eq!(pool.total_fee(), 1_000);
    }

    #[test]
    fn a_rolled_back_trial_leaves_the_pool_and_its_events_as_they_were() {
        let mut pool = Pool::default();
        let a = tx(&[confirmed(1)], 1, 1);
        let b = tx(&[OutPoint::new(a.compute_txid(), 0)], 1, 2);
        pool.add(a.clone(), 1_000, 0, 0, 1).unwrap();
        pool.add(b.clone(), 2_000, 0, 0, 1).unwrap();
        pool.take_events();
        let (vsize, usage, fees) = (pool.vsize(), pool.usage(), pool.total_fee());
        let cp = pool.checkpoint();
        // A replacement of a (and so of b), and another transaction.
        pool.remove_with_descendants(&a.compute_txid(), Removal::Replaced);
        let x = tx(&[confirmed(1)], 2, 3);
        pool.add(x.clone(), 9_000, 0, 0, 1).unwrap();
        pool.rollback(cp);
        assert!(pool.get(&x.compute_txid()).is_none());
        let b_entry = pool.get(&b.compute_txid()).expect("b is back");
        assert!(
            b_entry.parents.contains(&a.compute_txid()),
            "linked to its parent again"
        );
        assert!(pool
            .get(&a.compute_txid())
            .unwrap()
            .children
            .contains(&b.compute_txid()));
        assert_eq!(
            (pool.vsize(), pool.usage(), pool.total_fee()),
            (vsize, usage, fees)
        );
        assert!(
            pool.take_events().is_empty(),
            "nothing of the trial is reported"
        );
        assert_eq!(pool.spender(&confirmed(1)), Some(a.compute_txid()));
    }

    #[test]
    fn prioritised_fees_rank_entries_held_now_and_later() {
        let mut pool = Pool::default();
        let a = tx(&[confirmed(1)], 1, 1);
        let later = tx(&[confirmed(2)], 1, 2);
        pool.add(a.clone(), 1_000, 0, 0, 1).unwrap();
        pool.prioritise(a.compute_txid(), 5_000);
        pool.prioritise(later.compute_txid(), -400);
        assert_eq!(pool.get(&a.compute_txid()).unwrap().modified, 6_000);
        pool.add(later.clone(), 1_000, 0, 0, 1).unwrap();
        assert_eq!(pool.get(&later.compute_txid()).unwrap().modified, 600);
        assert_eq!(pool.with_descendants(&a.compute_txid()).0, 6_000);
        // Never below zero.
        pool.prioritise(later.compute_txid(), -10_000);
        assert_eq!(pool.get(&later.compute_txid()).unwrap().modified, 0);
        assert_eq!(pool.deltas().count(), 2);
    }

    /// The cached package totals and the eviction index agree with a count from scratch.
    fn assert_totals(pool: &Pool) {
        let mut keys = BTreeSet::new();
        for (t, e) in pool.iter() {
            let sum = |set: BTreeSet<Txid>| {
                set.iter()
                    .filter_map(|x| pool.get(x))
                    .fold(Totals::default(), |acc, x| acc.plus(x.own()))
            };
            let mut anc = pool.ancestors(t);
            anc.insert(*t);
            assert_eq!(e.with_ancestors, sum(anc), "ancestors of {t}");
            assert_eq!(
                e.with_descendants,
                sum(pool.descendants(t)),
                "descendants of {t}"
            );
            keys.insert(score_key(*t, e.with_descendants));
        }
        assert_eq!(pool.by_score, keys);
    }

    #[test]
    fn package_totals_stay_exact_through_adds_removals_blocks_trials_and_deltas() {
        let mut pool = Pool::default();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut coins: Vec<OutPoint> = (0..40).map(confirmed).collect();
        for round in 0..400u32 {
            let held: Vec<Txid> = pool.iter().map(|(t, _)| *t).collect();
            match next() % 10 {
                // Spend one or two outputs, confirmed or in the pool.
                0..=5 if !coins.is_empty() => {
                    let a = coins.swap_remove((next() % coins.len() as u64) as usize);
                    let mut ins = vec![a];
                    if next() % 3 == 0 && !coins.is_empty() {
                        ins.push(coins.swap_remove((next() % coins.len() as u64) as usize));
                    }
                    let t = tx(&ins, 2, round as u8);
                    let id = t.compute_txid();
                    if pool.add(t, 500 + next() % 5_000, 0, 0, 1).is_ok() {
                        coins.extend([OutPoint::new(id, 0), OutPoint::new(id, 1)]);
                    } else {
                        coins.extend(ins);
                    }
                }
                6 if !held.is_empty() => {
                    let t = held[(next() % held.len() as u64) as usize];
                    pool.remove_with_descendants(&t, Removal::Replaced);
                }
                7 if !held.is_empty() => {
                    // A block mining one transaction whose parents are all confirmed.
                    if let Some(e) = held
                        .iter()
                        .filter_map(|t| pool.get(t))
                        .find(|e| e.parents.is_empty())
                    {
                        let mined = (*e.tx).clone();
                        pool.remove_for_block(&[mined]);
                    }
                }
                8 if !held.is_empty() => {
                    let t = held[(next() % held.len() as u64) as usize];
                    pool.prioritise(t, (next() % 4_000) as i64 - 1_000);
                }
                _ => {
                    let cp = pool.checkpoint();
                    if let Some(t) = held.first() {
                        pool.remove_with_descendants(t, Removal::Replaced);
                    }
                    pool.rollback(cp);
                }
            }
            assert_totals(&pool);
        }
        assert!(pool.len() > 5, "the walk built a pool worth checking");
        pool.max_usage = pool.usage() / 2;
        pool.trim(0);
        assert_totals(&pool);
    }
}
