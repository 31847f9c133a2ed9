//! `soak`: a long mixed run on one node: JSON-RPC and REST load, hostile peers, blocks mined
//! on a schedule, and at seeded moments a SIGSTOP/SIGCONT pause, a `kill -9` with restart and
//! every peer dropped at once. Every mined block it acknowledged must still be in its chain.

use super::{chain, hostile_plans, loaded, loopback, start_load, Ctx};
use crate::drivers::faults::drop_peers;
use crate::drivers::peers::{Peers, Served};
use std::time::{Duration, Instant};

/// The node's default per-address rate.
const RATE_LIMIT: f64 = 100.0;

enum Event {
    Mine,
    Pause(u64),
    Kill,
    DropPeers,
}

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let mut n = loaded(ctx, &c, "node0", loopback(10, 0))?;
    let d = ctx.p.duration_secs;
    let ms = |share: f64| (d * 1000.0 * share) as u64;
    let mut rng = ctx.rng("soak");
    // The schedule: a block every 5 % of the run, and one of each fault.
    let mut events: Vec<(u64, Event)> = (1..20)
        .map(|i| (ms(i as f64 / 20.0), Event::Mine))
        .collect();
    events.push((rng.range(ms(0.2), ms(0.4)), Event::Pause(ctx.p.pause_ms)));
    events.push((rng.range(ms(0.5), ms(0.7)), Event::Kill));
    events.push((rng.range(ms(0.8), ms(0.9)), Event::DropPeers));
    events.sort_by_key(|(at, _)| *at);
    for (at, e) in &events {
        ctx.ops.op(format!(
            "at {at} ms: {}",
            match e {
                Event::Mine => "mine 1 block".to_owned(),
                Event::Pause(p) => format!("SIGSTOP for {p} ms, then SIGCONT"),
                Event::Kill => "kill -9, restart".to_owned(),
                Event::DropPeers => "drop every peer".to_owned(),
            }
        ));
    }
    let served = Served::new(c.blocks.clone());
    let mut peers = Peers::new();
    for plan in hostile_plans(ctx, ctx.p.hostile, (50, 500)) {
        ctx.ops.op(plan.describe());
        peers.spawn(plan, n.p2p, served.clone(), ctx.rec.clone());
    }
    let rate = ctx.p.rate_multiple * RATE_LIMIT;
    let (holders, load) = start_load(ctx, &n, &c, [80, 10, 2, 8], rate, (rate * d) as usize);
    let addr = super::payout();
    let t0 = Instant::now();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for (at, e) in events {
        if let Some(wait) = Duration::from_millis(at).checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        match e {
            Event::Mine => {
                let started = Instant::now();
                match n.rpc("generatetoaddress", serde_json::json!([1, addr])) {
                    Ok(v) => {
                        ctx.rec.ok("rpc:generatetoaddress", started);
                        ctx.rec.completed("blocks mined", 1);
                        if let Some(h) = v[0].as_str() {
                            let height = n.tip().map_or(0, |t| t.0);
                            acked.push((height, h.to_owned()));
                        }
                    }
                    Err(_) => ctx.rec.err("rpc:generatetoaddress:failed"),
                }
            }
            Event::Pause(p) => {
                n.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(p));
                n.signal(libc::SIGCONT);
            }
            Event::Kill => {
                n.kill9();
                let started = Instant::now();
                ctx.start(&mut n)?;
                ctx.rec.ok("kill -9 to ready", started);
            }
            Event::DropPeers => drop_peers(&n, Duration::from_secs(2))?,
        }
    }
    load.join();
    drop(holders);
    peers.stop();
    let lost: Vec<String> = acked
        .iter()
        .filter(|(h, hash)| {
            n.rpc("getblockhash", serde_json::json!([h]))
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref()
                != Some(hash.as_str())
        })
        .map(|(h, hash)| format!("{hash} at {h}"))
        .collect();
    ctx.check(
        "nothing acknowledged lost",
        lost.is_empty(),
        if lost.is_empty() {
            format!(
                "{} mined blocks acknowledged, all in the chain",
                acked.len()
            )
        } else {
            format!("missing: {}", lost.join(", "))
        },
    );
    ctx.check("node alive at the end", !n.exited(), "process running");
    n.stop(Duration::from_secs(30));
    Ok(())
}
