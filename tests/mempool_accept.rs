//! Mempool acceptance on a real regtest chain state, with transactions signed here (P2WPKH and
//! P2TR key path): each of Core's rules refuses with Core's reason, and full-RBF replaces by
//! Core's rules.

mod harness;

use bitcoin::hashes::Hash;
use bitcoin::{absolute, OutPoint, ScriptBuf, Sequence, Transaction, TxOut};
use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::script::block_flags;
use bllvm_node::mempool::accept::{accept, Accepted, ChainView, FeeFloors};
use bllvm_node::mempool::pool::Pool;
use harness::chain::{coinbase_utxo, out, regtest_chain, Wallet, NOW};

const FLOORS: FeeFloors = FeeFloors {
    min_relay: 1_000,
    pool_min: 0,
    max: 0,
};
const COIN: u64 = 100_000_000;

/// Accepts `tx` into `pool` against `cs`'s tip.
fn try_accept(pool: &mut Pool, cs: &ChainState, tx: Transaction) -> Result<Accepted, String> {
    let (tip, height) = cs.tip();
    let coin = |op: &OutPoint| cs.coin(op);
    let mtp_at = |h: u32| {
        cs.hash_at(h)
            .map(|b| cs.tree().median_time_past(&b))
            .unwrap_or(0)
    };
    let view = ChainView {
        coin: &coin,
        next_height: height + 1,
        tip_mtp: cs.tree().median_time_past(&tip),
        mtp_at: &mtp_at,
        flags: block_flags(cs.params(), height + 1, &bitcoin::BlockHash::all_zeros()),
    };
    accept(pool, &view, tx, FLOORS, NOW).map_err(|r| r.reason)
}

/// A chain of 101 blocks to `w` (coinbases 1 and 2 are mature) and an empty pool.
fn setup() -> (ChainState, Wallet, Pool) {
    let w = Wallet::new(1);
    (regtest_chain(&w, 101), w, Pool::default())
}

/// Spends coinbase `height` to `outputs`.
fn spend(cs: &ChainState, w: &Wallet, height: u32, outputs: Vec<TxOut>) -> Transaction {
    let (op, prev) = coinbase_utxo(cs, height);
    w.spend(&[(op, prev)], outputs)
}

#[test]
fn a_signed_spend_enters_and_its_child_chains_on_it() {
    let (cs, w, mut pool) = setup();
    let parent = spend(&cs, &w, 1, vec![out(50 * COIN - 1_000, w.p2tr())]);
    let got = try_accept(&mut pool, &cs, parent.clone()).unwrap();
    assert_eq!(got.fee, 1_000);
    assert!(got.replaced.is_empty());
    // A P2TR key-path child of the unconfirmed parent.
    let op = OutPoint::new(parent.compute_txid(), 0);
    let child = w.spend(
        &[(op, parent.output[0].clone())],
        vec![out(50 * COIN - 3_000, w.p2wpkh())],
    );
    try_accept(&mut pool, &cs, child.clone()).unwrap();
    assert_eq!(pool.len(), 2);
    assert_eq!(pool.ancestors(&child.compute_txid()).len(), 1);
    assert_eq!(
        try_accept(&mut pool, &cs, child).unwrap_err(),
        "txn-already-in-mempool"
    );
}

#[test]
fn each_rule_refuses_with_cores_reason() {
    let (cs, w, mut pool) = setup();
    let other = Wallet::new(2);
    let mut check = |tx: Transaction, reason: &str| {
        let got = try_accept(&mut pool, &cs, tx).unwrap_err();
        // Script failures carry libbitcoinconsensus' detail after Core's reason.
        assert!(got.starts_with(reason), "expected {reason}, got {got}");
        assert!(pool.is_empty(), "a refusal changes nothing");
    };
    // Fee below 1 sat/vB.
    check(
        spend(&cs, &w, 1, vec![out(50 * COIN - 50, w.p2wpkh())]),
        "min relay fee not met",
    );
    check(spend(&cs, &w, 1, vec![out(100, w.p2wpkh())]), "dust");
    check(
        spend(
            &cs,
            &w,
            1,
            vec![out(COIN, ScriptBuf::from(vec![0x51, 0x87]))],
        ),
        "scriptpubkey",
    );
    // More out than in.
    check(
        spend(&cs, &w, 1, vec![out(51 * COIN, w.p2wpkh())]),
        "bad-txns-in-belowout",
    );
    // A coinbase 100 blocks deep is mature only from the next block on: coinbase 2 is, 3 is not.
    check(
        spend(&cs, &w, 3, vec![out(COIN, w.p2wpkh())]),
        "bad-txns-premature-spend-of-coinbase",
    );
    // Nothing there.
    let (op, prev) = coinbase_utxo(&cs, 1);
    let missing = OutPoint::new(op.txid, 7);
    check(
        w.spend(&[(missing, prev.clone())], vec![out(COIN, w.p2wpkh())]),
        "bad-txns-inputs-missingorspent",
    );
    // Locked until a height not yet reached.
    let mut locked = spend(&cs, &w, 1, vec![out(COIN, w.p2wpkh())]);
    locked.lock_time = absolute::LockTime::from_height(500).unwrap();
    locked.input[0].sequence = Sequence::ENABLE_LOCKTIME_NO_RBF;
    w.sign(&mut locked, &[(op, prev.clone())]);
    check(locked, "non-final");
    // A relative lock of 200 blocks on a coin 101 blocks deep.
    let mut relative = spend(&cs, &w, 1, vec![out(COIN, w.p2wpkh())]);
    relative.input[0].sequence = Sequence::from_height(200);
    w.sign(&mut relative, &[(op, prev.clone())]);
    check(relative, "non-BIP68-final");
    // Signed by the wrong key.
    check(
        w.spend_with(&other, &[(op, prev)], vec![out(COIN, w.p2wpkh())]),
        "mandatory-script-verify-flag-failed",
    );
}

#[test]
fn full_rbf_replaces_by_cores_rules() {
    let (cs, w, mut pool) = setup();
    let first = spend(&cs, &w, 1, vec![out(50 * COIN - 1_000, w.p2wpkh())]);
    try_accept(&mut pool, &cs, first.clone()).unwrap();
    // Same fee: refused.
    let same = spend(&cs, &w, 1, vec![out(50 * COIN - 1_000, w.p2tr())]);
    assert_eq!(
        try_accept(&mut pool, &cs, same).unwrap_err(),
        "insufficient fee"
    );
    // The same size at a higher feerate, but not enough more to pay for its own relay (1 sat/vB
    // of its size).
    let barely = spend(&cs, &w, 1, vec![out(50 * COIN - 1_050, w.p2wpkh())]);
    assert_eq!(
        try_accept(&mut pool, &cs, barely).unwrap_err(),
        "insufficient fee"
    );
    assert_eq!(pool.len(), 1);
    // Enough: it replaces the first.
    let better = spend(&cs, &w, 1, vec![out(50 * COIN - 2_000, w.p2tr())]);
    let got = try_accept(&mut pool, &cs, better.clone()).unwrap();
    assert_eq!(got.replaced, vec![first.compute_txid()]);
    assert_eq!(pool.len(), 1);
    assert!(pool.get(&better.compute_txid()).is_some());
}

/// Spends of `parent`'s outputs `vouts`, each output of it to the wallet, signed.
fn spend_outputs(
    w: &Wallet,
    parent: &Transaction,
    vouts: &[u32],
    outputs: Vec<TxOut>,
) -> Transaction {
    let inputs: Vec<(OutPoint, TxOut)> = vouts
        .iter()
        .map(|v| {
            (
                OutPoint::new(parent.compute_txid(), *v),
                parent.output[*v as usize].clone(),
            )
        })
        .collect();
    w.spend(&inputs, outputs)
}

#[test]
fn standardness_rules_refuse_signed_transactions_with_cores_reasons() {
    let (cs, w, mut pool) = setup();
    let mut check = |tx: Transaction, reason: &str| {
        assert_eq!(try_accept(&mut pool, &cs, tx).unwrap_err(), reason);
    };
    let op_return = |n: u8| out(0, ScriptBuf::new_op_return([n; 8]));
    check(
        spend(
            &cs,
            &w,
            1,
            vec![out(COIN, w.p2wpkh()), op_return(1), op_return(2)],
        ),
        "multi-op-return",
    );
    // An 84-byte OP_RETURN script (81 bytes of data): past Core's 83-byte limit.
    let mut big = vec![0x6a, 0x4c, 81];
    big.extend([7u8; 81]);
    check(
        spend(
            &cs,
            &w,
            1,
            vec![out(COIN, w.p2wpkh()), out(0, ScriptBuf::from(big))],
        ),
        "scriptpubkey",
    );
    let mut v4 = spend(&cs, &w, 1, vec![out(COIN, w.p2wpkh())]);
    v4.version = bitcoin::transaction::Version(4);
    let (op, prev) = coinbase_utxo(&cs, 1);
    w.sign(&mut v4, &[(op, prev.clone())]);
    check(v4, "version");
    let mut not_push = spend(&cs, &w, 1, vec![out(COIN, w.p2wpkh())]);
    not_push.input[0].script_sig = ScriptBuf::from(vec![0x61]); // OP_NOP
    check(not_push, "scriptsig-not-pushonly");
    // Heavier than 400,000 weight units.
    let wide = spend(
        &cs,
        &w,
        1,
        (0..3_300).map(|_| out(10_000, w.p2wpkh())).collect(),
    );
    check(wide, "tx-size");
}

#[test]
fn package_limits_and_replacement_limits_refuse_with_cores_reasons() {
    let (mut cs, w, mut pool) = setup();
    // 26 in a chain: the 26th has 25 unconfirmed ancestors.
    let mut prev = spend(&cs, &w, 1, vec![out(50 * COIN - 1_000, w.p2wpkh())]);
    try_accept(&mut pool, &cs, prev.clone()).unwrap();
    for i in 1..=25u64 {
        let value = prev.output[0].value.to_sat() - 1_000;
        let next = spend_outputs(&w, &prev, &[0], vec![out(value, w.p2wpkh())]);
        let got = try_accept(&mut pool, &cs, next.clone());
        if i < 25 {
            got.unwrap();
        } else {
            assert_eq!(got.unwrap_err(), "too-long-mempool-chain");
        }
        prev = next;
    }

    // A replacement that spends what it replaces.
    let mut pool = Pool::default();
    let parent = spend(&cs, &w, 2, vec![out(50 * COIN - 1_000, w.p2wpkh())]);
    try_accept(&mut pool, &cs, parent.clone()).unwrap();
    let (op2, prev2) = coinbase_utxo(&cs, 2);
    let mut both = vec![(op2, prev2)];
    both.push((
        OutPoint::new(parent.compute_txid(), 0),
        parent.output[0].clone(),
    ));
    let circular = w.spend(&both, vec![out(90 * COIN, w.p2wpkh())]);
    assert_eq!(
        try_accept(&mut pool, &cs, circular).unwrap_err(),
        "bad-txns-spends-conflicting-tx"
    );

    // Replacing more than 100 transactions at once: 101 spends of a confirmed fan-out, then one
    // transaction spending all 101 outputs.
    let (op, prev) = coinbase_utxo(&cs, 2);
    let fan = w.spend(
        &[(op, prev)],
        (0..101).map(|_| out(COIN / 4, w.p2wpkh())).collect(),
    );
    cs.mine(w.p2wpkh(), vec![fan.clone()], NOW).unwrap();
    let mut pool = Pool::default();
    for v in 0..101 {
        let t = spend_outputs(&w, &fan, &[v], vec![out(COIN / 4 - 500, w.p2wpkh())]);
        try_accept(&mut pool, &cs, t).unwrap();
    }
    let all: Vec<u32> = (0..101).collect();
    let sweep = spend_outputs(&w, &fan, &all, vec![out(101 * COIN / 4 - COIN, w.p2wpkh())]);
    assert_eq!(
        try_accept(&mut pool, &cs, sweep).unwrap_err(),
        "too many potential replacements"
    );
    assert_eq!(pool.len(), 101, "a refusal changes nothing");
}
