//! The disk fills under a running node, on a real (size-limited tmpfs) filesystem the test
//! mounts: health turns degraded at the warning mark and says so at the critical one, a full
//! disk makes block-producing calls fail with a clear error while reads and probes answer, the
//! node never exits, resumes by itself when space returns, starts on a full disk, and keeps
//! everything it acknowledged.
//!
//! Mounting needs root (as in CI). Where it is refused the test says so loudly and skips.

mod harness;

use harness::tmpfs::Tmpfs;
use harness::{poll, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CONFIG: &str = "[storage]\npruning_check_interval_secs = 0.1\n\
                      disk_warn_percent = 50.0\ndisk_critical_percent = 70.0\n\
                      [rpc]\nuser = \"test\"\npassword = \"test\"\n\
                      [rpc.auth]\nrate_limit_enabled = false\n";

fn start(datadir: &Path, logs: &Path, ports: Option<(u16, u16)>) -> TestNode {
    let mut n = TestNode::start_with(NodeOptions {
        config: Some(CONFIG.into()),
        datadir: Some(datadir.to_owned()),
        log_dir: Some(logs.to_owned()),
        rpc_auth: Some(("test".into(), "test".into())),
        ports,
        ..NodeOptions::default()
    });
    n.wait_ready(Duration::from_secs(30));
    n
}

fn detailed(n: &TestNode) -> Value {
    harness::json(&n.get("/health/detailed").unwrap().1)
}

fn component(n: &TestNode, name: &str) -> (String, String) {
    let d = detailed(n);
    let c = &d["components"][name];
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Mines blocks one call at a time until the node refuses; returns the error. Every block it
/// acknowledged is added to `acked`.
fn mine_until_refused(n: &TestNode, acked: &mut Vec<String>) -> Value {
    let addr = harness::address(1);
    for _ in 0..500 {
        match n.rpc("generatetoaddress", json!([1, addr])) {
            Ok(hashes) => acked.extend(
                hashes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_owned()),
            ),
            Err(e) => return e,
        }
    }
    panic!("500 blocks were stored on a full disk:\n{}", n.log());
}

fn mine(n: &TestNode, count: u32, acked: &mut Vec<String>) {
    let hashes = n.call("generatetoaddress", json!([count, harness::address(1)]));
    acked.extend(
        hashes
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned()),
    );
}

/// Every acknowledged block is on the active chain at its height, and the UTXO set is what
/// that chain of coinbases pays (regtest halves every 150 blocks).
fn assert_consistent(n: &TestNode, acked: &[String]) {
    for hash in acked {
        let header = n.call("getblockheader", json!([hash]));
        let height = header["height"].as_u64().unwrap();
        assert_eq!(n.call("getblockhash", json!([height])), json!(hash));
        n.call("getblock", json!([hash, 0]));
    }
    let tip = n.tip().0;
    let set = n.call("gettxoutsetinfo", json!([]));
    let sats: u64 = (1..=tip).map(|h| 50_0000_0000u64 >> (h / 150)).sum();
    assert_eq!(set["txouts"], json!(tip), "{set}");
    assert_eq!(
        (set["total_amount"].as_f64().unwrap() * 1e8).round() as u64,
        sats,
        "{set}"
    );
}

#[test]
fn a_full_disk_degrades_resumes_and_loses_nothing_acknowledged() {
    let Some(fs) = Tmpfs::mount(32) else { return };
    let logs = tempfile::tempdir().unwrap();
    let datadir = fs.mnt.join("data");
    let mut node = start(&datadir, logs.path(), None);
    let ports = (node.rpc.port(), node.p2p.port());
    let mut acked = Vec::new();
    mine(&node, 120, &mut acked);

    // Warning mark: degraded, with the reason, logged once.
    fs.fill_to(0.55);
    poll(Duration::from_secs(10), "disk warning", || {
        let (status, reason) = component(&node, "pruning");
        (status == "degraded" && reason.contains("warning at 50%")).then_some(())
    });
    let (code, body) = node.get("/health").unwrap();
    assert_eq!(code, 200);
    assert_eq!(harness::json(&body)["status"], json!("degraded"));
    assert_eq!(node.metric("bllvm_disk_warn_ratio"), 0.5);
    assert!(node.metric("bllvm_disk_used_ratio") >= 0.55);

    // Critical mark: says what it does about it (pruning is disabled here).
    fs.fill_to(0.75);
    poll(Duration::from_secs(10), "disk critical", || {
        let (_, reason) = component(&node, "pruning");
        reason
            .contains("(critical at 70%): pruning is disabled")
            .then_some(())
    });

    // Full: blocks are refused with a clear error, reads and probes answer, nothing exits.
    fs.fill_up();
    let err = mine_until_refused(&node, &mut acked);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("storage writes are failing"),
        "{err}"
    );
    let err = node
        .rpc("generatetoaddress", json!([1, harness::address(1)]))
        .unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("No space left"),
        "{err}"
    );
    let (code, body) = node.get("/health").unwrap();
    assert_eq!(
        (code, harness::json(&body)["status"].clone()),
        (503, json!("unhealthy"))
    );
    let (status, reason) = component(&node, "storage");
    assert_eq!(status, "unhealthy");
    assert!(reason.contains("No space left on device"), "{reason}");
    assert_eq!(node.get("/health/live").unwrap().0, 200);
    assert_eq!(node.get("/health/ready").unwrap().0, 200);
    assert_eq!(node.metric("bllvm_storage_writes_paused"), 1.0);
    node.call("gettxoutsetinfo", json!([]));
    node.call("getblock", json!([acked.last().unwrap(), 1]));
    assert!(node.child.try_wait().unwrap().is_none(), "the node exited");
    let logged = node
        .wait_log("ERROR [storage] storage writes are failing")
        .matches("ERROR [storage] storage writes are failing")
        .count();
    assert_eq!(logged, 1, "logged once:\n{}", node.log());

    // Space returns: the node resumes by itself.
    fs.free();
    poll(Duration::from_secs(20), "writes to resume", || {
        (component(&node, "storage").0 == "healthy").then_some(())
    });
    assert_eq!(node.metric("bllvm_storage_writes_paused"), 0.0);
    node.wait_log("storage writes resumed");
    mine(&node, 5, &mut acked);
    assert_consistent(&node, &acked);

    // Full again, then a stop: it exits (no hang on the writer) and starts on the full disk.
    let (stored, before) = (node.tip().0, acked.len());
    fs.fill_up();
    mine_until_refused(&node, &mut acked);
    node.signal(libc::SIGTERM);
    let code = node.wait_exit(Duration::from_secs(20));
    assert_eq!(
        code, 2,
        "blocks the writer could not keep make the exit unclean"
    );
    // What the exit freed (the cookie) is taken too: the node starts on a disk with no room.
    fs.fill_up();
    let node = start(&datadir, logs.path(), Some(ports));
    assert_eq!(component(&node, "pruning").0, "degraded");
    node.wait_log("cannot write the RPC cookie");
    assert!(!datadir.join("regtest/.cookie").exists());
    assert_eq!(
        node.tip().0,
        stored + (acked.len() - before) as u64,
        "the unstored block is gone, every acknowledged one kept"
    );
    mine_until_refused(&node, &mut acked);
    fs.free();
    poll(
        Duration::from_secs(20),
        "writes to resume after a start on a full disk",
        || (component(&node, "storage").0 == "healthy").then_some(()),
    );
    poll(
        Duration::from_secs(10),
        "the cookie once space returns",
        || datadir.join("regtest/.cookie").exists().then_some(()),
    );
    mine(&node, 3, &mut acked);

    // After a clean restart everything acknowledged is there, and the UTXO set adds up.
    let mut node = node;
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(20)), 0);
    let node = start(&datadir, logs.path(), Some(ports));
    assert_consistent(&node, &acked);
}

/// Past the critical mark a pruning node prunes at once, below its threshold, down to its
/// target, and says so; the trigger is counted apart from routine pruning.
#[test]
fn a_critical_disk_prunes_what_the_mode_allows_at_once() {
    let Some(fs) = Tmpfs::mount(32) else { return };
    let logs = tempfile::tempdir().unwrap();
    // The threshold is never reached by the chain; only the critical disk can prune.
    let config = "[storage]\npruning_mode = \"normal\"\nfastprune = true\n\
                  pruning_threshold_gb = 1.0\npruning_target_gb = 0.00001\n\
                  pruning_check_interval_secs = 0.1\n\
                  disk_warn_percent = 50.0\ndisk_critical_percent = 70.0\n\
                  [rpc.auth]\nrate_limit_enabled = false\n";
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(config.into()),
        datadir: Some(fs.mnt.join("data")),
        log_dir: Some(logs.path().to_owned()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(30));
    node.call("generatetoaddress", json!([700, harness::address(1)]));
    let blk0 = fs.mnt.join("data/regtest/blocks/blk00000.dat");
    assert!(blk0.exists());
    assert_eq!(node.metric("bllvm_prunes_total{trigger=\"auto\"}"), 0.0);
    fs.fill_to(0.75);
    poll(
        Duration::from_secs(10),
        "a prune on the critical disk",
        || (!blk0.exists()).then_some(()),
    );
    assert!(node.metric("bllvm_prunes_total{trigger=\"disk_critical\"}") >= 1.0);
    assert_eq!(node.metric("bllvm_prunes_total{trigger=\"auto\"}"), 0.0);
    let (_, reason) = component(&node, "pruning");
    assert!(
        reason.contains("pruning block files down to pruning_target_gb"),
        "{reason}"
    );
    assert!(node.log().contains("pruned blk00000.dat"), "{}", node.log());
    // The last 288 blocks are still there.
    let tip = node.tip().0;
    let hash = node.call("getblockhash", json!([tip - 287]));
    node.call("getblock", json!([hash, 0]));
}

/// A backup that would take the disk past the warning mark is skipped with a warning (counted,
/// shown in health) instead of filling it; with room again the next one is written.
#[test]
fn a_backup_never_fills_the_disk() {
    let Some(fs) = Tmpfs::mount(32) else { return };
    let logs = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[storage]\ndisk_warn_percent = 50.0\ndisk_critical_percent = 95.0\n".into()),
        datadir: Some(fs.mnt.join("data")),
        log_dir: Some(logs.path().to_owned()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(30));
    node.call("generatetoaddress", json!([50, harness::address(1)]));
    let store = node.metric("bllvm_storage_size_bytes");
    // Just under the mark, with less room below it than the store takes.
    let total = fs2::total_space(&fs.mnt).unwrap() as f64;
    fs.fill_to(0.5 - 0.5 * store / total);
    let err = node.rpc_err("backupchainstate", json!([]), "skipped");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("past the warning mark"),
        "{err}"
    );
    assert_eq!(node.metric("bllvm_backup_failures_total"), 1.0);
    poll(Duration::from_secs(5), "health to say so", || {
        (component(&node, "storage").1.contains("last backup failed")).then_some(())
    });
    fs.free();
    let r = node.call("backupchainstate", json!([]));
    assert_eq!(r["verified"], json!(true));
    poll(Duration::from_secs(5), "health to clear", || {
        (component(&node, "storage").0 == "healthy").then_some(())
    });
}
