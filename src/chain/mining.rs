//! Regtest mining: a block template as Core's miner builds it, and a nonce grinder.

use super::block_check::{witness_commitment, witness_commitment_script};
use super::merkle::root_with_mutation;
use super::params::Params;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};

/// What the next block builds on.
#[derive(Debug, Clone)]
pub struct Template {
    /// Parent hash.
    pub prev: BlockHash,
    /// Height of the new block.
    pub height: u32,
    /// Timestamp.
    pub time: u32,
    /// Required bits.
    pub bits: CompactTarget,
    /// Fees of `txs`, paid to the coinbase.
    pub fees: u64,
}

/// Builds a block: coinbase (BIP34 height, output 0 pays `payout`, witness commitment after it
/// when segwit is active), then `txs`; nonce not yet ground.
pub fn build_block(
    params: &Params,
    t: &Template,
    payout: ScriptBuf,
    txs: Vec<Transaction>,
) -> Block {
    let segwit = t.height >= params.segwit_height;
    let script_sig = bitcoin::script::Builder::new()
        .push_int(i64::from(t.height))
        .push_opcode(bitcoin::opcodes::OP_0)
        .into_script();
    let mut coinbase = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(params.subsidy(t.height) + t.fees),
            script_pubkey: payout,
        }],
    };
    if segwit {
        coinbase.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
    }
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: t.prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time: t.time,
            bits: t.bits,
            nonce: 0,
        },
        txdata: std::iter::once(coinbase).chain(txs).collect(),
    };
    if segwit {
        let commitment = witness_commitment(&block, &[0u8; 32]);
        block.txdata[0].output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: witness_commitment_script(commitment),
        });
    }
    update_merkle_root(&mut block);
    block
}

/// Recomputes the witness commitment (if the coinbase has one) and the merkle root after
/// transactions were changed.
pub fn refresh_commitments(block: &mut Block) {
    if let Some(idx) = super::block_check::witness_commitment_index(&block.txdata[0]) {
        let reserved = block.txdata[0].input[0]
            .witness
            .nth(0)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| vec![0; 32]);
        let c = witness_commitment(block, &reserved);
        block.txdata[0].output[idx].script_pubkey = witness_commitment_script(c);
    }
    update_merkle_root(block);
}

/// Recomputes the header's merkle root from the transactions.
pub fn update_merkle_root(block: &mut Block) {
    let txids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    block.header.merkle_root = TxMerkleNode::from_byte_array(root_with_mutation(&txids).0);
}

/// Finds a nonce meeting the header's target; false if none of 2^32 does (never on regtest).
pub fn grind(header: &mut Header) -> bool {
    let target = header.target();
    for nonce in 0..=u32::MAX {
        header.nonce = nonce;
        if target.is_met_by(header.block_hash()) {
            return true;
        }
    }
    false
}

/// P2WSH of `OP_TRUE`: anyone can spend it with the script as the only witness item. The
/// test-only miner pays here so it can spend its own coinbases without keys.
pub fn op_true_payout() -> ScriptBuf {
    ScriptBuf::new_p2wsh(&op_true_script().wscript_hash())
}

fn op_true_script() -> ScriptBuf {
    ScriptBuf::from_bytes(vec![0x51])
}

/// Spends an `op_true_payout` output back to the same script, paying 1000 sat in fees.
pub fn spend_op_true(outpoint: OutPoint, value: u64) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[op_true_script().as_bytes()]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value.saturating_sub(1000)),
            script_pubkey: op_true_payout(),
        }],
    }
}
