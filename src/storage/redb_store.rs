//! The default backend: one redb file, `chainstate.redb`.

use super::{StorageError, Store, WriteBatch};
use redb::{Database, TableDefinition};
use std::path::{Path, PathBuf};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Bumped when the layout changes incompatibly.
const SCHEMA_VERSION: &[u8] = b"1";

/// A redb database holding the chain state.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

fn io(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StorageError {
    move |e| StorageError::Io {
        op,
        message: e.to_string(),
    }
}

impl RedbStore {
    /// Opens or creates `<dir>/chainstate.redb` and checks its schema version.
    pub fn open(dir: &Path) -> Result<RedbStore, StorageError> {
        let path = dir.join("chainstate.redb");
        let open_err = |message: String| StorageError::Open {
            path: path.clone(),
            message,
        };
        let db = Database::create(&path).map_err(|e| open_err(e.to_string()))?;
        let store = RedbStore {
            db,
            path: path.clone(),
        };
        match store.get_meta("schema_version")? {
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(open_err(format!(
                    "schema version {} is not supported (expected {})",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(SCHEMA_VERSION)
                )))
            }
            None => store.apply(&WriteBatch {
                meta_puts: vec![("schema_version".into(), SCHEMA_VERSION.to_vec())],
            })?,
        }
        Ok(store)
    }
}

impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(|e| io("read")(&e))?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io("read")(&e)),
        };
        let value = table.get(key).map_err(|e| io("read")(&e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(|e| io("write")(&e))?;
        {
            let mut table = tx.open_table(META).map_err(|e| io("write")(&e))?;
            for (k, v) in &batch.meta_puts {
                table
                    .insert(k.as_str(), v.as_slice())
                    .map_err(|e| io("write")(&e))?;
            }
        }
        // redb's default durability fsyncs on commit.
        tx.commit().map_err(|e| io("commit")(&e))
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_persist_across_reopen() {
        let dir = std::env::temp_dir().join(format!("bllvm-redb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let s = RedbStore::open(&dir).unwrap();
            s.apply(&WriteBatch {
                meta_puts: vec![("tip".into(), b"abc".to_vec())],
            })
            .unwrap();
        }
        let s = RedbStore::open(&dir).unwrap();
        assert_eq!(s.get_meta("tip").unwrap(), Some(b"abc".to_vec()));
        assert!(s.size_bytes() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
