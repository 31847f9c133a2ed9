//! Health and metrics endpoints of a real node over real HTTP.

mod harness;

use harness::{http, http_full, json, NodeOptions, TestNode};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn probes_answer_with_the_documented_shapes() {
    let mut node = TestNode::start();
    let took = node.wait_ready(Duration::from_secs(5));
    eprintln!("time to ready: {took:?}");

    let (code, body) = node.get("/health").unwrap();
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["status"], "healthy");
    assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000);

    let (code, body) = node.get("/health/live").unwrap();
    assert_eq!(
        (code, json(&body)),
        (200, serde_json::json!({"status": "alive"}))
    );

    let (code, body) = node.get("/health/ready").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        json(&body),
        serde_json::json!({"status": "ready", "chain_initialized": true, "storage_available": true})
    );

    let (code, body) = node.get("/health/detailed").unwrap();
    assert_eq!(code, 200);
    let d = json(&body);
    assert_eq!(d["status"], "healthy");
    assert_eq!(d["chain"]["initialized"], true);
    assert_eq!(d["chain"]["height"], 0);
    // The regtest genesis block.
    assert_eq!(
        d["chain"]["tip_hash"],
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    assert_eq!(d["storage"]["available"], true);
    assert!(d["storage"]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(d["network"]["peers_connected"], 0);
    assert_eq!(d["network"]["peers_max"], 125);
    assert_eq!(d["rpc"]["enabled"], true);
    assert!(d["rpc"]["requests_processed"].is_u64());
    assert!(d["uptime_secs"].is_u64());
    for c in ["supervisor", "http", "p2p", "chain", "storage", "pruning"] {
        let comp = &d["components"][c];
        assert_eq!(comp["status"], "healthy", "{c}: {comp}");
        assert!(comp["reason"].is_string(), "{c}: {comp}");
        assert!(comp["last_heartbeat_secs_ago"].as_f64().unwrap() < 30.0);
    }
}

#[test]
fn unknown_paths_and_wrong_methods_get_json_errors() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    let (code, headers, body) = http_full(node.rpc, "GET", "/nope", &[], "").unwrap();
    assert_eq!(code, 404);
    assert!(headers.contains(&("content-type".into(), "application/json".into())));
    assert!(json(&body)["error"].is_string());

    let (code, headers, body) = http_full(node.rpc, "POST", "/health", &[], "{}").unwrap();
    assert_eq!(code, 405);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "allow" && v.contains("GET")));
    assert!(json(&body)["error"].is_string());

    let (code, body) = http(node.rpc, "DELETE", "/metrics", "").unwrap();
    assert_eq!(code, 405);
    json(&body);
}

#[test]
fn metrics_pass_promtool_and_cover_the_backbone() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    // One request so the request counter has a sample.
    node.get("/health").unwrap();
    let (code, headers, body) = http_full(node.rpc, "GET", "/metrics", &[], "").unwrap();
    assert_eq!(code, 200);
    let ct = headers.iter().find(|(k, _)| k == "content-type").unwrap();
    assert!(ct.1.starts_with("text/plain; version=0.0.4"), "{ct:?}");
    for name in [
        "bllvm_build_info{",
        "bllvm_uptime_seconds ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "bllvm_channel_depth{channel=\"peer_events\"}",
        "bllvm_channel_depth{channel=\"write_batches\"}",
        "bllvm_component_status{component=\"chain\"} 0",
        "bllvm_http_requests_total{path=\"/health\",status=\"200\"}",
        "bllvm_shutdown_in_progress 0",
        "bllvm_health_status 0",
    ] {
        assert!(body.contains(name), "missing {name} in:\n{body}");
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (apt-get install prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn disabled_endpoints_are_not_found() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[rpc]\nhealth_checks_enabled = false\nmetrics_enabled = false\n".into()),
        ..NodeOptions::default()
    });
    // Readiness cannot be probed over HTTP here; wait for the log line instead.
    harness::poll(Duration::from_secs(5), "node ready", || {
        node.log().contains("node is ready").then_some(())
    });
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/health/detailed",
        "/metrics",
    ] {
        let (code, body) = node.get(path).unwrap();
        assert_eq!(code, 404, "{path}");
        json(&body);
    }
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(10)), 0);
}
