//! electrs 0.12.0's initial index of the node, through REST and JSON-RPC: the time from
//! starting electrs to its index at the node's tip, for a chain of 2,000 blocks with 100
//! transactions a block (P2WPKH and P2TR spends). Rate limits are off: the figure is the
//! indexing, not the default per-address budget. `cargo bench --bench electrs`; under
//! `cargo test` a smoke run of a short chain.

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::electrs::Electrs;
use harness::{NodeOptions, TestNode};
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // 101 funding blocks and a fan-out block come first.
    let (spend_blocks, per_block) = if full { (1898, 100) } else { (3, 5) };
    let t = Instant::now();
    let blocks = harness::chain::spend_chain(spend_blocks, per_block);
    println!(
        "chain: {} blocks, {} transactions a block after the first 102 (built in {:.1?})",
        blocks.len(),
        per_block + 1,
        t.elapsed()
    );
    let node = TestNode::ready_with(NodeOptions {
        config: Some(
            "[rpc]\nrest = true\nrest_threads = 4\n[rpc.auth]\nrate_limit_enabled = false\n".into(),
        ),
        ..NodeOptions::default()
    });
    let t = Instant::now();
    for b in &blocks {
        node.submit(b);
    }
    println!(
        "node: {} blocks submitted and validated in {:.1?}",
        blocks.len(),
        t.elapsed()
    );
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    // The generated chain's timestamps are old: the node reports initial block download.
    let electrs = Electrs::start_with(&node, dir.path(), &["--skip-block-download-wait"]);
    let deadline = t + Duration::from_secs(if full { 3600 } else { 120 });
    while electrs.height() != Some(blocks.len() as u64) {
        assert!(
            Instant::now() < deadline && !electrs.exited(),
            "electrs did not index the chain; its log:\n{}",
            electrs.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    let (_, peak_kib) = harness::proc_kib(node.pid());
    println!(
        "electrs 0.12.0 initial index of {} blocks: {:.1?} ({:.0} blocks/s); node peak RSS {} MiB",
        blocks.len(),
        took,
        blocks.len() as f64 / took.as_secs_f64(),
        peak_kib / 1024
    );
}
