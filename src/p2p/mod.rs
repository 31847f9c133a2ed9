//! The P2P side: the mio reactor thread and, later, the protocol state machines it drives.

pub mod addrbook;
pub mod backoff;
pub mod bans;
pub mod codec;
pub mod netgroup;
pub mod partition;
pub mod peer;
pub mod peer_manager;
pub mod reactor;

/// Commands to the p2p thread (from the chain thread, RPC and the supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pCommand {
    /// Stop accepting inbound connections (first step of shutdown).
    CloseListener,
}
