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
            },
        );
        HeaderTree {
            params,
            entries,
            genesis,
            dirty: std::iter::once(genesis).collect(),
        }
    }

    /// Rebuilds a tree from persisted entries (header, validity, have_data); heights and
    /// cumulative work are recomputed from the parents. Entries not connected to genesis are dropped.
    pub fn from_persisted(
        params: Params,
        mut items: Vec<(bitcoin::block::Header, Validity, bool)>,
    ) -> HeaderTree {
        let mut tree = HeaderTree::new(params);
        tree.dirty.clear();
        // Parents before children: repeat passes until nothing more attaches.
        loop {
            let before = items.len();
            items.retain(|(header, validity, have_data)| {
                let hash = header.block_hash();
                if tree.entries.contains_key(&hash) {
                    if let Some(e) = tree.entries.get_mut(&hash) {
                        e.validity = validity.clone();
                        e.have_data |= *have_data;
                    }
                    return false;
                }
                let Some(parent) = tree.entries.get(&header.prev_blockhash) else {
                    return true;
                };
                let entry = Entry {
                    header: *header,
                    height: parent.height + 1,
                    chain_work: parent.chain_work + header.work(),
                    validity: validity.clone(),
                    have_data: *have_data,
                };
                tree.entries.insert(hash, entry);
                false
            });
            if items.is_empty() || items.len() == before {
                break;
            }
        }
        if !items.is_empty() {
            log::warn!(
                "{} stored headers do not connect to genesis; ignored",
                items.len()
            );
        }
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

    /// The ancestor of `hash` at `height` (itself at its own height).
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Option<(BlockHash, &Entry)> {
        let mut h = *hash;
        let mut e = self.entries.get(&h)?;
        if height > e.height {
            return None;
        }
        while e.height > height {
            h = e.header.prev_blockhash;
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
        let entry = Entry {
            header: *header,
            height: prev.height + 1,
            chain_work: prev.chain_work + header.work(),
            validity: Validity::Header,
            have_data: false,
        };
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
    }

    /// The most-work header not known invalid.
    pub fn best_header(&self) -> (BlockHash, &Entry) {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_ok())
            .max_by(|a, b| a.1.chain_work.cmp(&b.1.chain_work).then(b.0.cmp(a.0)))
            .map(|(h, e)| (*h, e))
            .unwrap_or((self.genesis, &self.entries[&self.genesis]))
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
