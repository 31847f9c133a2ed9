//! JSON-RPC against a real node: every implemented method through an independent client
//! (bitcoincore-rpc, cookie auth), and the protocol and auth edges over raw HTTP.

mod harness;

use base64::Engine;
use bitcoin::hashes::Hash;
use bitcoincore_rpc::{Auth, Client, RpcApi};
use harness::{http_full, json, NodeOptions, TestNode};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn address() -> bitcoin::Address {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[3; 32]).unwrap();
    let pk = bitcoin::CompressedPublicKey(sk.public_key(&secp));
    bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest)
}

fn cookie_path(node: &TestNode) -> std::path::PathBuf {
    node.datadir.join("regtest/.cookie")
}

fn client(node: &TestNode) -> Client {
    Client::new(
        &format!("http://{}", node.rpc),
        Auth::CookieFile(cookie_path(node)),
    )
    .unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn cookie_auth(node: &TestNode) -> String {
    let c = std::fs::read_to_string(cookie_path(node)).unwrap();
    let (u, p) = c.split_once(':').unwrap();
    basic(u, p)
}

fn post(node: &TestNode, auth: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    http_full(node.rpc, "POST", "/", &[("Authorization", auth)], body).unwrap()
}

#[test]
fn methods_through_an_independent_client() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let mode = std::fs::metadata(cookie_path(&node))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "cookie is private");
    let rpc = client(&node);

    let hashes = rpc.generate_to_address(101, &address()).unwrap();
    assert_eq!(hashes.len(), 101);
    assert_eq!(rpc.get_block_count().unwrap(), 101);
    assert_eq!(rpc.get_best_block_hash().unwrap(), hashes[100]);
    assert_eq!(rpc.get_block_hash(1).unwrap(), hashes[0]);

    let info = rpc.get_block_header_info(&hashes[0]).unwrap();
    assert_eq!((info.height, info.confirmations), (1, 101));
    assert_eq!(info.next_block_hash, Some(hashes[1]));
    let header = rpc.get_block_header(&hashes[0]).unwrap();
    assert_eq!(header.block_hash(), hashes[0]);
    let block = rpc.get_block(&hashes[0]).unwrap();
    assert_eq!(block.block_hash(), hashes[0]);
    let binfo = rpc.get_block_info(&hashes[0]).unwrap();
    assert_eq!(binfo.tx, vec![block.txdata[0].compute_txid()]);
    assert_eq!(binfo.height, 1);

    let chain = rpc.get_blockchain_info().unwrap();
    assert_eq!(chain.chain, bitcoin::Network::Regtest);
    assert_eq!((chain.blocks, chain.headers), (101, 101));
    assert_eq!(chain.best_block_hash, hashes[100]);
    let tips = rpc.get_chain_tips().unwrap();
    assert_eq!(tips.len(), 1);
    assert!(rpc.get_difficulty().unwrap() > 0.0);

    let cb = block.txdata[0].compute_txid();
    let out = rpc
        .get_tx_out(&cb, 0, None)
        .unwrap()
        .expect("unspent coinbase");
    assert_eq!(out.value, bitcoin::Amount::from_btc(50.0).unwrap());
    assert_eq!(out.confirmations, 101);
    assert!(rpc.get_tx_out(&cb, 7, None).unwrap().is_none());
    let set = rpc.get_tx_out_set_info(None, None, None).unwrap();
    assert_eq!((set.height, set.tx_outs), (101, 101));
    assert_eq!(
        set.total_amount,
        bitcoin::Amount::from_btc(101.0 * 50.0).unwrap()
    );

    let net = rpc.get_network_info().unwrap();
    assert_eq!(net.version, 290000);
    assert!(net.subversion.contains("bllvm-node"));
    assert_eq!(rpc.get_connection_count().unwrap(), 0);
    assert!(rpc.get_peer_info().unwrap().is_empty());
    assert!(rpc.uptime().unwrap() < 600);

    // submitblock: a block built with the library on the node's tip, then again.
    let params = bllvm_node::chain::params::Params::for_chain(bllvm_node::config::Chain::Regtest);
    let tip = rpc.get_block_header(&hashes[100]).unwrap();
    let t = bllvm_node::chain::mining::Template {
        prev: hashes[100],
        height: 102,
        time: tip.time + 1,
        bits: tip.bits,
        fees: 0,
    };
    let mut new =
        bllvm_node::chain::mining::build_block(&params, &t, address().script_pubkey(), vec![]);
    assert!(bllvm_node::chain::mining::grind(&mut new.header));
    let hex = bitcoin::consensus::encode::serialize_hex(&new);
    assert_eq!(
        rpc.call::<Value>("submitblock", &[hex.clone().into()])
            .unwrap(),
        Value::Null
    );
    assert_eq!(
        rpc.call::<Value>("submitblock", &[hex.into()]).unwrap(),
        "duplicate"
    );
    assert_eq!(rpc.get_best_block_hash().unwrap(), new.block_hash());
    let mut bad = new.clone();
    bad.header.prev_blockhash = bitcoin::BlockHash::all_zeros();
    assert!(bllvm_node::chain::mining::grind(&mut bad.header));
    let hex = bitcoin::consensus::encode::serialize_hex(&bad);
    assert_eq!(
        rpc.call::<Value>("submitblock", &[hex.into()]).unwrap(),
        "prev-blk-not-found"
    );

    rpc.ping().unwrap();
    let totals = rpc.get_net_totals().unwrap();
    assert_eq!(totals.total_bytes_recv, 0);
    let info: Value = rpc.call("getrpcinfo", &[]).unwrap();
    assert_eq!(info["active_commands"][0]["method"], "getrpcinfo");
    let help: Value = rpc.call("help", &[]).unwrap();
    assert!(help.as_str().unwrap().contains("getblockchaininfo"));
    let health: Value = rpc.call("gethealth", &[]).unwrap();
    assert_eq!(health["chain"]["height"], 102);
    let metrics: Value = rpc.call("getmetrics", &[]).unwrap();
    assert_eq!(metrics["chain_height"], 102);

    // stop: a clean exit, and the cookie is gone.
    assert!(rpc.stop().unwrap().contains("stopping"));
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
    assert!(!cookie_path(&node).exists(), "cookie removed on clean exit");
}

#[test]
fn protocol_versions_batches_and_errors_follow_core() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);

    // 1.0: errors carry HTTP 500 (404 for an unknown method); 2.0: HTTP 200.
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockcount","params":[],"id":1}"#,
    );
    assert_eq!(
        (code, json(&body)),
        (200, serde_json::json!({"result":0,"error":null,"id":1}))
    );
    let (code, _, body) = post(&node, &auth, r#"{"method":"nosuch","id":2}"#);
    assert_eq!(code, 404);
    assert_eq!(json(&body)["error"]["code"], -32601);
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"jsonrpc":"2.0","method":"nosuch","id":3}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(json(&body)["jsonrpc"], "2.0");
    assert_eq!(json(&body)["error"]["code"], -32601);
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"jsonrpc":"2.0","method":"getblockcount","id":4}"#,
    );
    assert_eq!(
        (code, json(&body)["result"].clone()),
        (200, serde_json::json!(0))
    );
    // A 2.0 notification gets no body.
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"jsonrpc":"2.0","method":"getblockcount"}"#,
    );
    assert_eq!((code, body.as_str()), (204, ""));

    // Malformed JSON, wrong parameter types, named parameters, Core's legacy boolean verbosity.
    let (code, _, body) = post(&node, &auth, "{not json");
    assert_eq!(
        (code, json(&body)["error"]["code"].clone()),
        (500, serde_json::json!(-32700))
    );
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockhash","params":["x"],"id":5}"#,
    );
    assert_eq!(
        (code, json(&body)["error"]["code"].clone()),
        (500, serde_json::json!(-3))
    );
    let (_, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockhash","params":{"height":0},"id":6}"#,
    );
    let genesis = json(&body)["result"].as_str().unwrap().to_owned();
    let (_, _, body) = post(
        &node,
        &auth,
        &format!(r#"{{"method":"getblock","params":["{genesis}", false],"id":7}}"#),
    );
    assert!(
        json(&body)["result"]
            .as_str()
            .unwrap()
            .starts_with("01000000"),
        "verbosity false = hex"
    );
    let (_, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockhash","params":[5],"id":8}"#,
    );
    assert_eq!(json(&body)["error"]["code"], -8);
    let (_, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockheader","params":["00"],"id":9}"#,
    );
    assert_eq!(json(&body)["error"]["code"], -8);

    // Batch: one HTTP 200 with a reply per call, in order, errors included.
    let (code, _, body) = post(
        &node,
        &auth,
        r#"[{"method":"getblockcount","id":"a"},{"method":"nosuch","id":"b"},{"jsonrpc":"2.0","method":"uptime","id":"c"}]"#,
    );
    assert_eq!(code, 200);
    let replies = json(&body);
    assert_eq!(replies.as_array().unwrap().len(), 3);
    assert_eq!(replies[0]["id"], "a");
    assert_eq!(replies[1]["error"]["code"], -32601);
    assert_eq!(replies[2]["jsonrpc"], "2.0");

    // Request ids: honoured when given, generated otherwise. The request's log line is at
    // debug level, as Core's: written once the rpc category is switched on.
    let with_id = |id: &str| {
        let (_, headers, _) = http_full(
            node.rpc,
            "POST",
            "/",
            &[("Authorization", &auth), ("X-Request-Id", id)],
            r#"{"method":"uptime","id":1}"#,
        )
        .unwrap();
        assert!(headers.contains(&("x-request-id".into(), id.into())));
    };
    with_id("trace-41");
    let (_, _, body) = post(
        &node,
        &auth,
        r#"{"method":"logging","params":[["rpc"]],"id":1}"#,
    );
    assert_eq!(json(&body)["result"]["rpc"], true, "{body}");
    with_id("trace-42");
    // Lines are written by the log's own thread, in order: once 42's is there, 41's would be.
    let log = node.wait_log("request_id=trace-42");
    assert!(!log.contains("request_id=trace-41"), "{log}");

    // Oversized body: refused with a clear status, node still serving.
    let big = format!(
        r#"{{"method":"uptime","params":["{}"]}}"#,
        "x".repeat(33 * 1024 * 1024)
    );
    let (code, _, _) = post(&node, &auth, &big);
    assert_eq!(code, 413);
    assert_eq!(node.get("/health").unwrap().0, 200);
}

#[test]
fn authentication_modes() {
    // rpcauth for alice/secret with salt "s4lt": hex(hmac_sha256("s4lt", "secret")).
    let hash = {
        use bitcoin::hashes::{hmac, sha256, HashEngine};
        let mut e = hmac::HmacEngine::<sha256::Hash>::new(b"s4lt");
        e.input(b"secret");
        bitcoin::hex::DisplayHex::to_lower_hex_string(
            &hmac::Hmac::<sha256::Hash>::from_engine(e).to_byte_array()[..],
        )
    };
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(format!(
            "[rpc]\nuser = \"bob\"\npassword = \"hunter2\"\nrpcauth = [\"alice:s4lt${hash}\"]\n"
        )),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let call = r#"{"method":"getblockcount","id":1}"#;
    // No credentials: 401 with the challenge header, after Core's delay.
    let (code, headers, _) = http_full(node.rpc, "POST", "/", &[], call).unwrap();
    assert_eq!(code, 401);
    assert!(headers.contains(&("www-authenticate".into(), "Basic realm=\"jsonrpc\"".into())));
    assert_eq!(post(&node, &basic("bob", "wrong"), call).0, 401);
    assert_eq!(post(&node, &basic("alice", "wrong"), call).0, 401);
    assert_eq!(post(&node, &basic("bob", "hunter2"), call).0, 200);
    assert_eq!(post(&node, &basic("alice", "secret"), call).0, 200);
    assert_eq!(post(&node, &cookie_auth(&node), call).0, 200);
    // Health and metrics need no credentials.
    assert_eq!(node.get("/health").unwrap().0, 200);
    let (_, metrics) = node.get("/metrics").unwrap();
    assert!(
        metrics.contains("bllvm_rpc_rejections_total{reason=\"auth\"} 3"),
        "{metrics}"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after_and_health_still_answers() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc.auth]\nrate_limit_rate = 0.5\nrate_limit_burst = 3\n\
             [rpc.auth.per_method_limits]\ngetblockcount = { rate = 0.1, burst = 1 }\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);
    // Per method: one getblockcount, then 429 naming that limit.
    assert_eq!(
        post(&node, &auth, r#"{"method":"getblockcount","id":1}"#).0,
        200
    );
    let (code, headers, body) = post(&node, &auth, r#"{"method":"getblockcount","id":2}"#);
    assert_eq!(code, 429);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "retry-after" && v.parse::<u64>().unwrap() >= 1));
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("getblockcount"));
    // Per IP (burst 3): the third request takes the last token, the fourth is refused
    // before authentication.
    assert_eq!(post(&node, &auth, r#"{"method":"uptime","id":3}"#).0, 200);
    let (code, _, body) = post(&node, &auth, r#"{"method":"uptime","id":4}"#);
    assert_eq!(code, 429);
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("per-ip"));
    // Probes are not rate limited.
    for _ in 0..20 {
        assert_eq!(node.get("/health").unwrap().0, 200);
    }
    let (_, metrics) = node.get("/metrics").unwrap();
    assert!(
        metrics.contains("bllvm_rpc_rejections_total{reason=\"rate\"} 2"),
        "{metrics}"
    );
}

#[test]
fn overload_gets_503_at_once_while_probes_answer() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc]\nthreads = 1\nwork_queue = 1\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);
    let addr = node.rpc;
    let queue_depth = |node: &TestNode| -> Option<u64> {
        node.metric_opt("bllvm_channel_depth{channel=\"rpc_work_queue\"}")
            .map(|v| v as u64)
    };
    // The only worker mines many blocks (real work, seconds long).
    let a = auth.clone();
    let _busy = std::thread::spawn(move || {
        let body = format!(
            r#"{{"method":"generatetoaddress","params":[100000,"{}"],"id":1}}"#,
            address()
        );
        let _ = http_full(addr, "POST", "/", &[("Authorization", &a)], &body);
    });
    harness::poll(
        Duration::from_secs(10),
        "the worker to be busy mining",
        || {
            let (_, m) = node.get("/metrics").ok()?;
            m.contains("bllvm_blocks_connected_total").then_some(())?;
            let height = json(&node.get("/health/detailed").ok()?.1)["chain"]["height"].as_u64()?;
            (height > 0).then_some(())
        },
    );
    // A second request waits in the queue of one...
    let b = auth.clone();
    let _queued = std::thread::spawn(move || {
        let _ = http_full(
            addr,
            "POST",
            "/",
            &[("Authorization", &b)],
            r#"{"method":"help","id":2}"#,
        );
    });
    harness::poll(Duration::from_secs(10), "a request queued", || {
        (queue_depth(&node)? == 1).then_some(())
    });
    // ...so a third is refused at once, as Core's "Work queue depth exceeded".
    let t = std::time::Instant::now();
    let (code, _, body) = post(&node, &auth, r#"{"method":"help","id":3}"#);
    let refused_in = t.elapsed();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("Work queue depth exceeded"));
    // Calls a published view answers are answered by the gate, past the full queue.
    let (code, _, body) = post(&node, &auth, r#"{"method":"getblockcount","id":4}"#);
    assert_eq!(code, 200, "{body}");
    assert!(json(&body)["result"].as_u64().is_some(), "{body}");
    // Probes keep answering during the overload.
    let mut lat = Vec::new();
    for path in ["/health", "/metrics"].iter().cycle().take(100) {
        let t = std::time::Instant::now();
        assert_eq!(node.get(path).unwrap().0, 200);
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "overload: 503 in {refused_in:?}; probes during it p50 {:?} p99 {:?}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    let (_, metrics) = node.get("/metrics").unwrap();
    assert!(
        metrics.contains("bllvm_http_requests_total{path=\"/\",status=\"503\"} 1"),
        "{metrics}"
    );
}

#[test]
fn circuit_breaker_opens_on_failures_then_half_opens_and_closes() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc.breaker]\nmin_calls = 3\nfailure_ratio = 0.5\ncooldown_secs = 0.5\nhalf_open_trials = 1\n\
             [debug]\nfail_rpc_method = \"getdifficulty\"\nfail_rpc_calls = 4\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);
    let call = r#"{"method":"getdifficulty","id":1}"#;
    // Bad parameters are the client's fault: they never trip a breaker.
    for _ in 0..5 {
        let (_, _, body) = post(
            &node,
            &auth,
            r#"{"method":"getblockhash","params":["x"],"id":1}"#,
        );
        assert_eq!(json(&body)["error"]["code"], -3);
    }
    assert_eq!(
        node.metric("bllvm_rpc_breaker_state{method=\"getblockhash\"}"),
        0.0
    );
    // Three internal failures open it...
    for _ in 0..3 {
        let (code, _, body) = post(&node, &auth, call);
        assert_eq!(
            (code, json(&body)["error"]["code"].clone()),
            (500, serde_json::json!(-32603))
        );
    }
    // ...and the next call fails fast without running.
    let (_, _, body) = post(&node, &auth, call);
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("circuit breaker open"));
    assert_eq!(
        node.metric("bllvm_rpc_breaker_state{method=\"getdifficulty\"}"),
        1.0
    );
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["rpc"]["breakers"]["getdifficulty"], "open");
    // After the cooldown one trial goes through; the injected fault has one failure left: reopened.
    let failed_trial = harness::poll(Duration::from_secs(10), "a half-open trial", || {
        let (_, _, body) = post(&node, &auth, call);
        let v = json(&body);
        (v["error"]["code"] == -32603).then_some(v)
    });
    assert!(failed_trial["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fault injected"));
    // The next trial succeeds: closed again.
    harness::poll(Duration::from_secs(10), "the breaker to close", || {
        let (code, _, _) = post(&node, &auth, call);
        (code == 200).then_some(())
    });
    assert_eq!(
        node.metric("bllvm_rpc_breaker_state{method=\"getdifficulty\"}"),
        0.0
    );
    let d = json(&node.get("/health/detailed").unwrap().1);
    assert_eq!(d["rpc"]["breakers"], serde_json::json!({}));
    node.wait_log("circuit breaker for getdifficulty: closed -> open");
}

#[test]
fn a_timed_out_call_gets_an_error_and_its_work_stops() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc.method_timeout_secs]\ngeneratetoaddress = 0.3\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);
    let body = format!(
        r#"{{"method":"generatetoaddress","params":[1000000,"{}"],"id":1}}"#,
        address()
    );
    let (code, _, reply) = post(&node, &auth, &body);
    assert_eq!(code, 500);
    assert!(json(&reply)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("timed out"));
    harness::poll(Duration::from_secs(10), "mining to stop", || {
        node.log().contains("generate cancelled").then_some(())
    });
    let log = node.log();
    assert!(
        log.contains("rpc generatetoaddress still running after 0.1s"),
        "warning at half the timeout"
    );
    // Stopped means stopped: the height no longer moves.
    let h1 = json(&node.get("/health/detailed").unwrap().1)["chain"]["height"]
        .as_u64()
        .unwrap();
    assert_eq!(post(&node, &auth, r#"{"method":"uptime","id":2}"#).0, 200);
    let h2 = json(&node.get("/health/detailed").unwrap().1)["chain"]["height"]
        .as_u64()
        .unwrap();
    assert_eq!(h1, h2);
    assert!(h1 < 1_000_000);
}

#[test]
fn chain_maintenance_templates_and_raw_transactions_through_the_client() {
    use bitcoincore_rpc::json::{GetBlockTemplateModes, GetBlockTemplateRules};
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let rpc = client(&node);
    let w = harness::chain::Wallet::new(1);
    let addr = bitcoin::Address::from_script(&w.p2wpkh(), bitcoin::Network::Regtest).unwrap();
    let hashes = rpc.generate_to_address(101, &addr).unwrap();

    // invalidateblock / reconsiderblock move the tip, persisted like any change.
    rpc.invalidate_block(&hashes[100]).unwrap();
    assert_eq!(rpc.get_block_count().unwrap(), 100);
    rpc.reconsider_block(&hashes[100]).unwrap();
    assert_eq!(rpc.get_best_block_hash().unwrap(), hashes[100]);
    assert!(rpc
        .invalidate_block(&bitcoin::BlockHash::all_zeros())
        .is_err());
    assert_eq!(
        rpc.call::<Value>("verifychain", &[4.into(), 0.into()])
            .unwrap(),
        Value::Bool(true)
    );
    let prune = rpc
        .call::<Value>("pruneblockchain", &[10.into()])
        .unwrap_err()
        .to_string();
    assert!(prune.contains("not in prune mode"), "{prune}");

    let t = rpc
        .get_block_template(
            GetBlockTemplateModes::Template,
            &[GetBlockTemplateRules::SegWit],
            &[],
        )
        .unwrap();
    assert_eq!((t.height, t.previous_block_hash), (102, hashes[100]));
    assert_eq!(t.coinbase_value, bitcoin::Amount::from_btc(50.0).unwrap());
    assert!(!t.default_witness_commitment.is_empty());
    let mining = rpc.get_mining_info().unwrap();
    assert_eq!(mining.blocks, 101);

    // Raw transactions: by block hash (no transaction index), decoding, and broadcasting.
    let block1 = rpc.get_block(&hashes[0]).unwrap();
    let cb = &block1.txdata[0];
    assert_eq!(
        &rpc.get_raw_transaction(&cb.compute_txid(), Some(&hashes[0]))
            .unwrap(),
        cb
    );
    let info = rpc
        .get_raw_transaction_info(&cb.compute_txid(), Some(&hashes[0]))
        .unwrap();
    assert_eq!(
        (info.blockhash, info.confirmations),
        (Some(hashes[0]), Some(101))
    );
    assert!(rpc.get_raw_transaction(&cb.compute_txid(), None).is_err());
    let prev = cb.output[0].clone();
    let op = bitcoin::OutPoint::new(cb.compute_txid(), 0);
    let spend = w.spend(
        &[(op, prev.clone())],
        vec![harness::chain::out(50 * 100_000_000 - 10_000, w.p2tr())],
    );
    assert_eq!(
        rpc.decode_raw_transaction(&spend, None).unwrap().txid,
        spend.compute_txid()
    );
    let forged = w.spend_with(
        &harness::chain::Wallet::new(9),
        &[(op, prev)],
        vec![harness::chain::out(100_000_000, w.p2tr())],
    );
    let err = rpc.send_raw_transaction(&forged).unwrap_err().to_string();
    assert!(err.contains("mandatory-script-verify-flag-failed"), "{err}");
    let err = rpc.send_raw_transaction(cb).unwrap_err().to_string();
    assert!(err.contains("coinbase"), "{err}");
    assert_eq!(rpc.get_mempool_info().unwrap().size, 0);
    assert_eq!(
        rpc.send_raw_transaction(&spend).unwrap(),
        spend.compute_txid()
    );
    assert_eq!(rpc.get_mempool_info().unwrap().size, 1);
    assert_eq!(rpc.get_raw_mempool().unwrap(), vec![spend.compute_txid()]);

    // generateblock mines the given raw transaction.
    let hex = bitcoin::consensus::encode::serialize_hex(&spend);
    let mined: Value = rpc
        .call(
            "generateblock",
            &[addr.to_string().into(), vec![Value::from(hex)].into()],
        )
        .unwrap();
    let hash: bitcoin::BlockHash = mined["hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(rpc.get_best_block_hash().unwrap(), hash);
    assert!(rpc
        .get_tx_out(&spend.compute_txid(), 0, None)
        .unwrap()
        .is_some());
    assert!(rpc
        .get_tx_out(&cb.compute_txid(), 0, None)
        .unwrap()
        .is_none());
    let err = rpc.send_raw_transaction(&spend).unwrap_err().to_string();
    assert!(err.contains("already in block chain"), "{err}");
}

#[test]
fn logging_switches_debug_categories_at_runtime() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let rpc = client(&node);
    let states: Value = rpc
        .call("logging", &[vec![Value::from("chain")].into()])
        .unwrap();
    assert_eq!(states["chain"], true);
    assert_eq!(states["p2p"], false);
    // The chain thread logs each connected block at debug level, then the p2p thread logs the
    // chain summary it received: only the chain's line may appear.
    node.rpc(
        "generatetoaddress",
        serde_json::json!([1, address().to_string()]),
    )
    .unwrap();
    harness::poll(Duration::from_secs(10), "chain debug output", || {
        node.log().contains("connected at height 1").then_some(())
    });
    assert!(!node.log().contains("chain summary"), "p2p debug stays off");
    let states: Value = rpc
        .call(
            "logging",
            &[Value::Array(vec![]), vec![Value::from("all")].into()],
        )
        .unwrap();
    assert!(states.as_object().unwrap().values().all(|v| v == false));
    let err = rpc
        .call::<Value>("logging", &[vec![Value::from("nosuch")].into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown logging category nosuch"), "{err}");
}

#[test]
fn long_chain_reads_stop_at_their_timeout() {
    // A 200-block chain and a verifychain timeout far shorter than re-checking it takes.
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc.method_timeout_secs]\nverifychain = 0.001\n".into()),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let rpc = client(&node);
    rpc.generate_to_address(200, &address()).unwrap();
    let err = rpc
        .call::<Value>("verifychain", &[4.into(), 0.into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("timed out"), "{err}");
    // The work itself stopped part-way instead of running on after the caller gave up.
    harness::poll(Duration::from_secs(10), "verifychain to stop", || {
        node.log()
            .contains("verifychain stopped at its deadline")
            .then_some(())
    });
    assert_eq!(rpc.get_block_count().unwrap(), 200);
}

#[test]
fn network_methods_through_the_independent_client() {
    let mut a = TestNode::start();
    let mut b = TestNode::start();
    a.wait_ready(Duration::from_secs(10));
    b.wait_ready(Duration::from_secs(10));
    let rpc = client(&b);
    let target = a.p2p.to_string();
    rpc.add_node(&target).unwrap();
    harness::poll(Duration::from_secs(30), "connected", || {
        (rpc.get_connection_count().unwrap() == 1).then_some(())
    });
    rpc.ping().unwrap();
    let peers = rpc.get_peer_info().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].addr, target);
    assert_eq!(peers[0].version, 70016);
    assert!(!peers[0].inbound);
    let added = rpc.get_added_node_info(None).unwrap();
    assert_eq!(added[0].added_node, target);
    let info = rpc.get_network_info().unwrap();
    assert_eq!(info.connections, 1);
    assert!(info.network_active);
    let totals = rpc.get_net_totals().unwrap();
    assert!(totals.total_bytes_recv > 0 && totals.total_bytes_sent > 0);
    rpc.disconnect_node_by_id(peers[0].id as u32).unwrap();
    rpc.remove_node(&target).unwrap();
    assert!(rpc.disconnect_node("127.0.0.1:1").is_err());
    rpc.onetry_node(&target).unwrap();

    rpc.add_ban("127.77.0.1", 3600, false).unwrap();
    let bans = rpc.list_banned().unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].address, "127.77.0.1/32");
    assert!(bans[0].banned_until > bans[0].ban_created);
    rpc.remove_ban("127.77.0.1").unwrap();
    rpc.add_ban("127.77.0.2", 3600, false).unwrap();
    rpc.clear_banned().unwrap();
    harness::poll(Duration::from_secs(10), "bans cleared", || {
        rpc.list_banned().unwrap().is_empty().then_some(())
    });
    assert!(!rpc.set_network_active(false).unwrap());
    assert!(rpc.set_network_active(true).unwrap());
}

/// 64 clients posting wrong passwords cost themselves, not the users: they are answered at
/// once (401, then 429 once their address has used its failures), so no worker sleeps for them
/// and an authenticated client is answered throughout.
#[test]
fn wrong_passwords_cost_the_guesser_not_the_users() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc]\nuser = \"bob\"\npassword = \"hunter2\"\n[rpc.auth]\nrate_limit_enabled = false\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let call = r#"{"method":"getblockcount","id":1}"#;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 64 guessers from 64 addresses; the user from another.
    let guessers: Vec<_> = (0..64u8)
        .map(|i| {
            let (addr, stop) = (node.rpc, stop.clone());
            let src = std::net::Ipv4Addr::new(127, 62, 0, 1 + i);
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeMap::new();
                for _ in 0..200 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let auth = basic("bob", "guess");
                    if let Ok((code, _, _)) = harness::http_from(
                        src,
                        addr,
                        "POST",
                        "/",
                        &[("Authorization", &auth)],
                        call,
                    ) {
                        *seen.entry(code).or_insert(0u32) += 1;
                    }
                }
                seen
            })
        })
        .collect();
    let good = basic("bob", "hunter2");
    for _ in 0..60 {
        let (code, _, body) = post(&node, &good, call);
        assert_eq!(code, 200, "the authenticated client got {code}: {body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = std::collections::BTreeMap::new();
    for g in guessers {
        for (code, n) in g.join().unwrap() {
            *all.entry(code).or_insert(0) += n;
        }
    }
    assert!(all.get(&429).copied().unwrap_or(0) > 0, "{all:?}");
    assert!(
        all.keys().all(|c| *c == 401 || *c == 429),
        "guessers only get 401 and 429: {all:?}"
    );
}

/// A batch costs a token per call, and a batch over `rpc.max_batch` gets one error.
#[test]
fn batches_cost_a_token_per_call_and_have_a_length_limit() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc]\nmax_batch = 15\n[rpc.auth]\nrate_limit_rate = 0.1\nrate_limit_burst = 20\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let auth = cookie_auth(&node);
    let batch = |n: usize| {
        serde_json::to_string(
            &(0..n)
                .map(|i| serde_json::json!({"jsonrpc": "2.0", "method": "getblockcount", "id": i}))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let (code, _, body) = post(&node, &auth, &batch(16));
    assert_eq!(code, 400, "{body}");
    let v = json(&body);
    assert_eq!(v["error"]["code"], serde_json::json!(-32600), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 15"),
        "{v}"
    );
    let (code, _, body) = post(&node, &auth, &batch(15));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body).as_array().unwrap().len(), 15);
    // 20 tokens, 15 spent: another batch of 15 must wait.
    let (code, headers, _) = post(&node, &auth, &batch(15));
    assert_eq!(code, 429);
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
}

/// Bad parameters get messages that say what is wrong (Core's wording where Core has one).
#[test]
fn bad_parameters_are_named_precisely() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let expect = |method: &str, params: serde_json::Value, code: i64, text: &str| {
        let e = node.rpc(method, params).unwrap_err();
        assert_eq!(e["code"], serde_json::json!(code), "{method}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(text),
            "{method}: {e}"
        );
    };
    let addr = harness::address(1);
    expect(
        "generatetoaddress",
        serde_json::json!([4294967296u64, addr]),
        -8,
        "out of range",
    );
    expect(
        "generatetoaddress",
        serde_json::json!([-1, addr]),
        -8,
        "must not be negative",
    );
    expect(
        "getblockhash",
        serde_json::json!([1.5]),
        -3,
        "1.5 is not an integer",
    );
    expect(
        "getblockhash",
        serde_json::json!([1e30]),
        -3,
        "is not an integer",
    );
    let not_hex = "z".repeat(64);
    expect(
        "getblock",
        serde_json::json!([not_hex]),
        -8,
        "must be hexadecimal string",
    );
    expect(
        "getblock",
        serde_json::json!(["00ff"]),
        -8,
        "must be of length 64 (not 4",
    );
}

/// A batch's answer is bounded: past `rpc.max_response_mb` the remaining calls are not run and
/// each answers -7 (Core's RPC_OUT_OF_MEMORY) for the client to send again.
#[test]
fn a_batch_answer_is_bounded_by_max_response_mb() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "[rpc]\nmax_batch = 5000\nmax_response_mb = 1\n[rpc.auth]\nrate_limit_enabled = false\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let genesis = node.call("getblockhash", serde_json::json!([0]));
    let batch: Vec<serde_json::Value> = (0..4000)
        .map(|i| serde_json::json!({"jsonrpc": "2.0", "method": "getblock", "params": [genesis, 2], "id": i}))
        .collect();
    let (code, _, body) = post(
        &node,
        &cookie_auth(&node),
        &serde_json::to_string(&batch).unwrap(),
    );
    assert_eq!(code, 200);
    let answers = json(&body);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 4000, "one answer per call");
    let run = answers.iter().filter(|a| a["error"].is_null()).count();
    assert!(run > 100 && run < 4000, "{run} calls run");
    let last = &answers[3999];
    assert_eq!(last["id"], 3999);
    assert_eq!(last["error"]["code"], -7, "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_response_mb"),
        "{last}"
    );
    // What was run fits the limit, plus the one call that passed it.
    let ok_bytes: usize = answers[..run].iter().map(|a| a.to_string().len()).sum();
    assert!(ok_bytes < (1 << 20) + 4096, "{ok_bytes}");
}

/// `[logging] rpc_requests`: "info" logs every request at the default level, "off" never, not
/// even with debug logging.
#[test]
fn request_log_lines_follow_logging_rpc_requests() {
    for (setting, level, expected) in [("info", "info", true), ("off", "debug", false)] {
        let mut node = TestNode::start_with(NodeOptions {
            config: Some(format!(
                "[logging]\nlevel = \"{level}\"\nrpc_requests = \"{setting}\"\n"
            )),
            ..NodeOptions::default()
        });
        node.wait_ready(Duration::from_secs(10));
        node.call("getblockcount", serde_json::json!([]));
        node.call("uptime", serde_json::json!([]));
        // What was logged is all written by the time the node exits.
        node.signal(libc::SIGTERM);
        assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
        let log = node.log();
        assert_eq!(
            log.contains("method=uptime"),
            expected,
            "rpc_requests = {setting}: {log}"
        );
    }
}

/// The node's end of the connection whose local port is `client_port`, borrowed into this
/// process (pidfd_getfd; the tests run as root), to read its socket options.
fn node_socket(node: &TestNode, client_port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let tcp = std::fs::read_to_string(format!("/proc/{}/net/tcp", node.pid())).unwrap();
    let want = (
        format!(":{:04X}", node.rpc.port()),
        format!(":{client_port:04X}"),
    );
    let inode = tcp
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1].ends_with(&want.0) && f[2].ends_with(&want.1))
        .map(|f| f[9].to_owned())
        .expect("the connection in /proc/net/tcp");
    let target = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir(format!("/proc/{}/fd", node.pid()))
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == target))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
        .expect("the node's descriptor");
    // SAFETY: plain syscalls on numbers; the returned descriptor is owned here.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, node.pid(), 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        assert!(dup >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        std::os::fd::OwnedFd::from_raw_fd(dup)
    }
}

/// Large answers on a keep-alive connection do not wait for the client's delayed ACK: the
/// node's socket has TCP_NODELAY, and 50 sequential `getblock <hash> 0` of a ~93 KB block all
/// answer the block (their p50 is printed; the benchmark reports it).
#[test]
fn keep_alive_answers_do_not_wait_for_delayed_acks() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(10));
    let blocks = harness::chain::fanout_chain(101, 3000);
    for b in &blocks {
        node.submit(b);
    }
    let big = blocks.last().unwrap();
    let hex = bitcoin::consensus::encode::serialize_hex(big);
    assert!(hex.len() > 150_000, "{} bytes", hex.len() / 2);
    let cookie = std::fs::read_to_string(node.datadir.join("regtest/.cookie")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(cookie.trim());
    let body = format!(
        r#"{{"method":"getblock","params":["{}",0],"id":1}}"#,
        big.block_hash()
    );
    let mut conn = harness::KeepAlive::connect(node.rpc).unwrap();
    let auth = format!("Basic {auth}");
    let mut took = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let (status, _, answer) = conn
            .request("POST", "/", &[("Authorization", &auth)], &body)
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(status, 200);
        assert_eq!(json(&answer)["result"], hex);
    }
    let port = conn.local_addr().port();
    let sock = node_socket(&node, port);
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option into `on`.
    let r = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!((r, on), (0, 1), "TCP_NODELAY on the node's socket");
    took.sort();
    eprintln!(
        "keep-alive getblock 0 of {} bytes: p50 {:?}, max {:?}",
        hex.len() / 2,
        took[25],
        took[49]
    );
}

/// With the chain thread stuck, `getblockcount`, `getbestblockhash`, `getblockchaininfo` (with a
/// warning saying so) and `getchaintips` answer from the view it last published, each answer
/// counted as degraded; calls that need the chain state fail at once with the reason instead of
/// waiting out their timeout (30 s here).
#[test]
fn tip_calls_answer_while_the_chain_thread_is_stuck() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "heartbeat_timeout_secs = 1.0\n[rpc]\ntimeout_secs = 30.0\n[debug]\nstall_component = \"chain\"\nstall_after_secs = 1.0\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let tip = node.call("getbestblockhash", serde_json::json!([]));
    let header = node.call("getblockheader", serde_json::json!([tip]));
    let header_hex = node.call("getblockheader", serde_json::json!([tip, false]));
    let info = node.call("getblockchaininfo", serde_json::json!([]));
    assert_eq!(
        info["warnings"],
        serde_json::json!([]),
        "no warning while it answers"
    );
    harness::poll(Duration::from_secs(10), "the chain thread to stall", || {
        let d = json(&node.get("/health/detailed").ok()?.1);
        (d["components"]["chain"]["status"] == "unhealthy").then_some(())
    });
    node.rpc_err(
        "getblockhash",
        serde_json::json!([0]),
        "the chain thread has not answered",
    );
    assert_eq!(node.call("getblockcount", serde_json::json!([])), 0);
    assert_eq!(node.call("getbestblockhash", serde_json::json!([])), tip);
    let info = node.call("getblockchaininfo", serde_json::json!([]));
    assert_eq!(
        (info["blocks"].clone(), info["bestblockhash"].clone()),
        (serde_json::json!(0), tip.clone())
    );
    assert_eq!(info["chain"], "regtest");
    let warning = info["warnings"][0].as_str().unwrap_or_default().to_owned();
    assert!(warning.contains("last chain state it published"), "{info}");
    assert_eq!(
        node.call("getchaintips", serde_json::json!([])),
        serde_json::json!([{"height": 0, "hash": tip, "branchlen": 0, "status": "active"}])
    );
    // The tip's header, from the view, as the chain state gave it.
    assert_eq!(
        node.call("getblockheader", serde_json::json!([tip])),
        header
    );
    assert_eq!(
        node.call("getblockheader", serde_json::json!([tip, false])),
        header_hex
    );
    for m in [
        "getblockcount",
        "getbestblockhash",
        "getblockchaininfo",
        "getchaintips",
        "getblockheader",
    ] {
        let n = node.metric(&format!(
            "bllvm_rpc_degraded_answers_total{{method=\"{m}\"}}"
        ));
        assert!(n >= 1.0, "{m}: {n}");
    }
    // Parameters are still checked.
    node.rpc_err("getblockcount", serde_json::json!([1]), "");
}

/// `getblock` 1 and 2 and `getblockheader` agree with the block `getblock` 0 returns, decoded
/// here: sizes, weight, nTx, txids, and each transaction's fields (they are written without
/// decoding the block, or straight from structs). Before and after the node stops (the block
/// then comes from the block files, not memory).
#[test]
fn getblock_verbosities_agree_with_the_decoded_block() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    let blocks = harness::chain::spend_chain(1, 40);
    for b in &blocks {
        node.submit(b);
    }
    let check = |node: &TestNode| {
        let hash = blocks.last().unwrap().block_hash().to_string();
        let hex = node.call("getblock", serde_json::json!([hash, 0]));
        let raw = <Vec<u8> as bitcoin::hex::FromHex>::from_hex(hex.as_str().unwrap()).unwrap();
        let block: bitcoin::Block = bitcoin::consensus::deserialize(&raw).unwrap();
        assert_eq!(&block, blocks.last().unwrap());
        let one = node.call("getblock", serde_json::json!([hash, 1]));
        let stripped = block.txdata.iter().map(|t| t.base_size()).sum::<usize>() + 80 + 1;
        assert_eq!(one["size"], raw.len(), "{one}");
        assert_eq!(one["strippedsize"], stripped);
        assert_eq!(one["weight"], block.weight().to_wu());
        assert_eq!(one["nTx"], block.txdata.len());
        let txids: Vec<String> = block
            .txdata
            .iter()
            .map(|t| t.compute_txid().to_string())
            .collect();
        assert_eq!(one["tx"], serde_json::json!(txids));
        let header = node.call("getblockheader", serde_json::json!([hash]));
        assert_eq!(header["nTx"], block.txdata.len());
        let two = node.call("getblock", serde_json::json!([hash, 2]));
        assert_eq!(two["weight"], one["weight"]);
        for (t, v) in block.txdata.iter().zip(two["tx"].as_array().unwrap()) {
            assert_eq!(v["txid"], t.compute_txid().to_string());
            assert_eq!(v["hash"], t.compute_wtxid().to_string());
            assert_eq!(v["size"], t.total_size());
            assert_eq!(v["vsize"], t.vsize());
            assert_eq!(v["hex"], bitcoin::consensus::encode::serialize_hex(t));
            assert_eq!(v["vin"].as_array().unwrap().len(), t.input.len());
            assert_eq!(v["vout"][0]["value"], t.output[0].value.to_btc());
        }
        // Verbosity 3: each input's spent coin and the fee, from the undo data.
        let txs: std::collections::HashMap<bitcoin::Txid, &bitcoin::Transaction> = blocks
            .iter()
            .flat_map(|b| b.txdata.iter().map(|t| (t.compute_txid(), t)))
            .collect();
        let three = node.call("getblock", serde_json::json!([hash, 3]));
        assert!(
            three["tx"][0]["vin"][0].get("prevout").is_none(),
            "the coinbase spends nothing"
        );
        for (t, v) in block
            .txdata
            .iter()
            .zip(three["tx"].as_array().unwrap())
            .skip(1)
        {
            let mut paid = 0;
            for (input, vin) in t.input.iter().zip(v["vin"].as_array().unwrap()) {
                let spent =
                    &txs[&input.previous_output.txid].output[input.previous_output.vout as usize];
                paid += spent.value.to_sat();
                assert_eq!(vin["prevout"]["value"], spent.value.to_btc(), "{vin}");
                assert_eq!(
                    vin["prevout"]["scriptPubKey"]["hex"],
                    bitcoin::hex::DisplayHex::to_lower_hex_string(spent.script_pubkey.as_bytes())
                );
                assert_eq!(vin["prevout"]["generated"], false);
            }
            let out: u64 = t.output.iter().map(|o| o.value.to_sat()).sum();
            assert_eq!(v["fee"], bitcoin::Amount::from_sat(paid - out).to_btc());
        }
    };
    check(&node);
    node.stop();
    check(&TestNode::ready_on(&datadir, ""));
}

/// `getblockheader` and `getblockhash` go from the HTTP gate straight to the chain thread: they
/// are answered while the only worker is held (by a call waiting on a stalled p2p thread) and
/// the work queue is full, with the usual metrics.
#[test]
fn chain_reads_skip_the_workers() {
    let node = TestNode::ready_with(NodeOptions {
        config: Some(
            "heartbeat_timeout_secs = 1.0\n[rpc]\nthreads = 1\nwork_queue = 1\ntimeout_secs = 30.0\n[debug]\nstall_component = \"p2p\"\nstall_after_secs = 0.2\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    let auth = cookie_auth(&node);
    let addr = node.rpc;
    let tip = node.call("getbestblockhash", serde_json::json!([]));
    // Once p2p stalls, a setban waits on it for the whole timeout, holding the worker.
    harness::poll(Duration::from_secs(10), "p2p to stall", || {
        let d = json(&node.get("/health/detailed").ok()?.1);
        (d["components"]["p2p"]["status"] != "healthy").then_some(())
    });
    let hold = |body: &'static str| {
        let a = auth.clone();
        std::thread::spawn(move || {
            let _ = http_full(addr, "POST", "/", &[("Authorization", &a)], body);
        })
    };
    let _held = hold(r#"{"method":"setban","params":["127.9.9.9","add"],"id":1}"#);
    harness::poll(Duration::from_secs(10), "the worker to be held", || {
        (node.metric_opt("bllvm_rpc_in_flight")? == 1.0).then_some(())
    });
    let _queued = hold(r#"{"method":"help","id":2}"#);
    harness::poll(Duration::from_secs(10), "a request queued", || {
        let depth = node.metric_opt("bllvm_channel_depth{channel=\"rpc_work_queue\"}")?;
        (depth == 1.0).then_some(())
    });
    let (code, _, body) = post(&node, &auth, r#"{"method":"help","id":3}"#);
    assert_eq!(code, 503, "the workers are full: {body}");
    let (code, _, body) = post(
        &node,
        &auth,
        &format!(r#"{{"method":"getblockheader","params":[{tip}],"id":4}}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["result"]["hash"], tip);
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockhash","params":[0],"id":5}"#,
    );
    assert_eq!((code, &json(&body)["result"]), (200, &tip), "{body}");
    let (code, _, body) = post(
        &node,
        &auth,
        r#"{"method":"getblockhash","params":[7],"id":6}"#,
    );
    assert_eq!(code, 500, "{body}");
    assert_eq!(json(&body)["error"]["code"], -8, "{body}");
    assert_eq!(
        node.metric("bllvm_rpc_requests_total{method=\"getblockheader\",outcome=\"success\"}"),
        1.0
    );
}

/// `[rpc] cookie_perms` (Core's -rpccookieperms) sets the cookie's mode whatever the umask;
/// an unknown value stops the start with the key named.
#[test]
fn cookie_perms_set_the_cookie_mode() {
    for (perms, mode) in [("owner", 0o600), ("group", 0o640), ("all", 0o644)] {
        let node = TestNode::ready_with(NodeOptions {
            config: Some(format!("[rpc]\ncookie_perms = \"{perms}\"\n")),
            ..NodeOptions::default()
        });
        let got = std::fs::metadata(cookie_path(&node))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(got & 0o777, mode, "cookie_perms = {perms}");
        node.call("getblockcount", serde_json::json!([]));
    }
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc]\ncookie_perms = \"world\"\n".into()),
        ..NodeOptions::default()
    });
    assert_eq!(node.wait_exit(Duration::from_secs(10)), 1);
    assert!(node.log().contains("cookie_perms"), "{}", node.log());
}
