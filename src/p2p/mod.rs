//! The P2P side: the mio reactor thread and the protocol state machines it drives.

pub mod addrbook;
pub mod backoff;
pub mod bans;
pub mod codec;
pub mod connection;
pub mod eviction;
pub mod netgroup;
pub mod partition;
pub mod peer;
pub mod peer_manager;
pub mod protocol;
pub mod reactor;
pub mod relay;
pub mod resolver;
pub mod rng;
pub mod seeds;
pub mod send_queue;
pub mod sync;
pub mod view;
