//! The test plays systemd: it owns a NOTIFY_SOCKET and reads what the node tells it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The test's end of NOTIFY_SOCKET.
pub struct FakeSystemd {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    /// The socket's path, for the node's NOTIFY_SOCKET.
    pub path: String,
}

impl FakeSystemd {
    /// Binds a fresh socket.
    pub fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        FakeSystemd {
            sock,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// Next datagram within `timeout`, or None.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits for a datagram containing `needle`; returns everything seen on the way.
    pub fn expect(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(msg) = self.recv(left) {
                let hit = msg.lines().any(|l| l == needle);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!("no {needle} within {timeout:?}; saw {seen:?}");
    }
}
