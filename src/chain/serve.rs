//! What the chain answers to the network, as plain functions of the chain state: headers after a
//! locator, the blocks a `getdata` names, and the download window the p2p thread fills.

use super::chainstate::ChainState;
use crate::messages::{ChainSummary, MempoolChange, MempoolDelta, P2pCommand, PeerId, RelayTx};
use bitcoin::block::Header;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Block, BlockHash, Witness};

/// Headers per `headers` message (Core's MAX_HEADERS_RESULTS).
pub const MAX_HEADERS: usize = 2000;
/// Blocks beyond the tip that may be downloaded at once (Core's BLOCK_DOWNLOAD_WINDOW).
pub const DOWNLOAD_WINDOW: u32 = 1024;
/// Core's rule for initial block download: the tip is older than this.
pub const MAX_TIP_AGE_SECS: i64 = 24 * 3600;
/// Headers announced one by one; more than this and only the tip is announced by `inv`.
pub const MAX_ANNOUNCE_HEADERS: usize = 8;

/// Block hashes per `inv` answering `getblocks` (Core's limit).
pub const MAX_GETBLOCKS: usize = 500;

/// The active chain after the first locator hash on it (after genesis if none is): Core's
/// `FindForkInGlobalIndex`, then onwards.
fn active_after<'a>(
    cs: &'a ChainState,
    locator: &[BlockHash],
) -> impl Iterator<Item = &'a BlockHash> {
    cs.active()
        .iter()
        .skip(fork_height(cs, locator) as usize + 1)
}

/// The height of the first locator hash on the active chain: the peer that sent the locator has
/// our chain up to there (0 when none of it is ours).
pub fn fork_height(cs: &ChainState, locator: &[BlockHash]) -> u32 {
    locator
        .iter()
        .find_map(|h| active_height(cs, h))
        .unwrap_or(0)
}

/// The height of `hash` if it is on the active chain.
fn active_height(cs: &ChainState, hash: &BlockHash) -> Option<u32> {
    cs.tree()
        .get(hash)
        .filter(|e| cs.active().get(e.height as usize) == Some(hash))
        .map(|e| e.height)
}

/// The highest active-chain block a `getdata` names: the peer has its header.
pub fn requested_height(cs: &ChainState, items: &[Inventory]) -> Option<u32> {
    items
        .iter()
        .filter_map(|i| match i {
            Inventory::Block(h) | Inventory::WitnessBlock(h) => active_height(cs, h),
            _ => None,
        })
        .max()
}

/// Core's `getheaders`: headers of the active chain after the first locator hash on it (genesis
/// if none is), up to `stop` or 2,000. An empty locator asks for `stop`'s header alone.
pub fn headers_after(cs: &ChainState, locator: &[BlockHash], stop: &BlockHash) -> Vec<Header> {
    if locator.is_empty() {
        return cs
            .tree()
            .get(stop)
            .map(|e| vec![e.header])
            .unwrap_or_default();
    }
    let mut out = Vec::new();
    for h in active_after(cs, locator).take(MAX_HEADERS) {
        let Some(e) = cs.tree().get(h) else { break };
        out.push(e.header);
        if h == stop {
            break;
        }
    }
    out
}

/// Core's `getblocks`: hashes of the active chain after the locator's fork, up to 500, stopping
/// before `stop` (unlike `getheaders`, Core leaves the stop block out).
pub fn blocks_after(cs: &ChainState, locator: &[BlockHash], stop: &BlockHash) -> Vec<BlockHash> {
    active_after(cs, locator)
        .take_while(|h| *h != stop)
        .take(MAX_GETBLOCKS)
        .copied()
        .collect()
}

/// Answers the block items of a `getdata`: the blocks found (witness stripped unless asked for),
/// then one `notfound` for the rest.
pub fn blocks_for(cs: &ChainState, items: &[Inventory]) -> Vec<NetworkMessage> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for item in items {
        let (hash, witness) = match item {
            Inventory::Block(h) => (*h, false),
            Inventory::WitnessBlock(h) => (*h, true),
            other => {
                missing.push(*other);
                continue;
            }
        };
        match cs.block(&hash) {
            Some(block) if witness => out.push(NetworkMessage::Block(block)),
            Some(block) => out.push(NetworkMessage::Block(strip_witness(block))),
            None => missing.push(*item),
        }
    }
    if !missing.is_empty() {
        out.push(NetworkMessage::NotFound(missing));
    }
    out
}

/// The block as pre-segwit peers see it.
fn strip_witness(mut block: Block) -> Block {
    for tx in &mut block.txdata {
        for input in &mut tx.input {
            input.witness = Witness::new();
        }
    }
    block
}

/// Blocks on the best header chain, from just above its fork with the active chain, that have
/// no data yet: at most the download window past the tip, lowest first.
pub fn wanted(cs: &ChainState) -> Vec<(u32, BlockHash)> {
    let tree = cs.tree();
    let (best, best_entry) = tree.best_header();
    let active = cs.active();
    let tip_height = active.len().saturating_sub(1) as u32;
    let limit = best_entry.height.min(tip_height + DOWNLOAD_WINDOW);
    // The fork point: the highest ancestor of the best header on the active chain.
    let mut fork = best_entry.height.min(tip_height);
    while fork > 0 {
        match tree.ancestor(&best, fork) {
            Some((h, _)) if active.get(fork as usize) == Some(&h) => break,
            _ => fork -= 1,
        }
    }
    // One step back per block from the window's top, rather than a skip-list walk per height.
    let Some((top, _)) = tree.ancestor(&best, limit) else {
        return Vec::new();
    };
    let mut path = Vec::with_capacity((limit - fork) as usize);
    let mut h = top;
    while let Some(e) = tree.get(&h).filter(|e| e.height > fork) {
        path.push((h, e));
        h = e.header.prev_blockhash;
    }
    let mut out = Vec::new();
    for (hash, e) in path.into_iter().rev() {
        if !e.is_ok() {
            break;
        }
        if !e.have_data {
            out.push((e.height, hash));
        }
    }
    out
}

/// Takes a peer's `headers` message into the tree: the answer for p2p (how far it got, or
/// that the peer misbehaved), and whether the tree was touched (so the caller persists it).
pub fn take_headers(
    cs: &mut ChainState,
    peer: PeerId,
    headers: Vec<Header>,
    now: i64,
) -> (P2pCommand, bool) {
    let done = |last, more, unconnected| P2pCommand::HeadersDone {
        peer,
        last,
        more,
        unconnected,
    };
    let Some(first) = headers.first() else {
        return (done(None, false, false), false);
    };
    if headers
        .windows(2)
        .any(|w| w[1].prev_blockhash != w[0].block_hash())
    {
        let reason = "non-continuous headers sequence".to_string();
        return (P2pCommand::Misbehaved { peer, reason }, false);
    }
    if cs.tree().get(&first.prev_blockhash).is_none() {
        return (done(None, false, true), false);
    }
    let mut last = None;
    let mut invalid = None;
    for h in &headers {
        match cs.accept_header(h, now) {
            Ok(hash) => last = Some(hash),
            Err(r) => {
                if r.is_consensus() {
                    invalid = Some(r.reason);
                }
                break;
            }
        }
    }
    if let Some(reason) = invalid {
        let reason = format!("invalid header: {reason}");
        return (P2pCommand::Misbehaved { peer, reason }, true);
    }
    let last = last.and_then(|h| cs.tree().get(&h).map(|e| (h, e.height)));
    (done(last, headers.len() == MAX_HEADERS, false), true)
}

/// The summary p2p needs after a change; `connected` holds the headers connected since the last.
pub fn summary(cs: &ChainState, connected: &[Header], pruned: bool, now: i64) -> ChainSummary {
    let (tip, height) = cs.tip();
    let (best, best_entry) = cs.tree().best_header();
    let tip_time = cs.tree().get(&tip).map(|e| e.header.time).unwrap_or(0);
    ChainSummary {
        tip: (tip, height),
        best_header: (best, best_entry.height),
        locator: cs.tree().locator(&best),
        // Blocks found corrupt come first: they are below the tip.
        wanted: cs.refetching().copied().chain(wanted(cs)).collect(),
        connected: if connected.len() <= MAX_ANNOUNCE_HEADERS {
            connected.to_vec()
        } else {
            Vec::new()
        },
        ibd: i64::from(tip_time) + MAX_TIP_AGE_SECS < now,
        pruned,
        paused: false,
    }
}

/// What the mempool did since the last call, into `report` for relay (entries that came and went
/// in between are left out), with the pool's floor at `now_unix`; the events, for metrics.
pub fn mempool_delta(
    cs: &mut ChainState,
    report: &mut MempoolDelta,
    now_unix: i64,
) -> Vec<crate::mempool::pool::Event> {
    use crate::mempool::pool::Event;
    let events = cs.mempool.take_events();
    for e in &events {
        match *e {
            Event::Added(txid) => {
                if let Some(entry) = cs.mempool.get(&txid) {
                    report.changes.push(MempoolChange::Added(RelayTx {
                        tx: entry.tx.clone(),
                        txid,
                        wtxid: entry.wtxid,
                        fee_rate: entry.fee_rate(),
                        ancestors: entry.parents.len(),
                    }));
                }
            }
            Event::Removed(txid, _) => report.changes.push(MempoolChange::Removed(txid)),
        }
    }
    report.floor = cs.mempool.floor(now_unix);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::mining::op_true_payout;
    use crate::chain::params::Params;
    use crate::config::Chain;
    use bitcoin::hashes::Hash;

    const NOW: i64 = 1_700_000_000;

    fn mined(n: u32) -> (ChainState, Vec<Block>) {
        let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
        let mut blocks = Vec::new();
        for i in 0..n {
            let (b, _) = cs
                .mine(op_true_payout(), vec![], NOW + i64::from(i))
                .unwrap();
            blocks.push(b);
        }
        (cs, blocks)
    }

    #[test]
    fn getheaders_starts_after_the_fork_and_honours_stop() {
        let (cs, blocks) = mined(30);
        let genesis = cs.tree().genesis();
        let all = headers_after(&cs, &[genesis], &BlockHash::from_byte_array([0; 32]));
        assert_eq!(all.len(), 30);
        // An unknown hash first: the next locator entry decides.
        let unknown = BlockHash::from_byte_array([7; 32]);
        let from_10 = headers_after(
            &cs,
            &[unknown, blocks[9].block_hash()],
            &blocks[14].block_hash(),
        );
        assert_eq!(from_10.len(), 5);
        assert_eq!(from_10[0], blocks[10].header);
        assert_eq!(
            headers_after(&cs, &[], &blocks[3].block_hash()),
            vec![blocks[3].header]
        );
        assert!(headers_after(&cs, &[blocks[29].block_hash()], &unknown).is_empty());
    }

    #[test]
    fn getblocks_lists_500_hashes_after_the_fork_and_stops_before_stop() {
        let (cs, blocks) = mined(600);
        let genesis = cs.tree().genesis();
        let zero = BlockHash::from_byte_array([0; 32]);
        let first = blocks_after(&cs, &[genesis], &zero);
        assert_eq!(first.len(), MAX_GETBLOCKS);
        assert_eq!(first[0], blocks[0].block_hash());
        let rest = blocks_after(&cs, &[*first.last().unwrap(), genesis], &zero);
        assert_eq!(rest.len(), 100);
        assert_eq!(rest[0], blocks[500].block_hash());
        let to_stop = blocks_after(&cs, &[blocks[9].block_hash()], &blocks[14].block_hash());
        assert_eq!(
            to_stop,
            blocks[10..14]
                .iter()
                .map(Block::block_hash)
                .collect::<Vec<_>>()
        );
        // No locator hash known: from genesis, as Core does.
        let unknown = BlockHash::from_byte_array([7; 32]);
        assert_eq!(
            blocks_after(&cs, &[unknown], &zero)[0],
            blocks[0].block_hash()
        );
    }

    #[test]
    fn wanted_is_the_window_of_missing_blocks_on_the_best_header_chain() {
        let (full, blocks) = mined(20);
        let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
        for b in &blocks {
            cs.accept_header(&b.header, NOW + 100).unwrap();
        }
        let w = wanted(&cs);
        assert_eq!(w.len(), 20);
        assert_eq!(w[0], (1, blocks[0].block_hash()));
        // Out of order: block 3 stored before 1 and 2; it is no longer wanted, 1 and 2 are.
        cs.submit_block(blocks[2].clone(), NOW + 100).unwrap();
        let w = wanted(&cs);
        assert_eq!(w.len(), 19);
        assert!(!w.iter().any(|(_, h)| *h == blocks[2].block_hash()));
        for b in &blocks[..2] {
            cs.submit_block(b.clone(), NOW + 100).unwrap();
        }
        assert_eq!(
            cs.tip().1,
            3,
            "the stored block connected once its parents came"
        );
        assert_eq!(wanted(&cs)[0].0, 4);
        let s = summary(&full, &[], false, NOW + 100);
        assert!(s.wanted.is_empty() && !s.ibd);
        assert!(summary(&full, &[], false, NOW + MAX_TIP_AGE_SECS + 100).ibd);
    }

    #[test]
    fn getdata_strips_witness_unless_asked_and_reports_missing() {
        let (cs, blocks) = mined(2);
        let h = blocks[1].block_hash();
        let unknown = BlockHash::from_byte_array([9; 32]);
        let out = blocks_for(
            &cs,
            &[
                Inventory::WitnessBlock(h),
                Inventory::Block(h),
                Inventory::Block(unknown),
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], NetworkMessage::Block(blocks[1].clone()));
        assert!(
            matches!(&out[1], NetworkMessage::Block(b) if b.txdata[0].input[0].witness.is_empty())
        );
        assert_eq!(
            out[2],
            NetworkMessage::NotFound(vec![Inventory::Block(unknown)])
        );
    }
}
