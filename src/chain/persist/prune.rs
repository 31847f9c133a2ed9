//! Deleting block files: the index forgets their data in one commit, then the files go. A crash
//! between the two leaves files nobody names; they count as holding no blocks (height 0), so
//! the next prune deletes them first.

use super::{ChainDb, IndexRecord, PersistError};
use crate::pruning::policy::{self, FileStat, PruneSettings};
use crate::storage::{PruneReport, PruneTrigger, Table, WriteBatch};
use bitcoin::hashes::Hash;
use std::collections::HashSet;

impl ChainDb {
    /// Sets how block files are pruned (`[storage]`).
    pub fn set_pruning(&mut self, settings: PruneSettings) {
        self.pruning = settings;
    }

    /// Bytes of every block and undo file.
    pub fn block_files_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|s| s.values())
            .map(|f| f.bytes)
            .sum()
    }

    /// Highest block height pruned so far.
    pub fn prune_height(&self) -> Option<u32> {
        self.prune_height
    }

    /// Deletes what `trigger` allows under the settings, oldest files first; `None` when
    /// nothing was deleted.
    pub fn prune(&mut self, trigger: PruneTrigger) -> Result<Option<PruneReport>, PersistError> {
        let usage = self.block_files_bytes();
        let Some(plan) = policy::plan(&self.pruning, trigger, self.tip_height, usage) else {
            return Ok(None);
        };
        let stats: Vec<FileStat> = self
            .files
            .iter()
            .enumerate()
            .flat_map(|(series, files)| {
                files.iter().map(move |(&file, info)| FileStat {
                    series,
                    file,
                    max_height: info.max_height,
                    bytes: info.bytes,
                })
            })
            .collect();
        let current = [self.blk.position().0, self.rev.position().0];
        let chosen = policy::select(&stats, current, plan, usage);
        if chosen.is_empty() {
            return Ok(None);
        }
        let gone: HashSet<(usize, u32)> = chosen.iter().map(|f| (f.series, f.file)).collect();
        let in_gone = |series, pos: Option<crate::storage::block_files::FilePos>| {
            pos.is_some_and(|p| gone.contains(&(series, p.file)))
        };
        let touched: Vec<_> = self
            .positions
            .iter()
            .filter_map(|(h, (bp, up))| {
                let (b, u) = (in_gone(0, *bp), in_gone(1, *up));
                (b || u).then_some((*h, b, u))
            })
            .collect();
        let mut batch = WriteBatch::default();
        for (h, drop_block, drop_undo) in &touched {
            let key = h.to_byte_array();
            let Some(raw) = self.store.get(Table::BlockIndex, &key)? else {
                continue;
            };
            let mut rec = IndexRecord::decode(&raw)?;
            if *drop_block {
                rec.block_pos = None;
            }
            if *drop_undo {
                rec.undo_pos = None;
            }
            batch.put(Table::BlockIndex, key.to_vec(), rec.encode());
        }
        let highest = chosen.iter().map(|f| f.max_height).max().unwrap_or(0);
        let prune_height = self.prune_height.max(Some(highest));
        if let Some(h) = prune_height {
            batch.put_meta("prune_height", h.to_le_bytes().to_vec());
        }
        self.store.apply(&batch)?;
        for (h, drop_block, drop_undo) in touched {
            if let Some(entry) = self.positions.get_mut(&h) {
                if drop_block {
                    entry.0 = None;
                }
                if drop_undo {
                    entry.1 = None;
                }
                if entry.0.is_none() && entry.1.is_none() {
                    self.positions.remove(&h);
                }
            }
        }
        let mut report = PruneReport {
            heights: (self.prune_height.map_or(0, |h| h + 1), highest),
            prune_height,
            ..PruneReport::default()
        };
        for f in &chosen {
            let files = if f.series == 0 {
                &mut self.blk
            } else {
                &mut self.rev
            };
            report.bytes += files.remove(f.file)?;
            report.files.push(
                files
                    .path(f.file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            self.files[f.series].remove(&f.file);
        }
        self.prune_height = prune_height;
        Ok(Some(report))
    }
}
