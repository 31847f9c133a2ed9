//! bllvm-node against an independent full node: bcoin (JavaScript, its own P2P stack and
//! validation), run from `tests/interop/bcoin` (installed by `scripts/test` with `npm ci`).
//!
//! bcoin syncs a chain with segwit and taproot spends from bllvm-node (by `getblocks`, the old
//! protocol it uses on regtest, in batches of 500), bllvm-node syncs it back from bcoin
//! (headers-first), and new blocks mined on either side reach the other.

mod harness;

use harness::{address, free_port, http_full, json, poll, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SYNC: Duration = Duration::from_secs(180);
const BCOIN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/bcoin");
/// A regtest P2PKH address in bcoin 1.0.2's regtest prefixes (not Core's).
const BCOIN_PAYOUT: &str = "R9NVxTj2ewfiTUzAfn7FSsq9kxNt6fjaaZ";

/// A bcoin full node on loopback; killed on drop.
struct Bcoin {
    child: Child,
    http: std::net::SocketAddr,
    p2p: std::net::SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bcoin {
    /// Starts bcoin on regtest, dialling only `peers`.
    fn start(peers: &[std::net::SocketAddr]) -> Bcoin {
        let dir = Path::new(BCOIN_DIR);
        assert!(
            dir.join("node_modules/bcoin").is_dir(),
            "bcoin is not installed in {BCOIN_DIR}: run scripts/test, which runs \
             `npm ci --ignore-scripts` there"
        );
        let tmp = tempfile::Builder::new()
            .prefix("bllvm-bcoin-")
            .tempdir()
            .unwrap();
        let (p2p, http) = (free_port(), free_port());
        let log = tmp.path().join("bcoin.log");
        let out = File::create(&log).unwrap();
        let child = Command::new("node")
            .current_dir(dir)
            .arg("regtest_node.js")
            .arg(tmp.path())
            .args([p2p.to_string(), http.to_string(), "apikey".into()])
            .args(peers.iter().map(|p| p.to_string()))
            // bcrypto's pure-JavaScript backend: nothing native to build.
            .env("NODE_BACKEND", "js")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start node (Node.js) for bcoin");
        let b = Bcoin {
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            p2p: format!("127.0.0.1:{p2p}").parse().unwrap(),
            log,
            _dir: tmp,
        };
        poll(Duration::from_secs(60), "bcoin to answer RPC", || {
            b.rpc("getblockcount", json!([])).ok()
        });
        b
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        use base64::Engine;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("x:apikey")
        );
        let body = json!({"method": method, "params": params, "id": 1}).to_string();
        let (_, _, text) = http_full(self.http, "POST", "/", &[("Authorization", &auth)], &body)
            .map_err(|e| e.to_string())?;
        let mut reply = json(&text);
        match reply.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(reply["result"].take()),
        }
    }

    fn call(&self, method: &str, params: Value) -> Value {
        self.rpc(method, params)
            .unwrap_or_else(|e| panic!("bcoin {method} failed: {e}\nlog:\n{}", self.log()))
    }

    fn tip(&self) -> (u64, String) {
        let info = self.call("getblockchaininfo", json!([]));
        (
            info["blocks"].as_u64().unwrap(),
            info["bestblockhash"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Bcoin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_same_tip(node: &TestNode, bcoin: &Bcoin, want: &(u64, String), what: &str) {
    poll(SYNC, what, || {
        (node.tip() == *want
            && bcoin.rpc("getblockchaininfo", json!([])).is_ok()
            && bcoin.tip() == *want)
            .then_some(())
    });
}

#[test]
fn bcoin_and_bllvm_sync_from_each_other() {
    // A: 142 blocks with P2WPKH and P2TR spends, then enough empty blocks that bcoin needs two
    // `getblocks` batches and our continuation `inv` between them.
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    for block in harness::chain::spend_chain(40, 20) {
        let hex = bitcoin::consensus::encode::serialize_hex(&block);
        assert_eq!(a.call("submitblock", json!([hex])), Value::Null);
    }
    a.call("generatetoaddress", json!([400, address(3)]));
    let want = a.tip();
    assert_eq!(want.0, 542);

    let bcoin = Bcoin::start(&[a.p2p]);
    poll(SYNC, "bcoin syncs A's chain", || {
        (bcoin.tip() == want).then_some(())
    });
    let peers = a.call("getpeerinfo", json!([]));
    assert!(
        peers[0]["subver"].as_str().unwrap().starts_with("/bcoin:"),
        "{peers}"
    );

    // Blocks mined by bcoin reach A, and A's reach bcoin.
    bcoin.call("generatetoaddress", json!([3, BCOIN_PAYOUT]));
    let want = bcoin.tip();
    assert_eq!(want.0, 545);
    wait_same_tip(&a, &bcoin, &want, "A follows bcoin's blocks");
    a.call("generatetoaddress", json!([2, address(3)]));
    let want = a.tip();
    wait_same_tip(&a, &bcoin, &want, "bcoin follows A's blocks");

    // B knows only bcoin: the whole chain, witnesses included, comes from bcoin.
    let mut b = TestNode::start_with(NodeOptions {
        args: vec!["--connect".into(), bcoin.p2p.to_string()],
        ..NodeOptions::default()
    });
    b.wait_ready(Duration::from_secs(10));
    wait_same_tip(&b, &bcoin, &want, "B syncs from bcoin");
    let info = b.call("gettxoutsetinfo", json!([]));
    assert_eq!(info, a.call("gettxoutsetinfo", json!([])));
}

fn mempool_of(list: Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Transactions cross both ways: one sent to bllvm-node reaches bcoin's mempool (announced by
/// txid: bcoin predates wtxid relay) and a block bcoin mines takes it out of ours; one sent to
/// bcoin reaches our mempool and a block we mine takes it out of bcoin's.
#[test]
fn transactions_relay_between_bcoin_and_bllvm_both_ways() {
    use harness::chain::{out, Wallet};
    let a = TestNode::ready_with(NodeOptions::default());
    a.call("generatetoaddress", json!([103, address(1)]));
    let bcoin = Bcoin::start(&[a.p2p]);
    let want = a.tip();
    poll(SYNC, "bcoin syncs A's chain", || {
        (bcoin.tip() == want).then_some(())
    });
    let w = Wallet::new(1);
    let pay = |height: u64| {
        let (op, prev) = a.coinbase(height);
        w.spend(
            &[(op, prev)],
            vec![out(50 * 100_000_000 - 3_000, w.p2wpkh())],
        )
    };

    // Ours to bcoin, mined by bcoin.
    let ours = pay(1);
    let ours_id = ours.compute_txid().to_string();
    a.call(
        "sendrawtransaction",
        json!([bitcoin::consensus::encode::serialize_hex(&ours)]),
    );
    poll(SYNC, "our transaction in bcoin's mempool", || {
        (mempool_of(bcoin.call("getrawmempool", json!([]))) == [ours_id.clone()]).then_some(())
    });
    bcoin.call("generatetoaddress", json!([1, BCOIN_PAYOUT]));
    let want = bcoin.tip();
    wait_same_tip(&a, &bcoin, &want, "A takes bcoin's block");
    let block = a.call("getblock", json!([want.1, 1]));
    assert!(
        block["tx"].as_array().unwrap().contains(&json!(ours_id)),
        "bcoin mined it: {block}"
    );
    assert_eq!(a.call("getrawmempool", json!([])), json!([]));

    // bcoin's to ours, mined by us.
    let theirs = pay(2);
    let theirs_id = theirs.compute_txid().to_string();
    bcoin.call(
        "sendrawtransaction",
        json!([bitcoin::consensus::encode::serialize_hex(&theirs)]),
    );
    poll(SYNC, "bcoin's transaction in our mempool", || {
        (a.mempool_ids() == [theirs_id.clone()]).then_some(())
    });
    let hashes = a.call("generatetoaddress", json!([1, address(3)]));
    let block = a.call("getblock", json!([hashes[0], 1]));
    assert!(block["tx"].as_array().unwrap().contains(&json!(theirs_id)));
    let want = a.tip();
    wait_same_tip(&a, &bcoin, &want, "bcoin takes our block");
    poll(SYNC, "bcoin's mempool to empty", || {
        mempool_of(bcoin.call("getrawmempool", json!([])))
            .is_empty()
            .then_some(())
    });
}
