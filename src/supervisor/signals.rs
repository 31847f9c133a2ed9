//! Unix signals as supervisor events; a second SIGINT forces an immediate exit.

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A signal the supervisor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: orderly shutdown.
    Terminate(&'static str),
    /// Corruption was found and `storage.on_corruption = "shutdown"`: orderly shutdown, exit 3.
    Corruption,
    /// Damage needs a reindex (the marker is written): orderly shutdown, then the process starts
    /// itself again.
    Restart,
}

/// What `node::run` returns when the node should start again (a reindex it asked for); also
/// the exit code when it cannot replace itself (EX_TEMPFAIL: the service manager restarts it).
pub const RESTART_EXIT_CODE: i32 = 75;

/// Exit code after a shutdown for corruption (`storage.on_corruption = "shutdown"`).
pub const CORRUPTION_EXIT_CODE: i32 = 3;

/// Exit code of a forced exit (second SIGINT), as shells report an interrupted process.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Registers for SIGTERM, SIGINT and SIGHUP (on the caller's thread, so a failure is a start
/// error) and returns the signal thread's body, which only forwards and so needs no heartbeat.
pub fn listen(
    events: Sender<Signal>,
) -> std::io::Result<impl FnOnce() -> Result<(), std::convert::Infallible> + Send + 'static> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let stopping = Arc::new(AtomicBool::new(false));
    Ok(move || {
        for sig in signals.forever() {
            let name = match sig {
                SIGTERM => "SIGTERM",
                SIGINT => "SIGINT",
                _ => {
                    log::info!("SIGHUP received and ignored (no config reload)");
                    continue;
                }
            };
            if stopping.swap(true, Ordering::AcqRel) {
                if sig == SIGINT {
                    log::error!("second SIGINT: forcing immediate exit");
                    log::logger().flush();
                    std::process::exit(FORCED_EXIT_CODE);
                }
                log::info!("{name} received; shutdown already in progress");
                continue;
            }
            log::info!("{name} received; shutting down");
            let _ = events.try_send(Signal::Terminate(name));
        }
        Ok(())
    })
}
