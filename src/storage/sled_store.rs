//! The fallback backend: a sled database in `chainstate.sled/`.

use super::reopen::Reopenable;
use super::{check_schema, Flow, StorageError, Store, Table, WriteBatch};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;

/// The sled directory's name in the network directory.
pub const DIR: &str = "chainstate.sled";

/// An open sled database and its trees, one per table.
struct Handle {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

/// A sled database with one tree per table.
pub struct SledStore {
    handle: Reopenable<Handle>,
}

impl SledStore {
    /// Opens or creates `<dir>/chainstate.sled/` and checks its schema version.
    pub fn open(dir: &Path) -> Result<SledStore, StorageError> {
        let path = dir.join(DIR);
        let store = SledStore {
            handle: Reopenable::open(path.clone(), open_handle)?,
        };
        check_schema(&store, path)?;
        Ok(store)
    }

    /// The table's tree (a cheap handle).
    fn tree(&self, t: Table, op: &'static str) -> Result<sled::Tree, StorageError> {
        self.handle.with(op, |h| {
            Ok(h.trees[Table::ALL.iter().position(|x| *x == t).unwrap_or(0)].clone())
        })
    }
}

fn open_handle(path: &Path) -> Result<Handle, StorageError> {
    let open_err = |e: sled::Error| StorageError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let db = open_when_released(path).map_err(open_err)?;
    let trees = Table::ALL
        .iter()
        .map(|t| db.open_tree(t.name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(open_err)?;
    Ok(Handle { db, trees })
}

fn write(h: &Handle, batch: &WriteBatch) -> Result<(), StorageError> {
    let result: Result<(), TransactionError<()>> = h.trees.as_slice().transaction(|views| {
        for (table, key, value) in &batch.ops {
            let idx = Table::ALL.iter().position(|t| t == table).unwrap_or(0);
            match value {
                Some(v) => views[idx].insert(key.as_slice(), v.as_slice())?,
                None => views[idx].remove(key.as_slice())?,
            };
        }
        Ok::<(), ConflictableTransactionError<()>>(())
    });
    result.map_err(|e| StorageError::io("write", format!("{e:?}")))?;
    // sled commits in memory; flush makes the batch durable before the writer moves on.
    h.db.flush().map_err(|e| StorageError::io("flush", e))?;
    Ok(())
}

/// sled releases its file lock from a background thread after a `Db` is dropped, so a reopen in
/// the same process (restarts in tests, the fallback path) may briefly find it held: retry that
/// error for a bounded time. Another process holding it is the datadir lock's business.
fn open_when_released(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::open(path) {
            // sled reports a held lock as ErrorKind::Other; its message is the only signal.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// `Store::clear_chain`: sled cannot clear trees in a transaction, so the index and coins go
/// first and the tip last; a crash between leaves a tip without its index, which loads as damage
/// and is cleared again, never an empty-looking store with stale coins in it.
fn clear_chain(h: &Handle) -> Result<(), StorageError> {
    let idx = |t: Table| Table::ALL.iter().position(|x| *x == t).unwrap_or(0);
    for t in [Table::BlockIndex, Table::Coins] {
        h.trees[idx(t)]
            .clear()
            .map_err(|e| StorageError::io("clear", e))?;
    }
    h.db.flush().map_err(|e| StorageError::io("flush", e))?;
    let meta = &h.trees[idx(Table::Meta)];
    for item in meta.iter() {
        let (k, _) = item.map_err(|e| StorageError::io("clear", e))?;
        if &*k != b"schema_version" {
            meta.remove(k).map_err(|e| StorageError::io("clear", e))?;
        }
    }
    h.db.flush().map_err(|e| StorageError::io("flush", e))?;
    Ok(())
}

impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.tree(table, "read")?
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StorageError::io("read", e))
    }

    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError> {
        for item in self.tree(table, "scan")?.iter() {
            let (k, v) = item.map_err(|e| StorageError::io("scan", e))?;
            if f(&k, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.handle.write(|h| write(h, batch))
    }

    fn reopen(&self) -> Result<(), StorageError> {
        self.handle.reopen()
    }

    fn clear_chain(&self) -> Result<(), StorageError> {
        self.handle.write(clear_chain)
    }

    fn size_bytes(&self) -> u64 {
        self.handle
            .with("size", |h| Ok(h.db.size_on_disk().unwrap_or(0)))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopen_waits_for_a_lock_being_released() {
        let dir = std::env::temp_dir().join(format!("bllvm-sled-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let held = SledStore::open(&dir).unwrap();
        let (release, released) = crossbeam_channel::bounded::<()>(1);
        let holder = std::thread::spawn(move || {
            let _ = released.recv();
            drop(held);
        });
        let d2 = dir.clone();
        let opener = std::thread::spawn(move || SledStore::open(&d2).map(|_| ()));
        release.send(()).unwrap();
        holder.join().unwrap();
        opener
            .join()
            .unwrap()
            .expect("opens once the holder lets go");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn conformance_and_persistence() {
        let dir = std::env::temp_dir().join(format!("bllvm-sled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        super::super::conformance::run(&SledStore::open(&dir).unwrap());
        let s = SledStore::open(&dir).unwrap();
        assert_eq!(s.get_meta("tip").unwrap(), Some(b"x".to_vec()));
        super::super::conformance::clear(&s);
        assert!(dir.join(DIR).is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
