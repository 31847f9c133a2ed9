//! Which block files to delete: pure functions of the settings, the tip and the files' heights
//! and sizes, so every rule is tested without a disk.

use crate::config::{PruningMode, StorageConfig};
use crate::storage::PruneTrigger as Trigger;

/// Blocks below the tip whose data is never pruned (Bitcoin Core's MIN_BLOCKS_TO_KEEP): a reorg
/// deeper than this is not expected, and peers may ask a limited node for this many.
pub const MIN_BLOCKS_TO_KEEP: u32 = 288;

/// The pruning settings the writer applies, from `[storage]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneSettings {
    /// The configured mode.
    pub mode: PruningMode,
    /// `normal`/`aggressive` start past this many bytes of block files.
    pub threshold_bytes: u64,
    /// `normal` prunes down to this many bytes.
    pub target_bytes: u64,
    /// `custom` keeps this many blocks below the tip.
    pub keep_recent_blocks: u32,
}

impl PruneSettings {
    /// No pruning at all.
    pub const DISABLED: PruneSettings = PruneSettings {
        mode: PruningMode::Disabled,
        threshold_bytes: u64::MAX,
        target_bytes: u64::MAX,
        keep_recent_blocks: MIN_BLOCKS_TO_KEEP,
    };

    /// From `[storage]` (sizes in GB, 10^9 bytes).
    pub fn from_config(c: &StorageConfig) -> PruneSettings {
        PruneSettings {
            mode: c.pruning_mode,
            threshold_bytes: (c.pruning_threshold_gb * 1e9) as u64,
            target_bytes: (c.pruning_target_gb * 1e9) as u64,
            keep_recent_blocks: c.keep_recent_blocks.max(MIN_BLOCKS_TO_KEEP),
        }
    }
}

/// How far a prune may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Files whose every block is at or below this height may be deleted.
    pub last_prunable: u32,
    /// Stop once block files use at most this many bytes.
    pub target_bytes: u64,
}

/// Whether `trigger` prunes anything under `s`, with the tip at `tip` and block files using
/// `usage` bytes; `None` when the mode does not allow it or there is nothing to gain.
pub fn plan(s: &PruneSettings, trigger: Trigger, tip: u32, usage: u64) -> Option<Plan> {
    let keep_floor = tip.checked_sub(MIN_BLOCKS_TO_KEEP)?;
    let all = |last_prunable| {
        Some(Plan {
            last_prunable,
            target_bytes: 0,
        })
    };
    match (s.mode, trigger) {
        (PruningMode::Disabled, _) => None,
        (_, Trigger::Manual(height)) => all(height.min(keep_floor)),
        (PruningMode::Manual, _) => None,
        (PruningMode::Custom, _) => all(tip.checked_sub(s.keep_recent_blocks)?),
        (PruningMode::Normal, Trigger::Auto) if usage <= s.threshold_bytes => None,
        (PruningMode::Normal, _) => Some(Plan {
            last_prunable: keep_floor,
            target_bytes: s.target_bytes,
        }),
        (PruningMode::Aggressive, Trigger::Auto) if usage <= s.threshold_bytes => None,
        (PruningMode::Aggressive, _) => all(keep_floor),
    }
}

/// One block file as the pruner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// 0 for `blk`, 1 for `rev`.
    pub series: usize,
    /// File number.
    pub file: u32,
    /// Highest block height with data in it (0 when it holds none the index knows).
    pub max_height: u32,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The files to delete for `plan`, oldest first: never the file each series is appending to
/// (`current`), never one holding a block above `last_prunable`, and no more once usage is at
/// the target.
pub fn select(files: &[FileStat], current: [u32; 2], plan: Plan, usage: u64) -> Vec<FileStat> {
    let mut sorted: Vec<&FileStat> = files.iter().collect();
    sorted.sort_by_key(|f| (f.file, f.series));
    let mut usage = usage;
    let mut out = Vec::new();
    for f in sorted {
        if usage <= plan.target_bytes {
            break;
        }
        if f.file >= current[f.series] || f.max_height > plan.last_prunable {
            continue;
        }
        usage = usage.saturating_sub(f.bytes);
        out.push(*f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: PruningMode) -> PruneSettings {
        PruneSettings {
            mode,
            threshold_bytes: 1_000,
            target_bytes: 600,
            keep_recent_blocks: 500,
        }
    }

    #[test]
    fn each_mode_prunes_only_what_it_allows() {
        let tip = 1_000;
        let p = |mode, trigger, usage| plan(&settings(mode), trigger, tip, usage);
        let to_target = Some(Plan {
            last_prunable: 712,
            target_bytes: 600,
        });
        let to_minimum = Some(Plan {
            last_prunable: 712,
            target_bytes: 0,
        });
        // Disabled never; manual only on request.
        for t in [Trigger::Auto, Trigger::DiskCritical, Trigger::Manual(900)] {
            assert_eq!(p(PruningMode::Disabled, t, 5_000), None);
        }
        assert_eq!(p(PruningMode::Manual, Trigger::Auto, 5_000), None);
        assert_eq!(p(PruningMode::Manual, Trigger::DiskCritical, 5_000), None);
        // A manual height above tip - 288 keeps the last 288 blocks anyway.
        assert_eq!(p(PruningMode::Manual, Trigger::Manual(900), 5), to_minimum);
        assert_eq!(
            p(PruningMode::Normal, Trigger::Manual(100), 5),
            Some(Plan {
                last_prunable: 100,
                target_bytes: 0
            })
        );
        // Normal: past the threshold, down to the target; at critical disk, to the target now.
        assert_eq!(p(PruningMode::Normal, Trigger::Auto, 1_000), None);
        assert_eq!(p(PruningMode::Normal, Trigger::Auto, 1_001), to_target);
        assert_eq!(
            p(PruningMode::Normal, Trigger::DiskCritical, 700),
            to_target
        );
        // Aggressive: past the threshold, everything prunable.
        assert_eq!(p(PruningMode::Aggressive, Trigger::Auto, 1_000), None);
        assert_eq!(p(PruningMode::Aggressive, Trigger::Auto, 1_001), to_minimum);
        assert_eq!(
            p(PruningMode::Aggressive, Trigger::DiskCritical, 1),
            to_minimum
        );
        // Custom: always keeps keep_recent_blocks, nothing else.
        assert_eq!(
            p(PruningMode::Custom, Trigger::Auto, 1),
            Some(Plan {
                last_prunable: 500,
                target_bytes: 0
            })
        );
        // A chain shorter than the blocks to keep prunes nothing.
        assert_eq!(
            plan(
                &settings(PruningMode::Aggressive),
                Trigger::Manual(10),
                287,
                5_000
            ),
            None
        );
    }

    fn stat(series: usize, file: u32, max_height: u32) -> FileStat {
        FileStat {
            series,
            file,
            max_height,
            bytes: 100,
        }
    }

    #[test]
    fn selection_is_oldest_first_and_spares_recent_and_current_files() {
        let files = [
            stat(1, 1, 20),
            stat(0, 0, 10),
            stat(0, 1, 20),
            stat(1, 0, 10),
            stat(0, 2, 30),
            stat(0, 3, 40),
            stat(1, 2, 40),
        ];
        let current = [3, 2];
        let pick = |last_prunable, target_bytes, usage| {
            select(
                &files,
                current,
                Plan {
                    last_prunable,
                    target_bytes,
                },
                usage,
            )
            .iter()
            .map(|f| (f.series, f.file))
            .collect::<Vec<_>>()
        };
        // Everything allowed: all but the current files, oldest first, blk before rev.
        assert_eq!(
            pick(1_000, 0, 700),
            vec![(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
        );
        // Stops at the target: 700 - 3 * 100 <= 400.
        assert_eq!(pick(1_000, 400, 700), vec![(0, 0), (1, 0), (0, 1)]);
        // A file holding a block above the limit stays, later ones are still considered.
        assert_eq!(pick(15, 0, 700), vec![(0, 0), (1, 0)]);
        // Already at the target: nothing.
        assert!(pick(1_000, 700, 700).is_empty());
    }
}
