//! The chain state: header tree, block data, active chain and UTXO set, and the
//! activation of the most-work valid chain (reorganising when needed). Plain logic:
//! every change is also returned as an [`Update`] for the storage writer to persist.

use super::block_check::{check_block, contextual_check_block};
use super::header_tree::{HeaderTree, Validity};
use super::integrity::RepairError;
use super::mining::{build_block, grind, Template};
use super::params::Params;
use super::pow::next_work_required;
use super::reject::{Reject, RejectKind, StorageFault};
use super::utxo::{connect_block, BlockChanges, Coin, ConnectContext};
use super::utxo_cache::{CoinSource, UtxoCache};
use crate::messages::{MempoolDelta, PeerId};
use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::{Block, BlockHash, OutPoint, ScriptBuf, Transaction, Txid, Work};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A change to the active chain, in the order it happened.
#[derive(Debug, Clone)]
pub enum Update {
    /// A block became the tip.
    Connected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// UTXO changes, also its undo data.
        changes: BlockChanges,
    },
    /// The tip was disconnected.
    Disconnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Its undo data, as reverted (the writer applies it to the store).
        changes: BlockChanges,
    },
}

/// What happened to a submitted block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Valid and now on the active chain.
    Active,
    /// Stored on a branch with less work (Core's submitblock says "inconclusive").
    SideBranch,
    /// Already known.
    Duplicate,
}

/// `getchaintips`' status of a branch tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TipStatus {
    /// The active tip.
    Active,
    /// A fully validated branch that is not active.
    ValidFork,
    /// All blocks stored but not validated.
    ValidHeaders,
    /// Some blocks missing.
    HeadersOnly,
    /// Contains an invalid block.
    Invalid,
}

/// One branch tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// Tip height.
    pub height: u32,
    /// Tip hash.
    pub hash: BlockHash,
    /// Blocks from the fork point with the active chain (0 for the active tip).
    pub branch_len: u32,
    /// Status.
    pub status: TipStatus,
}

/// UTXO set summary (`gettxoutsetinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoStats {
    /// Unspent outputs.
    pub count: u64,
    /// Their total value in satoshis.
    pub total: u64,
    /// Core's hash_serialized_3 construction over the set (see docs/architecture.md).
    pub hash: sha256d::Hash,
}

/// Where block and undo data live once they are no longer kept in memory (the block files).
pub trait BlockSource: Send + Sync {
    /// A stored block: `None` when not stored (or pruned), a fault when unreadable or corrupt.
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageFault>;
    /// The undo data of a connected block, likewise.
    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockChanges>, StorageFault>;
    /// A stored block's bytes as stored, checked but not decoded (`getblock` 0 and 1).
    fn raw_block(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<super::raw_block::RawBlock>, StorageFault> {
        Ok(self
            .block(hash)?
            .map(|b| super::raw_block::RawBlock::of(&b)))
    }
    /// A stored block's transaction count, without reading the block (`nTx`).
    fn tx_count(&self, hash: &BlockHash) -> Result<Option<usize>, StorageFault> {
        Ok(self.block(hash)?.map(|b| b.txdata.len()))
    }
}

/// Where a block's data is, for a reader on another thread: the chain thread looks it up,
/// the RPC worker reads and formats it.
pub enum BlockAccess {
    /// Not yet written: a copy.
    Memory(Block),
    /// In the block files, read through the source.
    Stored(Arc<dyn BlockSource>),
}

impl BlockAccess {
    /// The decoded block, checked; `None` if pruned meanwhile.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageFault> {
        match self {
            BlockAccess::Memory(b) => Ok(Some(b.clone())),
            BlockAccess::Stored(s) => s.block(hash),
        }
    }

    /// The serialized block, checked; `None` if pruned meanwhile.
    pub fn raw(
        &self,
        hash: &BlockHash,
    ) -> Result<Option<super::raw_block::RawBlock>, StorageFault> {
        match self {
            BlockAccess::Memory(b) => Ok(Some(super::raw_block::RawBlock::of(b))),
            BlockAccess::Stored(s) => s.raw_block(hash),
        }
    }
}

/// The chain state: index and UTXO set in memory, block data in memory until persisted.
pub struct ChainState {
    tree: HeaderTree,
    active: Vec<BlockHash>,
    blocks: HashMap<BlockHash, Block>,
    undo: HashMap<BlockHash, BlockChanges>,
    utxo: UtxoCache,
    /// Stored blocks whose branch down to the active chain is all stored, most work first, then
    /// first received: Core's setBlockIndexCandidates. Those no better than the tip are dropped
    /// as the tip passes them, so it holds about the download window.
    candidates: BTreeSet<(Reverse<Work>, u64, BlockHash)>,
    /// Stored blocks waiting for an ancestor's data, by parent (Core's mapBlocksUnlinked).
    unlinked: HashMap<BlockHash, Vec<BlockHash>>,
    next_arrival: u64,
    /// Scripts of this block's ancestors are not checked (Core's assumevalid).
    pub assume_valid: Option<BlockHash>,
    /// Transactions of disconnected blocks, returned to the mempool once activation ends.
    disconnected_txs: Vec<Transaction>,
    /// The mempool: validated against this state, emptied of what blocks confirm.
    pub mempool: crate::mempool::pool::Pool,
    /// Relayed transactions waiting for their parents.
    pub orphans: crate::mempool::orphans::Orphans,
    /// Reasons of mempool refusals not yet counted (a metric label each).
    pub mempool_refusals: Vec<&'static str>,
    /// What confirmed how fast, for `estimatesmartfee`.
    pub fee_estimator: crate::mempool::estimator::Estimator,
    source: Option<Arc<dyn BlockSource>>,
    new_blocks: Vec<BlockHash>,
    /// The storage fault that stopped block connection, until an activation succeeds again.
    fault: Option<StorageFault>,
    /// Changes made by a submission that then failed (a reorg that met an invalid block or a
    /// fault): they must still be persisted, and `persist::prepare` takes them.
    unreported: Vec<Update>,
    /// Stored blocks found corrupt, asked of peers again (height, hash).
    refetching: BTreeSet<(u32, BlockHash)>,
    /// Undo data rebuilt in memory, to be written again.
    rebuilt_undo: Vec<(BlockHash, BlockChanges)>,
    /// Coins rebuilt from their blocks, to be written again.
    repaired_coins: Vec<(OutPoint, Coin)>,
}

impl ChainState {
    /// A chain holding only the genesis block (whose coinbase is unspendable, as in Core).
    pub fn new(params: Params) -> ChainState {
        let genesis = params.genesis.clone();
        let hash = genesis.block_hash();
        let mut blocks = HashMap::new();
        blocks.insert(hash, genesis);
        let mut undo = HashMap::new();
        undo.insert(hash, BlockChanges::default());
        ChainState {
            tree: HeaderTree::new(params),
            active: vec![hash],
            blocks,
            undo,
            utxo: UtxoCache::in_memory(),
            candidates: BTreeSet::new(),
            unlinked: HashMap::new(),
            next_arrival: 0,
            assume_valid: None,
            disconnected_txs: Vec::new(),
            mempool: crate::mempool::pool::Pool::default(),
            orphans: Default::default(),
            mempool_refusals: Vec::new(),
            fee_estimator: Default::default(),
            source: None,
            new_blocks: Vec::new(),
            fault: None,
            unreported: Vec::new(),
            refetching: BTreeSet::new(),
            rebuilt_undo: Vec::new(),
            repaired_coins: Vec::new(),
        }
    }

    /// A chain state rebuilt from persisted parts: the tree, the active chain (genesis first),
    /// and the source of block data and committed coins (`utxo_count` of them).
    pub fn from_parts<S: BlockSource + CoinSource + 'static>(
        tree: HeaderTree,
        active: Vec<BlockHash>,
        source: Arc<S>,
        utxo_count: u64,
    ) -> ChainState {
        let mut cs = ChainState {
            tree,
            active,
            blocks: HashMap::new(),
            undo: HashMap::new(),
            utxo: UtxoCache::backed(source.clone(), utxo_count, usize::MAX),
            candidates: BTreeSet::new(),
            unlinked: HashMap::new(),
            next_arrival: 0,
            assume_valid: None,
            disconnected_txs: Vec::new(),
            mempool: crate::mempool::pool::Pool::default(),
            orphans: Default::default(),
            mempool_refusals: Vec::new(),
            fee_estimator: Default::default(),
            source: Some(source),
            new_blocks: Vec::new(),
            fault: None,
            unreported: Vec::new(),
            refetching: BTreeSet::new(),
            rebuilt_undo: Vec::new(),
            repaired_coins: Vec::new(),
        };
        // Blocks stored but not connected before the restart are candidates again.
        cs.rebuild_candidates();
        cs
    }

    /// Takes a block's data as stored without validation (genesis when bootstrapping a store).
    pub fn adopt_block(&mut self, block: Block) {
        let hash = block.block_hash();
        self.blocks.insert(hash, block);
        self.new_blocks.push(hash);
    }

    /// Blocks stored since the last call (to be written to the block files).
    pub fn take_new_blocks(&mut self) -> Vec<BlockHash> {
        std::mem::take(&mut self.new_blocks)
    }

    /// A stored block was found corrupt: its data counts as missing, so the next valid copy a
    /// peer sends is stored (appended; the index then names it) instead of being a duplicate.
    pub fn refetch(&mut self, hash: &BlockHash) {
        if let Some(e) = self.tree.get(hash) {
            let height = e.height;
            self.blocks.remove(hash);
            self.tree.clear_have_data(hash);
            self.refetching.insert((height, *hash));
        }
    }

    /// Rebuilds the undo data of active block `hash` whose record was damaged: the coins it
    /// spent are found in the active blocks at most `max_scan` below it, and connecting the
    /// block over just those coins (scripts were checked when it first connected) gives exactly
    /// the changes it made. Kept in memory and written again by the next persistence job.
    pub fn rebuild_undo(&mut self, hash: &BlockHash, max_scan: u32) -> Result<(), RepairError> {
        let height = self
            .tree
            .get(hash)
            .ok_or_else(|| RepairError::Moot("unknown block".into()))?
            .height;
        if self.active.get(height as usize) != Some(hash) {
            return Err(RepairError::Moot("not on the active chain".into()));
        }
        let block = self
            .load_block(hash)
            .map_err(|f| RepairError::Fault(f.to_string()))?
            .ok_or_else(|| RepairError::NeedsReindex("its block data is not stored".into()))?;
        let here: std::collections::HashSet<Txid> =
            block.txdata.iter().map(|t| t.compute_txid()).collect();
        let mut needed: HashMap<Txid, Vec<u32>> = HashMap::new();
        for tx in block.txdata.iter().skip(1) {
            for i in &tx.input {
                if !here.contains(&i.previous_output.txid) {
                    needed
                        .entry(i.previous_output.txid)
                        .or_default()
                        .push(i.previous_output.vout);
                }
            }
        }
        let view = self.coins_created(needed, height, max_scan)?;
        let tree = &self.tree;
        let prev = block.header.prev_blockhash;
        let mtp_at = |h: u32| {
            tree.ancestor(&prev, h)
                .map(|(a, _)| tree.median_time_past(&a))
                .unwrap_or(0)
        };
        let ctx = ConnectContext {
            params: tree.params(),
            height,
            prev_mtp: tree.median_time_past(&prev),
            mtp_at: &mtp_at,
            verify_scripts: false,
        };
        let changes = connect_block(&block, &ctx, &view)
            .map_err(|r| RepairError::NeedsReindex(format!("it does not connect again: {r}")))?;
        self.undo.insert(*hash, changes.clone());
        self.rebuilt_undo.push((*hash, changes));
        Ok(())
    }

    /// Rebuilds an unspent coin whose stored record was damaged: the transaction that created
    /// it is found in the active blocks at most `max_scan` below the tip, and the coin (output,
    /// height, coinbase flag) is put back in the cache and written again by the next job.
    pub fn rebuild_coin(&mut self, op: &OutPoint, max_scan: u32) -> Result<(), RepairError> {
        let needed = HashMap::from([(op.txid, vec![op.vout])]);
        let tip = self.tip().1;
        let coin = self
            .coins_created(needed, tip + 1, max_scan)?
            .remove(op)
            .ok_or_else(|| {
                RepairError::NeedsReindex("its transaction has no such output".into())
            })?;
        self.utxo.repair(*op, coin.clone());
        self.repaired_coins.push((*op, coin));
        Ok(())
    }

    /// The coins the outputs `needed` (by transaction) were when created, found in the active
    /// blocks from just below `below` down, at most `max_scan` of them: how damaged undo data
    /// and coin records are rebuilt without a transaction index.
    fn coins_created(
        &self,
        mut needed: HashMap<Txid, Vec<u32>>,
        below: u32,
        max_scan: u32,
    ) -> Result<HashMap<OutPoint, Coin>, RepairError> {
        let mut found = HashMap::new();
        let mut h = below;
        while !needed.is_empty() && h > 0 && below - h < max_scan {
            h -= 1;
            let hash = self.active[h as usize];
            let block = self
                .load_block(&hash)
                .map_err(|f| RepairError::Fault(f.to_string()))?
                .ok_or_else(|| {
                    RepairError::NeedsReindex(format!("block {hash} at {h} is not stored"))
                })?;
            for (n, tx) in block.txdata.iter().enumerate() {
                let txid = tx.compute_txid();
                let Some(vouts) = needed.remove(&txid) else {
                    continue;
                };
                for v in vouts {
                    let output = tx
                        .output
                        .get(v as usize)
                        .cloned()
                        .ok_or_else(|| RepairError::NeedsReindex("no such output".into()))?;
                    let coin = Coin {
                        output,
                        height: h,
                        coinbase: n == 0,
                    };
                    found.insert(OutPoint::new(txid, v), coin);
                }
            }
        }
        match needed.len() {
            0 => Ok(found),
            n => Err(RepairError::NeedsReindex(format!(
                "{n} transaction(s) it needs are not in the {} blocks below",
                below - h
            ))),
        }
    }

    /// Coins rebuilt since the last call, to write again.
    pub fn take_repaired_coins(&mut self) -> Vec<(OutPoint, Coin)> {
        std::mem::take(&mut self.repaired_coins)
    }

    /// Undo data rebuilt since the last call, to write again.
    pub fn take_rebuilt_undo(&mut self) -> Vec<(BlockHash, BlockChanges)> {
        std::mem::take(&mut self.rebuilt_undo)
    }

    /// Blocks being fetched again, lowest first.
    pub fn refetching(&self) -> impl Iterator<Item = &(u32, BlockHash)> {
        self.refetching.iter()
    }

    /// Changes made by submissions that failed after changing the chain, since the last call.
    pub fn take_unreported(&mut self) -> Vec<Update> {
        std::mem::take(&mut self.unreported)
    }

    /// Index entries changed since the last call.
    pub fn take_dirty_entries(&mut self) -> Vec<BlockHash> {
        self.tree.take_dirty()
    }

    /// Drops in-memory copies of block and undo data that the source now holds.
    pub fn evict(&mut self, hashes: &[BlockHash]) {
        if self.source.is_some() {
            for h in hashes {
                self.blocks.remove(h);
                self.undo.remove(h);
            }
        }
    }

    /// Unspent outputs in the set.
    pub fn utxo_count(&self) -> u64 {
        self.utxo.len()
    }

    /// Approximate bytes held by the UTXO cache.
    pub fn utxo_cache_bytes(&self) -> usize {
        self.utxo.memory_bytes()
    }

    /// Memory budget of the UTXO cache (`dbcache_mb`).
    pub fn set_utxo_budget(&mut self, bytes: usize) {
        self.utxo.set_budget(bytes);
    }

    /// Closes the UTXO changes of the next persistence job; see [`UtxoCache::seal`].
    pub fn seal_utxo_generation(&mut self) -> u64 {
        self.utxo.seal()
    }

    /// True while the UTXO cache is over its budget with entries the writer has not committed.
    pub fn utxo_over_budget(&self) -> bool {
        self.utxo.over_budget()
    }

    /// The writer committed UTXO generation `gen`: its entries may leave the cache.
    pub fn utxo_committed(&mut self, gen: u64) {
        self.utxo.committed(gen);
    }

    /// The active chain, genesis first.
    pub fn active(&self) -> &[BlockHash] {
        &self.active
    }

    /// Block data from memory or the source.
    pub fn load_block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageFault> {
        match (self.blocks.get(hash), &self.source) {
            (Some(b), _) => Ok(Some(b.clone())),
            (None, Some(source)) => source.block(hash),
            (None, None) => Ok(None),
        }
    }

    /// Undo data from memory or the source.
    pub fn load_undo(&self, hash: &BlockHash) -> Result<Option<BlockChanges>, StorageFault> {
        match (self.undo.get(hash), &self.source) {
            (Some(u), _) => Ok(Some(u.clone())),
            (None, Some(source)) => source.undo(hash),
            (None, None) => Ok(None),
        }
    }

    /// The storage fault that stopped block connection, if one has and no activation has
    /// succeeded since.
    pub fn fault(&self) -> Option<&StorageFault> {
        self.fault.as_ref()
    }

    /// The rules.
    pub fn params(&self) -> &Params {
        self.tree.params()
    }

    /// The header tree.
    pub fn tree(&self) -> &HeaderTree {
        &self.tree
    }

    /// The active tip's hash and height.
    pub fn tip(&self) -> (BlockHash, u32) {
        (
            self.active[self.active.len() - 1],
            (self.active.len() - 1) as u32,
        )
    }

    /// The active block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active.get(height as usize).copied()
    }

    /// Where `hash`'s block data is, for reading off the chain thread (as `load_block`, whose
    /// read then says whether it is stored, pruned or damaged); `None` without block files.
    pub fn block_access(&self, hash: &BlockHash) -> Option<BlockAccess> {
        match self.blocks.get(hash) {
            Some(b) => Some(BlockAccess::Memory(b.clone())),
            None => self.source.clone().map(BlockAccess::Stored),
        }
    }

    /// A stored block's transaction count (Core's `nTx`) without reading the block; `None`
    /// when not stored, pruned or unreadable (logged).
    pub fn tx_count(&self, hash: &BlockHash) -> Option<usize> {
        if let Some(b) = self.blocks.get(hash) {
            return Some(b.txdata.len());
        }
        let source = self.source.as_ref()?;
        source.tx_count(hash).unwrap_or_else(|f| {
            log::error!("storage fault: {f}");
            None
        })
    }

    /// Stored block data; `None` when not stored, pruned or unreadable (the fault is logged:
    /// callers that must tell these apart use [`ChainState::load_block`]).
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.load_block(hash).unwrap_or_else(|f| {
            log::error!("storage fault: {f}");
            None
        })
    }

    /// An unspent output; `None` also when the store cannot be read (logged: callers that must
    /// tell these apart use [`ChainState::read_coin`]).
    pub fn coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.read_coin(outpoint).unwrap_or_else(|f| {
            log::error!("storage fault: {f}");
            None
        })
    }

    /// An unspent output, or the fault that kept the store from saying.
    pub fn read_coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StorageFault> {
        self.utxo.get(outpoint)
    }

    /// Validates a header and records it (headers-first sync).
    pub fn accept_header(
        &mut self,
        header: &bitcoin::block::Header,
        now: i64,
    ) -> Result<BlockHash, Reject> {
        self.tree.accept(header, now)
    }

    /// Validates `block`, stores it and activates the best chain.
    pub fn submit_block(
        &mut self,
        block: Block,
        now: i64,
    ) -> Result<(Submitted, Vec<Update>), Reject> {
        let hash = block.block_hash();
        if let Some(e) = self.tree.get(&hash) {
            if e.have_data && e.is_ok() {
                return Ok((Submitted::Duplicate, Vec::new()));
            }
        }
        self.tree.accept(&block.header, now)?;
        let params = self.tree.params().clone();
        let height = self.tree.get(&hash).map(|e| e.height).unwrap_or(0);
        let prev_mtp = self.tree.median_time_past(&block.header.prev_blockhash);
        let checked = check_block(&block, &params, true)
            .and_then(|_| contextual_check_block(&block, &params, height, prev_mtp));
        if let Err(r) = checked {
            if r.is_consensus() {
                self.tree.mark_invalid(&hash, &r.reason);
            }
            return Err(r);
        }
        self.blocks.insert(hash, block);
        self.new_blocks.push(hash);
        self.tree.set_have_data(&hash);
        self.refetching.retain(|(_, h)| *h != hash);
        self.link(hash);
        let updates = self.activate();
        match &self.tree.get(&hash).map(|e| e.validity.clone()) {
            Some(Validity::Invalid(reason)) => {
                self.unreported.extend(updates);
                Err(Reject::new(
                    reason.clone(),
                    format!("block {hash} failed to connect"),
                ))
            }
            _ if self.active.get(height as usize) == Some(&hash) => {
                Ok((Submitted::Active, updates))
            }
            // Stored, but a storage fault stopped the chain short of it: said as our fault.
            _ => match self.fault.clone() {
                Some(f) => {
                    self.unreported.extend(updates);
                    Err(Reject::local(
                        "storage-fault",
                        format!("block {hash} stored, not connected: {f}"),
                    ))
                }
                None => Ok((Submitted::SideBranch, updates)),
            },
        }
    }

    /// The branch (from just above the fork) of the best candidate tip with more work than the
    /// active tip, all stored and not known invalid; candidates no better than the tip, or found
    /// invalid, are dropped.
    fn best_candidate_branch(&mut self) -> Option<Vec<BlockHash>> {
        let tip_work = self.tree.get(&self.tip().0)?.chain_work;
        while let Some(&(Reverse(work), _, hash)) = self.candidates.first() {
            if work > tip_work {
                if let Some(path) = self.branch_to_active(&hash) {
                    return Some(path);
                }
            }
            self.candidates.pop_first();
        }
        None
    }

    /// Whether `hash` and every block below it down to the active chain are stored.
    fn all_stored(&self, hash: &BlockHash) -> bool {
        let mut h = *hash;
        loop {
            let Some(e) = self.tree.get(&h) else {
                return false;
            };
            if self.active.get(e.height as usize) == Some(&h) {
                return true;
            }
            if !e.have_data {
                return false;
            }
            h = e.header.prev_blockhash;
        }
    }

    /// A block's data was stored: it becomes a candidate if everything below it is stored, and
    /// so do the stored blocks that were waiting for it; otherwise it waits for its parent.
    fn link(&mut self, hash: BlockHash) {
        let Some(parent) = self.tree.get(&hash).map(|e| e.header.prev_blockhash) else {
            return;
        };
        if !self.all_stored(&parent) {
            self.unlinked.entry(parent).or_default().push(hash);
            return;
        }
        let mut ready = vec![hash];
        while let Some(h) = ready.pop() {
            if let Some(e) = self.tree.get(&h).filter(|e| e.is_ok()) {
                self.candidates
                    .insert((Reverse(e.chain_work), self.next_arrival, h));
                self.next_arrival += 1;
            }
            ready.extend(self.unlinked.remove(&h).unwrap_or_default());
        }
    }

    /// Finds the candidates again by a scan of the tree: after a restart and after
    /// `invalidateblock`/`reconsiderblock`, which can lower the tip or revive branches.
    fn rebuild_candidates(&mut self) {
        self.candidates.clear();
        self.unlinked.clear();
        let stored: Vec<BlockHash> = self
            .tree
            .iter()
            .filter(|(h, e)| e.have_data && self.active.get(e.height as usize) != Some(*h))
            .map(|(h, _)| *h)
            .collect();
        for h in stored {
            self.link(h);
        }
    }

    /// Hashes from just above the fork with the active chain up to `tip`, if all are stored and ok.
    fn branch_to_active(&self, tip: &BlockHash) -> Option<Vec<BlockHash>> {
        let mut path = Vec::new();
        let mut h = *tip;
        loop {
            let e = self.tree.get(&h)?;
            if self.active.get(e.height as usize) == Some(&h) {
                break;
            }
            if !e.is_ok() || !e.have_data {
                return None;
            }
            path.push(h);
            h = e.header.prev_blockhash;
        }
        path.reverse();
        Some(path)
    }

    /// Moves the active chain to the most-work valid stored branch. A storage fault stops it
    /// where it is (nothing is judged invalid for it) and is kept in [`ChainState::fault`]
    /// until an activation gets past it.
    pub fn activate(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        // Retried every few seconds while it lasts: a fault is logged when it first appears.
        let previous = self.fault.take();
        let stopped = |f: StorageFault, what: String| {
            if previous.as_ref() != Some(&f) {
                log::error!("{what}: {f}");
            }
            Some(f)
        };
        while let Some(path) = self.best_candidate_branch() {
            let fork_height = self.tree.get(&path[0]).map(|e| e.height - 1).unwrap_or(0);
            match self.disconnect_to(fork_height) {
                Ok(u) => updates.extend(u),
                Err(f) => {
                    let what = format!("cannot reorganise to {}", path[path.len() - 1]);
                    self.fault = stopped(f, what);
                    return updates;
                }
            }
            for h in path {
                match self.connect(&h) {
                    Ok(u) => updates.push(u),
                    Err(r) if r.kind == RejectKind::LocalFault => {
                        let f = StorageFault::new("block connection", r.to_string());
                        self.fault = stopped(f, format!("cannot connect {h}"));
                        return updates;
                    }
                    Err(r) => {
                        log::warn!("block {h} invalid: {r}");
                        self.tree.mark_invalid(&h, &r.reason);
                        break;
                    }
                }
            }
        }
        self.return_to_mempool();
        updates
    }

    /// Transactions of blocks a reorganisation disconnected go back to the mempool if they are
    /// still valid on the new chain (Core's MaybeUpdateMempoolForReorg).
    fn return_to_mempool(&mut self) {
        let txs = std::mem::take(&mut self.disconnected_txs);
        if txs.is_empty() {
            return;
        }
        let now = self
            .tree
            .get(&self.tip().0)
            .map_or(0, |e| i64::from(e.header.time));
        let back = txs
            .into_iter()
            .filter(|tx| self.mempool_accept(tx.clone(), 0, now).is_ok())
            .count();
        log::info!("{back} transactions of disconnected blocks returned to the mempool");
    }

    /// Offers `tx` to the mempool (`mempool::accept`), then trims it to its budget.
    pub fn mempool_accept(
        &mut self,
        tx: Transaction,
        max_fee_rate: u64,
        now: i64,
    ) -> Result<crate::mempool::accept::Accepted, Reject> {
        self.mempool.expire(now);
        let accepted = self
            .mempool_offer(tx, max_fee_rate, now, true)
            .inspect_err(|r| {
                self.mempool_refusals
                    .push(crate::mempool::reason_label(&r.reason))
            })?;
        self.mempool.trim(now);
        Ok(accepted)
    }

    /// Offers `tx` to the pool as it stands (no expiry, no trimming, nothing counted), with the
    /// fee floors on or off (a package's parents may pay through their child).
    pub fn mempool_offer(
        &mut self,
        tx: Transaction,
        max_fee_rate: u64,
        now: i64,
        fee_floors: bool,
    ) -> Result<crate::mempool::accept::Accepted, Reject> {
        use crate::mempool::{accept, pool};
        let (tip, height) = self.tip();
        let tree = &self.tree;
        let active = &self.active;
        let utxo = &self.utxo;
        let coin = |op: &OutPoint| utxo.get(op).ok().flatten();
        let mtp_at = |h: u32| {
            active
                .get(h as usize)
                .map_or(0, |b| tree.median_time_past(b))
        };
        let view = accept::ChainView {
            coin: &coin,
            next_height: height + 1,
            tip_mtp: tree.median_time_past(&tip),
            mtp_at: &mtp_at,
            flags: super::script::block_flags(tree.params(), height + 1, &BlockHash::all_zeros()),
        };
        let floors = if fee_floors {
            accept::FeeFloors {
                min_relay: pool::MIN_RELAY_FEE,
                pool_min: self.mempool.min_fee(now),
                max: max_fee_rate,
            }
        } else {
            accept::FeeFloors {
                min_relay: 0,
                pool_min: 0,
                max: max_fee_rate,
            }
        };
        accept::accept(&mut self.mempool, &view, tx, floors, now)
    }

    /// A transaction a peer relayed: into the pool, or the orphanage when parents are missing
    /// (the report says which to ask the peer for); orphans whose parents it supplies are tried
    /// again. Refusals are reported so relay does not fetch them again.
    pub fn offer_relayed(
        &mut self,
        tx: Transaction,
        from: PeerId,
        now: i64,
        report: &mut MempoolDelta,
    ) {
        let mut work = vec![(Arc::new(tx), from)];
        while let Some((tx, from)) = work.pop() {
            let (txid, wtxid) = (tx.compute_txid(), tx.compute_wtxid());
            match self.mempool_accept((*tx).clone(), 0, now) {
                Ok(_) => work.extend(self.orphans.children_of(&txid)),
                Err(r) if r.reason == "bad-txns-inputs-missingorspent" => {
                    let missing: Vec<Txid> = tx
                        .input
                        .iter()
                        .filter(|i| {
                            self.mempool.get(&i.previous_output.txid).is_none()
                                && self.coin(&i.previous_output).is_none()
                        })
                        .map(|i| i.previous_output.txid)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if !missing.is_empty() && self.orphans.add((*tx).clone(), from, &missing, now) {
                        log::debug!(
                            "orphan {txid} from peer {from}: {} parents missing",
                            missing.len()
                        );
                        report.fetch.push((from, missing));
                    } else {
                        report.rejected.push((txid, wtxid));
                    }
                }
                Err(r) => {
                    log::debug!("transaction {txid} from peer {from} refused: {r}");
                    report.rejected.push((txid, wtxid));
                }
            }
        }
    }

    fn connect(&mut self, hash: &BlockHash) -> Result<Update, Reject> {
        let block = self
            .load_block(hash)?
            .ok_or_else(|| Reject::local("block-data-missing", format!("{hash} is not stored")))?;
        let block = &block;
        self.utxo.prefetch(
            block
                .txdata
                .iter()
                .skip(1)
                .flat_map(|tx| tx.input.iter().map(|i| i.previous_output)),
        )?;
        let entry = self
            .tree
            .get(hash)
            .ok_or_else(|| Reject::new("unknown-block", ""))?;
        let height = entry.height;
        let prev = block.header.prev_blockhash;
        let tree = &self.tree;
        let mtp_at = |h: u32| {
            tree.ancestor(&prev, h)
                .map(|(a, _)| tree.median_time_past(&a))
                .unwrap_or(0)
        };
        let verify_scripts = !self
            .assume_valid
            .is_some_and(|av| tree.is_ancestor(hash, &av));
        let ctx = ConnectContext {
            params: tree.params(),
            height,
            prev_mtp: tree.median_time_past(&prev),
            mtp_at: &mtp_at,
            verify_scripts,
        };
        let changes = connect_block(block, &ctx, &self.utxo)?;
        self.utxo.apply(&changes);
        let samples: Vec<(u64, u32)> = block
            .txdata
            .iter()
            .filter_map(|tx| self.mempool.get(&tx.compute_txid()))
            .map(|e| (e.fee_rate(), height.saturating_sub(e.height)))
            .collect();
        self.fee_estimator.block(&samples);
        self.mempool.remove_for_block(&block.txdata);
        self.orphans
            .sweep(i64::from(block.header.time), &block.txdata);
        self.undo.insert(*hash, changes.clone());
        self.active.push(*hash);
        self.tree.set_valid(hash);
        Ok(Update::Connected {
            hash: *hash,
            height,
            changes,
        })
    }

    /// Disconnects the active chain down to `height`. Every block's undo data is read before
    /// anything changes, so unreadable or corrupt undo data stops a reorg with the chain as it
    /// was (Core aborts there; we stop and say why).
    fn disconnect_to(&mut self, height: u32) -> Result<Vec<Update>, StorageFault> {
        let mut undos = Vec::new();
        for h in (height + 1..=self.tip().1).rev() {
            let hash = self.active[h as usize];
            let changes = self.load_undo(&hash)?.ok_or_else(|| {
                StorageFault::new("undo data", format!("{hash} at height {h} is not stored"))
            })?;
            undos.push((hash, h, changes));
        }
        let mut updates = Vec::with_capacity(undos.len());
        for (hash, height, changes) in undos {
            self.utxo.revert(&changes);
            // For the mempool; a block that cannot be read only loses that.
            if let Ok(Some(block)) = self.load_block(&hash) {
                self.disconnected_txs
                    .extend(block.txdata.iter().skip(1).cloned());
            }
            self.active.pop();
            updates.push(Update::Disconnected {
                hash,
                height,
                changes,
            });
        }
        Ok(updates)
    }

    /// `invalidateblock`: marks `hash` invalid and moves to the best remaining chain.
    pub fn invalidate_block(&mut self, hash: &BlockHash) -> Result<Vec<Update>, Reject> {
        let entry = self
            .tree
            .get(hash)
            .ok_or_else(|| Reject::new("Block not found", ""))?;
        if entry.height == 0 {
            return Err(Reject::new("cannot invalidate genesis", ""));
        }
        let height = entry.height;
        let mut updates = Vec::new();
        if self.active.get(height as usize) == Some(hash) {
            updates = self.disconnect_to(height - 1)?;
        }
        self.tree.mark_invalid(hash, "invalidated");
        self.rebuild_candidates();
        updates.extend(self.activate());
        Ok(updates)
    }

    /// `reconsiderblock`: clears invalidity around `hash` and activates the best chain.
    pub fn reconsider_block(&mut self, hash: &BlockHash) -> Result<Vec<Update>, Reject> {
        if self.tree.get(hash).is_none() {
            return Err(Reject::new("Block not found", ""));
        }
        self.tree.reconsider(hash);
        self.rebuild_candidates();
        Ok(self.activate())
    }

    /// The template for a block on the tip at `now`.
    pub fn template(&self, now: i64, fees: u64) -> Template {
        let (prev, height) = self.tip();
        let prev_hdr = self
            .tree
            .get(&prev)
            .map(|e| e.header)
            .unwrap_or(self.params().genesis.header);
        let mtp = self.tree.median_time_past(&prev);
        let time = (now.max(0) as u32).max(mtp + 1);
        let tree = &self.tree;
        let anc = |h: u32| tree.ancestor(&prev, h).map(|(_, e)| e.header);
        let bits = next_work_required(self.params(), height, &prev_hdr, time, &anc);
        Template {
            prev,
            height: height + 1,
            time,
            bits,
            fees,
        }
    }

    /// The mempool transactions the next block takes (Core's ancestor-feerate selection),
    /// final at its height and the tip's median time past.
    pub fn block_from_mempool(&self) -> crate::mempool::select::Selected {
        use crate::mempool::select::{select, MAX_BLOCK_SIGOPS, MAX_BLOCK_WEIGHT};
        let (tip, height) = self.tip();
        let mtp = self.tree.median_time_past(&tip);
        select(&self.mempool, MAX_BLOCK_WEIGHT, MAX_BLOCK_SIGOPS, |tx| {
            super::block_check::is_final(tx, height + 1, mtp)
        })
    }

    /// Fees `txs` pay when spending the current UTXO set (and each other, in order).
    pub fn fees_of(&self, txs: &[Transaction]) -> Result<u64, Reject> {
        let mut created: HashMap<OutPoint, u64> = HashMap::new();
        let mut fees = 0u64;
        for tx in txs {
            let mut value_in = 0u64;
            for i in &tx.input {
                let op = i.previous_output;
                value_in += match created.remove(&op) {
                    Some(v) => v,
                    None => self
                        .utxo
                        .get(&op)?
                        .map(|c| c.output.value.to_sat())
                        .ok_or_else(|| {
                            Reject::new("bad-txns-inputs-missingorspent", op.to_string())
                        })?,
                };
            }
            let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
            fees += value_in
                .checked_sub(value_out)
                .ok_or_else(|| Reject::new("bad-txns-in-belowout", ""))?;
            let txid = tx.compute_txid();
            for (n, o) in tx.output.iter().enumerate() {
                created.insert(OutPoint::new(txid, n as u32), o.value.to_sat());
            }
        }
        Ok(fees)
    }

    /// Builds, grinds and submits a block paying `payout` with `txs` (regtest mining).
    pub fn mine(
        &mut self,
        payout: ScriptBuf,
        txs: Vec<Transaction>,
        now: i64,
    ) -> Result<(Block, Vec<Update>), Reject> {
        let fees = self.fees_of(&txs)?;
        let template = self.template(now, fees);
        let mut block = build_block(self.params(), &template, payout, txs);
        if !grind(&mut block.header) {
            return Err(Reject::new("no-nonce", "no nonce meets the target"));
        }
        let (_, updates) = self.submit_block(block.clone(), now)?;
        Ok((block, updates))
    }

    /// Branch tips, as `getchaintips` lists them.
    pub fn chain_tips(&self) -> Vec<ChainTip> {
        let mut has_child: HashMap<BlockHash, bool> = HashMap::new();
        for (_, e) in self.tree.iter() {
            has_child.insert(e.header.prev_blockhash, true);
        }
        let mut tips: Vec<ChainTip> = self
            .tree
            .iter()
            .filter(|(h, _)| !has_child.contains_key(*h))
            .map(|(h, e)| {
                let mut fork = *h;
                while self
                    .tree
                    .get(&fork)
                    .is_some_and(|f| self.active.get(f.height as usize) != Some(&fork))
                {
                    fork = self
                        .tree
                        .get(&fork)
                        .map(|f| f.header.prev_blockhash)
                        .unwrap_or(fork);
                }
                let fork_height = self.tree.get(&fork).map(|f| f.height).unwrap_or(0);
                let branch = self.branch_to_active(h);
                let status = if self.active.get(e.height as usize) == Some(h) {
                    TipStatus::Active
                } else if !e.is_ok() {
                    TipStatus::Invalid
                } else if e.validity == Validity::Valid {
                    TipStatus::ValidFork
                } else if branch.is_some() {
                    TipStatus::ValidHeaders
                } else {
                    TipStatus::HeadersOnly
                };
                ChainTip {
                    height: e.height,
                    hash: *h,
                    branch_len: e.height - fork_height,
                    status,
                }
            })
            .collect();
        tips.sort_by(|a, b| b.height.cmp(&a.height).then(a.hash.cmp(&b.hash)));
        tips
    }

    /// Count, total and hash of the UTXO set, ordered as Core's database orders it.
    pub fn utxo_stats(&self) -> Result<UtxoStats, StorageFault> {
        self.utxo_stats_until(&|| false)
            .map(|s| s.expect("never cancelled"))
    }

    /// `utxo_stats` that gives up (`Ok(None)`) once `cancelled` says so; checked as coins are
    /// gathered and hashed, the store's scan included.
    pub fn utxo_stats_until(
        &self,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<UtxoStats>, StorageFault> {
        let mut coins: Vec<(OutPoint, Coin)> = Vec::new();
        if !self
            .utxo
            .for_each(cancelled, &mut |op, c| coins.push((*op, c.clone())))?
        {
            return Ok(None);
        }
        coins.sort_by(|a, b| {
            a.0.txid
                .to_byte_array()
                .cmp(&b.0.txid.to_byte_array())
                .then(a.0.vout.cmp(&b.0.vout))
        });
        let mut engine = sha256d::Hash::engine();
        let mut total = 0u64;
        for (i, (op, coin)) in coins.iter().enumerate() {
            if i % 4096 == 0 && cancelled() {
                return Ok(None);
            }
            engine.input(&bitcoin::consensus::serialize(op));
            let code = (coin.height << 1) | u32::from(coin.coinbase);
            engine.input(&code.to_le_bytes());
            engine.input(&bitcoin::consensus::serialize(&coin.output));
            total += coin.output.value.to_sat();
        }
        Ok(Some(UtxoStats {
            count: coins.len() as u64,
            total,
            hash: sha256d::Hash::from_engine(engine),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::mining::{op_true_payout, spend_op_true};
    use crate::config::Chain;
    use crate::storage::Flow;
    use std::sync::atomic::{AtomicBool, Ordering};

    const NOW: i64 = 1_700_000_000;

    /// Stored data that can be switched to fail every read, as a dying disk does.
    struct Flaky {
        blocks: HashMap<BlockHash, Block>,
        undo: HashMap<BlockHash, BlockChanges>,
        coins: HashMap<OutPoint, Coin>,
        failing: AtomicBool,
    }

    impl Flaky {
        fn check(&self) -> Result<(), StorageFault> {
            match self.failing.load(Ordering::Acquire) {
                true => Err(StorageFault::new("test", "Input/output error (os error 5)")),
                false => Ok(()),
            }
        }
    }

    impl BlockSource for Flaky {
        fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StorageFault> {
            self.check()?;
            Ok(self.blocks.get(hash).cloned())
        }
        fn undo(&self, hash: &BlockHash) -> Result<Option<BlockChanges>, StorageFault> {
            self.check()?;
            Ok(self.undo.get(hash).cloned())
        }
    }

    impl CoinSource for Flaky {
        fn coin(&self, op: &OutPoint) -> Result<Option<Coin>, StorageFault> {
            self.check()?;
            Ok(self.coins.get(op).cloned())
        }
        fn for_each_coin(
            &self,
            f: &mut dyn FnMut(OutPoint, Coin) -> Flow,
        ) -> Result<(), StorageFault> {
            self.check()?;
            for (op, c) in &self.coins {
                if f(*op, c.clone()).is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    /// A chain of 110 OP_TRUE blocks behind a flaky source, and the source chain itself.
    fn over_flaky_source() -> (ChainState, Arc<Flaky>, ChainState) {
        let mut src = ChainState::new(Params::for_chain(Chain::Regtest));
        for i in 0..110 {
            src.mine(op_true_payout(), vec![], NOW + i).unwrap();
        }
        let mut coins = HashMap::new();
        src.utxo
            .for_each(&|| false, &mut |op, c| {
                coins.insert(*op, c.clone());
            })
            .unwrap();
        let flaky = Arc::new(Flaky {
            blocks: src.blocks.clone(),
            undo: src.undo.clone(),
            coins,
            failing: AtomicBool::new(false),
        });
        let cs = ChainState::from_parts(
            src.tree().clone(),
            src.active().to_vec(),
            flaky.clone(),
            src.utxo_count(),
        );
        (cs, flaky, src)
    }

    /// A new block on `src` spending the coinbase of block 1 (a coin the store must read).
    fn spending_coinbase_1(src: &mut ChainState) -> Block {
        let cb = src.block(&src.hash_at(1).unwrap()).unwrap().txdata[0].clone();
        let spend = spend_op_true(
            OutPoint::new(cb.compute_txid(), 0),
            cb.output[0].value.to_sat(),
        );
        src.mine(op_true_payout(), vec![spend], NOW + 200)
            .unwrap()
            .0
    }

    #[test]
    fn a_read_fault_while_connecting_blames_no_block_and_clears_by_itself() {
        let (mut cs, flaky, mut src) = over_flaky_source();
        let block = spending_coinbase_1(&mut src);
        let hash = block.block_hash();
        flaky.failing.store(true, Ordering::Release);
        let err = cs.submit_block(block, NOW + 300).unwrap_err();
        assert_eq!(err.kind, RejectKind::LocalFault, "{err}");
        assert!(!err.is_consensus());
        assert!(cs.tree().get(&hash).unwrap().is_ok(), "not marked invalid");
        assert!(cs.fault().is_some());
        assert_eq!(cs.tip().1, 110);
        // The disk reads again: the next activation connects the block.
        flaky.failing.store(false, Ordering::Release);
        let updates = cs.activate();
        assert_eq!(updates.len(), 1);
        assert_eq!(cs.tip(), (hash, 111));
        assert!(cs.fault().is_none());
    }

    /// Undo data rebuilt from the block and the blocks below it equals what connecting wrote,
    /// and a spent coin further back than the scan limit is said to need a reindex.
    #[test]
    fn undo_data_is_rebuilt_exactly_from_the_blocks() {
        let (mut cs, _flaky, mut src) = over_flaky_source();
        let block = spending_coinbase_1(&mut src);
        let hash = block.block_hash();
        cs.submit_block(block, NOW + 300).unwrap();
        let written = cs.undo.remove(&hash).unwrap();
        assert_eq!(written.spent.len(), 1);
        let err = cs.rebuild_undo(&hash, 50).unwrap_err();
        assert!(matches!(err, RepairError::NeedsReindex(_)), "{err}");
        cs.rebuild_undo(&hash, 1_000).unwrap();
        assert_eq!(cs.undo[&hash], written);
        assert_eq!(cs.take_rebuilt_undo(), vec![(hash, written)]);
    }

    #[test]
    fn unreadable_undo_data_stops_a_disconnect_before_anything_changes() {
        let (mut cs, flaky, _) = over_flaky_source();
        let tip = cs.tip();
        let coins = cs.utxo_count();
        flaky.failing.store(true, Ordering::Release);
        let err = cs.invalidate_block(&cs.hash_at(105).unwrap()).unwrap_err();
        assert_eq!(err.kind, RejectKind::LocalFault, "{err}");
        assert_eq!(cs.tip(), tip);
        assert_eq!(cs.utxo_count(), coins);
        assert!(cs.tree().get(&cs.hash_at(105).unwrap()).unwrap().is_ok());
        flaky.failing.store(false, Ordering::Release);
        assert_eq!(
            cs.invalidate_block(&cs.hash_at(105).unwrap())
                .unwrap()
                .len(),
            6
        );
        assert_eq!(cs.tip().1, 104);
    }

    #[test]
    fn blocks_arriving_backwards_wait_unlinked_then_connect_at_once() {
        let mut source = ChainState::new(Params::for_chain(Chain::Regtest));
        let blocks: Vec<Block> = (0..30)
            .map(|i| source.mine(op_true_payout(), vec![], NOW + i).unwrap().0)
            .collect();
        let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
        for b in &blocks {
            cs.accept_header(&b.header, NOW + 100).unwrap();
        }
        for b in blocks[1..].iter().rev() {
            cs.submit_block(b.clone(), NOW + 100).unwrap();
        }
        assert_eq!(cs.tip().1, 0, "nothing connects without block 1");
        assert!(cs.candidates.is_empty());
        assert_eq!(cs.unlinked.values().map(Vec::len).sum::<usize>(), 29);
        cs.submit_block(blocks[0].clone(), NOW + 100).unwrap();
        assert_eq!(cs.tip(), source.tip());
        assert!(
            cs.candidates.is_empty() && cs.unlinked.is_empty(),
            "nothing left behind: {} candidates",
            cs.candidates.len()
        );
    }
}
