//! electrs 0.12.0, the Electrum server most node operators run, indexes the node through its
//! REST interface and JSON-RPC: from an empty index to the tip, following new blocks and a
//! reorg, with `blockchain.scripthash.get_history` right for an address paid in the chain.
//! The binary is built once per machine by scripts/test into ~/.cache/bllvm-node (or named by
//! BLLVM_ELECTRS); without it this test fails and says how to get it.

mod common;

use bitcoin::hashes::{sha256, Hash};
use common::{address, free_port, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn electrs_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BLLVM_ELECTRS") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = std::path::Path::new(&home).join(".cache/bllvm-node/electrs-0.12.0/bin/electrs");
    assert!(
        p.exists(),
        "electrs 0.12.0 is not at {}: run scripts/test (it builds it once per machine), or set BLLVM_ELECTRS",
        p.display()
    );
    p
}

/// The electrs process, killed on drop.
struct Electrs {
    child: std::sync::Mutex<Child>,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Electrs {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Electrs {
    fn start(node: &TestNode, dir: &std::path::Path) -> Electrs {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join("electrs.log");
        let child = Command::new(electrs_binary())
            .args(["--network", "regtest", "--log-filters", "INFO"])
            .arg("--daemon-rpc-addr")
            .arg(node.rpc.to_string())
            .arg("--cookie-file")
            .arg(node.datadir.join("regtest/.cookie"))
            .arg("--db-dir")
            .arg(dir.join("db"))
            .arg("--electrum-rpc-addr")
            .arg(addr.to_string())
            .arg("--monitoring-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start electrs");
        Electrs {
            child: std::sync::Mutex::new(child),
            addr,
            log,
        }
    }

    /// Whether electrs has exited (it stops on a node it cannot index).
    fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten().is_some()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One Electrum call on a new connection; `None` while electrs is not answering yet.
    fn call(&self, method: &str, params: Value) -> Option<Value> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let mut w = s.try_clone().ok()?;
        let req = json!({"id": 1, "jsonrpc": "2.0", "method": method, "params": params});
        writeln!(w, "{req}").ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        let v: Value = serde_json::from_str(&line).ok()?;
        Some(v["result"].clone())
    }

    fn height(&self) -> Option<u64> {
        self.call("blockchain.headers.subscribe", json!([]))?["height"].as_u64()
    }

    /// The confirmed history of `addr`: (txid, height) in chain order.
    fn history(&self, addr: &str) -> Option<Vec<(String, u64)>> {
        let script = bitcoin::Address::from_str(addr)
            .ok()?
            .assume_checked()
            .script_pubkey();
        let mut hash = sha256::Hash::hash(script.as_bytes()).to_byte_array();
        hash.reverse();
        let h = bitcoin::hex::DisplayHex::to_lower_hex_string(&hash[..]);
        let v = self.call("blockchain.scripthash.get_history", json!([h]))?;
        Some(
            v.as_array()?
                .iter()
                .map(|e| {
                    (
                        e["tx_hash"].as_str().unwrap_or("").to_owned(),
                        e["height"].as_u64().unwrap_or(0),
                    )
                })
                .collect(),
        )
    }
}

use std::str::FromStr;

/// A JSON-RPC call from 127.0.0.2: the test's own calls have their own rate-limit bucket,
/// so electrs (on 127.0.0.1) meets the default limits alone.
fn call(node: &TestNode, method: &str, params: Value) -> Value {
    let body = json!({"method": method, "params": params, "id": 1}).to_string();
    let auth = node.auth().unwrap();
    let src = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, _, text) = common::http_from(
            src,
            node.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            &body,
        )
        .unwrap();
        // The default per-address limit (100/s) holds for the test too: it waits its turn.
        if status == 429 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert_eq!(status, 200, "{method}: {text}");
        return common::json(&text)["result"].clone();
    }
}

/// The coinbase txids paying `addr` in the node's active chain, with heights.
fn coinbases_to(node: &TestNode, addr: &str) -> Vec<(String, u64)> {
    let tip = call(node, "getblockcount", json!([])).as_u64().unwrap();
    let script = bitcoin::Address::from_str(addr)
        .unwrap()
        .assume_checked()
        .script_pubkey();
    (1..=tip)
        .filter_map(|h| {
            let hash = call(node, "getblockhash", json!([h]));
            let b = call(node, "getblock", json!([hash, 2]));
            let cb = &b["tx"][0];
            (cb["vout"][0]["scriptPubKey"]["hex"]
                == bitcoin::hex::DisplayHex::to_lower_hex_string(script.as_bytes()))
            .then(|| (cb["txid"].as_str().unwrap().to_owned(), h))
        })
        .collect()
}

#[test]
fn electrs_indexes_the_node_and_follows_new_blocks_and_a_reorg() {
    let node = TestNode::ready_with(NodeOptions {
        // The default rate limits: indexing bursts past them get 503, which electrs waits out.
        config: Some("[rpc]\nrest = true\n".into()),
        ..NodeOptions::default()
    });
    let (a, b) = (address(1), address(2));
    call(&node, "generatetoaddress", json!([101, a]));
    let dir = tempfile::tempdir().unwrap();
    let electrs = Electrs::start(&node, dir.path());
    let synced = |height: u64| {
        let deadline = std::time::Instant::now() + WAIT;
        while electrs.height() != Some(height) {
            assert!(
                std::time::Instant::now() < deadline && !electrs.exited(),
                "electrs did not reach height {height}; its log:\n{}",
                electrs.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    synced(101);
    assert_eq!(
        electrs.history(&a).unwrap(),
        coinbases_to(&node, &a),
        "{}",
        electrs.log()
    );

    // Three new blocks.
    call(&node, "generatetoaddress", json!([3, a]));
    synced(104);
    assert_eq!(electrs.history(&a).unwrap().len(), 104);

    // A reorg of two blocks: 103 and 104 replaced by three blocks paying b.
    let h103 = call(&node, "getblockhash", json!([103]));
    call(&node, "invalidateblock", json!([h103]));
    call(&node, "generatetoaddress", json!([3, b]));
    synced(105);
    let tip = call(&node, "getbestblockhash", json!([]));
    let header = electrs
        .call("blockchain.block.header", json!([105]))
        .unwrap();
    let raw = <Vec<u8> as bitcoin::hex::FromHex>::from_hex(header.as_str().unwrap()).unwrap();
    let header: bitcoin::block::Header = bitcoin::consensus::deserialize(&raw).unwrap();
    assert_eq!(header.block_hash().to_string(), tip.as_str().unwrap());
    assert_eq!(
        electrs.history(&a).unwrap(),
        coinbases_to(&node, &a),
        "orphaned coinbases gone"
    );
    assert_eq!(electrs.history(&a).unwrap().len(), 102);
    assert_eq!(electrs.history(&b).unwrap(), coinbases_to(&node, &b));
    assert_eq!(electrs.history(&b).unwrap().len(), 3);
}
