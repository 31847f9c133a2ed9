//! `rpc-flood`: JSON-RPC and REST at a multiple of the node's per-address rate limit, with
//! wrong passwords, slowloris and idle connections, while the probes are measured. The node
//! must keep answering its probes and its allowed share of calls.

use super::{chain, loaded, loopback, start_load, Ctx};

/// The node's default per-address rate (`[rpc.auth] rate_limit_rate`).
const RATE_LIMIT: f64 = 100.0;

pub fn run(ctx: &Ctx) -> Result<(), String> {
    let c = chain(ctx);
    let mut n = loaded(ctx, &c, "node0", loopback(10, 0))?;
    let workers = ctx.p.rpc_workers.max(1);
    // A target rate, or (calls_per_worker set) fixed concurrency: each connection sends its
    // calls back to back.
    let (rate, total) = match ctx.p.calls_per_worker {
        0 => {
            let rate = ctx.p.rate_multiple * RATE_LIMIT;
            (rate, (rate * ctx.p.duration_secs) as usize)
        }
        n => (0.0, n * workers),
    };
    let probe_errors_before = ctx.rec.errors("probe:");
    let (holders, load) = start_load(ctx, &n, &c, [70, 15, 5, 10], rate, total);
    load.join();
    drop(holders);
    let missed = ctx.rec.errors("probe:") - probe_errors_before;
    ctx.check(
        "probes answered throughout the flood",
        missed == 0,
        format!("{missed} probes unanswered within 2 s"),
    );
    let answered = ctx.rec.count_ok("rpc:");
    ctx.check(
        "the node answered calls during the flood",
        answered > 0,
        format!("{answered} JSON-RPC calls answered 200"),
    );
    ctx.rec.figure("calls offered per second", rate);
    ctx.check("node alive after the flood", !n.exited(), "process running");
    n.stop(std::time::Duration::from_secs(30));
    Ok(())
}
