//! Bitcoin Core's standardness policy for transactions relayed and kept in the mempool
//! (`IsStandardTx`, `GetDustThreshold`), with Core's reject reasons. Consensus validity is the
//! chain's (`chain::tx_check`, scripts); this is what a node is willing to relay.

use crate::chain::reject::Reject;
use bitcoin::blockdata::script::Instruction;
use bitcoin::{Script, Transaction, TxOut};

/// Largest standard transaction weight (Core's MAX_STANDARD_TX_WEIGHT).
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Smallest standard transaction without witness (Core's MIN_STANDARD_TX_NONWITNESS_SIZE).
pub const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// Largest standard scriptSig (Core's MAX_STANDARD_SCRIPTSIG_SIZE).
pub const MAX_STANDARD_SCRIPTSIG_SIZE: usize = 1650;
/// Largest standard OP_RETURN output script, opcode included (Core's MAX_OP_RETURN_RELAY).
pub const MAX_OP_RETURN_RELAY: usize = 83;
/// Highest standard transaction version (Core's TX_MAX_STANDARD_VERSION, with TRUC).
pub const MAX_STANDARD_VERSION: i32 = 3;
/// Sigop cost a standard transaction may have (Core's MAX_STANDARD_TX_SIGOPS_COST).
pub const MAX_STANDARD_TX_SIGOPS_COST: u64 = 16_000;
/// Core's dust relay fee, sat/kvB: an output worth less than spending it costs at this rate is
/// dust.
pub const DUST_RELAY_FEE: u64 = 3_000;

fn reject(reason: &str) -> Reject {
    Reject::new(reason, "")
}

/// What an output script is, as Core's `Solver` sees it (the parts policy needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// P2PK, P2PKH, P2SH, P2WPKH, P2WSH, P2TR, pay-to-anchor, or a future witness version.
    Standard,
    /// Bare multisig (`m <keys> n OP_CHECKMULTISIG`, up to 3 keys).
    BareMultisig,
    /// OP_RETURN followed by pushes only.
    NullData,
    /// Anything else.
    NonStandard,
}

/// Classifies an output script.
pub fn output_kind(script: &Script) -> OutputKind {
    if script.is_p2pkh()
        || script.is_p2sh()
        || script.is_p2wpkh()
        || script.is_p2wsh()
        || script.is_p2tr()
        || script.is_p2pk()
        || script.is_witness_program()
    {
        return OutputKind::Standard;
    }
    if script.is_op_return() {
        // Core's IsPushOnly: pushes and OP_1NEGATE..OP_16 (OP_RESERVED included).
        let pushes_only = script.instructions().skip(1).all(|i| match i {
            Ok(Instruction::PushBytes(_)) => true,
            Ok(Instruction::Op(op)) => op.to_u8() <= 0x60,
            Err(_) => false,
        });
        return if pushes_only {
            OutputKind::NullData
        } else {
            OutputKind::NonStandard
        };
    }
    if script.is_multisig() {
        return OutputKind::BareMultisig;
    }
    OutputKind::NonStandard
}

/// Core's `GetDustThreshold` at the dust relay fee: the value below which `out` is dust.
pub fn dust_threshold(out: &TxOut) -> u64 {
    if out.script_pubkey.is_op_return() {
        return 0;
    }
    let size = bitcoin::consensus::serialize(out).len() as u64;
    // The input that would spend it: outpoint, sequence, script length, and a signature and key
    // (witness data at a quarter).
    let spend = if out.script_pubkey.is_witness_program() {
        32 + 4 + 1 + 107 / 4 + 4
    } else {
        32 + 4 + 1 + 107 + 4
    };
    (size + spend) * DUST_RELAY_FEE / 1000
}

/// Core's `IsStandardTx` (version, weight, scriptSigs, output types, dust, one OP_RETURN), then
/// its minimum non-witness size.
pub fn check_standard(tx: &Transaction) -> Result<(), Reject> {
    let version = tx.version.0;
    if !(1..=MAX_STANDARD_VERSION).contains(&version) {
        return Err(reject("version"));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(reject("tx-size"));
    }
    for input in &tx.input {
        if input.script_sig.len() > MAX_STANDARD_SCRIPTSIG_SIZE {
            return Err(reject("scriptsig-size"));
        }
        if !input.script_sig.is_push_only() {
            return Err(reject("scriptsig-not-pushonly"));
        }
    }
    let mut null_data = 0;
    for out in &tx.output {
        match output_kind(&out.script_pubkey) {
            OutputKind::NonStandard => return Err(reject("scriptpubkey")),
            OutputKind::NullData if out.script_pubkey.len() > MAX_OP_RETURN_RELAY => {
                return Err(reject("scriptpubkey"))
            }
            OutputKind::NullData => null_data += 1,
            OutputKind::BareMultisig | OutputKind::Standard => {}
        }
        if out.value.to_sat() < dust_threshold(out) {
            return Err(reject("dust"));
        }
    }
    if null_data > 1 {
        return Err(reject("multi-op-return"));
    }
    // Core checks this right after IsStandardTx (MemPoolAccept::PreChecks).
    if tx.base_size() < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(reject("tx-size-small"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{
        absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, Txid, WPubkeyHash,
        Witness,
    };

    fn p2wpkh() -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([7; 20]))
    }

    fn tx(outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([1; 32]), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0u8; 72], vec![2u8; 33]]),
            }],
            output: outputs,
        }
    }

    fn out(sat: u64, script: ScriptBuf) -> TxOut {
        TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: script,
        }
    }

    #[test]
    fn dust_thresholds_match_core() {
        // Core: 294 sat for P2WPKH, 546 for P2PKH, at 3 sat/vB.
        assert_eq!(dust_threshold(&out(0, p2wpkh())), 294);
        let p2pkh = ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([7; 20]));
        assert_eq!(dust_threshold(&out(0, p2pkh)), 546);
        assert_eq!(
            dust_threshold(&out(0, ScriptBuf::new_op_return([1u8; 4]))),
            0
        );
    }

    #[test]
    fn each_rule_rejects_with_cores_reason() {
        let ok = tx(vec![out(10_000, p2wpkh())]);
        assert_eq!(check_standard(&ok), Ok(()));
        let reason = |t: &Transaction| check_standard(t).unwrap_err().reason;

        let mut v = ok.clone();
        v.version = transaction::Version(4);
        assert_eq!(reason(&v), "version");
        assert_eq!(reason(&tx(vec![out(293, p2wpkh())])), "dust");
        assert_eq!(check_standard(&tx(vec![out(294, p2wpkh())])), Ok(()));
        let weird = ScriptBuf::from(vec![0x51, 0x87]); // OP_1 OP_EQUAL
        assert_eq!(reason(&tx(vec![out(10_000, weird)])), "scriptpubkey");
        let op_return = |n: usize| {
            out(
                0,
                ScriptBuf::new_op_return(
                    bitcoin::script::PushBytesBuf::try_from(vec![0u8; n]).unwrap(),
                ),
            )
        };
        assert_eq!(
            check_standard(&tx(vec![out(10_000, p2wpkh()), op_return(80)])),
            Ok(())
        );
        assert_eq!(
            reason(&tx(vec![out(10_000, p2wpkh()), op_return(81)])),
            "scriptpubkey"
        );
        assert_eq!(
            reason(&tx(vec![out(10_000, p2wpkh()), op_return(4), op_return(4)])),
            "multi-op-return"
        );
        let mut sig = ok.clone();
        sig.input[0].script_sig = ScriptBuf::from(vec![0x61]); // OP_NOP
        assert_eq!(reason(&sig), "scriptsig-not-pushonly");
        let mut big = ok.clone();
        big.input[0].script_sig = ScriptBuf::from(vec![0u8; 1651]);
        assert_eq!(reason(&big), "scriptsig-size");
        let mut small = ok.clone();
        small.input[0].witness = Witness::new();
        small.output[0].script_pubkey = ScriptBuf::new_op_return([0u8; 0]);
        small.output[0].value = Amount::ZERO;
        assert_eq!(reason(&small), "tx-size-small");
        let many: Vec<TxOut> = (0..3500).map(|_| out(10_000, p2wpkh())).collect();
        assert_eq!(reason(&tx(many)), "tx-size");
    }
}
