//! The test plays systemd: it owns NOTIFY_SOCKET and checks READY, WATCHDOG and STOPPING.

mod harness;

use harness::systemd::FakeSystemd;
use harness::{NodeOptions, TestNode};
use std::time::{Duration, Instant};

fn node_under(systemd: &FakeSystemd, config: &str) -> TestNode {
    TestNode::start_with(NodeOptions {
        env: vec![
            ("NOTIFY_SOCKET".into(), systemd.path.clone()),
            // 400 ms: WATCHDOG=1 expected every 200 ms.
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        config: Some(config.into()),
        ..NodeOptions::default()
    })
}

#[test]
fn ready_then_periodic_watchdog_then_stopping() {
    let systemd = FakeSystemd::new();
    let mut node = node_under(&systemd, "heartbeat_timeout_secs = 2.0\n");
    let seen = systemd.expect("READY=1", Duration::from_secs(5));
    assert!(seen.iter().any(|m| m.contains("STATUS=")), "{seen:?}");
    // READY is only sent once storage is open, so readiness holds at that point.
    assert_eq!(node.get("/health/ready").unwrap().0, 200);
    for _ in 0..3 {
        systemd.expect("WATCHDOG=1", Duration::from_secs(5));
    }
    node.signal(libc::SIGTERM);
    systemd.expect("STOPPING=1", Duration::from_secs(5));
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
}

#[test]
fn watchdog_stops_while_a_component_is_stalled() {
    let systemd = FakeSystemd::new();
    let mut node = node_under(
        &systemd,
        "heartbeat_timeout_secs = 0.6\nshutdown_timeout_secs = 1.0\n\
         [debug]\nstall_component = \"chain\"\nstall_after_secs = 1.5\n",
    );
    systemd.expect("READY=1", Duration::from_secs(5));
    systemd.expect("WATCHDOG=1", Duration::from_secs(5));
    // Once liveness reports the stale heartbeat, the supervisor sees it too.
    harness::poll(Duration::from_secs(10), "liveness to fail", || {
        matches!(node.get("/health/live"), Ok((503, _))).then_some(())
    });
    let (code, body) = node.get("/health/detailed").unwrap();
    assert_eq!(code, 503);
    let d = harness::json(&body);
    assert_eq!(d["components"]["chain"]["status"], "unhealthy", "{d}");
    // Drain what was sent before the supervisor noticed (bounded: a watchdog fed forever must
    // fail the check below, not hang here), then listen for 2 s (10 intervals).
    let drain_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < drain_until && systemd.recv(Duration::from_millis(300)).is_some() {}
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(msg) = systemd.recv(left) {
            assert!(
                !msg.contains("WATCHDOG=1"),
                "watchdog fed while stalled: {msg}"
            );
        }
    }
    node.signal(libc::SIGTERM);
    systemd.expect("STOPPING=1", Duration::from_secs(5));
    // The stalled chain never stops: the shutdown deadline names it, and only it (the stages
    // after it still had their own share of the deadline).
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 1);
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("shutdown timed out"))
        .expect("the shutdown timeout is logged");
    assert!(line.contains("stuck: chain"), "{line}");
    assert!(
        !line.contains("stuck: chain,"),
        "later stages starved: {line}"
    );
}

/// A long start-up (here a reindex of 300 blocks) tells systemd it is still working:
/// `EXTEND_TIMEOUT_USEC` (three notify intervals) arrives before `READY=1`, and none after.
#[test]
fn a_long_start_up_extends_the_start_timeout() {
    let (_tmp, datadir, tip) = harness::stopped_after_mining(300);
    let systemd = FakeSystemd::new();
    let mut node = TestNode::start_with(NodeOptions {
        env: vec![("NOTIFY_SOCKET".into(), systemd.path.clone())],
        args: vec!["--reindex".into()],
        datadir: Some(datadir),
        config: Some("[debug]\nstartup_notify_secs = 0.02\n".into()),
        ..NodeOptions::default()
    });
    let seen = systemd.expect("READY=1", Duration::from_secs(120));
    assert!(
        seen.iter()
            .any(|m| m.lines().any(|l| l == "EXTEND_TIMEOUT_USEC=60000")),
        "no extension before READY=1: {seen:?}"
    );
    assert_eq!(node.tip().1, tip);
    // Once ready, nothing more is extended (the watchdog is what counts then).
    node.signal(libc::SIGTERM);
    let after = systemd.expect("STOPPING=1", Duration::from_secs(10));
    assert!(
        !after.iter().any(|m| m.contains("EXTEND_TIMEOUT_USEC")),
        "{after:?}"
    );
    assert_eq!(node.wait_exit(Duration::from_secs(15)), 0);
}
