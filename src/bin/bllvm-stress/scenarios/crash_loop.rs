//! `crash-loop`: a node syncing from a peer is killed with `kill -9` at seeded moments, round
//! after round; every `wipe_every` rounds it starts again from an empty datadir, so the kills
//! keep landing during a sync. It must come back after every kill, and once left alone reach
//! the same tip and UTXO digest as the node that holds the clean copy.
//!
//! A tip reported during a P2P sync is not an acknowledgement: blocks connected in memory are
//! durable once the writer commits them, and what a kill takes is fetched again (Core also
//! replays or refetches after a crash). How far the tip went back is reported; what RPC
//! acknowledges must survive, and `soak` and `tests/node_crash.rs` check that.

use super::{chain, check_same_chain, loaded, loopback, Ctx};
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let tip = c.tip();
    let source = loaded(ctx, &c, "source", loopback(10, 0))?;
    let mut n = ctx.node("victim", loopback(20, 0), "");
    n.args = vec!["--connect".into(), source.p2p.to_string()];
    let mut rng = ctx.rng("kills");
    let (mut seen, mut during_sync, mut answered, mut drop_max, mut drops) = (0u64, 0, 0, 0u64, 0);
    let mut fresh_syncs = 0;
    for round in 0..ctx.p.rounds {
        if ctx.p.wipe_every > 0 && round > 0 && round % ctx.p.wipe_every == 0 {
            ctx.ops.op(format!(
                "round {round}: empty the victim's datadir (a fresh sync)"
            ));
            std::fs::remove_dir_all(&n.datadir)
                .map_err(|e| format!("emptying the datadir: {e}"))?;
            seen = 0;
            fresh_syncs += 1;
        }
        let delay = rng.range(50, ctx.p.max_kill_delay_ms.max(50));
        ctx.ops.op(format!(
            "round {round}: start victim, kill -9 after {delay} ms"
        ));
        n.start().map_err(|e| format!("starting the victim: {e}"))?;
        ctx.watch.set(&n.name, n.pid(), n.rpc);
        let started = Instant::now();
        let mut first = true;
        while started.elapsed() < Duration::from_millis(delay) {
            if let Some((h, _)) = n.tip() {
                if first && h < seen {
                    drops += 1;
                    drop_max = drop_max.max(seen - h);
                }
                if first {
                    answered += 1;
                    ctx.rec.ok("restart to first answer", started);
                }
                first = false;
                seen = seen.max(h);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if seen < tip.0 {
            during_sync += 1;
        }
        n.kill9();
        ctx.watch.remove(&n.name);
    }
    ctx.ops.op("victim: start and sync undisturbed");
    ctx.start(&mut n)?;
    let (h, _) = n.wait_height(tip.0, Duration::from_secs(1800))?;
    ctx.check(
        "came back after every kill",
        answered == ctx.p.rounds && h == tip.0,
        format!(
            "{answered} of {} restarts answered before their kill; then synced to {h}",
            ctx.p.rounds
        ),
    );
    check_same_chain(ctx, &n, &tip, Some(&source));
    ctx.rec.figure("rounds", ctx.p.rounds as f64);
    ctx.rec
        .figure("fresh syncs (datadir emptied)", fresh_syncs as f64);
    ctx.rec
        .figure("rounds killed during sync", during_sync as f64);
    ctx.rec
        .figure("rounds the node answered before its kill", answered as f64);
    ctx.rec.figure(
        "restarts whose tip was below the last reported",
        drops as f64,
    );
    ctx.rec
        .figure("largest tip drop across a restart, blocks", drop_max as f64);
    n.stop(Duration::from_secs(30));
    Ok(())
}
