//! RPC figures on the release binary: requests/s, p50 and p99 for getblockcount,
//! getblockheader, getblock (verbosity 2) and /health at 1, 8 and 64 clients, beside a bare
//! tiny_http server answering a constant (the HTTP stack's ceiling). A new connection per
//! request, as curl and most scrapers do. `cargo bench --bench rpc`; a smoke run under test.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use common::{http_full, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn call(addr: SocketAddr, auth: &str, method: &str, params: Value) -> Value {
    let body = json!({"method": method, "params": params, "id": 1}).to_string();
    let (code, _, reply) = http_full(addr, "POST", "/", &[("Authorization", auth)], &body).unwrap();
    assert_eq!(code, 200, "{method}: {reply}");
    serde_json::from_str::<Value>(&reply).unwrap()["result"].clone()
}

/// A bare tiny_http server answering a constant with 4 workers, like the node's RPC pool.
fn bare_server() -> SocketAddr {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let addr = server.server_addr().to_ip().unwrap();
    for _ in 0..4 {
        let s = server.clone();
        std::thread::spawn(move || {
            while let Ok(rq) = s.recv() {
                let _ = rq.respond(tiny_http::Response::from_string(
                    r#"{"result":0,"error":null,"id":1}"#,
                ));
            }
        });
    }
    addr
}

/// The same bare responder behind the node's gate (in this process, on a Unix socket), so
/// the gate's cost is the difference between the two.
fn gated_bare_server(dir: &std::path::Path) -> SocketAddr {
    use bllvm_node::http::gate::{request::Limits, Gate, GateConfig};
    let path = dir.join("bare.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = Arc::new(tiny_http::Server::from_listener(unix, None).unwrap());
    for _ in 0..4 {
        let s = server.clone();
        std::thread::spawn(move || {
            while let Ok(rq) = s.recv() {
                let _ = rq.respond(
                    tiny_http::Response::from_string(r#"{"result":0,"error":null,"id":1}"#)
                        .with_chunked_threshold(usize::MAX),
                );
            }
        });
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = GateConfig {
        limits: Limits {
            max_header_bytes: 8192,
            max_body_bytes: 32 << 20,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_min_bytes_per_sec: 16384,
        },
        max_connections: 1024,
        max_connections_per_ip: 1024,
        rpc_slots: 4 + 16 + 8,
        probe_slots: 4,
        rpc_answer_timeout: Duration::from_secs(60),
    };
    let metrics = Arc::new(bllvm_node::metrics::Metrics::new("redb").unwrap());
    let gate = Gate::new(listener, path, config, metrics).unwrap();
    let shared = bllvm_node::state::Shared::new(true);
    let heartbeat = shared
        .vitals
        .heartbeat(bllvm_node::component::Component::Http, None);
    let (stop, signal) = bllvm_node::lifecycle::stop_pair(None);
    std::mem::forget(stop);
    std::thread::spawn(move || gate.run(signal, heartbeat, Duration::from_secs(1)));
    addr
}

/// One request: true when answered 200 (503 from a full queue is counted, not fatal).
type Probe = Arc<dyn Fn() -> bool + Send + Sync>;

fn status(addr: SocketAddr, auth: &str, method: &str, params: Value) -> bool {
    let body = json!({"method": method, "params": params, "id": 1}).to_string();
    // A failed request (a timeout) counts as not answered, like a 503, instead of ending the run.
    let Ok((code, _, _)) = http_full(addr, "POST", "/", &[("Authorization", auth)], &body) else {
        return false;
    };
    assert!(code == 200 || code == 503, "{method}: {code}");
    code == 200
}

/// Runs `total` requests from `clients` threads and prints req/s, p50, p99, the slowest, and
/// the ratio to `bare` (the bare responder's req/s at the same concurrency, when known);
/// returns req/s.
fn measure(label: &str, clients: usize, total: usize, f: Probe, bare: Option<f64>) -> f64 {
    let per = (total / clients).max(1);
    let t = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|_| {
                        let t = Instant::now();
                        let ok = f();
                        (t.elapsed(), ok)
                    })
                    .collect::<Vec<(Duration, bool)>>()
            })
        })
        .collect();
    let results: Vec<(Duration, bool)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let wall = t.elapsed();
    let refused = results.iter().filter(|(_, ok)| !ok).count();
    let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let rate = lat.len() as f64 / wall.as_secs_f64();
    println!(
        "{label:<38} {clients:>2} clients: {rate:>6.0} req/s {}  p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  503 or failed: {:.1}%",
        bare.map_or("      ".to_owned(), |b| format!("{:>4.2}x", rate / b)),
        lat[lat.len() / 2],
        lat[(lat.len() - 1) * 99 / 100],
        lat[lat.len() - 1],
        100.0 * refused as f64 / lat.len() as f64
    );
    rate
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let total = if full { 4000 } else { 64 };
    let mut node = TestNode::start_with(NodeOptions {
        // Every client is on 127.0.0.1: the per-address cap would count them as one.
        config: Some(
            "[rpc]\nmax_connections_per_ip = 256\n[rpc.auth]\nrate_limit_enabled = false\n".into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(30));
    let cookie = std::fs::read_to_string(node.datadir.join("regtest/.cookie")).unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(cookie.trim())
    );
    let addr = node.rpc;

    // A chain with one block of 100 real spends (P2WPKH and P2TR) for getblock verbosity 2.
    let w = support::Wallet::new(1);
    let wallet_addr =
        bitcoin::Address::from_script(&w.p2wpkh(), bitcoin::Network::Regtest).unwrap();
    let hashes = call(
        addr,
        &auth,
        "generatetoaddress",
        json!([101, wallet_addr.to_string()]),
    );
    let first: bitcoin::BlockHash = hashes[0].as_str().unwrap().parse().unwrap();
    let raw = call(addr, &auth, "getblock", json!([first.to_string(), 0]));
    let block: bitcoin::Block = bitcoin::consensus::deserialize(
        &<Vec<u8> as bitcoin::hex::FromHex>::from_hex(raw.as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let cb = &block.txdata[0];
    let each = (cb.output[0].value.to_sat() - 10_000) / 100;
    let fan = w.spend(
        &[(
            bitcoin::OutPoint::new(cb.compute_txid(), 0),
            cb.output[0].clone(),
        )],
        (0..100)
            .map(|j| support::out(each, if j % 2 == 0 { w.p2tr() } else { w.p2wpkh() }))
            .collect(),
    );
    let spends: Vec<Value> = fan
        .output
        .iter()
        .enumerate()
        .map(|(j, o)| {
            let tx = w.spend(
                &[(
                    bitcoin::OutPoint::new(fan.compute_txid(), j as u32),
                    o.clone(),
                )],
                vec![support::out(o.value.to_sat() - 500, w.p2wpkh())],
            );
            bitcoin::consensus::encode::serialize_hex(&tx).into()
        })
        .collect();
    let fan_hex = bitcoin::consensus::encode::serialize_hex(&fan);
    call(
        addr,
        &auth,
        "generateblock",
        json!([wallet_addr.to_string(), [fan_hex]]),
    );
    let big = call(
        addr,
        &auth,
        "generateblock",
        json!([wallet_addr.to_string(), spends]),
    )["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let size = call(addr, &auth, "getblock", json!([big.clone(), 1]))["size"].clone();
    println!("chain: 103 blocks; getblock target has 101 transactions, {size} bytes");

    let bare = bare_server();
    let gate_dir = tempfile::tempdir().unwrap();
    let gated = gated_bare_server(gate_dir.path());
    type Target = (&'static str, Probe);
    let a = auth.clone();
    let h = hashes[50].as_str().unwrap().to_owned();
    let a2 = auth.clone();
    let targets: Vec<Target> = vec![
        (
            "bare tiny_http constant",
            Arc::new(move || http_full(bare, "POST", "/", &[], "{}").is_ok_and(|r| r.0 == 200)),
        ),
        (
            "bare tiny_http behind the gate",
            Arc::new(move || http_full(gated, "POST", "/", &[], "{}").is_ok_and(|r| r.0 == 200)),
        ),
        (
            "/health",
            Arc::new(move || http_full(addr, "GET", "/health", &[], "").is_ok_and(|r| r.0 == 200)),
        ),
        (
            "getblockcount",
            Arc::new(move || status(addr, &a, "getblockcount", json!([]))),
        ),
        (
            "getblockheader",
            Arc::new(move || status(addr, &a2, "getblockheader", json!([h.clone(), true]))),
        ),
    ];
    let mut targets = targets;
    for method in ["getbestblockhash", "getblockchaininfo"] {
        let a = auth.clone();
        targets.push((
            method,
            Arc::new(move || status(addr, &a, method, json!([]))),
        ));
    }
    for verbosity in [0, 1, 2] {
        let (a, big) = (auth.clone(), big.clone());
        let label: &'static str = [
            "getblock 0 (101 txs)",
            "getblock 1 (101 txs)",
            "getblock 2 (101 txs)",
        ][verbosity];
        targets.push((
            label,
            Arc::new(move || status(addr, &a, "getblock", json!([big.clone(), verbosity]))),
        ));
    }
    // The same node's per-request log line at info (written to a file here).
    let mut logged = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc]\nmax_connections_per_ip = 256\n[rpc.auth]\nrate_limit_enabled = false\n[logging]\nrpc_requests = \"info\"\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    logged.wait_ready(Duration::from_secs(30));
    let logged_addr = logged.rpc;
    let logged_auth = {
        let c = std::fs::read_to_string(logged.datadir.join("regtest/.cookie")).unwrap();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c.trim())
        )
    };
    targets.push((
        "getblockcount, rpc_requests = info",
        Arc::new(move || status(logged_addr, &logged_auth, "getblockcount", json!([]))),
    ));
    let mut bare_rate = std::collections::HashMap::new();
    for (i, (label, f)) in targets.into_iter().enumerate() {
        for clients in [1, 8, 64] {
            let rate = measure(
                label,
                clients,
                total,
                f.clone(),
                bare_rate.get(&clients).copied(),
            );
            if i == 0 {
                bare_rate.insert(clients, rate);
            }
        }
    }
    println!(
        "log written at info: {} bytes for the calls above",
        std::fs::metadata(&logged.log_path).map_or(0, |m| m.len())
    );
    logged.signal(libc::SIGTERM);
    assert_eq!(logged.wait_exit(Duration::from_secs(30)), 0);
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
}
