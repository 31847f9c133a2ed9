//! Signals, the ordered shutdown and component failures on the real binary.

mod harness;

use harness::{poll, NodeOptions, TestNode};
use std::time::{Duration, Instant};

#[test]
fn sigterm_exits_0_releases_the_lock_and_restart_works() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    let socket = node.datadir.join("regtest/http.sock");
    assert!(socket.exists(), "the gate's internal socket");
    let sent = Instant::now();
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0, "{}", node.log());
    eprintln!("SIGTERM to exit: {:?}", sent.elapsed());
    // A clean exit leaves neither the cookie nor the internal socket.
    assert!(!socket.exists() && !node.datadir.join("regtest/.cookie").exists());
    let log = node.log();
    assert!(log.contains("shutdown complete"), "{log}");
    // The order of the design: rpc, p2p, pruning, chain, storage, http.
    let pos = |s: &str| log.find(s).unwrap_or_else(|| panic!("no `{s}` in {log}"));
    let order = ["rpc", "p2p", "pruning", "chain", "storage", "http"]
        .map(|s| pos(&format!("shutdown: {s} stopped")));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");

    // Same datadir and ports at once: the lock and both ports were released.
    let mut again = TestNode::start_with(NodeOptions {
        datadir: Some(node.datadir.clone()),
        ports: Some((node.rpc.port(), node.p2p.port())),
        ..NodeOptions::default()
    });
    again.wait_ready(Duration::from_secs(5));
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    node.signal(libc::SIGINT);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0, "{}", node.log());
}

#[test]
fn sighup_is_logged_and_ignored() {
    let mut node = TestNode::start();
    node.wait_ready(Duration::from_secs(5));
    node.signal(libc::SIGHUP);
    poll(Duration::from_secs(5), "SIGHUP log line", || {
        node.log()
            .contains("SIGHUP received and ignored")
            .then_some(())
    });
    assert_eq!(node.get("/health").unwrap().0, 200);
    assert!(node.child.try_wait().unwrap().is_none());
}

#[test]
fn component_panic_is_logged_and_exits_2() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some("[debug]\npanic_component = \"pruning\"\npanic_after_secs = 0.3\n".into()),
        ..NodeOptions::default()
    });
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 2);
    let log = node.log();
    assert!(log.contains("thread `pruning` panicked"), "{log}");
    assert!(
        log.contains("component pruning (panic in thread pruning) failed"),
        "{log}"
    );
    assert!(log.contains("shutdown complete with errors"), "{log}");
}

#[test]
fn stuck_component_makes_shutdown_exit_1_naming_it() {
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "shutdown_timeout_secs = 1.0\n[debug]\nstall_component = \"chain\"\nstall_after_secs = 0.0\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    poll(Duration::from_secs(5), "stall", || {
        node.log().contains("chain stalls now").then_some(())
    });
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 1);
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("shutdown timed out"))
        .unwrap_or_else(|| panic!("no shutdown timeout logged: {log}"));
    // Only the chain: the storage writer and HTTP after it still stop within their own share.
    assert!(
        line.ends_with("shutdown timed out after 1.0s; stuck: chain"),
        "{line}"
    );
    assert!(log.contains("shutdown: storage stopped"), "{log}");
    assert!(log.contains("shutdown: http stopped"), "{log}");
}

#[test]
fn second_sigint_forces_exit() {
    // A stalled chain keeps the ordered shutdown waiting for its 60 s deadline.
    let mut node = TestNode::start_with(NodeOptions {
        config: Some(
            "shutdown_timeout_secs = 60.0\n[debug]\nstall_component = \"chain\"\nstall_after_secs = 0.0\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    poll(Duration::from_secs(5), "stall", || {
        node.log().contains("chain stalls now").then_some(())
    });
    node.signal(libc::SIGINT);
    poll(Duration::from_secs(5), "shutdown to start", || {
        node.log().contains("shutdown started").then_some(())
    });
    node.signal(libc::SIGINT);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 130);
    assert!(node.log().contains("second SIGINT: forcing immediate exit"));
}

/// SIGTERM during a start-up reindex stops it between blocks within the shutdown deadline, with
/// exit 0, and the next start resumes it to the same tip.
#[test]
fn sigterm_during_a_reindex_stops_it_and_the_next_start_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    node.call(
        "generatetoaddress",
        serde_json::json!([1500, harness::address(1)]),
    );
    let tip = node.tip();
    node.stop();
    // Without its store the node rebuilds the chain from the block files at start.
    std::fs::remove_file(datadir.join("regtest/chainstate.redb")).unwrap();
    let mut node = TestNode::start_with(NodeOptions {
        datadir: Some(datadir.clone()),
        ..NodeOptions::default()
    });
    poll(
        Duration::from_secs(60),
        "the reindex to be under way",
        || node.log().contains("reindex: 500 blocks").then_some(()),
    );
    // Probes answer meanwhile: alive, not ready with the step, RPC 503.
    assert_eq!(node.get("/health/live").unwrap().0, 200);
    let (code, body) = node.get("/health/ready").unwrap();
    assert_eq!(code, 503);
    assert!(
        harness::json(&body)["step"]
            .as_str()
            .unwrap()
            .contains("reindex from block files"),
        "{body}"
    );
    let (code, _, body) = harness::http_full(node.rpc, "POST", "/", &[], "{}").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("Starting up"), "{body}");
    let asked = Instant::now();
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(20)), 0, "{}", node.log());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped within shutdown_timeout_secs"
    );
    assert!(node.log().contains("reindex stopped"), "{}", node.log());
    assert!(
        datadir.join("regtest/blocks.reindex").exists(),
        "left to resume"
    );
    let node = TestNode::ready_on(&datadir, "");
    assert_eq!(node.tip(), tip);
    assert!(!datadir.join("regtest/blocks.reindex").exists());
}

/// The node raises its soft open-file limit to the hard one at start (sockets are files).
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    // Start the node with a low soft limit (inherited), so raising it is what the test sees.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(lim.rlim_max > 256, "the hard limit leaves nothing to raise");
    let low = libc::rlimit {
        rlim_cur: 256,
        rlim_max: lim.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut node = TestNode::start();
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    node.wait_ready(Duration::from_secs(10));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    // "Max open files  <soft>  <hard>  files"
    assert_eq!(v[3], v[4], "soft limit raised to the hard one: {line}");
    assert!(node.log().contains("open file limit"), "{}", node.log());
}
