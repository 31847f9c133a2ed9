//! The chain and storage-writer threads wired as the node wires them, driven through
//! `ChainRequest` (what the RPC issue exposes as generatetoaddress and submitblock).

use bllvm_node::chain::chainstate::Submitted;
use bllvm_node::chain::params::Params;
use bllvm_node::chain::persist::ChainDb;
use bllvm_node::chain::{ChainRequest, ChainThread};
use bllvm_node::component::Component;
use bllvm_node::config::Chain;
use bllvm_node::lifecycle::stop_pair;
use bllvm_node::metrics::Metrics;
use bllvm_node::state::Shared;
use bllvm_node::storage::redb_store::RedbStore;
use bllvm_node::storage::writer::Writer;
use bllvm_node::storage::Store;
use crossbeam_channel::bounded;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn generate_and_submit_through_the_threads_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::for_chain(Chain::Regtest);
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    let (db, state) = ChainDb::open(dir.path(), store.clone(), params.clone()).unwrap();
    let integrity = db.integrity();
    let shared = Arc::new(Shared::new(false));
    let metrics = Arc::new(Metrics::new("redb").unwrap());
    let (jobs_tx, jobs_rx) = bounded(2);
    let (_prune_tx, prune_rx) = bounded(1);
    let (req_tx, req_rx) = bounded(4);
    let (_peer_tx, peer_rx) = bounded(4);
    let (_records_tx, records_rx) = bounded(1);
    // No p2p thread: summaries go to a queue nobody reads, which the chain must not wait on forever.
    let (p2p_tx, _p2p_rx) = bounded(1024);
    let committed = Arc::new(AtomicU64::new(0));
    let (commit_tx, commit_rx) = bounded(1);
    let tick = Duration::from_millis(20);
    let (writer_stop, writer_sig) = stop_pair(None);
    let (chain_stop, chain_sig) = stop_pair(None);
    let writer = Writer {
        committer: db,
        store: store.clone(),
        jobs: jobs_rx,
        prunes: prune_rx,
        peer_records: records_rx,
        committed: committed.clone(),
        commit_notify: commit_tx,
        stop: writer_sig,
        heartbeat: shared.vitals.heartbeat(Component::Storage, None),
        shared: shared.clone(),
        metrics: metrics.clone(),
        tick,
        fallback_reason: None,
        backup_requests: bounded(1).1,
        backup_error: None,
        stop_on_corruption: None,
        backups: bllvm_node::storage::writer::BackupSettings {
            root: dir.path().join("backups"),
            every: None,
            keep_daily: 7,
            keep_weekly: 4,
            network: "regtest".into(),
            disk_warn_share: 0.8,
        },
    };
    let chain = ChainThread {
        state,
        peer_events: peer_rx,
        requests: req_rx,
        jobs: jobs_tx,
        committed,
        commits: commit_rx,
        pruned: false,
        integrity,
        integrity_check: None,
        stop: chain_sig,
        heartbeat: shared.vitals.heartbeat(Component::Chain, None),
        shared: shared.clone(),
        metrics: metrics.clone(),
        tick,
        mine_every: None,
        p2p: bllvm_node::messages::P2pHandle::new(p2p_tx, None),
        told_floor: 0,
        mempool_file: None,
        reindex_on_damage: None,
    };
    let w = std::thread::spawn(move || writer.run().unwrap());
    let c = std::thread::spawn(move || chain.run().unwrap());

    let payout = bitcoin::ScriptBuf::from_bytes(vec![0x51]);
    let (reply, answer) = bounded(1);
    req_tx
        .send(ChainRequest::Generate {
            count: 25,
            payout,
            reply,
            cancel: Default::default(),
        })
        .unwrap();
    let hashes = answer
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(hashes.len(), 25);
    assert_eq!(shared.chain.read().height, 25);
    assert_eq!(shared.chain.read().tip_hash, hashes[24].to_string());

    // submitblock of a known block: duplicate; of a block whose parent is unknown: Core's reason.
    let block = {
        let (tx, rx) = bounded(1);
        let genesis = params.genesis.clone();
        req_tx
            .send(ChainRequest::SubmitBlock {
                block: Box::new(genesis),
                reply: tx,
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };
    assert_eq!(block.unwrap(), Submitted::Duplicate);
    let mut orphan = params.genesis.clone();
    orphan.header.prev_blockhash = hashes[3];
    orphan.header.time += 1;
    assert!(bllvm_node::chain::mining::grind(&mut orphan.header));
    let (tx, rx) = bounded(1);
    req_tx
        .send(ChainRequest::SubmitBlock {
            block: Box::new(orphan),
            reply: tx,
        })
        .unwrap();
    let err = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_err();
    // On block 3 with genesis' 2011 timestamp: older than the median time past.
    assert_eq!(err.reason, "time-too-old");

    // Ordered stop: chain first (its last jobs are queued), then the writer drains them.
    chain_stop.stop();
    c.join().unwrap();
    writer_stop.stop();
    w.join().unwrap();
    drop(req_tx);

    let (_, cs) = ChainDb::open(dir.path(), store, params).unwrap();
    assert_eq!(cs.tip(), (hashes[24], 25));
    assert_eq!(metrics.blocks_connected_total.get(), 25);
}
