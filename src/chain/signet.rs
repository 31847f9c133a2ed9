//! BIP325 signet block signatures: the block's "solution" must satisfy the network's challenge.

use super::block_check::witness_commitment_index;
use super::merkle::root_with_mutation;
use super::params::script_flags as f;
use super::reject::Reject;
use bitcoin::blockdata::script::Instruction;
use bitcoin::consensus::{deserialize_partial, serialize};
use bitcoin::hashes::Hash;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    absolute, transaction, Amount, Block, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Witness,
};

/// The push prefix that marks the solution inside the witness commitment output.
pub const SIGNET_HEADER: [u8; 4] = [0xec, 0xc7, 0xda, 0xa2];

/// Core's default signet challenge: a 1-of-2 bare multisig.
pub const DEFAULT_CHALLENGE_HEX: &str = "512103ad5e0edad18cb1f0fc0d28a3d4f1f3e445640337489abb10404f2d1e086be430210359ef5021964fe22d6f8e05b2463c9540ce96883fe3b278760f048f5189f2e6c452ae";

/// Flags Core verifies block solutions with.
const SIGNET_FLAGS: u32 = f::P2SH | f::WITNESS | f::DERSIG | f::NULLDUMMY;

fn bad(detail: &str) -> Reject {
    Reject::new(
        "bad-signet-blksig",
        format!("signet block signature validation failure: {detail}"),
    )
}

/// Splits the solution out of a witness commitment script (Core's FetchAndClearCommitmentSection):
/// the first push longer than the header and starting with it loses everything after the header.
fn take_solution(script: &ScriptBuf) -> Option<(ScriptBuf, Vec<u8>)> {
    let mut out = Builder::new();
    let mut solution = None;
    for ins in script.instructions() {
        match ins.ok()? {
            Instruction::PushBytes(p) => {
                let data = p.as_bytes();
                if solution.is_none()
                    && data.len() > SIGNET_HEADER.len()
                    && data.starts_with(&SIGNET_HEADER)
                {
                    solution = Some(data[SIGNET_HEADER.len()..].to_vec());
                    out = out.push_slice(SIGNET_HEADER);
                } else {
                    out = out.push_slice(PushBytesBuf::try_from(data.to_vec()).ok()?);
                }
            }
            Instruction::Op(op) => out = out.push_opcode(op),
        }
    }
    solution.map(|s| (out.into_script(), s))
}

/// The virtual transactions of BIP325: `to_spend` pays to the challenge and commits to the
/// block; `to_sign` spends it with the block's solution.
pub fn signet_txs(
    block: &Block,
    challenge: &ScriptBuf,
) -> Result<(Transaction, Transaction), Reject> {
    let coinbase = block.txdata.first().ok_or_else(|| bad("no coinbase"))?;
    let idx = witness_commitment_index(coinbase).ok_or_else(|| bad("no witness commitment"))?;
    let mut modified = coinbase.clone();
    let mut script_sig = ScriptBuf::new();
    let mut witness = Witness::new();
    // No solution: allowed, so that OP_TRUE-like challenges work with empty solutions.
    if let Some((script, solution)) = take_solution(&coinbase.output[idx].script_pubkey) {
        modified.output[idx].script_pubkey = script;
        let (sig, used): (ScriptBuf, usize) =
            deserialize_partial(&solution).map_err(|_| bad("solution does not parse"))?;
        let (wit, used2): (Witness, usize) =
            deserialize_partial(&solution[used..]).map_err(|_| bad("solution does not parse"))?;
        if used + used2 != solution.len() {
            return Err(bad("extraneous data in solution"));
        }
        script_sig = sig;
        witness = wit;
    }
    let mut txids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .map(|t| t.compute_txid().to_byte_array())
        .collect();
    txids[0] = modified.compute_txid().to_byte_array();
    let signet_merkle = root_with_mutation(&txids).0;
    let mut block_data = Vec::with_capacity(72);
    block_data.extend(serialize(&block.header.version));
    block_data.extend(serialize(&block.header.prev_blockhash));
    block_data.extend_from_slice(&signet_merkle);
    block_data.extend(serialize(&block.header.time));
    let data = PushBytesBuf::try_from(block_data).map_err(|_| bad("block data"))?;
    let to_spend = Transaction {
        version: transaction::Version(0),
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_opcode(bitcoin::opcodes::OP_0)
                .push_slice(data)
                .into_script(),
            sequence: Sequence(0),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: challenge.clone(),
        }],
    };
    let to_sign = Transaction {
        version: transaction::Version(0),
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(to_spend.compute_txid(), 0),
            script_sig,
            sequence: Sequence(0),
            witness,
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            // Core's CScript(OP_RETURN): the opcode alone (new_op_return would add a push).
            script_pubkey: ScriptBuf::from_bytes(vec![0x6a]),
        }],
    };
    Ok((to_spend, to_sign))
}

/// Core's CheckSignetBlockSolution; the genesis block needs no solution.
pub fn check_solution(
    block: &Block,
    challenge: &ScriptBuf,
    genesis: &bitcoin::BlockHash,
) -> Result<(), Reject> {
    if block.block_hash() == *genesis {
        return Ok(());
    }
    let (to_spend, to_sign) = signet_txs(block, challenge)?;
    let prev = &to_spend.output[0];
    let utxo = [bitcoinconsensus::Utxo {
        script_pubkey: prev.script_pubkey.as_bytes().as_ptr(),
        script_pubkey_len: prev.script_pubkey.len() as u32,
        value: 0,
    }];
    bitcoinconsensus::verify_with_flags(
        prev.script_pubkey.as_bytes(),
        0,
        &serialize(&to_sign),
        Some(&utxo),
        0,
        SIGNET_FLAGS,
    )
    .map_err(|_| bad("invalid block solution"))
}
