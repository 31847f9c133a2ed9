//! RPC figures on the release binary: requests/s, p50, p99 and the slowest for the tip calls,
//! getblockheader, getblock 0/1/2 and /health at 1, 8 and 64 connections, each beside a bare
//! tiny_http server answering a constant (the HTTP stack's ceiling) measured just before it,
//! with the ratios; over keep-alive connections (as wrk) and a new connection per request (as
//! curl). `cargo bench --bench rpc`; a smoke run under test.

#[path = "../tests/harness/mod.rs"]
mod harness;

use base64::Engine;
use harness::{http_full, KeepAlive, NodeOptions, TestNode};
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
    let gate = Gate::new(listener, path, config, metrics, Arc::default()).unwrap();
    let shared = bllvm_node::state::Shared::new(true);
    let heartbeat = shared
        .vitals
        .heartbeat(bllvm_node::component::Component::Http, None);
    let (stop, signal) = bllvm_node::lifecycle::stop_pair(None);
    std::mem::forget(stop);
    std::thread::spawn(move || gate.run(signal, heartbeat, Duration::from_secs(1)));
    addr
}

/// Mines a block spending `n` outputs (P2WPKH and P2TR, one spend each) that a fan-out
/// block made from the coinbase of `coinbase_block`; returns its hash.
fn spends_block(
    addr: SocketAddr,
    auth: &str,
    w: &harness::chain::Wallet,
    coinbase_block: &str,
    n: usize,
) -> String {
    let payout = bitcoin::Address::from_script(&w.p2wpkh(), bitcoin::Network::Regtest)
        .unwrap()
        .to_string();
    let raw = call(addr, auth, "getblock", json!([coinbase_block, 0]));
    let block: bitcoin::Block = bitcoin::consensus::deserialize(
        &<Vec<u8> as bitcoin::hex::FromHex>::from_hex(raw.as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let cb = &block.txdata[0];
    // Fan-out transactions of at most 2,500 outputs each, under the standard weight.
    let fans = n.div_ceil(2500);
    let share = (cb.output[0].value.to_sat() - 10_000) / fans as u64;
    let split = w.spend(
        &[(
            bitcoin::OutPoint::new(cb.compute_txid(), 0),
            cb.output[0].clone(),
        )],
        (0..fans)
            .map(|_| harness::chain::out(share, w.p2wpkh()))
            .collect(),
    );
    let mut fan_txs = vec![split.clone()];
    let mut coins = Vec::new();
    for (f, o) in split.output.iter().enumerate() {
        let k = (n - f * 2500).min(2500);
        let each = (o.value.to_sat() - 10_000) / k as u64;
        let fan = w.spend(
            &[(
                bitcoin::OutPoint::new(split.compute_txid(), f as u32),
                o.clone(),
            )],
            (0..k)
                .map(|j| harness::chain::out(each, if j % 2 == 0 { w.p2tr() } else { w.p2wpkh() }))
                .collect(),
        );
        for (j, o) in fan.output.iter().enumerate() {
            coins.push((
                bitcoin::OutPoint::new(fan.compute_txid(), j as u32),
                o.clone(),
            ));
        }
        fan_txs.push(fan);
    }
    let hex = |t: &bitcoin::Transaction| Value::from(bitcoin::consensus::encode::serialize_hex(t));
    call(
        addr,
        auth,
        "generateblock",
        json!([payout, fan_txs.iter().map(hex).collect::<Vec<_>>()]),
    );
    let spends: Vec<Value> = coins
        .into_iter()
        .map(|(op, o)| {
            let value = o.value.to_sat() - 500;
            hex(&w.spend(&[(op, o)], vec![harness::chain::out(value, w.p2wpkh())]))
        })
        .collect();
    call(addr, auth, "generateblock", json!([payout, spends]))["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One kind of request.
#[derive(Clone)]
struct Target {
    label: String,
    addr: SocketAddr,
    verb: &'static str,
    path: String,
    auth: Option<String>,
    body: String,
    /// Requests per measurement at full size.
    count: usize,
}

impl Target {
    fn rpc(label: &str, addr: SocketAddr, auth: &str, method: &str, params: Value) -> Target {
        Target {
            label: label.to_owned(),
            addr,
            verb: "POST",
            path: "/".into(),
            auth: Some(auth.to_owned()),
            body: json!({"method": method, "params": params, "id": 1}).to_string(),
            count: 20_000,
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        self.auth
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect()
    }
}

/// How clients connect.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// One connection per client, reused (wrk, electrs, load balancers).
    KeepAlive,
    /// A new connection per request (curl, most scrapers).
    Fresh,
}

/// Figures of one measurement.
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    refused: f64,
}

/// Runs `total` requests of `t` from `clients` threads. A 503 (a full queue) or a failed
/// request counts as refused and not in the rate: throughput is answers.
fn measure(t: &Target, mode: Mode, clients: usize, total: usize) -> Figures {
    let per = (total / clients).max(1);
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                let headers = t.headers();
                let mut conn = None;
                (0..per)
                    .map(|_| {
                        let at = Instant::now();
                        let answer = match mode {
                            Mode::Fresh => {
                                http_full(t.addr, t.verb, &t.path, &headers, &t.body).map(|a| a.0)
                            }
                            Mode::KeepAlive => {
                                if conn.is_none() {
                                    conn = KeepAlive::connect(t.addr).ok();
                                }
                                match conn.as_mut() {
                                    // Bytes: a binary answer is not made into text here.
                                    Some(c) => c
                                        .request_bytes(t.verb, &t.path, &headers, &t.body)
                                        .map(|a| a.0),
                                    None => Err(std::io::ErrorKind::NotConnected.into()),
                                }
                            }
                        };
                        if answer.is_err() {
                            conn = None;
                        }
                        let code = answer.unwrap_or(0);
                        assert!(matches!(code, 0 | 200 | 503), "{}: {code}", t.label);
                        (at.elapsed(), code == 200)
                    })
                    .collect::<Vec<(Duration, bool)>>()
            })
        })
        .collect();
    let results: Vec<(Duration, bool)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let wall = start.elapsed();
    let answered = results.iter().filter(|(_, ok)| *ok).count();
    let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    lat.sort();
    Figures {
        rate: answered as f64 / wall.as_secs_f64(),
        p50: lat[lat.len() / 2],
        p99: lat[(lat.len() - 1) * 99 / 100],
        max: lat[lat.len() - 1],
        refused: 100.0 * (results.len() - answered) as f64 / results.len() as f64,
    }
}

fn targets_by_label(targets: &[Target], label: &str) -> Option<Target> {
    targets.iter().find(|t| t.label.starts_with(label)).cloned()
}

/// Sends `t` at `rate` per second over `conns` keep-alive connections for `secs`; returns the
/// rate answered and the CPU seconds process `pid` used meanwhile.
fn cpu_at_rate(t: &Target, pid: i32, rate: f64, secs: f64, conns: usize) -> (f64, f64) {
    let before = harness::cpu_seconds(pid);
    let start = Instant::now();
    let each = Duration::from_secs_f64(conns as f64 / rate);
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                let headers = t.headers();
                let mut conn = KeepAlive::connect(t.addr).unwrap();
                let mut answered = 0usize;
                let mut next = Instant::now();
                while start.elapsed().as_secs_f64() < secs {
                    if conn
                        .request(t.verb, &t.path, &headers, &t.body)
                        .is_ok_and(|a| a.0 == 200)
                    {
                        answered += 1;
                    }
                    // Paced, not a flood: the next call at its slot.
                    next += each;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                answered
            })
        })
        .collect();
    let answered: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let wall = start.elapsed().as_secs_f64();
    (answered as f64 / wall, harness::cpu_seconds(pid) - before)
}

fn print(label: &str, mode: Mode, clients: usize, f: &Figures, bare: Option<&Figures>) {
    let ratio = bare.map_or("           ".to_owned(), |b| {
        format!(
            "{:>4.2}x {:>4.1}xp99",
            f.rate / b.rate,
            f.p99.as_secs_f64() / b.p99.as_secs_f64()
        )
    });
    println!(
        "{:<10} {label:<36} {clients:>2} conns: {:>6.0} req/s {ratio}  p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  refused {:.1}%",
        if mode == Mode::KeepAlive { "keep-alive" } else { "fresh" },
        f.rate,
        f.p50,
        f.p99,
        f.max,
        f.refused
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut node = TestNode::start_with(NodeOptions {
        // Every client is on 127.0.0.1: the per-address cap would count them as one.
        config: Some(
            "[rpc]\nmax_connections_per_ip = 256\nwork_queue = 256\nrest = true\nrest_work_queue = 256\n[rpc.auth]\nrate_limit_enabled = false\n".into(),
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

    // Blocks of 100 and 5,000 real spends (P2WPKH and P2TR) for getblock; 102 blocks first,
    // so the coinbases of blocks 1 and 2 are mature.
    let w = harness::chain::Wallet::new(1);
    let wallet_addr =
        bitcoin::Address::from_script(&w.p2wpkh(), bitcoin::Network::Regtest).unwrap();
    let hashes = call(
        addr,
        &auth,
        "generatetoaddress",
        json!([102, wallet_addr.to_string()]),
    );
    let big = spends_block(addr, &auth, &w, hashes[0].as_str().unwrap(), 100);
    // ~1 MB; smaller in the smoke run (debug builds sign and verify slowly).
    let huge_n = if full { 5000 } else { 300 };
    let huge = spends_block(addr, &auth, &w, hashes[1].as_str().unwrap(), huge_n);
    let size = |h: &str| call(addr, &auth, "getblock", json!([h, 1]))["size"].clone();
    println!(
        "chain: getblock targets have 101 and {} transactions, {} and {} bytes",
        huge_n + 1,
        size(&big),
        size(&huge)
    );

    let bare_addr = bare_server();
    let gate_dir = tempfile::tempdir().unwrap();
    let gated = gated_bare_server(gate_dir.path());
    let plain = |label: &str, addr, verb, path: &str| Target {
        label: label.to_owned(),
        addr,
        verb,
        path: path.to_owned(),
        auth: None,
        body: if verb == "POST" {
            "{}".into()
        } else {
            String::new()
        },
        count: 20_000,
    };
    let bare = plain("bare tiny_http constant", bare_addr, "POST", "/");
    let mut targets = vec![
        plain("bare tiny_http behind the gate", gated, "POST", "/"),
        plain("/health", addr, "GET", "/health"),
    ];
    for method in ["getblockcount", "getbestblockhash", "getblockchaininfo"] {
        targets.push(Target::rpc(method, addr, &auth, method, json!([])));
    }
    let h = hashes[50].as_str().unwrap().to_owned();
    targets.push(Target::rpc(
        "getblockheader",
        addr,
        &auth,
        "getblockheader",
        json!([h, true]),
    ));
    for (block, txs, count) in [(&big, 101, 2_000), (&huge, huge_n + 1, 200)] {
        for verbosity in [0, 1, 2] {
            let label = format!("getblock {verbosity} ({txs} txs)");
            let mut t = Target::rpc(&label, addr, &auth, "getblock", json!([block, verbosity]));
            t.count = count;
            targets.push(t);
        }
        // The same block through REST, as electrs reads it: the stored bytes.
        let mut t = plain(
            &format!("/rest/block .bin ({txs} txs)"),
            addr,
            "GET",
            &format!("/rest/block/{block}.bin"),
        );
        t.count = count;
        targets.push(t);
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
    let logged_auth = {
        let c = std::fs::read_to_string(logged.datadir.join("regtest/.cookie")).unwrap();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c.trim())
        )
    };
    targets.push(Target::rpc(
        "getblockcount, rpc_requests = info",
        logged.rpc,
        &logged_auth,
        "getblockcount",
        json!([]),
    ));
    // `cargo bench --bench rpc -- <text>`: only the targets whose label contains it.
    if let Some(only) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        targets.retain(|t| t.label.contains(&only));
    }
    // BENCH_REQUESTS=N: N requests per measurement (long runs to profile with perf).
    let scale: Option<usize> = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok());
    // Taking turns: the bare responder is measured again beside each target, so the ratio
    // compares two runs made a moment apart.
    for mode in [Mode::KeepAlive, Mode::Fresh] {
        for clients in [1, 8, 64] {
            for t in &targets {
                let n = if let Some(n) = scale {
                    n
                } else if full {
                    t.count.min(if mode == Mode::Fresh {
                        4000
                    } else {
                        usize::MAX
                    })
                } else {
                    64
                };
                let b = measure(&bare, mode, clients, n);
                let f = measure(t, mode, clients, n);
                print(&t.label, mode, clients, &f, Some(&b));
            }
        }
    }
    // The per-request log line's cost at a fixed 10k calls/s: the node's CPU time, logged at
    // info and not logged (the same getblockcount, 8 keep-alive connections, 3 s).
    for (label, t, pid) in [
        (
            "rpc_requests = debug (not written)",
            &targets_by_label(&targets, "getblockcount"),
            node.pid(),
        ),
        (
            "rpc_requests = info",
            &targets_by_label(&targets, "getblockcount, rpc_requests"),
            logged.pid(),
        ),
    ] {
        let Some(t) = t else { continue };
        let secs = if full { 3.0 } else { 0.2 };
        let (rate, cpu) = cpu_at_rate(t, pid, 10_000.0, secs, 8);
        println!(
            "getblockcount at 10k/s, {label:<36}: {rate:>6.0} req/s answered, node CPU {:.2} ms per 1,000 calls ({:.1}% of a core)",
            cpu * 1000.0 / (rate * secs / 1000.0),
            100.0 * cpu / secs
        );
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
