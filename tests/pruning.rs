//! Pruning on the real node with `fastprune` (64 KiB block files): block files stay between
//! the target and the threshold, the last 288 blocks are always served (to RPC and to peers),
//! pruned blocks answer Core's error, the prune height survives a restart, and the node tells
//! peers it is limited.

mod harness;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::ServiceFlags;
use harness::raw_peer::RawPeer;
use harness::{poll, NodeOptions, TestNode};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FILE: u64 = 64 * 1024;
const THRESHOLD: u64 = 800_000;
const TARGET: u64 = 700_000;
const CONFIG: &str = "[storage]\npruning_mode = \"normal\"\nfastprune = true\n\
                      pruning_threshold_gb = 0.0008\npruning_target_gb = 0.0007\n\
                      [rpc.auth]\nrate_limit_enabled = false\n";
/// A plain node that takes blocks as fast as the test sends them.
const UNLIMITED: &str = "[rpc.auth]\nrate_limit_enabled = false\n";

/// Bytes of every blk/rev file, read from the disk.
fn block_files_bytes(datadir: &Path) -> u64 {
    std::fs::read_dir(datadir.join("regtest/blocks"))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with("blk") || n.starts_with("rev")) && n.ends_with(".dat")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn start(opts: NodeOptions) -> TestNode {
    let mut n = TestNode::start_with(opts);
    n.wait_ready(Duration::from_secs(30));
    n
}

#[test]
fn normal_pruning_keeps_block_files_between_target_and_threshold() {
    // About 1.6 KB of block and undo data a block: 2.4 MB in all, three times the threshold,
    // while the last 288 blocks take about 460 KB.
    let chain = harness::chain::fanout_chain(1_500, 10);
    let mut a = start(NodeOptions {
        config: Some(CONFIG.into()),
        ..NodeOptions::default()
    });
    let mut pruned = false;
    for block in &chain {
        a.submit(block);
        let used = block_files_bytes(&a.datadir);
        assert!(
            used <= THRESHOLD + FILE,
            "{used} bytes of block files, over the threshold plus one file"
        );
        pruned |= !a.datadir.join("regtest/blocks/blk00000.dat").exists();
        if pruned {
            assert!(
                used > TARGET - FILE,
                "{used} bytes of block files, under the target minus one file"
            );
        }
    }
    assert!(pruned, "nothing was pruned");
    let tip = chain.len() as u64;
    let info = a.call("getblockchaininfo", json!([]));
    assert_eq!(info["blocks"], json!(tip));
    assert_eq!(info["pruned"], json!(true), "{info}");
    assert_eq!(info["automatic_pruning"], json!(true), "{info}");
    assert_eq!(info["prune_target_size"], json!(TARGET), "{info}");
    let prune_height = info["pruneheight"].as_u64().unwrap();
    assert!(
        prune_height > 0 && prune_height <= tip - 288,
        "pruneheight {prune_height} with the tip at {tip}"
    );
    assert_eq!(
        a.metric("bllvm_prune_height"),
        (prune_height - 1) as f64,
        "the metric is the last pruned height"
    );
    assert!(a.metric("bllvm_prunes_total{trigger=\"auto\"}") >= 1.0);
    assert!(a.metric("bllvm_pruned_files_total") >= 2.0);
    assert!(a.metric("bllvm_pruned_bytes_total") > 0.0);
    assert!(a.log().contains("pruned blk00000.dat"), "{}", a.log());

    // The last 288 blocks are served; a pruned one is Core's error, its header is still known.
    let hash_at = |n: &TestNode, h: u64| n.call("getblockhash", json!([h]));
    for h in tip - 287..=tip {
        let hex = a.call("getblock", json!([hash_at(&a, h), 0]));
        assert!(hex.as_str().unwrap().len() > 160, "block {h}");
    }
    let old = hash_at(&a, 1);
    let err = a.rpc("getblock", json!([old, 1])).unwrap_err();
    assert_eq!(err["code"], json!(-1), "{err}");
    assert_eq!(err["message"], json!("Block not available (pruned data)"));
    assert_eq!(
        a.call("getblockheader", json!([old]))["height"],
        json!(1),
        "headers are never pruned"
    );

    // Peers hear NODE_NETWORK_LIMITED, get recent blocks and `notfound` for pruned ones.
    let mut peer = RawPeer::connect("127.0.0.1", a.p2p).unwrap();
    peer.handshake();
    let services = peer.their_version.as_ref().unwrap().services;
    assert!(services.has(ServiceFlags::NETWORK_LIMITED), "{services}");
    assert!(!services.has(ServiceFlags::NETWORK), "{services}");
    let recent = chain[chain.len() - 100].block_hash();
    peer.send(NetworkMessage::GetData(vec![Inventory::WitnessBlock(
        recent,
    )]))
    .unwrap();
    let got = peer.recv_matching(Duration::from_secs(10), |m| match m {
        NetworkMessage::Block(b) => Some(b.block_hash()),
        _ => None,
    });
    assert_eq!(got, Some(recent));
    let gone = chain[0].block_hash();
    peer.send(NetworkMessage::GetData(vec![Inventory::WitnessBlock(gone)]))
        .unwrap();
    let missing = peer.recv_matching(Duration::from_secs(10), |m| match m {
        NetworkMessage::NotFound(inv) => Some(inv),
        _ => None,
    });
    assert_eq!(missing, Some(vec![Inventory::WitnessBlock(gone)]));
    drop(peer);

    // A node that has all but the last 200 blocks syncs them from the pruned node.
    let b = start(NodeOptions {
        config: Some(UNLIMITED.into()),
        ..NodeOptions::default()
    });
    for block in &chain[..chain.len() - 200] {
        b.submit(block);
    }
    b.call("addnode", json!([a.p2p.to_string(), "onetry"]));
    poll(
        Duration::from_secs(60),
        "B to sync from the pruned node",
        || (b.tip().0 == tip).then_some(()),
    );
    assert_eq!(b.tip(), a.tip());
    let peers = b.call("getpeerinfo", json!([]));
    let names = peers[0]["servicesnames"].to_string();
    assert!(
        names.contains("NETWORK_LIMITED") && !names.contains("\"NETWORK\""),
        "{names}"
    );

    let refused = b.rpc("pruneblockchain", json!([10])).unwrap_err();
    assert_eq!(
        (refused["code"].clone(), refused["message"].clone()),
        (
            json!(-1),
            json!("Cannot prune blocks because node is not in prune mode.")
        )
    );

    // The prune height survives a restart; pruned blocks stay pruned.
    let (datadir, ports) = (a.datadir.clone(), (a.rpc.port(), a.p2p.port()));
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(20)), 0);
    let a = start(NodeOptions {
        config: Some(CONFIG.into()),
        datadir: Some(datadir),
        ports: Some(ports),
        ..NodeOptions::default()
    });
    let again = a.call("getblockchaininfo", json!([]));
    assert_eq!(again["pruneheight"], json!(prune_height));
    assert_eq!(again["blocks"], json!(tip));
    assert_eq!(
        a.rpc("getblock", json!([old])).unwrap_err()["message"],
        json!("Block not available (pruned data)")
    );

    // pruneblockchain: Core's errors, and even asked for everything it keeps the last 288.
    for (height, message) in [
        (-1, "Negative block height."),
        (
            tip as i64 + 1,
            "Blockchain is shorter than the attempt to prune it.",
        ),
    ] {
        let e = a.rpc("pruneblockchain", json!([height])).unwrap_err();
        assert_eq!(
            (e["code"].clone(), e["message"].clone()),
            (json!(-8), json!(message))
        );
    }
    let last = a.call("pruneblockchain", json!([tip])).as_u64().unwrap();
    assert!(
        last >= prune_height && last <= tip - 288,
        "last pruned {last}, tip {tip}"
    );
    assert_eq!(
        a.call("getblockchaininfo", json!([]))["pruneheight"],
        json!(last + 1)
    );
    assert!(a.metric("bllvm_prunes_total{trigger=\"manual\"}") >= 1.0);
    for h in tip - 287..=tip {
        a.call("getblock", json!([hash_at(&a, h), 0]));
    }
}
