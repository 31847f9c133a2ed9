//! One place that spawns component threads and decides what a failed thread means.

use crate::component::Component;
use crossbeam_channel::Sender;
use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;

/// Why a component thread ended other than by being asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The body returned an error; the text is its whole cause chain.
    Error(String),
    /// The body panicked.
    Panic(String),
}

/// Sent to the supervisor when a component thread ends badly.
#[derive(Debug, Clone)]
pub struct ComponentFailed {
    /// Which component.
    pub component: Component,
    /// The thread's own name (a pool names each worker).
    pub thread: String,
    /// What happened.
    pub failure: Failure,
}

/// Spawns a named thread whose error or panic is logged and reported to the supervisor.
pub fn spawn<F, E>(
    component: Component,
    thread_name: String,
    failures: Sender<ComponentFailed>,
    body: F,
) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Result<(), E> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let name = thread_name.clone();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let failure = match std::panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    let chain = error_chain(&e);
                    log::error!("component {component} failed: {chain}");
                    Failure::Error(chain)
                }
                // The panic hook has already logged the message and location.
                Err(payload) => Failure::Panic(panic_message(payload.as_ref())),
            };
            // If the supervisor's queue is full it is already shutting down: dropping is fine.
            let _ = failures.try_send(ComponentFailed {
                component,
                thread: name,
                failure,
            });
        })
}

/// `outer: middle: inner`, as electrs logs its errors.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn errors_and_panics_reach_the_supervisor() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        spawn(Component::Chain, "chain".into(), tx.clone(), || {
            Err(Outer(std::io::Error::other("inner")))
        })
        .unwrap()
        .join()
        .unwrap();
        let f = rx.try_recv().unwrap();
        assert_eq!(f.failure, Failure::Error("outer: inner".into()));

        spawn(Component::P2p, "p2p".into(), tx, || -> Result<(), Outer> {
            panic!("boom")
        })
        .unwrap()
        .join()
        .unwrap();
        let f = rx.try_recv().unwrap();
        assert_eq!(f.component, Component::P2p);
        assert_eq!(f.failure, Failure::Panic("boom".into()));
    }
}
