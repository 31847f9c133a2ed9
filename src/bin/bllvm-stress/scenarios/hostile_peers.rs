//! `hostile-peers`: a fresh node syncs the generated chain from honest feeders it dials while
//! hostile peers (slow readers, stallers, junk senders, inv flooders, churners) connect to it.
//! It must reach the tip, stay responsive and stay within its memory bound.

use super::{chain, check_same_chain, loopback, Ctx};
use crate::drivers::peers::{Kind, Peers, Plan, Served};
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let tip = c.tip();
    let served = Served::new(c.blocks.clone());
    let mut peers = Peers::new();
    let mut n = ctx.node("target", loopback(10, 0), "");
    for i in 0..ctx.p.honest {
        let addr = peers.feeder(loopback(30 + i as u8, 0), served.clone(), ctx.rec.clone());
        ctx.ops
            .op(format!("honest feeder {i} listening; target dials it"));
        n.args.extend(["--connect".to_owned(), addr.to_string()]);
    }
    let mut rng = ctx.rng("peers");
    let plans: Vec<Plan> = (0..ctx.p.hostile)
        .map(|i| Plan {
            id: i,
            kind: *rng.pick(Kind::HOSTILE),
            // Ten /16s, so netgroup-based protection has something to choose between.
            from: loopback(100 + (i % 10) as u8, i / 10),
            actions: rng.range(20, 200) as u32,
            gap_ms: rng.range(10, 200),
            seed: rng.next(),
        })
        .collect();
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
