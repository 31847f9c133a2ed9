//! Bounded-resource figures on the real binary over loopback: the syncing node's RSS and speed
//! against `dbcache_mb` (4, 64, 450) on a UTXO set ten times the smallest budget; sync with and
//! without assumevalid on a chain of P2WPKH/P2TR spends; the time to prune 1 GB of block files
//! (the writer's prune, through the library); backup, verify and restore of a store with 1 M
//! coins.
//! `cargo bench --bench resources`; under `cargo test` a smoke run on small sizes.

#[path = "../tests/harness/mod.rs"]
mod harness;

use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};
use bllvm_node::chain::mining::{op_true_payout, spend_op_true};
use bllvm_node::chain::params::Params;
use bllvm_node::chain::persist::ChainDb;
use bllvm_node::config::{Chain, PruningMode};
use bllvm_node::pruning::policy::PruneSettings;
use bllvm_node::storage::redb_store::RedbStore;
use bllvm_node::storage::PruneTrigger;
use harness::chain::{fanout_chain, spend_chain, NOW};
use harness::{poll, proc_kib, NodeOptions, TestNode};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(3600);
const NO_RATE_LIMIT: &str = "[rpc.auth]\nrate_limit_enabled = false\n";

fn source(chain: &[bitcoin::Block]) -> TestNode {
    let mut a = TestNode::start_with(NodeOptions {
        config: Some(format!("{NO_RATE_LIMIT}[storage]\ndbcache_mb = 16384\n")),
        ..NodeOptions::default()
    });
    a.wait_ready(Duration::from_secs(30));
    let t = Instant::now();
    for b in chain {
        a.submit(b);
    }
    println!(
        "  source loaded {} blocks over submitblock in {:.1} s",
        chain.len(),
        t.elapsed().as_secs_f64()
    );
    a
}

/// Starts a node with `config` connected to `a` and times its sync to `a`'s tip.
fn timed_sync(a: &TestNode, config: &str, label: &str) -> TestNode {
    let height = a.tip().0;
    let t = Instant::now();
    let mut opts = NodeOptions::connect(&[a]);
    opts.config = Some(format!("{}{config}", opts.config.unwrap_or_default()));
    let mut n = TestNode::start_with(opts);
    n.wait_ready(Duration::from_secs(30));
    poll(LONG, label, || (n.tip().0 == height).then_some(()));
    let s = t.elapsed().as_secs_f64();
    let (rss, peak) = proc_kib(n.pid());
    println!(
        "  {label}: {height} blocks in {s:.2} s = {:.0} blocks/s; RSS {} MiB (peak {} MiB); UTXO cache {:.1} MiB",
        height as f64 / s,
        rss / 1024,
        peak / 1024,
        n.metric("bllvm_utxo_cache_bytes") / 1048576.0
    );
    n
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");

    // 1. dbcache: 100 fan-out blocks of 3,000 outputs = 300,000 coins, ~40 MB of cache entries.
    let (blocks, outputs) = if full { (200, 3_000) } else { (110, 100) };
    let chain = fanout_chain(blocks, outputs);
    println!(
        "dbcache: {blocks} blocks, {} coins",
        (blocks - 100) as usize * outputs + 100
    );
    let a = source(&chain);
    for mb in [4, 64, 450] {
        timed_sync(
            &a,
            &format!("[storage]\ndbcache_mb = {mb}\n"),
            &format!("dbcache_mb = {mb:>3}"),
        );
    }
    drop(a);

    // 2. assumevalid: the same spend-heavy chain with and without script checks.
    let (blocks, per_block) = if full { (600, 100) } else { (10, 10) };
    let chain = spend_chain(blocks, per_block);
    let tip = chain.last().unwrap().block_hash();
    println!(
        "assumevalid: {} blocks of {per_block} P2WPKH/P2TR spends",
        chain.len()
    );
    let a = source(&chain);
    timed_sync(
        &a,
        "[validation]\nassumevalid = \"0\"\n",
        "every script checked",
    );
    timed_sync(
        &a,
        &format!("[validation]\nassumevalid = \"{tip}\"\n"),
        "assumevalid = tip ",
    );
    // The background integrity check at its most eager (its 5% cap binds), against off.
    timed_sync(
        &a,
        "[validation]\nassumevalid = \"0\"\n[storage]\nintegrity_check_interval_secs = 0.0001\n",
        "scripts + integrity check",
    );
    drop(a);

    // 3. Backup, verify and restore of a store with 1 M coins.
    backup_bench(if full { 1_000_000 } else { 10_000 });

    // 4. Pruning 1 GB of block files (128 MiB files; 1 MiB in the smoke run).
    if full {
        prune_bench(
            1_000_000_000,
            bllvm_node::storage::block_files::MAX_FILE_SIZE,
        );
    } else {
        prune_bench(20_000_000, 1 << 20);
    }
}

/// Writes `bytes` of ~900 KB blocks through the persistence layer, then 289 empty ones, and
/// times one prune of everything but the last 288 blocks.
fn prune_bench(bytes: u64, file_size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::for_chain(Chain::Regtest);
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let (mut db, mut cs) =
        ChainDb::open_with_file_size(dir.path(), store, params, file_size).unwrap();
    // 90 outputs of 10,000 bytes (an OP_RETURN and zeros): unspendable, valid, 900 KB a block.
    let filler = ScriptBuf::from_bytes([vec![0x6a], vec![0u8; 9_999]].concat());
    let mut written = 0u64;
    let mut fat_end = None;
    let t = Instant::now();
    for h in 1u32.. {
        let mut txs = Vec::new();
        if h > 100 && written < bytes {
            let cb = cs.block(&cs.hash_at(h - 100).unwrap()).unwrap().txdata[0].clone();
            let value = cb.output[0].value.to_sat();
            let mut tx = spend_op_true(OutPoint::new(cb.compute_txid(), 0), value);
            tx.output = (0..90)
                .map(|_| TxOut {
                    value: Amount::ZERO,
                    script_pubkey: filler.clone(),
                })
                .collect();
            txs.push(tx);
        }
        let (block, updates) = cs.mine(op_true_payout(), txs, NOW).unwrap();
        written += bitcoin::consensus::serialize(&block).len() as u64;
        db.persist(&mut cs, &updates).unwrap();
        if written >= bytes && fat_end.is_none() {
            fat_end = Some(h);
        }
        if fat_end.is_some_and(|end| h > end + 288) {
            break;
        }
    }
    let files = db.block_files_bytes();
    println!(
        "prune: wrote {:.2} GB of block and undo files ({} blocks) in {:.1} s",
        files as f64 / 1e9,
        cs.tip().1,
        t.elapsed().as_secs_f64()
    );
    db.set_pruning(PruneSettings {
        mode: PruningMode::Manual,
        ..PruneSettings::DISABLED
    });
    let t = Instant::now();
    let report = db
        .prune(PruneTrigger::Manual(cs.tip().1))
        .unwrap()
        .expect("something to prune");
    println!(
        "  pruned {} files, {:.2} GB, in {:.1} ms ({} bytes left)",
        report.files.len(),
        report.bytes as f64 / 1e9,
        t.elapsed().as_secs_f64() * 1e3,
        db.block_files_bytes()
    );
}

/// A store of `coins` coin-sized records (36-byte keys, 40-byte values) and a tip, then a backup
/// of it timed, its verification, and a restore into another directory.
fn backup_bench(coins: u32) {
    use bllvm_node::storage::{backup, Store, Table, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("regtest");
    std::fs::create_dir_all(&net).unwrap();
    let store = RedbStore::open(&net).unwrap();
    let mut batch = WriteBatch::default();
    for i in 0..coins {
        let mut key = [0u8; 36];
        key[..4].copy_from_slice(&i.to_le_bytes());
        batch.put(Table::Coins, key.to_vec(), vec![0x51; 40]);
        if batch.ops.len() == 50_000 {
            store.apply(&batch).unwrap();
            batch.ops.clear();
        }
    }
    batch.put_meta("tip_hash", vec![7u8; 32]);
    batch.put_meta("tip_height", b"1000".to_vec());
    store.apply(&batch).unwrap();
    let root = dir.path().join("backups");
    let t = Instant::now();
    let (path, manifest) =
        backup::write(&store, &root, "regtest", 1_800_000_000, "", &|| {}).unwrap();
    let took = t.elapsed().as_secs_f64();
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    println!(
        "backup: {coins} coins, store {:.1} MB, backup {:.1} MB written and verified in {took:.2} s",
        store.size_bytes() as f64 / 1e6,
        bytes as f64 / 1e6
    );
    drop(store);
    let t = Instant::now();
    backup::verify(&path).unwrap();
    println!("  verify alone: {:.2} s", t.elapsed().as_secs_f64());
    let target = dir.path().join("restored");
    std::fs::create_dir_all(&target).unwrap();
    let t = Instant::now();
    backup::restore(&path, &target, "regtest").unwrap();
    println!(
        "  restore (verify, copy, rename): {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
