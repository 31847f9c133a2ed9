//! Append-only block and undo files (`blkNNNNN.dat`, `revNNNNN.dat`) in Bitcoin Core's framing:
//! each record is network magic, a little-endian length, the payload (and, for undo records,
//! Core's 32-byte checksum after it). Files are written here and made durable by `sync`; which
//! bytes count is decided by the store's commit, and `open` cuts off anything past it.

use super::StorageError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bitcoin Core's largest block file.
pub const MAX_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Frame header: magic and length.
const FRAME: u64 = 8;
/// Records larger than this are refused before allocation when reading (a block is at most 4 MB).
const MAX_RECORD: u32 = 32 * 1024 * 1024;

/// Where a record's payload lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePos {
    /// File number.
    pub file: u32,
    /// Offset of the payload (after the frame header).
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl FilePos {
    /// 16 bytes: file, offset, len (little endian).
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.file.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Inverse of `encode`.
    pub fn decode(b: &[u8]) -> Option<FilePos> {
        Some(FilePos {
            file: u32::from_le_bytes(b.get(..4)?.try_into().ok()?),
            offset: u64::from_le_bytes(b.get(4..12)?.try_into().ok()?),
            len: u32::from_le_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }
}

/// One series of files (`blk` or `rev`).
pub struct BlockFiles {
    dir: PathBuf,
    prefix: &'static str,
    magic: [u8; 4],
    max_file_size: u64,
    current: u32,
    len: u64,
    handle: Option<File>,
    new_file: bool,
    /// What `open` found wrong with the committed file, if anything.
    damage: Option<String>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::Io {
        op,
        message: format!("{}: {e}", path.display()),
    }
}

impl BlockFiles {
    /// Opens the series in `dir`, keeping exactly `committed = (last file, its length)`:
    /// the tail past it and any later file are what a crash left behind, and are removed.
    pub fn open(
        dir: &Path,
        prefix: &'static str,
        magic: [u8; 4],
        max_file_size: u64,
        committed: (u32, u64),
    ) -> Result<BlockFiles, StorageError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let (current, len) = committed;
        let mut files = BlockFiles {
            dir: dir.to_owned(),
            prefix,
            magic,
            max_file_size,
            current,
            len,
            handle: None,
            new_file: false,
            damage: None,
        };
        let path = files.path(current);
        if !path.exists() && len > 0 {
            // Deleted under us: its records are lost (reads report them); appending at the
            // committed offset would write where nothing is, so continue in a new file.
            files.damage = Some(format!(
                "{} is missing ({len} committed bytes); new data goes to the next file",
                path.display()
            ));
            files.current += 1;
            files.len = 0;
        } else if path.exists() {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("open", &path))?;
            let actual = f.metadata().map_err(io("stat", &path))?.len();
            if actual > len {
                log::warn!(
                    "truncating {} from {actual} to {len} bytes: data past the last commit",
                    path.display()
                );
                f.set_len(len).map_err(io("truncate", &path))?;
                f.sync_all().map_err(io("fsync", &path))?;
            } else if actual < len {
                files.damage = Some(format!(
                    "{} is {actual} bytes but the store committed {len}: records past {actual} are lost; new data goes to the next file",
                    path.display()
                ));
                files.current += 1;
                files.len = 0;
            }
        }
        // Every later file, not only the next few: after pruning, numbers can have gaps, and a
        // stale file would otherwise be appended to when its number comes round again.
        for n in files.numbers().into_iter().filter(|n| *n > current) {
            let p = files.path(n);
            log::warn!("removing {}: created after the last commit", p.display());
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
        }
        Ok(files)
    }

    /// A series to read and scan only (reindexing); appending to it is not intended.
    pub fn open_readonly(dir: &Path, prefix: &'static str, magic: [u8; 4]) -> BlockFiles {
        BlockFiles {
            dir: dir.to_owned(),
            prefix,
            magic,
            max_file_size: MAX_FILE_SIZE,
            current: 0,
            len: 0,
            handle: None,
            new_file: false,
            damage: None,
        }
    }

    /// The numbers of this series' files in the directory.
    pub fn numbers(&self) -> Vec<u32> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let n = name
                    .to_str()?
                    .strip_prefix(self.prefix)?
                    .strip_suffix(".dat")?;
                (n.len() == 5).then(|| n.parse().ok()).flatten()
            })
            .collect()
    }

    /// What `open` found wrong with the committed file (missing or short), if anything.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// `<dir>/<prefix>NNNNN.dat`.
    pub fn path(&self, n: u32) -> PathBuf {
        file_path(&self.dir, self.prefix, n)
    }

    /// (current file, its length): what the store commits after `sync`.
    pub fn position(&self) -> (u32, u64) {
        (self.current, self.len)
    }

    /// Appends a record; not durable until `sync`.
    pub fn append(&mut self, payload: &[u8], trailer: &[u8]) -> Result<FilePos, StorageError> {
        let record = FRAME + payload.len() as u64 + trailer.len() as u64;
        if self.len > 0 && self.len + record > self.max_file_size {
            // Make the finished file durable before moving on; its length is final.
            self.sync()?;
            self.current += 1;
            self.len = 0;
            self.handle = None;
        }
        let path = self.path(self.current);
        if self.handle.is_none() {
            self.new_file = !path.exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io("open", &path))?;
            self.handle = Some(f);
        }
        let f = self.handle.as_mut().ok_or_else(|| StorageError::Io {
            op: "append",
            message: "no open file".into(),
        })?;
        let mut buf = Vec::with_capacity(record as usize);
        buf.extend_from_slice(&self.magic);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        buf.extend_from_slice(trailer);
        f.write_all(&buf).map_err(io("write", &path))?;
        let pos = FilePos {
            file: self.current,
            offset: self.len + FRAME,
            len: payload.len() as u32,
        };
        self.len += record;
        Ok(pos)
    }

    /// fsyncs the current file (and the directory when the file is new).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        let path = self.path(self.current);
        if let Some(f) = &self.handle {
            f.sync_data().map_err(io("fsync", &path))?;
        }
        if self.new_file {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync dir", &self.dir))?;
            self.new_file = false;
        }
        Ok(())
    }

    /// Undoes appends after a failed write: cuts the series back to `to` (a `position()` taken
    /// before them), removing any file created since, so the failed job can be written again.
    pub fn rollback(&mut self, to: (u32, u64)) -> Result<(), StorageError> {
        self.handle = None;
        for n in to.0 + 1..=self.current.max(to.0) {
            let p = self.path(n);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p)(e)),
            }
        }
        let path = self.path(to.0);
        if path.exists() {
            // Shrinking a file needs no free space, so this works on a full disk.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("open", &path))?;
            f.set_len(to.1).map_err(io("truncate", &path))?;
        }
        self.current = to.0;
        self.len = to.1;
        self.new_file = false;
        Ok(())
    }

    /// Bytes of file `n` on disk (0 when absent).
    pub fn file_size(&self, n: u32) -> u64 {
        std::fs::metadata(self.path(n)).map_or(0, |m| m.len())
    }

    /// Reads a payload (and `trailer_len` bytes after it), checking the frame.
    pub fn read(
        &self,
        pos: FilePos,
        trailer_len: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
        read_record(&self.path(pos.file), self.magic, pos, trailer_len)
    }

    /// Deletes file `n` (pruning); the current file is never deleted.
    pub fn remove(&mut self, n: u32) -> Result<u64, StorageError> {
        if n >= self.current {
            return Ok(0);
        }
        let path = self.path(n);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// Scans every complete record of file `n` (reindexing): (position, payload).
    pub fn scan(&self, n: u32) -> Result<Vec<(FilePos, Vec<u8>)>, StorageError> {
        let path = self.path(n);
        let data = std::fs::read(&path).map_err(io("read", &path))?;
        let mut out = Vec::new();
        let mut at = 0usize;
        while at + 8 <= data.len() && data[at..at + 4] == self.magic {
            let len = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
            let start = at + 8;
            let end = start + len as usize;
            if len > MAX_RECORD || end > data.len() {
                break;
            }
            out.push((
                FilePos {
                    file: n,
                    offset: start as u64,
                    len,
                },
                data[start..end].to_vec(),
            ));
            at = end;
        }
        Ok(out)
    }
}

/// `<dir>/<prefix>NNNNN.dat`, for readers that do not own the series.
pub fn file_path(dir: &Path, prefix: &str, n: u32) -> PathBuf {
    dir.join(format!("{prefix}{n:05}.dat"))
}

/// Reads one record at `pos` from `path`, checking the frame against the index (any thread).
pub fn read_record(
    path: &Path,
    magic: [u8; 4],
    pos: FilePos,
    trailer_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
    let corrupt = |what: &str| StorageError::Io {
        op: "read",
        message: format!("{} at {}: {what}", path.display(), pos.offset),
    };
    if pos.offset < FRAME || pos.len > MAX_RECORD {
        return Err(corrupt("bad position"));
    }
    let mut f = File::open(path).map_err(io("open", path))?;
    f.seek(SeekFrom::Start(pos.offset - FRAME))
        .map_err(io("seek", path))?;
    let mut head = [0u8; 8];
    f.read_exact(&mut head).map_err(io("read", path))?;
    if head[..4] != magic || u32::from_le_bytes([head[4], head[5], head[6], head[7]]) != pos.len {
        return Err(corrupt("frame does not match the index"));
    }
    let mut payload = vec![0u8; pos.len as usize];
    f.read_exact(&mut payload).map_err(io("read", path))?;
    let mut trailer = vec![0u8; trailer_len];
    f.read_exact(&mut trailer).map_err(io("read", path))?;
    Ok((payload, trailer))
}

/// The first `n` bytes (at most the whole payload) of the record at `pos`, frame checked: a
/// block's header and transaction count without reading the block.
pub fn read_prefix(
    path: &Path,
    magic: [u8; 4],
    pos: FilePos,
    n: usize,
) -> Result<Vec<u8>, StorageError> {
    let corrupt = |what: &str| StorageError::Io {
        op: "read",
        message: format!("{} at {}: {what}", path.display(), pos.offset),
    };
    if pos.offset < FRAME || pos.len > MAX_RECORD {
        return Err(corrupt("bad position"));
    }
    let f = File::open(path).map_err(io("open", path))?;
    let want = FRAME as usize + n.min(pos.len as usize);
    let mut buf = vec![0u8; want];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, pos.offset - FRAME)
        .map_err(io("read", path))?;
    if buf[..4] != magic || u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) != pos.len {
        return Err(corrupt("frame does not match the index"));
    }
    buf.drain(..FRAME as usize);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bllvm-bf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_round_trip_and_roll_over_to_new_files() {
        let dir = tmp("roll");
        // Records are 48, 48 and 80 bytes: each one overflows a 90-byte file.
        let mut f = BlockFiles::open(&dir, "blk", MAGIC, 90, (0, 0)).unwrap();
        let a = f.append(&[1; 40], &[]).unwrap();
        let b = f.append(&[2; 40], &[]).unwrap();
        let c = f.append(&[3; 40], &[9; 32]).unwrap();
        f.sync().unwrap();
        assert_eq!((a.file, b.file, c.file), (0, 1, 2));
        assert_eq!(f.read(b, 0).unwrap().0, vec![2; 40]);
        assert_eq!(f.read(c, 32).unwrap(), (vec![3; 40], vec![9; 32]));
        assert_eq!(f.scan(0).unwrap().len(), 1);
        // Core's framing: magic then length.
        let raw = std::fs::read(f.path(0)).unwrap();
        assert_eq!(&raw[..8], &[0xfa, 0xbf, 0xb5, 0xda, 40, 0, 0, 0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_cuts_what_was_written_after_the_last_commit() {
        let dir = tmp("cut");
        let committed;
        {
            let mut f = BlockFiles::open(&dir, "blk", MAGIC, 100, (0, 0)).unwrap();
            f.append(&[1; 10], &[]).unwrap();
            f.sync().unwrap();
            committed = f.position();
            // Written but never committed: a crash happened here.
            f.append(&[2; 60], &[]).unwrap();
            f.append(&[3; 60], &[]).unwrap();
            f.sync().unwrap();
        }
        // A stray later file past a gap (numbers after pruning are not contiguous).
        std::fs::write(dir.join("blk00007.dat"), [1u8; 10]).unwrap();
        let f = BlockFiles::open(&dir, "blk", MAGIC, 100, committed).unwrap();
        assert_eq!(std::fs::metadata(f.path(0)).unwrap().len(), committed.1);
        assert!(!f.path(1).exists());
        assert!(!f.path(7).exists());
        assert_eq!(f.scan(0).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rollback_undoes_appends_across_a_new_file() {
        let dir = tmp("rollback");
        let mut f = BlockFiles::open(&dir, "blk", MAGIC, 100, (0, 0)).unwrap();
        f.append(&[1; 10], &[]).unwrap();
        f.sync().unwrap();
        let before = f.position();
        f.append(&[2; 60], &[]).unwrap();
        f.append(&[3; 60], &[]).unwrap();
        assert_eq!(f.position().0, 1);
        f.rollback(before).unwrap();
        assert_eq!(f.position(), before);
        assert!(!f.path(1).exists());
        assert_eq!(std::fs::metadata(f.path(0)).unwrap().len(), before.1);
        // Writing again after the rollback gives the positions the failed write would have had.
        let p = f.append(&[2; 60], &[]).unwrap();
        assert_eq!((p.file, p.offset), (0, before.1 + 8));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_frame_that_does_not_match_the_index_is_an_error_not_a_panic() {
        let dir = tmp("bad");
        let mut f = BlockFiles::open(&dir, "blk", MAGIC, 1000, (0, 0)).unwrap();
        let p = f.append(&[1; 10], &[]).unwrap();
        f.sync().unwrap();
        assert!(f.read(FilePos { len: 11, ..p }, 0).is_err());
        assert!(f.read(FilePos { offset: 2, ..p }, 0).is_err());
        assert!(f.read(FilePos { len: u32::MAX, ..p }, 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
