//! docs/metrics.md against a running node: every family `/metrics` exports is in the catalogue
//! with the same type and labels, and everything the catalogue lists is exported.

mod harness;

use harness::raw_peer::RawPeer;
use harness::{NodeOptions, TestNode};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// (type, label names) of each family.
type Families = BTreeMap<String, (String, BTreeSet<String>)>;

fn exported(text: &str) -> Families {
    let mut out = Families::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_owned(), (kind.to_owned(), BTreeSet::new()));
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| out.get(*base).is_some_and(|(k, _)| k == "histogram"))
            .unwrap_or(name);
        let Some((_, labels)) = out.get_mut(family) else {
            continue;
        };
        if let Some(inner) = line[name_end..].strip_prefix('{') {
            let inner = &inner[..inner.find('}').unwrap()];
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let key = pair.split('=').next().unwrap().trim_start_matches(',');
                if key != "le" && key != "quantile" {
                    labels.insert(key.to_owned());
                }
            }
        }
    }
    out
}

fn catalogue(doc: &str) -> Families {
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(
                cells.len(),
                5,
                "a row of name, type, unit, labels, meaning: {l}"
            );
            assert!(
                !cells[4].is_empty() && !cells[2].is_empty(),
                "unit and meaning: {l}"
            );
            let labels = if cells[3] == "—" {
                BTreeSet::new()
            } else {
                cells[3].split(", ").map(str::to_owned).collect()
            };
            (
                cells[0].trim_matches('`').to_owned(),
                (cells[1].to_owned(), labels),
            )
        })
        .collect()
}

#[test]
fn the_catalogue_matches_what_a_running_node_exports() {
    let node = TestNode::ready_with(NodeOptions::default());
    // Families labelled by request or P2P command appear once there was one: an RPC call, and
    // a peer that connects, says hello and leaves.
    node.call("getblockcount", serde_json::json!([]));
    node.get("/metrics").unwrap();
    let mut peer = RawPeer::connect("127.6.0.1", node.p2p).unwrap();
    peer.handshake();
    drop(peer);
    let text = harness::poll(
        Duration::from_secs(30),
        "the peer's connection to close",
        || {
            let (_, text) = node.get("/metrics").ok()?;
            text.contains("bllvm_p2p_connections_closed_total{")
                .then_some(text)
        },
    );
    let live = exported(&text);
    // Bytes by command count whole frames: a version message is 24 bytes of header and at
    // least 85 of payload.
    let version = node.metric("bllvm_p2p_bytes_received_total{command=\"version\"}");
    assert!(version >= 109.0, "{version}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let doc = catalogue(&std::fs::read_to_string(path).unwrap());
    let missing: Vec<_> = live.keys().filter(|k| !doc.contains_key(*k)).collect();
    let stale: Vec<_> = doc.keys().filter(|k| !live.contains_key(*k)).collect();
    let differ: Vec<_> = live
        .iter()
        .filter(|(k, v)| doc.get(*k).is_some_and(|d| d != *v))
        .map(|(k, v)| format!("{k}: node {v:?}, catalogue {:?}", doc[k]))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && differ.is_empty(),
        "docs/metrics.md and /metrics differ:\nnot in the catalogue: {missing:?}\n\
         not exported: {stale:?}\ndifferent: {differ:#?}"
    );
    assert!(live.len() > 50, "{} families", live.len());
}
