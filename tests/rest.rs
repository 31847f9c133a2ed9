//! Bitcoin Core's REST interface on the real binary: every path answers the same data as
//! JSON-RPC (raw block, headers, block hash, chain info), bad input gets Core's status codes,
//! and REST is off unless `[rpc] rest = true`.

mod harness;

use harness::{get_bytes, json, NodeOptions, TestNode};
use serde_json::json;

fn hex(bytes: &[u8]) -> String {
    bitcoin::hex::DisplayHex::to_lower_hex_string(bytes)
}

fn text(node: &TestNode, path: &str) -> (u16, String) {
    let (status, body) = get_bytes(node.rpc, path).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn rest_paths_answer_what_json_rpc_answers() {
    let node = TestNode::ready_with(NodeOptions {
        config: Some("[rpc]\nrest = true\n".into()),
        ..NodeOptions::default()
    });
    let blocks = harness::chain::spend_chain(2, 20);
    for b in &blocks {
        node.submit(b);
    }
    let tip_height = blocks.len() as u64;
    let h = node.call("getblockhash", json!([tip_height - 1]));
    let h = h.as_str().unwrap();
    let raw_hex = node.call("getblock", json!([h, 0]));
    let raw_hex = raw_hex.as_str().unwrap();

    // Blocks, in the three formats and without transaction details.
    let (status, bin) = get_bytes(node.rpc, &format!("/rest/block/{h}.bin")).unwrap();
    assert_eq!((status, hex(&bin)), (200, raw_hex.to_owned()));
    assert_eq!(
        text(&node, &format!("/rest/block/{h}.hex")),
        (200, format!("{raw_hex}\n"))
    );
    let (status, body) = text(&node, &format!("/rest/block/{h}.json"));
    assert_eq!(status, 200);
    let full = json(&body);
    // Core's REST block is verbosity 3 (inputs with their prevouts).
    let rpc = node.call("getblock", json!([h, 3]));
    assert_eq!(full["tx"], rpc["tx"]);
    assert!(
        full["tx"][1]["vin"][0]["prevout"]["value"].is_number(),
        "{}",
        full["tx"][1]
    );
    assert_eq!(full["hash"], h);
    let (_, body) = text(&node, &format!("/rest/block/notxdetails/{h}.json"));
    assert_eq!(
        json(&body)["tx"],
        node.call("getblock", json!([h, 1]))["tx"]
    );

    // Headers along the active chain, new and old forms.
    let first = node.call("getblockhash", json!([tip_height - 4]));
    let first = first.as_str().unwrap();
    let expected: String = (tip_height - 4..=tip_height)
        .map(|height| {
            let b = node.call("getblockhash", json!([height]));
            node.call("getblockheader", json!([b, false]))
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let (status, bin) = get_bytes(node.rpc, &format!("/rest/headers/{first}.bin?count=5")).unwrap();
    assert_eq!((status, hex(&bin)), (200, expected.clone()));
    let (_, bin) = get_bytes(node.rpc, &format!("/rest/headers/5/{first}.bin")).unwrap();
    assert_eq!(hex(&bin), expected);
    let (_, body) = text(&node, &format!("/rest/headers/{first}.json?count=3"));
    let headers = json(&body);
    assert_eq!(headers.as_array().unwrap().len(), 3);
    assert_eq!(headers[0], node.call("getblockheader", json!([first])));
    let (_, body) = text(&node, &format!("/rest/headers/{first}.json?count=2000"));
    assert_eq!(json(&body).as_array().unwrap().len(), 5, "up to the tip");

    // Block hash by height.
    let (_, body) = text(&node, "/rest/blockhashbyheight/3.json");
    assert_eq!(
        json(&body)["blockhash"],
        node.call("getblockhash", json!([3]))
    );
    let three = node.call("getblockhash", json!([3]));
    assert_eq!(
        text(&node, "/rest/blockhashbyheight/3.hex").1,
        format!("{}\n", three.as_str().unwrap())
    );
    let (_, bin) = get_bytes(node.rpc, "/rest/blockhashbyheight/3.bin").unwrap();
    let mut internal = bin.clone();
    internal.reverse();
    assert_eq!(hex(&internal), three.as_str().unwrap());

    // Parts of a block.
    let (status, bin) = get_bytes(
        node.rpc,
        &format!("/rest/blockpart/{h}.bin?offset=0&size=80"),
    )
    .unwrap();
    assert_eq!((status, hex(&bin)), (200, raw_hex[..160].to_owned()));
    let (status, body) = text(&node, &format!("/rest/blockpart/{h}.hex?offset=80&size=1"));
    assert_eq!((status, body), (200, format!("{}\n", &raw_hex[160..162])));

    // The outputs each transaction spent (electrs indexes with them), from the undo data.
    let txs: std::collections::HashMap<bitcoin::Txid, bitcoin::Transaction> = blocks
        .iter()
        .flat_map(|b| b.txdata.iter().map(|t| (t.compute_txid(), t.clone())))
        .collect();
    // `h` is at height tip - 1: blocks[i] is at height i + 1.
    let last = &blocks[blocks.len() - 2];
    assert_eq!(last.block_hash().to_string(), h);
    let mut expected =
        bitcoin::consensus::encode::serialize(&bitcoin::VarInt(last.txdata.len() as u64));
    for (i, tx) in last.txdata.iter().enumerate() {
        let outs: Vec<bitcoin::TxOut> = if i == 0 {
            Vec::new()
        } else {
            tx.input
                .iter()
                .map(|inp| {
                    txs[&inp.previous_output.txid].output[inp.previous_output.vout as usize].clone()
                })
                .collect()
        };
        expected.extend(bitcoin::consensus::encode::serialize(&outs));
    }
    let (status, bin) = get_bytes(node.rpc, &format!("/rest/spenttxouts/{h}.bin")).unwrap();
    assert_eq!((status, hex(&bin)), (200, hex(&expected)));
    let (_, body) = text(&node, &format!("/rest/spenttxouts/{h}.json"));
    let spent = json(&body);
    assert_eq!(spent.as_array().unwrap().len(), last.txdata.len());
    assert_eq!(spent[0], json!([]));
    assert_eq!(
        spent[1][0]["value"],
        txs[&last.txdata[1].input[0].previous_output.txid].output[0]
            .value
            .to_btc()
    );
    let genesis = node.call("getblockhash", json!([0]));
    let (status, bin) = get_bytes(
        node.rpc,
        &format!("/rest/spenttxouts/{}.bin", genesis.as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(
        (status, bin),
        (200, vec![1, 0]),
        "genesis: one transaction, nothing spent"
    );

    // Which outputs are unspent: one of the tip's (unspent) and one its block spent.
    let tip_block = blocks.last().unwrap();
    let fresh = format!("{}-0", tip_block.txdata[1].compute_txid());
    let gone = tip_block.txdata[1].input[0].previous_output;
    let gone = format!("{}-{}", gone.txid, gone.vout);
    let (status, body) = text(&node, &format!("/rest/getutxos/{fresh}/{gone}.json"));
    assert_eq!(status, 200, "{body}");
    let u = json(&body);
    assert_eq!(
        (u["bitmap"].clone(), u["chainHeight"].clone()),
        (json!("10"), json!(tip_height))
    );
    assert_eq!(
        u["utxos"][0]["value"],
        tip_block.txdata[1].output[0].value.to_btc()
    );
    assert_eq!(u["chaintipHash"], node.call("getbestblockhash", json!([])));
    let (_, bin) = get_bytes(
        node.rpc,
        &format!("/rest/getutxos/checkmempool/{fresh}/{gone}.bin"),
    )
    .unwrap();
    assert_eq!(
        &bin[..4],
        &(tip_height as i32).to_le_bytes(),
        "height first"
    );
    assert_eq!(
        &bin[36..38],
        &[1, 0b01],
        "a one-byte bitmap: the first found"
    );
    assert_eq!(&bin[38..39], &[1], "one coin");
    let many = vec![fresh.clone(); 16].join("/");

    // Chain and mempool.
    let (_, body) = text(&node, "/rest/chaininfo.json");
    assert_eq!(
        json(&body)["bestblockhash"],
        node.call("getbestblockhash", json!([]))
    );
    assert_eq!(json(&text(&node, "/rest/mempool/info.json").1)["size"], 0);
    assert_eq!(
        json(&text(&node, "/rest/mempool/contents.json").1),
        json!({})
    );

    // Bad input: Core's status codes, and the node goes on.
    let size = raw_hex.len() / 2;
    let zeros = "0".repeat(64);
    for (path, status) in [
        (format!("/rest/block/{}.bin", "g".repeat(64)), 400),
        (format!("/rest/block/{zeros}.bin"), 404),
        (format!("/rest/block/{h}"), 404),
        (format!("/rest/block/{h}.xml"), 404),
        ("/rest/blockhashbyheight/-1.json".to_owned(), 400),
        ("/rest/blockhashbyheight/999999.json".to_owned(), 404),
        (format!("/rest/headers/{first}.bin?count=2001"), 400),
        (format!("/rest/headers/0/{first}.bin"), 400),
        (format!("/rest/blockpart/{h}.bin?offset={size}&size=1"), 400),
        (
            format!("/rest/blockpart/{h}.bin?offset=18446744073709551615&size=2"),
            400,
        ),
        ("/rest/chaininfo.bin".to_owned(), 404),
        (format!("/rest/spenttxouts/{zeros}.bin"), 404),
        (format!("/rest/tx/{zeros}.json"), 404),
        (format!("/rest/getutxos/{many}.json"), 400),
        ("/rest/getutxos/nothex-0.json".to_owned(), 400),
        (format!("/rest/blockfilter/basic/{h}.bin"), 400),
        (format!("/rest/blockfilterheaders/nosuch/{h}.bin"), 400),
        ("/rest/nosuch".to_owned(), 404),
    ] {
        assert_eq!(get_bytes(node.rpc, &path).unwrap().0, status, "{path}");
    }
    let (status, _, _) =
        harness::http_full(node.rpc, "POST", "/rest/chaininfo.json", &[], "").unwrap();
    assert_eq!(status, 405);
    assert_eq!(node.call("getblockcount", json!([])), tip_height);
    assert!(node.metric("bllvm_http_requests_total{path=\"/rest/block/\",status=\"200\"}") >= 4.0);
}

#[test]
fn rest_is_off_unless_asked_for() {
    let node = TestNode::ready_with(NodeOptions::default());
    assert_eq!(get_bytes(node.rpc, "/rest/chaininfo.json").unwrap().0, 404);
}
