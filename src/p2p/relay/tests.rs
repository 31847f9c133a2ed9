//! Relay's bounds and ordering, driven by hand.

use super::*;
use crate::messages::{MempoolChange, MempoolDelta, RelayTx};
use std::sync::Arc;

fn tx(n: u32) -> Transaction {
    use bitcoin::{absolute, transaction, OutPoint, TxIn};
    let mut prev = [0u8; 32];
    prev[..4].copy_from_slice(&n.to_le_bytes());
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array(prev), 0),
            ..Default::default()
        }],
        output: vec![],
    }
}

fn added(t: &Transaction, fee_rate: u64, ancestors: usize) -> MempoolChange {
    MempoolChange::Added(RelayTx {
        tx: Arc::new(t.clone()),
        txid: t.compute_txid(),
        wtxid: t.compute_wtxid(),
        fee_rate,
        ancestors,
    })
}

fn current() -> (Relay, Rng, Instant) {
    let mut r = Relay::default();
    r.tip_changed(false);
    (r, Rng::seeded(1), Instant::now())
}

#[test]
fn a_peers_queue_keeps_the_best_paying_announcements_within_its_bound() {
    let (mut r, mut rng, t0) = current();
    r.peer_ready(1, true, true, true, t0, &mut rng);
    let changes = (0..MAX_QUEUE as u32 + 500)
        .map(|n| added(&tx(n), 1000 + u64::from(n), 0))
        .collect();
    r.mempool_changed(
        MempoolDelta {
            changes,
            floor: 1000,
            ..Default::default()
        },
        t0,
    );
    assert_eq!(r.queued(1), MAX_QUEUE);
    // The 500 cheapest were dropped: the first trickle starts with the dearest.
    let out = r.tick(t0 + Duration::from_secs(3600), &mut rng);
    let inv = out
        .iter()
        .find_map(|a| match a {
            Action::Send(1, NetworkMessage::Inv(items)) => Some(items.clone()),
            _ => None,
        })
        .expect("a trickle");
    let top = tx(MAX_QUEUE as u32 + 499).compute_wtxid();
    assert_eq!(inv[0], Inventory::WTx(top));
    // Core's share: the target plus five per thousand waiting.
    assert_eq!(inv.len(), BROADCAST_TARGET + MAX_QUEUE / 1000 * 5);
}

#[test]
fn parents_are_announced_before_their_children_whatever_they_pay() {
    let (mut r, mut rng, t0) = current();
    r.peer_ready(1, false, true, true, t0, &mut rng);
    let (parent, child) = (tx(1), tx(2));
    r.mempool_changed(
        MempoolDelta {
            changes: vec![added(&child, 50_000, 1), added(&parent, 1000, 0)],
            floor: 1000,
            ..Default::default()
        },
        t0,
    );
    let out = r.tick(t0 + Duration::from_secs(3600), &mut rng);
    assert!(out.contains(&Action::Send(
        1,
        NetworkMessage::Inv(vec![
            Inventory::WTx(parent.compute_wtxid()),
            Inventory::WTx(child.compute_wtxid())
        ])
    )));
}

#[test]
fn one_peer_is_asked_for_at_most_its_in_flight_limit_and_the_rest_wait() {
    let (mut r, mut rng, t0) = current();
    r.peer_ready(1, false, true, true, t0, &mut rng);
    let items: Vec<Inventory> = (0..MAX_IN_FLIGHT as u32 + 20)
        .map(|n| Inventory::WTx(tx(n).compute_wtxid()))
        .collect();
    let asked = |out: &[Action]| -> usize {
        out.iter()
            .map(|a| match a {
                Action::Send(1, NetworkMessage::GetData(i)) => i.len(),
                _ => 0,
            })
            .sum()
    };
    assert_eq!(asked(&r.on_inv(1, &items, t0)), MAX_IN_FLIGHT);
    // One delivered: one more may be asked.
    r.on_tx(1, tx(0), t0);
    assert_eq!(asked(&r.tick(t0, &mut rng)), 1);
}

#[test]
fn orphans_parents_are_asked_of_the_peer_that_sent_the_orphan() {
    let (mut r, mut rng, t0) = current();
    r.peer_ready(4, false, true, true, t0, &mut rng);
    let parent = tx(9).compute_txid();
    let out = r.mempool_changed(
        MempoolDelta {
            fetch: vec![(4, vec![parent])],
            floor: 1000,
            ..Default::default()
        },
        t0,
    );
    assert_eq!(
        out,
        [Action::Send(
            4,
            NetworkMessage::GetData(vec![Inventory::WitnessTransaction(parent)])
        )]
    );
}
