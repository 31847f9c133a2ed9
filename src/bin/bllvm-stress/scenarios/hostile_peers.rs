//! `hostile-peers`: a fresh node syncs the generated chain from honest feeders it dials while
//! hostile peers (slow readers, stallers, junk senders, inv flooders, churners) connect to it.
//! It must reach the tip, stay responsive and stay within its memory bound.

use super::{chain, check_same_chain, hostile_plans, loopback, Ctx};
use crate::drivers::peers::{Peers, Served};
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let tip = c.tip();
    let served = Served::new(c.blocks.clone());
    let mut peers = Peers::new();
    let feeders: Vec<_> = (0..ctx.p.honest)
        .map(|i| {
            ctx.ops.op(format!("honest feeder {i} listening"));
            peers.feeder(loopback(30 + i as u8, 0), served.clone(), ctx.rec.clone())
        })
        .collect();
    let connect: Vec<String> = feeders
        .iter()
        .flat_map(|a| ["--connect".to_owned(), a.to_string()])
        .collect();
    // The same sync with no one hostile, for comparison.
    let mut base = ctx.node("baseline", loopback(11, 0), "");
    base.args = connect.clone();
    ctx.ops
        .op("start baseline: dials the feeders, no hostile peer");
    ctx.start(&mut base)?;
    let t = Instant::now();
    base.wait_height(tip.0, Duration::from_secs(1800))?;
    ctx.rec
        .figure("sync seconds, no hostile peers", t.elapsed().as_secs_f64());
    ctx.watch.remove(&base.name);
    base.stop(Duration::from_secs(30));
    let mut n = ctx.node("target", loopback(10, 0), "");
    n.args = connect;
    let plans = hostile_plans(ctx, ctx.p.hostile, (10, 200));
    ctx.ops.op("start target");
    ctx.start(&mut n)?;
    let t = Instant::now();
    for plan in plans {
        ctx.ops.op(plan.describe());
        peers.spawn(plan, n.p2p, served.clone(), ctx.rec.clone());
    }
    n.wait_height(tip.0, Duration::from_secs(1800))?;
    ctx.rec
        .figure("sync seconds under attack", t.elapsed().as_secs_f64());
    check_same_chain(ctx, &n, &tip, None);
    let banned = n
        .rpc("listbanned", serde_json::json!([]))
        .map(|v| v.as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    ctx.rec.figure("addresses banned", banned as f64);
    peers.stop();
    ctx.check("target alive at the end", !n.exited(), "process running");
    n.stop(Duration::from_secs(30));
    Ok(())
}
