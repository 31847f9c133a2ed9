//! One regtest block per consensus rule, each breaking exactly that rule: the chain rejects it
//! with Bitcoin Core's reason and keeps working. Plus segwit and taproot spends.

mod harness;

use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::OP_CHECKSIG;
use bitcoin::{absolute, Amount, Block, OutPoint, ScriptBuf, Sequence, Txid};
use bllvm_node::chain::chainstate::{ChainState, Submitted};
use bllvm_node::chain::mining::{refresh_commitments, update_merkle_root};
use bllvm_node::chain::params::MAX_MONEY;
use harness::chain::{block_with, coinbase_utxo, out, regtest_chain, Wallet, NOW};

const COIN: u64 = 100_000_000;

/// 101 blocks: the coinbase of block 1 is spendable in block 102.
fn setup() -> (ChainState, Wallet) {
    let w = Wallet::new(1);
    (regtest_chain(&w, 101), w)
}

/// Submits `block`, expects `reason`, then checks the chain still extends normally.
fn rejected(cs: &mut ChainState, w: &Wallet, block: Block, reason: &str) {
    let before = cs.tip();
    let err = cs
        .submit_block(block, NOW)
        .expect_err("block must be rejected");
    assert!(
        err.reason.starts_with(reason),
        "expected {reason}, got {err}"
    );
    assert_eq!(cs.tip(), before, "tip moved on a rejected block");
    cs.mine(w.p2wpkh(), vec![], NOW)
        .expect("chain keeps working");
    assert_eq!(cs.tip().1, before.1 + 1);
}

fn simple_spend(cs: &ChainState, w: &Wallet, height: u32) -> bitcoin::Transaction {
    let (op, prev) = coinbase_utxo(cs, height);
    w.spend(
        &[(op, prev.clone())],
        vec![out(prev.value.to_sat() - 1000, w.p2wpkh())],
    )
}

/// A block on the tip carrying `tx` after the coinbase (added after the template was built,
/// so it is not checked by the template's fee accounting), commitments refreshed.
fn block_spending(cs: &ChainState, w: &Wallet, tx: bitcoin::Transaction) -> Block {
    block_with(cs, w.p2wpkh(), vec![], |b| {
        b.txdata.push(tx);
        refresh_commitments(b);
    })
}

fn regrind(block: &mut Block) {
    assert!(bllvm_node::chain::mining::grind(&mut block.header));
}

#[test]
fn a_valid_chain_grows_and_its_utxo_set_adds_up() {
    let (cs, _) = setup();
    assert_eq!(cs.tip().1, 101);
    let stats = cs.utxo_stats().unwrap();
    // One spendable coinbase output per block; witness commitments (OP_RETURN) never enter the set.
    assert_eq!(stats.count, 101);
    assert_eq!(stats.total, 101 * 50 * COIN);
}

#[test]
fn high_hash() {
    let (mut cs, w) = setup();
    let mut b = block_with(&cs, w.p2wpkh(), vec![], |_| {});
    let target = b.header.target();
    while target.is_met_by(b.header.block_hash()) {
        b.header.nonce = b.header.nonce.wrapping_add(1);
    }
    rejected(&mut cs, &w, b, "high-hash");
}

#[test]
fn bad_diffbits() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.header.bits = bitcoin::CompactTarget::from_consensus(0x207ffffe)
    });
    rejected(&mut cs, &w, b, "bad-diffbits");
}

#[test]
fn time_too_old() {
    let (mut cs, w) = setup();
    let mtp = cs.tree().median_time_past(&cs.tip().0);
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| b.header.time = mtp);
    rejected(&mut cs, &w, b, "time-too-old");
}

#[test]
fn time_too_new() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.header.time = (NOW + 2 * 3600 + 1) as u32
    });
    rejected(&mut cs, &w, b, "time-too-new");
}

#[test]
fn bad_txnmrklroot() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.header.merkle_root = bitcoin::TxMerkleNode::all_zeros()
    });
    rejected(&mut cs, &w, b, "bad-txnmrklroot");
}

/// CVE-2012-2459: repeating the last transaction keeps the merkle root.
#[test]
fn bad_txns_duplicate() {
    let (mut cs, w) = setup();
    let (t1, t2) = (simple_spend(&cs, &w, 1), simple_spend(&cs, &w, 2));
    let honest = block_with(&cs, w.p2wpkh(), vec![t1, t2.clone()], |_| {});
    let mut b = honest.clone();
    b.txdata.push(t2);
    update_merkle_root(&mut b);
    assert_eq!(b.header, honest.header, "the collision the rule exists for");
    let before = cs.tip();
    let err = cs.submit_block(b, NOW).unwrap_err();
    assert_eq!(err.reason, "bad-txns-duplicate");
    assert_eq!(cs.tip(), before);
    // Mutated data does not condemn the header: the honest block with it is accepted.
    assert_eq!(cs.submit_block(honest, NOW).unwrap().0, Submitted::Active);
    assert_eq!(cs.tip().1, before.1 + 1);
}

#[test]
fn bad_cb_missing() {
    let (mut cs, w) = setup();
    let spend = simple_spend(&cs, &w, 1);
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.txdata[0] = spend;
        refresh_commitments(b);
    });
    rejected(&mut cs, &w, b, "bad-cb-missing");
}

#[test]
fn bad_cb_multiple() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        let mut second = b.txdata[0].clone();
        second.output[0].value = Amount::from_sat(1);
        b.txdata.push(second);
        refresh_commitments(b);
    });
    rejected(&mut cs, &w, b, "bad-cb-multiple");
}

#[test]
fn bad_cb_height() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.txdata[0].input[0].script_sig = bitcoin::script::Builder::new()
            .push_int(7)
            .push_int(0)
            .into_script();
        refresh_commitments(b);
    });
    rejected(&mut cs, &w, b, "bad-cb-height");
}

#[test]
fn bad_cb_amount() {
    let (mut cs, w) = setup();
    let b = block_with(&cs, w.p2wpkh(), vec![], |b| {
        b.txdata[0].output[0].value = Amount::from_sat(50 * COIN + 1);
        refresh_commitments(b);
    });
    rejected(&mut cs, &w, b, "bad-cb-amount");
}

#[test]
fn bad_txns_vout_empty() {
    let (mut cs, w) = setup();
    let mut tx = simple_spend(&cs, &w, 1);
    tx.output.clear();
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-vout-empty");
}

#[test]
fn bad_txns_vout_toolarge() {
    let (mut cs, w) = setup();
    let mut tx = simple_spend(&cs, &w, 1);
    tx.output[0].value = Amount::from_sat(MAX_MONEY + 1);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-vout-toolarge");
}

#[test]
fn bad_txns_inputs_duplicate() {
    let (mut cs, w) = setup();
    let (op, prev) = coinbase_utxo(&cs, 1);
    let tx = w.spend(
        &[(op, prev.clone()), (op, prev)],
        vec![out(COIN, w.p2wpkh())],
    );
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-inputs-duplicate");
}

#[test]
fn bad_txns_inputs_missingorspent() {
    let (mut cs, w) = setup();
    let missing = OutPoint::new(Txid::from_byte_array([7; 32]), 0);
    let tx = w.spend(
        &[(missing, out(COIN, w.p2wpkh()))],
        vec![out(COIN / 2, w.p2wpkh())],
    );
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-inputs-missingorspent");
}

#[test]
fn spending_an_output_twice_across_blocks_is_missingorspent() {
    let (mut cs, w) = setup();
    let tx = simple_spend(&cs, &w, 1);
    cs.mine(w.p2wpkh(), vec![tx.clone()], NOW).unwrap();
    let mut again = tx;
    again.output[0].value = Amount::from_sat(COIN); // a different txid, same input
    let (op, prev) = coinbase_utxo(&cs, 1);
    w.sign(&mut again, &[(op, prev)]);
    let b = block_spending(&cs, &w, again);
    rejected(&mut cs, &w, b, "bad-txns-inputs-missingorspent");
}

#[test]
fn bad_txns_premature_spend_of_coinbase() {
    let (mut cs, w) = setup();
    // Block 3's coinbase is 99 blocks deep in block 102.
    let tx = simple_spend(&cs, &w, 3);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-premature-spend-of-coinbase");
}

#[test]
fn bad_txns_in_belowout() {
    let (mut cs, w) = setup();
    let (op, prev) = coinbase_utxo(&cs, 1);
    let tx = w.spend(&[(op, prev)], vec![out(50 * COIN + 1, w.p2wpkh())]);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-in-belowout");
}

#[test]
fn bad_witness_merkle_match() {
    let (mut cs, w) = setup();
    let tx = simple_spend(&cs, &w, 1);
    let b = block_with(&cs, w.p2wpkh(), vec![tx], |b| {
        // Change a witness after the commitment was made; the txid (and merkle root) stay.
        b.txdata[1].input[0].witness.push([0u8; 1]);
    });
    rejected(&mut cs, &w, b, "bad-witness-merkle-match");
}

#[test]
fn bad_blk_weight() {
    let (mut cs, w) = setup();
    let mut tx = simple_spend(&cs, &w, 1);
    // 2.8 M weight units of base data plus 1.5 MB of witness: over 4 M in total.
    tx.output
        .push(out(0, ScriptBuf::from_bytes(vec![0x6a; 700_000])));
    tx.input[0].witness.push(vec![0u8; 1_500_000]);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-blk-weight");
}

#[test]
fn bad_blk_sigops() {
    let (mut cs, w) = setup();
    let mut tx = simple_spend(&cs, &w, 1);
    tx.output.push(out(
        0,
        ScriptBuf::from_bytes(vec![OP_CHECKSIG.to_u8(); 20_001]),
    ));
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-blk-sigops");
}

#[test]
fn bip113_locktime_in_the_future_is_nonfinal() {
    let (mut cs, w) = setup();
    let (op, prev) = coinbase_utxo(&cs, 1);
    let mut tx = w.spend(&[(op, prev.clone())], vec![out(COIN, w.p2wpkh())]);
    tx.lock_time = absolute::LockTime::from_height(500).unwrap();
    tx.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
    w.sign(&mut tx, &[(op, prev)]);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-nonfinal");
}

#[test]
fn bip68_relative_lock_not_yet_met_is_nonfinal() {
    let (mut cs, w) = setup();
    let (op, prev) = coinbase_utxo(&cs, 1);
    let mut tx = w.spend(&[(op, prev.clone())], vec![out(COIN, w.p2wpkh())]);
    // Coin from block 1; 200 blocks relative lock; next block is 102.
    tx.input[0].sequence = Sequence::from_height(200);
    w.sign(&mut tx, &[(op, prev)]);
    let b = block_spending(&cs, &w, tx);
    rejected(&mut cs, &w, b, "bad-txns-nonfinal");
}

#[test]
fn p2wpkh_spend_valid_and_with_a_wrong_signature() {
    let (mut cs, w) = setup();
    let other = Wallet::new(2);
    let (op, prev) = coinbase_utxo(&cs, 1);
    let forged = w.spend_with(&other, &[(op, prev.clone())], vec![out(COIN, w.p2wpkh())]);
    let b = block_spending(&cs, &w, forged);
    rejected(&mut cs, &w, b, "mandatory-script-verify-flag-failed");
    let good = w.spend(&[(op, prev)], vec![out(COIN, other.p2wpkh())]);
    let txid = good.compute_txid();
    cs.mine(w.p2wpkh(), vec![good], NOW).unwrap();
    assert!(cs.coin(&op).is_none());
    assert_eq!(
        cs.coin(&OutPoint::new(txid, 0))
            .unwrap()
            .output
            .value
            .to_sat(),
        COIN
    );
}

#[test]
fn p2tr_key_path_spend_valid_and_with_a_wrong_signature() {
    let (mut cs, w) = setup();
    let other = Wallet::new(3);
    // Fund a P2TR output, then spend it by key path.
    let (op, prev) = coinbase_utxo(&cs, 1);
    let fund = w.spend(&[(op, prev)], vec![out(10 * COIN, w.p2tr())]);
    let tr_op = OutPoint::new(fund.compute_txid(), 0);
    cs.mine(w.p2wpkh(), vec![fund], NOW).unwrap();
    let tr_prev = cs.coin(&tr_op).unwrap().output.clone();
    assert!(tr_prev.script_pubkey.is_p2tr());

    let forged = w.spend_with(
        &other,
        &[(tr_op, tr_prev.clone())],
        vec![out(COIN, w.p2wpkh())],
    );
    let b = block_spending(&cs, &w, forged);
    rejected(&mut cs, &w, b, "mandatory-script-verify-flag-failed");

    let good = w.spend(&[(tr_op, tr_prev)], vec![out(9 * COIN, other.p2tr())]);
    let (_, updates) = cs.mine(w.p2wpkh(), vec![good], NOW).unwrap();
    assert_eq!(updates.len(), 1);
    assert!(cs.coin(&tr_op).is_none());
}

#[test]
fn op_return_outputs_never_enter_the_utxo_set() {
    let (mut cs, w) = setup();
    let (op, prev) = coinbase_utxo(&cs, 1);
    let tx = w.spend(
        &[(op, prev)],
        vec![
            out(COIN, w.p2wpkh()),
            out(0, ScriptBuf::new_op_return([1u8; 4])),
        ],
    );
    let txid = tx.compute_txid();
    cs.mine(w.p2wpkh(), vec![tx], NOW).unwrap();
    assert!(cs.coin(&OutPoint::new(txid, 0)).is_some());
    assert!(cs.coin(&OutPoint::new(txid, 1)).is_none());
}

#[test]
fn duplicate_and_orphan_blocks_are_reported() {
    let (mut cs, w) = setup();
    let (b, _) = cs.mine(w.p2wpkh(), vec![], NOW).unwrap();
    let tip = cs.tip();
    assert_eq!(
        cs.submit_block(b.clone(), NOW).unwrap().0,
        Submitted::Duplicate
    );
    let mut orphan = b;
    orphan.header.prev_blockhash = bitcoin::BlockHash::all_zeros();
    regrind(&mut orphan);
    assert_eq!(
        cs.submit_block(orphan, NOW).unwrap_err().reason,
        "prev-blk-not-found"
    );
    // Neither moved the tip, which is still the mined block as stored.
    assert_eq!(cs.tip(), tip);
    assert_eq!(cs.block(&tip.0).map(|x| x.block_hash()), Some(tip.0));
}

#[test]
fn assumevalid_skips_scripts_of_its_ancestors_only() {
    let (cs, w) = setup();
    let other = Wallet::new(2);
    let (op, prev) = coinbase_utxo(&cs, 1);
    let forged = w.spend_with(&other, &[(op, prev)], vec![out(COIN, w.p2wpkh())]);
    let bad = block_with(&cs, w.p2wpkh(), vec![forged], |_| {});
    let t = bllvm_node::chain::mining::Template {
        prev: bad.block_hash(),
        height: 103,
        time: bad.header.time + 1,
        bits: bad.header.bits,
        fees: 0,
    };
    let mut child = bllvm_node::chain::mining::build_block(cs.params(), &t, w.p2wpkh(), vec![]);
    assert!(bllvm_node::chain::mining::grind(&mut child.header));

    // Without assumevalid the forged signature is caught.
    let mut strict = regtest_chain(&w, 101);
    let err = strict.submit_block(bad.clone(), NOW).unwrap_err();
    assert!(err
        .reason
        .starts_with("mandatory-script-verify-flag-failed"));

    // With the child as assumevalid (headers first, as in sync), both connect.
    let mut trusting = regtest_chain(&w, 101);
    trusting.accept_header(&bad.header, NOW).unwrap();
    trusting.accept_header(&child.header, NOW).unwrap();
    trusting.assume_valid = Some(child.block_hash());
    trusting.submit_block(bad, NOW).unwrap();
    trusting.submit_block(child.clone(), NOW).unwrap();
    assert_eq!(trusting.tip(), (child.block_hash(), 103));
    // Blocks after the assumevalid block are verified again.
    let (op2, prev2) = coinbase_utxo(&trusting, 2);
    let forged2 = w.spend_with(&other, &[(op2, prev2)], vec![out(COIN, w.p2wpkh())]);
    let after = block_with(&trusting, w.p2wpkh(), vec![forged2], |_| {});
    let err = trusting.submit_block(after, NOW).unwrap_err();
    assert!(err
        .reason
        .starts_with("mandatory-script-verify-flag-failed"));
}
