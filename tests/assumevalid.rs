//! `[validation] assumevalid` on the real node: a block whose forged signature lies below the
//! assumevalid block is accepted over P2P (headers first, as in sync), and the same chain is
//! refused by a node configured with `assumevalid = "0"`.

mod harness;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Block, BlockHash};
use bllvm_node::chain::mining::{build_block, grind, Template};
use harness::chain::{block_with, coinbase_utxo, out, regtest_chain, Wallet};
use harness::raw_peer::RawPeer;
use harness::{poll, NodeOptions, TestNode};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// 101 blocks, a block spending a coinbase with a signature from the wrong key, and a child.
fn chain_with_forged_spend() -> Vec<Block> {
    let w = Wallet::new(1);
    let cs = regtest_chain(&w, 101);
    let (op, prev) = coinbase_utxo(&cs, 1);
    let forged = w.spend_with(
        &Wallet::new(2),
        &[(op, prev)],
        vec![out(100_000_000, w.p2wpkh())],
    );
    let bad = block_with(&cs, w.p2wpkh(), vec![forged], |_| {});
    let t = Template {
        prev: bad.block_hash(),
        height: 103,
        time: bad.header.time + 1,
        bits: bad.header.bits,
        fees: 0,
    };
    let mut child = build_block(cs.params(), &t, w.p2wpkh(), vec![]);
    assert!(grind(&mut child.header));
    let mut blocks: Vec<Block> = (1..=101)
        .map(|h| cs.block(&cs.hash_at(h).unwrap()).unwrap())
        .collect();
    blocks.extend([bad, child]);
    blocks
}

/// Announces `blocks` by headers from a raw peer and serves every block the node asks for; the
/// peer is returned so the connection stays open while the node works through them.
fn feed(node: &TestNode, from: &str, blocks: &[Block]) -> RawPeer {
    let by_hash: HashMap<BlockHash, &Block> = blocks.iter().map(|b| (b.block_hash(), b)).collect();
    let mut peer = RawPeer::connect(from, node.p2p).unwrap();
    peer.handshake();
    peer.send(NetworkMessage::Headers(
        blocks.iter().map(|b| b.header).collect(),
    ))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = std::collections::HashSet::new();
    while served.len() < blocks.len() && Instant::now() < deadline {
        if let Some(NetworkMessage::GetData(items)) = peer.recv(Duration::from_millis(200)) {
            for item in items {
                let (Inventory::Block(h) | Inventory::WitnessBlock(h)) = item else {
                    continue;
                };
                if let Some(b) = by_hash.get(&h) {
                    if peer.send(NetworkMessage::Block((*b).clone())).is_err() {
                        return peer;
                    }
                    served.insert(h);
                }
            }
        }
    }
    peer
}

fn node(assumevalid: &str) -> TestNode {
    let mut n = TestNode::start_with(NodeOptions {
        config: Some(format!("[validation]\nassumevalid = \"{assumevalid}\"\n")),
        ..NodeOptions::default()
    });
    n.wait_ready(Duration::from_secs(30));
    n
}

#[test]
fn assumevalid_skips_scripts_below_it_and_zero_checks_them() {
    let blocks = chain_with_forged_spend();
    let tip = blocks.last().unwrap().block_hash();

    let trusting = node(&tip.to_string());
    trusting.wait_log(&format!("assumevalid {tip}"));
    let _peer = feed(&trusting, "127.70.0.1", &blocks);
    poll(
        Duration::from_secs(30),
        "the trusting node to reach 103",
        || (trusting.tip() == (103, tip.to_string())).then_some(()),
    );

    let strict = node("0");
    let _peer = feed(&strict, "127.70.0.2", &blocks);
    poll(
        Duration::from_secs(30),
        "the strict node to reject the forged spend",
        || {
            strict
                .log()
                .contains("mandatory-script-verify-flag-failed")
                .then_some(())
        },
    );
    assert_eq!(strict.tip().0, 101, "{}", strict.log());
}
