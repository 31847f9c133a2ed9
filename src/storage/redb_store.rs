//! The default backend: one redb file, `chainstate.redb`.

use super::reopen::Reopenable;
use super::{check_schema, Flow, StorageError, Store, Table, WriteBatch};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

/// The redb file's name in the network directory.
pub const FILE: &str = "chainstate.redb";

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

/// A redb database holding the chain state.
pub struct RedbStore {
    db: Reopenable<Database>,
}

impl RedbStore {
    /// Opens or creates `<dir>/chainstate.redb` and checks its schema version.
    pub fn open(dir: &Path) -> Result<RedbStore, StorageError> {
        let path = dir.join(FILE);
        let store = RedbStore {
            db: Reopenable::open(path.clone(), Self::create)?,
        };
        check_schema(&store, path)?;
        Ok(store)
    }

    /// Opens the file. redb 2 asserts on some damaged files (a truncated one) instead of
    /// returning an error; that panic is caught here so the store is handled like any other
    /// that cannot be opened (moved aside, sled used) rather than ending the process.
    fn create(path: &Path) -> Result<Database, StorageError> {
        let opened = std::panic::catch_unwind(|| Database::create(path));
        let message = match opened {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!(
                "redb panicked opening it: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            ),
        };
        Err(StorageError::Open {
            path: path.to_owned(),
            message,
        })
    }

    fn read_tx(&self, op: &'static str) -> Result<redb::ReadTransaction, StorageError> {
        self.db.with(op, |db| {
            db.begin_read().map_err(|e| StorageError::io(op, e))
        })
    }
}

fn write(db: &Database, batch: &WriteBatch) -> Result<(), StorageError> {
    let tx = db.begin_write().map_err(|e| StorageError::io("write", e))?;
    {
        let mut tables = Vec::new();
        for t in Table::ALL {
            tables.push(
                tx.open_table(def(t))
                    .map_err(|e| StorageError::io("write", e))?,
            );
        }
        for (table, key, value) in &batch.ops {
            let idx = Table::ALL.iter().position(|t| t == table).unwrap_or(0);
            let t = &mut tables[idx];
            match value {
                Some(v) => t.insert(key.as_slice(), v.as_slice()).map(|_| ()),
                None => t.remove(key.as_slice()).map(|_| ()),
            }
            .map_err(|e| StorageError::io("write", e))?;
        }
    }
    // redb's default durability fsyncs on commit.
    tx.commit().map_err(|e| StorageError::io("commit", e))
}

/// `Store::clear_chain` in one transaction.
fn clear_chain(db: &Database) -> Result<(), StorageError> {
    let err = |e: &dyn std::fmt::Display| StorageError::io("clear", e);
    let tx = db.begin_write().map_err(|e| err(&e))?;
    for t in [Table::BlockIndex, Table::Coins] {
        tx.delete_table(def(t)).map_err(|e| err(&e))?;
    }
    {
        let mut meta = tx.open_table(def(Table::Meta)).map_err(|e| err(&e))?;
        let mut keys = Vec::new();
        for item in meta.iter().map_err(|e| err(&e))? {
            let (k, _) = item.map_err(|e| err(&e))?;
            if k.value() != b"schema_version" {
                keys.push(k.value().to_vec());
            }
        }
        for k in keys {
            meta.remove(k.as_slice()).map_err(|e| err(&e))?;
        }
    }
    tx.commit().map_err(|e| StorageError::io("commit", e))
}

impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.read_tx("read")?;
        let t = match tx.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StorageError::io("read", e)),
        };
        let v = t.get(key).map_err(|e| StorageError::io("read", e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        let tx = self.read_tx("scan")?;
        let t = match tx.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(StorageError::io("scan", e)),
        };
        for item in t.iter().map_err(|e| StorageError::io("scan", e))? {
            let (k, v) = item.map_err(|e| StorageError::io("scan", e))?;
            if f(k.value(), v.value()).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.db.write(|db| write(db, batch))
    }

    fn reopen(&self) -> Result<(), StorageError> {
        self.db.reopen()
    }

    fn clear_chain(&self) -> Result<(), StorageError> {
        self.db.write(clear_chain)
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(self.db.path())
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_and_persistence() {
        let dir = std::env::temp_dir().join(format!("bllvm-redb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        super::super::conformance::run(&RedbStore::open(&dir).unwrap());
        let s = RedbStore::open(&dir).unwrap();
        assert_eq!(s.get_meta("tip").unwrap(), Some(b"x".to_vec()));
        super::super::conformance::clear(&s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
