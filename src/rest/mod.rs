//! Bitcoin Core's REST interface (`[rpc] rest = true`, Core's `-rest`): unauthenticated,
//! read-only, on the RPC port. Requests get their own bounded queue and workers (`rest-N`),
//! behind the per-address rate limit, so a REST flood holds neither JSON-RPC workers nor the
//! probes. Lookups run on the chain thread; block data is read by the worker, and binary
//! answers are the stored bytes (checked, never decoded).

pub mod path;

use crate::http::reply::Reply;
use crate::rpc::methods::{self, blockchain};
use crate::rpc::protocol::{code, Answer, Params, RpcError};
use crate::rpc::RpcServer;
use bitcoin::consensus::encode::serialize;
use path::{Format, Refusal, Rest};
use serde_json::{json, Value};
use std::sync::Arc;

/// Answers REST requests with the JSON-RPC server's context (chain requests, views).
pub struct RestServer {
    /// The RPC server, for its method context.
    pub rpc: Arc<RpcServer>,
}

fn error(status: u16, message: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain",
        headers: Vec::new(),
        body: format!("{message}\r\n").into_bytes(),
    }
}

/// The answer to an RPC error, as Core's REST maps it: unknown block 404, bad input 400.
fn from_rpc(e: &RpcError, hash: Option<&bitcoin::BlockHash>) -> Reply {
    match e.code {
        code::INVALID_ADDRESS_OR_KEY => error(
            404,
            &hash.map_or_else(|| "not found".into(), |h| format!("{h} not found")),
        ),
        code::INVALID_PARAMETER => error(404, &e.message),
        _ if e.message.contains("pruned") => error(
            404,
            &hash.map_or_else(
                || e.message.clone(),
                |h| format!("{h} not available (pruned data)"),
            ),
        ),
        _ => error(500, &e.message),
    }
}

/// Bytes in the asked format: `.bin` as they are, `.hex` as hex and a newline.
fn bytes(format: Format, data: &[u8]) -> Reply {
    match format {
        Format::Bin => Reply {
            status: 200,
            content_type: "application/octet-stream",
            headers: Vec::new(),
            body: data.to_vec(),
        },
        _ => Reply {
            status: 200,
            content_type: "text/plain",
            headers: Vec::new(),
            body: format!("{}\n", crate::hex::lower(data)).into_bytes(),
        },
    }
}

fn json_text(text: String) -> Reply {
    let mut body = text.into_bytes();
    body.push(b'\n');
    Reply {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        body,
    }
}

impl RestServer {
    /// Answers a GET of `url` (a `/rest/` path with its query).
    pub fn answer(&self, url: &str) -> Reply {
        match path::parse(url) {
            Ok(r) => self.serve(r),
            Err(Refusal { status, message }) => error(status, &message),
        }
    }

    fn call(&self, method: &str, params: Vec<Value>) -> Result<Answer, RpcError> {
        methods::call(&self.rpc.methods, method, &Params::Positional(params))
    }

    fn serve(&self, r: Rest) -> Reply {
        let ctx = &self.rpc.methods;
        let answer = |a: Result<Answer, RpcError>, hash: Option<&bitcoin::BlockHash>| match a {
            Ok(Answer::Json(text)) => json_text(text),
            Ok(Answer::Value(v)) => json_text(v.to_string()),
            Err(e) => from_rpc(&e, hash),
        };
        match r {
            Rest::Block {
                hash,
                format: Format::Json,
                tx_details,
            } => {
                // Core's REST block is verbosity 3: transactions with their inputs' prevouts.
                let verbosity = if tx_details { 3 } else { 1 };
                answer(
                    self.call("getblock", vec![json!(hash.to_string()), json!(verbosity)]),
                    Some(&hash),
                )
            }
            Rest::Block { hash, format, .. } => match self.raw_block(hash) {
                Ok(raw) => bytes(format, &raw.bytes),
                Err(reply) => reply,
            },
            Rest::BlockPart {
                hash,
                format,
                offset,
                size,
            } => match self.raw_block(hash).map(|r| r.bytes) {
                Ok(raw) => {
                    let end = offset.checked_add(size).filter(|e| *e <= raw.len() as u64);
                    match end {
                        Some(end) => bytes(format, &raw[offset as usize..end as usize]),
                        None => error(
                            400,
                            &format!(
                                "Requested part {offset}+{size} is past the block's {} bytes",
                                raw.len()
                            ),
                        ),
                    }
                }
                Err(reply) => reply,
            },
            Rest::Headers {
                hash,
                count,
                format,
            } => {
                let found = methods::on_chain(ctx, "getblockheader", move |cs| {
                    // Core: from the block along the active chain; unknown or off it, none.
                    let Some(e) = cs.tree().get(&hash) else {
                        return Vec::new();
                    };
                    if cs.hash_at(e.height) != Some(hash) {
                        return Vec::new();
                    }
                    (e.height..e.height.saturating_add(count))
                        .map_while(|h| cs.hash_at(h))
                        .filter_map(|h| {
                            let header = cs.tree().get(&h)?.header;
                            let json = (format == Format::Json)
                                .then(|| {
                                    blockchain::getblockheader(
                                        cs,
                                        &Params::Positional(vec![json!(h.to_string())]),
                                    )
                                    .ok()
                                })
                                .flatten();
                            Some((header, json))
                        })
                        .collect::<Vec<_>>()
                });
                match found {
                    Err(e) => from_rpc(&e, Some(&hash)),
                    Ok(headers) if format == Format::Json => json_text(
                        Value::Array(headers.into_iter().filter_map(|(_, j)| j).collect())
                            .to_string(),
                    ),
                    Ok(headers) => {
                        let raw: Vec<u8> = headers.iter().flat_map(|(h, _)| serialize(h)).collect();
                        bytes(format, &raw)
                    }
                }
            }
            Rest::BlockHashByHeight { height, format } => {
                let found = methods::on_chain(ctx, "getblockhash", move |cs| cs.hash_at(height));
                match found {
                    Err(e) => from_rpc(&e, None),
                    Ok(None) => error(404, "Block height out of range"),
                    Ok(Some(h)) => match format {
                        Format::Json => {
                            json_text(json!({ "blockhash": h.to_string() }).to_string())
                        }
                        Format::Bin => bytes(format, &serialize(&h)),
                        Format::Hex => Reply {
                            status: 200,
                            content_type: "text/plain",
                            headers: Vec::new(),
                            body: format!("{h}\n").into_bytes(),
                        },
                    },
                }
            }
            Rest::SpentTxOuts { hash, format } => self.spent_txouts(hash, format),
            // No mempool and no transaction index yet: as Core without either.
            Rest::Tx { txid } => error(404, &format!("{txid} not found")),
            Rest::GetUtxos { outpoints, format } => self.get_utxos(outpoints, format),
            Rest::ChainInfo => answer(self.call("getblockchaininfo", vec![]), None),
            Rest::MempoolInfo => answer(self.call("getmempoolinfo", vec![]), None),
            Rest::MempoolContents => answer(self.call("getrawmempool", vec![json!(true)]), None),
        }
    }

    /// Core's `spenttxouts`: for each transaction of the block, the outputs its inputs spent
    /// (none for the coinbase), from the undo data; in binary a count of transactions, then
    /// for each a count of outputs and the outputs.
    fn spent_txouts(&self, hash: bitcoin::BlockHash, format: Format) -> Reply {
        let undo = methods::on_chain(&self.rpc.methods, "getblock", move |cs| {
            let e = cs.tree().get(&hash)?;
            // The genesis block spends nothing and has no undo data.
            Some((e.height, cs.load_undo(&hash)))
        });
        let spent = match undo {
            Err(e) => return from_rpc(&e, Some(&hash)),
            Ok(None) => return error(404, &format!("{hash} not found")),
            Ok(Some((0, _))) => Vec::new(),
            Ok(Some((_, Ok(Some(changes))))) => changes.spent,
            Ok(Some((_, Ok(None)))) => {
                return error(
                    404,
                    &format!("{hash} undo data not available (pruned or not connected)"),
                )
            }
            Ok(Some((_, Err(f)))) => {
                return error(
                    500,
                    &format!("Undo data unreadable or corrupt on this node ({f})"),
                )
            }
        };
        // The read checked the block already; its walk counted each transaction's inputs.
        let inputs = match self.raw_block(hash) {
            Ok(raw) => raw.summary.inputs,
            Err(reply) => return reply,
        };
        // Every input but the coinbase's spent one coin, in order.
        let wanted: usize = inputs.iter().skip(1).sum();
        if wanted != spent.len() {
            return error(500, &format!("{hash}: undo data does not match the block"));
        }
        let mut coins = spent.into_iter().map(|(_, c)| c.output);
        let per_tx: Vec<Vec<bitcoin::TxOut>> = inputs
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 {
                    Vec::new()
                } else {
                    coins.by_ref().take(*n).collect()
                }
            })
            .collect();
        if format == Format::Json {
            let network = self.rpc.methods.chain.bitcoin_network();
            let v: Vec<Vec<Value>> = per_tx
                .iter()
                .map(|outs| {
                    outs.iter()
                        .map(|o| {
                            json!({
                                "value": o.value.to_btc(),
                                "scriptPubKey": blockchain::script_json(&o.script_pubkey, network),
                            })
                        })
                        .collect()
                })
                .collect();
            return json_text(serde_json::to_string(&v).unwrap_or_default());
        }
        let mut out = serialize(&bitcoin::VarInt(per_tx.len() as u64));
        for outs in &per_tx {
            out.extend(serialize(outs));
        }
        bytes(format, &out)
    }

    /// Core's `getutxos`: which of the outputs are unspent at the tip, and those coins.
    fn get_utxos(&self, outpoints: Vec<bitcoin::OutPoint>, format: Format) -> Reply {
        let found = methods::on_chain(&self.rpc.methods, "gettxout", move |cs| {
            let (tip, height) = cs.tip();
            let coins: Vec<_> = outpoints.iter().map(|op| cs.coin(op)).collect();
            (tip, height, coins)
        });
        let (tip, height, coins) = match found {
            Ok(f) => f,
            Err(e) => return from_rpc(&e, None),
        };
        let mut bitmap = vec![0u8; coins.len().div_ceil(8)];
        for (i, c) in coins.iter().enumerate() {
            if c.is_some() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        let unspent: Vec<_> = coins.iter().flatten().collect();
        if format == Format::Json {
            let network = self.rpc.methods.chain.bitcoin_network();
            let v = json!({
                "chainHeight": height,
                "chaintipHash": tip.to_string(),
                "bitmap": coins.iter().map(|c| if c.is_some() { '1' } else { '0' }).collect::<String>(),
                "utxos": unspent.iter().map(|c| json!({
                    "height": c.height,
                    "value": c.output.value.to_btc(),
                    "scriptPubKey": blockchain::script_json(&c.output.script_pubkey, network),
                })).collect::<Vec<_>>(),
            });
            return json_text(v.to_string());
        }
        // Core's layout: height (int32), tip, the bitmap as a byte vector, then each coin as
        // a dummy version (uint32 0), its height (uint32) and the output.
        let mut out = serialize(&(height as i32));
        out.extend(serialize(&tip));
        out.extend(serialize(&bitmap));
        out.extend(serialize(&bitcoin::VarInt(unspent.len() as u64)));
        for c in unspent {
            out.extend(0u32.to_le_bytes());
            out.extend(c.height.to_le_bytes());
            out.extend(serialize(&c.output));
        }
        bytes(format, &out)
    }

    /// The stored block, checked, with what the check learnt; or the refusal (404 unknown or
    /// pruned).
    fn raw_block(
        &self,
        hash: bitcoin::BlockHash,
    ) -> Result<crate::chain::raw_block::RawBlock, Reply> {
        let access = methods::on_chain(&self.rpc.methods, "getblock", move |cs| {
            cs.tree().get(&hash)?;
            cs.block_access(&hash)
        })
        .map_err(|e| from_rpc(&e, Some(&hash)))?
        .ok_or_else(|| error(404, &format!("{hash} not found")))?;
        match access.raw(&hash) {
            Ok(Some(raw)) => Ok(raw),
            Ok(None) => Err(error(404, &format!("{hash} not available (pruned data)"))),
            Err(f) => Err(error(
                500,
                &format!("Block data unreadable or corrupt on this node ({f})"),
            )),
        }
    }
}
