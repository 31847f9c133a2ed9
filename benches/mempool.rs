//! Mempool figures. In process, on a real `ChainState`: acceptance rate for 1-in-1-out P2WPKH
//! transactions and for chains of 2-in-2-out transactions, the rate when every acceptance
//! evicts (a full pool), and block template time at the largest pool. On the release binary:
//! RSS against the budget when a flood of valid low-fee transactions overfills each `max_mb`,
//! and `getrawmempool true` and `getblocktemplate` latency at that pool.
//! `cargo bench --bench mempool`; under `cargo test` a smoke run.

#[path = "../tests/harness/mod.rs"]
mod harness;

use bitcoin::{OutPoint, Transaction, TxOut};
use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::mempool::pool::Pool;
use harness::chain::{out, regtest_chain, Wallet, NOW};
use harness::{address, KeepAlive, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::time::Instant;

/// Outputs per fan-out transaction (about 62 kvB, standard).
const FAN: usize = 2_000;

fn rate(n: usize, t: Instant) -> String {
    let s = t.elapsed().as_secs_f64();
    format!("{n} in {s:.2} s = {:.0}/s", n as f64 / s)
}

/// Fan-outs of `FAN` outputs from each of `coinbases` coinbases (heights 1..): the
/// transactions and the outputs they create.
fn fanouts(
    w: &Wallet,
    coinbases: &[(OutPoint, TxOut)],
) -> (Vec<Transaction>, Vec<(OutPoint, TxOut)>) {
    let mut txs = Vec::new();
    let mut utxos = Vec::new();
    for (op, prev) in coinbases {
        let each = (prev.value.to_sat() - 200_000) / FAN as u64;
        let tx = w.spend(
            &[(*op, prev.clone())],
            (0..FAN).map(|_| out(each, w.p2wpkh())).collect(),
        );
        let txid = tx.compute_txid();
        utxos.extend(
            tx.output
                .iter()
                .enumerate()
                .map(|(i, o)| (OutPoint::new(txid, i as u32), o.clone())),
        );
        txs.push(tx);
    }
    (txs, utxos)
}

/// 1-in-1-out spends of `utxos`, the n-th paying `fee(n)`.
fn singles(
    w: &Wallet,
    utxos: &[(OutPoint, TxOut)],
    fee: impl Fn(usize) -> u64,
) -> Vec<Transaction> {
    utxos
        .iter()
        .enumerate()
        .map(|(n, (op, prev))| {
            w.spend(
                &[(*op, prev.clone())],
                vec![out(prev.value.to_sat() - fee(n), w.p2wpkh())],
            )
        })
        .collect()
}

/// Chains of 24 2-in-2-out transactions, each spending both outputs of the one before; the
/// first spends two confirmed outputs.
fn chains(w: &Wallet, utxos: &[(OutPoint, TxOut)]) -> Vec<Transaction> {
    let mut all = Vec::new();
    for pair in utxos.chunks_exact(2) {
        let mut inputs = pair.to_vec();
        for _ in 0..24 {
            let value = inputs.iter().map(|(_, o)| o.value.to_sat()).sum::<u64>() - 1_000;
            let tx = w.spend(
                &inputs,
                vec![
                    out(value / 2, w.p2wpkh()),
                    out(value - value / 2, w.p2wpkh()),
                ],
            );
            let txid = tx.compute_txid();
            inputs = tx
                .output
                .iter()
                .enumerate()
                .map(|(i, o)| (OutPoint::new(txid, i as u32), o.clone()))
                .collect();
            all.push(tx);
        }
    }
    all
}

/// Offers every transaction; the rate, and how many the pool refused (a full pool refuses
/// what pays less than its rising minimum).
fn accept_all(cs: &mut ChainState, txs: Vec<Transaction>) -> String {
    let n = txs.len();
    let t = Instant::now();
    let refused = txs
        .into_iter()
        .filter(|tx| cs.mempool_accept(tx.clone(), 0, NOW + 1).is_err())
        .count();
    format!("{} ({refused} refused)", rate(n, t))
}

/// A chain with `n` confirmed P2WPKH outputs of the wallet.
fn funded_chain(w: &Wallet, n: usize) -> (ChainState, Vec<(OutPoint, TxOut)>) {
    let fans = n.div_ceil(FAN);
    let mut cs = regtest_chain(w, 100 + fans as u32);
    let coinbases: Vec<_> = (1..=fans as u32)
        .map(|h| harness::chain::coinbase_utxo(&cs, h))
        .collect();
    let (txs, mut utxos) = fanouts(w, &coinbases);
    for chunk in txs.chunks(10) {
        cs.mine(w.p2wpkh(), chunk.to_vec(), NOW).unwrap();
    }
    utxos.truncate(n);
    (cs, utxos)
}

fn in_process(n: usize) {
    let w = Wallet::new(1);
    let t = Instant::now();
    let (mut cs, utxos) = funded_chain(&w, 2 * n);
    println!(
        "setup: {} outputs in {:.1} s",
        utxos.len(),
        t.elapsed().as_secs_f64()
    );
    let (a, b) = utxos.split_at(n);
    let txs = singles(&w, a, |_| 200);
    println!("accept 1-in-1-out P2WPKH: {}", accept_all(&mut cs, txs));
    let txs = chains(&w, &b[..(n / 12).max(2)]);
    println!(
        "accept 2-in-2-out chains of 24: {}",
        accept_all(&mut cs, txs)
    );
    println!(
        "pool: {} transactions, {} bytes accounted",
        cs.mempool.len(),
        cs.mempool.usage()
    );
    let t = Instant::now();
    let s = cs.block_from_mempool();
    println!(
        "block template from {} entries: {} transactions, {} WU, in {:.1} ms",
        cs.mempool.len(),
        s.txs.len(),
        s.weight,
        t.elapsed().as_secs_f64() * 1e3
    );

    // A pool that fills halfway through: from then on every acceptance evicts the cheapest.
    let per_single = single_usage(&w, &mut cs, a);
    let limit = per_single * n / 2;
    cs.mempool = Pool::with_limits(limit, 336 * 3600);
    let txs = singles(&w, a, |i| 200 + 120 * i as u64);
    let accepted = accept_all(&mut cs, txs);
    println!(
        "accept into a pool of {limit} bytes that fills halfway ({} left, {} evicted): {accepted}",
        cs.mempool.len(),
        cs.mempool
            .take_events()
            .iter()
            .filter(|e| matches!(e, bllvm_node::mempool::pool::Event::Removed(..)))
            .count()
    );
}

/// Memory one 1-in-1-out entry is accounted at.
fn single_usage(w: &Wallet, cs: &mut ChainState, utxos: &[(OutPoint, TxOut)]) -> usize {
    let mut pool = Pool::default();
    std::mem::swap(&mut pool, &mut cs.mempool);
    let tx = singles(w, &utxos[..1], |_| 300).remove(0);
    cs.mempool_accept(tx, 0, NOW + 1).unwrap();
    let usage = cs.mempool.usage();
    std::mem::swap(&mut pool, &mut cs.mempool);
    usage
}

/// Sends `txs` in JSON-RPC batches of 100 on one keep-alive connection.
fn send_batches(node: &TestNode, txs: &[Transaction]) -> String {
    let auth = node.auth().unwrap();
    let mut conn = KeepAlive::connect(node.rpc).unwrap();
    let t = Instant::now();
    for chunk in txs.chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                json!({"method": "sendrawtransaction", "id": i,
                       "params": [bitcoin::consensus::encode::serialize_hex(tx)]})
            })
            .collect();
        let (status, _, body) = conn
            .request(
                "POST",
                "/",
                &[("Authorization", &auth)],
                &Value::Array(batch).to_string(),
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    rate(txs.len(), t)
}

fn timed(node: &TestNode, method: &str, params: Value) -> (f64, usize) {
    let t = Instant::now();
    let v = node.call(method, params);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (ms, v.to_string().len())
}

fn flood(max_mb: u64, n: usize) {
    let node = TestNode::ready_with(NodeOptions {
        config: Some(format!(
            "[mempool]\nmax_mb = {max_mb}\n[rpc.auth]\nrate_limit_enabled = false\n"
        )),
        ..NodeOptions::default()
    });
    let w = Wallet::new(1);
    let fans = n.div_ceil(FAN);
    node.call("generatetoaddress", json!([100 + fans, address(1)]));
    let coinbases: Vec<_> = (1..=fans as u64).map(|h| node.coinbase(h)).collect();
    let (fan_txs, utxos) = fanouts(&w, &coinbases);
    for chunk in fan_txs.chunks(10) {
        for tx in chunk {
            node.call(
                "sendrawtransaction",
                json!([bitcoin::consensus::encode::serialize_hex(tx)]),
            );
        }
        node.call("generatetoaddress", json!([1, address(1)]));
    }
    let before = harness::proc_kib(node.pid()).0;
    // Low fees, rising slowly: once full, each newcomer evicts the cheapest.
    let txs = singles(&w, &utxos[..n], |i| 120 + i as u64);
    let sent = send_batches(&node, &txs);
    let info = node.call("getmempoolinfo", json!([]));
    let after = harness::proc_kib(node.pid()).0;
    let evicted = node.metric("bllvm_mempool_removed_total{cause=\"size_limit\"}");
    println!(
        "max_mb {max_mb}: sent {sent}; pool {} transactions, usage {:.1} MB of {:.1} MB, {evicted} evicted; \
         RSS {:.1} -> {:.1} MiB ({:+.1} MiB, {:.2}x the budget)",
        info["size"],
        info["usage"].as_f64().unwrap() / 1e6,
        info["maxmempool"].as_f64().unwrap() / 1e6,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after as f64 - before as f64) / 1024.0,
        (after as f64 - before as f64) * 1024.0 / (max_mb as f64 * 1e6),
    );
    let (ms, bytes) = timed(&node, "getrawmempool", json!([true]));
    println!(
        "  getrawmempool true at {} entries: {ms:.0} ms, {bytes} bytes",
        info["size"]
    );
    let (ms, _) = timed(&node, "getrawmempool", json!([]));
    println!("  getrawmempool at {} entries: {ms:.0} ms", info["size"]);
    let (ms, bytes) = timed(&node, "getblocktemplate", json!([{"rules": ["segwit"]}]));
    println!("  getblocktemplate: {ms:.0} ms, {bytes} bytes");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        in_process(20_000);
        flood(5, 20_000);
        flood(50, 100_000);
        // The default budget: past 50,000 entries for getrawmempool's latency.
        flood(100, 120_000);
    } else {
        in_process(200);
        flood(5, 400);
    }
}
