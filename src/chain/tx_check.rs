//! Context-free transaction checks (Core's CheckTransaction).

use super::params::{MAX_BLOCK_WEIGHT, MAX_MONEY, WITNESS_SCALE_FACTOR};
use super::reject::{ensure, Reject};
use bitcoin::Transaction;
use std::collections::HashSet;

/// Checks that need nothing but the transaction itself.
pub fn check_transaction(tx: &Transaction) -> Result<(), Reject> {
    ensure(!tx.input.is_empty(), "bad-txns-vin-empty", String::new)?;
    ensure(!tx.output.is_empty(), "bad-txns-vout-empty", String::new)?;
    let stripped = tx.base_size() as u64;
    ensure(
        stripped * WITNESS_SCALE_FACTOR <= MAX_BLOCK_WEIGHT,
        "bad-txns-oversize",
        String::new,
    )?;
    let mut total: u64 = 0;
    for out in &tx.output {
        // rust-bitcoin reads the signed amount as unsigned: negative values land above i64::MAX.
        let v = out.value.to_sat();
        ensure((v as i64) >= 0, "bad-txns-vout-negative", String::new)?;
        ensure(v <= MAX_MONEY, "bad-txns-vout-toolarge", String::new)?;
        total += v;
        ensure(
            total <= MAX_MONEY,
            "bad-txns-txouttotal-toolarge",
            String::new,
        )?;
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    for input in &tx.input {
        ensure(
            seen.insert(input.previous_output),
            "bad-txns-inputs-duplicate",
            String::new,
        )?;
    }
    if tx.is_coinbase() {
        let len = tx.input[0].script_sig.len();
        ensure((2..=100).contains(&len), "bad-cb-length", String::new)?;
    } else {
        for input in &tx.input {
            ensure(
                !input.previous_output.is_null(),
                "bad-txns-prevout-null",
                String::new,
            )?;
        }
    }
    Ok(())
}
