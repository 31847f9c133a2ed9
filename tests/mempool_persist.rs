//! `mempool.dat` on a real node: written at a clean stop and by `savemempool`, loaded at start
//! and revalidated (expired and invalid entries are dropped), a corrupt file logged and skipped,
//! a kill -9 leaving the last saved pool (and a torn temporary file) harmless.

mod harness;

use bitcoin::{OutPoint, Transaction};
use bllvm_node::mempool::dump::{self, Dumped};
use harness::chain::{hex, out, Wallet};
use harness::{address, poll, NodeOptions, TestNode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const COIN: u64 = 100_000_000;
const WAIT: Duration = Duration::from_secs(60);

fn file(node: &TestNode) -> PathBuf {
    node.datadir.join("regtest").join("mempool.dat")
}

/// A node on `datadir` with `config`, once its mempool has loaded.
fn loaded(datadir: &Path, config: &str) -> TestNode {
    let node = TestNode::ready_on(datadir, config);
    poll(WAIT, "the mempool to load", || {
        node.call("getmempoolinfo", json!([]))["loaded"]
            .as_bool()
            .unwrap()
            .then_some(())
    });
    node
}

/// A funded node (coinbases 1-3 spendable) on a datadir the test keeps, and a payment and its
/// child in its pool.
fn with_pool() -> (tempfile::TempDir, TestNode, Wallet, Vec<Transaction>) {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::ready_with(NodeOptions {
        datadir: Some(dir.path().join("data")),
        ..NodeOptions::default()
    });
    node.call("generatetoaddress", json!([103, address(1)]));
    let w = Wallet::new(1);
    let (op, prev) = node.coinbase(1);
    let parent = w.spend(&[(op, prev)], vec![out(50 * COIN - 2_000, w.p2wpkh())]);
    let child = w.spend(
        &[(
            OutPoint::new(parent.compute_txid(), 0),
            parent.output[0].clone(),
        )],
        vec![out(50 * COIN - 5_000, w.p2tr())],
    );
    for t in [&parent, &child] {
        node.call("sendrawtransaction", json!([hex(t)]));
    }
    (dir, node, w, vec![parent, child])
}

fn ids(txs: &[&Transaction]) -> Vec<String> {
    let mut v: Vec<String> = txs.iter().map(|t| t.compute_txid().to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_pool_survives_a_clean_restart_and_can_be_turned_off() {
    let (_dir, node, _, txs) = with_pool();
    let datadir = node.datadir.clone();
    let path = file(&node);
    node.stop();
    let saved = dump::read(&path).expect("written at shutdown");
    // Parents first, so the file loads in order.
    let order: Vec<_> = saved.txs.iter().map(|d| d.tx.compute_txid()).collect();
    assert_eq!(order, [txs[0].compute_txid(), txs[1].compute_txid()]);

    let node = loaded(&datadir, "");
    assert_eq!(node.mempool_ids(), ids(&[&txs[0], &txs[1]]));
    assert!(node.log().contains("loading 2 transactions"));
    node.stop();

    let node = loaded(&datadir, "[mempool]\npersist_mempool = false\n");
    assert!(
        node.mempool_ids().is_empty(),
        "persistence off: nothing loaded"
    );
    node.stop();
    assert_eq!(dump::read(&path).unwrap(), saved, "and the file left alone");
}

#[test]
fn loaded_entries_are_revalidated_and_expired_ones_dropped() {
    let (_dir, node, w, txs) = with_pool();
    let datadir = node.datadir.clone();
    let path = file(&node);
    let now = txs_time(&node);
    // A second payment that would be valid, but entered 400 hours ago: past the expiry.
    let (op, prev) = node.coinbase(2);
    let old = w.spend(&[(op, prev)], vec![out(50 * COIN - 3_000, w.p2wpkh())]);
    // One spending an output that does not exist.
    let bogus = w.spend(
        &[(OutPoint::new(old.compute_txid(), 7), old.output[0].clone())],
        vec![out(COIN, w.p2wpkh())],
    );
    node.stop();
    let mut d = dump::read(&path).unwrap();
    d.txs.push(Dumped {
        tx: bogus,
        time: now,
        fee_delta: 0,
    });
    // Last, so nothing entering after it would expire it anyway.
    d.txs.push(Dumped {
        tx: old,
        time: now - 400 * 3600,
        fee_delta: 0,
    });
    dump::write(&path, &d).unwrap();
    let node = loaded(&datadir, "");
    assert_eq!(node.mempool_ids(), ids(&[&txs[0], &txs[1]]));
    // The expired entry was never taken in (and so never announced), not taken in and expired.
    assert_eq!(node.metric("bllvm_mempool_accepted_total"), 2.0);
    node.stop();
}

/// The time the node's pool says its first entry entered.
fn txs_time(node: &TestNode) -> i64 {
    let v = node.call("getrawmempool", json!([true]));
    let (_, e) = v.as_object().unwrap().iter().next().unwrap();
    e["time"].as_i64().unwrap()
}

#[test]
fn a_corrupt_file_is_logged_and_skipped() {
    let (_dir, node, _, _) = with_pool();
    let datadir = node.datadir.clone();
    let path = file(&node);
    node.stop();
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let node = loaded(&datadir, "");
    assert!(node.mempool_ids().is_empty());
    node.wait_log("mempool not loaded, starting empty");
    // A new pool replaces it at the next stop.
    node.stop();
    assert!(dump::read(&path).unwrap().txs.is_empty());
}

#[test]
fn after_kill_9_the_last_saved_pool_loads_and_a_torn_write_is_ignored() {
    let (_dir, mut node, w, txs) = with_pool();
    let datadir = node.datadir.clone();
    let path = file(&node);
    let saved = node.call("savemempool", json!([]));
    assert_eq!(saved["filename"], json!(path.display().to_string()));
    // Entered after the save: a crash loses it, as in Core.
    let (op, prev) = node.coinbase(2);
    let later = w.spend(&[(op, prev)], vec![out(50 * COIN - 3_000, w.p2wpkh())]);
    node.call("sendrawtransaction", json!([hex(&later)]));
    node.kill();
    // A write cut short by the crash leaves its temporary file; it is never read.
    std::fs::write(path.with_extension("dat.new"), b"torn").unwrap();
    let node = loaded(&datadir, "");
    assert_eq!(node.mempool_ids(), ids(&[&txs[0], &txs[1]]));
    node.stop();
}
