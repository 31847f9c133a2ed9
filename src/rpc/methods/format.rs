//! Core's JSON of transactions and scripts, as structs serialized straight to text: a block's
//! thousands of transactions (`getblock` verbosity 2) are written without building a
//! `serde_json::Value` tree first. Field order is Core's.

use crate::config::Chain;
use bitcoin::{Script, Transaction};
use serde::Serialize;

/// A decoded transaction (`decoderawtransaction`, `getrawtransaction` verbose, `getblock` 2).
#[derive(Serialize)]
pub struct TxJson {
    txid: String,
    hash: String,
    version: i32,
    size: usize,
    vsize: usize,
    weight: u64,
    locktime: u32,
    vin: Vec<InputJson>,
    vout: Vec<OutputJson>,
    /// With the spent coins (getblock 3): what the inputs paid over the outputs, BTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee: Option<f64>,
    hex: String,
}

#[derive(Serialize)]
struct InputJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    coinbase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    txid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vout: Option<u32>,
    #[serde(rename = "scriptSig", skip_serializing_if = "Option::is_none")]
    script_sig: Option<ScriptSigJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    txinwitness: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prevout: Option<PrevoutJson>,
    sequence: u32,
}

/// The coin an input spent (getblock verbosity 3).
#[derive(Serialize)]
struct PrevoutJson {
    generated: bool,
    height: u32,
    value: f64,
    #[serde(rename = "scriptPubKey")]
    script_pub_key: ScriptJson,
}

#[derive(Serialize)]
struct ScriptSigJson {
    asm: String,
    hex: String,
}

#[derive(Serialize)]
struct OutputJson {
    value: f64,
    n: usize,
    #[serde(rename = "scriptPubKey")]
    script_pub_key: ScriptJson,
}

/// Core's scriptPubKey object.
#[derive(Serialize)]
pub struct ScriptJson {
    asm: String,
    hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl TxJson {
    /// `tx` as Core shows it on `chain`.
    pub fn new(tx: &Transaction, chain: Chain) -> TxJson {
        TxJson::with_prevouts(tx, chain, None)
    }

    /// `tx` with the coins its inputs spent, one per input (getblock verbosity 3): each
    /// input's `prevout`, and the fee.
    pub fn with_prevouts(
        tx: &Transaction,
        chain: Chain,
        prevouts: Option<&[crate::chain::utxo::Coin]>,
    ) -> TxJson {
        let network = chain.bitcoin_network();
        let coinbase = tx.is_coinbase();
        let prevouts = prevouts.filter(|p| p.len() == tx.input.len() && !coinbase);
        let vin = tx
            .input
            .iter()
            .enumerate()
            .map(|(n, i)| InputJson {
                coinbase: coinbase.then(|| crate::hex::lower(i.script_sig.as_bytes())),
                txid: (!coinbase).then(|| i.previous_output.txid.to_string()),
                vout: (!coinbase).then_some(i.previous_output.vout),
                script_sig: (!coinbase).then(|| ScriptSigJson {
                    asm: i.script_sig.to_asm_string(),
                    hex: crate::hex::lower(i.script_sig.as_bytes()),
                }),
                txinwitness: i.witness.iter().map(crate::hex::lower).collect(),
                prevout: prevouts.map(|p| PrevoutJson {
                    generated: p[n].coinbase,
                    height: p[n].height,
                    value: p[n].output.value.to_btc(),
                    script_pub_key: ScriptJson::new(&p[n].output.script_pubkey, network),
                }),
                sequence: i.sequence.0,
            })
            .collect();
        let vout = tx
            .output
            .iter()
            .enumerate()
            .map(|(n, o)| OutputJson {
                value: o.value.to_btc(),
                n,
                script_pub_key: ScriptJson::new(&o.script_pubkey, network),
            })
            .collect();
        TxJson {
            txid: tx.compute_txid().to_string(),
            hash: tx.compute_wtxid().to_string(),
            version: tx.version.0,
            size: tx.total_size(),
            vsize: tx.vsize(),
            weight: tx.weight().to_wu(),
            locktime: tx.lock_time.to_consensus_u32(),
            vin,
            vout,
            fee: prevouts.map(|p| {
                let paid: u64 = p.iter().map(|c| c.output.value.to_sat()).sum();
                let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
                bitcoin::Amount::from_sat(paid.saturating_sub(out)).to_btc()
            }),
            hex: crate::hex::lower(&bitcoin::consensus::encode::serialize(tx)),
        }
    }
}

/// A test of a script's form (`Script::is_p2pkh`, ...).
type ScriptTest = fn(&Script) -> bool;

impl ScriptJson {
    /// `script` with its type and, when it has one, its address on `network`.
    pub fn new(script: &Script, network: bitcoin::Network) -> ScriptJson {
        // Core's names, tried in Core's order.
        const KINDS: [(ScriptTest, &str); 8] = [
            (Script::is_p2pkh, "pubkeyhash"),
            (Script::is_p2sh, "scripthash"),
            (Script::is_p2wpkh, "witness_v0_keyhash"),
            (Script::is_p2wsh, "witness_v0_scripthash"),
            (Script::is_p2tr, "witness_v1_taproot"),
            (Script::is_op_return, "nulldata"),
            (Script::is_p2pk, "pubkey"),
            (Script::is_multisig, "multisig"),
        ];
        let kind = KINDS
            .iter()
            .find(|(is, _)| is(script))
            .map_or("nonstandard", |(_, name)| name);
        ScriptJson {
            asm: script.to_asm_string(),
            hex: crate::hex::lower(script.as_bytes()),
            address: bitcoin::Address::from_script(script, network)
                .ok()
                .map(|a| a.to_string()),
            kind,
        }
    }
}
