//! A size-limited tmpfs for full-disk tests (mounting needs root, as in CI).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of a fixed size, unmounted on drop.
pub struct Tmpfs {
    /// Where it is mounted.
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB; `None`, after saying so loudly, where mounting is refused.
    pub fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("bllvm-tmpfs-")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "\n*** SKIPPED: cannot mount a tmpfs (needs root): the full-disk test did not run ***\n"
            );
            return None;
        }
        Some(Tmpfs { mnt, _dir: dir })
    }

    pub fn used(&self) -> f64 {
        let total = fs2::total_space(&self.mnt).unwrap() as f64;
        let avail = fs2::available_space(&self.mnt).unwrap() as f64;
        1.0 - avail / total
    }

    /// Writes filler until the filesystem is `share` used (or full).
    pub fn fill_to(&self, share: f64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        while self.used() < share {
            if f.write_all(&chunk).and_then(|()| f.sync_data()).is_err() {
                return;
            }
        }
    }

    /// Writes filler until a write fails for lack of space.
    pub fn fill_up(&self) {
        self.fill_to(2.0);
        // The last chunk may not have fit whole: take the rest byte by byte.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.filler())
            .unwrap();
        while f.write_all(&[0]).and_then(|()| f.sync_data()).is_ok() {}
    }

    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    /// Resizes the filesystem (space returns without deleting anything).
    pub fn resize(&self, mib: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot resize the tmpfs");
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
