//! Backend choice on the real binary: sled on request, and redb -> sled fallback when redb is corrupt.

mod harness;

use bllvm_node::storage::{redb_store::RedbStore, sled_store::SledStore, Store, Table, WriteBatch};
use harness::tmpfs::Tmpfs;
use harness::{json, NodeOptions, TestNode};
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
    node.wait_log("continuing on sled");
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

#[test]
fn fallback_after_corruption_rebuilds_the_chain_from_block_files() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        config: Some("[debug]\nmine_every_secs = 0.01\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    harness::poll(Duration::from_secs(30), "30 blocks", || {
        let d = json(&node.get("/health/detailed").ok()?.1);
        (d["chain"]["height"].as_u64()? >= 30).then_some(())
    });
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
    let d_before = std::fs::read(datadir.join("regtest/chainstate.redb")).unwrap();
    assert!(!d_before.is_empty());
    // Corrupt the store: overwrite its header region.
    let mut bytes = d_before;
    for b in bytes.iter_mut().take(4096) {
        *b = 0x42;
    }
    std::fs::write(datadir.join("regtest/chainstate.redb"), bytes).unwrap();

    let mut again = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        ..NodeOptions::default()
    });
    again.wait_ready(Duration::from_secs(30));
    let d = json(&again.get("/health/detailed").unwrap().1);
    assert_eq!(d["storage"]["backend"], "sled");
    assert!(
        d["chain"]["height"].as_u64().unwrap() >= 30,
        "rebuilt from block files: {d}"
    );
    assert!(again.log().contains("reindexing"));
}

/// Both backends refuse every write after one failed on a full disk; once space returns a
/// reopen (what the writer does before retrying) makes them writable again, with every commit
/// from before intact.
#[test]
fn a_store_that_filled_its_disk_writes_again_after_reopen() {
    for backend in ["redb", "sled"] {
        let Some(fs) = Tmpfs::mount(8) else { return };
        let store: Box<dyn Store> = match backend {
            "redb" => Box::new(RedbStore::open(&fs.mnt).unwrap()),
            _ => Box::new(SledStore::open(&fs.mnt).unwrap()),
        };
        let batch = |n: u32| {
            let mut b = WriteBatch::default();
            for j in 0..50u32 {
                b.put(
                    Table::Coins,
                    [n.to_be_bytes(), j.to_be_bytes()].concat(),
                    vec![7u8; 1000],
                );
            }
            b
        };
        let mut committed = 0;
        while store.apply(&batch(committed)).is_ok() {
            committed += 1;
            assert!(committed < 10_000, "{backend}: an 8 MiB disk never filled");
        }
        fs.resize(64);
        assert!(
            store.apply(&batch(committed)).is_err(),
            "{backend} writes again without a reopen: the reopen is not what this test shows"
        );
        store.reopen().unwrap();
        store.apply(&batch(committed)).unwrap();
        for n in [0, committed - 1, committed] {
            let key = [n.to_be_bytes(), 49u32.to_be_bytes()].concat();
            assert_eq!(
                store.get(Table::Coins, &key).unwrap(),
                Some(vec![7u8; 1000]),
                "{backend}: batch {n}"
            );
        }
    }
}

/// A truncated redb file (a torn copy, a full disk at the wrong moment) makes redb panic inside
/// its open; that is caught and handled like any unopenable store: moved aside, sled used.
#[test]
fn a_truncated_redb_falls_back_instead_of_crashing() {
    let (_tmp, datadir, _) = harness::stopped_after_mining(5);
    let file = datadir.join("regtest/chainstate.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let node = TestNode::ready_on(&datadir, "");
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["storage"]["backend"], "sled", "{d}");
    // Rebuilt from the block files.
    assert_eq!(node.tip().0, 5);
}
