//! The mempool: standardness policy, acceptance, the pool and the orphanage, plain state with
//! time passed in. Owned by the chain thread, next to the UTXO view it validates against.

pub mod accept;
pub mod dump;
pub mod estimator;
pub mod orphans;
pub mod policy;
pub mod pool;
pub mod select;

/// Core's reject reasons the mempool gives, as metric labels.
pub const REASONS: &[&str] = &[
    "bad-txns-fee-outofrange",
    "bad-txns-in-belowout",
    "bad-txns-inputs-duplicate",
    "bad-txns-inputs-missingorspent",
    "bad-txns-inputvalues-outofrange",
    "bad-txns-nonfinal",
    "bad-txns-oversize",
    "bad-txns-premature-spend-of-coinbase",
    "bad-txns-prevout-null",
    "bad-txns-spends-conflicting-tx",
    "bad-txns-too-many-sigops",
    "bad-txns-txouttotal-toolarge",
    "bad-txns-vin-empty",
    "bad-txns-vout-empty",
    "bad-txns-vout-negative",
    "bad-txns-vout-toolarge",
    "bare-multisig",
    "coinbase",
    "dust",
    "insufficient fee",
    "mandatory-script-verify-flag-failed",
    "max-fee-exceeded",
    "mempool min fee not met",
    "min relay fee not met",
    "multi-op-return",
    "non-BIP68-final",
    "non-final",
    "scriptpubkey",
    "scriptsig-not-pushonly",
    "scriptsig-size",
    "too-long-mempool-chain",
    "tx-size",
    "tx-size-small",
    "txn-already-in-mempool",
    "txn-already-known",
    "txn-mempool-conflict",
    "version",
];

/// A reject reason as a metric label: Core's reason without its detail in parentheses, or
/// `other`, so the label set stays bounded.
pub fn reason_label(reason: &str) -> &'static str {
    let head = reason.split(" (").next().unwrap_or(reason);
    REASONS
        .iter()
        .find(|r| **r == head)
        .copied()
        .unwrap_or("other")
}
