//! Probes keep answering while slowloris clients hold connections open with partial requests,
//! and the node closes those connections at the header deadline.

mod harness;

use harness::{NodeOptions, TestNode};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
const REQUESTS_PER_CLIENT: usize = 50;
const SLOWLORIS: usize = 50;

#[test]
fn health_answers_every_request_under_slowloris() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc]\nheader_timeout_secs = 4.0\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(5));

    // Partial request headers, never finished, from addresses of their own (one address is
    // capped at max_connections_per_ip).
    let opened = Instant::now();
    let slow: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|i| {
            let src = std::net::Ipv4Addr::new(127, 60, 0, 1 + i as u8);
            let mut s = harness::connect_from(src, node.rpc).unwrap();
            write!(s, "GET /health HTTP/1.1\r\nHost: slow{i}\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    // Held, not dropped: nothing to read and no end of stream (a write succeeding would prove
    // nothing, the kernel takes it either way).
    for (i, s) in slow.iter().enumerate() {
        assert!(
            still_open(s),
            "slowloris {i} closed before its header deadline"
        );
    }

    let addr = node.rpc;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                (0..REQUESTS_PER_CLIENT)
                    .map(|_| {
                        let t = Instant::now();
                        let (code, body) = harness::http(addr, "GET", "/health", "").unwrap();
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
            assert_eq!(harness::json(&body)["status"], "healthy");
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
    // The node did not drop them to keep up; it closes each at the header deadline, with 408.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(opened.elapsed() >= Duration::from_secs(4));
    }
    assert_eq!(
        node.metric("bllvm_http_connections_closed_total{reason=\"header_timeout\"}"),
        SLOWLORIS as f64
    );
}

/// Whether the peer has neither sent anything nor closed: a non-blocking peek would block.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}
