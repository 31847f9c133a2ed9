//! The mempool's memory budget on a real node with the smallest `max_mb` (5): big transactions
//! fill it, the lowest fee rates are evicted, the minimum fee rises above the relay floor and
//! refuses what pays less, and usage never passes the budget.

mod harness;

use harness::chain::{hex, out, Wallet};
use harness::{address, NodeOptions, TestNode};
use serde_json::json;

const COIN: u64 = 100_000_000;

#[test]
fn a_full_pool_evicts_the_cheapest_and_raises_its_minimum_fee() {
    let node = TestNode::ready_with(NodeOptions {
        config: Some("[mempool]\nmax_mb = 5\n".into()),
        ..NodeOptions::default()
    });
    // Coinbases 1 to 31 spendable.
    node.call("generatetoaddress", json!([131, address(1)]));
    let w = Wallet::new(1);
    let info = node.call("getmempoolinfo", json!([]));
    assert_eq!(info["maxmempool"], 5_000_000);
    // Thirty transactions of 2,500 outputs (about 78 kvB, 240 kB of accounted memory each),
    // the n-th paying n + 1 sat/vB: about 20 fit.
    for n in 1..=30u64 {
        let (op, prev) = node.coinbase(n);
        let outputs: Vec<_> = (0..2_500).map(|_| out(1_000, w.p2wpkh())).collect();
        let unpaid = w.spend(&[(op, prev.clone())], outputs.clone());
        let fee = (n + 1) * unpaid.vsize() as u64;
        let mut outputs = outputs;
        outputs.push(out(prev.value.to_sat() - 2_500 * 1_000 - fee, w.p2wpkh()));
        let tx = w.spend(&[(op, prev)], outputs);
        node.call("sendrawtransaction", json!([hex(&tx)]));
        let usage = node.call("getmempoolinfo", json!([]))["usage"]
            .as_u64()
            .unwrap();
        assert!(usage <= 5_000_000, "usage {usage} after transaction {n}");
    }
    let info = node.call("getmempoolinfo", json!([]));
    let size = info["size"].as_u64().unwrap();
    assert!((15..30).contains(&size), "{info}");
    let evicted = node.metric("bllvm_mempool_removed_total{cause=\"size_limit\"}");
    assert_eq!(evicted as u64, 30 - size, "{info}");
    // The cheapest went: whatever is left pays more than any evicted one did.
    let left = node.call("getrawmempool", json!([true]));
    let lowest = left
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["fees"]["base"].as_f64().unwrap() * 1e8 / e["vsize"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert!(
        lowest >= (30 - size + 1) as f64,
        "lowest {lowest} sat/vB with {size} left"
    );
    // The floor rose past the relay minimum, and a payment under it is refused.
    let floor = info["mempoolminfee"].as_f64().unwrap();
    assert!(floor > 0.00001, "{info}");
    assert!(node.metric("bllvm_mempool_min_fee_rate") > 1.0);
    let (op, prev) = node.coinbase(31);
    let cheap = w.spend(&[(op, prev)], vec![out(50 * COIN - 2 * 110, w.p2wpkh())]);
    let err = node
        .rpc("sendrawtransaction", json!([hex(&cheap)]))
        .unwrap_err();
    assert_eq!(err["code"], -26, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("mempool min fee not met"),
        "{err}"
    );
}
