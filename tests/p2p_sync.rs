//! Several real nodes on loopback syncing from each other over P2P: initial sync through a
//! chain of peers, new blocks following, restarts, reorgs.

mod harness;

use harness::{address, poll, NodeOptions, TestNode};
use serde_json::{json, Value};
use std::time::Duration;

const SYNC: Duration = Duration::from_secs(120);

fn mine(node: &TestNode, n: u32) -> Vec<Value> {
    mine_to(node, n, 3)
}

fn mine_to(node: &TestNode, n: u32, key: u8) -> Vec<Value> {
    node.call("generatetoaddress", json!([n, address(key)]))
        .as_array()
        .unwrap()
        .clone()
}

fn start_connected(peers: &[&TestNode]) -> TestNode {
    TestNode::start_with(NodeOptions::connect(peers))
}

fn wait_tip(node: &TestNode, want: &(u64, String), what: &str) {
    poll(SYNC, what, || (node.tip() == *want).then_some(()));
}

fn peer_count(node: &TestNode) -> usize {
    node.call("getconnectioncount", json!([])).as_u64().unwrap() as usize
}

#[test]
fn nodes_sync_through_a_chain_of_peers_and_follow_new_blocks() {
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    mine(&a, 300);
    let want = a.tip();
    assert_eq!(want.0, 300);

    let mut b = start_connected(&[&a]);
    let mut c = start_connected(&[&a]);
    b.wait_ready(Duration::from_secs(10));
    c.wait_ready(Duration::from_secs(10));
    wait_tip(&b, &want, "B syncs 300 blocks from A");
    wait_tip(&c, &want, "C syncs 300 blocks from A");

    // D knows only B and C.
    let mut d = start_connected(&[&b, &c]);
    d.wait_ready(Duration::from_secs(10));
    wait_tip(&d, &want, "D syncs from B and C");
    // getpeerinfo is published on a timer, so its counters may trail the tip by a moment.
    let peers = poll(SYNC, "D's peers both delivered blocks", || {
        let peers = d.call("getpeerinfo", json!([]));
        let peers = peers.as_array().unwrap().clone();
        let got: Vec<u64> = peers
            .iter()
            .map(|p| p["bytesrecv_per_msg"]["block"].as_u64().unwrap_or(0))
            .collect();
        (got.len() == 2 && got.iter().all(|b| *b > 0)).then_some(peers)
    });
    for p in &peers {
        assert_eq!(p["connection_type"], "manual");
        assert_eq!(p["version"], 70016);
        assert!(p["subver"].as_str().unwrap().starts_with("/bllvm-node:"));
        assert!(p["bytesrecv"].as_u64().unwrap() > 0);
        assert_eq!(p["synced_headers"], 300);
    }

    // A new block on A reaches everyone by announcement.
    mine(&a, 3);
    let want = a.tip();
    for (n, name) in [(&b, "B"), (&c, "C"), (&d, "D")] {
        wait_tip(n, &want, &format!("{name} follows A's new blocks"));
    }
    // A learns how far B and C are from their `getheaders` locators: both at 303.
    poll(SYNC, "A sees B's and C's height", || {
        let info = a.call("getpeerinfo", json!([]));
        let peers = info.as_array().unwrap().clone();
        (peers.len() == 2
            && peers
                .iter()
                .all(|p| p["inbound"] == true && p["synced_headers"] == 303))
        .then_some(())
    });
    assert_eq!(peer_count(&a), 2);
    let totals = d.call("getnettotals", json!([]));
    assert!(totals["totalbytesrecv"].as_u64().unwrap() > 300 * 200);
}

#[test]
fn a_reorg_on_the_source_reaches_its_peers() {
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    mine(&a, 20);
    let mut b = start_connected(&[&a]);
    b.wait_ready(Duration::from_secs(10));
    wait_tip(&b, &a.tip(), "B syncs");
    let old_tip = a.tip();
    // Replace A's last 5 blocks with a longer branch of 7.
    let fork = a
        .call("getblockhash", json!([15]))
        .as_str()
        .unwrap()
        .to_owned();
    a.call("invalidateblock", json!([fork]));
    // Another payout, so the new branch's blocks differ from the invalidated ones.
    mine_to(&a, 7, 4);
    let want = a.tip();
    assert_eq!(want.0, 21);
    assert_ne!(want.1, old_tip.1);
    wait_tip(&b, &want, "B follows A's reorg");
    let tips = b.call("getchaintips", json!([]));
    assert!(
        tips.as_array()
            .unwrap()
            .iter()
            .any(|t| t["hash"] == old_tip.1.as_str()),
        "B still knows the old branch: {tips}"
    );
}

#[test]
fn peers_given_by_name_are_resolved_off_the_event_loop() {
    // `localhost` comes from /etc/hosts: no query leaves the machine.
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    mine(&a, 20);
    let want = a.tip();
    let by_name = format!("localhost:{}", a.p2p.port());

    // --connect by name: the resolver thread looks it up; nothing else is dialled meanwhile.
    let mut b = TestNode::start_with(NodeOptions {
        args: vec!["--connect".into(), by_name.clone()],
        ..NodeOptions::default()
    });
    b.wait_ready(Duration::from_secs(10));
    wait_tip(&b, &want, "B syncs from A given as localhost");

    // addnode by name: the RPC worker looks it up.
    let mut c = TestNode::start();
    c.wait_ready(Duration::from_secs(10));
    c.call("addnode", json!([by_name, "add"]));
    wait_tip(&c, &want, "C syncs from A added as localhost");
    let added = c.call("getaddednodeinfo", json!([]));
    assert_eq!(
        added[0]["addednode"],
        format!("127.0.0.1:{}", a.p2p.port()),
        "{added}"
    );
}
