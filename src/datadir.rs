//! The network's data directory and its exclusive lock.

use fs2::FileExt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the datadir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatadirError {
    /// The directory could not be created.
    #[error("cannot create datadir {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file could not be opened or written.
    #[error("cannot use lock file {path}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file naming the bound addresses could not be written.
    #[error("cannot write {path}")]
    Listening {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error("datadir is in use by another bllvm-node process (pid {pid}): {path}")]
    InUse {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it, or `unknown`.
        pid: String,
    },
}

/// The file in the network's datadir that names the addresses actually bound.
pub const LISTENING_FILE: &str = "listening.json";

/// Writes `<dir>/listening.json`: the RPC/HTTP and P2P addresses as bound, so whoever started
/// the node with port 0 (tests, several nodes on one host) learns them. Written whole or not
/// at all (a temporary file renamed over it).
pub fn write_listening(
    dir: &Path,
    rpc: std::net::SocketAddr,
    p2p: std::net::SocketAddr,
) -> Result<(), DatadirError> {
    let path = dir.join(LISTENING_FILE);
    let tmp = dir.join(format!("{LISTENING_FILE}.tmp"));
    let text = format!("{{\"rpc\": \"{rpc}\", \"p2p\": \"{p2p}\"}}\n");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| DatadirError::Listening { path, source })
}

/// Holds `<dir>/.lock` exclusively until dropped (the OS releases it on any exit too).
#[derive(Debug)]
pub struct DatadirLock {
    file: File,
    path: PathBuf,
}

/// Creates `dir` and takes its lock, writing our pid into the lock file.
pub fn lock(dir: &Path) -> Result<DatadirLock, DatadirError> {
    std::fs::create_dir_all(dir).map_err(|source| DatadirError::Create {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(".lock");
    let file_err = |source| DatadirError::LockFile {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(file_err)?;
    if file.try_lock_exclusive().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        return Err(DatadirError::InUse {
            path,
            pid: if pid.is_empty() { "unknown" } else { pid }.to_owned(),
        });
    }
    // The pid only names the holder in the message above; the lock is the flock. Written over
    // the old pid rather than after truncating, so it needs no new block on a full disk.
    let pid = std::process::id().to_string();
    let written = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .and_then(|()| file.set_len(pid.len() as u64))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        log::warn!("cannot write the pid to {}: {e}", path.display());
    }
    Ok(DatadirLock { file, path })
}

impl Drop for DatadirLock {
    fn drop(&mut self) {
        // Core leaves .lock in place; only the lock itself is released.
        if let Err(e) = FileExt::unlock(&self.file) {
            log::warn!("cannot release {}: {e}", self.path.display());
        }
    }
}

/// Raises the soft limit on open files to the hard limit (as a daemon serving many sockets
/// should; Core does the same), returning (soft, hard) as they are afterwards.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_pid() {
        let dir = std::env::temp_dir().join(format!("bllvm-lock-{}", std::process::id()));
        let first = lock(&dir).unwrap();
        let err = lock(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        lock(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
