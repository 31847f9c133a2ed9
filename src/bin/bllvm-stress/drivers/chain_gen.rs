//! A deterministic regtest chain with realistic transactions (P2WPKH, P2TR key path, P2PKH,
//! many-input consolidations, OP_RETURN), built once per seed and size and cached.

use crate::chain::{coinbase_utxo, out, regtest_chain, Wallet, NOW};
use crate::node::Node;
use crate::ops::Rng;
use bitcoin::consensus::encode::{deserialize_partial, serialize, serialize_hex};
use bitcoin::{Amount, Block, OutPoint, ScriptBuf, TxOut};
use std::path::PathBuf;

/// The generated blocks, from height 1.
pub struct GenChain {
    /// Blocks at heights 1..=len.
    pub blocks: Vec<Block>,
    /// Transactions in blocks up to and including each height (index = height).
    pub txs_upto: Vec<u64>,
    /// Serialized size of all blocks, bytes.
    pub bytes: u64,
}

impl GenChain {
    /// Its tip: (height, hash).
    pub fn tip(&self) -> (u64, String) {
        let b = self.blocks.last().expect("a chain");
        (self.blocks.len() as u64, b.block_hash().to_string())
    }

    /// Submits every block to `node` over JSON-RPC.
    pub fn submit_to(&self, node: &Node) -> Result<(), String> {
        self.submit_range(node, 0..self.blocks.len())
    }

    /// Submits the blocks at indices `range` (height - 1) to `node`.
    pub fn submit_range(&self, node: &Node, range: std::ops::Range<usize>) -> Result<(), String> {
        for b in &self.blocks[range] {
            let r = node.rpc("submitblock", serde_json::json!([serialize_hex(b)]))?;
            if !r.is_null() {
                return Err(format!("block {} refused: {r}", b.block_hash()));
            }
        }
        Ok(())
    }
}

/// Where generated chains are kept: `$BLLVM_STRESS_CACHE`, else `~/.cache/bllvm-node/stress`.
fn cache_dir() -> PathBuf {
    std::env::var_os("BLLVM_STRESS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/bllvm-node/stress")
        })
}

/// The chain for `seed`: 101 funding blocks then `blocks` blocks of `per_block` transactions,
/// from the cache when built before.
pub fn chain(seed: u64, blocks: u32, per_block: usize) -> GenChain {
    let path = cache_dir().join(format!("chain-v1-s{seed}-b{blocks}-t{per_block}.bin"));
    let blocks: Vec<Block> = match std::fs::read(&path).ok().and_then(|b| decode(&b)) {
        Some(b) => b,
        None => {
            log::info!(
                "building the chain for seed {seed} ({blocks} blocks of {per_block} transactions) once; it is cached in {}",
                path.display()
            );
            let b = build(seed, blocks, per_block);
            let _ = std::fs::create_dir_all(cache_dir());
            let tmp = path.with_extension("tmp");
            let bytes: Vec<u8> = b.iter().flat_map(serialize).collect();
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
            b
        }
    };
    let mut txs_upto = vec![0];
    let mut bytes = 0;
    for b in &blocks {
        txs_upto.push(txs_upto.last().unwrap() + b.txdata.len() as u64);
        bytes += b.total_size() as u64;
    }
    GenChain {
        blocks,
        txs_upto,
        bytes,
    }
}

/// Blocks laid end to end, as the cache holds them; None if any is damaged.
fn decode(mut bytes: &[u8]) -> Option<Vec<Block>> {
    let mut blocks = Vec::new();
    while !bytes.is_empty() {
        let (b, used) = deserialize_partial::<Block>(bytes).ok()?;
        blocks.push(b);
        bytes = &bytes[used..];
    }
    (!blocks.is_empty()).then_some(blocks)
}

#[derive(Clone, Copy)]
enum Kind {
    Payment,
    Consolidation,
    OpReturn,
}

fn build(seed: u64, blocks: u32, per_block: usize) -> Vec<Block> {
    let w = Wallet::new(7);
    let mut rng = Rng::new(seed, "chain");
    let mut cs = regtest_chain(&w, 101);
    let scripts = [w.p2wpkh(), w.p2tr(), w.p2pkh()];
    let script = |rng: &mut Rng| scripts[rng.below(3) as usize].clone();
    // Coinbase 1 fans out into twice a block's inputs, of every script type.
    let (op, prev) = coinbase_utxo(&cs, 1);
    let n = per_block * 2 + 20;
    let each = (prev.value.to_sat() - 100_000) / n as u64;
    let fan = w.spend(
        &[(op, prev)],
        (0..n).map(|_| out(each, script(&mut rng))).collect(),
    );
    let mut pool = outputs(&fan);
    cs.mine(w.p2wpkh(), vec![fan], NOW).expect("fan-out block");
    for h in 0..blocks {
        // Each block also brings a matured coinbase into the pool, so value never runs out.
        pool.push(coinbase_utxo(&cs, h + 2));
        let mut txs = Vec::with_capacity(per_block);
        let mut fresh = Vec::new();
        for _ in 0..per_block {
            let kind = *rng.pick(&[
                (Kind::Payment, 70),
                (Kind::Consolidation, 10),
                (Kind::OpReturn, 20),
            ]);
            let k = match kind {
                Kind::Consolidation if pool.len() > 40 => rng.range(5, 20) as usize,
                _ => 1,
            };
            if pool.is_empty() {
                break;
            }
            let inputs: Vec<(OutPoint, TxOut)> = (0..k.min(pool.len()))
                .map(|_| pool.swap_remove(rng.below(pool.len() as u64) as usize))
                .collect();
            let value: u64 = inputs.iter().map(|(_, o)| o.value.to_sat()).sum::<u64>() - 1_000;
            let outs = match kind {
                Kind::Payment if value > 200_000 => {
                    let a = value / 4 + rng.below(value / 2);
                    vec![out(a, script(&mut rng)), out(value - a, script(&mut rng))]
                }
                Kind::OpReturn => {
                    let mut data = [0u8; 40];
                    data[..8].copy_from_slice(&rng.next().to_le_bytes());
                    vec![
                        out(value, script(&mut rng)),
                        TxOut {
                            value: Amount::ZERO,
                            script_pubkey: ScriptBuf::new_op_return(data),
                        },
                    ]
                }
                _ => vec![out(value, script(&mut rng))],
            };
            let tx = w.spend(&inputs, outs);
            fresh.extend(
                outputs(&tx)
                    .into_iter()
                    .filter(|(_, o)| o.value.to_sat() >= 10_000),
            );
            txs.push(tx);
        }
        cs.mine(w.p2wpkh(), txs, NOW).expect("generated block");
        pool.extend(fresh);
    }
    (1..=cs.tip().1)
        .map(|h| cs.block(&cs.hash_at(h).unwrap()).unwrap())
        .collect()
}

fn outputs(tx: &bitcoin::Transaction) -> Vec<(OutPoint, TxOut)> {
    let txid = tx.compute_txid();
    tx.output
        .iter()
        .enumerate()
        .map(|(i, o)| (OutPoint::new(txid, i as u32), o.clone()))
        .collect()
}
