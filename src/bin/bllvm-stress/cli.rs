//! The command line: `run` one scenario, or `compare` two binaries on it.

use crate::report::{self, Report};
use crate::scenario::Scenario;
use crate::scenarios::{self, Ctx};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Seeded stress and fault scenarios against real bllvm-node processes on loopback.
#[derive(Parser)]
#[command(name = "bllvm-stress", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a scenario: DIR/report.json, report.md, ops.log and charts.
    Run {
        /// The scenario file (benches/scenarios/<name>.toml).
        scenario: PathBuf,
        /// Every random choice comes from this.
        #[arg(long)]
        seed: u64,
        /// Where the report goes (created).
        #[arg(long)]
        out: PathBuf,
        /// The scenario's small size (CI).
        #[arg(long)]
        smoke: bool,
        /// The node binary (default: bllvm-node beside this program).
        #[arg(long)]
        node: Option<PathBuf>,
    },
    /// Runs a scenario on two binaries, interleaved, and prints the ratios B/A.
    Compare {
        /// The scenario file.
        scenario: PathBuf,
        /// Every random choice comes from this.
        #[arg(long)]
        seed: u64,
        /// Where the reports go: DIR/a-N, DIR/b-N, DIR/compare.md.
        #[arg(long)]
        out: PathBuf,
        /// The scenario's small size.
        #[arg(long)]
        smoke: bool,
        /// The two binaries: --node A --node B.
        #[arg(long, num_args = 1, required = true)]
        node: Vec<PathBuf>,
        /// Runs per binary (alternating A B, B A, ...).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
}

/// Why the harness could not run at all (a failed invariant is not an error: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("compare takes exactly two --node binaries, got {0}")]
    Nodes(usize),
    #[error("node binary {0} does not exist (build it with `cargo build --release`)")]
    NoBinary(String),
}

impl Cli {
    /// Runs the command; whether every invariant held.
    pub fn run(self) -> Result<bool, CliError> {
        match self.cmd {
            Cmd::Run {
                scenario,
                seed,
                out,
                smoke,
                node,
            } => {
                let s = Scenario::load(&scenario)?;
                let bin = binary(node)?;
                let r = run_one(&s, seed, &out, smoke, &bin)?;
                println!("{}", r.summary_line());
                println!("report: {}", out.join("report.md").display());
                Ok(r.passed())
            }
            Cmd::Compare {
                scenario,
                seed,
                out,
                smoke,
                node,
                repeat,
            } => {
                if node.len() != 2 {
                    return Err(CliError::Nodes(node.len()));
                }
                let s = Scenario::load(&scenario)?;
                let bins = [
                    binary(Some(node[0].clone()))?,
                    binary(Some(node[1].clone()))?,
                ];
                let mut runs: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
                for i in 0..repeat.max(1) {
                    let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                    for which in order {
                        let dir = out.join(format!("{}-{i}", ["a", "b"][which]));
                        let r = run_one(&s, seed, &dir, smoke, &bins[which])?;
                        println!("{} {}: {}", ["A", "B"][which], i, r.summary_line());
                        runs[which].push(r);
                    }
                }
                let text = report::compare(&s.name, seed, &bins, &runs[0], &runs[1]);
                write(&out.join("compare.md"), &text)?;
                println!("{text}");
                Ok(runs.iter().flatten().all(Report::passed))
            }
        }
    }
}

fn binary(node: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let bin = match node {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|source| CliError::Io {
                what: "locating this program".into(),
                source,
            })?
            .with_file_name("bllvm-node"),
    };
    if !bin.is_file() {
        return Err(CliError::NoBinary(bin.display().to_string()));
    }
    Ok(bin)
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// One run of `s` with `seed` on `bin`, its report written to `out`.
fn run_one(
    s: &Scenario,
    seed: u64,
    out: &Path,
    smoke: bool,
    bin: &Path,
) -> Result<Report, CliError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| CliError::Io { what, source }
    };
    std::fs::create_dir_all(out).map_err(io("creating the output directory"))?;
    let params = s.params(smoke).expect("checked at load");
    let ctx =
        Ctx::new(s, params, seed, smoke, bin, out).map_err(io("creating a work directory"))?;
    log::info!(
        "scenario {} ({}), seed {seed}{}, node {}",
        s.name,
        s.kind,
        if smoke { ", smoke size" } else { "" },
        bin.display()
    );
    let result = scenarios::run(&ctx);
    ctx.finish(result)
        .write(out)
        .map_err(io("writing the report"))
}
