//! Rebuilding the chain state from the block files: asked for with `--reindex`, forced by a
//! damaged index entry at start, and started by the node itself when a running repair cannot
//! reach the data it needs. Each keeps a verified backup of the store it replaces and ends with
//! the same UTXO set as before.

mod harness;

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use harness::systemd::FakeSystemd;
use harness::{flip_every, json, stopped_after_mining, NodeOptions, TestNode};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The UTXO set's hash and the tip of a running node.
fn utxo_hash(n: &TestNode) -> (String, u64) {
    let info = n.call("gettxoutsetinfo", serde_json::json!([]));
    (
        info["hash_serialized_3"].as_str().unwrap().to_owned(),
        info["height"].as_u64().unwrap(),
    )
}

/// The backups taken before a rebuild, each verified by the CLI.
fn backups_before_reindex(datadir: &Path) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(datadir.join("regtest/backups"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let kept: Vec<PathBuf> = dirs
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-before-reindex"))
        .collect();
    for dir in &kept {
        let (code, out) = harness::cli(datadir, &["backup", "verify", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
    kept
}

/// The UTXO set of a datadir with `blocks` mined, read by a node started on it, then stopped.
fn mined(blocks: u32) -> (tempfile::TempDir, PathBuf, (String, u64)) {
    let (tmp, datadir, _) = stopped_after_mining(blocks);
    let node = TestNode::ready_on(&datadir, "");
    let before = utxo_hash(&node);
    node.stop();
    (tmp, datadir, before)
}

#[test]
fn reindex_flag_backs_up_and_rebuilds_the_same_utxo_set() {
    let (_tmp, datadir, before) = mined(15);
    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        args: vec!["--reindex".into()],
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(60));
    assert_eq!(utxo_hash(&node), before);
    assert!(
        node.log().contains("reindex from block files complete"),
        "{}",
        node.log()
    );
    assert_eq!(backups_before_reindex(&datadir).len(), 1);
}

/// A flipped bit in a stored index entry's header: the entry no longer hashes to its key. The
/// default rebuilds from the block files (counted, backed up, same UTXO set); `shutdown` exits 3
/// naming the way out. Before, every start failed with exit 1.
#[test]
fn a_damaged_index_entry_is_rebuilt_from_the_block_files() {
    let (_tmp, datadir, before) = mined(12);
    // The header of block 6 as stored at the start of its index entry; its nonce is damaged.
    let header = {
        let node = TestNode::ready_on(&datadir, "");
        let hash = node.call("getblockhash", serde_json::json!([6]));
        let hex = node.call("getblockheader", serde_json::json!([hash, false]));
        node.stop();
        let raw: Vec<u8> = bitcoin::hex::FromHex::from_hex(hex.as_str().unwrap()).unwrap();
        let h: bitcoin::block::Header = bitcoin::consensus::deserialize(&raw).unwrap();
        serialize(&h)
    };
    let store = datadir.join("regtest/chainstate.redb");
    assert!(
        flip_every(&store, &header, 76) >= 1,
        "the entry is in the store file"
    );
    let pristine = std::fs::read(&store).unwrap();

    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        config: Some("[storage]\non_corruption = \"shutdown\"\n".into()),
        ..NodeOptions::default()
    });
    assert_eq!(node.wait_exit(Duration::from_secs(30)), 3, "{}", node.log());
    assert!(node.log().contains("--reindex"), "{}", node.log());
    assert_eq!(
        std::fs::read(&store).unwrap(),
        pristine,
        "shutdown changes nothing"
    );

    let node = TestNode::ready_on(&datadir, "");
    assert!(
        node.log().contains("corruption detected (index)") && node.log().contains("hashes to"),
        "{}",
        node.log()
    );
    assert_eq!(utxo_hash(&node), before);
    assert_eq!(
        node.metric("bllvm_corruption_detected_total{kind=\"index\"}"),
        1.0
    );
    assert_eq!(backups_before_reindex(&datadir).len(), 1);
    // Rebuilt for good: the next start loads it as is.
    node.stop();
    let node = TestNode::ready_on(&datadir, "");
    assert!(!node.log().contains("rebuilding"), "{}", node.log());
    assert_eq!(utxo_hash(&node), before);
}

/// A coin record whose key is damaged names an outpoint that never existed: no block can give
/// it back, so the running node leaves the reindex marker, stops in order and starts itself
/// again (the same process id), rebuilds, and serves the same UTXO set as before.
#[test]
fn damage_beyond_repair_in_place_restarts_into_a_reindex() {
    let (_tmp, datadir, before) = mined(8);
    let txid = {
        let node = TestNode::ready_on(&datadir, "");
        let hash = node.call("getblockhash", serde_json::json!([3]));
        let txid = node.call("getblock", serde_json::json!([hash, 1]))["tx"][0].clone();
        node.stop();
        txid.as_str().unwrap().parse::<bitcoin::Txid>().unwrap()
    };
    // A coin's key: the txid's bytes, then the output index big-endian.
    let mut key = txid.to_byte_array().to_vec();
    key.extend_from_slice(&0u32.to_be_bytes());
    let store = datadir.join("regtest/chainstate.redb");
    assert!(
        flip_every(&store, &key, 5) >= 1,
        "the coin is in the store file"
    );

    let systemd = FakeSystemd::new();
    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        env: vec![("NOTIFY_SOCKET".into(), systemd.path.clone())],
        ..NodeOptions::default()
    });
    systemd.expect("READY=1", Duration::from_secs(30));
    let pid = node.pid();
    // Walking the set meets the damaged record.
    node.rpc_err(
        "gettxoutsetinfo",
        serde_json::json!([]),
        "fails its checksum",
    );
    // systemd is told of a reload, not a stop, and hears READY again from the same process.
    let seen = systemd.expect("RELOADING=1", Duration::from_secs(30));
    let seen = [seen, systemd.expect("READY=1", Duration::from_secs(60))].concat();
    assert!(!seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    node.wait_ready(Duration::from_secs(60));
    assert_eq!(node.pid(), pid);
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "still the same process"
    );
    let log = node.log();
    assert!(
        log.contains("cannot rebuild coin") && log.contains("restarting to rebuild"),
        "{log}"
    );
    assert_eq!(utxo_hash(&node), before);
    assert!(!datadir.join("regtest/reindex.pending").exists());
    assert_eq!(backups_before_reindex(&datadir).len(), 1);
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["components"]["storage"]["status"], "healthy", "{d}");
}
