//! electrs 0.12.0, run against a node: the binary (built once per machine by scripts/test into
//! ~/.cache/bllvm-node, or named by BLLVM_ELECTRS), and an Electrum client for it.

use super::{free_port, TestNode};
use bitcoin::hashes::{sha256, Hash};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

/// The electrs 0.12.0 binary; panics saying how to get it when it is missing.
pub fn electrs_binary() -> std::path::PathBuf {
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
pub struct Electrs {
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
    /// Starts electrs indexing `node` into `dir`.
    pub fn start(node: &TestNode, dir: &std::path::Path) -> Electrs {
        Electrs::start_with(node, dir, &[])
    }

    /// [`Electrs::start`] with more arguments (`--skip-block-download-wait` for a chain whose
    /// tip is old, which both Core and this node report as initial block download).
    pub fn start_with(node: &TestNode, dir: &std::path::Path, extra: &[&str]) -> Electrs {
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
            .args(extra)
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
    pub fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten().is_some()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One Electrum call on a new connection; `None` while electrs is not answering yet.
    pub fn call(&self, method: &str, params: Value) -> Option<Value> {
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

    /// The height of its best header.
    pub fn height(&self) -> Option<u64> {
        self.call("blockchain.headers.subscribe", json!([]))?["height"].as_u64()
    }

    /// The confirmed history of `addr`: (txid, height) in chain order.
    pub fn history(&self, addr: &str) -> Option<Vec<(String, u64)>> {
        let script = bitcoin::Address::from_str(addr)
            .ok()?
            .assume_checked()
            .script_pubkey();
        let v = self.call(
            "blockchain.scripthash.get_history",
            json!([scripthash(&script)]),
        )?;
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

/// The script hash Electrum indexes `script` under (SHA-256, byte-reversed, hex).
pub fn scripthash(script: &bitcoin::Script) -> String {
    let mut hash = sha256::Hash::hash(script.as_bytes()).to_byte_array();
    hash.reverse();
    bitcoin::hex::DisplayHex::to_lower_hex_string(&hash[..])
}
