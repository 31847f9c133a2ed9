//! Reorganisations: a 100-block reorg and back, compared with reference chains that never reorged.

mod harness;

use bitcoin::OutPoint;
use bllvm_node::chain::chainstate::{ChainState, Submitted, TipStatus, Update};
use harness::chain::{coinbase_utxo, out, regtest_chain, Wallet, NOW};

const COIN: u64 = 100_000_000;

/// Copies the active blocks `from..=to` of `src` into `dst`.
fn feed(dst: &mut ChainState, src: &ChainState, from: u32, to: u32) -> Vec<Update> {
    let mut updates = Vec::new();
    for h in from..=to {
        let block = src.block(&src.hash_at(h).unwrap()).unwrap().clone();
        let (_, u) = dst.submit_block(block, NOW).unwrap();
        updates.extend(u);
    }
    updates
}

#[test]
fn hundred_block_reorg_and_back_matches_reference_chains() {
    let alice = Wallet::new(1);
    let bob = Wallet::new(2);
    // Shared history: 110 blocks to alice, then a spend so the branches differ in UTXOs too.
    let mut main = regtest_chain(&alice, 110);
    let mut fork = ChainState::new(main.params().clone());
    feed(&mut fork, &main, 1, 110);

    // Main: 100 more blocks, the first with a spend that the fork will not have.
    let (op, prev) = coinbase_utxo(&main, 1);
    let spend = alice.spend(&[(op, prev)], vec![out(49 * COIN, bob.p2wpkh())]);
    main.mine(alice.p2wpkh(), vec![spend.clone()], NOW).unwrap();
    for _ in 0..99 {
        main.mine(alice.p2wpkh(), vec![], NOW).unwrap();
    }
    // Fork: 101 blocks to bob from height 110: one more block of work.
    for _ in 0..101 {
        fork.mine(bob.p2wpkh(), vec![], NOW).unwrap();
    }
    assert_eq!(main.tip().1, 210);
    assert_eq!(fork.tip().1, 211);

    // The node under test follows main, then receives the fork: a 100-block reorg.
    let mut node = ChainState::new(main.params().clone());
    feed(&mut node, &main, 1, 210);
    let updates = feed(&mut node, &fork, 111, 211);
    let disconnected = updates
        .iter()
        .filter(|u| matches!(u, Update::Disconnected { .. }))
        .count();
    assert_eq!(disconnected, 100);
    assert_eq!(node.tip(), fork.tip());
    assert_eq!(node.utxo_stats().unwrap(), fork.utxo_stats().unwrap());
    // The spend of the disconnected branch is back in the mempool, still valid on the fork.
    assert!(node.mempool.get(&spend.compute_txid()).is_some());
    assert!(node.coin(&op).is_some(), "the spent coin is unspent again");

    // Main grows past the fork: back again, 101 blocks disconnected.
    for _ in 0..2 {
        main.mine(alice.p2wpkh(), vec![], NOW).unwrap();
    }
    let updates = feed(&mut node, &main, 211, 212);
    assert_eq!(
        updates
            .iter()
            .filter(|u| matches!(u, Update::Disconnected { .. }))
            .count(),
        101
    );
    assert_eq!(node.tip(), main.tip());
    // Main's block confirms the spend again: it leaves the mempool.
    assert!(node.mempool.get(&spend.compute_txid()).is_none());
    assert_eq!(node.utxo_stats().unwrap(), main.utxo_stats().unwrap());
    assert!(node.coin(&op).is_none());

    let tips = node.chain_tips();
    assert_eq!(tips[0].status, TipStatus::Active);
    assert_eq!(tips[0].height, 212);
    let side = tips.iter().find(|t| t.hash == fork.tip().0).unwrap();
    assert_eq!((side.status, side.branch_len), (TipStatus::ValidFork, 101));
}

#[test]
fn less_work_branch_is_stored_but_not_activated() {
    let w = Wallet::new(1);
    let main = regtest_chain(&w, 20);
    let mut side = ChainState::new(main.params().clone());
    feed(&mut side, &main, 1, 10);
    for _ in 0..5 {
        side.mine(Wallet::new(9).p2wpkh(), vec![], NOW).unwrap();
    }
    let mut node = ChainState::new(main.params().clone());
    feed(&mut node, &main, 1, 20);
    let b = side.block(&side.hash_at(11).unwrap()).unwrap().clone();
    assert_eq!(node.submit_block(b, NOW).unwrap().0, Submitted::SideBranch);
    assert_eq!(node.tip(), main.tip());
}

#[test]
fn invalidate_and_reconsider_move_the_tip() {
    let w = Wallet::new(1);
    let mut cs = regtest_chain(&w, 30);
    let stats30 = cs.utxo_stats().unwrap();
    let at20 = cs.hash_at(20).unwrap();
    cs.invalidate_block(&at20).unwrap();
    assert_eq!(cs.tip().1, 19);
    assert_eq!(cs.utxo_stats().unwrap().count, 19);
    // Mining continues on the other side of the invalidated block.
    cs.mine(Wallet::new(5).p2wpkh(), vec![], NOW).unwrap();
    assert_eq!(cs.tip().1, 20);
    assert_ne!(cs.tip().0, at20);
    cs.reconsider_block(&at20).unwrap();
    assert_eq!(cs.tip().1, 30);
    assert_eq!(cs.utxo_stats().unwrap(), stats30);
    assert!(cs
        .coin(&OutPoint::new(
            cs.block(&cs.hash_at(30).unwrap()).unwrap().txdata[0].compute_txid(),
            0
        ))
        .is_some());
}

#[test]
fn a_reorg_onto_a_branch_that_fails_to_connect_is_abandoned() {
    let w = Wallet::new(1);
    let mut main = regtest_chain(&w, 101);
    let mut node = ChainState::new(main.params().clone());
    feed(&mut node, &main, 1, 101);
    let mut branch = ChainState::new(main.params().clone());
    feed(&mut branch, &main, 1, 101);
    main.mine(w.p2wpkh(), vec![], NOW).unwrap();
    feed(&mut node, &main, 102, 102);

    // Branch block 102' spends coinbase 1; block 103' spends it again. Each passes the
    // context-free checks; 103' fails only when connected on top of 102'.
    let (op, prev) = coinbase_utxo(&main, 1);
    let t1 = w.spend(&[(op, prev.clone())], vec![out(COIN, w.p2wpkh())]);
    branch.mine(w.p2wpkh(), vec![t1], NOW).unwrap();
    let t2 = w.spend(&[(op, prev)], vec![out(2 * COIN, w.p2wpkh())]);
    let bad = harness::chain::block_with(&branch, w.p2wpkh(), vec![t2], |_| {});

    let b102 = branch.block(&branch.hash_at(102).unwrap()).unwrap().clone();
    assert_eq!(
        node.submit_block(b102, NOW).unwrap().0,
        Submitted::SideBranch
    );
    let err = node.submit_block(bad.clone(), NOW).unwrap_err();
    assert_eq!(err.reason, "bad-txns-inputs-missingorspent");
    // The node reorged onto 102', failed 103', and stays on a valid chain of the same work.
    assert_eq!(node.tip().1, 102);
    assert!(node.coin(&op).is_none());
    let tips = node.chain_tips();
    let invalid = tips.iter().find(|t| t.hash == bad.block_hash()).unwrap();
    assert_eq!(invalid.status, TipStatus::Invalid);
    // Its descendants are refused outright.
    let mut child = harness::chain::block_with(&branch, w.p2wpkh(), vec![], |_| {});
    child.header.prev_blockhash = bad.block_hash();
    assert!(bllvm_node::chain::mining::grind(&mut child.header));
    assert_eq!(
        node.submit_block(child, NOW).unwrap_err().reason,
        "bad-prevblk"
    );
}
