//! The mempool through a real node's JSON-RPC: `sendrawtransaction` with Core's codes,
//! `getrawmempool` (plain and verbose) and `getmempoolinfo`, and a block that confirms the
//! transaction (`generateblock` naming it by txid) taking it out.

mod harness;

use bitcoin::OutPoint;
use harness::chain::{hex, out, Wallet};
use harness::{address, NodeOptions, TestNode};
use serde_json::json;
use std::time::Duration;

const COIN: u64 = 100_000_000;

#[test]
fn a_transaction_enters_the_mempool_and_a_block_takes_it_out() {
    let mut node = TestNode::start_with(NodeOptions::default());
    node.wait_ready(Duration::from_secs(30));
    let w = Wallet::new(1);
    // address(1) is Wallet::new(1)'s P2WPKH: 101 blocks make coinbase 1 spendable.
    node.call("generatetoaddress", json!([101, address(1)]));
    let (op, prev) = node.coinbase(1);
    assert_eq!(prev.script_pubkey, w.p2wpkh());

    let cheap = w.spend(&[(op, prev.clone())], vec![out(50 * COIN - 50, w.p2tr())]);
    let err = node
        .rpc("sendrawtransaction", json!([hex(&cheap)]))
        .unwrap_err();
    assert_eq!(err["code"], -26, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("min relay fee not met"),
        "{err}"
    );

    let tx = w.spend(
        &[(op, prev.clone())],
        vec![out(50 * COIN - 2_000, w.p2tr())],
    );
    let txid = tx.compute_txid().to_string();
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&tx)])),
        json!(txid)
    );
    // Sent again: Core answers the txid.
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&tx)])),
        json!(txid)
    );
    assert_eq!(node.call("getrawmempool", json!([])), json!([txid]));
    // Core's mempool_sequence: one per entry and exit (the refused transaction counts nothing).
    assert_eq!(
        node.call("getrawmempool", json!([false, true])),
        json!({"txids": [txid], "mempool_sequence": 1})
    );
    let err = node.rpc("getrawmempool", json!([true, true])).unwrap_err();
    assert_eq!(err["code"], -8, "{err}");
    let verbose = node.call("getrawmempool", json!([true]));
    let entry = &verbose[&txid];
    assert_eq!(entry["fees"]["base"].as_f64().unwrap(), 0.00002);
    assert_eq!(entry["vsize"].as_u64().unwrap(), tx.vsize() as u64);
    assert_eq!(entry["ancestorcount"], 1);
    let info = node.call("getmempoolinfo", json!([]));
    assert_eq!(info["size"], 1);
    assert_eq!(info["bytes"].as_u64().unwrap(), tx.vsize() as u64);
    assert!(info["usage"].as_u64().unwrap() > 0);
    assert_eq!(info["total_fee"].as_f64().unwrap(), 0.00002);
    assert_eq!(node.metric("bllvm_mempool_transactions"), 1.0);
    assert_eq!(node.metric("bllvm_mempool_bytes"), tx.vsize() as f64);
    assert_eq!(
        node.metric("bllvm_mempool_usage_bytes"),
        info["usage"].as_f64().unwrap()
    );
    assert_eq!(node.metric("bllvm_mempool_min_fee_rate"), 1.0);

    // A child of it: entry, ancestors and descendants as Core shows them.
    let child = w.spend(
        &[(OutPoint::new(tx.compute_txid(), 0), tx.output[0].clone())],
        vec![out(50 * COIN - 5_000, w.p2wpkh())],
    );
    let child_id = child.compute_txid().to_string();
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&child)])),
        json!(child_id)
    );
    let entry = node.call("getmempoolentry", json!([child_id]));
    assert_eq!(entry["ancestorcount"], 2);
    assert_eq!(entry["depends"], json!([txid]));
    assert_eq!(entry["fees"]["ancestor"].as_f64().unwrap(), 0.00005);
    assert_eq!(
        node.call("getmempoolancestors", json!([child_id])),
        json!([txid])
    );
    assert_eq!(
        node.call("getmempooldescendants", json!([txid])),
        json!([child_id])
    );
    let verbose = node.call("getmempooldescendants", json!([txid, true]));
    assert_eq!(verbose[&child_id]["spentby"], json!([]));
    assert_eq!(
        node.call("getmempoolentry", json!([txid]))["spentby"],
        json!([child_id])
    );
    let unknown = "11".repeat(32);
    let err = node.rpc("getmempoolentry", json!([unknown])).unwrap_err();
    assert_eq!(err["code"], -5, "{err}");

    // A spend of a coin nobody has: -25.
    let missing = OutPoint::new(op.txid, 5);
    let ghost = w.spend(&[(missing, prev)], vec![out(COIN, w.p2wpkh())]);
    let err = node
        .rpc("sendrawtransaction", json!([hex(&ghost)]))
        .unwrap_err();
    assert_eq!(err["code"], -25, "{err}");

    // A block with both (named by txid) confirms them: the mempool is empty again, and sending
    // the child (its output unspent) now is -27. The parent's only output is spent: Core cannot
    // tell it from a missing input either (-25).
    node.call(
        "generateblock",
        json!([address(2), [txid.clone(), child_id.clone()]]),
    );
    assert_eq!(node.call("getrawmempool", json!([])), json!([]));
    assert_eq!(
        node.call("getrawmempool", json!([false, true]))["mempool_sequence"],
        4,
        "two in, two out"
    );
    assert_eq!(node.call("getmempoolinfo", json!([]))["size"], 0);
    assert_eq!(node.metric("bllvm_mempool_transactions"), 0.0);
    assert_eq!(
        node.metric("bllvm_mempool_removed_total{cause=\"block\"}"),
        2.0
    );
    let err = node
        .rpc("sendrawtransaction", json!([hex(&child)]))
        .unwrap_err();
    assert_eq!(err["code"], -27, "{err}");
    let err = node
        .rpc("sendrawtransaction", json!([hex(&tx)]))
        .unwrap_err();
    assert_eq!(err["code"], -25, "{err}");
}

/// `maxfeerate` (default 0.10 BTC/kvB; 0 for none) and `maxburnamount` (default 0) guard
/// against mistakes, as in Core: -25 until the caller says otherwise.
#[test]
fn maxfeerate_and_maxburnamount_guard_sendrawtransaction() {
    let mut node = TestNode::start_with(NodeOptions::default());
    node.wait_ready(Duration::from_secs(30));
    let w = Wallet::new(1);
    node.call("generatetoaddress", json!([102, address(1)]));
    // A whole coin of fee: far past 0.10 BTC/kvB.
    let (op, prev) = node.coinbase(1);
    let costly = w.spend(&[(op, prev)], vec![out(49 * COIN, w.p2wpkh())]);
    let err = node
        .rpc("sendrawtransaction", json!([hex(&costly)]))
        .unwrap_err();
    assert_eq!(err["code"], -25, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("maxfeerate"),
        "{err}"
    );
    let txid = costly.compute_txid().to_string();
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&costly), 0])),
        json!(txid)
    );
    // 1,000 sat into an OP_RETURN.
    let (op, prev) = node.coinbase(2);
    let burn = w.spend(
        &[(op, prev)],
        vec![
            out(50 * COIN - 10_000, w.p2wpkh()),
            out(1_000, bitcoin::ScriptBuf::new_op_return([7u8; 4])),
        ],
    );
    let err = node
        .rpc("sendrawtransaction", json!([hex(&burn)]))
        .unwrap_err();
    assert_eq!(err["code"], -25, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("maxburnamount"),
        "{err}"
    );
    let txid = burn.compute_txid().to_string();
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&burn), 0.10, 0.00001])),
        json!(txid)
    );
    assert_eq!(node.call("getmempoolinfo", json!([]))["size"], 2);
}
