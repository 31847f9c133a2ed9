//! P2P figures on real binaries over loopback: syncing a regtest chain of P2WPKH/P2TR spends from
//! one peer and from three, against connecting the same blocks in-process; the syncing node's
//! RSS; RSS under 100 idle inbound connections.
//! `cargo bench --bench p2p` for 2,000 blocks of ~100 transactions; under `cargo test` a smoke run.

#[path = "../tests/harness/mod.rs"]
mod harness;

use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::params::Params;
use bllvm_node::config::Chain;
use harness::chain::{spend_chain, NOW};
use harness::raw_peer::RawPeer;
use harness::{poll, proc_kib, NodeOptions, TestNode};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(1800);
/// The bench polls the nodes faster than the default per-address RPC rate limit allows.
const NO_RATE_LIMIT: &str = "[rpc.auth]\nrate_limit_enabled = false\n";

fn unlimited(opts: NodeOptions) -> NodeOptions {
    let config = opts.config.clone().unwrap_or_default() + NO_RATE_LIMIT;
    NodeOptions {
        config: Some(config),
        ..opts
    }
}

fn connected(peers: &[&TestNode]) -> TestNode {
    let mut n = TestNode::start_with(unlimited(NodeOptions::connect(peers)));
    n.wait_ready(Duration::from_secs(30));
    n
}

/// Starts a node that connects to `peers` and times its sync to `height`: from its first
/// `getheaders` (start-up is not sync) to the tip. Also the CPU the serving nodes' p2p threads
/// used per MB they served.
fn timed_sync(peers: &[&TestNode], height: u64, blocks: usize, mb: f64, label: &str) {
    let cpu = |ps: &[&TestNode]| -> f64 {
        ps.iter()
            .map(|p| harness::thread_cpu_seconds(p.pid(), "p2p"))
            .sum()
    };
    let cpu_before = cpu(peers);
    let n = TestNode::start_with(unlimited(NodeOptions::connect(peers)));
    let asked = "bllvm_p2p_messages_sent_total{command=\"getheaders\"}";
    let t = poll_every(LONG, Duration::from_millis(2), "first getheaders", || {
        n.get("/metrics")
            .ok()
            .filter(|(_, m)| m.lines().any(|l| l.starts_with(asked)))
            .map(|_| Instant::now())
    });
    poll_every(LONG, Duration::from_millis(5), label, || {
        (n.tip().0 == height).then_some(())
    });
    let s = t.elapsed().as_secs_f64();
    let served_cpu = cpu(peers) - cpu_before;
    let (rss, peak) = proc_kib(n.pid());
    println!(
        "sync from {label}: {blocks} blocks in {s:.2} s = {:.0} blocks/s, {:.1} MB/s; syncing node RSS {} MiB (peak {} MiB); serving p2p threads {:.1} ms CPU per MB served",
        blocks as f64 / s,
        mb / s,
        rss / 1024,
        peak / 1024,
        served_cpu * 1000.0 / mb
    );
}

/// Polls `f` every `every` until it returns `Some` (a finer `poll`, for timings).
fn poll_every<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (blocks, per_block, idle) = if full { (2000, 100, 100) } else { (20, 10, 10) };
    let chain = spend_chain(blocks, per_block);
    let height = chain.len() as u64;
    let mb = chain
        .iter()
        .map(|b| bitcoin::consensus::serialize(b).len())
        .sum::<usize>() as f64
        / 1e6;
    println!("chain: {height} blocks, {mb:.1} MB");

    // The same blocks connected in-process, scripts checked: the ceiling for the network figures.
    let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
    let t = Instant::now();
    for b in &chain {
        cs.submit_block(b.clone(), NOW).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "in-process connect (no network, no disk): {:.0} blocks/s, {:.1} MB/s",
        height as f64 / s,
        mb / s
    );

    // Loaded over RPC as fast as it answers: past the default per-address rate limit.
    let mut a1 = TestNode::start_with(unlimited(NodeOptions::default()));
    a1.wait_ready(Duration::from_secs(30));
    let t = Instant::now();
    for b in &chain {
        let hex = bitcoin::consensus::encode::serialize_hex(b);
        a1.call("submitblock", json!([hex]));
    }
    println!(
        "loaded source over submitblock in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let a2 = connected(&[&a1]);
    let a3 = connected(&[&a1]);
    for n in [&a2, &a3] {
        poll(LONG, "sources sync", || (n.tip().0 == height).then_some(()));
    }

    timed_sync(&[&a1], height, chain.len(), mb, "one peer");
    timed_sync(&[&a1, &a2, &a3], height, chain.len(), mb, "three peers");

    // Idle inbound connections: handshake done, then silence. At most 10 per source IP per
    // minute are accepted, so they come from several loopback addresses.
    let (before, _) = proc_kib(a3.pid());
    let peers: Vec<RawPeer> = (0..idle)
        .map(|i| {
            let mut p = RawPeer::connect(&format!("127.90.{}.1", i / 10 + 1), a3.p2p).unwrap();
            p.handshake();
            p
        })
        .collect();
    poll(LONG, "inbound peers counted", || {
        let n = a3.call("getconnectioncount", json!([])).as_u64().unwrap();
        (n as usize > idle).then_some(())
    });
    let (after, _) = proc_kib(a3.pid());
    println!(
        "{idle} idle inbound peers: RSS {} MiB before, {} MiB after ({:.0} KiB per peer)",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / idle as f64
    );
    drop(peers);
}
