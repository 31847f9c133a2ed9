//! Rebuilding the chain state from the block files (a reindex). Asked for by `--reindex`, by the
//! marker a running node leaves when a repair is beyond its reach, or by a store whose chain
//! state cannot be loaded (a damaged index entry). The store is backed up first when the disk
//! allows, then cleared; `ChainDb::open_until` then finds an empty store beside block files and
//! reindexes them, resuming after an interruption.

use crate::storage::backup;
use crate::storage::writer::BackupSettings;
use crate::storage::{StorageError, Store};
use std::path::{Path, PathBuf};

/// Left in the network directory by a running node whose damage needs a reindex; the next start
/// (the node restarts itself for it) rebuilds. It holds the reason.
pub const MARKER: &str = "reindex.pending";

/// The suffix of the backup taken before a rebuild.
pub const BACKUP_LABEL: &str = "-before-reindex";

/// Why a rebuild is wanted at this start, if it is: `--reindex`, or the marker.
pub fn requested(net_dir: &Path, flag: bool) -> Option<String> {
    if flag {
        return Some("--reindex was given".into());
    }
    std::fs::read_to_string(net_dir.join(MARKER))
        .ok()
        .map(|why| format!("asked for by the node before it restarted: {}", why.trim()))
}

/// Leaves the marker for the next start, durably (the restart may be a crash).
pub fn request(net_dir: &Path, why: &str) -> std::io::Result<()> {
    let path = net_dir.join(MARKER);
    std::fs::write(&path, why)?;
    std::fs::File::open(&path)?.sync_all()
}

/// Backs the store up (when it holds a chain and the disk allows), clears its chain state and
/// removes the marker. Returns the backup, if one was written. A failed backup does not stop
/// the rebuild: everything cleared is rebuilt from the block files (the peers table is kept).
pub fn prepare(
    store: &dyn Store,
    net_dir: &Path,
    backups: &BackupSettings,
    why: &str,
    now_unix: u64,
) -> Result<Option<PathBuf>, StorageError> {
    log::warn!("rebuilding the chain state from the block files ({why})");
    let has_chain = store.get_meta("tip_hash")?.is_some();
    if has_chain {
        // Created first: the space check measures the filesystem it will be on.
        std::fs::create_dir_all(&backups.root)
            .map_err(|e| StorageError::io("create backup dir", e))?;
    }
    let kept = if !has_chain {
        None
    } else if let Some(refused) =
        backup::refuse_for_space(&backups.root, store.size_bytes(), backups.disk_warn_share)
    {
        log::warn!("no backup before the rebuild: {refused}");
        None
    } else {
        match backup::write(
            store,
            &backups.root,
            &backups.network,
            now_unix,
            BACKUP_LABEL,
            &|| {},
        ) {
            Ok((dir, _)) => {
                log::info!(
                    "the chain state before the rebuild is kept in {} (bllvm-node restore puts it back)",
                    dir.display()
                );
                Some(dir)
            }
            Err(e) => {
                log::warn!("no backup before the rebuild: {e}");
                None
            }
        }
    };
    store.clear_chain()?;
    match std::fs::remove_file(net_dir.join(MARKER)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("remove reindex marker", e)),
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::redb_store::RedbStore;
    use crate::storage::{Table, WriteBatch};

    fn settings(root: &Path) -> BackupSettings {
        BackupSettings {
            root: root.to_owned(),
            every: None,
            keep_daily: 7,
            keep_weekly: 4,
            network: "regtest".into(),
            disk_warn_share: 1.0,
        }
    }

    /// The marker asks once: preparing backs the store up, clears it and removes the marker.
    #[test]
    fn a_marked_store_is_backed_up_and_cleared_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let store = RedbStore::open(dir).unwrap();
        let mut b = WriteBatch::default();
        b.put_meta("tip_hash", vec![7; 32]);
        b.put(Table::Coins, vec![1], vec![2]);
        store.apply(&b).unwrap();
        assert_eq!(requested(dir, false), None);
        request(dir, "undo data too old to rebuild").unwrap();
        let why = requested(dir, false).unwrap();
        assert!(why.contains("undo data too old"), "{why}");

        let kept = prepare(&store, dir, &settings(&dir.join("backups")), &why, 86_400)
            .unwrap()
            .expect("a backup");
        assert!(kept.to_string_lossy().ends_with(BACKUP_LABEL));
        assert_eq!(backup::verify(&kept).unwrap().tables["coins"], 1);
        assert_eq!(store.get_meta("tip_hash").unwrap(), None);
        assert_eq!(store.get(Table::Coins, &[1]).unwrap(), None);
        assert_eq!(requested(dir, false), None);
        assert!(requested(dir, true).is_some());
        // An empty store has nothing to keep.
        assert_eq!(
            prepare(&store, dir, &settings(&dir.join("backups")), "again", 1).unwrap(),
            None
        );
    }

    /// A backup that would cross the warning mark is skipped; the rebuild goes on.
    #[test]
    fn no_room_for_a_backup_still_rebuilds() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let store = RedbStore::open(dir).unwrap();
        let mut b = WriteBatch::default();
        b.put_meta("tip_hash", vec![7; 32]);
        store.apply(&b).unwrap();
        let mut s = settings(&dir.join("backups"));
        s.disk_warn_share = 0.0;
        assert_eq!(prepare(&store, dir, &s, "test", 1).unwrap(), None);
        assert_eq!(store.get_meta("tip_hash").unwrap(), None);
    }
}
