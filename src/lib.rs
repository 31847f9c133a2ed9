//! bllvm-node: a Bitcoin full node built to stay up. The binary is a thin wrapper over [`cli::main`].

pub mod chain;
pub mod cli;
pub mod clock;
pub mod component;
pub mod config;
pub mod datadir;
pub mod hex;
pub mod host;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod mempool;
pub mod messages;
pub mod metrics;
pub mod node;
pub mod p2p;
pub mod pruning;
pub mod rest;
pub mod rpc;
pub mod state;
pub mod storage;
pub mod subnet;
pub mod supervisor;
pub mod thread;
