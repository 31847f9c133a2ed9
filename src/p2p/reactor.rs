//! The mio event loop: owns every socket. Protocol logic is not here.

use super::P2pCommand;
use crate::chain::PeerEvent;
use crate::lifecycle::StopSignal;
use crate::state::Shared;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Why the p2p thread could not start or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// The listen address could not be bound.
    #[error("cannot listen for P2P connections on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Polling failed.
    #[error("p2p poll failed")]
    Poll(#[source] std::io::Error),
}

/// The reactor before its thread starts: binding happens on the caller's thread so errors surface at start.
pub struct Reactor {
    poll: Poll,
    waker: Arc<Waker>,
    listener: Option<TcpListener>,
    /// Where the listener is bound.
    pub local_addr: SocketAddr,
}

/// The channels and handles the running loop needs.
pub struct ReactorLinks {
    /// Commands in.
    pub commands: Receiver<P2pCommand>,
    /// Events out.
    pub events: Sender<PeerEvent>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the network view is published.
    pub shared: Arc<Shared>,
    /// Poll timeout, so the loop beats while idle.
    pub tick: Duration,
}

impl Reactor {
    /// Creates the poll and binds the listener.
    pub fn bind(addr: SocketAddr) -> Result<Reactor, ReactorError> {
        let bind_err = |source| ReactorError::Bind { addr, source };
        let poll = Poll::new().map_err(ReactorError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ReactorError::Poll)?);
        let mut listener = TcpListener::bind(addr).map_err(bind_err)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Reactor {
            poll,
            waker,
            listener: Some(listener),
            local_addr,
        })
    }

    /// Wakes the loop from another thread (commands, shutdown).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs the loop until stopped.
    pub fn run(mut self, links: ReactorLinks) -> Result<(), ReactorError> {
        let mut events = Events::with_capacity(256);
        links.heartbeat.set_status(Status::Healthy, "");
        log::info!("p2p listening on {}", self.local_addr);
        loop {
            links.heartbeat.beat();
            match self.poll.poll(&mut events, Some(links.tick)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReactorError::Poll(e)),
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept_all(&links);
                }
            }
            while let Ok(cmd) = links.commands.try_recv() {
                match cmd {
                    P2pCommand::CloseListener => {
                        if let Some(mut l) = self.listener.take() {
                            let _ = self.poll.registry().deregister(&mut l);
                            log::info!("p2p listener closed");
                        }
                    }
                }
            }
            if links.stop.requested() {
                log::info!("p2p stopped");
                return Ok(());
            }
        }
    }

    /// The peer protocol arrives with the P2P issue; until then connections are reported and closed.
    fn accept_all(&mut self, links: &ReactorLinks) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, addr)) => {
                    log::debug!("inbound connection from {addr} closed: protocol not served yet");
                    drop(stream);
                    for ev in [
                        PeerEvent::Connected {
                            addr,
                            inbound: true,
                        },
                        PeerEvent::Disconnected { addr },
                    ] {
                        if let Err(TrySendError::Full(_)) = links.events.try_send(ev) {
                            log::debug!("peer event queue full, event dropped");
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: retry on the next readiness event instead of spinning.
                    log::warn!("p2p accept failed: {e}");
                    return;
                }
            }
        }
    }
}
