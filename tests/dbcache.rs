//! `dbcache_mb` bounds the UTXO cache of the real node while the set grows far past it, and the
//! bounded node's UTXO set equals an unbounded node's on the same chain.

mod harness;

use harness::{NodeOptions, TestNode};
use serde_json::json;
use std::time::Duration;

fn node_with(config: &str) -> TestNode {
    let mut n = TestNode::start_with(NodeOptions {
        config: Some(config.into()),
        ..NodeOptions::default()
    });
    n.wait_ready(Duration::from_secs(30));
    n
}

fn utxo_set(n: &TestNode) -> serde_json::Value {
    let mut s = n.call("gettxoutsetinfo", json!([]));
    // Size on disk differs between the nodes by design; the set itself must not.
    s.as_object_mut().unwrap().remove("disk_size");
    s
}

#[test]
fn a_small_dbcache_bounds_the_cache_and_keeps_every_coin() {
    // 100 fan-out blocks of 3,000 outputs: 300,000 coins, about 40 MB of cache entries, ten
    // times Core's smallest dbcache (4 MiB).
    let chain = harness::chain::fanout_chain(200, 3_000);
    let small = node_with("[storage]\ndbcache_mb = 4\n");
    let big = node_with("[storage]\ndbcache_mb = 16384\n");
    let budget = 4.0 * 1024.0 * 1024.0;
    assert_eq!(small.metric("bllvm_utxo_cache_budget_bytes"), budget);
    let mut peak: f64 = 0.0;
    for block in &chain {
        small.submit(block);
        big.submit(block);
        let cached = small.metric("bllvm_utxo_cache_bytes");
        assert!(
            cached <= budget,
            "cache at {cached} bytes over a {budget} byte budget after block {}",
            block.block_hash()
        );
        peak = peak.max(cached);
    }
    let unbounded = big.metric("bllvm_utxo_cache_bytes");
    assert!(
        unbounded > 5.0 * budget,
        "the set ({unbounded} bytes in the unbounded cache) must outgrow the budget for this test to mean anything"
    );
    assert!(
        peak > budget / 2.0,
        "the bounded cache was used ({peak} bytes at most)"
    );
    let set = utxo_set(&small);
    assert_eq!(set["txouts"], json!(100 + 100 * 3_000), "{set}");
    assert_eq!(set, utxo_set(&big));
    // A coin from the first fan-out block, long evicted, is still found.
    let first_fanout = chain[100].txdata[1].compute_txid().to_string();
    let coin = small.call("gettxout", json!([first_fanout, 7]));
    assert_eq!(coin, big.call("gettxout", json!([first_fanout, 7])));
    assert!(coin["value"].as_f64().unwrap() > 0.0, "{coin}");
}
