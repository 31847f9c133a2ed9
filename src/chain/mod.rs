//! The chain: consensus parameters and rules as plain functions, and the thread that applies them.
//! Knows no transport.

pub mod block_check;
pub mod chainstate;
pub mod header_tree;
pub mod integrity;
pub mod merkle;
pub mod mining;
pub mod params;
pub mod persist;
pub mod pow;
pub mod raw_block;
pub mod reject;
pub mod script;
pub mod serve;
pub mod signet;
pub mod sigops;
pub mod thread;
pub mod tx_check;
pub mod utxo;
pub mod utxo_cache;

pub use thread::{ChainError, ChainRequest, ChainThread};
