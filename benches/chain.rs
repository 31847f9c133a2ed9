//! Chain figures: header validation and block connection per second on a generated regtest
//! chain (P2WPKH and P2TR spends), with and without script checks, in memory and on redb; RSS.
//! `cargo bench --bench chain` for 2,000 blocks of ~100 transactions; under `cargo test` a smoke run.
//! Then scale: with a long header chain known (100,000 headers; `BENCH_SCALE_HEADERS` to change),
//! the cost of accepting the headers, connecting blocks below them, and reloading the index.

#[path = "../tests/harness/mod.rs"]
mod harness;

use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::header_tree::{HeaderTree, Validity};
use bllvm_node::chain::mining::{build_block, grind, op_true_payout, Template};
use bllvm_node::chain::params::Params;
use bllvm_node::chain::persist::ChainDb;
use bllvm_node::config::Chain;
use bllvm_node::storage::redb_store::RedbStore;
use harness::chain::{spend_chain, NOW};
use std::sync::Arc;
use std::time::Instant;

fn rss_kib() -> (u64, u64) {
    harness::proc_kib(std::process::id() as i32)
}

fn rate(n: usize, t: Instant) -> String {
    let s = t.elapsed().as_secs_f64();
    format!("{n} in {s:.2} s = {:.0}/s", n as f64 / s)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (blocks, per_block) = if full { (2000, 100) } else { (20, 10) };
    let t = Instant::now();
    let chain = spend_chain(blocks, per_block);
    let txs: usize = chain.iter().map(|b| b.txdata.len()).sum();
    let bytes: usize = chain
        .iter()
        .map(|b| bitcoin::consensus::serialize(b).len())
        .sum();
    println!(
        "generated {} blocks, {txs} transactions, {:.1} MB in {:.1} s",
        chain.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let params = Params::for_chain(Chain::Regtest);

    let mut tree = HeaderTree::new(params.clone());
    let t = Instant::now();
    for b in &chain {
        tree.accept(&b.header, NOW).unwrap();
    }
    println!("header validation: {}", rate(chain.len(), t));

    for (label, assume) in [
        ("with script checks", false),
        ("without script checks (assumevalid)", true),
    ] {
        let mut cs = ChainState::new(params.clone());
        if assume {
            for b in &chain {
                cs.accept_header(&b.header, NOW).unwrap();
            }
            cs.assume_valid = chain.last().map(|b| b.block_hash());
        }
        let t = Instant::now();
        for b in &chain {
            cs.submit_block(b.clone(), NOW).unwrap();
        }
        println!(
            "connect in memory, {label}: {} blocks ({:.1} MB/s)",
            rate(chain.len(), t),
            bytes as f64 / 1e6 / t.elapsed().as_secs_f64()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let (mut db, mut cs) = ChainDb::open(dir.path(), store, params.clone()).unwrap();
    for b in &chain {
        cs.accept_header(&b.header, NOW).unwrap();
    }
    cs.assume_valid = chain.last().map(|b| b.block_hash());
    let t = Instant::now();
    for b in &chain {
        let (_, updates) = cs.submit_block(b.clone(), NOW).unwrap();
        db.persist(&mut cs, &updates).unwrap();
    }
    println!(
        "connect and persist on redb (fsync per block), no script checks: {} blocks",
        rate(chain.len(), t)
    );
    let (rss, peak) = rss_kib();
    // This is the bench process, not a node: the generated chain it holds is in these figures.
    println!(
        "bench process RSS {:.0} MiB, peak {:.0} MiB (the generated chain is held in it too); the chain state's own UTXO cache {:.1} MiB",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        cs.utxo_cache_bytes() as f64 / (1024.0 * 1024.0)
    );
    scale(&params, full);
}

/// `n` coinbase-only blocks on genesis, one second apart from `NOW`.
fn empty_chain(params: &Params, n: u32) -> Vec<bitcoin::Block> {
    let bits = params.genesis.header.bits;
    let mut prev = params.genesis.block_hash();
    (1..=n)
        .map(|height| {
            let t = Template {
                prev,
                height,
                time: NOW as u32 + height,
                bits,
                fees: 0,
            };
            let mut b = build_block(params, &t, op_true_payout(), vec![]);
            assert!(grind(&mut b.header));
            prev = b.block_hash();
            b
        })
        .collect()
}

/// What a long header chain costs: headers-first acceptance, connecting blocks with the rest of
/// the headers known (IBD's shape), and rebuilding the tree from the index in storage order.
fn scale(params: &Params, full: bool) {
    let n: u32 = std::env::var("BENCH_SCALE_HEADERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 500 });
    let connect = if full { 2_000 } else { 50 };
    let t = Instant::now();
    let chain = empty_chain(params, n);
    println!(
        "scale: generated {n} empty blocks in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let now = NOW + i64::from(n) + 1;
    let mut cs = ChainState::new(params.clone());
    let t = Instant::now();
    for b in &chain {
        cs.accept_header(&b.header, now).unwrap();
    }
    println!("scale: accept {} headers", rate(chain.len(), t));
    let t = Instant::now();
    for b in &chain[..connect] {
        cs.submit_block(b.clone(), now).unwrap();
    }
    println!(
        "scale: connect {} blocks with {n} headers known",
        rate(connect, t)
    );
    // The index comes back from storage in key (hash) order, not parent before child.
    let mut items: Vec<_> = cs
        .tree()
        .iter()
        .map(|(h, e)| (*h, (e.header, Validity::Header, e.have_data)))
        .collect();
    items.sort_by_key(|(h, _)| *h);
    let items: Vec<_> = items.into_iter().map(|(_, i)| i).collect();
    let t = Instant::now();
    let tree = HeaderTree::from_persisted(params.clone(), items);
    assert_eq!(tree.len(), n as usize + 1);
    println!(
        "scale: rebuild the header tree from {} stored entries in {:.2} s",
        tree.len(),
        t.elapsed().as_secs_f64()
    );
}
