//! The mempool (issue 16, in progress): standardness policy, acceptance and the pool,
//! plain state with time passed in. Owned by the chain thread once wired (the design puts the
//! mempool next to the UTXO view it validates against).

pub mod accept;
pub mod policy;
pub mod pool;
