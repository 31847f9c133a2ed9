//! Backbone figures on the real binary: time to ready, idle RSS and threads,
//! /health latency at several concurrencies, SIGTERM to exit.
//! `cargo bench --bench backbone` for the full run; under `cargo test` a short smoke run.

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::TestNode;
use std::time::{Duration, Instant};

struct Scale {
    starts: usize,
    requests: usize,
    idle: Duration,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            starts: 5,
            requests: 4000,
            idle: Duration::from_secs(3),
        }
    } else {
        Scale {
            starts: 1,
            requests: 64,
            idle: Duration::from_millis(100),
        }
    };

    let mut ready = Vec::new();
    let mut stop = Vec::new();
    for _ in 0..scale.starts {
        let mut node = TestNode::start();
        ready.push(node.wait_ready(Duration::from_secs(30)));
        let t = Instant::now();
        node.signal(libc::SIGTERM);
        assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
        stop.push(t.elapsed());
    }
    println!(
        "start to ready: median {:?} (n={})",
        median(&mut ready),
        ready.len()
    );
    println!(
        "SIGTERM to exit: median {:?} (n={})",
        median(&mut stop),
        stop.len()
    );

    // Every client is on 127.0.0.1: the per-address cap would count them as one.
    let mut node = TestNode::start_with(harness::NodeOptions {
        config: Some("[rpc]\nmax_connections_per_ip = 256\n".into()),
        ..harness::NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(30));
    std::thread::sleep(scale.idle);
    let (rss_kib, threads) = proc_status(node.pid());
    println!(
        "idle: RSS {:.1} MiB, {threads} threads",
        rss_kib as f64 / 1024.0
    );

    for clients in [1usize, 8, 64] {
        let per_client = (scale.requests / clients).max(1);
        let addr = node.rpc;
        let t = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_client)
                        .map(|_| {
                            let t = Instant::now();
                            let (code, _) = harness::http(addr, "GET", "/health", "").unwrap();
                            assert_eq!(code, 200);
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut lat: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        let wall = t.elapsed();
        lat.sort();
        println!(
            "/health, {clients:>2} clients, new connection per request: {:>7.0} req/s, p50 {:?}, p99 {:?}",
            lat.len() as f64 / wall.as_secs_f64(),
            lat[lat.len() / 2],
            lat[(lat.len() - 1) * 99 / 100],
        );
    }
    let (rss_kib, threads) = proc_status(node.pid());
    println!(
        "after load: RSS {:.1} MiB, {threads} threads",
        rss_kib as f64 / 1024.0
    );
    held_connections(if full { 10_000 } else { 200 });
}

/// Threads and RSS of a node holding `n` idle connections on its RPC port: the gate holds
/// them without a thread each.
fn held_connections(n: usize) {
    harness::raise_own_fd_limit();
    let mut node = TestNode::start_with(harness::NodeOptions {
        config: Some(format!(
            "[rpc]\nmax_connections = {}\nmax_connections_per_ip = {}\nheader_timeout_secs = 600.0\n",
            // A fifth more than n: the last sixteenth is kept for addresses holding none.
            n * 6 / 5,
            n * 6 / 5
        )),
        ..harness::NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(30));
    let (rss0, threads0) = proc_status(node.pid());
    let held: Vec<_> = (0..n)
        .map(|i| {
            let src = std::net::Ipv4Addr::new(127, 83, (i / 250) as u8, 1);
            harness::connect_from(src, node.rpc).unwrap()
        })
        .collect();
    harness::poll(Duration::from_secs(60), "connections open", || {
        (node.metric("bllvm_http_connections_open") >= n as f64).then_some(())
    });
    let (rss, threads) = proc_status(node.pid());
    println!(
        "{n} idle connections: RSS {:.1} -> {:.1} MiB ({:.2} KiB each), threads {threads0} -> {threads}",
        rss0 as f64 / 1024.0,
        rss as f64 / 1024.0,
        (rss.saturating_sub(rss0)) as f64 / n as f64
    );
    drop(held);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// (VmRSS in KiB, Threads) from /proc.
fn proc_status(pid: i32) -> (u64, u64) {
    (
        harness::proc_field(pid, "VmRSS:"),
        harness::proc_field(pid, "Threads:"),
    )
}
