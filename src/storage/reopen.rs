//! A database handle that can be closed and opened again in place. Both backends refuse every
//! operation after one I/O error (a full disk) until the database is reopened; the writer does
//! that before retrying, while readers keep their `Arc` to the store.

use super::StorageError;
use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// An open database of type `H` at `path`, with the function that opens it.
pub struct Reopenable<H> {
    /// `None` only while a reopen is under way or after one failed.
    handle: RwLock<Option<H>>,
    path: PathBuf,
    open: fn(&Path) -> Result<H, StorageError>,
    /// A write failed: the handle must be reopened before it works again.
    poisoned: AtomicBool,
}

impl<H> Reopenable<H> {
    /// Opens `path` with `open`.
    pub fn open(
        path: PathBuf,
        open: fn(&Path) -> Result<H, StorageError>,
    ) -> Result<Self, StorageError> {
        Ok(Reopenable {
            handle: RwLock::new(Some(open(&path)?)),
            path,
            open,
            poisoned: AtomicBool::new(false),
        })
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the open handle (an error while it is being reopened).
    pub fn with<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&H) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let guard = self.handle.read();
        let h = guard
            .as_ref()
            .ok_or_else(|| StorageError::io(op, "store is being reopened after a write error"))?;
        f(h)
    }

    /// Like `with`, for writes: a failure marks the handle for reopening.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&H) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let result = self.with("write", f);
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    /// Closes and reopens the database if a write failed since it was opened.
    pub fn reopen(&self) -> Result<(), StorageError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut guard = self.handle.write();
        // The old handle must be closed before the files can be opened again.
        guard.take();
        *guard = Some((self.open)(&self.path)?);
        self.poisoned.store(false, Ordering::Release);
        log::info!("store {} reopened after a write error", self.path.display());
        Ok(())
    }
}
