//! kill -9 of the real node while it mines and connects blocks: every restart finds a
//! consistent chain, identical to a reference that replays the same blocks without crashing.

mod harness;

use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::params::Params;
use bllvm_node::chain::persist::ChainDb;
use bllvm_node::config::{Backend, Chain};
use bllvm_node::storage::open::open;
use harness::chain::Rng;
use harness::{json, poll, NodeOptions, TestNode};
use std::path::Path;
use std::time::Duration;

fn height(node: &TestNode) -> Option<u64> {
    let (_, body) = node.get("/health/detailed").ok()?;
    json(&body)["chain"]["height"].as_u64()
}

/// Opens the dead node's datadir in this process and checks it against a replay.
fn verify(netdir: &Path, backend: Backend) -> u32 {
    let params = Params::for_chain(Chain::Regtest);
    let store = open(netdir, backend, 0).unwrap().store;
    let (_, cs) = ChainDb::open(netdir, store, params.clone()).unwrap();
    let mut reference = ChainState::new(params);
    for h in 1..=cs.tip().1 {
        let block = cs
            .block(&cs.hash_at(h).unwrap())
            .expect("active block readable");
        // The node's clock was later than any block time: no time-too-new here.
        reference.submit_block(block, i64::MAX / 4).unwrap();
    }
    assert_eq!(reference.tip(), cs.tip());
    assert_eq!(reference.utxo_stats().unwrap(), cs.utxo_stats().unwrap());
    cs.tip().1
}

fn crash_rounds(backend: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let config = format!("[storage]\nbackend = \"{backend}\"\n[debug]\nmine_every_secs = 0.005\n");
    let be = if backend == "sled" {
        Backend::Sled
    } else {
        Backend::Redb
    };
    let mut rng = Rng(seed);
    let mut last = 0;
    for round in 0..20 {
        let mut node = TestNode::start_with(NodeOptions {
            datadir: Some(datadir.clone()),
            config: Some(config.clone()),
            ..NodeOptions::default()
        });
        node.wait_ready(Duration::from_secs(10));
        // Let it mine 1..=10 more blocks, then kill it wherever it is.
        let target = height(&node).unwrap() + 1 + rng.next() % 10;
        poll(Duration::from_secs(20), "blocks to be mined", || {
            height(&node).filter(|h| *h >= target)
        });
        node.signal(libc::SIGKILL);
        let _ = node.child.wait();
        let h = verify(&datadir.join("regtest"), be);
        assert!(
            h >= last,
            "round {round}: committed height fell from {last} to {h}"
        );
        last = h;
    }
    assert!(last >= 20, "the rounds made progress: {last}");
    eprintln!("{backend}: 20 kills of the running node, final consistent height {last}");
}

#[test]
fn node_killed_while_mining_restarts_consistent_redb() {
    crash_rounds("redb", 0xc0ffee01);
}

#[test]
fn node_killed_while_mining_restarts_consistent_sled() {
    crash_rounds("sled", 0xc0ffee02);
}

/// How a round asks the node for blocks.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Generate,
    GenerateBlock,
    Submit,
}

/// kill -9 right after each acknowledgement: the restarted node is never below what RPC
/// acknowledged (answers come only once the blocks are durable).
fn kill_after_acknowledgements(ask: Ask, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let blocks = harness::chain::fanout_chain(120, 0);
    let mut rng = Rng(seed);
    let mut acked = 0u64;
    for round in 0..12 {
        let mut node = TestNode::start_with(NodeOptions {
            datadir: Some(datadir.clone()),
            config: Some("[rpc.auth]\nrate_limit_enabled = false\n".into()),
            ..NodeOptions::default()
        });
        node.wait_ready(Duration::from_secs(10));
        let at = node.tip().0;
        assert!(
            at >= acked,
            "{ask:?} round {round}: restarted at height {at}, below the acknowledged {acked}"
        );
        // Blocks stored but not yet acknowledged when it died count from here on.
        acked = at;
        let n = 1 + rng.next() % 8;
        let addr = harness::address(1);
        for _ in 0..n {
            match ask {
                Ask::Generate => {
                    node.call("generatetoaddress", serde_json::json!([1, addr]));
                }
                Ask::GenerateBlock => {
                    node.call("generateblock", serde_json::json!([addr, []]));
                }
                Ask::Submit => node.submit(&blocks[acked as usize]),
            }
            acked += 1;
        }
        // Nothing in between: the kill follows the last answer at once.
        node.kill();
    }
    assert!(acked >= 12);
}

#[test]
fn kill_right_after_generatetoaddress_never_loses_an_acknowledged_block() {
    kill_after_acknowledgements(Ask::Generate, 0xacc01);
}

#[test]
fn kill_right_after_generateblock_never_loses_an_acknowledged_block() {
    kill_after_acknowledgements(Ask::GenerateBlock, 0xacc02);
}

#[test]
fn kill_right_after_submitblock_never_loses_an_acknowledged_block() {
    kill_after_acknowledgements(Ask::Submit, 0xacc03);
}
