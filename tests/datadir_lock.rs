//! Two nodes on one datadir: the second refuses to start and the first is unaffected.

mod harness;

use harness::{NodeOptions, TestNode};
use std::time::Duration;

#[test]
fn second_instance_on_same_datadir_exits_1_naming_the_pid() {
    let mut first = TestNode::start();
    first.wait_ready(Duration::from_secs(5));
    let mut second = TestNode::start_with(NodeOptions {
        datadir: Some(first.datadir.clone()),
        ..NodeOptions::default()
    });
    assert_eq!(second.wait_exit(Duration::from_secs(10)), 1);
    let log = second.log();
    assert!(
        log.contains(&format!(
            "datadir is in use by another bllvm-node process (pid {})",
            first.pid()
        )),
        "{log}"
    );
    // The first node still serves and still holds its lock.
    let (code, _) = first.get("/health/ready").unwrap();
    assert_eq!(code, 200);
    let lock = std::fs::read_to_string(first.datadir.join("regtest/.lock")).unwrap();
    assert_eq!(lock.trim(), first.pid().to_string());
}
