//! Every known header on every branch, with cumulative work and validity.

use super::params::Params;
use super::pow::{check_header_context, check_proof_of_work, median_time_past};
use super::reject::Reject;
use bitcoin::block::Header;
use bitcoin::{BlockHash, Work};
use std::collections::HashMap;

/// What is known about a header's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Header valid; block not (yet) connected.
    Header,
    /// The block was connected once: fully valid.
    Valid,
    /// The block broke a rule (Core's reason).
    Invalid(String),
    /// An ancestor is invalid.
    InvalidParent,
}

/// One header.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The header.
    pub header: Header,
    /// Height.
    pub height: u32,
    /// Work of the chain up to and including this header.
    pub chain_work: Work,
    /// Validity.
    pub validity: Validity,
    /// Whether the block's data is stored.
    pub have_data: bool,
    /// Core's skip pointer: an ancestor at `skip_height(height)`, for O(log n) ancestor lookups.
    skip: BlockHash,
}

/// Core's GetSkipHeight: which ancestor an entry's skip pointer names.
fn skip_height(height: u32) -> u32 {
    let invert_lowest_one = |n: u32| n & n.wrapping_sub(1);
    if height < 2 {
        0
    } else if height & 1 == 1 {
        invert_lowest_one(invert_lowest_one(height - 1)) + 1
    } else {
        invert_lowest_one(height)
    }
}

impl Entry {
    /// Not known invalid.
    pub fn is_ok(&self) -> bool {
        matches!(self.validity, Validity::Header | Validity::Valid)
    }
}

/// The header tree rooted at genesis.
#[derive(Debug, Clone)]
pub struct HeaderTree {
    params: Params,
    entries: HashMap<BlockHash, Entry>,
    genesis: BlockHash,
    dirty: std::collections::HashSet<BlockHash>,
    /// The most-work header not known invalid, kept as headers arrive (first received wins a
    /// tie, as in Core) and found again by a scan only when validity changes.
    best: BlockHash,
}

impl HeaderTree {
    /// A tree holding the genesis header (valid, with data).
    pub fn new(params: Params) -> HeaderTree {
        let header = params.genesis.header;
        let genesis = header.block_hash();
        let mut entries = HashMap::new();
        entries.insert(
            genesis,
            Entry {
                header,
                height: 0,
                chain_work: header.work(),
                validity: Validity::Valid,
                have_data: true,
                skip: genesis,
            },
        );
        HeaderTree {
            params,
            entries,
            genesis,
            dirty: std::iter::once(genesis).collect(),
            best: genesis,
        }
    }

    /// Rebuilds a tree from persisted entries (header, validity, have_data); heights and
    /// cumulative work are recomputed from the parents. Entries not connected to genesis are
    /// dropped. Linear in the entries: they come in storage (hash) order, so children are found
    /// by parent and attached breadth-first from genesis.
    pub fn from_persisted(
        params: Params,
        items: Vec<(bitcoin::block::Header, Validity, bool)>,
    ) -> HeaderTree {
        let mut tree = HeaderTree::new(params);
        tree.dirty.clear();
        let total = items.len();
        let mut children: HashMap<BlockHash, Vec<usize>> = HashMap::with_capacity(total);
        for (i, (header, _, _)) in items.iter().enumerate() {
            children.entry(header.prev_blockhash).or_default().push(i);
        }
        let genesis = tree.genesis;
        if let Some(i) = items.iter().position(|(h, _, _)| h.block_hash() == genesis) {
            if let Some(e) = tree.entries.get_mut(&genesis) {
                e.validity = items[i].1.clone();
                e.have_data |= items[i].2;
            }
        }
        let mut attached = 0;
        let mut queue = std::collections::VecDeque::from([genesis]);
        while let Some(parent) = queue.pop_front() {
            for i in children.remove(&parent).unwrap_or_default() {
                let (header, validity, have_data) = &items[i];
                let hash = header.block_hash();
                if tree.entries.contains_key(&hash) {
                    continue;
                }
                let Some(p) = tree.entries.get(&parent) else {
                    continue;
                };
                let height = p.height + 1;
                let entry = Entry {
                    header: *header,
                    height,
                    chain_work: p.chain_work + header.work(),
                    validity: validity.clone(),
                    have_data: *have_data,
                    skip: tree.skip_for(&parent, height),
                };
                tree.entries.insert(hash, entry);
                attached += 1;
                queue.push_back(hash);
            }
        }
        let genesis_stored = items.iter().any(|(h, _, _)| h.block_hash() == genesis);
        let dropped = total - attached - usize::from(genesis_stored);
        if dropped > 0 {
            log::warn!("{dropped} stored headers do not connect to genesis; ignored");
        }
        tree.best = tree.scan_best();
        tree
    }

    /// Hashes whose entries changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<BlockHash> {
        self.dirty.drain().collect()
    }

    /// The network's rules.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The genesis hash.
    pub fn genesis(&self) -> BlockHash {
        self.genesis
    }

    /// The entry for `hash`.
    pub fn get(&self, hash: &BlockHash) -> Option<&Entry> {
        self.entries.get(hash)
    }

    /// Number of headers known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never empty (genesis).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// All entries (for chain tips and candidate selection).
    pub fn iter(&self) -> impl Iterator<Item = (&BlockHash, &Entry)> {
        self.entries.iter()
    }

    /// The skip pointer of a new entry at `height` whose parent is `prev`.
    fn skip_for(&self, prev: &BlockHash, height: u32) -> BlockHash {
        self.ancestor(prev, skip_height(height))
            .map(|(h, _)| h)
            .unwrap_or(self.genesis)
    }

    /// The ancestor of `hash` at `height` (itself at its own height); O(log n) via skip
    /// pointers, walked as Core's GetAncestor walks them.
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Option<(BlockHash, &Entry)> {
        let mut h = *hash;
        let mut e = self.entries.get(&h)?;
        if height > e.height {
            return None;
        }
        while e.height > height {
            let (sh, shp) = (skip_height(e.height), skip_height(e.height - 1));
            let use_skip = sh == height || (sh > height && !(shp + 2 < sh && shp >= height));
            h = if use_skip {
                e.skip
            } else {
                e.header.prev_blockhash
            };
            e = self.entries.get(&h)?;
        }
        Some((h, e))
    }

    /// Median time past of `hash`'s chain.
    pub fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let Some(e) = self.entries.get(hash) else {
            return 0;
        };
        let anc = |h: u32| self.ancestor(hash, h).map(|(_, e)| e.header);
        median_time_past(e.height, &anc)
    }

    /// Validates and records a header; `now` is the node's clock (unix seconds).
    pub fn accept(&mut self, header: &Header, now: i64) -> Result<BlockHash, Reject> {
        let hash = header.block_hash();
        if let Some(e) = self.entries.get(&hash) {
            return match &e.validity {
                Validity::Invalid(reason) => Err(Reject::new(reason.clone(), "duplicate-invalid")),
                Validity::InvalidParent => Err(Reject::new("bad-prevblk", "duplicate-invalid")),
                _ => Ok(hash),
            };
        }
        let prev_hash = header.prev_blockhash;
        let prev = self.entries.get(&prev_hash).ok_or_else(|| {
            Reject::new("prev-blk-not-found", format!("parent {prev_hash} unknown"))
        })?;
        if !prev.is_ok() {
            return Err(Reject::new(
                "bad-prevblk",
                format!("parent {prev_hash} is invalid"),
            ));
        }
        check_proof_of_work(header, &self.params)?;
        let anc = |h: u32| self.ancestor(&prev_hash, h).map(|(_, e)| e.header);
        check_header_context(header, &self.params, prev.height, &prev.header, &anc, now)?;
        let height = prev.height + 1;
        let entry = Entry {
            header: *header,
            height,
            chain_work: prev.chain_work + header.work(),
            validity: Validity::Header,
            have_data: false,
            skip: self.skip_for(&prev_hash, height),
        };
        if entry.chain_work > self.entries[&self.best].chain_work {
            self.best = hash;
        }
        self.entries.insert(hash, entry);
        self.dirty.insert(hash);
        Ok(hash)
    }

    /// Records that the block's data is stored.
    pub fn set_have_data(&mut self, hash: &BlockHash) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.have_data = true;
            self.dirty.insert(*hash);
        }
    }

    /// Forgets that a block's data is stored (it was found corrupt and is fetched again). The
    /// index entry is not rewritten: it keeps naming the old record until a new one is stored.
    pub fn clear_have_data(&mut self, hash: &BlockHash) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.have_data = false;
        }
    }

    /// Marks a connected block valid.
    pub fn set_valid(&mut self, hash: &BlockHash) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.validity = Validity::Valid;
            self.dirty.insert(*hash);
        }
    }

    /// Marks `hash` invalid with `reason` and every descendant as having an invalid parent.
    pub fn mark_invalid(&mut self, hash: &BlockHash, reason: &str) {
        let Some(height) = self.entries.get(hash).map(|e| e.height) else {
            return;
        };
        let descendants: Vec<BlockHash> = self
            .entries
            .iter()
            .filter(|(h, e)| e.height > height && self.is_ancestor(hash, h))
            .map(|(h, _)| *h)
            .collect();
        if let Some(e) = self.entries.get_mut(hash) {
            e.validity = Validity::Invalid(reason.to_owned());
            self.dirty.insert(*hash);
        }
        for d in descendants {
            if let Some(e) = self.entries.get_mut(&d) {
                e.validity = Validity::InvalidParent;
                self.dirty.insert(d);
            }
        }
        self.best = self.scan_best();
    }

    /// Whether `a` is `b` or an ancestor of it.
    pub fn is_ancestor(&self, a: &BlockHash, b: &BlockHash) -> bool {
        self.entries
            .get(a)
            .and_then(|ea| self.ancestor(b, ea.height))
            .is_some_and(|(h, _)| h == *a)
    }

    /// Clears invalidity of `hash`, its ancestors and descendants (`reconsiderblock`).
    pub fn reconsider(&mut self, hash: &BlockHash) {
        let related: Vec<BlockHash> = self
            .entries
            .keys()
            .filter(|h| self.is_ancestor(h, hash) || self.is_ancestor(hash, h))
            .copied()
            .collect();
        for h in related {
            if let Some(e) = self.entries.get_mut(&h) {
                if !e.is_ok() {
                    e.validity = Validity::Header;
                    self.dirty.insert(h);
                }
            }
        }
        self.best = self.scan_best();
    }

    /// The most-work header not known invalid.
    pub fn best_header(&self) -> (BlockHash, &Entry) {
        (self.best, &self.entries[&self.best])
    }

    /// The most-work valid header by a full scan (after validity changes); ties go to the lower
    /// hash, since arrival order is not known here.
    fn scan_best(&self) -> BlockHash {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_ok())
            .max_by(|a, b| a.1.chain_work.cmp(&b.1.chain_work).then(b.0.cmp(a.0)))
            .map(|(h, _)| *h)
            .unwrap_or(self.genesis)
    }

    /// Core's block locator from `tip`: 10 steps back one by one, then doubling, then genesis.
    pub fn locator(&self, tip: &BlockHash) -> Vec<BlockHash> {
        let Some(e) = self.entries.get(tip) else {
            return vec![self.genesis];
        };
        let mut out = Vec::new();
        let mut height = i64::from(e.height);
        let mut step = 1;
        while height > 0 {
            if let Some((h, _)) = self.ancestor(tip, height as u32) {
                out.push(h);
            }
            if out.len() >= 10 {
                step *= 2;
            }
            height -= step;
        }
        out.push(self.genesis);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::mining::{build_block, grind, Template};
    use crate::config::Chain;
    use bitcoin::hashes::Hash;

    /// A ground regtest header at `height` on `prev`.
    fn header_on(params: &Params, prev: BlockHash, height: u32, time: u32) -> Header {
        let t = Template {
            prev,
            height,
            time,
            bits: params.pow_limit_bits(),
            fees: 0,
        };
        let mut b = build_block(params, &t, bitcoin::ScriptBuf::new(), vec![]);
        assert!(grind(&mut b.header));
        b.header
    }

    /// A regtest header chain of `n` blocks on genesis.
    fn chain(n: u32) -> (HeaderTree, Vec<BlockHash>) {
        let params = Params::for_chain(Chain::Regtest);
        let mut tree = HeaderTree::new(params.clone());
        let mut hashes = vec![tree.genesis()];
        for h in 1..=n {
            let header = header_on(&params, *hashes.last().unwrap(), h, 1_700_000_000 + h);
            hashes.push(tree.accept(&header, 1_800_000_000).unwrap());
        }
        (tree, hashes)
    }

    #[test]
    fn skip_heights_match_core() {
        // GetSkipHeight values from Core's definition.
        let got: Vec<u32> = (0..12).map(skip_height).collect();
        assert_eq!(got, vec![0, 0, 0, 1, 0, 1, 4, 1, 0, 1, 8, 1]);
    }

    #[test]
    fn ancestor_lookups_agree_with_walking_parents() {
        let (tree, hashes) = chain(300);
        for (tip, target) in [
            (300, 0),
            (300, 299),
            (300, 137),
            (257, 256),
            (129, 64),
            (300, 300),
        ] {
            assert_eq!(
                tree.ancestor(&hashes[tip], target).unwrap().0,
                hashes[target as usize]
            );
        }
        assert!(tree.ancestor(&hashes[10], 11).is_none());
    }

    #[test]
    fn locator_steps_back_one_by_one_then_doubles_then_genesis() {
        let (tree, hashes) = chain(40);
        let heights: Vec<u32> = tree
            .locator(&hashes[40])
            .iter()
            .map(|h| tree.get(h).unwrap().height)
            .collect();
        assert_eq!(
            heights,
            vec![40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 29, 25, 17, 1, 0]
        );
    }

    #[test]
    fn invalidity_reaches_descendants_and_reconsider_clears_it() {
        let (mut tree, hashes) = chain(5);
        tree.mark_invalid(&hashes[3], "bad-cb-amount");
        assert_eq!(
            tree.get(&hashes[3]).unwrap().validity,
            Validity::Invalid("bad-cb-amount".into())
        );
        assert_eq!(
            tree.get(&hashes[5]).unwrap().validity,
            Validity::InvalidParent
        );
        assert!(tree.get(&hashes[2]).unwrap().is_ok());
        assert_eq!(tree.best_header().1.height, 2);
        tree.reconsider(&hashes[4]);
        assert!(tree.get(&hashes[3]).unwrap().is_ok() && tree.get(&hashes[5]).unwrap().is_ok());
        assert_eq!(tree.best_header().1.height, 5);
    }

    #[test]
    fn the_tree_rebuilds_from_entries_in_any_order() {
        let (mut tree, hashes) = chain(200);
        // A side branch off height 150, and an orphan whose parent was never stored.
        let params = tree.params().clone();
        let side = tree
            .accept(
                &header_on(&params, hashes[150], 151, 1_700_000_999),
                1_800_000_000,
            )
            .unwrap();
        let mut orphan = tree.get(&hashes[7]).unwrap().header;
        orphan.prev_blockhash = BlockHash::from_byte_array([9; 32]);
        tree.set_have_data(&hashes[100]);
        tree.mark_invalid(&hashes[190], "bad-cb-amount");
        let mut items: Vec<(BlockHash, (Header, Validity, bool))> = tree
            .iter()
            .map(|(h, e)| (*h, (e.header, e.validity.clone(), e.have_data)))
            .collect();
        items.push((orphan.block_hash(), (orphan, Validity::Header, false)));
        // Storage order (by hash), and children before parents.
        for order in [false, true] {
            items.sort_by_key(|(h, _)| {
                let height = tree.get(h).map_or(0, |e| e.height);
                if order {
                    (u32::MAX - height, *h)
                } else {
                    (0, *h)
                }
            });
            let rebuilt = HeaderTree::from_persisted(
                params.clone(),
                items.iter().map(|(_, i)| i.clone()).collect(),
            );
            assert_eq!(rebuilt.len(), tree.len(), "all but the orphan");
            for (h, e) in tree.iter() {
                let r = rebuilt.get(h).unwrap();
                assert_eq!(
                    (r.height, r.chain_work, &r.validity),
                    (e.height, e.chain_work, &e.validity)
                );
                assert_eq!(r.have_data, e.have_data);
            }
            assert_eq!(rebuilt.best_header().1.height, 189, "invalid tail excluded");
            assert!(rebuilt.get(&side).is_some());
            assert_eq!(rebuilt.ancestor(&hashes[200], 3).unwrap().0, hashes[3]);
        }
    }

    #[test]
    fn the_best_header_follows_arrivals_first_received_winning_ties() {
        let (mut tree, hashes) = chain(3);
        let params = tree.params().clone();
        assert_eq!(tree.best_header().0, hashes[3]);
        // A competing block at the same height: as much work, second: the first stays best.
        let rival = tree
            .accept(
                &header_on(&params, hashes[2], 3, 1_700_000_777),
                1_800_000_000,
            )
            .unwrap();
        assert_eq!(tree.best_header().0, hashes[3]);
        tree.mark_invalid(&hashes[3], "bad-cb-amount");
        assert_eq!(
            tree.best_header().0,
            rival,
            "the rival once the first is invalid"
        );
    }
}
