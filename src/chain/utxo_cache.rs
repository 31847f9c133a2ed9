//! The UTXO set as the chain thread sees it: a bounded cache of coins over the store's
//! committed set. Changes are stamped with a generation; once the writer has committed a
//! generation its entries are clean and may be evicted when the cache is over budget.

use super::reject::StorageFault;
use super::utxo::{BlockChanges, Coin, UtxoView};
use crate::storage::Flow;
use bitcoin::OutPoint;
use std::collections::HashMap;
use std::sync::Arc;

/// The committed coins below the cache (the store).
pub trait CoinSource: Send + Sync {
    /// The committed coin at `op`; a fault when the store cannot be read or the record is bad.
    fn coin(&self, op: &OutPoint) -> Result<Option<Coin>, StorageFault>;
    /// Every committed coin, until `f` breaks.
    fn for_each_coin(&self, f: &mut dyn FnMut(OutPoint, Coin) -> Flow) -> Result<(), StorageFault>;
}

#[derive(Debug, Clone)]
struct Slot {
    /// `None`: spent (a deletion not yet known to be committed).
    coin: Option<Coin>,
    /// Generation of the last change; 0 for coins read from the store.
    gen: u64,
}

/// Rough heap cost of a cached coin: key, slot, script, map overhead.
fn slot_bytes(slot: &Slot) -> usize {
    112 + slot
        .coin
        .as_ref()
        .map_or(0, |c| c.output.script_pubkey.len())
}

/// The cache. Without a source it holds the whole set and never evicts.
pub struct UtxoCache {
    slots: HashMap<OutPoint, Slot>,
    source: Option<Arc<dyn CoinSource>>,
    gen: u64,
    committed: u64,
    bytes: usize,
    budget: usize,
    count: u64,
}

impl UtxoCache {
    /// An in-memory set (tests, references).
    pub fn in_memory() -> UtxoCache {
        UtxoCache {
            slots: HashMap::new(),
            source: None,
            gen: 1,
            committed: 0,
            bytes: 0,
            budget: usize::MAX,
            count: 0,
        }
    }

    /// A cache over `source` holding `count` coins, using at most about `budget` bytes.
    pub fn backed(source: Arc<dyn CoinSource>, count: u64, budget: usize) -> UtxoCache {
        UtxoCache {
            source: Some(source),
            count,
            budget,
            ..UtxoCache::in_memory()
        }
    }

    /// Sets the memory budget.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    /// The coin at `op`: cache first, then the store.
    pub fn get(&self, op: &OutPoint) -> Result<Option<Coin>, StorageFault> {
        match (self.slots.get(op), &self.source) {
            (Some(slot), _) => Ok(slot.coin.clone()),
            (None, Some(source)) => source.coin(op),
            (None, None) => Ok(None),
        }
    }

    /// Reads the coins a block will spend into the cache (one pass before connecting it).
    pub fn prefetch(
        &mut self,
        ops: impl IntoIterator<Item = OutPoint>,
    ) -> Result<(), StorageFault> {
        let Some(source) = self.source.clone() else {
            return Ok(());
        };
        for op in ops {
            if self.slots.contains_key(&op) {
                continue;
            }
            if let Some(coin) = source.coin(&op)? {
                self.put(
                    op,
                    Slot {
                        coin: Some(coin),
                        gen: 0,
                    },
                );
            }
        }
        Ok(())
    }

    fn put(&mut self, op: OutPoint, slot: Slot) {
        self.bytes += slot_bytes(&slot);
        if let Some(old) = self.slots.insert(op, slot) {
            self.bytes -= slot_bytes(&old);
        }
    }

    fn set(&mut self, op: OutPoint, coin: Option<Coin>) {
        if coin.is_none() && self.source.is_none() {
            // Nothing below to hide: a spent coin simply leaves the set.
            if let Some(old) = self.slots.remove(&op) {
                self.bytes -= slot_bytes(&old);
            }
            return;
        }
        let gen = self.gen;
        self.put(op, Slot { coin, gen });
    }

    /// Applies a connected block's changes.
    pub fn apply(&mut self, changes: &BlockChanges) {
        for (op, _) in &changes.spent {
            self.set(*op, None);
        }
        for (op, coin) in &changes.created {
            self.set(*op, Some(coin.clone()));
        }
        self.count = self.count + changes.created.len() as u64 - changes.spent.len() as u64;
        self.trim();
    }

    /// Puts back a coin whose stored record was damaged (rebuilt from its block): served from
    /// the cache until the writer has stored it again. The set's size does not change.
    pub fn repair(&mut self, op: OutPoint, coin: Coin) {
        self.set(op, Some(coin));
    }

    /// Reverts a disconnected block's changes.
    pub fn revert(&mut self, changes: &BlockChanges) {
        for (op, _) in &changes.created {
            self.set(*op, None);
        }
        for (op, coin) in changes.spent.iter().rev() {
            self.set(*op, Some(coin.clone()));
        }
        self.count = self.count + changes.spent.len() as u64 - changes.created.len() as u64;
        self.trim();
    }

    /// Unspent outputs in the set.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Approximate heap bytes of the cache.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    /// Closes the current generation (its changes go into one persistence job) and returns it.
    pub fn seal(&mut self) -> u64 {
        self.gen += 1;
        self.gen - 1
    }

    /// Records that generation `gen` is durable, then evicts clean entries while over budget.
    pub fn committed(&mut self, gen: u64) {
        self.committed = self.committed.max(gen);
        self.trim();
    }

    /// True while the cache holds more than its budget (only uncommitted entries can keep it
    /// there: clean ones are evicted first).
    pub fn over_budget(&self) -> bool {
        self.bytes > self.budget
    }

    /// Evicts clean entries, tombstones first, down to 90% of the budget once over it. Dirty
    /// entries stay until the writer has committed them.
    fn trim(&mut self) {
        if self.source.is_none() || self.bytes <= self.budget {
            return;
        }
        let target = self.budget / 10 * 9;
        let committed = self.committed;
        let mut freed = 0usize;
        let over = self.bytes - target;
        // Tombstones first (they only hide a deletion the store already has), then coins.
        for tombstones in [true, false] {
            self.slots.retain(|_, s| {
                if freed >= over || s.gen > committed || s.coin.is_none() != tombstones {
                    return true;
                }
                freed += slot_bytes(s);
                false
            });
        }
        self.bytes -= freed;
        // The table keeps its peak capacity otherwise, and that is memory too.
        if self.slots.capacity() > 4 * self.slots.len() + 1024 {
            self.slots.shrink_to(2 * self.slots.len());
        }
    }

    /// Every coin of the set: the store's, with the cache's newer state laid over it. `stop` is
    /// asked every 4,096 coins, the store scan included; `Ok(false)` when it stopped the walk.
    pub fn for_each(
        &self,
        stop: &dyn Fn() -> bool,
        f: &mut dyn FnMut(&OutPoint, &Coin),
    ) -> Result<bool, StorageFault> {
        let mut n = 0usize;
        let mut tick = || {
            n += 1;
            n % 4096 == 0 && stop()
        };
        match &self.source {
            None => {
                for (op, s) in &self.slots {
                    if let Some(c) = &s.coin {
                        if tick() {
                            return Ok(false);
                        }
                        f(op, c);
                    }
                }
            }
            Some(source) => {
                let mut all: HashMap<OutPoint, Coin> = HashMap::new();
                let mut stopped = false;
                source.for_each_coin(&mut |op, c| {
                    all.insert(op, c);
                    if tick() {
                        stopped = true;
                        return Flow::Break(());
                    }
                    Flow::Continue(())
                })?;
                if stopped {
                    return Ok(false);
                }
                for (op, s) in &self.slots {
                    match &s.coin {
                        Some(c) => {
                            all.insert(*op, c.clone());
                        }
                        None => {
                            all.remove(op);
                        }
                    }
                }
                for (op, c) in &all {
                    if tick() {
                        return Ok(false);
                    }
                    f(op, c);
                }
            }
        }
        Ok(true)
    }
}

impl UtxoView for UtxoCache {
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StorageFault> {
        self.get(outpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, ScriptBuf, TxOut, Txid};
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Store(Mutex<HashMap<OutPoint, Coin>>);

    impl CoinSource for Store {
        fn coin(&self, op: &OutPoint) -> Result<Option<Coin>, StorageFault> {
            Ok(self.0.lock().get(op).cloned())
        }
        fn for_each_coin(
            &self,
            f: &mut dyn FnMut(OutPoint, Coin) -> Flow,
        ) -> Result<(), StorageFault> {
            for (op, c) in self.0.lock().iter() {
                if f(*op, c.clone()).is_break() {
                    return Ok(());
                }
            }
            Ok(())
        }
    }

    fn coin(v: u64) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_sat(v),
                script_pubkey: ScriptBuf::from_bytes(vec![0x51; 20]),
            },
            height: 1,
            coinbase: false,
        }
    }

    fn op(n: u8) -> OutPoint {
        OutPoint::new(Txid::from_byte_array([n; 32]), 0)
    }

    /// A walk told to stop stops inside the store scan, not after reading the whole set.
    #[test]
    fn a_stopped_walk_ends_the_store_scan_early() {
        let store = Arc::new(Store::default());
        for n in 0..20_000u32 {
            let mut txid = [0u8; 32];
            txid[..4].copy_from_slice(&n.to_le_bytes());
            store
                .0
                .lock()
                .insert(OutPoint::new(Txid::from_byte_array(txid), 0), coin(1));
        }
        let cache = UtxoCache::backed(store.clone(), 0, 0);
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() >= 2
        };
        let mut seen = 0;
        assert!(!cache.for_each(&stop, &mut |_, _| seen += 1).unwrap());
        assert_eq!(
            (asked.get(), seen),
            (2, 0),
            "stopped at 8,192 of 20,000 stored coins"
        );
        let mut all = 0;
        assert!(cache.for_each(&|| false, &mut |_, _| all += 1).unwrap());
        assert_eq!(all, 20_000);
    }

    #[test]
    fn dirty_entries_survive_eviction_until_committed() {
        let store = Arc::new(Store::default());
        let mut cache = UtxoCache::backed(store.clone(), 0, 0);
        let created: Vec<_> = (1..=50).map(|n| (op(n), coin(u64::from(n)))).collect();
        cache.apply(&BlockChanges {
            created: created.clone(),
            spent: vec![],
            fees: 0,
        });
        let g = cache.seal();
        // Not yet committed: over budget, but nothing may go.
        cache.committed(g - 1);
        assert_eq!(cache.slots.len(), 50);
        assert_eq!(cache.get(&op(7)).unwrap().unwrap(), coin(7));
        // The writer commits generation g: the store has the coins, the cache may drop them.
        store.0.lock().extend(created);
        cache.committed(g);
        assert!(cache.slots.is_empty());
        assert_eq!(
            cache.get(&op(7)).unwrap().unwrap(),
            coin(7),
            "served from the store now"
        );
        assert_eq!(cache.len(), 50);
    }

    /// The set grows to 40 times the budget; once each generation is committed the cache is
    /// back under budget, and every coin is still found (in the cache or the store).
    #[test]
    fn the_cache_stays_within_budget_while_the_set_grows_past_it() {
        let store = Arc::new(Store::default());
        let budget = 100 * 132;
        let mut cache = UtxoCache::backed(store.clone(), 0, budget);
        let mut all = Vec::new();
        for round in 0..40u32 {
            let created: Vec<_> = (0..100u32)
                .map(|i| {
                    let mut txid = [0u8; 32];
                    txid[..4].copy_from_slice(&(round * 100 + i).to_le_bytes());
                    (OutPoint::new(Txid::from_byte_array(txid), 0), coin(1))
                })
                .collect();
            cache.apply(&BlockChanges {
                created: created.clone(),
                spent: vec![],
                fees: 0,
            });
            let g = cache.seal();
            store.0.lock().extend(created.iter().cloned());
            all.extend(created);
            cache.committed(g);
            assert!(
                cache.memory_bytes() <= budget,
                "round {round}: {} bytes over a budget of {budget}",
                cache.memory_bytes()
            );
        }
        assert_eq!(cache.len(), 4_000);
        assert!(all
            .iter()
            .all(|(op, c)| cache.get(op).unwrap().as_ref() == Some(c)));
    }

    #[test]
    fn a_spend_hides_the_stored_coin_until_the_store_forgets_it() {
        let store = Arc::new(Store::default());
        store.0.lock().insert(op(1), coin(1));
        let mut cache = UtxoCache::backed(store.clone(), 1, usize::MAX);
        cache.prefetch([op(1), op(2)]).unwrap();
        let spent = BlockChanges {
            created: vec![],
            spent: vec![(op(1), coin(1))],
            fees: 0,
        };
        cache.apply(&spent);
        assert!(cache.get(&op(1)).unwrap().is_none());
        let mut n = 0;
        cache.for_each(&|| false, &mut |_, _| n += 1).unwrap();
        assert_eq!((n, cache.len()), (0, 0));
        cache.revert(&spent);
        assert_eq!(cache.get(&op(1)).unwrap().unwrap(), coin(1));
        assert_eq!(cache.len(), 1);
    }
}
