//! Backups of the chain-state store on the real binary: taken on demand while a peer feeds
//! blocks and on a schedule, verified by `bllvm-node backup verify` (a tampered copy fails),
//! and restored with `bllvm-node restore`, which refuses while the node runs, brings a sled node
//! back to redb, reconnects the blocks written after the backup from the block files, and ends
//! with the same UTXO set before the node catches up with its peer.

mod harness;

use harness::{poll, NodeOptions, TestNode};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn utxo_hash(n: &TestNode) -> serde_json::Value {
    n.call("gettxoutsetinfo", json!([]))["hash_serialized_3"].clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn backup_verify_and_restore_round_trip() {
    let a = TestNode::ready_with(NodeOptions::default());
    a.call("generatetoaddress", json!([150, harness::address(1)]));
    let mut opts = NodeOptions::connect(&[&a]);
    opts.config = Some(format!(
        "{}[storage]\nbackend = \"sled\"\n",
        opts.config.unwrap_or_default()
    ));
    let b = TestNode::ready_with(opts);
    poll(Duration::from_secs(30), "B to sync", || {
        (b.tip().0 == 150).then_some(())
    });

    // On demand, while B is still taking the blocks A goes on mining.
    a.call("generatetoaddress", json!([5, harness::address(1)]));
    let r = b.call("backupchainstate", json!([]));
    assert_eq!(r["verified"], json!(true), "{r}");
    let path = PathBuf::from(r["path"].as_str().unwrap());
    let height = r["height"].as_u64().unwrap();
    assert!(height >= 150, "{r}");
    assert!(path.starts_with(b.datadir.join("regtest/backups")), "{r}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["network"], json!("regtest"));
    assert_eq!(m["source_backend"], json!("sled"));
    assert_eq!(m["tip_height"], json!(height));
    assert!(b.metric("bllvm_backup_last_success_timestamp_seconds") > 0.0);

    let (code, out) = harness::cli(&b.datadir, &["backup", "verify", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified"), "{out}");

    // A tampered copy fails verification.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("tampered");
    copy_dir(&path, &bad);
    let store = bad.join("chainstate.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&store, bytes).unwrap();
    let (code, out) = harness::cli(&b.datadir, &["backup", "verify", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match its manifest"), "{out}");

    // Restore refuses while the node runs.
    let (code, out) = harness::cli(&b.datadir, &["restore", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("in use"), "{out}");

    // More blocks after the backup, then stop B and restore.
    a.call("generatetoaddress", json!([20, harness::address(1)]));
    let tip = a.tip();
    poll(Duration::from_secs(30), "B to follow", || {
        (b.tip() == tip).then_some(())
    });
    let before = utxo_hash(&b);
    let (datadir, ports) = (b.datadir.clone(), (b.rpc.port(), b.p2p.port()));
    let mut b = b;
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(20)), 0);
    let (code, out) = harness::cli(&datadir, &["restore", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(datadir.join("regtest/chainstate.redb").exists());
    assert!(
        !datadir.join("regtest/chainstate.sled").exists(),
        "sled moved aside"
    );

    // Alone (no peer), it reconnects what its block files hold past the backup: same UTXO set.
    let b = TestNode::ready_with(NodeOptions {
        datadir: Some(datadir.clone()),
        ports: Some(ports),
        config: Some("[storage]\nbackend = \"auto\"\n".into()),
        ..NodeOptions::default()
    });
    let d = harness::json(&b.get("/health/detailed").unwrap().1);
    assert_eq!(d["storage"]["backend"], "redb", "back on redb: {d}");
    assert_eq!(b.tip(), tip, "{}", b.log());
    assert_eq!(utxo_hash(&b), before);
    assert!(!datadir.join("regtest/restore.pending").exists());

    // And it catches up with its peer.
    a.call("generatetoaddress", json!([10, harness::address(1)]));
    b.call("addnode", json!([a.p2p.to_string(), "onetry"]));
    poll(Duration::from_secs(30), "B to catch up", || {
        (b.tip() == a.tip()).then_some(())
    });
}

#[test]
fn scheduled_backups_are_taken_and_counted() {
    let n = TestNode::ready_with(NodeOptions {
        config: Some("[storage]\nbackup_interval_secs = 0.3\n".into()),
        ..NodeOptions::default()
    });
    n.call("generatetoaddress", json!([3, harness::address(1)]));
    let root = n.datadir.join("regtest/backups");
    poll(Duration::from_secs(20), "two scheduled backups", || {
        let count = std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("manifest.json").exists())
                    .count()
            })
            .unwrap_or(0);
        (count >= 2).then_some(())
    });
    assert!(n.metric("bllvm_backup_last_success_timestamp_seconds") > 0.0);
    assert_eq!(n.metric("bllvm_backup_failures_total"), 0.0);
}
