//! `--log-format json`: every stderr line is one JSON object with the documented fields.

mod common;

use common::{NodeOptions, TestNode};
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
    common::poll(Duration::from_secs(5), "SIGHUP line", || {
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
    let log = node.log();
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
