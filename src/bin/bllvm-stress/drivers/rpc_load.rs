//! JSON-RPC and HTTP load: a seeded list of calls per client connection, sent at a target
//! rate, plus slowloris and idle connections held open. Only answered requests count as
//! throughput; refusals (429, 503) and failures are errors by kind.

use crate::http::{connect_from, peer_closed, KeepAlive};
use crate::node::cookie_auth;
use crate::ops::{OpsLog, Rng};
use crate::record::Recorder;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request.
#[derive(Clone, Debug)]
pub enum Call {
    /// A JSON-RPC method; `height` is resolved to a block hash where the method takes one.
    Rpc { method: &'static str, height: u64 },
    /// A call with a wrong password.
    BadAuth,
    /// A REST path (`[rpc] rest = true`).
    Rest { height: u64 },
}

impl Call {
    fn describe(&self) -> String {
        match self {
            Call::Rpc { method, height } => format!("rpc {method} h={height}"),
            Call::BadAuth => "rpc getblockcount bad-auth".into(),
            Call::Rest { height } => format!("rest block h={height}"),
        }
    }

    fn label(&self) -> String {
        match self {
            Call::Rpc { method, .. } => format!("rpc:{method}"),
            Call::BadAuth => "rpc:bad-auth".into(),
            Call::Rest { .. } => "rest:block".into(),
        }
    }
}

/// Cheap calls, answered from published state.
pub const CHEAP: &[&str] = &[
    "getblockcount",
    "getbestblockhash",
    "getblockchaininfo",
    "getnetworkinfo",
    "getmempoolinfo",
    "uptime",
];
/// Expensive calls: whole blocks, the UTXO set, the mempool.
pub const EXPENSIVE: &[&str] = &["getblock", "getblockheader", "getrawmempool", "gettxout"];

/// What mix of calls to plan.
pub struct Mix {
    /// Weights: cheap, expensive, bad auth, REST.
    pub weights: [u32; 4],
    /// The chain's height (calls pick blocks up to it).
    pub height: u64,
}

/// Plans `per_worker` calls for each of `workers` connections, writing each to `ops`.
pub fn plan(
    rng: &mut Rng,
    mix: &Mix,
    workers: usize,
    per_worker: usize,
    ops: &OpsLog,
) -> Vec<Vec<Call>> {
    let kinds = [0usize, 1, 2, 3];
    let weighted: Vec<(usize, u32)> = kinds.iter().map(|&k| (k, mix.weights[k])).collect();
    (0..workers)
        .map(|w| {
            (0..per_worker)
                .map(|i| {
                    let height = rng.below(mix.height + 1);
                    let call = match rng.pick(&weighted) {
                        0 => Call::Rpc {
                            method: CHEAP[rng.below(CHEAP.len() as u64) as usize],
                            height,
                        },
                        1 => Call::Rpc {
                            method: EXPENSIVE[rng.below(EXPENSIVE.len() as u64) as usize],
                            height,
                        },
                        2 => Call::BadAuth,
                        _ => Call::Rest { height },
                    };
                    ops.op(format!("load w{w} #{i} {}", call.describe()));
                    call
                })
                .collect()
        })
        .collect()
}

/// The address load comes from: one client, so "10x the rate limit" is 10x its per-address
/// limit, and the probes (from 127.0.0.1, as a load balancer's come from elsewhere) measure
/// what everyone else sees.
pub const LOAD_FROM: Ipv4Addr = Ipv4Addr::new(127, 9, 0, 1);

/// Where and how to send.
#[derive(Clone)]
pub struct Target {
    /// The node's HTTP address.
    pub addr: SocketAddr,
    /// Its cookie file: read again when a call is refused as unauthorised, as a client does
    /// after the node restarts with a new cookie.
    pub cookie: std::path::PathBuf,
    /// Block hashes by height (index = height).
    pub hashes: Arc<Vec<String>>,
}

/// Load running in its threads.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Sends each worker's calls on its own keep-alive connection, `rate` calls a second in
    /// all (spread evenly over the workers; open loop: a late call is sent at once).
    pub fn start(plans: Vec<Vec<Call>>, rate: f64, target: Target, rec: Arc<Recorder>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let per_worker = rate / plans.len().max(1) as f64;
        let threads = plans
            .into_iter()
            .enumerate()
            .map(|(w, calls)| {
                let (stop, target, rec) = (stop.clone(), target.clone(), rec.clone());
                std::thread::Builder::new()
                    .name(format!("load-{w}"))
                    .spawn(move || worker(calls, per_worker, w, &target, &rec, &stop))
                    .expect("load thread")
            })
            .collect();
        Load { stop, threads }
    }

    /// Waits for every call to be sent and answered.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(calls: Vec<Call>, rate: f64, w: usize, t: &Target, rec: &Recorder, stop: &AtomicBool) {
    let start = Instant::now();
    // Workers start staggered so the rate is even from the first second.
    let offset = if rate > 0.0 {
        w as f64 / 64.0 / rate
    } else {
        0.0
    };
    let mut conn: Option<KeepAlive> = None;
    let mut auth = cookie_auth(&t.cookie).unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(offset + i as f64 / rate);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        let c = match conn
            .take()
            .map(Ok)
            .unwrap_or_else(|| KeepAlive::connect_from(LOAD_FROM, t.addr))
        {
            Ok(c) => conn.insert(c),
            Err(_) => {
                rec.err("http:connect failed");
                continue;
            }
        };
        let hash = |h: &u64| t.hashes.get(*h as usize).cloned().unwrap_or_default();
        let (method, path, body, header) = match call {
            Call::Rpc { method, height } => {
                let params = match *method {
                    "getblock" => serde_json::json!([hash(height), 2]),
                    "getblockheader" => serde_json::json!([hash(height)]),
                    "getrawmempool" => serde_json::json!([true]),
                    "gettxout" => serde_json::json!([hash(height), 0]),
                    _ => serde_json::json!([]),
                };
                let body = serde_json::json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params});
                ("POST", "/".to_owned(), body.to_string(), auth.clone())
            }
            Call::BadAuth => (
                "POST",
                "/".to_owned(),
                r#"{"jsonrpc":"2.0","id":0,"method":"getblockcount","params":[]}"#.to_owned(),
                "Basic YmFkOmJhZA==".to_owned(),
            ),
            Call::Rest { height } => (
                "GET",
                format!("/rest/block/notxdetails/{}.json", hash(height)),
                String::new(),
                String::new(),
            ),
        };
        let label = call.label();
        let sent = Instant::now();
        let headers: Vec<(&str, &str)> = if header.is_empty() {
            vec![]
        } else {
            vec![("Authorization", header.as_str())]
        };
        match c.request_bytes(method, &path, &headers, &body) {
            Ok((200, h, _)) => {
                rec.ok(&label, sent);
                if closes(&h) {
                    conn = None;
                }
            }
            // A wrong password is meant to fail: its answer is the measurement.
            Ok((401, h, _)) if matches!(call, Call::BadAuth) => {
                rec.ok(&label, sent);
                if closes(&h) {
                    conn = None;
                }
            }
            Ok((status, h, _)) => {
                if status == 401 {
                    auth = cookie_auth(&t.cookie).unwrap_or_default();
                }
                rec.err(&format!("{label}:{status}"));
                if closes(&h) {
                    conn = None;
                }
            }
            Err(_) => {
                rec.err(&format!("{label}:connection lost"));
                conn = None;
            }
        }
    }
}

fn closes(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"))
}

/// Slowloris and idle connections, reopened when the node closes them, until dropped.
pub struct Holders {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Holders {
    /// Holds `n` connections to `addr`: even ones idle, odd ones sending a header a byte a
    /// second.
    pub fn start(n: usize, addr: SocketAddr, rec: Arc<Recorder>) -> Holders {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("holders".into())
            .spawn(move || {
                let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
                let mut tick = 0u64;
                while !s.load(Ordering::Relaxed) {
                    for (i, c) in conns.iter_mut().enumerate() {
                        let kind = if i % 2 == 0 { "idle" } else { "slowloris" };
                        if c.is_none() {
                            *c = connect_from(LOAD_FROM, addr).ok();
                            rec.completed(&format!("http:{kind} connections opened"), 1);
                        }
                        if i % 2 == 1 {
                            let byte = b"GET / HTTP/1.1\r\nX-Slow: "[(tick % 24) as usize];
                            if let Some(s) = c.as_mut() {
                                if s.write_all(&[byte]).is_err() {
                                    *c = None;
                                }
                            }
                        } else if c.as_ref().is_some_and(peer_closed) {
                            *c = None;
                        }
                    }
                    tick += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .expect("holders thread");
        Holders {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
