//! Block checks: context-free (Core's CheckBlock) and against the chain (ContextualCheckBlock).

use super::merkle::root_with_mutation;
use super::params::{Params, MAX_BLOCK_SIGOPS_COST, MAX_BLOCK_WEIGHT, WITNESS_SCALE_FACTOR};
use super::pow::check_proof_of_work;
use super::reject::{ensure, Reject};
use super::sigops::legacy_sigops;
use super::tx_check::check_transaction;
use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::script::PushBytesBuf;
use bitcoin::{Block, ScriptBuf, Transaction};

/// The 4-byte tag of a witness commitment output after OP_RETURN PUSH36.
pub const WITNESS_COMMITMENT_HEADER: [u8; 6] = [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];

/// Context-free checks; `check_pow` is off for tests of other rules.
/// The data does not match the header's commitments: malleated in transit, so the header (and
/// the honest block with it) is not condemned (Core's BLOCK_MUTATED).
fn mutated_data(r: Reject) -> Reject {
    r.of_kind(super::reject::RejectKind::Mutated)
}

pub fn check_block(block: &Block, params: &Params, check_pow: bool) -> Result<(), Reject> {
    if check_pow {
        check_proof_of_work(&block.header, params)?;
        if let Some(challenge) = &params.signet_challenge {
            super::signet::check_solution(block, challenge, &params.genesis.block_hash())?;
        }
    }
    let txids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .map(|tx| tx.compute_txid().to_byte_array())
        .collect();
    let (root, mutated) = root_with_mutation(&txids);
    ensure(
        root == block.header.merkle_root.to_byte_array(),
        "bad-txnmrklroot",
        || "hashMerkleRoot mismatch".into(),
    )
    .map_err(mutated_data)?;
    ensure(!mutated, "bad-txns-duplicate", || {
        "duplicate transaction".into()
    })
    .map_err(mutated_data)?;
    let stripped = bitcoin::consensus::serialize(&stripped_block(block)).len() as u64;
    ensure(
        !block.txdata.is_empty()
            && (block.txdata.len() as u64) * WITNESS_SCALE_FACTOR <= MAX_BLOCK_WEIGHT
            && stripped * WITNESS_SCALE_FACTOR <= MAX_BLOCK_WEIGHT,
        "bad-blk-length",
        || "size limits failed".into(),
    )?;
    ensure(block.txdata[0].is_coinbase(), "bad-cb-missing", || {
        "first tx is not coinbase".into()
    })?;
    ensure(
        block.txdata[1..].iter().all(|tx| !tx.is_coinbase()),
        "bad-cb-multiple",
        || "more than one coinbase".into(),
    )?;
    for tx in &block.txdata {
        check_transaction(tx).map_err(|r| {
            Reject::new(
                r.reason,
                format!("Transaction check failed (tx hash {})", tx.compute_txid()),
            )
        })?;
    }
    let sigops: u64 = block.txdata.iter().map(legacy_sigops).sum();
    ensure(
        sigops * WITNESS_SCALE_FACTOR <= MAX_BLOCK_SIGOPS_COST,
        "bad-blk-sigops",
        || "out-of-bounds SigOpCount".into(),
    )
}

fn stripped_block(block: &Block) -> Block {
    let mut b = block.clone();
    for tx in &mut b.txdata {
        for input in &mut tx.input {
            input.witness.clear();
        }
    }
    b
}

/// Core's IsFinalTx.
pub fn is_final(tx: &Transaction, height: u32, lock_time_cutoff: u32) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let limit = if lock < bitcoin::absolute::LOCK_TIME_THRESHOLD {
        height
    } else {
        lock_time_cutoff
    };
    lock < limit || tx.input.iter().all(|i| i.sequence.0 == 0xffff_ffff)
}

/// The witness commitment's index in the coinbase: the last output carrying the tag.
pub fn witness_commitment_index(coinbase: &Transaction) -> Option<usize> {
    coinbase.output.iter().rposition(|o| {
        let b = o.script_pubkey.as_bytes();
        b.len() >= 38 && b[..6] == WITNESS_COMMITMENT_HEADER
    })
}

/// sha256d(witness merkle root || reserved value), as committed in the coinbase.
pub fn witness_commitment(block: &Block, reserved: &[u8]) -> [u8; 32] {
    let wtxids: Vec<[u8; 32]> = block
        .txdata
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            if i == 0 {
                [0; 32]
            } else {
                tx.compute_wtxid().to_byte_array()
            }
        })
        .collect();
    commitment_of(&wtxids, reserved)
}

/// sha256d(merkle root of `wtxids` || reserved value); the coinbase's wtxid is zero.
pub fn commitment_of(wtxids: &[[u8; 32]], reserved: &[u8]) -> [u8; 32] {
    let (root, _) = root_with_mutation(wtxids);
    let mut e = sha256d::Hash::engine();
    e.input(&root);
    e.input(reserved);
    sha256d::Hash::from_engine(e).to_byte_array()
}

/// The output script of a witness commitment.
pub fn witness_commitment_script(commitment: [u8; 32]) -> ScriptBuf {
    let mut data = PushBytesBuf::from([0xaa, 0x21, 0xa9, 0xed]);
    // 36 bytes always fit a push.
    let _ = data.extend_from_slice(&commitment);
    ScriptBuf::new_op_return(data)
}

/// Checks that depend on the block's height and its parent's median time past.
pub fn contextual_check_block(
    block: &Block,
    params: &Params,
    height: u32,
    prev_mtp: u32,
) -> Result<(), Reject> {
    let cutoff = if height >= params.csv_height {
        prev_mtp
    } else {
        block.header.time
    };
    for tx in &block.txdata {
        ensure(is_final(tx, height, cutoff), "bad-txns-nonfinal", || {
            format!("non-final transaction {}", tx.compute_txid())
        })?;
    }
    let coinbase = &block.txdata[0];
    if height >= params.bip34_height {
        let expect = bitcoin::script::Builder::new()
            .push_int(i64::from(height))
            .into_script();
        ensure(
            coinbase.input[0]
                .script_sig
                .as_bytes()
                .starts_with(expect.as_bytes()),
            "bad-cb-height",
            || "block height mismatch in coinbase".into(),
        )?;
    }
    let mut have_witness_commitment = false;
    if height >= params.segwit_height {
        if let Some(idx) = witness_commitment_index(coinbase) {
            have_witness_commitment = true;
            let w = &coinbase.input[0].witness;
            ensure(
                w.len() == 1 && w.nth(0).is_some_and(|n| n.len() == 32),
                "bad-witness-nonce-size",
                || "invalid witness reserved value size".into(),
            )
            .map_err(mutated_data)?;
            let reserved = w.nth(0).unwrap_or_default();
            let expect = witness_commitment(block, reserved);
            ensure(
                coinbase.output[idx].script_pubkey.as_bytes()[6..38] == expect,
                "bad-witness-merkle-match",
                || "witness merkle commitment mismatch".into(),
            )
            .map_err(mutated_data)?;
        }
    }
    if !have_witness_commitment {
        ensure(
            block
                .txdata
                .iter()
                .all(|tx| tx.input.iter().all(|i| i.witness.is_empty())),
            "unexpected-witness",
            || "unexpected witness data found".into(),
        )
        .map_err(mutated_data)?;
    }
    ensure(
        block.weight().to_wu() <= MAX_BLOCK_WEIGHT,
        "bad-blk-weight",
        || "weight limit failed".into(),
    )
}
