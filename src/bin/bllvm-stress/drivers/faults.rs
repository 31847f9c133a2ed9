//! Faults beyond signals (`Node::kill9`, `Node::signal`): a full disk on a small tmpfs, and
//! every peer dropped at once.

use crate::node::Node;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A size-limited tmpfs, unmounted on drop.
pub struct Tmpfs {
    /// Where it is mounted.
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts `mib` MiB at `dir/mnt`; why not where mounting is refused (not root).
    pub fn mount(dir: &Path, mib: u64) -> Result<Tmpfs, String> {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { mnt })
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }

    /// Writes filler until a write fails for lack of space; the bytes written.
    pub fn fill_up(&self) -> u64 {
        let Ok(mut f) = std::fs::File::create(self.filler()) else {
            return 0;
        };
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut n = 0;
        while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {
            n += chunk.len() as u64;
        }
        // The last partial chunk may have gone in: fill to the last byte.
        while f.write_all(&chunk[..512]).is_ok() {
            n += 512;
        }
        n
    }

    /// Removes the filler.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Drops every peer of `node` at once (`setnetworkactive false`) and lets them back.
pub fn drop_peers(node: &Node, hold: std::time::Duration) -> Result<(), String> {
    node.rpc("setnetworkactive", serde_json::json!([false]))?;
    std::thread::sleep(hold);
    node.rpc("setnetworkactive", serde_json::json!([true]))?;
    Ok(())
}
