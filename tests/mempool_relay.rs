//! Transaction relay between real nodes and with a hand-driven peer: a payment sent to one node
//! reaches the others by `inv`/`getdata`/`tx` and leaves with the block that confirms it; an
//! orphan waits for its parent, which the node asks its sender for; a refused transaction is
//! not fetched again; `feefilter` is sent and honoured.

mod harness;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{OutPoint, Transaction};
use harness::chain::{hex, out, Wallet};
use harness::raw_peer::RawPeer;
use harness::{address, poll, NodeOptions, TestNode};
use serde_json::json;
use std::time::Duration;

const COIN: u64 = 100_000_000;
const WAIT: Duration = Duration::from_secs(60);

/// A node with 103 blocks paying `address(1)` (coinbases 1 to 4 spendable in the next block),
/// its tip current.
fn funded() -> TestNode {
    let node = TestNode::ready_with(NodeOptions::default());
    node.call("generatetoaddress", json!([103, address(1)]));
    node
}

/// Coinbase `height` of `node` spent by `w` to itself, paying `fee`.
fn payment(node: &TestNode, w: &Wallet, height: u64, fee: u64) -> Transaction {
    let (op, prev) = node.coinbase(height);
    w.spend(&[(op, prev)], vec![out(50 * COIN - fee, w.p2wpkh())])
}

fn wait_height(node: &TestNode, h: u64) {
    poll(WAIT, "the peer to sync", || {
        (node.tip().0 == h).then_some(())
    });
}

#[test]
fn a_payment_sent_to_one_node_reaches_the_others_and_leaves_with_its_block() {
    let a = funded();
    let b = TestNode::ready_with(NodeOptions::connect(&[&a]));
    let c = TestNode::ready_with(NodeOptions::connect(&[&b]));
    wait_height(&c, 103);
    let w = Wallet::new(1);
    let tx = payment(&a, &w, 1, 2_000);
    let txid = tx.compute_txid().to_string();
    // A child spending it, sent to the far end once the parent has arrived there.
    let child = w.spend(
        &[(OutPoint::new(tx.compute_txid(), 0), tx.output[0].clone())],
        vec![out(50 * COIN - 5_000, w.p2tr())],
    );
    assert_eq!(a.call("sendrawtransaction", json!([hex(&tx)])), json!(txid));
    poll(WAIT, "the payment to reach c", || {
        (c.mempool_ids() == [txid.clone()]).then_some(())
    });
    let child_id = child.compute_txid().to_string();
    c.call("sendrawtransaction", json!([hex(&child)]));
    let mut both = vec![txid.clone(), child_id.clone()];
    both.sort();
    poll(WAIT, "the child to travel back to a", || {
        (a.mempool_ids() == both).then_some(())
    });
    assert_eq!(b.mempool_ids(), both);
    assert!(c.metric("bllvm_mempool_accepted_total") >= 1.0);
    // Relay's own memory (its index of the pool, peers' announcements) is exported.
    assert!(c.metric("bllvm_p2p_relay_bytes") > 0.0);
    // A block with both, mined at a, empties every pool.
    a.call("generateblock", json!([address(2), [txid, child_id]]));
    for n in [&a, &b, &c] {
        poll(WAIT, "the block to clear the pool", || {
            n.mempool_ids().is_empty().then_some(())
        });
    }
    assert_eq!(
        c.metric("bllvm_mempool_removed_total{cause=\"block\"}"),
        2.0
    );
}

/// Pings and waits for the pong: everything the node sent before it has arrived.
fn round_trip(peer: &mut RawPeer, nonce: u64) -> Vec<NetworkMessage> {
    peer.send(NetworkMessage::Ping(nonce)).unwrap();
    let mut before = Vec::new();
    poll(WAIT, "pong", || {
        match peer.recv(Duration::from_millis(200)) {
            Some(NetworkMessage::Pong(n)) if n == nonce => Some(()),
            Some(other) => {
                before.push(other);
                None
            }
            None => None,
        }
    });
    before
}

fn getdata(msgs: &[NetworkMessage]) -> Vec<Inventory> {
    msgs.iter()
        .filter_map(|m| match m {
            NetworkMessage::GetData(items) => Some(items.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn an_orphan_waits_for_its_parent_which_is_asked_of_its_sender() {
    let node = funded();
    let w = Wallet::new(1);
    let parent = payment(&node, &w, 1, 2_000);
    let child = w.spend(
        &[(
            OutPoint::new(parent.compute_txid(), 0),
            parent.output[0].clone(),
        )],
        vec![out(50 * COIN - 5_000, w.p2tr())],
    );
    let mut peer = RawPeer::connect("127.3.0.1", node.p2p).unwrap();
    peer.handshake_relaying();
    peer.send(NetworkMessage::Tx(child.clone())).unwrap();
    let asked = peer
        .recv_matching(WAIT, |m| match m {
            NetworkMessage::GetData(items) => Some(items),
            _ => None,
        })
        .expect("the node asks for the missing parent");
    assert_eq!(
        asked,
        [Inventory::WitnessTransaction(parent.compute_txid())]
    );
    assert_eq!(node.metric("bllvm_mempool_orphans"), 1.0);
    assert!(node.mempool_ids().is_empty());
    peer.send(NetworkMessage::Tx(parent.clone())).unwrap();
    let mut both = vec![
        parent.compute_txid().to_string(),
        child.compute_txid().to_string(),
    ];
    both.sort();
    poll(WAIT, "parent and orphan to enter", || {
        (node.mempool_ids() == both).then_some(())
    });
    assert_eq!(node.metric("bllvm_mempool_orphans"), 0.0);
}

#[test]
fn a_refused_transaction_is_not_fetched_again_and_feefilter_is_honoured() {
    let node = funded();
    let w = Wallet::new(1);
    let mut peer = RawPeer::connect("127.4.0.1", node.p2p).unwrap();
    peer.handshake_relaying();
    // Below the minimum relay fee: refused.
    let cheap = payment(&node, &w, 1, 50);
    let inv = NetworkMessage::Inv(vec![Inventory::WTx(cheap.compute_wtxid())]);
    peer.send(inv.clone()).unwrap();
    let asked = peer.recv_matching(WAIT, |m| match m {
        NetworkMessage::GetData(items) => Some(items),
        _ => None,
    });
    assert_eq!(asked, Some(vec![Inventory::WTx(cheap.compute_wtxid())]));
    peer.send(NetworkMessage::Tx(cheap)).unwrap();
    let refused = "bllvm_mempool_rejected_total{reason=\"min relay fee not met\"}";
    poll(WAIT, "the refusal", || {
        (node.metric_opt(refused) == Some(1.0)).then_some(())
    });
    // Relay was told before the count moved; one round trip and it has taken the news.
    round_trip(&mut peer, 1);
    peer.send(inv).unwrap();
    let after = round_trip(&mut peer, 2);
    assert!(getdata(&after).is_empty(), "asked again: {after:?}");

    // feefilter: this peer wants nothing under 10 sat/vB; a 5 sat/vB payment from RPC is not
    // announced to it, a 20 sat/vB one is.
    peer.send(NetworkMessage::FeeFilter(10_000)).unwrap();
    round_trip(&mut peer, 3);
    let low = payment(&node, &w, 2, 5 * 110);
    let high = payment(&node, &w, 3, 20 * 110);
    node.call("sendrawtransaction", json!([hex(&low)]));
    node.call("sendrawtransaction", json!([hex(&high)]));
    let announced = peer
        .recv_matching(WAIT, |m| match m {
            NetworkMessage::Inv(items) => Some(items),
            _ => None,
        })
        .expect("an announcement");
    assert_eq!(announced, [Inventory::WTx(high.compute_wtxid())]);
    // The node's own filter: the minimum relay fee once out of initial block download.
    assert_eq!(node.mempool_ids().len(), 2);
}
