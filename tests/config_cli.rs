//! The `config` subcommands and start-up rejection of bad configs, on the real binary.

mod harness;

use harness::BIN;
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shipped_example_configs_pass_config_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in [
        "regtest.toml",
        "testnet4.toml",
        "mainnet.toml",
        "ha-full.toml",
        "default.toml",
    ] {
        let path = dir.join(name);
        let out = run(&["config", "check", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        // The effective config is printed and is itself a valid config.
        let printed = text(&out.stdout);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &printed).unwrap();
        let again = run(&["config", "check", tmp.path().to_str().unwrap()]);
        assert!(
            again.status.success(),
            "{name} reprinted:\n{printed}\n{}",
            text(&again.stderr)
        );
        assert_eq!(
            text(&again.stdout),
            printed,
            "{name}: effective config is stable"
        );
    }
}

#[test]
fn config_check_shows_resolved_defaults_and_flags() {
    let out = run(&[
        "--network",
        "regtest",
        "--datadir",
        "/srv/x",
        "config",
        "check",
    ]);
    assert!(out.status.success());
    let v: toml::Value = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["chain"].as_str(), Some("regtest"));
    assert_eq!(v["datadir"].as_str(), Some("/srv/x"));
    assert_eq!(v["rpc"]["bind"].as_str(), Some("127.0.0.1:18443"));
    assert_eq!(v["network"]["bind"].as_str(), Some("127.0.0.1:18444"));
}

#[test]
fn config_default_is_commented_and_accepted() {
    let out = run(&["config", "default"]);
    assert!(out.status.success());
    let body = text(&out.stdout);
    assert!(body.lines().filter(|l| l.starts_with('#')).count() > 20);
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &body).unwrap();
    assert!(run(&["config", "check", tmp.path().to_str().unwrap()])
        .status
        .success());
}

/// Starts the node with `config`; it must exit 1 naming `key` and leave no datadir behind.
fn rejected_at_start(config: &str, key: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = Command::new(BIN)
        .args([
            "--network",
            "regtest",
            "--rpc-bind",
            "127.0.0.1:0",
            "--p2p-bind",
            "127.0.0.1:0",
        ])
        .arg("--datadir")
        .arg(&datadir)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(key), "stderr does not name {key}: {err}");
    assert!(
        err.contains(cfg.to_str().unwrap()),
        "stderr does not name the file: {err}"
    );
    assert!(!datadir.exists(), "datadir was created");
    // `config check` gives the same verdict.
    let check = run(&["config", "check", cfg.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stderr).contains(key));
}

#[test]
fn unknown_key_is_rejected() {
    rejected_at_start("[rpc]\nthreadz = 4\n", "threadz");
}

#[test]
fn unknown_section_is_rejected() {
    rejected_at_start("[rcp]\nthreads = 4\n", "rcp");
}

#[test]
fn wrong_type_is_rejected() {
    rejected_at_start("[network]\nmax_outbound = \"eight\"\n", "max_outbound");
}

#[test]
fn bad_enum_value_lists_what_is_allowed() {
    rejected_at_start("[storage]\nbackend = \"leveldb\"\n", "leveldb");
    rejected_at_start("[storage]\nbackend = \"leveldb\"\n", "redb");
}

#[test]
fn pruning_target_above_threshold_is_rejected() {
    rejected_at_start(
        "[storage]\npruning_threshold_gb = 0.002\npruning_target_gb = 0.005\n",
        "storage.pruning_target_gb",
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let out = run(&["--config", "/nonexistent/bllvm.toml", "config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/bllvm.toml"));
}

/// `config check` only: the start helper's --rpc-bind would override the file's bind.
fn check_rejects(config: &str, key: &str) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), config).unwrap();
    let out = run(&["config", "check", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{config}");
    assert!(text(&out.stderr).contains(key), "{}", text(&out.stderr));
}

#[test]
fn non_loopback_rpc_needs_allowed_ranges_and_credentials() {
    check_rejects("[rpc]\nbind = \"0.0.0.0:18443\"\n", "allow_ip");
    check_rejects(
        "[rpc]\nbind = \"0.0.0.0:18443\"\nallow_ip = [\"10.0.0.0/8\"]\n",
        "rpc.user/rpc.password or rpc.rpcauth",
    );
    rejected_at_start("[rpc]\nrpcauth = [\"nosalt\"]\n", "rpc.rpcauth");
    rejected_at_start("[rpc]\nallow_ip = [\"10.0.0.0/40\"]\n", "rpc.allow_ip");
    rejected_at_start("[rpc]\nuser = \"bob\"\n", "rpc.password");
}
