//! Many nodes' real protocol state machines and chains on a simulated network (`tests/sim`):
//! seeded latency, bandwidth, lost connection attempts and partitions; no sockets, no threads,
//! no clock. Each scenario runs in simulated time, so minutes and hours take wall seconds.

mod sim;

use sim::{node_addr, Behaviour, NetConfig, Sim};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

fn all_at(sim: &Sim, tip: bitcoin::BlockHash) -> bool {
    (0..sim.len()).all(|i| sim.tip(i).0 == tip)
}

fn lagging(sim: &Sim, tip: bitcoin::BlockHash) -> Vec<usize> {
    (0..sim.len()).filter(|i| sim.tip(*i).0 != tip).collect()
}

/// 50 nodes sync 1,000 blocks mined on one of them.
#[test]
fn fifty_nodes_sync_a_thousand_blocks() {
    let started = std::time::Instant::now();
    let n: usize = std::env::var("SIM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut sim = Sim::new(11, NetConfig::default(), n, 10);
    sim.run_for(Duration::from_secs(30));
    sim.mine(0, 1000);
    let tip = sim.tip(0).0;
    let synced = sim.run_until(Duration::from_secs(1800), |s| all_at(s, tip));
    assert!(
        synced,
        "behind after 30 simulated minutes: {:?}",
        lagging(&sim, tip)
    );
    eprintln!(
        "{n} nodes x 1,000 blocks: {:.1} simulated s, {} events, {:.2} wall s",
        sim.elapsed().as_secs_f64(),
        sim.events,
        started.elapsed().as_secs_f64()
    );
}

/// A transaction sent to one of 50 nodes reaches every mempool by trickled `inv`, `getdata` and
/// `tx` (each hop a Poisson delay of 2 s outbound, 5 s inbound on average).
#[test]
fn a_transaction_reaches_all_fifty_mempools() {
    let mut sim = Sim::new(31, NetConfig::default(), 50, 10);
    sim.run_for(Duration::from_secs(30));
    sim.mine(0, 101);
    let tip = sim.tip(0).0;
    assert!(sim.run_until(Duration::from_secs(600), |s| all_at(s, tip)));
    let (op, value) = sim.coinbase(0, 1);
    let tx = bllvm_node::chain::mining::spend_op_true(op, value);
    let txid = tx.compute_txid();
    let sent_at = sim.elapsed();
    sim.send_tx(0, tx);
    let everywhere = |s: &Sim| (0..s.len()).all(|i| s.has_tx(i, &txid));
    assert!(
        sim.run_until(Duration::from_secs(300), everywhere),
        "missing from {:?}",
        (0..sim.len())
            .filter(|i| !sim.has_tx(*i, &txid))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "a transaction reached 50 mempools in {:.1} simulated s",
        (sim.elapsed() - sent_at).as_secs_f64()
    );
}

/// Two halves mine apart for ten minutes; once the cut heals every node ends on the side with
/// more work (the stale-tip rule finds a peer across).
#[test]
fn fifty_nodes_converge_on_the_most_work_chain_after_a_partition_heals() {
    // Everyone knows everyone: each half can fill its outbound slots on its own side, so only
    // the stale-tip rule reaches across once the cut heals.
    let mut sim = Sim::new(21, NetConfig::default(), 50, 49);
    sim.run_for(Duration::from_secs(60));
    sim.mine(0, 5);
    let base = sim.tip(0).0;
    assert!(sim.run_until(Duration::from_secs(600), |s| all_at(s, base)));

    sim.partition(|i| u8::from(i >= 25));
    sim.mine(0, 3);
    sim.mine(25, 6);
    let (a, b) = (sim.tip(0).0, sim.tip(25).0);
    let halves = |s: &Sim| (0..25).all(|i| s.tip(i).0 == a) && (25..50).all(|i| s.tip(i).0 == b);
    assert!(
        sim.run_until(Duration::from_secs(600), halves),
        "each half converges on its own chain"
    );
    // The rest of ten minutes apart: each node fills its outbound slots on its own side.
    sim.run_for(Duration::from_secs(600));
    assert!(halves(&sim));
    sim.heal();
    let healed = sim.elapsed();
    let converged = sim.run_until(Duration::from_secs(6 * 3600), |s| all_at(s, b));
    assert!(converged, "still apart: {:?}", lagging(&sim, b));
    assert_eq!(sim.tip(0).1, 11, "the side with more work wins");
    eprintln!(
        "converged {:?} after the cut healed",
        sim.elapsed() - healed
    );
}

/// A peer that never delivers the blocks it is asked for is dropped when it holds up the
/// download window, and its blocks come from another peer: far sooner than the 10-minute block
/// timeout that would otherwise end it.
#[test]
fn a_staller_is_dropped_and_its_blocks_are_fetched_elsewhere() {
    let cfg = NetConfig {
        connect_loss: 0.0,
        ..NetConfig::default()
    };
    let mut sim = Sim::new(31, cfg, 0, 0);
    let honest = sim.add_node(node_addr(0), Behaviour::Honest, &[]);
    let staller = sim.add_node(node_addr(1), Behaviour::Staller, &[node_addr(0)]);
    sim.mine(honest, 300);
    let tip = sim.tip(honest).0;
    assert!(sim.run_until(Duration::from_secs(600), |s| s.tip(staller).0 == tip));
    let victim = sim.add_node(
        node_addr(2),
        Behaviour::Honest,
        &[node_addr(0), node_addr(1)],
    );
    let from = sim.elapsed();
    let synced = sim.run_until(Duration::from_secs(300), |s| s.tip(victim).0 == tip);
    assert!(synced, "the victim did not sync: {:?}", sim.tip(victim));
    let took = sim.elapsed() - from;
    let dropped = sim
        .disconnections
        .iter()
        .any(|(n, a, why)| *n == victim && a.ip() == node_addr(1).ip() && *why == "stall");
    assert!(dropped, "{:?} took {took:?}", sim.disconnections);
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

/// An attacker with 40 addresses in one /16 (addresses that sort first, and that gossip only
/// each other) gets at most one of the victim's outbound slots; the honest addresses it knows
/// fill the rest.
#[test]
fn an_eclipse_attempt_from_one_16_gets_at_most_one_outbound_slot() {
    let mut sim = Sim::new(41, NetConfig::default(), 0, 0);
    let honest: Vec<SocketAddr> = (0..8).map(node_addr).collect();
    let attackers: Vec<SocketAddr> = (0..40u8)
        .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 5, i, 1)), 18444))
        .collect();
    for a in &honest {
        sim.add_node(*a, Behaviour::Honest, &honest);
    }
    for a in &attackers {
        sim.add_node(*a, Behaviour::Honest, &attackers);
    }
    let mut book = attackers.clone();
    book.extend(&honest);
    let victim = sim.add_node(node_addr(100), Behaviour::Honest, &book);
    sim.run_for(Duration::from_secs(1200));
    let outbound: Vec<SocketAddr> = sim
        .protocol(victim)
        .peers()
        .filter(|(_, p)| !p.inbound() && p.ready())
        .map(|(_, p)| p.addr)
        .collect();
    let from_attacker = outbound
        .iter()
        .filter(|a| matches!(a.ip(), IpAddr::V4(v) if v.octets()[1] == 5))
        .count();
    assert!(from_attacker <= 1, "{outbound:?}");
    assert!(
        outbound.len() >= 7,
        "the honest ones fill the rest: {outbound:?}"
    );
}

/// Two miners find a block at once; the network splits between them until one of them finds
/// the next, and every node follows the longer chain (those on the other reorganise).
#[test]
fn a_reorg_race_between_two_miners_ends_on_the_longer_chain() {
    let mut sim = Sim::new(51, NetConfig::default(), 20, 8);
    sim.run_for(Duration::from_secs(60));
    sim.mine(0, 2);
    let base = sim.tip(0).0;
    assert!(sim.run_until(Duration::from_secs(600), |s| all_at(s, base)));
    sim.mine(3, 1);
    sim.mine(17, 1);
    assert_ne!(sim.tip(3).0, sim.tip(17).0, "two competing blocks");
    sim.run_for(Duration::from_secs(30));
    let on_3 = (0..20).filter(|i| sim.tip(*i).0 == sim.tip(3).0).count();
    assert!(
        (1..20).contains(&on_3),
        "the network is split: {on_3} on miner 3's block"
    );
    sim.mine(17, 1);
    let tip = sim.tip(17).0;
    assert!(
        sim.run_until(Duration::from_secs(600), |s| all_at(s, tip)),
        "{:?}",
        lagging(&sim, tip)
    );
    assert_eq!(sim.tip(3).1, 4);
}

/// A node sending corrupt frames is banned by each peer it reaches, and the others keep
/// syncing.
#[test]
fn a_junk_sender_is_banned_and_the_rest_keep_syncing() {
    let mut sim = Sim::new(61, NetConfig::default(), 10, 9);
    let everyone: Vec<SocketAddr> = (0..10).map(node_addr).collect();
    let junk_addr = node_addr(50);
    sim.add_node(junk_addr, Behaviour::Junk, &everyone);
    sim.run_for(Duration::from_secs(60));
    sim.mine(0, 100);
    let tip = sim.tip(0).0;
    let honest_synced = |s: &Sim| (0..10).all(|i| s.tip(i).0 == tip);
    assert!(sim.run_until(Duration::from_secs(900), honest_synced));
    let now_unix = sim::T0_UNIX + sim.elapsed().as_secs() as i64;
    let banned_by: Vec<usize> = (0..10)
        .filter(|i| {
            sim.protocol(*i)
                .manager()
                .bans
                .is_banned(&junk_addr.ip(), now_unix)
        })
        .collect();
    let mut hit: Vec<usize> = sim
        .disconnections
        .iter()
        .filter(|(n, a, why)| *n < 10 && a.ip() == junk_addr.ip() && *why == "malformed-message")
        .map(|(n, _, _)| *n)
        .collect();
    hit.sort_unstable();
    hit.dedup();
    assert!(!hit.is_empty(), "the junk sender reached nobody");
    assert_eq!(banned_by, hit, "each node it reached banned it");
}

/// The same seed gives the same run, event for event; another seed gives another.
#[test]
fn the_same_seed_gives_the_same_trace() {
    let run = |seed| {
        let mut sim = Sim::new(seed, NetConfig::default(), 12, 6);
        sim.run_for(Duration::from_secs(30));
        sim.mine(0, 40);
        sim.run_for(Duration::from_secs(120));
        (sim.trace(), sim.events, sim.tip(11))
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a.0, run(8).0);
}
