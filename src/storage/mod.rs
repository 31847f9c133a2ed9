//! The chain-state store: one trait over key-value tables, two backends (redb, sled), the block
//! files, and the writer thread that alone writes them.

pub mod backup;
pub mod block_files;
pub mod open;
pub mod redb_store;
pub mod reopen;
pub mod sled_store;
pub mod writer;

use std::path::PathBuf;

/// Bumped when the layout changes incompatibly (2: coin records carry a checksum).
pub const SCHEMA_VERSION: &[u8] = b"2";

/// The store's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Tip, schema version, committed block-file positions.
    Meta,
    /// Block hash -> index entry (header, height, status, file positions).
    BlockIndex,
    /// Outpoint -> coin.
    Coins,
    /// Address book and ban list.
    Peers,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 4] = [Table::Meta, Table::BlockIndex, Table::Coins, Table::Peers];

    /// The table's name in the backend.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::BlockIndex => "block_index",
            Table::Coins => "coins",
            Table::Peers => "peers",
        }
    }
}

/// A set of changes applied atomically and durably, or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// (table, key, Some(value) to set | None to delete), applied in order.
    pub ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Sets `key` in `table`.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), Some(value.into())));
    }

    /// Deletes `key` from `table`.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), None));
    }

    /// Sets a metadata key.
    pub fn put_meta(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        self.put(Table::Meta, key.as_bytes().to_vec(), value);
    }
}

/// What asks for a prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneTrigger {
    /// The writer's own check after each commit.
    Auto,
    /// The disk passed `disk_critical_percent`: prune what the mode allows now.
    DiskCritical,
    /// `pruneblockchain <height>`.
    Manual(u32),
}

/// The answer to `pruneblockchain`: the height of the last pruned block, or why it failed.
pub type PruneReply = crossbeam_channel::Sender<Result<Option<u32>, String>>;

/// A request to the writer to prune block files (from the pruning monitor or RPC).
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Why.
    pub trigger: PruneTrigger,
    /// Where to answer, for `pruneblockchain`.
    pub reply: Option<PruneReply>,
}

/// The answer to `backupchainstate`.
pub type BackupReply = crossbeam_channel::Sender<Result<BackupReport, String>>;

/// A backup written and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Its directory.
    pub path: PathBuf,
    /// The tip it holds.
    pub height: u64,
    /// Its hash.
    pub hash: String,
    /// Bytes of the backup.
    pub bytes: u64,
}

/// What one prune deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// File names deleted, oldest first.
    pub files: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
    /// Lowest and highest block height whose data went.
    pub heights: (u32, u32),
    /// The height of the highest block pruned so far (kept across restarts).
    pub prune_height: Option<u32>,
}

/// Storage failures, with the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store could not be opened.
    #[error("cannot open store {path}: {message}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// The store was written by an older version in a format this one does not read.
    #[error("store {path} has format {version}, older than this version's: it is rebuilt from the block files")]
    OldSchema {
        /// The store.
        path: PathBuf,
        /// Its format.
        version: String,
    },
    /// A read or write failed.
    #[error("store {op} failed: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
}

impl StorageError {
    /// An `Io` error from any displayable backend error.
    pub fn io(op: &'static str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            op,
            message: e.to_string(),
        }
    }
}

/// Whether a scan goes on: callers stop long scans (cancelled RPC calls) with `Break`.
pub type Flow = std::ops::ControlFlow<()>;

/// The key-value store the chain state lives in.
pub trait Store: Send + Sync {
    /// `redb` or `sled`, for metrics and health.
    fn backend(&self) -> &'static str;
    /// Reads `key` from a consistent snapshot.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Calls `f` for every entry of `table`, in key order, from one snapshot, until it breaks.
    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> Flow,
    ) -> Result<(), StorageError>;
    /// Applies `batch` in one durable transaction.
    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError>;
    /// Bytes on disk.
    fn size_bytes(&self) -> u64;
    /// After a failed write (a full disk), closes and reopens the database: both backends refuse
    /// every operation after an I/O error until then. A no-op when no write has failed.
    fn reopen(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Deletes the chain state (block index, coins, every metadata key but the schema version)
    /// and keeps the peers table, for a rebuild from the block files. A crash midway leaves a
    /// store that still reads as damaged or as empty, never as a smaller valid chain.
    fn clear_chain(&self) -> Result<(), StorageError>;

    /// Reads a metadata value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(Table::Meta, key.as_bytes())
    }
}

/// Refuses a store written by an incompatible version; stamps a new one.
pub fn check_schema(store: &dyn Store, path: PathBuf) -> Result<(), StorageError> {
    match store.get_meta("schema_version")? {
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v.as_slice() < SCHEMA_VERSION => Err(StorageError::OldSchema {
            path,
            version: String::from_utf8_lossy(&v).into_owned(),
        }),
        Some(v) => Err(StorageError::Open {
            path,
            message: format!(
                "schema version {} is not supported (expected {})",
                String::from_utf8_lossy(&v),
                String::from_utf8_lossy(SCHEMA_VERSION)
            ),
        }),
        None => {
            let mut b = WriteBatch::default();
            b.put_meta("schema_version", SCHEMA_VERSION);
            store.apply(&b)
        }
    }
}

/// One test suite both backends must pass.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub fn run(store: &dyn Store) {
        let mut b = WriteBatch::default();
        b.put(Table::Coins, vec![2], vec![20]);
        b.put(Table::Coins, vec![1], vec![10]);
        b.put(Table::BlockIndex, vec![1], vec![99]);
        store.apply(&b).unwrap();
        assert_eq!(store.get(Table::Coins, &[1]).unwrap(), Some(vec![10]));
        // Tables are separate namespaces.
        assert_eq!(store.get(Table::BlockIndex, &[1]).unwrap(), Some(vec![99]));
        assert_eq!(store.get(Table::Peers, &[1]).unwrap(), None);
        let mut seen = Vec::new();
        store
            .scan(Table::Coins, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Flow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, vec![(vec![1], vec![10]), (vec![2], vec![20])]);
        // Ops apply in order within a batch.
        let mut b = WriteBatch::default();
        b.delete(Table::Coins, vec![1]);
        b.put(Table::Coins, vec![3], vec![30]);
        b.delete(Table::Coins, vec![3]);
        b.put_meta("tip", b"x".to_vec());
        store.apply(&b).unwrap();
        assert_eq!(store.get(Table::Coins, &[1]).unwrap(), None);
        assert_eq!(store.get(Table::Coins, &[3]).unwrap(), None);
        assert_eq!(store.get_meta("tip").unwrap(), Some(b"x".to_vec()));
        assert!(store.size_bytes() > 0);
    }

    /// `Store::clear_chain` (run after `run`'s persistence was checked).
    pub fn clear(store: &dyn Store) {
        let mut b = WriteBatch::default();
        b.put(Table::Peers, vec![7], vec![70]);
        store.apply(&b).unwrap();
        store.clear_chain().unwrap();
        assert_eq!(store.get_meta("tip").unwrap(), None);
        assert_eq!(store.get(Table::Coins, &[2]).unwrap(), None);
        assert_eq!(store.get(Table::BlockIndex, &[1]).unwrap(), None);
        assert!(store.get_meta("schema_version").unwrap().is_some());
        assert_eq!(store.get(Table::Peers, &[7]).unwrap(), Some(vec![70]));
        // Still writable afterwards.
        let mut b = WriteBatch::default();
        b.put(Table::Coins, vec![5], vec![50]);
        store.apply(&b).unwrap();
        assert_eq!(store.get(Table::Coins, &[5]).unwrap(), Some(vec![50]));
    }
}
