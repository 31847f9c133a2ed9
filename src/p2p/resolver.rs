//! The resolver thread: DNS lookups block, so they happen here and never in the event loop.
//! Names go in over a bounded channel; addresses come back over another, with a wake-up.

use crossbeam_channel::{Receiver, Sender};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// Why a name is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A DNS seed: the addresses go to the address book.
    Seed,
    /// A `--connect` peer given by name.
    Connect,
    /// An `--addnode` peer given by name.
    AddNode,
}

/// A lookup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Host name.
    pub host: String,
    /// Port to pair with the addresses.
    pub port: u16,
    /// Why.
    pub purpose: Purpose,
}

/// A lookup's answer (empty when the name did not resolve).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The request.
    pub lookup: Lookup,
    /// The addresses.
    pub addrs: Vec<SocketAddr>,
}

/// The resolver thread's body: answers lookups until the request channel closes. `node.rs`
/// spawns it and nobody joins it, so a lookup stuck in the system resolver cannot hold up
/// shutdown.
pub fn run(
    requests: Receiver<Lookup>,
    answers: Sender<Resolved>,
    waker: Arc<mio::Waker>,
) -> Result<(), std::convert::Infallible> {
    for lookup in requests {
        let addrs: Vec<SocketAddr> = match (lookup.host.as_str(), lookup.port).to_socket_addrs() {
            Ok(it) => it.collect(),
            Err(e) => {
                log::info!("cannot resolve {}: {e}", lookup.host);
                Vec::new()
            }
        };
        if answers.send(Resolved { lookup, addrs }).is_err() {
            break;
        }
        let _ = waker.wake();
    }
    Ok(())
}
