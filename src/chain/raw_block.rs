//! Checks a serialized block as stored without decoding it: one pass over the bytes finds
//! each transaction's boundaries and hashes its txid and wtxid ranges, then the merkle root
//! and the witness commitment must match, as a decoded block's would (`persist::intact`).
//! `getblock` verbosity 0 answers the stored bytes after this, with no allocation per
//! transaction.

use bitcoin::hashes::{sha256d, Hash, HashEngine};

/// Why stored bytes are not the block they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawBlockError {
    /// The bytes end inside a field, or a length is impossible.
    #[error("truncated or malformed at byte {0}")]
    Malformed(usize),
    /// Bytes follow the last transaction.
    #[error("{0} bytes after the last transaction")]
    Trailing(usize),
    /// The transactions do not hash to the header's merkle root.
    #[error("the transactions do not match the merkle root")]
    MerkleRoot,
    /// The witnesses do not match the coinbase's commitment.
    #[error("the witnesses do not match the witness commitment")]
    WitnessCommitment,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, RawBlockError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(RawBlockError::Malformed(self.at))?;
        let r = self.at..end;
        self.at = end;
        Ok(r)
    }

    /// A CompactSize.
    fn size(&mut self) -> Result<usize, RawBlockError> {
        let first = self.b[self.take(1)?.start];
        let n = match first {
            0xfd => u64::from(u16::from_le_bytes(self.array()?)),
            0xfe => u64::from(u32::from_le_bytes(self.array()?)),
            0xff => u64::from_le_bytes(self.array()?),
            n => u64::from(n),
        };
        // Nothing in a block can be longer than the block.
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len())
            .ok_or(RawBlockError::Malformed(self.at))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RawBlockError> {
        let r = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[r]);
        Ok(a)
    }

    /// A length-prefixed field.
    fn bytes(&mut self) -> Result<std::ops::Range<usize>, RawBlockError> {
        let n = self.size()?;
        self.take(n)
    }
}

/// What the coinbase says about witnesses: its commitment output and reserved value.
#[derive(Default)]
struct Coinbase {
    commitment: Option<std::ops::Range<usize>>,
    reserved: Option<std::ops::Range<usize>>,
}

/// What the walk learnt: enough for `getblock` verbosity 1 without decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Each transaction's txid, in order.
    pub txids: Vec<bitcoin::Txid>,
    /// The block without witnesses (Core's `strippedsize`).
    pub stripped_size: usize,
    /// Each transaction's input count, in order.
    pub inputs: Vec<usize>,
}

/// A block's bytes as stored, checked, with what the check learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBlock {
    /// The serialized block.
    pub bytes: Vec<u8>,
    /// Its txids and stripped size.
    pub summary: Summary,
}

impl RawBlock {
    /// Of a decoded block (one still in memory).
    pub fn of(block: &bitcoin::Block) -> RawBlock {
        RawBlock {
            bytes: bitcoin::consensus::encode::serialize(block),
            summary: Summary {
                txids: block.txdata.iter().map(|t| t.compute_txid()).collect(),
                stripped_size: block.txdata.iter().map(|t| t.base_size()).sum::<usize>()
                    + 80
                    + bitcoin::VarInt(block.txdata.len() as u64).size(),
                inputs: block.txdata.iter().map(|t| t.input.len()).collect(),
            },
        }
    }
}

/// Checks `block` (a serialized block) against its own header.
pub fn check(block: &[u8]) -> Result<Summary, RawBlockError> {
    let mut c = Cursor { b: block, at: 0 };
    let header = c.take(80)?;
    let merkle_root = &block[header.start + 36..header.start + 68];
    let count = c.size()?;
    let mut txids = Vec::with_capacity(count);
    let mut wtxids = Vec::with_capacity(count);
    let mut coinbase = Coinbase::default();
    let mut stripped_size = c.at;
    let mut inputs = Vec::with_capacity(count);
    for i in 0..count {
        let (txid, wtxid, stripped, n_in) = transaction(&mut c, (i == 0).then_some(&mut coinbase))?;
        stripped_size += stripped;
        inputs.push(n_in);
        txids.push(txid);
        wtxids.push(if i == 0 { [0; 32] } else { wtxid });
    }
    if c.at != block.len() {
        return Err(RawBlockError::Trailing(block.len() - c.at));
    }
    if super::merkle::root_with_mutation(&txids).0[..] != *merkle_root {
        return Err(RawBlockError::MerkleRoot);
    }
    if let Some(out) = coinbase.commitment {
        let reserved = coinbase.reserved.map_or(&[][..], |r| &block[r]);
        let expected = super::block_check::commitment_of(&wtxids, reserved);
        if block[out.start + 6..out.start + 38] != expected {
            return Err(RawBlockError::WitnessCommitment);
        }
    }
    Ok(Summary {
        txids: txids
            .into_iter()
            .map(bitcoin::Txid::from_byte_array)
            .collect(),
        stripped_size,
        inputs,
    })
}

/// Walks one transaction: its txid (the serialization without witnesses), wtxid (all of it),
/// size without witnesses and input count; for the coinbase, where its commitment and reserved value are.
fn transaction(
    c: &mut Cursor<'_>,
    mut coinbase: Option<&mut Coinbase>,
) -> Result<([u8; 32], [u8; 32], usize, usize), RawBlockError> {
    let start = c.at;
    let version = c.take(4)?;
    // BIP144: an input count of zero followed by flag 1 marks witnesses.
    let segwit = c.b.get(c.at) == Some(&0);
    if segwit {
        let flag = c.take(2)?;
        if c.b[flag.start + 1] != 1 {
            return Err(RawBlockError::Malformed(flag.start + 1));
        }
    }
    let body_start = c.at;
    let inputs = c.size()?;
    for _ in 0..inputs {
        c.take(36)?;
        c.bytes()?;
        c.take(4)?;
    }
    let outputs = c.size()?;
    for _ in 0..outputs {
        c.take(8)?;
        let script = c.bytes()?;
        if let Some(cb) = coinbase.as_deref_mut() {
            let s = &c.b[script.clone()];
            if s.len() >= 38 && s[..6] == super::block_check::WITNESS_COMMITMENT_HEADER {
                // The last one counts, as Core's GetWitnessCommitmentIndex.
                cb.commitment = Some(script);
            }
        }
    }
    let body_end = c.at;
    if segwit {
        for i in 0..inputs {
            let items = c.size()?;
            for j in 0..items {
                let item = c.bytes()?;
                if i == 0 && j == 0 {
                    if let Some(cb) = coinbase.as_deref_mut() {
                        cb.reserved = Some(item);
                    }
                }
            }
        }
    }
    let lock_time = c.take(4)?;
    let mut e = sha256d::Hash::engine();
    e.input(&c.b[version]);
    e.input(&c.b[body_start..body_end]);
    e.input(&c.b[lock_time]);
    let txid = sha256d::Hash::from_engine(e).to_byte_array();
    let wtxid = if segwit {
        sha256d::Hash::hash(&c.b[start..c.at]).to_byte_array()
    } else {
        txid
    };
    Ok((txid, wtxid, 8 + body_end - body_start, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::mining::{build_block, op_true_payout, spend_op_true, Template};
    use bitcoin::consensus::encode::serialize;

    /// A segwit block: coinbase with commitment, two witness spends and a legacy one.
    fn block() -> bitcoin::Block {
        let params = crate::chain::params::Params::for_chain(crate::config::Chain::Regtest);
        let t = Template {
            height: 500,
            prev: bitcoin::BlockHash::all_zeros(),
            time: 1_700_000_000,
            bits: params.pow_limit_bits(),
            fees: 3000,
        };
        let mut legacy = spend_op_true(bitcoin::OutPoint::default(), 50_000);
        legacy.input[0].witness = bitcoin::Witness::new();
        legacy.input[0].script_sig = bitcoin::ScriptBuf::from_bytes(vec![0x51]);
        let txs = vec![
            spend_op_true(
                bitcoin::OutPoint::new(bitcoin::Txid::all_zeros(), 1),
                90_000,
            ),
            spend_op_true(
                bitcoin::OutPoint::new(bitcoin::Txid::all_zeros(), 2),
                80_000,
            ),
            legacy,
        ];
        build_block(&params, &t, op_true_payout(), txs)
    }

    #[test]
    fn a_stored_block_checks_and_every_damaged_byte_is_found() {
        let block = block();
        let bytes = serialize(&block);
        let summary = check(&bytes).unwrap();
        let txids: Vec<_> = block.txdata.iter().map(|t| t.compute_txid()).collect();
        assert_eq!(summary.txids, txids);
        assert_eq!(summary, RawBlock::of(&block).summary);
        // Any byte after the header (which the caller checks by its hash) flipped.
        for at in 80..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(check(&bad).is_err(), "byte {at} of {}", bytes.len());
        }
        assert!(check(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(check(&longer), Err(RawBlockError::Trailing(1)));
    }
}
