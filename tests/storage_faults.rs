//! Damaged records under the real node, made by flipping bytes in its files: damaged undo data
//! is rebuilt from the block files; when it cannot be, it stops a reorg offered by a peer before
//! anything changes, blames no block and no peer, health says why, RPC answers an error instead
//! of a wrong result, and the reorg goes through by itself once the data reads again. Damaged
//! blocks are fetched again from peers, damaged coins never served, deleted files found.

mod harness;

use bitcoin::consensus::deserialize;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Block, BlockHash};
use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::mining::op_true_payout;
use bllvm_node::chain::params::Params;
use bllvm_node::config::Chain;
use harness::raw_peer::RawPeer;
use harness::{flip, json, poll, stopped_after_mining, NodeOptions, TestNode};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

fn chain_status(n: &TestNode) -> (String, String) {
    let d = json(&n.get("/health/detailed").unwrap().1);
    let c = &d["components"]["chain"];
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn corrupt_undo_data_is_rebuilt_or_stops_a_reorg_without_blame() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    node.call(
        "generatetoaddress",
        serde_json::json!([20, harness::address(1)]),
    );
    let (_, old_tip) = node.tip();

    // A heavier branch from height 19, built here on the node's own first 19 blocks.
    let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
    let now = bllvm_node::clock::unix_now();
    for h in 1..=19 {
        let hash = node.call("getblockhash", serde_json::json!([h]));
        let hex = node.call("getblock", serde_json::json!([hash, 0]));
        let raw: Vec<u8> = bitcoin::hex::FromHex::from_hex(hex.as_str().unwrap()).unwrap();
        cs.submit_block(deserialize(&raw).unwrap(), now).unwrap();
    }
    let branch: Vec<Block> = (0..2)
        .map(|_| cs.mine(op_true_payout(), vec![], now + 1).unwrap().0)
        .collect();
    let new_tip = branch[1].block_hash();

    // Stop it and damage the undo record of block 20, the last record of rev00000.dat: the
    // start-up check finds it and rebuilds it from the block files.
    node.stop();
    let rev = datadir.join("regtest/blocks/rev00000.dat");
    let blk = datadir.join("regtest/blocks/blk00000.dat");
    flip(&rev, std::fs::metadata(&rev).unwrap().len() - 33);
    let node = TestNode::ready_on(&datadir, "");
    poll(
        Duration::from_secs(10),
        "the undo data to be rebuilt",
        || {
            node.log()
                .contains("rebuilt from the block files")
                .then_some(())
        },
    );
    assert_eq!(
        node.metric("bllvm_corruption_detected_total{kind=\"undo\"}"),
        1.0
    );
    poll(
        Duration::from_secs(10),
        "storage to be healthy again",
        || {
            let d = json(&node.get("/health/detailed").unwrap().1);
            (d["components"]["storage"]["status"] == "healthy").then_some(())
        },
    );

    // Now damage it again, and the block it would be rebuilt from: no repair is possible.
    node.stop();
    let rev_at = std::fs::metadata(&rev).unwrap().len() - 33;
    let blk_at = record_middle(&blk, &old_tip);
    flip(&rev, rev_at);
    flip(&blk, blk_at);
    let node = TestNode::ready_on(&datadir, "");
    poll(Duration::from_secs(10), "the rebuild to give up", || {
        node.log()
            .contains("cannot rebuild the undo data")
            .then_some(())
    });

    // invalidateblock over the damaged undo data: an error, nothing changed, still running.
    node.rpc_err(
        "invalidateblock",
        serde_json::json!([old_tip]),
        "fails its checksum",
    );
    assert_eq!(node.tip(), (20, old_tip.clone()));

    // A peer offers the heavier branch: the reorg stops before disconnecting anything.
    let mut peer = RawPeer::connect("127.71.0.1", node.p2p).unwrap();
    peer.handshake();
    peer.send(NetworkMessage::Headers(
        branch.iter().map(|b| b.header).collect(),
    ))
    .unwrap();
    let by_hash: HashMap<BlockHash, &Block> = branch.iter().map(|b| (b.block_hash(), b)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = 0;
    while served < branch.len() && Instant::now() < deadline {
        if let Some(NetworkMessage::GetData(items)) = peer.recv(Duration::from_millis(200)) {
            for item in items {
                if let Inventory::Block(h) | Inventory::WitnessBlock(h) = item {
                    if let Some(b) = by_hash.get(&h) {
                        peer.send(NetworkMessage::Block((*b).clone())).unwrap();
                        served += 1;
                    }
                }
            }
        }
    }
    assert_eq!(served, 2, "the node asked for the branch");
    let reason = poll(
        Duration::from_secs(20),
        "the chain to report the fault",
        || {
            let (status, reason) = chain_status(&node);
            (status == "unhealthy").then_some(reason)
        },
    );
    assert!(
        reason.contains("storage fault") && reason.contains("checksum"),
        "{reason}"
    );
    assert_eq!(
        node.tip(),
        (20, old_tip.clone()),
        "nothing was disconnected"
    );
    assert_eq!(
        node.call("listbanned", serde_json::json!([])),
        serde_json::json!([])
    );
    let peers = node.call("getpeerinfo", serde_json::json!([]));
    assert_eq!(
        peers.as_array().unwrap().len(),
        1,
        "the peer is still connected: {peers}"
    );
    let tips = node.call("getchaintips", serde_json::json!([]));
    assert!(
        !tips.to_string().contains("invalid"),
        "no block was marked invalid: {tips}"
    );

    // The records read again: the reorg goes through by itself and health recovers.
    flip(&rev, rev_at);
    flip(&blk, blk_at);
    poll(
        Duration::from_secs(20),
        "the reorg once the data reads",
        || (node.tip() == (21, new_tip.to_string())).then_some(()),
    );
    poll(Duration::from_secs(10), "the chain to be healthy", || {
        (chain_status(&node).0 == "healthy").then_some(())
    });
    assert!(
        node.log().contains("block connection resumed"),
        "{}",
        node.log()
    );
    drop(peer);
}

/// Block files deleted while the node was down (an old one, then the one it was appending to)
/// are found at start, before it reports ready: counted, logged, health degraded with the file
/// named, reads of the lost blocks answer an error, and the node goes on in a new file and
/// restarts cleanly (it used to refuse with "block data lost").
#[test]
fn deleted_block_files_are_found_at_start_and_the_node_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let config = "[storage]\nfastprune = true\n";
    let node = TestNode::ready_on(&datadir, config);
    node.call(
        "generatetoaddress",
        serde_json::json!([400, harness::address(1)]),
    );
    let first = node.call("getblockhash", serde_json::json!([1]));
    node.stop();
    let blocks = datadir.join("regtest/blocks");
    std::fs::remove_file(blocks.join("blk00000.dat")).unwrap();

    let node = TestNode::ready_on(&datadir, config);
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["status"], "degraded", "{d}");
    let reason = d["components"]["storage"]["reason"].as_str().unwrap();
    assert!(reason.contains("blk00000.dat is missing"), "{reason}");
    assert_eq!(
        node.metric("bllvm_corruption_detected_total{kind=\"block_file\"}"),
        1.0
    );
    node.rpc_err(
        "getblock",
        serde_json::json!([first]),
        "unreadable or corrupt",
    );
    node.call(
        "generatetoaddress",
        serde_json::json!([3, harness::address(1)]),
    );
    let tip = node.tip();
    node.stop();

    // Now the file it appends to.
    let mut last = std::fs::read_dir(&blocks)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("blk"))
        .collect::<Vec<_>>();
    last.sort();
    std::fs::remove_file(blocks.join(last.last().unwrap())).unwrap();
    let node = TestNode::ready_on(&datadir, config);
    assert!(node.log().contains("is missing"), "{}", node.log());
    assert_eq!(
        node.tip(),
        tip,
        "the chain state is intact; only block data was lost"
    );
    node.call(
        "generatetoaddress",
        serde_json::json!([3, harness::address(1)]),
    );
    node.stop();
    let node = TestNode::ready_on(&datadir, config);
    assert_eq!(node.tip().0, tip.0 + 3);
}

/// A flipped byte in the tip's block record, made while the node was down, is found by the
/// start-up check before the node reports ready; getblock says the data is corrupt.
#[test]
fn a_corrupt_block_near_the_tip_is_found_at_start() {
    let (_tmp, datadir, tip) = stopped_after_mining(10);
    let blk = datadir.join("regtest/blocks/blk00000.dat");
    // Inside the last record: the tip block's coinbase.
    let at = std::fs::metadata(&blk).unwrap().len() - 60;
    flip(&blk, at);
    let node = TestNode::ready_on(&datadir, "");
    assert_eq!(
        node.metric("bllvm_corruption_detected_total{kind=\"block\"}"),
        1.0
    );
    let d = json(&node.get("/health/detailed").unwrap().1);
    let reason = d["components"]["storage"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&tip) && reason.contains("corrupt"),
        "{reason}"
    );
    node.rpc_err(
        "getblock",
        serde_json::json!([tip]),
        "unreadable or corrupt",
    );
}

/// Offset of the middle of `hash`'s record in a blk file (Core's framing: magic, length, block).
fn record_middle(file: &Path, hash: &str) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let block: Block = deserialize(&bytes[at + 8..at + 8 + len]).unwrap();
        if block.block_hash().to_string() == hash {
            return (at + 8 + len / 2) as u64;
        }
        at += 8 + len;
    }
    panic!("{hash} not in {}", file.display());
}

/// A corrupt block record deep in the chain, found when it is read: the node says so, asks its
/// peer for the block again, stores the good copy, and health recovers; the block reads whole.
#[test]
fn a_corrupt_block_is_fetched_again_from_a_peer() {
    let a = TestNode::ready_on(&tempfile::tempdir().unwrap().keep().join("a"), "");
    a.call(
        "generatetoaddress",
        serde_json::json!([50, harness::address(1)]),
    );
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("b");
    let mut opts = NodeOptions::connect(&[&a]);
    opts.datadir = Some(datadir.clone());
    let mut b = TestNode::start_with(opts);
    b.wait_ready(Duration::from_secs(30));
    poll(Duration::from_secs(30), "B to sync", || {
        (b.tip() == a.tip()).then_some(())
    });
    let hash = a.call("getblockhash", serde_json::json!([20]));
    let good = a.call("getblock", serde_json::json!([hash, 0]));
    let ports = (b.rpc.port(), b.p2p.port());
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(20)), 0);
    let blk = datadir.join("regtest/blocks/blk00000.dat");
    flip(&blk, record_middle(&blk, hash.as_str().unwrap()));

    let mut opts = NodeOptions::connect(&[&a]);
    opts.datadir = Some(datadir.clone());
    opts.ports = Some(ports);
    let mut b = TestNode::start_with(opts);
    b.wait_ready(Duration::from_secs(30));
    // Reading it finds the damage; the answer is an error, not a wrong block.
    b.rpc_err(
        "getblock",
        serde_json::json!([hash, 0]),
        "unreadable or corrupt",
    );
    assert_eq!(
        b.metric("bllvm_corruption_detected_total{kind=\"block\"}"),
        1.0
    );
    let repaired = poll(
        Duration::from_secs(30),
        "the block to be fetched again",
        || b.rpc("getblock", serde_json::json!([hash, 0])).ok(),
    );
    assert_eq!(repaired, good);
    poll(
        Duration::from_secs(10),
        "storage to be healthy again",
        || {
            let d = json(&b.get("/health/detailed").unwrap().1);
            (d["components"]["storage"]["status"] == "healthy").then_some(())
        },
    );
    // The good copy is on disk: it reads whole after a restart too.
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(20)), 0);
    let b = TestNode::ready_on(&datadir, "");
    assert_eq!(b.call("getblock", serde_json::json!([hash, 0])), good);
}

/// A flipped bit inside a coin record of the store file is found when read (an error, never a
/// wrong amount), then the coin is rebuilt from the block that created it and written again.
#[test]
fn a_damaged_coin_record_is_never_served_and_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    let hashes = node.call(
        "generatetoaddress",
        serde_json::json!([5, harness::address(7)]),
    );
    node.stop();
    // The coinbase output as stored: amount (8 bytes LE) then the P2WPKH script.
    let script = bitcoin::Address::from_str(&harness::address(7))
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let mut pattern = 5_000_000_000u64.to_le_bytes().to_vec();
    pattern.push(script.len() as u8);
    pattern.extend_from_slice(script.as_bytes());
    let file = datadir.join("regtest/chainstate.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .expect("a coin record in the store file");
    bytes[at + 1] ^= 0x01; // 50 BTC + 256 sat, if it were served
    std::fs::write(&file, bytes).unwrap();

    let node = TestNode::ready_on(&datadir, "");
    // The first walk of the set meets the damaged record: an error, not a sum built on it.
    node.rpc_err(
        "gettxoutsetinfo",
        serde_json::json!([]),
        "fails its checksum",
    );
    assert!(node.metric("bllvm_corruption_detected_total{kind=\"coin\"}") >= 1.0);
    // Then it is rebuilt: every coin reads 50 BTC, the set adds up, verifychain passes.
    let coinbases: Vec<serde_json::Value> = hashes
        .as_array()
        .unwrap()
        .iter()
        .map(|h| node.call("getblock", serde_json::json!([h, 2]))["tx"][0]["txid"].clone())
        .collect();
    poll(Duration::from_secs(10), "the coin to be rebuilt", || {
        coinbases
            .iter()
            .all(|txid| {
                node.rpc("gettxout", serde_json::json!([txid, 0]))
                    .is_ok_and(|c| c["value"] == serde_json::json!(50.0))
            })
            .then_some(())
    });
    assert!(
        node.log().contains("rebuilt from the block files"),
        "{}",
        node.log()
    );
    poll(
        Duration::from_secs(10),
        "the repaired record to be stored",
        || node.rpc("gettxoutsetinfo", serde_json::json!([])).ok(),
    );
    assert_eq!(
        node.call("gettxoutsetinfo", serde_json::json!([]))["total_amount"],
        serde_json::json!(250.0)
    );
    assert_eq!(
        node.call("verifychain", serde_json::json!([1, 0])),
        serde_json::json!(true)
    );
}

/// The background check finds a damaged block record nobody asked for, and counts its reads.
#[test]
fn the_background_check_finds_damage_nobody_read() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    node.call(
        "generatetoaddress",
        serde_json::json!([30, harness::address(1)]),
    );
    let hash = node.call("getblockhash", serde_json::json!([10]));
    node.stop();
    let blk = datadir.join("regtest/blocks/blk00000.dat");
    flip(&blk, record_middle(&blk, hash.as_str().unwrap()));
    let node = TestNode::ready_on(
        &datadir,
        "[storage]\nintegrity_check_interval_secs = 0.005\n",
    );
    poll(
        Duration::from_secs(20),
        "the background check to find it",
        || (node.metric("bllvm_corruption_detected_total{kind=\"block\"}") >= 1.0).then_some(()),
    );
    assert!(node.metric("bllvm_integrity_checked_blocks_total") >= 10.0);
    poll(Duration::from_secs(10), "health to name the block", || {
        let d = json(&node.get("/health/detailed").unwrap().1);
        let reason = d["components"]["storage"]["reason"]
            .as_str()
            .unwrap_or_default();
        reason.contains(hash.as_str().unwrap()).then_some(())
    });
}

/// With `on_corruption = "shutdown"` damage found at start stops the node cleanly with exit 3
/// and a message naming it and what to run.
#[test]
fn on_corruption_shutdown_stops_with_exit_3() {
    let (_tmp, datadir, tip) = stopped_after_mining(10);
    let blk = datadir.join("regtest/blocks/blk00000.dat");
    flip(&blk, record_middle(&blk, &tip));
    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        config: Some("[storage]\non_corruption = \"shutdown\"\n".into()),
        ..NodeOptions::default()
    });
    assert_eq!(node.wait_exit(Duration::from_secs(30)), 3, "{}", node.log());
    let log = node.log();
    assert!(
        log.contains(&tip) && log.contains("bllvm-node restore"),
        "{log}"
    );
    // The default keeps serving.
    let node = TestNode::ready_on(&datadir, "");
    assert_eq!(node.tip().1, tip);
}
