//! `bllvm-stress`: seeded stress and fault scenarios against real `bllvm-node` processes on
//! loopback, with a JSON and Markdown report and SVG charts. See docs/benchmarks.md.

mod charts;
mod cli;
mod drivers;
mod node;
mod ops;
mod record;
mod report;
mod scenario;
mod scenarios;

// The chain builder and the raw peer are the test harness's own: one wallet and one peer for
// the tests and the harness.
#[allow(dead_code)]
#[path = "../../../tests/harness/chain.rs"]
mod chain;
#[allow(dead_code)]
#[path = "../../../tests/harness/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../../../tests/harness/raw_peer.rs"]
mod raw_peer;

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let code = match cli::Cli::parse().run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("bllvm-stress: {e}");
            2
        }
    };
    std::process::exit(code);
}
