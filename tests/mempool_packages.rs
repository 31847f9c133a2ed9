//! Trying and packaging transactions through a real node's JSON-RPC, in Core's shapes:
//! `testmempoolaccept` (single and packages, nothing kept), `submitpackage` (a child paying for
//! a parent below the minimum fee, all or nothing), `prioritisetransaction`, and
//! `getrawtransaction` / `getnetworkinfo` for what the pool holds and charges.

mod harness;

use bitcoin::{OutPoint, Transaction};
use harness::chain::{hex, out, Wallet};
use harness::{address, NodeOptions, TestNode};
use serde_json::json;

const COIN: u64 = 100_000_000;

/// A funded node (coinbases 1 to 4 spendable) and its wallet.
fn funded() -> (TestNode, Wallet) {
    let node = TestNode::ready_with(NodeOptions::default());
    node.call("generatetoaddress", json!([103, address(1)]));
    (node, Wallet::new(1))
}

/// Coinbase `height` spent to the wallet, paying `fee`.
fn pay(node: &TestNode, w: &Wallet, height: u64, fee: u64) -> Transaction {
    let (op, prev) = node.coinbase(height);
    w.spend(&[(op, prev)], vec![out(50 * COIN - fee, w.p2wpkh())])
}

/// `parent`'s output spent to the wallet, paying `fee`.
fn child_of(w: &Wallet, parent: &Transaction, fee: u64) -> Transaction {
    let value = parent.output[0].value.to_sat();
    w.spend(
        &[(
            OutPoint::new(parent.compute_txid(), 0),
            parent.output[0].clone(),
        )],
        vec![out(value - fee, w.p2tr())],
    )
}

fn pool(node: &TestNode) -> usize {
    node.call("getmempoolinfo", json!([]))["size"]
        .as_u64()
        .unwrap() as usize
}

#[test]
fn testmempoolaccept_judges_single_transactions_and_packages_without_keeping_them() {
    let (node, w) = funded();
    let parent = pay(&node, &w, 1, 2_000);
    let child = child_of(&w, &parent, 3_000);
    let r = node.call("testmempoolaccept", json!([[hex(&parent), hex(&child)]]));
    assert_eq!(r[0]["allowed"], true, "{r}");
    assert_eq!(r[1]["allowed"], true, "{r}");
    assert_eq!(r[0]["txid"], json!(parent.compute_txid().to_string()));
    assert_eq!(r[0]["wtxid"], json!(parent.compute_wtxid().to_string()));
    assert_eq!(r[0]["vsize"], json!(parent.vsize()));
    assert_eq!(r[0]["fees"]["base"].as_f64().unwrap(), 0.00002);
    assert_eq!(
        r[1]["fees"]["effective-includes"],
        json!([child.compute_wtxid().to_string()])
    );
    assert_eq!(pool(&node), 0, "nothing kept");

    // Refusals: Core's reason, and "missing-inputs" for a missing parent; the first refusal
    // ends a package's trial.
    let cheap = pay(&node, &w, 2, 10);
    let r = node.call("testmempoolaccept", json!([[hex(&cheap)]]));
    assert_eq!(r[0]["allowed"], false);
    assert_eq!(r[0]["reject-reason"], "min relay fee not met");
    assert!(r[0]["reject-details"]
        .as_str()
        .unwrap()
        .starts_with("min relay fee not met, "));
    let r = node.call("testmempoolaccept", json!([[hex(&child)]]));
    assert_eq!(r[0]["reject-reason"], "missing-inputs", "{r}");
    let r = node.call("testmempoolaccept", json!([[hex(&cheap), hex(&parent)]]));
    assert_eq!(r[0]["allowed"], false);
    assert!(r[1].get("allowed").is_none(), "not evaluated: {r}");

    // Malformed packages: every entry says why.
    let r = node.call("testmempoolaccept", json!([[hex(&child), hex(&parent)]]));
    assert_eq!(r[0]["package-error"], "package-not-sorted", "{r}");
    assert_eq!(r[1]["package-error"], "package-not-sorted");
    let double = pay(&node, &w, 1, 5_000);
    let r = node.call("testmempoolaccept", json!([[hex(&parent), hex(&double)]]));
    assert_eq!(r[0]["package-error"], "conflict-in-package", "{r}");
    let many: Vec<String> = (0..26).map(|_| hex(&parent)).collect();
    let err = node.rpc("testmempoolaccept", json!([many])).unwrap_err();
    assert_eq!(err["code"], -8, "{err}");

    // maxfeerate: a fee above it is not allowed.
    let r = node.call("testmempoolaccept", json!([[hex(&parent)], 0.00001]));
    assert_eq!(r[0]["reject-reason"], "max-fee-exceeded", "{r}");

    // A transaction the pool holds replaced in a trial is back afterwards.
    node.call("sendrawtransaction", json!([hex(&parent)]));
    let r = node.call("testmempoolaccept", json!([[hex(&double)]]));
    assert_eq!(
        r[0]["allowed"], true,
        "a full-RBF replacement would pass: {r}"
    );
    assert_eq!(
        node.call("getrawmempool", json!([])),
        json!([parent.compute_txid().to_string()])
    );
    // Trials leave no trace in the sequence either: one entry so far.
    assert_eq!(
        node.call("getrawmempool", json!([false, true]))["mempool_sequence"],
        1
    );
}

#[test]
fn submitpackage_lets_a_child_pay_for_a_parent_below_the_minimum_fee() {
    let (node, w) = funded();
    // A parent paying nothing, and a child paying for both at about 15 sat/vB.
    let parent = pay(&node, &w, 1, 0);
    let child = child_of(&w, &parent, 3_300);
    let err = node
        .rpc("sendrawtransaction", json!([hex(&parent)]))
        .unwrap_err();
    assert!(err["message"]
        .as_str()
        .unwrap()
        .starts_with("min relay fee not met"));

    // A child too cheap to carry it: nothing enters.
    let stingy = child_of(&w, &parent, 150);
    let r = node.call("submitpackage", json!([[hex(&parent), hex(&stingy)]]));
    assert_eq!(r["package_msg"], "transaction failed", "{r}");
    let parent_result = &r["tx-results"][parent.compute_wtxid().to_string()];
    assert!(
        parent_result["error"]
            .as_str()
            .unwrap()
            .starts_with("min relay fee not met"),
        "{r}"
    );
    assert_eq!(pool(&node), 0);

    let r = node.call("submitpackage", json!([[hex(&parent), hex(&child)]]));
    assert_eq!(r["package_msg"], "success", "{r}");
    let results = &r["tx-results"];
    let p = &results[parent.compute_wtxid().to_string()];
    let c = &results[child.compute_wtxid().to_string()];
    assert_eq!(p["txid"], json!(parent.compute_txid().to_string()));
    assert_eq!(p["fees"]["base"].as_f64().unwrap(), 0.0);
    // Both carry the package's fee rate, and name both wtxids.
    assert_eq!(
        p["fees"]["effective-feerate"],
        c["fees"]["effective-feerate"]
    );
    let rate = p["fees"]["effective-feerate"].as_f64().unwrap();
    let expected = 3_300.0 * 1000.0 / (parent.vsize() + child.vsize()) as f64;
    assert!(
        (rate * 1e8 - expected.floor()).abs() < 1.0,
        "{rate} vs {expected}"
    );
    assert_eq!(
        c["fees"]["effective-includes"],
        json!([
            parent.compute_wtxid().to_string(),
            child.compute_wtxid().to_string()
        ])
    );
    assert_eq!(pool(&node), 2);
    // Mined together: the block takes the package by its ancestor fee rate.
    node.call("generatetoaddress", json!([1, address(2)]));
    assert_eq!(pool(&node), 0);

    // Not a child with its parents: refused before anything is tried.
    let a = pay(&node, &w, 2, 2_000);
    let b = pay(&node, &w, 3, 2_000);
    let err = node
        .rpc("submitpackage", json!([[hex(&a), hex(&b)]]))
        .unwrap_err();
    assert_eq!(err["code"], -25, "{err}");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("child-with-parents"));
}

#[test]
fn prioritisetransaction_changes_what_a_transaction_counts_as_paying() {
    let (node, w) = funded();
    let cheap = pay(&node, &w, 1, 50);
    let txid = cheap.compute_txid().to_string();
    // Prioritised before it arrives: the delta lets it in, as in Core.
    assert_eq!(
        node.call("prioritisetransaction", json!([txid, 0, 10_000])),
        json!(true)
    );
    assert_eq!(
        node.call("sendrawtransaction", json!([hex(&cheap)])),
        json!(txid)
    );
    let fees = &node.call("getmempoolentry", json!([txid]))["fees"];
    assert_eq!(fees["base"].as_f64().unwrap(), 0.0000005);
    assert_eq!(fees["modified"].as_f64().unwrap(), 0.0001005);
    let err = node
        .rpc("prioritisetransaction", json!([txid, 1, 100]))
        .unwrap_err();
    assert_eq!(err["code"], -8, "{err}");

    // What the pool holds is readable without a block hash.
    assert_eq!(
        node.call("getrawtransaction", json!([txid])),
        json!(hex(&cheap))
    );
    let verbose = node.call("getrawtransaction", json!([txid, true]));
    assert_eq!(verbose["txid"], json!(txid));
    assert!(verbose.get("blockhash").is_none());
    let err = node
        .rpc("getrawtransaction", json!(["11".repeat(32)]))
        .unwrap_err();
    assert_eq!(err["code"], -5);

    let net = node.call("getnetworkinfo", json!([]));
    assert_eq!(net["relayfee"].as_f64().unwrap(), 0.00001);
    assert_eq!(net["incrementalfee"].as_f64().unwrap(), 0.00001);
}

#[test]
fn estimatesmartfee_learns_from_what_this_node_saw_confirm() {
    let node = TestNode::ready_with(NodeOptions::default());
    // Coinbases 1 to 25 spendable in the next block.
    node.call("generatetoaddress", json!([125, address(1)]));
    let w = Wallet::new(1);
    let none = node.call("estimatesmartfee", json!([1]));
    assert_eq!(
        none,
        json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0})
    );
    // Twelve at 20 sat/vB confirm in the next block; twelve at 3 sat/vB wait one block more.
    // (The estimator wants ten samples at a rate; a block's decay takes a little off.)
    let fast: Vec<Transaction> = (1..=12).map(|h| pay(&node, &w, h, 20 * 110)).collect();
    let slow: Vec<Transaction> = (13..=24).map(|h| pay(&node, &w, h, 3 * 110)).collect();
    for t in fast.iter().chain(&slow) {
        node.call("sendrawtransaction", json!([hex(t)]));
    }
    let fast_ids: Vec<String> = fast.iter().map(|t| t.compute_txid().to_string()).collect();
    node.call("generateblock", json!([address(2), fast_ids]));
    node.call("generatetoaddress", json!([1, address(2)]));
    assert_eq!(pool(&node), 0);

    let sat_per_vb = |v: &serde_json::Value| v["feerate"].as_f64().unwrap() * 1e8 / 1000.0;
    let next = node.call("estimatesmartfee", json!([1]));
    assert_eq!(next["blocks"], 1, "{next}");
    assert!((19.0..=20.0).contains(&sat_per_vb(&next)), "{next}");
    let two = node.call("estimatesmartfee", json!([2, "economical"]));
    assert_eq!(two["blocks"], 2, "{two}");
    assert!((2.8..=3.0).contains(&sat_per_vb(&two)), "{two}");
    let far = node.call("estimatesmartfee", json!([500, "CONSERVATIVE"]));
    assert_eq!(far["blocks"], 48, "the longest target tracked: {far}");
    let err = node.rpc("estimatesmartfee", json!([0])).unwrap_err();
    assert_eq!(err["code"], -8, "{err}");
    let err = node
        .rpc("estimatesmartfee", json!([2, "fast"]))
        .unwrap_err();
    assert_eq!(err["code"], -8, "{err}");
}
