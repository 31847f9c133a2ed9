//! `partition`: a mesh of nodes is split in two halves by bans, each half mines its own branch
//! (one a block longer), and the split heals. Every node must end on the most-work tip with
//! the same UTXO digest.

use super::{chain, check_same_chain, loopback, poll, Ctx};
use crate::node::Node;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let k = ctx.p.nodes.max(2);
    let mut nodes: Vec<Node> = (0..k)
        // Connect-mode peers are redialled for as long as the partition lasts.
        .map(|i| {
            let config = "[network]\nreconnect_max_retries = 100000\n";
            ctx.node(&format!("node{i}"), loopback(20 + i as u8, 0), config)
        })
        .collect();
    let addrs: Vec<_> = nodes.iter().map(|n| n.p2p).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.args = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, a)| ["--connect".to_owned(), a.to_string()])
            .collect();
    }
    // node0 holds the chain before the others start: they sync when they connect. (A node
    // whose tip is the generated chain's, dated 2023, is in initial download and, as Core,
    // announces no new blocks.)
    for (i, n) in nodes.iter_mut().enumerate() {
        ctx.ops
            .op(format!("start {} connected to every other node", n.name));
        ctx.start(n)?;
        if i == 0 {
            ctx.ops
                .op(format!("node0: submit {} blocks", c.blocks.len()));
            c.submit_to(n)?;
        }
    }
    let tip = c.tip();
    for n in &mut nodes {
        n.wait_height(tip.0, Duration::from_secs(1800))?;
    }
    let half = k / 2;
    ctx.ops
        .op(format!("partition nodes 0..{half} from {half}..{k}"));
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in addrs.iter().enumerate() {
            if (i < half) != (j < half) {
                n.rpc(
                    "setban",
                    serde_json::json!([other.ip().to_string(), "add", 86400]),
                )?;
            }
        }
    }
    let apart = |nodes: &[Node]| {
        nodes.iter().enumerate().all(|(i, n)| {
            n.rpc("getpeerinfo", serde_json::json!([]))
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|peers| {
                    peers.iter().all(|p| {
                        let ip = p["addr"]
                            .as_str()
                            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                            .map(|a| a.ip());
                        addrs
                            .iter()
                            .position(|a| Some(a.ip()) == ip)
                            .is_none_or(|j| (i < half) == (j < half))
                    })
                })
        })
    };
    poll(Duration::from_secs(60), Duration::from_millis(100), || {
        apart(&nodes).then_some(())
    })
    .ok_or("the halves stayed connected after the bans")?;
    let addr = super::payout();
    let fork = ctx.p.fork_blocks.max(1);
    ctx.ops
        .op(format!("node0 mines {}; node{half} mines {fork}", fork + 1));
    nodes[0].rpc("generatetoaddress", serde_json::json!([fork + 1, addr]))?;
    nodes[half].rpc("generatetoaddress", serde_json::json!([fork, addr]))?;
    let a_tip = nodes[0].tip().ok_or("node0 stopped answering")?;
    let b_tip = nodes[half]
        .tip()
        .ok_or("the other half stopped answering")?;
    for (i, n) in nodes.iter_mut().enumerate() {
        let want = if i < half { &a_tip } else { &b_tip };
        n.wait_height(want.0, Duration::from_secs(300))?;
    }
    ctx.ops.op("heal: clear every ban");
    let healed = Instant::now();
    for n in &nodes {
        n.rpc("clearbanned", serde_json::json!([]))?;
    }
    poll(Duration::from_secs(300), Duration::from_millis(50), || {
        nodes
            .iter()
            .all(|n| n.tip().as_ref() == Some(&a_tip))
            .then_some(())
    })
    .ok_or("the nodes did not converge on the most-work tip after the heal")?;
    ctx.rec.figure(
        "seconds from heal to one tip",
        healed.elapsed().as_secs_f64(),
    );
    ctx.rec.figure("blocks reorganised away", fork as f64);
    for n in &nodes[1..] {
        check_same_chain(ctx, n, &a_tip, Some(&nodes[0]));
    }
    for mut n in nodes {
        ctx.watch.remove(&n.name);
        n.stop(Duration::from_secs(30));
    }
    Ok(())
}
