//! Script verification through libbitcoinconsensus, with Core's per-block flags.

use super::params::{script_flags as f, Params};
use super::reject::Reject;
use bitcoin::{BlockHash, Transaction, TxOut};

/// The flags Core applies to a block at `height` (GetBlockScriptFlags).
pub fn block_flags(params: &Params, height: u32, hash: &BlockHash) -> u32 {
    if let Some((_, flags)) = params
        .script_flag_exceptions
        .iter()
        .find(|(h, _)| h == hash)
    {
        return *flags;
    }
    // Core enforces P2SH, witness and taproot on every block: no historical block violates them.
    let mut flags = f::P2SH | f::WITNESS | f::TAPROOT;
    if height >= params.bip66_height {
        flags |= f::DERSIG;
    }
    if height >= params.bip65_height {
        flags |= f::CHECKLOCKTIMEVERIFY;
    }
    if height >= params.csv_height {
        flags |= f::CHECKSEQUENCEVERIFY;
    }
    if height >= params.segwit_height {
        flags |= f::NULLDUMMY;
    }
    flags
}

/// Verifies every input of `tx`; `spent[i]` is the output input `i` spends.
pub fn verify_inputs(tx: &Transaction, spent: &[TxOut], flags: u32) -> Result<(), Reject> {
    let raw = bitcoin::consensus::serialize(tx);
    // Taproot signatures commit to every spent output, so libconsensus needs all of them.
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|o| bitcoinconsensus::Utxo {
            script_pubkey: o.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: o.script_pubkey.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    for (i, prev) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            prev.script_pubkey.as_bytes(),
            prev.value.to_sat(),
            &raw,
            Some(&utxos),
            i,
            flags,
        )
        .map_err(|e| {
            let why = match e {
                // libconsensus reports no script error code, only that evaluation failed.
                bitcoinconsensus::Error::ERR_SCRIPT => "script evaluation failed".to_owned(),
                other => other.to_string(),
            };
            Reject::new(
                format!("mandatory-script-verify-flag-failed ({why})"),
                format!("input {i} of {}", tx.compute_txid()),
            )
        })?;
    }
    Ok(())
}
