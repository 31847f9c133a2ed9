//! Hostile and broken peers against a real node: each is disconnected and banned, memory stays
//! bounded, and the node keeps serving its honest peers.

mod harness;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::Magic;
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode};
use harness::raw_peer::RawPeer;
use harness::{address, poll, proc_kib, NodeOptions, TestNode};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn banned(node: &TestNode) -> Vec<String> {
    node.call("listbanned", json!([]))
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_owned())
        .collect()
}

fn follower(a: &TestNode) -> TestNode {
    let mut b = TestNode::start_with(NodeOptions::connect(&[a]));
    b.wait_ready(Duration::from_secs(10));
    b
}

/// A header on genesis whose hash misses the target its own bits claim.
fn bad_pow_header() -> Header {
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    let mut h = Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: genesis.block_hash(),
        merkle_root: TxMerkleNode::all_zeros(),
        time: genesis.header.time + 600,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    while h.validate_pow(h.target()).is_ok() {
        h.nonce += 1;
    }
    h
}

#[test]
fn hostile_peers_are_banned_and_honest_ones_keep_syncing() {
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    a.call("generatetoaddress", json!([5, address(3)]));
    let b = follower(&a);
    poll(WAIT, "B syncs", || (b.tip() == a.tip()).then_some(()));

    let ping = bitcoin::consensus::serialize(&bitcoin::p2p::message::RawNetworkMessage::new(
        bitcoin::p2p::Magic::REGTEST,
        NetworkMessage::Ping(1),
    ));
    let mut oversized = ping.clone();
    oversized[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
    let mut bad_sum = ping.clone();
    bad_sum[20] ^= 0xff;
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);

    type Attack = Box<dyn Fn(&mut RawPeer)>;
    let attacks: Vec<(&str, bool, Attack)> = vec![
        (
            "garbage before the handshake",
            false,
            Box::new(|p: &mut RawPeer| p.send_raw(&[0x42; 200]).unwrap()),
        ),
        (
            "a declared length over 4,000,000",
            true,
            Box::new(move |p: &mut RawPeer| p.send_raw(&oversized[..24]).unwrap()),
        ),
        (
            "a bad checksum",
            true,
            Box::new(move |p: &mut RawPeer| p.send_raw(&bad_sum).unwrap()),
        ),
        (
            "a header with bad proof of work",
            true,
            Box::new(|p: &mut RawPeer| {
                p.send(NetworkMessage::Headers(vec![bad_pow_header()]))
                    .unwrap()
            }),
        ),
        (
            "a flood of unrequested blocks",
            true,
            Box::new(move |p: &mut RawPeer| {
                for _ in 0..20 {
                    if p.send(NetworkMessage::Block(genesis.clone())).is_err() {
                        break;
                    }
                }
            }),
        ),
    ];
    for (i, (what, handshake, attack)) in attacks.iter().enumerate() {
        let ip = format!("127.50.0.{}", i + 1);
        let mut p = RawPeer::connect(&ip, a.p2p).unwrap();
        if *handshake {
            p.handshake();
        }
        attack(&mut p);
        assert!(p.closed_within(WAIT), "{what}: not disconnected");
        poll(WAIT, what, || {
            banned(&a).contains(&format!("{ip}/32")).then_some(())
        });
        // A banned address is turned away at once.
        let mut again = RawPeer::connect(&ip, a.p2p).unwrap();
        assert!(again.closed_within(WAIT), "{what}: banned peer let back in");
    }
    // Garbage is not a message; each attack is counted as a closed connection.
    let (_, metrics) = a.get("/metrics").unwrap();
    assert!(metrics.contains("bllvm_p2p_connections_closed_total{reason=\"banned\"}"));
    assert!(
        metrics.contains("bllvm_p2p_banned 5"),
        "five bans in the gauge"
    );

    // The honest peer was never affected: it is still connected and follows new blocks.
    a.call("generatetoaddress", json!([3, address(3)]));
    poll(WAIT, "B follows after the attacks", || {
        (b.tip() == a.tip()).then_some(())
    });
    assert_eq!(b.call("getconnectioncount", json!([])), 1);

    // Bans survive a restart (saved through the writer), and setban/clearbanned manage them.
    let datadir = a.datadir.clone();
    let ports = (a.rpc.port(), a.p2p.port());
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(WAIT), 0);
    let a2 = TestNode::start_with(NodeOptions {
        datadir: Some(datadir),
        ports: Some(ports),
        ..NodeOptions::default()
    });
    poll(WAIT, "restarted node answers", || {
        a2.rpc("getblockcount", json!([])).ok()
    });
    assert_eq!(banned(&a2).len(), 5, "bans persisted");
    let err = a2.rpc("setban", json!(["127.50.0.1", "add"])).unwrap_err();
    assert_eq!(err["code"], -23, "{err}");
    a2.call("setban", json!(["127.50.0.1", "remove"]));
    let err = a2
        .rpc("setban", json!(["127.50.0.1", "remove"]))
        .unwrap_err();
    assert_eq!(err["code"], -30, "{err}");
    a2.call("setban", json!(["127.60.0.1/32", "add", 3600]));
    assert!(banned(&a2).contains(&"127.60.0.1/32".to_owned()));
    // A range bans every address in it, listed as Core lists it.
    a2.call("setban", json!(["127.61.7.7/16", "add", 3600]));
    assert!(banned(&a2).contains(&"127.61.0.0/16".to_owned()));
    let mut in_range = RawPeer::connect("127.61.5.1", a2.p2p).unwrap();
    assert!(in_range.closed_within(WAIT), "an address in a banned range");
    let err = a2
        .rpc("setban", json!(["127.61.0.0/33", "add"]))
        .unwrap_err();
    assert_eq!(err["code"], -30, "{err}");
    a2.call("clearbanned", json!([]));
    poll(WAIT, "bans cleared", || {
        banned(&a2).is_empty().then_some(())
    });
}

#[test]
fn a_peer_that_never_reads_cannot_grow_memory_or_stall_others() {
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    a.call("generatetoaddress", json!([20, address(3)]));
    let b = follower(&a);
    poll(WAIT, "B syncs", || (b.tip() == a.tip()).then_some(()));
    let before = proc_kib(a.pid()).0;

    // Ask for the same blocks over and over, and never read: 50,000 answers per request.
    let mut p = RawPeer::connect("127.51.0.1", a.p2p).unwrap();
    p.handshake();
    let hashes: Vec<BlockHash> = (1..=20)
        .map(|h| {
            a.call("getblockhash", json!([h]))
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let items: Vec<Inventory> = (0..50_000)
        .map(|i| Inventory::WitnessBlock(hashes[i % hashes.len()]))
        .collect();
    p.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0;
    for _ in 0..40 {
        if p.send(NetworkMessage::GetData(items.clone())).is_err() {
            break; // our own send buffer is full: the node stopped reading us
        }
        sent += 1;
    }
    // The node answers until the peer's socket buffers and its send queue are full, then stops
    // serving it: the queue ends near its 8 MiB limit and stays there.
    let stuck_queue = || {
        let peers = a.call("getpeerinfo", json!([]));
        peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["addr"].as_str().unwrap().starts_with("127.51.0.1:"))
            .map(|p| p["send_queue_bytes"].as_u64().unwrap())
            .expect("the stuck peer is still connected")
    };
    poll(Duration::from_secs(60), "send queue fills", || {
        (stuck_queue() >= 6 * 1024 * 1024).then_some(())
    });
    let queued = stuck_queue();
    // While that peer is stuck, the honest one keeps following.
    a.call("generatetoaddress", json!([5, address(3)]));
    poll(WAIT, "B follows while a peer is stuck", || {
        (b.tip() == a.tip()).then_some(())
    });
    let after = proc_kib(a.pid()).0;
    eprintln!(
        "non-reading peer: {sent} getdata of 50,000 sent; send queue {queued} bytes; \
         node RSS {before} KiB before, {after} KiB after"
    );
    assert!(
        queued <= 8 * 1024 * 1024 + 4_000_000,
        "send queue bounded: {queued}"
    );
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// Every inbound slot held by a socket that never says a word: an honest node still gets in,
/// by evicting one of them (Core's eviction rules), and syncs.
#[test]
fn idle_sockets_cannot_keep_an_honest_peer_out() {
    // Forty connections, eight kept for outbound: 32 inbound slots (with fewer, Core's rules
    // protect every inbound peer and a newcomer is refused).
    let mut a = TestNode::start_with(NodeOptions {
        config: Some("[network]\nmax_connections = 40\nmax_outbound = 8\n".into()),
        ..NodeOptions::default()
    });
    a.wait_ready(WAIT);
    a.call("generatetoaddress", json!([3, address(1)]));
    let idle: Vec<std::net::TcpStream> = (0..32u8)
        .map(|i| harness::connect_from(std::net::Ipv4Addr::new(127, 80 + i, 0, 1), a.p2p).unwrap())
        .collect();
    poll(WAIT, "32 idle inbound connections", || {
        let peers = a.call("getpeerinfo", json!([]));
        (peers.as_array().unwrap().len() == 32).then_some(())
    });
    let b = follower(&a);
    poll(WAIT, "the honest node syncs through a full node", || {
        (b.tip() == a.tip()).then_some(())
    });
    assert_eq!(
        a.metric("bllvm_p2p_connections_closed_total{reason=\"evicted\"}"),
        1.0
    );
    drop(idle);
}

/// Forty peers each send most of a 4,000,000-byte block and stop: the node holds no more of
/// their unfinished frames than the inbound frame budget (32 MiB) plus each one's free 64 KiB,
/// where it used to hold all of them; and it still serves an honest peer.
#[test]
fn slow_senders_cannot_hold_more_than_the_frame_budget() {
    const PEERS: usize = 40;
    let mut a = TestNode::start();
    a.wait_ready(WAIT);
    a.call("generatetoaddress", json!([3, address(1)]));
    let mut frame = Magic::REGTEST.to_bytes().to_vec();
    frame.extend_from_slice(b"block\0\0\0\0\0\0\0");
    frame.extend_from_slice(&4_000_000u32.to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.resize(24 + 3_999_000, 7);
    let (before, _) = proc_kib(a.pid());
    let mut peers = Vec::new();
    let mut sent = 0;
    for i in 0..PEERS {
        // Ten connections per address per minute are accepted.
        let from = format!("127.71.{}.1", i / 8 + 1);
        let mut p = RawPeer::connect(&from, a.p2p).unwrap();
        p.handshake();
        sent += p.push_until_blocked(&frame, Duration::from_millis(200));
        peers.push(p);
    }
    let gauge = || a.metric("bllvm_p2p_receive_buffer_bytes");
    poll(WAIT, "the budget to fill", || {
        (gauge() >= 16.0 * 1024.0 * 1024.0).then_some(())
    });
    let bound = (32 * 1024 * 1024 + 256 * 1024 + 16 * 1024 + PEERS * 64 * 1024) as f64;
    let mut most = 0f64;
    for _ in 0..20 {
        most = most.max(gauge());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (after, _) = proc_kib(a.pid());
    eprintln!(
        "{PEERS} slow senders offered {:.0} MB: {:.1} MiB held in frames (bound {:.1} MiB); RSS {} -> {} MiB",
        sent as f64 / 1e6,
        most / 1048576.0,
        bound / 1048576.0,
        before / 1024,
        after / 1024
    );
    assert!(
        sent as f64 > bound,
        "the peers offered more than the budget"
    );
    assert!(most <= bound, "{most} bytes held in unfinished frames");
    let b = follower(&a);
    poll(WAIT, "an honest peer still syncs", || {
        (b.tip() == a.tip()).then_some(())
    });
    drop(peers);
}
