//! The persisted chain: restarts, a reorg across a restart, and kill -9 at random moments.

mod harness;

use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::params::Params;
use bllvm_node::chain::persist::ChainDb;
use bllvm_node::config::{Backend, Chain};
use bllvm_node::storage::open::open;
use harness::chain::{coinbase_utxo, out, regtest_chain, Rng, Wallet, NOW};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn params() -> Params {
    Params::for_chain(Chain::Regtest)
}

/// Small block files (rollover) and a zero UTXO budget: every committed coin leaves the cache
/// and must come back from the store.
fn open_chain(dir: &Path, backend: Backend) -> (ChainDb, ChainState) {
    let store = open(dir, backend, 0).unwrap().store;
    let (db, mut cs) = ChainDb::open_with_file_size(dir, store, params(), 16 * 1024).unwrap();
    cs.set_utxo_budget(0);
    (db, cs)
}

/// Mines one block on `cs` (spending the coinbase 100 blocks back when there is one) and persists it.
fn mine_and_persist(db: &mut ChainDb, cs: &mut ChainState, w: &Wallet) {
    let height = cs.tip().1;
    let txs = if height >= 101 {
        let (op, prev) = coinbase_utxo(cs, height - 100);
        match cs.coin(&op) {
            Some(_) => vec![w.spend(
                &[(op, prev.clone())],
                vec![out(prev.value.to_sat() - 1000, w.p2wpkh())],
            )],
            None => vec![],
        }
    } else {
        vec![]
    };
    let (_, updates) = cs.mine(w.p2wpkh(), txs, NOW).unwrap();
    db.persist(cs, &updates).unwrap();
}

/// A chain replaying `cs`'s active blocks in memory, never persisted or killed.
fn reference_of(cs: &ChainState) -> ChainState {
    let mut r = ChainState::new(params());
    for h in 1..=cs.tip().1 {
        let block = cs
            .block(&cs.hash_at(h).unwrap())
            .expect("every active block is readable");
        r.submit_block(block, NOW).unwrap();
    }
    r
}

#[test]
fn restart_keeps_tip_index_and_utxos() {
    for backend in [Backend::Redb, Backend::Sled] {
        let dir = tempfile::tempdir().unwrap();
        let w = Wallet::new(1);
        let (mut db, mut cs) = open_chain(dir.path(), backend);
        for _ in 0..130 {
            mine_and_persist(&mut db, &mut cs, &w);
        }
        let (tip, stats) = (cs.tip(), cs.utxo_stats().unwrap());
        assert_eq!(
            cs.utxo_cache_bytes(),
            0,
            "zero budget: nothing stays cached once committed"
        );
        drop((db, cs));
        let (_, cs) = open_chain(dir.path(), backend);
        assert_eq!(cs.tip(), tip, "{backend:?}");
        assert_eq!(cs.utxo_count(), stats.count);
        assert_eq!(cs.utxo_stats().unwrap(), stats, "{backend:?}");
        assert_eq!(reference_of(&cs).utxo_stats().unwrap(), stats);
        // Small files: the data spans several blk/rev files.
        assert!(dir.path().join("blocks/blk00002.dat").exists());
    }
}

#[test]
fn reorg_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wallet::new(1);
    let (mut db, mut cs) = open_chain(dir.path(), Backend::Redb);
    for _ in 0..120 {
        mine_and_persist(&mut db, &mut cs, &w);
    }
    // A competing branch from height 100, longer by 5 blocks, built in memory.
    let mut fork = ChainState::new(params());
    for h in 1..=100 {
        fork.submit_block(cs.block(&cs.hash_at(h).unwrap()).unwrap(), NOW)
            .unwrap();
    }
    for _ in 0..25 {
        fork.mine(Wallet::new(4).p2wpkh(), vec![], NOW).unwrap();
    }
    drop((db, cs));
    // Restart, then the fork arrives and wins.
    let (mut db, mut cs) = open_chain(dir.path(), Backend::Redb);
    for h in 101..=125 {
        let (_, updates) = cs
            .submit_block(fork.block(&fork.hash_at(h).unwrap()).unwrap(), NOW)
            .unwrap();
        db.persist(&mut cs, &updates).unwrap();
    }
    assert_eq!(cs.tip(), fork.tip());
    drop((db, cs));
    // And across another restart, it is what a never-restarted node has.
    let (_, cs) = open_chain(dir.path(), Backend::Redb);
    assert_eq!(cs.tip(), fork.tip());
    assert_eq!(cs.utxo_stats().unwrap(), fork.utxo_stats().unwrap());
    let tips = cs.chain_tips();
    assert!(
        tips.iter().any(|t| t.height == 120),
        "the old branch is still known: {tips:?}"
    );
}

/// Child mode: mine forever into the chain at $BLLVM_CRASH_DIR, printing each committed height.
#[test]
#[ignore = "run by crash_rounds as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("BLLVM_CRASH_DIR") else {
        return;
    };
    let backend = match std::env::var("BLLVM_CRASH_BACKEND").as_deref() {
        Ok("sled") => Backend::Sled,
        _ => Backend::Redb,
    };
    let w = Wallet::new(1);
    let (mut db, mut cs) = open_chain(Path::new(&dir), backend);
    for _ in 0..10_000 {
        mine_and_persist(&mut db, &mut cs, &w);
        println!("height {}", cs.tip().1);
    }
}

fn crash_rounds(backend: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut committed = 0;
    let mut cut_tails = 0;
    for round in 0..20 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BLLVM_CRASH_DIR", dir.path())
            .env("BLLVM_CRASH_BACKEND", backend)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after 1..=12 committed blocks, 0..4 ms later: mid-write more often than not.
        let wait_for = 1 + rng.next() % 12;
        let mut seen = 0;
        for line in lines {
            let line = line.unwrap();
            if let Some(h) = line.strip_prefix("height ") {
                committed = h.parse().unwrap();
                seen += 1;
                if seen == wait_for {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 4000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let before = blocks_dir_bytes(dir.path());
        let (_, cs) = open_chain(
            dir.path(),
            if backend == "sled" {
                Backend::Sled
            } else {
                Backend::Redb
            },
        );
        let (tip, height) = cs.tip();
        assert!(
            height >= committed,
            "round {round}: committed block {committed} lost (tip {height})"
        );
        let reference = reference_of(&cs);
        assert_eq!(reference.tip(), (tip, height), "round {round}");
        assert_eq!(
            reference.utxo_stats().unwrap(),
            cs.utxo_stats().unwrap(),
            "round {round}: UTXO set differs"
        );
        if blocks_dir_bytes(dir.path()) < before {
            cut_tails += 1;
        }
    }
    assert!(committed > 20, "the rounds made progress: {committed}");
    eprintln!("{backend}: 20 kills, {cut_tails} left uncommitted block data that start-up cut off, tip {committed}");
}

fn blocks_dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("blocks"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_at_random_moments_redb() {
    crash_rounds("redb", 0x5eed_0001);
}

#[test]
fn kill_9_at_random_moments_sled() {
    crash_rounds("sled", 0x5eed_0002);
}

#[test]
fn regtest_chain_helper_is_deterministic() {
    // The crash rounds rely on the wallet and miner producing the same chain every run.
    let a = regtest_chain(&Wallet::new(1), 5);
    let b = regtest_chain(&Wallet::new(1), 5);
    assert_eq!(a.tip(), b.tip());
}

#[test]
fn an_empty_store_beside_block_files_is_rebuilt_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wallet::new(1);
    let (mut db, mut cs) = open_chain(dir.path(), Backend::Redb);
    for _ in 0..115 {
        mine_and_persist(&mut db, &mut cs, &w);
    }
    let (tip, stats) = (cs.tip(), cs.utxo_stats().unwrap());
    drop((db, cs));
    // The store is lost (here: the sled fallback starts empty); the block files remain.
    std::fs::remove_file(dir.path().join("chainstate.redb")).unwrap();
    let (_, cs) = open_chain(dir.path(), Backend::Sled);
    assert_eq!(cs.tip(), tip);
    assert_eq!(cs.utxo_stats().unwrap(), stats);
    assert!(!dir.path().join("blocks.reindex").exists());
    // And it is an ordinary persisted chain afterwards.
    drop(cs);
    let (_, cs) = open_chain(dir.path(), Backend::Sled);
    assert_eq!(cs.tip(), tip);
}
