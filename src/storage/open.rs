//! Choosing and opening the backend, with redb -> sled fallback for `backend = "auto"`.

use super::redb_store::{self, RedbStore};
use super::sled_store::SledStore;
use super::{StorageError, Store};
use crate::config::Backend;
use std::path::Path;
use std::sync::Arc;

/// The open store and, when `auto` fell back to sled, why.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Set when redb could not be opened and sled is used instead.
    pub fallback_reason: Option<String>,
}

/// Opens the configured backend in `dir`. `auto`: an existing sled store is used as is (a
/// previous fallback); otherwise redb, and if redb cannot be opened its file is moved aside to
/// `chainstate.redb.broken-<unix time>` and a sled store is used.
pub fn open(dir: &Path, backend: Backend, now_unix: u64) -> Result<Opened, StorageError> {
    match open_current(dir, backend, now_unix) {
        // An older format: moved aside, and a fresh store of the same backend is rebuilt from
        // the block files (the chain state notices the empty store and reindexes).
        Err(StorageError::OldSchema { path, version }) => {
            let aside = path.with_file_name(format!(
                "{}.format{version}-{now_unix}",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            log::warn!(
                "store {} has format {version}, older than this version's: moved to {} and rebuilt from the block files",
                path.display(),
                aside.display()
            );
            std::fs::rename(&path, &aside).map_err(|e| StorageError::io("rename", e))?;
            open_current(dir, backend, now_unix)
        }
        other => other,
    }
}

fn open_current(dir: &Path, backend: Backend, now_unix: u64) -> Result<Opened, StorageError> {
    let sled = |reason| -> Result<Opened, StorageError> {
        Ok(Opened {
            store: Arc::new(SledStore::open(dir)?),
            fallback_reason: reason,
        })
    };
    match backend {
        Backend::Redb => Ok(Opened {
            store: Arc::new(RedbStore::open(dir)?),
            fallback_reason: None,
        }),
        Backend::Sled => sled(None),
        Backend::Auto if dir.join(super::sled_store::DIR).exists() => sled(Some(
            "a sled store from an earlier fallback is in use".into(),
        )),
        Backend::Auto => match RedbStore::open(dir) {
            Ok(s) => Ok(Opened {
                store: Arc::new(s),
                fallback_reason: None,
            }),
            Err(e @ StorageError::OldSchema { .. }) => Err(e),
            Err(e) => {
                let file = dir.join(redb_store::FILE);
                let aside = dir.join(format!("{}.broken-{now_unix}", redb_store::FILE));
                log::error!(
                    "cannot open redb store ({e}); moving it to {} and continuing on sled",
                    aside.display()
                );
                if file.exists() {
                    std::fs::rename(&file, &aside).map_err(|e| StorageError::io("rename", e))?;
                }
                sled(Some(format!("redb could not be opened: {e}")))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of an older format (format 1 had no coin checksums) is moved aside and a fresh
    /// one of the same backend is used, for the chain state to rebuild from the block files.
    #[test]
    fn an_older_format_is_moved_aside_and_replaced() {
        let dir = tempfile_dir("old");
        {
            let s = RedbStore::open(&dir).unwrap();
            let mut b = super::super::WriteBatch::default();
            b.put_meta("schema_version", b"1".to_vec());
            b.put_meta("tip_hash", vec![1; 32]);
            s.apply(&b).unwrap();
        }
        let o = open(&dir, Backend::Redb, 77).unwrap();
        assert_eq!(o.store.backend(), "redb");
        assert_eq!(o.store.get_meta("tip_hash").unwrap(), None, "a fresh store");
        assert!(dir.join("chainstate.redb.format1-77").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bllvm-open-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn auto_moves_a_corrupt_redb_aside_and_uses_sled() {
        let dir = std::env::temp_dir().join(format!("bllvm-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(redb_store::FILE), vec![0x5a; 4096]).unwrap();
        let o = open(&dir, Backend::Auto, 1234).unwrap();
        assert_eq!(o.store.backend(), "sled");
        assert!(o.fallback_reason.as_deref().unwrap().contains("redb"));
        assert!(dir.join("chainstate.redb.broken-1234").exists());
        assert!(!dir.join(redb_store::FILE).exists());
        drop(o);
        // The next start stays on sled rather than creating an empty redb beside it.
        assert_eq!(
            open(&dir, Backend::Auto, 1235).unwrap().store.backend(),
            "sled"
        );
        // Explicit redb on a corrupt file is an error, never a silent fallback.
        std::fs::write(dir.join(redb_store::FILE), vec![0x5a; 4096]).unwrap();
        assert!(open(&dir, Backend::Redb, 1236).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
