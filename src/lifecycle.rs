//! How the supervisor tells a component to stop: dropping a sender every receiver sees.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

/// Held by the supervisor; dropping it (via [`StopSender::stop`]) asks the component to stop.
#[derive(Debug)]
pub struct StopSender {
    _tx: Sender<()>,
    waker: Option<Arc<mio::Waker>>,
}

/// Held by the component's thread(s).
#[derive(Debug, Clone)]
pub struct StopSignal {
    rx: Receiver<()>,
}

/// A linked pair; `waker` is woken on stop for threads that sleep in `mio::Poll`.
pub fn stop_pair(waker: Option<Arc<mio::Waker>>) -> (StopSender, StopSignal) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    (StopSender { _tx: tx, waker }, StopSignal { rx })
}

impl StopSender {
    /// Asks the component to stop; its receivers see the channel disconnect.
    pub fn stop(self) {
        let waker = self.waker.clone();
        drop(self);
        if let Some(w) = waker {
            if let Err(e) = w.wake() {
                log::warn!("cannot wake p2p loop for shutdown: {e}");
            }
        }
    }
}

impl StopSignal {
    /// True once stop was requested.
    pub fn requested(&self) -> bool {
        matches!(self.rx.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// The channel to put in a `select!`: it becomes ready (disconnected) on stop.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_the_stop() {
        let (tx, sig) = stop_pair(None);
        let other = sig.clone();
        assert!(!sig.requested());
        tx.stop();
        assert!(sig.requested() && other.requested());
    }
}
