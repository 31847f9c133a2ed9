//! The P2P simulator's speed: many nodes' real protocol state machines and chains syncing a
//! chain mined on one of them (`tests/sim`), as simulated nodes x blocks per wall second.
//! `cargo bench --bench p2p_sim` for 10, 50 and 100 nodes x 1,000 blocks; under `cargo test` a
//! smoke run.

#[path = "../tests/sim/mod.rs"]
mod sim;

use sim::{NetConfig, Sim};
use std::time::{Duration, Instant};

fn run(nodes: usize, blocks: usize) {
    let started = Instant::now();
    let mut s = Sim::new(11, NetConfig::default(), nodes, 10.min(nodes - 1));
    s.run_for(Duration::from_secs(30));
    s.mine(0, blocks);
    let tip = s.tip(0).0;
    let synced = s.run_until(Duration::from_secs(3600), |s| {
        (0..s.len()).all(|i| s.tip(i).0 == tip)
    });
    assert!(synced, "not every node synced");
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{nodes} nodes x {blocks} blocks: {:.0} simulated s in {wall:.2} wall s, {} events, {:.0} node-blocks per wall s",
        s.elapsed().as_secs_f64(),
        s.events,
        (nodes * blocks) as f64 / wall
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        for nodes in [10, 50, 100] {
            run(nodes, 1000);
        }
    } else {
        run(10, 50);
    }
}
