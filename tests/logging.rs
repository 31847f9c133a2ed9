//! `--log-format json`: every stderr line is one JSON object with the documented fields.

mod harness;

use harness::{NodeOptions, TestNode};
use std::time::Duration;

#[test]
fn json_logs_are_one_object_per_line_with_fields() {
    let mut node = TestNode::start_with(NodeOptions {
        args: vec![
            "--log-format".into(),
            "json".into(),
            "--log-level".into(),
            "debug".into(),
        ],
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(5));
    node.get("/health").unwrap();
    node.get("/nope").unwrap();
    // Inbound P2P connections produce debug lines from the p2p and chain threads.
    drop(std::net::TcpStream::connect(node.p2p).unwrap());
    node.signal(libc::SIGHUP);
    harness::poll(Duration::from_secs(5), "SIGHUP line", || {
        node.log().contains("SIGHUP").then_some(())
    });
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
    let log = node.log();
    let mut components = std::collections::BTreeSet::new();
    let mut saw_height = false;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["ts", "level", "component", "msg"] {
            assert!(v[field].is_string(), "missing {field}: {line}");
        }
        components.insert(v["component"].as_str().unwrap().to_owned());
        saw_height |= v["height"] == 0;
    }
    assert!(
        saw_height,
        "the chain's structured `height` field is missing:\n{log}"
    );
    for c in ["supervisor", "chain", "p2p", "storage", "signals"] {
        assert!(components.contains(c), "no line from {c}: {components:?}");
    }
}

#[test]
fn text_logs_name_level_and_component() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    let log = node.wait_log("chain state loaded");
    let line = log
        .lines()
        .find(|l| l.contains("chain state loaded"))
        .unwrap();
    assert!(
        line.contains(" INFO ") && line.contains("[chain]"),
        "{line}"
    );
    assert!(line.contains("height=0"), "{line}");
}

/// A stderr nobody reads (a stuck journald, a full pipe) never holds the threads that log:
/// with a line per request, thousands of calls are all answered while lines below warning are
/// dropped and counted; once stderr is read again, the log says how many were dropped.
#[test]
fn a_stuck_stderr_never_stalls_requests() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let node = TestNode::ready_with(NodeOptions {
        config: Some(
            "[logging]\nrpc_requests = \"info\"\n[rpc.auth]\nrate_limit_enabled = false\n".into(),
        ),
        stderr: Some(writer.into()),
        ..NodeOptions::default()
    });
    let auth = node.auth().unwrap();
    let mut conn = harness::KeepAlive::connect(node.rpc).unwrap();
    // A line is ~200 bytes: far more than the pipe (64 KiB) and the log queue hold.
    for i in 0..40_000 {
        let body = format!(r#"{{"method":"getblockcount","id":{i}}}"#);
        let (status, _, answer) = conn
            .request("POST", "/", &[("Authorization", &auth)], &body)
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    // A call a worker answers logs too, and is not held either.
    node.call("getblockhash", serde_json::json!([0]));
    let dropped = node.metric("bllvm_log_lines_dropped_total");
    assert!(dropped > 0.0, "{dropped} lines dropped");
    // Reading again: what waited is written, and the drop is logged.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut text = String::new();
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("log lines dropped so far") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the dropped lines are reported once stderr is read");
}
