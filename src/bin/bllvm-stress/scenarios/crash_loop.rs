//! `crash-loop`: a node syncing from a peer is killed with `kill -9` at seeded moments, round
//! after round. Every tip it reported before a kill must still be there after the restart
//! (nothing acknowledged lost), and once it is left alone it must reach the same tip and the
//! same UTXO digest as the node that holds the clean copy.

use super::{chain, check_same_chain, loaded, loopback, Ctx};
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let tip = c.tip();
    let source = loaded(ctx, &c, "source", loopback(10, 0))?;
    let mut n = ctx.node("victim", loopback(20, 0), "");
    n.args = vec!["--connect".into(), source.p2p.to_string()];
    let mut rng = ctx.rng("kills");
    let (mut acked, mut lost, mut during_sync, mut answered) = (0u64, Vec::new(), 0, 0);
    for round in 0..ctx.p.rounds {
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
                if first && h < acked {
                    lost.push(format!("round {round}: tip {h} after {acked} was reported"));
                }
                if first {
                    answered += 1;
                    ctx.rec.ok("restart to first answer", started);
                }
                first = false;
                acked = acked.max(h);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if acked < tip.0 {
            during_sync += 1;
        }
        n.kill9();
        ctx.watch.remove(&n.name);
    }
    ctx.ops.op("victim: start and sync undisturbed");
    ctx.start(&mut n)?;
    let (h, _) = n.wait_height(tip.0, Duration::from_secs(1800))?;
    if h < acked {
        lost.push(format!("final tip {h} below the {acked} reported"));
    }
    ctx.check(
        "nothing acknowledged lost",
        lost.is_empty(),
        if lost.is_empty() {
            format!("{} rounds, highest reported tip {acked}", ctx.p.rounds)
        } else {
            lost.join("; ")
        },
    );
    check_same_chain(ctx, &n, &tip, Some(&source));
    ctx.rec.figure("rounds", ctx.p.rounds as f64);
    ctx.rec
        .figure("rounds killed during sync", during_sync as f64);
    ctx.rec
        .figure("rounds the node answered before its kill", answered as f64);
    n.stop(Duration::from_secs(30));
    Ok(())
}
