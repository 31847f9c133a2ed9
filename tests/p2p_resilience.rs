//! Nodes through restarts, kills and partitions: sync resumes where it stopped, dropped peers
//! are reconnected on the backoff schedule, and losing every peer at once is a partition.

mod harness;

use harness::{address, json, poll, NodeOptions, TestNode, FAST_RECONNECT};
use serde_json::json as j;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn connected_to(
    peers: &[&TestNode],
    datadir: Option<std::path::PathBuf>,
    ports: Option<(u16, u16)>,
) -> TestNode {
    let mut n = TestNode::start_with(NodeOptions {
        datadir,
        ports,
        ..NodeOptions::connect(peers)
    });
    n.wait_ready(Duration::from_secs(10));
    n
}

/// Restarts a stopped node on its datadir and ports.
fn restart(old: &TestNode, peers: &[&TestNode]) -> TestNode {
    connected_to(
        peers,
        Some(old.datadir.clone()),
        Some((old.rpc.port(), old.p2p.port())),
    )
}

fn p2p_status(node: &TestNode) -> String {
    let (_, body) = node.get("/health/detailed").unwrap();
    json(&body)["components"]["p2p"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn restarted_sync_resumes_and_a_killed_source_is_reconnected() {
    let mut a = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    a.call("generatetoaddress", j!([300, address(3)]));
    let want = a.tip();

    // Kill B as soon as it has some blocks: whatever it stored must not be fetched again.
    let mut b = connected_to(&[&a], None, None);
    poll(WAIT, "B starts syncing", || (b.tip().0 > 0).then_some(()));
    b.kill();
    // What survived the kill, read with no peers to sync from.
    let mut alone = restart(&b, &[]);
    let resumed_at = alone.tip().0;
    alone.signal(libc::SIGTERM);
    assert_eq!(alone.wait_exit(WAIT), 0);
    let b2 = restart(&b, &[&a]);
    poll(WAIT, "B finishes after its restart", || {
        (b2.tip() == want).then_some(())
    });
    let fetched = b2.metric("bllvm_p2p_messages_received_total{command=\"block\"}") as u64;
    eprintln!("B resumed at height {resumed_at} and fetched {fetched} blocks after its restart");
    assert!(
        fetched <= 300 - resumed_at,
        "restarted at {resumed_at}, fetched {fetched} blocks: connected blocks were downloaded again"
    );

    // A is killed: B notices, keeps trying on its backoff schedule, and reconnects when A is back.
    let attempts_before = b2.metric("bllvm_p2p_connect_attempts_total");
    a.kill();
    poll(WAIT, "B sees A gone", || {
        (b2.call("getconnectioncount", j!([])) == 0).then_some(())
    });
    poll(WAIT, "B retries", || {
        (b2.metric("bllvm_p2p_connect_attempts_total") >= attempts_before + 2.0).then_some(())
    });
    let a2 = TestNode::start_with(NodeOptions {
        datadir: Some(a.datadir.clone()),
        ports: Some((a.rpc.port(), a.p2p.port())),
        ..NodeOptions::default()
    });
    poll(WAIT, "B reconnects to the restarted A", || {
        (b2.call("getconnectioncount", j!([])) == 1).then_some(())
    });
    a2.call("generatetoaddress", j!([2, address(3)]));
    let want = a2.tip();
    poll(WAIT, "B follows the restarted A", || {
        (b2.tip() == want).then_some(())
    });
}

#[test]
fn losing_every_peer_at_once_is_a_partition_until_they_return() {
    let mut a1 = TestNode::start();
    let mut a2 = TestNode::start();
    a1.wait_ready(Duration::from_secs(10));
    a2.wait_ready(Duration::from_secs(10));
    let b = connected_to(&[&a1, &a2], None, None);
    poll(WAIT, "B connects to both", || {
        (b.call("getconnectioncount", j!([])) == 2).then_some(())
    });
    assert_eq!(p2p_status(&b), "healthy");

    a1.kill();
    a2.kill();
    poll(WAIT, "partition logged", || {
        b.log().contains("network_partition").then_some(())
    });
    assert_eq!(b.metric("bllvm_network_partitions_total"), 1.0);
    poll(WAIT, "health degraded", || {
        (p2p_status(&b) == "degraded").then_some(())
    });
    let (code, _) = b.get("/health").unwrap();
    assert_eq!(code, 200, "degraded still answers 200");

    let _back = TestNode::start_with(NodeOptions {
        datadir: Some(a1.datadir.clone()),
        ports: Some((a1.rpc.port(), a1.p2p.port())),
        ..NodeOptions::default()
    });
    poll(WAIT, "peer back", || {
        (b.call("getconnectioncount", j!([])) == 1).then_some(())
    });
    poll(WAIT, "health recovers", || {
        (p2p_status(&b) == "healthy").then_some(())
    });
    b.wait_log("network_recovered");
}

#[test]
fn network_methods_manage_peers() {
    let mut a = TestNode::start();
    let mut b = TestNode::start_with(NodeOptions {
        config: Some(FAST_RECONNECT.into()),
        ..NodeOptions::default()
    });
    a.wait_ready(Duration::from_secs(10));
    b.wait_ready(Duration::from_secs(10));
    let target = a.p2p.to_string();
    b.call("addnode", j!([target, "add"]));
    let err = b.rpc("addnode", j!([target, "add"])).unwrap_err();
    assert_eq!(err["code"], -23);
    poll(WAIT, "addnode connects", || {
        (b.call("getconnectioncount", j!([])) == 1).then_some(())
    });
    let added = b.call("getaddednodeinfo", j!([]));
    assert_eq!(added[0]["addednode"], target.as_str());
    assert_eq!(added[0]["connected"], true);
    let info = b.call("getnetworkinfo", j!([]));
    assert_eq!(info["connections_out"], 1);
    assert_eq!(info["networkactive"], true);
    assert_eq!(info["localservicesnames"], j!(["NETWORK", "WITNESS"]));
    let a_info = a.call("getnetworkinfo", j!([]));
    assert_eq!(a_info["connections_in"], 1);
    b.call("ping", j!([]));
    let (last, min) = poll(WAIT, "pingtime and minping reported", || {
        let p = b.call("getpeerinfo", j!([]))[0].clone();
        Some((p.get("pingtime")?.as_f64()?, p.get("minping")?.as_f64()?))
    });
    assert!(min <= last && min < 5.0, "minping {min}, pingtime {last}");

    // An added node that is disconnected comes back; a removed one does not.
    let id = b.call("getpeerinfo", j!([]))[0]["id"].as_u64().unwrap();
    b.call("disconnectnode", j!(["", id]));
    let err = b.rpc("disconnectnode", j!(["127.0.0.1:1"])).unwrap_err();
    assert_eq!(err["code"], -29);
    poll(WAIT, "addnode peer reconnected", || {
        let peers = b.call("getpeerinfo", j!([]));
        let p = peers.as_array().unwrap().first()?.clone();
        (p["id"].as_u64() != Some(id) && p["handshake_done"] == true).then_some(())
    });
    b.call("addnode", j!([target, "remove"]));
    assert_eq!(
        b.rpc("addnode", j!([target, "remove"])).unwrap_err()["code"],
        -24
    );

    // setnetworkactive false drops every connection and refuses new ones.
    assert_eq!(b.call("setnetworkactive", j!([false])), false);
    poll(WAIT, "inactive", || {
        (b.call("getconnectioncount", j!([])) == 0).then_some(())
    });
    assert_eq!(b.call("getnetworkinfo", j!([]))["networkactive"], false);
    assert_eq!(b.call("setnetworkactive", j!([true])), true);
    b.call("addnode", j!([target, "onetry"]));
    poll(WAIT, "onetry connects", || {
        (b.call("getconnectioncount", j!([])) == 1).then_some(())
    });
}
