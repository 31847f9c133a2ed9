//! The stress harness (`bllvm-stress`) on the real node: every shipped scenario runs end to end
//! at smoke size, the same seed writes the same operation log, a failed invariant exits
//! non-zero, and compare mode reports both binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const STRESS: &str = env!("CARGO_BIN_EXE_bllvm-stress");
const NODE: &str = env!("CARGO_BIN_EXE_bllvm-node");

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Runs `bllvm-stress` with `args`, killed if it outlives `limit`; its exit status and output.
/// One run at a time: the scenarios measure probes and latency, and two cores shared by
/// several runs' nodes would measure each other.
fn stress(args: &[&str], limit: Duration) -> (ExitStatus, String) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(STRESS)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bllvm-stress {args:?} still running after {limit:?}:\n{}",
                std::fs::read_to_string(out.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status,
        std::fs::read_to_string(out.path()).unwrap_or_default(),
    )
}

fn run(scenario: &Path, seed: u64, out: &Path) -> (ExitStatus, String) {
    stress(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--smoke",
            "--node",
            NODE,
        ],
        Duration::from_secs(600),
    )
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn every_scenario_runs_end_to_end_at_smoke_size() {
    let all = scenarios();
    assert!(all.len() >= 7, "scenarios shipped: {all:?}");
    let tmp = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for s in &all {
        let name = s.file_stem().unwrap().to_str().unwrap().to_owned();
        let out = tmp.path().join(&name);
        let (status, output) = run(s, 7, &out);
        if !status.success() {
            failed.push(format!("{name}: {status}\n{output}"));
            continue;
        }
        let r = report(&out);
        let invariants = r["invariants"].as_array().unwrap();
        assert!(
            invariants.len() >= 3 && invariants.iter().all(|i| i["ok"] == true),
            "{name}: {invariants:?}"
        );
        assert_eq!(r["size"], "smoke");
        for f in ["report.md", "ops.log", "resources.svg", "latency.svg"] {
            assert!(out.join(f).is_file(), "{name}: no {f}");
        }
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("## Invariants") && md.contains("![resources.svg]"),
            "{md}"
        );
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Timings go to the report, never into `ops.log`: the same seed gives the same file, another
/// seed another one.
#[test]
fn the_same_seed_writes_the_same_operation_log() {
    let soak = scenarios()
        .into_iter()
        .find(|p| p.ends_with("soak.toml"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ops = |seed: u64, dir: &str| {
        let out = tmp.path().join(dir);
        let (status, output) = run(&soak, seed, &out);
        assert!(status.success(), "{output}");
        std::fs::read_to_string(out.join("ops.log")).unwrap()
    };
    let (a, b, c) = (ops(11, "a"), ops(11, "b"), ops(12, "c"));
    assert!(a.lines().count() > 100, "a real plan: {a}");
    assert!(
        a.contains("SIGSTOP") && a.contains("kill -9") && a.contains("peer 0 kind="),
        "{a}"
    );
    assert_eq!(a, b, "same seed, same operations");
    assert_ne!(a, c, "another seed, other operations");
}

#[test]
fn a_failed_invariant_exits_non_zero_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tight.toml");
    std::fs::write(
        &file,
        "name = \"tight\"\nkind = \"ibd\"\n[params]\nblocks = 5\ntxs_per_block = 2\nsources = [1]\nmax_rss_mib = 1.0\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (status, output) = run(&file, 1, &out);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("FAILED: memory within the configured bound"),
        "{output}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| **FAILED** | memory within the configured bound |"),
        "{md}"
    );
    let (status, output) = stress(
        &[
            "run",
            "/nonexistent.toml",
            "--seed",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        status.code(),
        Some(2),
        "an unusable scenario is an error: {output}"
    );
    assert!(output.contains("cannot read /nonexistent.toml"), "{output}");
}

#[test]
fn compare_runs_both_binaries_and_prints_ratios() {
    let ibd = scenarios()
        .into_iter()
        .find(|p| p.ends_with("ibd.toml"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let (status, output) = stress(
        &[
            "compare",
            ibd.to_str().unwrap(),
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--smoke",
            "--node",
            NODE,
            "--node",
            NODE,
        ],
        Duration::from_secs(600),
    );
    assert!(status.success(), "{output}");
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| measure | A | B | B/A |"), "{md}");
    assert!(md.contains("ibd from 1: blocks/s"), "{md}");
    assert!(md.contains("Invariants: A all held, B all held."), "{md}");
    for d in ["a-0", "b-0"] {
        assert!(out.join(d).join("report.json").is_file(), "{d}");
    }
    assert_eq!(
        std::fs::read(out.join("a-0/ops.log")).unwrap(),
        std::fs::read(out.join("b-0/ops.log")).unwrap(),
        "both binaries get the same operations"
    );
}
