//! Where log lines go: a bounded queue drained to stderr by one writer thread, so no thread
//! that logs (the HTTP gate, RPC workers, the chain) waits on a slow stderr (a busy journald, a
//! full pipe). When the queue is full, lines below warning are dropped and counted; warnings
//! and errors wait for room, since losing them would hide the trouble itself, but not for
//! ever: a stderr stuck for good must not stop the node.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines held for the writer (a few MB at most).
const QUEUE_LINES: usize = 16_384;
/// Longest a warning or error waits for room before it too is dropped.
const IMPORTANT_WAIT: Duration = Duration::from_secs(1);
/// The writer gathers up to this many bytes into one write.
const BATCH_BYTES: usize = 64 * 1024;

static QUEUE: OnceLock<Sender<Vec<u8>>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether the record being written may be dropped when the queue is full.
    static DROPPABLE: Cell<bool> = const { Cell::new(true) };
    /// Set on the writer thread: whatever it logs is droppable, or it could wait on itself.
    static WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Lines dropped because stderr could not keep up (`bllvm_log_lines_dropped_total`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Runs `f` (which logs `level`) with that level's drop policy.
pub fn with_level<T>(level: log::Level, f: impl FnOnce() -> T) -> T {
    DROPPABLE.with(|d| d.set(level > log::Level::Warn));
    f()
}

/// The writer env_logger is given: each record arrives whole, in one `write`.
pub struct QueueWriter(Sender<Vec<u8>>);

/// Starts the writer thread (once per process) and returns the writer for a logger.
pub fn writer() -> QueueWriter {
    let tx = QUEUE.get_or_init(|| {
        let (tx, rx) = bounded(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || drain(&rx));
        if let Err(e) = spawned {
            // Lines then wait in the queue until it fills; stderr is all there is to say it.
            eprintln!("cannot start the log writer thread: {e}");
        }
        tx
    });
    QueueWriter(tx.clone())
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        PENDING.fetch_add(1, Ordering::AcqRel);
        let line = buf.to_vec();
        let sent = if DROPPABLE.with(Cell::get) || WRITER.with(Cell::get) {
            match self.0.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        } else {
            let sent = self.0.send_timeout(line, IMPORTANT_WAIT);
            if sent.as_ref().is_err_and(|e| e.is_timeout()) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            sent.is_ok()
        };
        if !sent {
            PENDING.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer thread: gathers what is queued into one write; says so when lines were dropped.
fn drain(rx: &Receiver<Vec<u8>>) {
    WRITER.with(|w| w.set(true));
    let mut reported = 0;
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(line) = rx.recv() {
        let mut lines = 1;
        batch.extend_from_slice(&line);
        while batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(l) => {
                    batch.extend_from_slice(&l);
                    lines += 1;
                }
                Err(_) => break,
            }
        }
        // Nothing to do if stderr is gone: the lines are lost either way.
        let _ = std::io::stderr().lock().write_all(&batch);
        batch.clear();
        if batch.capacity() > 4 * BATCH_BYTES {
            batch = Vec::with_capacity(BATCH_BYTES);
        }
        PENDING.fetch_sub(lines, Ordering::AcqRel);
        let dropped = dropped();
        // Through the logger, in the configured format, once there is room for it (else on a
        // later round).
        if dropped > reported && rx.len() < QUEUE_LINES {
            reported = dropped;
            log::warn!(
                dropped;
                "{dropped} log lines dropped so far: stderr did not keep up (bllvm_log_lines_dropped_total)"
            );
        }
    }
}

/// Waits until every queued line is written, at most `limit` (stderr may be stuck).
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
