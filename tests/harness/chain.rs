//! Chain builder: a deterministic wallet and regtest chains (realistic spends, fan-outs) built
//! through the library.

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, Secp256k1, TapTweak};
use bitcoin::secp256k1::{All, Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, ecdsa, taproot, transaction, Amount, Block, CompressedPublicKey, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Witness,
};
use bllvm_node::chain::chainstate::ChainState;
use bllvm_node::chain::mining::{build_block, grind};
use bllvm_node::chain::params::Params;
use bllvm_node::config::Chain;

/// A fixed clock for regtest chains: blocks get max(NOW, mtp + 1).
pub const NOW: i64 = 1_700_000_000;

/// One key, usable as P2WPKH and as a P2TR key path.
pub struct Wallet {
    secp: Secp256k1<All>,
    keypair: Keypair,
    pubkey: CompressedPublicKey,
}

impl Wallet {
    /// The key with all 32 bytes equal to `seed` (fixed, so tests are deterministic).
    pub fn new(seed: u8) -> Wallet {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[seed; 32]).unwrap();
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let pubkey = CompressedPublicKey(sk.public_key(&secp));
        Wallet {
            secp,
            keypair,
            pubkey,
        }
    }

    /// P2WPKH output script.
    pub fn p2wpkh(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.pubkey.wpubkey_hash())
    }

    /// P2PKH output script.
    pub fn p2pkh(&self) -> ScriptBuf {
        ScriptBuf::new_p2pkh(&self.pubkey.pubkey_hash())
    }

    /// P2TR output script (key path only).
    pub fn p2tr(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr(&self.secp, self.keypair.x_only_public_key().0, None)
    }

    /// A version-2 transaction spending `inputs` to `outputs`, each input signed by `signer`.
    pub fn spend_with(
        &self,
        signer: &Wallet,
        inputs: &[(OutPoint, TxOut)],
        outputs: Vec<TxOut>,
    ) -> Transaction {
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        signer.sign(&mut tx, inputs);
        tx
    }

    /// Signs every input of `tx` (P2WPKH, P2PKH or P2TR key path, by the spent script).
    pub fn sign(&self, tx: &mut Transaction, inputs: &[(OutPoint, TxOut)]) {
        let prevouts: Vec<TxOut> = inputs.iter().map(|(_, o)| o.clone()).collect();
        let mut witnesses = Vec::new();
        let mut script_sigs = vec![ScriptBuf::new(); inputs.len()];
        {
            let mut cache = SighashCache::new(&*tx);
            for (i, (_, prev)) in inputs.iter().enumerate() {
                if prev.script_pubkey.is_p2pkh() {
                    let h = cache
                        .legacy_signature_hash(
                            i,
                            &prev.script_pubkey,
                            EcdsaSighashType::All.to_u32(),
                        )
                        .unwrap();
                    let msg = Message::from_digest(h.to_byte_array());
                    let sig = ecdsa::Signature {
                        signature: self.secp.sign_ecdsa(&msg, &self.keypair.secret_key()),
                        sighash_type: EcdsaSighashType::All,
                    };
                    script_sigs[i] = bitcoin::script::Builder::new()
                        .push_slice(sig.serialize())
                        .push_key(&bitcoin::PublicKey::new(self.pubkey.0))
                        .into_script();
                    witnesses.push(Witness::new());
                } else if prev.script_pubkey.is_p2tr() {
                    let h = cache
                        .taproot_key_spend_signature_hash(
                            i,
                            &Prevouts::All(&prevouts),
                            TapSighashType::Default,
                        )
                        .unwrap();
                    let tweaked = self.keypair.tap_tweak(&self.secp, None);
                    let msg = Message::from_digest(h.to_byte_array());
                    let sig = self
                        .secp
                        .sign_schnorr_no_aux_rand(&msg, &tweaked.to_keypair());
                    witnesses.push(Witness::p2tr_key_spend(&taproot::Signature {
                        signature: sig,
                        sighash_type: TapSighashType::Default,
                    }));
                } else {
                    let h = cache
                        .p2wpkh_signature_hash(
                            i,
                            &prev.script_pubkey,
                            prev.value,
                            EcdsaSighashType::All,
                        )
                        .unwrap();
                    let msg = Message::from_digest(h.to_byte_array());
                    let sig = self.secp.sign_ecdsa(&msg, &self.keypair.secret_key());
                    witnesses.push(Witness::p2wpkh(
                        &ecdsa::Signature {
                            signature: sig,
                            sighash_type: EcdsaSighashType::All,
                        },
                        &self.pubkey.0,
                    ));
                }
            }
        }
        for ((input, w), s) in tx.input.iter_mut().zip(witnesses).zip(script_sigs) {
            input.witness = w;
            input.script_sig = s;
        }
    }

    /// Signed by this wallet.
    pub fn spend(&self, inputs: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        self.spend_with(self, inputs, outputs)
    }
}

/// A transaction as `sendrawtransaction` takes it.
pub fn hex(tx: &Transaction) -> String {
    bitcoin::consensus::encode::serialize_hex(tx)
}

/// An output of `value` satoshis to `script`.
pub fn out(value: u64, script: ScriptBuf) -> TxOut {
    TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script,
    }
}

/// A regtest chain with `blocks` mined to `wallet`'s P2WPKH.
pub fn regtest_chain(wallet: &Wallet, blocks: u32) -> ChainState {
    let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
    for _ in 0..blocks {
        cs.mine(wallet.p2wpkh(), vec![], NOW).unwrap();
    }
    cs
}

/// The coinbase output of the active block at `height`.
pub fn coinbase_utxo(cs: &ChainState, height: u32) -> (OutPoint, TxOut) {
    let block = cs.block(&cs.hash_at(height).unwrap()).unwrap();
    let cb = &block.txdata[0];
    (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone())
}

/// A block on the tip with `txs`, changed by `edit`, merkle root recomputed unless `keep_root`, then ground.
pub fn block_with(
    cs: &ChainState,
    payout: ScriptBuf,
    txs: Vec<Transaction>,
    edit: impl FnOnce(&mut Block),
) -> Block {
    let fees = cs.fees_of(&txs).unwrap_or(0);
    let mut block = build_block(cs.params(), &cs.template(NOW, fees), payout, txs);
    edit(&mut block);
    assert!(grind(&mut block.header));
    block
}

/// xorshift64*: a fixed-seed generator, so tests that pick random moments pick the same ones.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// 101 funding blocks, one fan-out block, then `blocks` blocks of `per_block` 1-in-1-out spends,
/// alternating P2WPKH and P2TR.
pub fn spend_chain(blocks: u32, per_block: usize) -> Vec<Block> {
    let w = Wallet::new(1);
    let mut cs = regtest_chain(&w, 101);
    let (op, prev) = coinbase_utxo(&cs, 1);
    let each = (prev.value.to_sat() - 10_000) / per_block as u64;
    let script = |j: usize| if j % 2 == 0 { w.p2tr() } else { w.p2wpkh() };
    let fan = w.spend(
        &[(op, prev)],
        (0..per_block).map(|j| out(each, script(j))).collect(),
    );
    let mut utxos: Vec<(OutPoint, TxOut)> = fan
        .output
        .iter()
        .enumerate()
        .map(|(j, o)| (OutPoint::new(fan.compute_txid(), j as u32), o.clone()))
        .collect();
    cs.mine(w.p2wpkh(), vec![fan], NOW).unwrap();
    for _ in 0..blocks {
        let txs: Vec<_> = utxos
            .iter()
            .enumerate()
            .map(|(j, (op, prev))| {
                w.spend(
                    &[(*op, prev.clone())],
                    vec![out(prev.value.to_sat() - 500, script(j + 1))],
                )
            })
            .collect();
        utxos = txs
            .iter()
            .map(|t| (OutPoint::new(t.compute_txid(), 0), t.output[0].clone()))
            .collect();
        cs.mine(w.p2wpkh(), txs, NOW).unwrap();
    }
    (1..=cs.tip().1)
        .map(|h| cs.block(&cs.hash_at(h).unwrap()).unwrap())
        .collect()
}

/// A regtest chain of `blocks` blocks paying OP_TRUE coinbases, where each block from height
/// 101 on also spends the coinbase of 100 blocks before into `outputs` P2WPKH outputs: a UTXO
/// set that grows by `outputs` a block, with no signatures to make.
pub fn fanout_chain(blocks: u32, outputs: usize) -> Vec<Block> {
    use bllvm_node::chain::mining::{op_true_payout, spend_op_true};
    let mut cs = ChainState::new(Params::for_chain(Chain::Regtest));
    for h in 1..=blocks {
        let mut txs = Vec::new();
        if h > 100 && outputs > 0 {
            let cb = cs.block(&cs.hash_at(h - 100).unwrap()).unwrap().txdata[0].clone();
            let value = cb.output[0].value.to_sat();
            let mut tx = spend_op_true(OutPoint::new(cb.compute_txid(), 0), value);
            let each = (value - 100_000) / outputs as u64;
            tx.output = (0..outputs)
                .map(|i| {
                    let mut hash = [0u8; 20];
                    hash[..4].copy_from_slice(&h.to_le_bytes());
                    hash[4..12].copy_from_slice(&(i as u64).to_le_bytes());
                    out(
                        each,
                        ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(hash)),
                    )
                })
                .collect();
            txs.push(tx);
        }
        cs.mine(op_true_payout(), txs, NOW).unwrap();
    }
    (1..=cs.tip().1)
        .map(|h| cs.block(&cs.hash_at(h).unwrap()).unwrap())
        .collect()
}
