//! The mempool (issue 16, in progress): standardness policy and the pool's data structure,
//! plain state with time passed in. Owned by the chain thread once wired (the design puts the
//! mempool next to the UTXO view it validates against).

pub mod policy;
pub mod pool;
