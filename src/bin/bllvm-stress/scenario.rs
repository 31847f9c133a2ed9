//! Scenario files: `benches/scenarios/<name>.toml`, a full size and a smoke size.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: unknown kind {kind:?} (one of {known})")]
    Kind {
        path: String,
        kind: String,
        known: String,
    },
}

/// The scenario runners there are.
pub const KINDS: &[&str] = &[
    "ibd",
    "rpc-flood",
    "hostile-peers",
    "crash-loop",
    "disk-full",
    "partition",
    "soak",
];

/// Sizes and knobs; a scenario sets what it uses, `[smoke]` overrides them for `--smoke`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Generated chain: blocks after the 101 funding blocks.
    pub blocks: u32,
    /// Generated chain: transactions per block.
    pub txs_per_block: usize,
    /// `ibd`: how many serving nodes, one sync per entry.
    pub sources: Vec<usize>,
    /// `hostile-peers`: hostile and honest synthetic peers.
    pub hostile: usize,
    pub honest: usize,
    /// `crash-loop`: `kill -9` rounds.
    pub rounds: usize,
    /// `crash-loop`: longest wait before a kill, ms.
    pub max_kill_delay_ms: u64,
    /// RPC load: the node's per-address rate limit is multiplied by this.
    pub rate_multiple: f64,
    /// RPC load: client connections.
    pub rpc_workers: usize,
    /// `rpc-flood`: when set, each connection sends this many calls back to back (fixed
    /// concurrency) instead of a target rate.
    pub calls_per_worker: usize,
    /// `crash-loop`: every this many rounds the victim starts again from an empty datadir, so
    /// the kills keep landing during a sync (0: never).
    pub wipe_every: usize,
    /// Long-running scenarios: seconds.
    pub duration_secs: f64,
    /// Slowloris and idle HTTP connections held during load.
    pub slow_connections: usize,
    /// `disk-full`: tmpfs size, MiB.
    pub disk_mb: u64,
    /// `partition`: nodes, split in two halves.
    pub nodes: usize,
    /// `partition`: blocks each side mines while apart.
    pub fork_blocks: u32,
    /// `soak`: SIGSTOP/SIGCONT pauses, ms each.
    pub pause_ms: u64,
    /// Invariant: the node's RSS stays under this, MiB.
    pub max_rss_mib: f64,
    /// Extra node configuration (TOML).
    pub node_config: String,
    /// Sampling period, ms.
    pub sample_ms: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            blocks: 200,
            txs_per_block: 50,
            sources: vec![1, 3],
            hostile: 100,
            honest: 8,
            rounds: 200,
            max_kill_delay_ms: 1500,
            rate_multiple: 10.0,
            rpc_workers: 16,
            calls_per_worker: 0,
            wipe_every: 0,
            duration_secs: 60.0,
            slow_connections: 50,
            disk_mb: 64,
            nodes: 4,
            fork_blocks: 6,
            pause_ms: 3000,
            max_rss_mib: 1024.0,
            node_config: String::new(),
            sample_ms: 500,
        }
    }
}

/// A scenario file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (the report's title).
    pub name: String,
    /// Which runner.
    pub kind: String,
    /// What it shows, for the report.
    #[serde(default)]
    pub description: String,
    /// Full-size parameters.
    #[serde(default)]
    pub params: toml::Table,
    /// Overrides for `--smoke`.
    #[serde(default)]
    pub smoke: toml::Table,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: p.clone(),
            source,
        })?;
        let s: Scenario = toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: p.clone(),
            source,
        })?;
        if !KINDS.contains(&s.kind.as_str()) {
            return Err(ScenarioError::Kind {
                path: p,
                kind: s.kind,
                known: KINDS.join(", "),
            });
        }
        // Both sizes must parse now, not halfway through a run.
        s.params(false)
            .and(s.params(true))
            .map_err(|source| ScenarioError::Parse { path: p, source })?;
        Ok(s)
    }

    /// The parameters for a full or a smoke run.
    pub fn params(&self, smoke: bool) -> Result<Params, toml::de::Error> {
        let mut t = self.params.clone();
        if smoke {
            t.extend(self.smoke.clone());
        }
        toml::Value::Table(t).try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_overrides_the_full_size_and_unknown_keys_are_refused() {
        let s: Scenario = toml::from_str(
            "name = \"x\"\nkind = \"ibd\"\n[params]\nblocks = 500\nrounds = 9\n[smoke]\nblocks = 5\n",
        )
        .unwrap();
        assert_eq!(s.params(false).unwrap().blocks, 500);
        let smoke = s.params(true).unwrap();
        assert_eq!((smoke.blocks, smoke.rounds), (5, 9));
        let bad: Scenario =
            toml::from_str("name = \"x\"\nkind = \"ibd\"\n[params]\nblokcs = 5\n").unwrap();
        assert!(bad.params(false).is_err());
    }
}
