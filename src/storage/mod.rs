//! The chain-state store: one trait, backend files, and the writer thread that alone writes it.

pub mod redb_store;
pub mod writer;

use std::path::PathBuf;

/// A set of changes applied atomically or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Metadata keys to set.
    pub meta_puts: Vec<(String, Vec<u8>)>,
}

/// The pruning monitor's request to the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneRequest {
    /// Delete whole block files until block data is at most this many bytes.
    pub target_bytes: u64,
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
    /// A read or write failed.
    #[error("store {op} failed: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
}

/// The key-value store the chain state lives in.
pub trait Store: Send + Sync {
    /// `redb` or `sled`, for metrics and health.
    fn backend(&self) -> &'static str;
    /// Reads a metadata value from a consistent snapshot.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Applies `batch` in one durable transaction.
    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError>;
    /// Bytes on disk.
    fn size_bytes(&self) -> u64;
}
