//! The deploy/ files checked with the tools operators use, against a live node.

mod harness;

use harness::{free_port, http, json, poll, NodeOptions, TestNode};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy(rel)).unwrap()
}

fn tool(name: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is required: apt-get install -y {package} (.ci/run installs it)"
    );
    Command::new(name)
}

#[test]
fn systemd_unit_verifies_and_has_the_required_settings() {
    let unit = read("systemd/bllvm-node.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=always",
        "RestartSec=10",
        "RestartSteps=6",
        "RestartMaxDelaySec=600",
        "WatchdogSec=60",
        "LimitNOFILE=65536",
        "ProtectSystem=full",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "StateDirectory=bllvm",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    // The datadir the unit passes is the one StateDirectory= makes writable.
    assert!(unit.contains("--datadir /var/lib/bllvm"));

    // verify checks that ExecStart exists, so point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bllvm-node.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/bllvm-node", harness::BIN),
    )
    .unwrap();
    // scripts/test provides systemd 254's verify when the system's is older (RestartSteps= and
    // RestartMaxDelaySec= are 254's); without it, only those two keys may be unknown.
    let analyze = std::env::var("BLLVM_SYSTEMD_ANALYZE").ok();
    let mut cmd = match &analyze {
        Some(path) => Command::new(path),
        None => tool("systemd-analyze", "systemd"),
    };
    let out = cmd.arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let version = systemd_version(&analyze);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("bllvm-node.service"))
        .filter(|l| {
            let backoff_key = l.contains("Unknown key 'RestartSteps'")
                || l.contains("Unknown key 'RestartMaxDelaySec'");
            !(backoff_key && version < 254)
        })
        .collect();
    if version < 254 {
        eprintln!(
            "*** systemd {version} cannot check RestartSteps=/RestartMaxDelaySec= (254+); run scripts/test to verify with 254 ***"
        );
    }
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify (systemd {version}):\n{stderr}"
    );
}

/// The major version `systemd-analyze --version` reports.
fn systemd_version(analyze: &Option<String>) -> u32 {
    let out = Command::new(analyze.as_deref().unwrap_or("systemd-analyze"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn prometheus_files_pass_promtool() {
    for (what, file) in [
        ("config", "prometheus/prometheus.yml"),
        ("rules", "prometheus/alerts.yml"),
    ] {
        let out = tool("promtool", "prometheus")
            .args(["check", what])
            .arg(deploy(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check {what} {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The rules' unit tests: for each rule covered, a series that fires it and one that must not.
#[test]
fn alert_rules_fire_on_their_unit_tests() {
    let out = tool("promtool", "prometheus")
        .args(["test", "rules"])
        .arg(deploy("prometheus/alerts_test.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every rule names its runbook, which exists and has the five parts an operator needs; every
/// runbook belongs to a rule; every rule has a unit test in alerts_test.yml.
#[test]
fn every_alert_has_a_runbook_and_a_unit_test() {
    let rules = read("prometheus/alerts.yml");
    let tests = read("prometheus/alerts_test.yml");
    let names: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in &names {
        let link = format!("runbook_url: \"docs/runbooks/{name}.md\"");
        assert!(rules.contains(&link), "{name} has no runbook_url");
        let text = std::fs::read_to_string(root.join(format!("docs/runbooks/{name}.md")))
            .unwrap_or_else(|_| panic!("docs/runbooks/{name}.md is missing"));
        for part in [
            "## What it means",
            "## Confirm",
            "## What to do",
            "## Recover",
            "## Prevent",
        ] {
            assert!(text.contains(part), "{name}'s runbook has no {part:?}");
        }
        assert!(
            tests.contains(&format!("alertname: {name}")),
            "{name} has no unit test in alerts_test.yml"
        );
    }
    for entry in std::fs::read_dir(root.join("docs/runbooks")).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let name = file.trim_end_matches(".md");
        assert!(
            names.contains(&name),
            "docs/runbooks/{file} belongs to no rule"
        );
    }
}

/// Every `bllvm_*`/`process_*` series named in a dashboard or rule must exist on a live node.
#[test]
fn dashboard_and_alerts_only_use_metrics_the_node_exports() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    // Families labelled by RPC method appear with the first call.
    node.call("getblockcount", serde_json::json!([]));
    let (_, metrics) = node.get("/metrics").unwrap();
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let dashboard = read("grafana/bllvm-node.json");
    json(&dashboard);
    for (file, text) in [
        ("grafana", dashboard),
        ("alerts", read("prometheus/alerts.yml")),
    ] {
        for name in metric_names(&text) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.contains(&name) || exported.contains(base),
                "{file} uses {name}, which the node does not export"
            );
        }
    }
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["bllvm_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn kubernetes_probe_paths_are_served() {
    let manifest = read("kubernetes/bllvm-node.yaml");
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    let paths: BTreeSet<&str> = manifest
        .lines()
        .filter_map(|l| l.split("path: ").nth(1))
        .map(|p| p.split([',', ' ', '}']).next().unwrap())
        .collect();
    assert!(
        paths.contains("/health/live") && paths.contains("/health/ready"),
        "{paths:?}"
    );
    for p in paths {
        assert_eq!(node.get(p).unwrap().0, 200, "{p}");
    }
}

#[test]
fn kubernetes_configmap_passes_config_check() {
    let manifest = read("kubernetes/bllvm-node.yaml");
    let start = manifest.find("bllvm.toml: |").expect("configmap entry") + "bllvm.toml: |".len();
    let end = manifest[start..].find("---").map(|e| start + e).unwrap();
    let toml: String = manifest[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bllvm.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(harness::BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tool's process (Prometheus, HAProxy), killed on drop.
struct Tool(Child);

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus server scrapes the node and loads the shipped alert rules.
#[test]
fn real_prometheus_scrapes_the_node_and_evaluates_the_rules() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.yml");
    std::fs::copy(deploy("prometheus/alerts.yml"), &rules).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: bllvm\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            node.rpc
        ),
    )
    .unwrap();
    let port = free_port();
    let web: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _prom = Tool(
        tool("prometheus", "prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Option<String> {
        let (code, body) = http(web, "GET", &format!("/api/v1/query?query={q}"), "").ok()?;
        if code != 200 {
            return None;
        }
        let v = json(&body);
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    };
    // up{job="bllvm"}
    let up = poll(
        Duration::from_secs(60),
        "prometheus to scrape the node",
        || query("up%7Bjob%3D%22bllvm%22%7D"),
    );
    assert_eq!(up, "1");
    let health = poll(Duration::from_secs(30), "bllvm_health_status", || {
        query("bllvm_health_status")
    });
    assert_eq!(health, "0");
    // Every shipped rule loaded and evaluates without error.
    let groups = poll(Duration::from_secs(30), "rules to evaluate", || {
        let (_, body) = http(web, "GET", "/api/v1/rules", "").ok()?;
        let v = json(&body);
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        rules
            .iter()
            .all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .then_some(rules)
    });
    let shipped = read("prometheus/alerts.yml").matches("- alert:").count();
    assert_eq!(groups.len(), shipped);
    for r in groups {
        assert_eq!(r["health"], "ok", "{r}");
    }
}

/// The shipped HAProxy example passes HAProxy's own config check, and checks `/health` every
/// 10 s with 3 failures to mark a node down, as the operator guide asks.
#[test]
fn haproxy_example_passes_its_config_check() {
    let cfg = read("loadbalancer/haproxy.cfg");
    assert!(cfg.contains("option httpchk GET /health"), "{cfg}");
    assert!(
        cfg.contains("default-server inter 10s fall 3 rise 2"),
        "{cfg}"
    );
    let out = tool("haproxy", "haproxy")
        .arg("-c")
        .arg("-f")
        .arg(deploy("loadbalancer/haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example in front of a real node (its addresses and, so the test is quick, its check
/// interval replaced): requests reach the node; once the node turns unhealthy (its chain thread
/// stalls) HAProxy's `/health` checks take it out of the pool after three failures, and even
/// `/metrics`, which the node itself still serves, gets HAProxy's 503.
#[test]
fn haproxy_routes_to_the_node_and_takes_an_unhealthy_one_out() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "heartbeat_timeout_secs = 1.0\n[debug]\nstall_component = \"chain\"\nstall_after_secs = 3.0\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    node.wait_ready(Duration::from_secs(10));
    let port = free_port();
    let front: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = read("loadbalancer/haproxy.cfg")
        .replace("bind 127.0.0.1:18332", &format!("bind {front}"))
        .replace(
            "server node1 127.0.0.1:8332",
            &format!("server node1 {}", node.rpc),
        )
        .replace("inter 10s", "inter 200ms");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let _lb = Tool(
        tool("haproxy", "haproxy")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll(Duration::from_secs(10), "haproxy to route /metrics", || {
        http(front, "GET", "/metrics", "")
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    // The chain stalls: /health turns 503, and three failed checks later the node is out.
    poll(
        Duration::from_secs(30),
        "haproxy to take the node out",
        || {
            http(front, "GET", "/metrics", "")
                .ok()
                .filter(|(s, _)| *s == 503)
        },
    );
    let (direct, _) = node.get("/metrics").unwrap();
    assert_eq!(direct, 200, "the node itself still answers /metrics");
    let (health, _) = node.get("/health").unwrap();
    assert_eq!(health, 503);
}
