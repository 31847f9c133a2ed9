//! Bitcoin Core's REST paths, parsed into requests or the error Core answers: a pure function
//! of the path and query, so every status code is tested without a socket.

use bitcoin::BlockHash;
use std::str::FromStr;

/// Most headers one request may ask for (Core's MAX_REST_HEADERS_RESULTS).
pub const MAX_HEADERS: u32 = 2000;
/// Most outputs one `getutxos` may ask about (Core's MAX_GETUTXOS_OUTPOINTS).
pub const MAX_OUTPOINTS: usize = 15;

/// The suffix that picks the answer's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.bin`: consensus bytes.
    Bin,
    /// `.hex`: those bytes as hex, and a newline.
    Hex,
    /// `.json`.
    Json,
}

/// A REST request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rest {
    /// `/rest/block/<hash>` and `/rest/block/notxdetails/<hash>`.
    Block {
        /// The block.
        hash: BlockHash,
        /// The format.
        format: Format,
        /// Whole transactions in JSON (else txids).
        tx_details: bool,
    },
    /// `/rest/headers/<hash>?count=N` and `/rest/headers/<N>/<hash>`.
    Headers {
        /// The first header.
        hash: BlockHash,
        /// How many, along the active chain.
        count: u32,
        /// The format.
        format: Format,
    },
    /// `/rest/blockhashbyheight/<height>`.
    BlockHashByHeight {
        /// The height.
        height: u32,
        /// The format.
        format: Format,
    },
    /// `/rest/blockpart/<hash>?offset=&size=`.
    BlockPart {
        /// The block.
        hash: BlockHash,
        /// The format (bin or hex).
        format: Format,
        /// First byte.
        offset: u64,
        /// Bytes.
        size: u64,
    },
    /// `/rest/spenttxouts/<hash>` (Core PR 32540): the outputs each transaction spent.
    SpentTxOuts {
        /// The block.
        hash: BlockHash,
        /// The format.
        format: Format,
    },
    /// `/rest/tx/<txid>`: mempool or a transaction index only, as Core (neither exists yet).
    Tx {
        /// The transaction.
        txid: bitcoin::Txid,
    },
    /// `/rest/getutxos[/checkmempool]/<txid>-<n>/...`.
    GetUtxos {
        /// The outputs asked about (at most 15).
        outpoints: Vec<bitcoin::OutPoint>,
        /// The format.
        format: Format,
    },
    /// `/rest/chaininfo.json`.
    ChainInfo,
    /// `/rest/mempool/info.json`.
    MempoolInfo,
    /// `/rest/mempool/contents.json`.
    MempoolContents,
}

/// A request Core refuses: the status and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400 or 404.
    pub status: u16,
    /// Core's message.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Splits `name.ext` and reads the format, as Core's ParseDataFormat: no known suffix is 404.
fn format_of<'a>(last: &'a str, allowed: &[Format]) -> Result<(&'a str, Format), Refusal> {
    let available = allowed
        .iter()
        .map(|f| match f {
            Format::Bin => "bin",
            Format::Hex => "hex",
            Format::Json => "json",
        })
        .collect::<Vec<_>>()
        .join(", ");
    let not_found = || {
        refuse(
            404,
            format!("output format not found (available: {available})"),
        )
    };
    let (name, ext) = last.rsplit_once('.').ok_or_else(not_found)?;
    let format = match ext {
        "bin" => Format::Bin,
        "hex" => Format::Hex,
        "json" => Format::Json,
        _ => return Err(not_found()),
    };
    if !allowed.contains(&format) {
        return Err(not_found());
    }
    Ok((name, format))
}

fn hash(s: &str) -> Result<BlockHash, Refusal> {
    if s.len() != 64 {
        return Err(refuse(400, format!("Invalid hash: {s}")));
    }
    BlockHash::from_str(s).map_err(|_| refuse(400, format!("Invalid hash: {s}")))
}

fn query<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn header_count(s: &str) -> Result<u32, Refusal> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_HEADERS).contains(n))
        .ok_or_else(|| {
            refuse(
                400,
                format!(
                    "Header count is invalid or out of acceptable range (1-{MAX_HEADERS}): {s}"
                ),
            )
        })
}

/// Parses the part of the URL after `/rest/` (with its query string).
pub fn parse(url: &str) -> Result<Rest, Refusal> {
    use Format::{Bin, Hex, Json};
    let all = [Bin, Hex, Json];
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let rest = path
        .strip_prefix("/rest/")
        .ok_or_else(|| refuse(404, "not found"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["block", "notxdetails", last] | ["block", last] => {
            let tx_details = parts.len() == 2;
            let (h, format) = format_of(last, &all)?;
            Ok(Rest::Block {
                hash: hash(h)?,
                format,
                tx_details,
            })
        }
        // `/headers/<hash>?count=N`, or the older `/headers/<N>/<hash>`; Core checks the count
        // before the hash.
        ["headers", rest @ ..] if (1..=2).contains(&rest.len()) => {
            let (count, last) = match rest {
                [count, last] => (*count, *last),
                _ => (query(q, "count").unwrap_or("5"), rest[0]),
            };
            let (h, format) = format_of(last, &all)?;
            let count = header_count(count)?;
            Ok(Rest::Headers {
                hash: hash(h)?,
                count,
                format,
            })
        }
        ["blockhashbyheight", last] => {
            let (h, format) = format_of(last, &all)?;
            let height = h
                .parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| refuse(400, format!("Invalid height: {h}")))?;
            Ok(Rest::BlockHashByHeight { height, format })
        }
        ["blockpart", last] => {
            let (h, format) = format_of(last, &[Bin, Hex])?;
            let number = |key: &str| {
                query(q, key)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| refuse(400, format!("Invalid or missing {key}")))
            };
            Ok(Rest::BlockPart {
                hash: hash(h)?,
                format,
                offset: number("offset")?,
                size: number("size")?,
            })
        }
        ["spenttxouts", last] => {
            let (h, format) = format_of(last, &all)?;
            Ok(Rest::SpentTxOuts {
                hash: hash(h)?,
                format,
            })
        }
        ["tx", last] => {
            let (t, _) = format_of(last, &all)?;
            let txid = bitcoin::Txid::from_str(t)
                .ok()
                .filter(|_| t.len() == 64)
                .ok_or_else(|| refuse(400, format!("Invalid hash: {t}")))?;
            Ok(Rest::Tx { txid })
        }
        ["getutxos", rest @ ..] if !rest.is_empty() => {
            let (last, before) = rest.split_last().unwrap_or((&"", &[]));
            let (tail, format) = format_of(last, &all)?;
            let mut items: Vec<&str> = before.to_vec();
            items.push(tail);
            // `checkmempool` asks to see the mempool too; there is none yet, so it changes nothing.
            if items.first() == Some(&"checkmempool") {
                items.remove(0);
            }
            if items.is_empty() || items == [""] {
                return Err(refuse(400, "Error: empty request"));
            }
            if items.len() > MAX_OUTPOINTS {
                return Err(refuse(
                    400,
                    format!(
                        "Error: max outpoints exceeded (max: {MAX_OUTPOINTS}, tried: {})",
                        items.len()
                    ),
                ));
            }
            let outpoints = items
                .iter()
                .map(|i| {
                    let (t, n) = i.split_once('-')?;
                    let txid = bitcoin::Txid::from_str(t).ok().filter(|_| t.len() == 64)?;
                    Some(bitcoin::OutPoint::new(txid, n.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| refuse(400, "Parse error"))?;
            Ok(Rest::GetUtxos { outpoints, format })
        }
        ["blockfilter" | "blockfilterheaders", kind, ..] => Err(if *kind == "basic" {
            refuse(400, "Index is not enabled for filtertype basic")
        } else {
            refuse(400, format!("Unknown filtertype {kind}"))
        }),
        ["chaininfo.json"] => Ok(Rest::ChainInfo),
        ["chaininfo", ..] => Err(refuse(404, "output format not found (available: json)")),
        ["mempool", "info.json"] => Ok(Rest::MempoolInfo),
        ["mempool", "contents.json"] => Ok(Rest::MempoolContents),
        ["mempool", ..] => Err(refuse(404, "output format not found (available: json)")),
        _ => Err(refuse(404, "not found")),
    }
}

/// The metric label of a REST path: its endpoint, never the hash or height.
pub fn label(url: &str) -> &'static str {
    let path = url.split('?').next().unwrap_or("");
    const ENDPOINTS: [&str; 12] = [
        "/rest/block/",
        "/rest/spenttxouts/",
        "/rest/tx/",
        "/rest/getutxos/",
        "/rest/blockfilter/",
        "/rest/blockfilterheaders/",
        "/rest/headers/",
        "/rest/blockhashbyheight/",
        "/rest/blockpart/",
        "/rest/chaininfo",
        "/rest/mempool/",
        "/rest/",
    ];
    ENDPOINTS
        .into_iter()
        .find(|e| path.starts_with(e))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206";

    #[test]
    fn core_paths_parse() {
        let h: BlockHash = H.parse().unwrap();
        assert_eq!(
            parse(&format!("/rest/block/{H}.bin")),
            Ok(Rest::Block {
                hash: h,
                format: Format::Bin,
                tx_details: true
            })
        );
        assert_eq!(
            parse(&format!("/rest/block/notxdetails/{H}.json")),
            Ok(Rest::Block {
                hash: h,
                format: Format::Json,
                tx_details: false
            })
        );
        assert_eq!(
            parse(&format!("/rest/headers/{H}.hex?count=7")),
            Ok(Rest::Headers {
                hash: h,
                count: 7,
                format: Format::Hex
            })
        );
        assert_eq!(
            parse(&format!("/rest/headers/3/{H}.bin")),
            Ok(Rest::Headers {
                hash: h,
                count: 3,
                format: Format::Bin
            })
        );
        assert_eq!(
            parse("/rest/blockhashbyheight/12.json"),
            Ok(Rest::BlockHashByHeight {
                height: 12,
                format: Format::Json
            })
        );
        assert_eq!(
            parse(&format!("/rest/blockpart/{H}.bin?offset=80&size=1")),
            Ok(Rest::BlockPart {
                hash: h,
                format: Format::Bin,
                offset: 80,
                size: 1
            })
        );
        assert_eq!(parse("/rest/chaininfo.json"), Ok(Rest::ChainInfo));
        assert_eq!(
            parse("/rest/mempool/contents.json"),
            Ok(Rest::MempoolContents)
        );
    }

    #[test]
    fn bad_input_gets_cores_status() {
        let status = |u: &str| parse(u).unwrap_err().status;
        assert_eq!(status("/rest/block/nothex.bin"), 400);
        assert_eq!(status(&format!("/rest/block/{H}")), 404, "no format");
        assert_eq!(status(&format!("/rest/block/{H}.xml")), 404);
        assert_eq!(status("/rest/blockhashbyheight/-1.json"), 400);
        assert_eq!(status("/rest/blockhashbyheight/x.json"), 400);
        assert_eq!(status(&format!("/rest/headers/0/{H}.bin")), 400);
        assert_eq!(status(&format!("/rest/headers/{H}.bin?count=2001")), 400);
        assert_eq!(status(&format!("/rest/blockpart/{H}.bin?offset=1")), 400);
        assert_eq!(
            status(&format!("/rest/blockpart/{H}.json?offset=1&size=1")),
            404
        );
        assert_eq!(status("/rest/chaininfo.bin"), 404);
        assert_eq!(status("/rest/nosuch"), 404);
        assert_eq!(
            parse("/rest/headers/9999/x.bin").unwrap_err().message,
            "Header count is invalid or out of acceptable range (1-2000): 9999"
        );
    }

    #[test]
    fn labels_name_the_endpoint() {
        assert_eq!(label(&format!("/rest/block/{H}.bin")), "/rest/block/");
        assert_eq!(label("/rest/headers/5/x.bin?count=3"), "/rest/headers/");
        assert_eq!(label("/rest/chaininfo.json"), "/rest/chaininfo");
    }
}
