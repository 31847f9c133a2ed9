//! `disk-full`: a node whose datadir is on a small tmpfs syncs half the chain from a peer; the
//! disk is then filled to the last byte and the peer gets the other half. The node must stay
//! up, answer its probes, say so in health, and catch up by itself once space returns. Without
//! root (no tmpfs) the scenario is skipped, loudly.

use super::{chain, check_same_chain, loopback, poll, Ctx};
use crate::drivers::faults::Tmpfs;
use crate::node::metric;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let fs = match Tmpfs::mount(&ctx.work().join("disk"), ctx.p.disk_mb) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED disk-full: {why} (needs root): the full disk was NOT tested ***\n"
            );
            ctx.rec.figure("skipped: no tmpfs", 1.0);
            return Ok(());
        }
    };
    let c = chain(ctx);
    // The source holds half the chain at first; the rest arrives once the disk is full, so the
    // victim has whole blocks to write (a few empty ones can fit in a file's last page).
    let half = c.blocks.len() / 2;
    let mut source = ctx.node("source", loopback(10, 0), "");
    ctx.start(&mut source)?;
    ctx.ops.op(format!("source: submit blocks 1..={half}"));
    c.submit_range(&source, 0..half)?;
    let mut n = ctx.node(
        "victim",
        loopback(20, 0),
        "[storage]\ndisk_warn_percent = 80.0\ndisk_critical_percent = 90.0\n",
    );
    n.datadir = fs.mnt.join("data");
    n.args = vec!["--connect".into(), source.p2p.to_string()];
    ctx.ops.op("victim: start on the tmpfs and sync");
    ctx.start(&mut n)?;
    n.wait_height(half as u64, Duration::from_secs(1800))?;
    ctx.ops.op("fill the victim's disk");
    let filled = fs.fill_up();
    ctx.rec.figure("filler MiB", filled as f64 / 1048576.0);
    ctx.ops.op(format!(
        "source: submit blocks {}..={}",
        half + 1,
        c.blocks.len()
    ));
    c.submit_range(&source, half..c.blocks.len())?;
    // The generated blocks are dated 2023, so the source is still in initial download and, as
    // Core, announces nothing; a block mined now ends that and is announced.
    ctx.ops.op("source: mine 1 block");
    source.rpc("generatetoaddress", serde_json::json!([1, super::payout()]))?;
    let full_at = Instant::now();
    let paused = poll(Duration::from_secs(120), Duration::from_millis(50), || {
        n.metrics()
            .and_then(|m| metric(&m, "bllvm_storage_writes_paused"))
            .filter(|v| *v == 1.0)
    });
    ctx.check(
        "a full disk pauses writes and is reported",
        paused.is_some(),
        format!("bllvm_storage_writes_paused = {paused:?}"),
    );
    ctx.rec.figure(
        "seconds to report the full disk",
        full_at.elapsed().as_secs_f64(),
    );
    let health = crate::http::http_full(n.rpc, "GET", "/health/detailed", &[], "")
        .map(|r| r.2)
        .unwrap_or_default();
    let said = health.contains("No space left");
    ctx.check(
        "health names the full disk",
        said,
        format!(
            "storage component: {}",
            if said {
                "No space left on device"
            } else {
                "not reported"
            }
        ),
    );
    let probes_before = ctx.rec.errors("probe:");
    // The node holds on a full disk for a while: probes are sampled meanwhile.
    poll(
        Duration::from_secs(if ctx.smoke { 3 } else { 30 }),
        Duration::from_millis(50),
        || n.exited().then_some(()),
    );
    ctx.check("alive on a full disk", !n.exited(), "process running");
    let missed = ctx.rec.errors("probe:") - probes_before;
    ctx.check(
        "probes answered on a full disk",
        missed == 0,
        format!("{missed} probes unanswered"),
    );
    ctx.ops.op("free the disk");
    fs.free();
    let back = Instant::now();
    let want = source.tip().ok_or("the source stopped answering")?;
    n.wait_height(want.0, Duration::from_secs(300))?;
    ctx.rec.figure(
        "seconds from space back to the tip",
        back.elapsed().as_secs_f64(),
    );
    check_same_chain(ctx, &n, &want, Some(&source));
    n.stop(Duration::from_secs(30));
    source.stop(Duration::from_secs(30));
    drop(fs);
    Ok(())
}
