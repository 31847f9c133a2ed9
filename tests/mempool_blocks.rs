//! Blocks from the mempool on a real node: `getblocktemplate` lists pool transactions by
//! ancestor feerate (a child paying for its parent goes first, parent before child) with BIP22's
//! `depends`, fees and the witness commitment, and a block a miner builds from it is accepted;
//! `generatetoaddress` takes the same transactions.

mod harness;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{
    absolute, transaction, Amount, Block, CompactTarget, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};
use bllvm_node::chain::mining::{grind, update_merkle_root};
use harness::chain::{hex, out, Wallet};
use harness::{address, NodeOptions, TestNode};
use serde_json::{json, Value};

const COIN: u64 = 100_000_000;

/// A funded node with three pool transactions: a parent at 2 sat/vB, its child at 40 sat/vB and
/// an unrelated one at 10 sat/vB. Returned in the order a block should take them.
fn pool() -> (TestNode, Vec<Transaction>) {
    let node = TestNode::ready_with(NodeOptions::default());
    node.call("generatetoaddress", json!([103, address(1)]));
    let w = Wallet::new(1);
    let spend = |op: OutPoint, prev: TxOut, rate: u64| {
        // 1-in-1-out P2WPKH is 110 vB.
        let fee = rate * 110;
        w.spend(
            &[(op, prev.clone())],
            vec![out(prev.value.to_sat() - fee, w.p2wpkh())],
        )
    };
    let (op1, prev1) = node.coinbase(1);
    let parent = spend(op1, prev1, 2);
    let child = spend(
        OutPoint::new(parent.compute_txid(), 0),
        parent.output[0].clone(),
        40,
    );
    let (op2, prev2) = node.coinbase(2);
    let other = spend(op2, prev2, 10);
    for t in [&parent, &child, &other] {
        node.call("sendrawtransaction", json!([hex(t)]));
    }
    (node, vec![parent, child, other])
}

fn template(node: &TestNode) -> Value {
    node.call("getblocktemplate", json!([{"rules": ["segwit"]}]))
}

#[test]
fn getblocktemplate_orders_by_ancestor_feerate_and_a_block_built_from_it_is_accepted() {
    let (node, txs) = pool();
    let t = template(&node);
    let listed: Vec<&str> = t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["txid"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = txs.iter().map(|t| t.compute_txid().to_string()).collect();
    assert_eq!(listed, expected);
    assert_eq!(
        t["transactions"][1]["depends"],
        json!([1]),
        "the child spends entry 1"
    );
    assert_eq!(t["transactions"][0]["depends"], json!([]));
    let fees: u64 = t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["fee"].as_u64().unwrap())
        .sum();
    assert_eq!(fees, (2 + 40 + 10) * 110);
    assert_eq!(t["coinbasevalue"].as_u64().unwrap(), 50 * COIN + fees);

    // A miner's block: its own coinbase (BIP34 height, the template's value and commitment),
    // then the template's transactions as given.
    let height = t["height"].as_i64().unwrap();
    let commitment =
        ScriptBuf::from_hex(t["default_witness_commitment"].as_str().unwrap()).unwrap();
    let coinbase = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: bitcoin::script::Builder::new()
                .push_int(height)
                .push_opcode(bitcoin::opcodes::OP_0)
                .into_script(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(t["coinbasevalue"].as_u64().unwrap()),
                script_pubkey: Wallet::new(2).p2wpkh(),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment,
            },
        ],
    };
    let data = t["transactions"].as_array().unwrap().iter().map(|x| {
        bitcoin::consensus::encode::deserialize_hex::<Transaction>(x["data"].as_str().unwrap())
            .unwrap()
    });
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(t["version"].as_i64().unwrap() as i32),
            prev_blockhash: t["previousblockhash"].as_str().unwrap().parse().unwrap(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: t["curtime"].as_u64().unwrap() as u32,
            bits: CompactTarget::from_unprefixed_hex(t["bits"].as_str().unwrap()).unwrap(),
            nonce: 0,
        },
        txdata: std::iter::once(coinbase).chain(data).collect(),
    };
    update_merkle_root(&mut block);
    assert!(grind(&mut block.header));
    node.submit(&block);
    assert_eq!(node.tip().1, block.block_hash().to_string());
    assert_eq!(node.call("getrawmempool", json!([])), json!([]));
}

#[test]
fn generatetoaddress_takes_the_mempool_in_the_same_order() {
    let (node, txs) = pool();
    let hashes = node.call("generatetoaddress", json!([1, address(3)]));
    let block = node.call("getblock", json!([hashes[0], 1]));
    let mined: Vec<&str> = block["tx"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|x| x.as_str().unwrap())
        .collect();
    let expected: Vec<String> = txs.iter().map(|t| t.compute_txid().to_string()).collect();
    assert_eq!(mined, expected);
    assert_eq!(node.call("getrawmempool", json!([])), json!([]));
    // The coinbase collected the fees.
    let full = node.call("getblock", json!([hashes[0], 2]));
    let paid = (full["tx"][0]["vout"][0]["value"].as_f64().unwrap() * 1e8).round() as u64;
    assert_eq!(paid, 50 * COIN + (2 + 40 + 10) * 110);
}
