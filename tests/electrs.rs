//! electrs 0.12.0, the Electrum server most node operators run, indexes the node through its
//! REST interface and JSON-RPC: from an empty index to the tip, following new blocks and a
//! reorg, with `blockchain.scripthash.get_history` right for an address paid in the chain.
//! The binary is built once per machine by scripts/test into ~/.cache/bllvm-node (or named by
//! BLLVM_ELECTRS); without it this test fails and says how to get it.

mod harness;

use harness::electrs::{scripthash, Electrs};
use harness::{address, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// A JSON-RPC call from 127.0.0.2: the test's own calls have their own rate-limit bucket,
/// so electrs (on 127.0.0.1) meets the default limits alone.
fn call(node: &TestNode, method: &str, params: Value) -> Value {
    let body = json!({"method": method, "params": params, "id": 1}).to_string();
    let auth = node.auth().unwrap();
    let src = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _, text) = harness::http_from(
            src,
            node.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            &body,
        )
        .unwrap();
        // The default per-address limit (100/s) holds for the test too: it waits its turn.
        if status == 429 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert_eq!(status, 200, "{method}: {text}");
        return harness::json(&text)["result"].clone();
    }
}

/// The coinbase txids paying `addr` in the node's active chain, with heights.
fn coinbases_to(node: &TestNode, addr: &str) -> Vec<(String, u64)> {
    let tip = call(node, "getblockcount", json!([])).as_u64().unwrap();
    let script = bitcoin::Address::from_str(addr)
        .unwrap()
        .assume_checked()
        .script_pubkey();
    (1..=tip)
        .filter_map(|h| {
            let hash = call(node, "getblockhash", json!([h]));
            let b = call(node, "getblock", json!([hash, 2]));
            let cb = &b["tx"][0];
            (cb["vout"][0]["scriptPubKey"]["hex"]
                == bitcoin::hex::DisplayHex::to_lower_hex_string(script.as_bytes()))
            .then(|| (cb["txid"].as_str().unwrap().to_owned(), h))
        })
        .collect()
}

#[test]
fn electrs_indexes_the_node_and_follows_new_blocks_and_a_reorg() {
    let node = TestNode::ready_with(NodeOptions {
        // The default rate limits: indexing bursts past them get 503, which electrs waits out.
        config: Some("[rpc]\nrest = true\n".into()),
        ..NodeOptions::default()
    });
    let (a, b) = (address(1), address(2));
    call(&node, "generatetoaddress", json!([101, a]));
    let dir = tempfile::tempdir().unwrap();
    let electrs = Electrs::start(&node, dir.path());
    let synced = |height: u64| {
        let deadline = std::time::Instant::now() + WAIT;
        while electrs.height() != Some(height) {
            assert!(
                std::time::Instant::now() < deadline && !electrs.exited(),
                "electrs did not reach height {height}; its log:\n{}",
                electrs.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    synced(101);
    assert_eq!(
        electrs.history(&a).unwrap(),
        coinbases_to(&node, &a),
        "{}",
        electrs.log()
    );

    // Three new blocks.
    call(&node, "generatetoaddress", json!([3, a]));
    synced(104);
    assert_eq!(electrs.history(&a).unwrap().len(), 104);

    // A reorg of two blocks: 103 and 104 replaced by three blocks paying b.
    let h103 = call(&node, "getblockhash", json!([103]));
    call(&node, "invalidateblock", json!([h103]));
    call(&node, "generatetoaddress", json!([3, b]));
    synced(105);
    let tip = call(&node, "getbestblockhash", json!([]));
    let header = electrs
        .call("blockchain.block.header", json!([105]))
        .unwrap();
    let raw = <Vec<u8> as bitcoin::hex::FromHex>::from_hex(header.as_str().unwrap()).unwrap();
    let header: bitcoin::block::Header = bitcoin::consensus::deserialize(&raw).unwrap();
    assert_eq!(header.block_hash().to_string(), tip.as_str().unwrap());
    assert_eq!(
        electrs.history(&a).unwrap(),
        coinbases_to(&node, &a),
        "orphaned coinbases gone"
    );
    assert_eq!(electrs.history(&a).unwrap().len(), 102);
    assert_eq!(electrs.history(&b).unwrap(), coinbases_to(&node, &b));
    assert_eq!(electrs.history(&b).unwrap().len(), 3);
}

/// A wallet broadcasting through electrs (`blockchain.transaction.broadcast`, which electrs
/// passes to the node's `sendrawtransaction`) sees its payment unconfirmed in electrs' history
/// (electrs reads the node's `getrawmempool`, `getmempoolentry` and `getrawtransaction`), then
/// confirmed once a block takes it; a package (`broadcast_package`, the node's `submitpackage`)
/// lets a child pay for a parent below the minimum fee.
#[test]
fn a_payment_broadcast_through_electrs_shows_unconfirmed_then_confirms() {
    use harness::chain::{out, Wallet};
    let node = TestNode::ready_with(NodeOptions {
        config: Some("[rpc]\nrest = true\n".into()),
        ..NodeOptions::default()
    });
    call(&node, "generatetoaddress", json!([102, address(1)]));
    let dir = tempfile::tempdir().unwrap();
    let electrs = Electrs::start(&node, dir.path());
    let wait = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let deadline = std::time::Instant::now() + WAIT;
        while !done() {
            assert!(
                std::time::Instant::now() < deadline && !electrs.exited(),
                "electrs: no {what}; its log:\n{}",
                electrs.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("sync", Box::new(|| electrs.height() == Some(102)));
    let history = |sh: &str| {
        electrs
            .call("blockchain.scripthash.get_history", json!([sh]))
            .unwrap_or(Value::Null)
    };

    let payer = Wallet::new(1);
    let payee = Wallet::new(3).p2wpkh();
    let (op, prev) = node.coinbase(1);
    let tx = payer.spend(
        &[(op, prev)],
        vec![out(50 * 100_000_000 - 5_000, payee.clone())],
    );
    let txid = tx.compute_txid().to_string();
    let sent = electrs
        .call(
            "blockchain.transaction.broadcast",
            json!([bitcoin::consensus::encode::serialize_hex(&tx)]),
        )
        .unwrap();
    assert_eq!(sent, json!(txid), "{}", electrs.log());
    assert_eq!(call(&node, "getrawmempool", json!([])), json!([txid]));
    let sh = scripthash(&payee);
    let unconfirmed = json!([{"tx_hash": txid, "height": 0, "fee": 5_000}]);
    wait(
        "unconfirmed entry",
        Box::new(|| history(&sh) == unconfirmed),
    );

    // A parent paying nothing and its child paying for both, as one package.
    let carol = Wallet::new(4);
    let (op2, prev2) = node.coinbase(2);
    let parent = payer.spend(&[(op2, prev2)], vec![out(50 * 100_000_000, carol.p2wpkh())]);
    let child = carol.spend(
        &[(
            bitcoin::OutPoint::new(parent.compute_txid(), 0),
            parent.output[0].clone(),
        )],
        vec![out(50 * 100_000_000 - 4_000, carol.p2tr())],
    );
    let hexes: Vec<String> = [&parent, &child]
        .iter()
        .map(|t| bitcoin::consensus::encode::serialize_hex(*t))
        .collect();
    let r = electrs
        .call("blockchain.transaction.broadcast_package", json!([hexes]))
        .unwrap();
    assert_eq!(r, json!({"success": true}), "{}", electrs.log());
    assert_eq!(
        call(&node, "getmempoolinfo", json!([]))["size"],
        3,
        "both in the node's pool"
    );

    call(&node, "generatetoaddress", json!([1, address(1)]));
    let confirmed = json!([{"tx_hash": txid, "height": 103}]);
    wait("confirmation", Box::new(|| history(&sh) == confirmed));
    assert_eq!(call(&node, "getrawmempool", json!([])), json!([]));
}
