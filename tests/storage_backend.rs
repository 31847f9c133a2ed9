//! Backend choice on the real binary: sled on request, and redb -> sled fallback when redb is corrupt.

mod common;

use common::{json, NodeOptions, TestNode};
use std::time::Duration;

#[test]
fn corrupt_redb_falls_back_to_sled_and_reports_degraded() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let netdir = datadir.join("regtest");
    std::fs::create_dir_all(&netdir).unwrap();
    std::fs::write(netdir.join("chainstate.redb"), vec![0x42; 8192]).unwrap();

    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let (code, body) = node.get("/health/detailed").unwrap();
    let d = json(&body);
    assert_eq!(code, 200, "degraded still answers 200: {d}");
    assert_eq!(d["status"], "degraded");
    assert_eq!(d["storage"]["backend"], "sled");
    assert_eq!(d["components"]["storage"]["status"], "degraded");
    assert!(d["components"]["storage"]["reason"]
        .as_str()
        .unwrap()
        .contains("sled fallback"));
    let (_, metrics) = node.get("/metrics").unwrap();
    assert!(metrics.contains("bllvm_build_info{backend=\"sled\""));
    let broken: Vec<_> = std::fs::read_dir(&netdir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("chainstate.redb.broken-")
        })
        .collect();
    assert_eq!(broken.len(), 1, "the corrupt file is kept for inspection");
    assert_eq!(std::fs::read(broken[0].path()).unwrap(), vec![0x42; 8192]);
    assert!(node.log().contains("continuing on sled"));
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
}

#[test]
fn sled_backend_on_request() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[storage]\nbackend = \"sled\"\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["storage"]["backend"], "sled");
    assert_eq!(d["status"], "healthy");
    assert!(node.datadir.join("regtest/chainstate.sled").is_dir());
    assert!(!node.datadir.join("regtest/chainstate.redb").exists());
}
