//! Protocol details a standard peer relies on, checked with a hand-driven peer against a real
//! node: messages before the handshake are ignored (as Core does), `getaddr` is answered in the
//! format the peer negotiated, and `getblocks` is answered with an `inv` of the next hashes.

mod common;
mod support;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, Inventory};
use bitcoin::BlockHash;
use common::{address, NodeOptions, TestNode};
use serde_json::json;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;
use support::raw_peer::RawPeer;

const WAIT: Duration = Duration::from_secs(10);

/// A node that knows two addresses (added nodes nobody listens on).
fn node_knowing_addresses() -> (TestNode, Vec<SocketAddr>) {
    let known: Vec<SocketAddr> = vec![
        "127.61.0.1:18444".parse().unwrap(),
        "127.62.0.1:18444".parse().unwrap(),
    ];
    let mut node = TestNode::start_with(NodeOptions {
        args: known
            .iter()
            .flat_map(|a| ["--addnode".to_owned(), a.to_string()])
            .collect(),
        ..NodeOptions::default()
    });
    node.wait_ready(WAIT);
    (node, known)
}

#[test]
fn getaddr_is_answered_as_addrv2_or_addr_as_negotiated() {
    let (node, known) = node_knowing_addresses();

    let mut v2 = RawPeer::connect("127.51.0.1", node.p2p).unwrap();
    v2.handshake_with(&[NetworkMessage::SendAddrV2]);
    v2.send(NetworkMessage::GetAddr).unwrap();
    let got = v2
        .recv_matching(WAIT, |m| match m {
            NetworkMessage::AddrV2(list) => Some(list),
            NetworkMessage::Addr(_) => panic!("addr to a peer that sent sendaddrv2"),
            _ => None,
        })
        .expect("an addrv2 answer");
    let mut addrs: Vec<SocketAddr> = got.iter().map(|a| a.socket_addr().unwrap()).collect();
    addrs.sort();
    assert_eq!(addrs, known);
    assert!(
        got.iter().all(|a| a.time > 1_700_000_000),
        "last-seen times"
    );

    let mut v1 = RawPeer::connect("127.52.0.1", node.p2p).unwrap();
    v1.handshake();
    v1.send(NetworkMessage::GetAddr).unwrap();
    let got = v1
        .recv_matching(WAIT, |m| match m {
            NetworkMessage::Addr(list) => Some(list),
            NetworkMessage::AddrV2(_) => panic!("addrv2 to a peer that did not ask"),
            _ => None,
        })
        .expect("an addr answer");
    assert_eq!(got.len(), known.len());
}

#[test]
fn messages_before_the_handshake_are_ignored_and_getblocks_is_served() {
    let mut node = TestNode::start();
    node.wait_ready(WAIT);
    let hashes: Vec<BlockHash> = node
        .call("generatetoaddress", json!([5, address(3)]))
        .as_array()
        .unwrap()
        .iter()
        .map(|h| BlockHash::from_str(h.as_str().unwrap()).unwrap())
        .collect();

    let mut peer = RawPeer::connect("127.53.0.1", node.p2p).unwrap();
    peer.send(NetworkMessage::Ping(1)).unwrap();
    peer.send(NetworkMessage::GetAddr).unwrap();
    peer.handshake();

    // After block 1, stopping at block 4 (left out, as Core does).
    peer.send(NetworkMessage::GetBlocks(GetBlocksMessage {
        version: 70016,
        locator_hashes: vec![hashes[0]],
        stop_hash: hashes[3],
    }))
    .unwrap();
    let inv = peer
        .recv_matching(WAIT, |m| match m {
            NetworkMessage::Inv(items) => Some(items),
            _ => None,
        })
        .expect("an inv answering getblocks");
    assert_eq!(
        inv,
        vec![Inventory::Block(hashes[1]), Inventory::Block(hashes[2])]
    );
    assert_eq!(node.call("getconnectioncount", json!([])), 1);
}
