//! `ibd`: a fresh node syncs the generated chain from 1 and from 3 serving nodes. Figures: sync
//! time from the first `getheaders` to the tip, blocks/s, tx/s, MB/s, and the serving nodes'
//! P2P thread CPU per MB served.

use super::{chain, check_same_chain, loaded, loopback, poll, Ctx};
use crate::node::metric;
use crate::record::thread_cpu;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let tip = c.tip();
    let mb = c.bytes as f64 / 1e6;
    let most = ctx.p.sources.iter().copied().max().unwrap_or(1);
    // One node is loaded over JSON-RPC; the others start from copies of its datadir.
    let mut first = loaded(ctx, &c, "source0", loopback(10, 0))?;
    first.stop(Duration::from_secs(30));
    ctx.watch.remove(&first.name);
    let mut sources = vec![first];
    for i in 1..most {
        let n = ctx.node(&format!("source{i}"), loopback(10 + i as u8, 0), "");
        copy_dir(&sources[0].datadir, &n.datadir)?;
        sources.push(n);
    }
    for n in &mut sources {
        ctx.ops.op(format!("start {}", n.name));
        ctx.start(n)?;
    }
    for &k in &ctx.p.sources {
        let name = format!("sync-from-{k}");
        ctx.ops
            .op(format!("{name}: start with --connect to {k} sources"));
        let mut n = ctx.node(&name, loopback(50, k), "");
        n.args = sources[..k]
            .iter()
            .flat_map(|s| ["--connect".to_owned(), s.p2p.to_string()])
            .collect();
        let cpu_before: f64 = sources[..k]
            .iter()
            .filter_map(|s| s.pid())
            .map(|p| thread_cpu(p, "p2p"))
            .sum();
        ctx.start(&mut n)?;
        let asked = "bllvm_p2p_messages_sent_total{command=\"getheaders\"}";
        let limit = Duration::from_secs(1800);
        let began = poll(limit, Duration::from_millis(5), || {
            n.metrics()
                .filter(|m| metric(m, asked).is_some())
                .map(|_| Instant::now())
        })
        .ok_or("the syncing node never sent getheaders")?;
        n.wait_height(tip.0, limit)?;
        let secs = began.elapsed().as_secs_f64();
        let cpu: f64 = sources[..k]
            .iter()
            .filter_map(|s| s.pid())
            .map(|p| thread_cpu(p, "p2p"))
            .sum::<f64>()
            - cpu_before;
        let txs = c.txs_upto[tip.0 as usize] as f64;
        let r = &ctx.rec;
        r.figure(&format!("ibd from {k}: sync seconds"), secs);
        r.figure(&format!("ibd from {k}: blocks/s"), tip.0 as f64 / secs);
        r.figure(&format!("ibd from {k}: tx/s"), txs / secs);
        r.figure(&format!("ibd from {k}: MB/s"), mb / secs);
        r.figure(
            &format!("ibd from {k}: serving p2p CPU ms per MB"),
            cpu * 1000.0 / mb,
        );
        check_same_chain(ctx, &n, &tip, Some(&sources[0]));
        ctx.ops.op(format!("{name}: stop"));
        ctx.watch.remove(&n.name);
        n.stop(Duration::from_secs(30));
    }
    for mut s in sources {
        ctx.watch.remove(&s.name);
        s.stop(Duration::from_secs(30));
    }
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
        .ok_or_else(|| format!("copying {} failed", from.display()))
}
