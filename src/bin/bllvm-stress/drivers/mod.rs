//! The drivers a scenario combines: chain, peers, RPC/HTTP load, faults.

pub mod chain_gen;
pub mod faults;
pub mod peers;
pub mod rpc_load;
