//! The P2P side: the mio reactor thread and the protocol state machines it drives.

pub mod addrbook;
pub mod backoff;
pub mod bans;
pub mod codec;
pub mod connection;
pub mod netgroup;
pub mod partition;
pub mod peer;
pub mod peer_manager;
pub mod reactor;
pub mod resolver;
pub mod seeds;
pub mod send_queue;
pub mod sync;
