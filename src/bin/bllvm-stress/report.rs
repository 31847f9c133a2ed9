//! The run's report: `report.json` (everything), `report.md` (the summary an operator reads)
//! and the charts; and the comparison of two binaries' reports.

use crate::record::{Recorded, Sample};
use crate::scenarios::Ctx;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A checked property of the run.
#[derive(Clone, Serialize)]
pub struct Invariant {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Percentiles of a set of latencies, ms.
#[derive(Clone, Copy, Default, Serialize)]
pub struct Stat {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stat {
    /// Percentiles of `v` (nearest rank).
    pub fn of(v: &[f64]) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
        Stat {
            count: s.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// One node's resource peaks.
#[derive(Clone, Serialize)]
pub struct Resources {
    pub peak_rss_mib: f64,
    pub max_threads: u64,
    pub max_fds: u64,
    /// CPU seconds over the run (summed over its restarts).
    pub cpu_seconds: f64,
}

/// Where and on what the run happened.
#[derive(Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

/// A run's report.
#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub kind: String,
    pub description: String,
    pub seed: u64,
    pub size: &'static str,
    pub node_binary: String,
    pub commit: String,
    pub machine: Machine,
    pub seconds: f64,
    pub operations: usize,
    pub invariants: Vec<Invariant>,
    pub figures: BTreeMap<String, f64>,
    pub latency_ms: BTreeMap<String, Stat>,
    pub probe_ms: Stat,
    pub errors: BTreeMap<String, u64>,
    /// How many of each operation or event completed.
    pub counts: BTreeMap<String, usize>,
    pub resources: BTreeMap<String, Resources>,
    /// Per-second series: answered requests by kind and in all, and each node's blocks/s and tx/s.
    pub throughput: BTreeMap<String, Vec<(f64, f64)>>,
    pub samples: Vec<Sample>,
    pub charts: Vec<String>,
}

impl Report {
    /// The report of a finished run.
    pub fn build(ctx: &Ctx, r: Recorded, invariants: Vec<Invariant>) -> Report {
        let latency_ms = r
            .latency
            .iter()
            .map(|(k, v)| (k.clone(), Stat::of(v)))
            .collect();
        let probes: Vec<f64> = r.samples.iter().filter_map(|s| s.probe_ms).collect();
        let mut resources: BTreeMap<String, Resources> = BTreeMap::new();
        let mut last_cpu: BTreeMap<String, f64> = BTreeMap::new();
        for s in &r.samples {
            let e = resources.entry(s.node.clone()).or_insert(Resources {
                peak_rss_mib: 0.0,
                max_threads: 0,
                max_fds: 0,
                cpu_seconds: 0.0,
            });
            e.peak_rss_mib = e.peak_rss_mib.max(s.rss_mib);
            e.max_threads = e.max_threads.max(s.threads);
            e.max_fds = e.max_fds.max(s.fds);
            // CPU counts from zero again after a restart.
            let prev = last_cpu.insert(s.node.clone(), s.cpu_s).unwrap_or(0.0);
            e.cpu_seconds += if s.cpu_s >= prev {
                s.cpu_s - prev
            } else {
                s.cpu_s
            };
        }
        let mut throughput = BTreeMap::new();
        let mut all = Vec::new();
        for (k, times) in &r.done {
            if k.starts_with("rpc:") || k.starts_with("rest:") {
                all.extend_from_slice(times);
            }
            throughput.insert(format!("{k} per s"), per_second(times, r.seconds));
        }
        if !all.is_empty() {
            throughput.insert(
                "requests answered per s".into(),
                per_second(&all, r.seconds),
            );
        }
        let txs = ctx.txs_upto.lock().clone();
        for (node, series) in by_node(&r.samples) {
            let mut blocks = Vec::new();
            let mut tx = Vec::new();
            for w in series.windows(2) {
                let (a, b) = (w[0], w[1]);
                let (Some(ha), Some(hb)) = (a.height, b.height) else {
                    continue;
                };
                let dt = (b.t - a.t).max(1e-3);
                blocks.push((b.t, hb.saturating_sub(ha) as f64 / dt));
                let at = |h: u64| txs.get(h as usize).copied();
                if let (Some(x), Some(y)) = (at(ha), at(hb)) {
                    tx.push((b.t, y.saturating_sub(x) as f64 / dt));
                }
            }
            throughput.insert(format!("{node} blocks per s"), blocks);
            if !tx.is_empty() {
                throughput.insert(format!("{node} tx per s"), tx);
            }
        }
        Report {
            scenario: ctx.scenario.name.clone(),
            kind: ctx.scenario.kind.clone(),
            description: ctx.scenario.description.trim().to_owned(),
            seed: ctx.seed,
            size: if ctx.smoke { "smoke" } else { "full" },
            node_binary: ctx.bin.display().to_string(),
            commit: commit(&ctx.bin),
            machine: machine(),
            seconds: r.seconds,
            operations: ctx.ops.len(),
            invariants,
            figures: r.figures,
            latency_ms,
            probe_ms: Stat::of(&probes),
            errors: r.errors,
            counts: r.done.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
            resources,
            throughput,
            samples: r.samples,
            charts: Vec::new(),
        }
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.ok)
    }

    /// One line for the terminal.
    pub fn summary_line(&self) -> String {
        let held = self.invariants.iter().filter(|i| i.ok).count();
        let failed: Vec<&str> = self
            .invariants
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.name.as_str())
            .collect();
        format!(
            "{} ({}, seed {}): {held}/{} invariants held in {:.1} s{}",
            self.scenario,
            self.size,
            self.seed,
            self.invariants.len(),
            self.seconds,
            if failed.is_empty() {
                String::new()
            } else {
                format!("; FAILED: {}", failed.join("; "))
            }
        )
    }

    /// Writes report.json, report.md and the charts into `dir`.
    pub fn write(mut self, dir: &Path) -> std::io::Result<Report> {
        self.charts = crate::charts::draw(&self, dir);
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&self).map_err(std::io::Error::other)?,
        )?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(self)
    }

    fn markdown(&self) -> String {
        let mut m = format!(
            "# Stress run: {}\n\n{}\n\n",
            self.scenario, self.description
        );
        m += &format!(
            "| | |\n|---|---|\n| seed | {} |\n| size | {} |\n| node | `{}` |\n| commit | {} |\n| machine | {} CPUs, {:.1} GiB, Linux {} |\n| duration | {:.1} s |\n| operations (ops.log) | {} |\n\n",
            self.seed, self.size, self.node_binary, self.commit, self.machine.cpus, self.machine.memory_gib, self.machine.kernel, self.seconds, self.operations
        );
        m += "## Invariants\n\n| | invariant | detail |\n|---|---|---|\n";
        for i in &self.invariants {
            m += &format!(
                "| {} | {} | {} |\n",
                if i.ok { "held" } else { "**FAILED**" },
                i.name,
                i.detail.replace('|', "/")
            );
        }
        if !self.figures.is_empty() {
            m += "\n## Figures\n\n| figure | value |\n|---|---|\n";
            for (k, v) in &self.figures {
                m += &format!("| {k} | {} |\n", fmt(*v));
            }
        }
        m += "\n## Latency (ms)\n\n| operation | count | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n";
        let probe = ("probe /health/live".to_owned(), self.probe_ms);
        for (k, s) in self
            .latency_ms
            .iter()
            .map(|(k, s)| (k.clone(), *s))
            .chain([probe])
        {
            m += &format!(
                "| {k} | {} | {} | {} | {} | {} |\n",
                s.count,
                fmt(s.p50),
                fmt(s.p90),
                fmt(s.p99),
                fmt(s.max)
            );
        }
        // Events counted without a latency of their own (peers dropped, blocks served).
        let counts: Vec<(&String, &usize)> = self
            .counts
            .iter()
            .filter(|(k, _)| !self.latency_ms.contains_key(*k))
            .collect();
        if !counts.is_empty() {
            m += "\n## Completed\n\n| what | count |\n|---|---|\n";
            for (k, n) in counts {
                m += &format!("| {k} | {n} |\n");
            }
        }
        m += "\n## Resources\n\n| node | peak RSS MiB | max threads | max fds | CPU s |\n|---|---|---|---|---|\n";
        for (k, r) in &self.resources {
            m += &format!(
                "| {k} | {:.1} | {} | {} | {:.1} |\n",
                r.peak_rss_mib, r.max_threads, r.max_fds, r.cpu_seconds
            );
        }
        m += "\n## Errors by kind\n\n";
        if self.errors.is_empty() {
            m += "None.\n";
        } else {
            m += "| kind | count |\n|---|---|\n";
            for (k, v) in &self.errors {
                m += &format!("| {k} | {v} |\n");
            }
        }
        if !self.charts.is_empty() {
            m += "\n## Charts\n\n";
            for c in &self.charts {
                m += &format!("![{c}]({c})\n\n");
            }
        }
        m
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Completions per whole second of the run.
fn per_second(times: &[f64], seconds: f64) -> Vec<(f64, f64)> {
    let mut buckets = vec![0u64; seconds.ceil().max(1.0) as usize + 1];
    for t in times {
        if let Some(b) = buckets.get_mut(*t as usize) {
            *b += 1;
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, n)| (i as f64, n as f64))
        .collect()
}

/// Samples grouped by node, in time order.
pub fn by_node(samples: &[Sample]) -> BTreeMap<String, Vec<&Sample>> {
    let mut m: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        m.entry(s.node.clone()).or_default().push(s);
    }
    m
}

fn machine() -> Machine {
    let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: mem_kib / 1048576.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The commit the node binary was built from, when it sits in a git checkout's target dir.
fn commit(bin: &Path) -> String {
    let dir: PathBuf = bin
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The comparison of runs on binaries A and B: medians and the ratio B/A.
pub fn compare(name: &str, seed: u64, bins: &[PathBuf; 2], a: &[Report], b: &[Report]) -> String {
    let median = |v: Vec<f64>| -> Option<f64> {
        let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let mut rows: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
    let mut add = |key: String, f: &dyn Fn(&Report) -> Option<f64>| {
        let va = median(a.iter().filter_map(f).collect());
        let vb = median(b.iter().filter_map(f).collect());
        rows.insert(key, (va, vb));
    };
    let keys: Vec<String> = a
        .iter()
        .chain(b)
        .flat_map(|r| r.figures.keys().cloned())
        .collect();
    for k in keys {
        add(k.clone(), &|r: &Report| r.figures.get(&k).copied());
    }
    let ops: Vec<String> = a
        .iter()
        .chain(b)
        .flat_map(|r| r.latency_ms.keys().cloned())
        .collect();
    for k in ops {
        add(format!("{k} p50 ms"), &|r: &Report| {
            r.latency_ms.get(&k).map(|s| s.p50)
        });
        add(format!("{k} p99 ms"), &|r: &Report| {
            r.latency_ms.get(&k).map(|s| s.p99)
        });
    }
    add("probe p99 ms".into(), &|r: &Report| Some(r.probe_ms.p99));
    add("peak RSS MiB (all nodes)".into(), &|r: &Report| {
        r.resources
            .values()
            .map(|x| x.peak_rss_mib)
            .reduce(f64::max)
    });
    add("CPU s (all nodes)".into(), &|r: &Report| {
        Some(r.resources.values().map(|x| x.cpu_seconds).sum())
    });
    add("run seconds".into(), &|r: &Report| Some(r.seconds));
    let mut m = format!(
        "# Compare: {name}, seed {seed}\n\nA = `{}` ({} runs)\nB = `{}` ({} runs)\nMedians; ratio = B / A.\n\n| measure | A | B | B/A |\n|---|---|---|---|\n",
        bins[0].display(),
        a.len(),
        bins[1].display(),
        b.len()
    );
    for (k, (va, vb)) in rows {
        let show = |v: Option<f64>| v.map_or("—".to_owned(), fmt);
        let ratio = match (va, vb) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.2}", y / x),
            _ => "—".into(),
        };
        m += &format!("| {k} | {} | {} | {ratio} |\n", show(va), show(vb));
    }
    let held = |rs: &[Report]| rs.iter().all(Report::passed);
    m += &format!(
        "\nInvariants: A {}, B {}.\n",
        if held(a) { "all held" } else { "FAILED" },
        if held(b) { "all held" } else { "FAILED" }
    );
    m
}
