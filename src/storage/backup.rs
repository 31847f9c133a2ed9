//! Backups of the chain-state store. A backup is a directory `<UTC time>-<height>/` holding a
//! fresh redb copy of every table (whatever the live backend) and `manifest.json` (network, tip,
//! entries per table, size and SHA-256 of each file). It is written by the storage writer
//! between commits, so the copy is consistent while the chain goes on in memory, then verified
//! (files hashed, store reopened and walked, counts and tip compared). Retention and directory
//! names are pure functions of time, so the schedule is tested without waiting.

use super::redb_store::{self, RedbStore};
use super::{Flow, StorageError, Store, Table, WriteBatch};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Left in the network directory by a restore: the next start reconnects the blocks the block
/// files hold past the restored tip instead of cutting them off.
pub const RESTORE_MARKER: &str = "restore.pending";
/// Entries copied per transaction (bounds the writer's memory while copying).
const BATCH: usize = 20_000;

/// What a backup holds, as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format.
    pub format: u32,
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// When it was taken, unix seconds.
    pub created_unix: u64,
    /// The tip the store had (hex, as Core prints it).
    pub tip_hash: String,
    /// Its height.
    pub tip_height: u64,
    /// The live store's backend (the copy is always redb).
    pub source_backend: String,
    /// Entries per table.
    pub tables: BTreeMap<String, u64>,
    /// Every file of the backup but the manifest.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name within the backup directory.
    pub name: String,
    /// Size.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Why a backup could not be written, verified or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is missing or unreadable.
    #[error("{path}: not a backup manifest: {detail}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The backup does not match its manifest.
    #[error("backup {dir} does not match its manifest: {detail}")]
    Mismatch {
        /// The backup.
        dir: PathBuf,
        /// What differs.
        detail: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `YYYYMMDDTHHMMSSZ` of a unix time (UTC), for directory names.
pub fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn sha256_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut engine = sha256::Hash::engine();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        engine.input(&buf[..n]);
        total += n as u64;
    }
    Ok((total, sha256::Hash::from_engine(engine).to_string()))
}

/// Entries per table and the tip of `store`.
fn census(store: &dyn Store) -> Result<(BTreeMap<String, u64>, String, u64), StorageError> {
    let mut tables = BTreeMap::new();
    for t in Table::ALL {
        let mut n = 0u64;
        store.scan(t, &mut |_, _| {
            n += 1;
            Flow::Continue(())
        })?;
        tables.insert(t.name().to_owned(), n);
    }
    let tip = store
        .get_meta("tip_hash")?
        .map(|h| {
            let mut h = h;
            h.reverse();
            bitcoin::hex::DisplayHex::to_lower_hex_string(&h[..])
        })
        .unwrap_or_default();
    let height = store
        .get_meta("tip_height")?
        .and_then(|h| String::from_utf8(h).ok()?.parse().ok())
        .unwrap_or(0);
    Ok((tables, tip, height))
}

/// Why a backup of `need` bytes may not be written under `root`: it would take the disk past
/// `warn_share` used (a backup never fills the disk).
pub fn refuse_for_space(root: &Path, need: u64, warn_share: f64) -> Option<String> {
    let (Ok(avail), Ok(total)) = (fs2::available_space(root), fs2::total_space(root)) else {
        return None;
    };
    let after = crate::pruning::disk::used_share(total, avail.saturating_sub(need));
    (after >= warn_share).then(|| {
        format!(
            "skipped: {need} bytes more would take {} to {:.1}% used, past the warning mark ({:.0}%)",
            root.display(),
            after * 100.0,
            warn_share * 100.0
        )
    })
}

/// Copies `store` into a new backup under `root`, writes its manifest, verifies it, and returns
/// its directory and manifest. `label` ends the directory's name (`-before-reindex`; empty for
/// scheduled ones). `beat` is called between batches (the writer stays live).
pub fn write(
    store: &dyn Store,
    root: &Path,
    network: &str,
    now_unix: u64,
    label: &str,
    beat: &dyn Fn(),
) -> Result<(PathBuf, Manifest), BackupError> {
    let (tables, tip_hash, tip_height) = census(store)?;
    let name = format!("{}-{tip_height:07}{label}", utc_stamp(now_unix));
    let dir = root.join(&name);
    let partial = root.join(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    {
        let copy = RedbStore::open(&partial)?;
        for t in Table::ALL {
            let mut batch = WriteBatch::default();
            let mut failed = None;
            store.scan(t, &mut |k, v| {
                batch.put(t, k.to_vec(), v.to_vec());
                if batch.ops.len() >= BATCH {
                    if let Err(e) = copy.apply(&batch) {
                        failed = Some(e);
                        return Flow::Break(());
                    }
                    batch.ops.clear();
                    beat();
                }
                Flow::Continue(())
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            copy.apply(&batch)?;
        }
    }
    let file = partial.join(redb_store::FILE);
    let (bytes, sha) = sha256_file(&file)?;
    let manifest = Manifest {
        format: 1,
        network: network.to_owned(),
        created_unix: now_unix,
        tip_hash,
        tip_height,
        source_backend: store.backend().to_owned(),
        tables,
        files: vec![FileEntry {
            name: redb_store::FILE.to_owned(),
            bytes,
            sha256: sha,
        }],
    };
    let manifest_path = partial.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&manifest_path, text).map_err(io(&manifest_path))?;
    std::fs::File::open(&manifest_path)
        .and_then(|f| f.sync_all())
        .map_err(io(&manifest_path))?;
    std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    verify(&dir)?;
    Ok((dir, manifest))
}

/// Reads a backup's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| BackupError::Manifest {
        path,
        detail: e.to_string(),
    })
}

/// Checks a backup against its manifest: every file's size and SHA-256, then the store opened
/// and walked (entries per table and the tip). Opening and reading leave the file unchanged.
pub fn verify(dir: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    let mismatch = |detail: String| BackupError::Mismatch {
        dir: dir.to_owned(),
        detail,
    };
    for f in &manifest.files {
        let (bytes, sha) = sha256_file(&dir.join(&f.name))?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(mismatch(format!(
                "{} is {bytes} bytes with SHA-256 {sha}; the manifest says {} bytes, {}",
                f.name, f.bytes, f.sha256
            )));
        }
    }
    let store = RedbStore::open(dir)?;
    let (tables, tip, height) = census(&store)?;
    if tables != manifest.tables || tip != manifest.tip_hash || height != manifest.tip_height {
        return Err(mismatch(format!(
            "the store holds {tables:?} at {tip} ({height}); the manifest says {:?} at {} ({})",
            manifest.tables, manifest.tip_hash, manifest.tip_height
        )));
    }
    Ok(manifest)
}

/// The backups under `root` (directories with a manifest), oldest first, with their times.
pub fn list(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| read_manifest(&p).ok().map(|m| (p, m.created_unix)))
        .collect();
    out.sort_by_key(|(p, t)| (*t, p.clone()));
    out
}

/// Which of `backups` (their times) to delete at `now`: everything from the last 24 hours is
/// kept, then the newest of each of the last `daily` days and of each of the last `weekly`
/// weeks; the newest backup is always kept. Returns indices into `backups`.
pub fn expired(backups: &[u64], now: u64, daily: u32, weekly: u32) -> Vec<usize> {
    const DAY: u64 = 86_400;
    let mut keep = vec![false; backups.len()];
    let newest_in = |pred: &dyn Fn(u64) -> Option<u64>| {
        let mut best: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, &t) in backups.iter().enumerate() {
            if let Some(bucket) = pred(t) {
                let e = best.entry(bucket).or_insert(i);
                if backups[*e] < t {
                    *e = i;
                }
            }
        }
        best.into_values().collect::<Vec<_>>()
    };
    let age = |t: u64| now.saturating_sub(t);
    for (i, &t) in backups.iter().enumerate() {
        if age(t) < DAY {
            keep[i] = true;
        }
    }
    for i in newest_in(&|t| (age(t) < u64::from(daily) * DAY).then_some(t / DAY)) {
        keep[i] = true;
    }
    for i in newest_in(&|t| (age(t) < u64::from(weekly) * 7 * DAY).then_some(t / (7 * DAY))) {
        keep[i] = true;
    }
    if let Some(i) = (0..backups.len()).max_by_key(|&i| backups[i]) {
        keep[i] = true;
    }
    (0..backups.len()).filter(|&i| !keep[i]).collect()
}

/// Puts the backup in `backup_dir` back as the store of `net_dir` (the node must not run: the
/// caller holds the datadir lock). The current store is moved aside, not deleted; the copy is
/// written beside it and renamed into place, so a crash leaves one or the other; the marker
/// makes the next start reconnect the blocks written after the backup.
pub fn restore(backup_dir: &Path, net_dir: &Path, network: &str) -> Result<Manifest, BackupError> {
    let manifest = verify(backup_dir)?;
    if manifest.network != network {
        return Err(BackupError::Mismatch {
            dir: backup_dir.to_owned(),
            detail: format!(
                "it is a {} backup, this datadir is {network}",
                manifest.network
            ),
        });
    }
    let stamp = crate::clock::unix_now();
    for name in [redb_store::FILE, super::sled_store::DIR] {
        let current = net_dir.join(name);
        if current.exists() {
            let aside = net_dir.join(format!("{name}.replaced-{stamp}"));
            std::fs::rename(&current, &aside).map_err(io(&current))?;
            log::info!("{} moved aside to {}", current.display(), aside.display());
        }
    }
    let tmp = net_dir.join(format!("{}.restoring", redb_store::FILE));
    std::fs::copy(backup_dir.join(redb_store::FILE), &tmp).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    let marker = net_dir.join(RESTORE_MARKER);
    std::fs::write(&marker, manifest.tip_hash.as_bytes()).map_err(io(&marker))?;
    let target = net_dir.join(redb_store::FILE);
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_796_007_150), "20261130T025230Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }

    /// Hourly backups for a simulated month: the last day's are all kept, then one a day for a
    /// week and one a week for four weeks.
    #[test]
    fn retention_over_a_month_of_hourly_backups() {
        let start = 1_700_000_000 / 86_400 * 86_400;
        let mut kept: Vec<u64> = Vec::new();
        for hour in 0..31 * 24 {
            let now = start + hour * 3600;
            kept.push(now);
            let gone = expired(&kept, now, 7, 4);
            kept = kept
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, t)| *t)
                .collect();
        }
        let now = *kept.last().unwrap();
        let day = |t: u64| (now - t) / 86_400;
        let recent = kept.iter().filter(|t| now - **t < 86_400).count();
        assert_eq!(recent, 24, "every backup of the last day: {kept:?}");
        let older: Vec<u64> = kept
            .iter()
            .filter(|t| now - **t >= 86_400)
            .map(|t| day(*t))
            .collect();
        // One a day for the rest of the week, then about one a week to four weeks.
        assert!(older.iter().all(|d| *d < 28), "{older:?}");
        assert!(older.len() <= 6 + 4, "{older:?}");
        assert!(older.contains(&6) || older.contains(&5), "{older:?}");
        assert!(
            older.iter().any(|d| *d >= 21),
            "a backup three weeks old: {older:?}"
        );
    }
}
