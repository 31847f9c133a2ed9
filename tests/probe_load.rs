//! Probes keep answering while slowloris clients hold connections open with partial requests.

mod common;

use common::TestNode;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
const REQUESTS_PER_CLIENT: usize = 50;
const SLOWLORIS: usize = 50;

#[test]
fn health_answers_every_request_under_slowloris() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));

    // Partial request headers, never finished, held open for the whole test.
    let slow: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|i| {
            let mut s = TcpStream::connect(node.rpc).unwrap();
            write!(s, "GET /health HTTP/1.1\r\nHost: slow{i}\r\nX-Slow: ").unwrap();
            s
        })
        .collect();

    let addr = node.rpc;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                (0..REQUESTS_PER_CLIENT)
                    .map(|_| {
                        let t = Instant::now();
                        let (code, body) = common::http(addr, "GET", "/health", "").unwrap();
                        (code, body, t.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for w in workers {
        for (code, body, took) in w.join().unwrap() {
            assert_eq!(code, 200, "{body}");
            assert_eq!(common::json(&body)["status"], "healthy");
            latencies.push(took);
        }
    }
    assert_eq!(latencies.len(), CLIENTS * REQUESTS_PER_CLIENT);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    eprintln!(
        "/health under {SLOWLORIS} slowloris, {CLIENTS} clients x {REQUESTS_PER_CLIENT}: p50 {:?} p99 {:?} max {:?}",
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
    // The slow connections are still open: the node did not have to drop them to keep up.
    for mut s in slow {
        assert!(s.write_all(b"x").is_ok());
    }
}
