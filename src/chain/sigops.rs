//! Signature-operation cost of a transaction (Core's GetTransactionSigOpCost).

use super::params::WITNESS_SCALE_FACTOR;
use bitcoin::blockdata::script::Instruction;
use bitcoin::{Script, Transaction, TxOut, Witness};

/// Legacy sigops: scriptSigs and scriptPubKeys counted without looking at what they spend.
pub fn legacy_sigops(tx: &Transaction) -> u64 {
    let ins: usize = tx
        .input
        .iter()
        .map(|i| i.script_sig.count_sigops_legacy())
        .sum();
    let outs: usize = tx
        .output
        .iter()
        .map(|o| o.script_pubkey.count_sigops_legacy())
        .sum();
    (ins + outs) as u64
}

/// The last item a push-only script pushes (a P2SH redeem script), if it is push-only.
fn last_push(script_sig: &Script) -> Option<Vec<u8>> {
    if !script_sig.is_push_only() {
        return None;
    }
    let mut last = None;
    for ins in script_sig.instructions() {
        match ins.ok()? {
            Instruction::PushBytes(b) => last = Some(b.as_bytes().to_vec()),
            // OP_0..OP_16 are push-only opcodes; the pushed item is not a script.
            Instruction::Op(_) => last = Some(Vec::new()),
        }
    }
    last
}

fn witness_program_sigops(program: &Script, witness: &Witness) -> u64 {
    match program.witness_version() {
        Some(v) if v.to_num() == 0 => {
            if program.is_p2wpkh() {
                1
            } else if program.is_p2wsh() {
                witness
                    .last()
                    .map(|ws| Script::from_bytes(ws).count_sigops() as u64)
                    .unwrap_or(0)
            } else {
                0
            }
        }
        _ => 0,
    }
}

/// Total sigop cost; `spent[i]` is the output input `i` spends. Coinbases count legacy only.
pub fn sigop_cost(tx: &Transaction, spent: &[TxOut]) -> u64 {
    let mut cost = legacy_sigops(tx) * WITNESS_SCALE_FACTOR;
    if tx.is_coinbase() {
        return cost;
    }
    for (input, prev) in tx.input.iter().zip(spent) {
        let spk = &prev.script_pubkey;
        if spk.is_p2sh() {
            if let Some(redeem) = last_push(&input.script_sig) {
                let redeem = Script::from_bytes(&redeem);
                cost += redeem.count_sigops() as u64 * WITNESS_SCALE_FACTOR;
                if redeem.is_witness_program() {
                    cost += witness_program_sigops(redeem, &input.witness);
                }
            }
        } else if spk.is_witness_program() {
            cost += witness_program_sigops(spk, &input.witness);
        }
    }
    cost
}
