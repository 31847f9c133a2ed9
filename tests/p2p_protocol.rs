//! Protocol details a standard peer relies on, checked with a hand-driven peer against a real
//! node: messages before the handshake are ignored (as Core does), `getaddr` is answered in the
//! format the peer negotiated, and `getblocks` is answered with an `inv` of the next hashes.

mod harness;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, Inventory};
use bitcoin::BlockHash;
use harness::raw_peer::RawPeer;
use harness::{address, NodeOptions, TestNode};
use serde_json::json;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

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

/// Sends a `version` for `version`/`services`/`relay` as a raw frame; `relay: None` leaves
/// the optional relay byte out.
fn send_version(peer: &mut RawPeer, version: u32, services: u64, relay: Option<bool>) {
    use bitcoin::hashes::{sha256d, Hash};
    use bitcoin::p2p::{message_network::VersionMessage, Address, ServiceFlags};
    let a = Address::new(&"127.0.0.1:0".parse().unwrap(), ServiceFlags::NONE);
    let mut v = VersionMessage::new(
        ServiceFlags::from(services),
        1_700_000_000,
        a.clone(),
        a,
        0x0bad_5eed,
        "/old-client:0.1/".into(),
        0,
    );
    v.version = version;
    v.relay = relay.unwrap_or(true);
    let mut payload = bitcoin::consensus::serialize(&v);
    if relay.is_none() {
        payload.pop();
    }
    let mut frame = bitcoin::p2p::Magic::REGTEST.to_bytes().to_vec();
    frame.extend_from_slice(b"version\0\0\0\0\0");
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&sha256d::Hash::hash(&payload).to_byte_array()[..4]);
    frame.extend_from_slice(&payload);
    peer.send_raw(&frame).unwrap();
}

/// Everything the node sends a 70001 client with no services and relay off, from the handshake
/// through new blocks, is in that version's vocabulary and asks nothing it cannot serve: no
/// `sendheaders`, `feefilter`, `sendcmpct`, `wtxidrelay`, `sendaddrv2`, `getaddr`, `getheaders`
/// or `getdata`; new blocks arrive as `inv`. A `version` without the relay byte (70015) is
/// accepted, as in Core, not banned as malformed.
#[test]
fn an_old_client_gets_only_what_its_version_and_services_allow() {
    let node = TestNode::ready_with(NodeOptions::default());
    node.call("generatetoaddress", json!([5, address(1)]));
    let mut peer = RawPeer::connect("127.81.0.1", node.p2p).unwrap();
    send_version(&mut peer, 70_001, 0, Some(false));
    let mut seen: Vec<String> = Vec::new();
    let record = |m: &NetworkMessage, seen: &mut Vec<String>| seen.push(m.cmd().to_string());
    let verack = peer.recv_matching(WAIT, |m| {
        record(&m, &mut seen);
        matches!(m, NetworkMessage::Verack).then_some(())
    });
    assert!(verack.is_some(), "no verack: {seen:?}");
    peer.send(NetworkMessage::Verack).unwrap();
    // The node's announcements of blocks it mines, until the last one's.
    let hashes = node.call("generatetoaddress", json!([3, address(1)]));
    let last = BlockHash::from_str(hashes[2].as_str().unwrap()).unwrap();
    let announced = peer.recv_matching(WAIT, |m| {
        record(&m, &mut seen);
        match m {
            NetworkMessage::Inv(items) => items.contains(&Inventory::Block(last)).then_some(()),
            _ => None,
        }
    });
    assert!(
        announced.is_some(),
        "the new tip was not announced by inv: {seen:?}"
    );
    // Whatever else comes within a moment (a ping, a late message) is checked too.
    while let Some(m) = peer.recv(Duration::from_millis(500)) {
        record(&m, &mut seen);
    }
    let allowed = ["version", "verack", "ping", "pong", "inv", "addr"];
    let outside: Vec<&String> = seen
        .iter()
        .filter(|c| !allowed.contains(&c.as_str()))
        .collect();
    assert!(
        outside.is_empty(),
        "sent to a 70001 client without services: {outside:?} (all: {seen:?})"
    );
    assert!(
        !peer.closed_within(Duration::from_millis(100)),
        "the client was dropped"
    );

    // 70015 without the relay byte: a peer, not a ban.
    let mut late = RawPeer::connect("127.82.0.1", node.p2p).unwrap();
    send_version(&mut late, 70_015, 0, None);
    let verack = late.recv_matching(WAIT, |m| matches!(m, NetworkMessage::Verack).then_some(()));
    assert!(
        verack.is_some(),
        "a version without the relay byte was refused"
    );
    late.send(NetworkMessage::Verack).unwrap();
    late.send(NetworkMessage::Ping(77)).unwrap();
    let pong = late.recv_matching(WAIT, |m| {
        matches!(m, NetworkMessage::Pong(77)).then_some(())
    });
    assert!(pong.is_some(), "no pong after the handshake");
    assert_eq!(node.call("listbanned", json!([])), json!([]));
}
