//! The protocol driven by hand: messages and times in, `Io` out; no sockets.

use super::*;
use crate::messages::{AddNode, P2pCommand};
use crate::p2p::backoff::Policy;
use bitcoin::hashes::Hash;
use std::time::Duration;

const T_UNIX: i64 = 1_700_000_000;

fn settings(target: usize, max: usize) -> Settings {
    Settings {
        chain: Chain::Regtest,
        default_port: 18444,
        mempool_requests_from: vec!["127.9.0.0/16".parse().unwrap()],
        manager: ManagerSettings {
            target_outbound: target,
            max_connections: max,
            connect_only: vec![],
            connect_mode: false,
            addnode: vec![],
            backoff: Policy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                max_retries: 10,
                jitter: 0.0,
            },
            fixed_seeds: vec![],
        },
    }
}

fn protocol(target: usize, max: usize, book: AddrBook) -> Protocol {
    Protocol::new(
        settings(target, max),
        book,
        BanList::default(),
        Rng::seeded(7),
        T_UNIX,
    )
}

fn addr(a: u8, b: u8) -> SocketAddr {
    SocketAddr::new(std::net::Ipv4Addr::new(127, a, b, 1).into(), 18444)
}

fn their_version(nonce: u64) -> VersionMessage {
    let a = Address::new(&addr(0, 0), ServiceFlags::NONE);
    let mut v = VersionMessage::new(
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        T_UNIX,
        a.clone(),
        a,
        nonce,
        "/peer:1/".into(),
        0,
    );
    v.version = PROTOCOL_VERSION;
    v.relay = true;
    v
}

/// Commands sent to `id`, by name.
fn sent_to(io: &[Io], id: PeerId) -> Vec<String> {
    io.iter()
        .filter_map(|x| match x {
            Io::Send(to, m) if *to == id => Some(m.cmd().to_string()),
            _ => None,
        })
        .collect()
}

fn connects(io: &[Io]) -> Vec<(PeerId, SocketAddr)> {
    io.iter()
        .filter_map(|x| match x {
            Io::Connect(id, a, _) => Some((*id, *a)),
            _ => None,
        })
        .collect()
}

fn disconnects(io: &[Io]) -> Vec<(PeerId, &'static str)> {
    io.iter()
        .filter_map(|x| match x {
            Io::Disconnect(id, why) => Some((*id, *why)),
            _ => None,
        })
        .collect()
}

/// The peer's side of a handshake.
fn handshake(p: &mut Protocol, id: PeerId, nonce: u64, t: Instant) {
    p.received(id, NetworkMessage::Version(their_version(nonce)), t, T_UNIX);
    p.received(id, NetworkMessage::Verack, t, T_UNIX);
}

/// An inbound peer past its handshake, its outbox emptied.
fn ready_inbound(p: &mut Protocol, from: SocketAddr, t: Instant) -> PeerId {
    let id = p.accept(from, t, T_UNIX).unwrap();
    handshake(p, id, 1, t);
    p.take_io();
    id
}

fn reply() -> (
    CommandReply,
    crossbeam_channel::Receiver<Result<(), CommandError>>,
) {
    crossbeam_channel::bounded(1)
}

/// `addnode <connected> onetry` used to remove the live peer from the manager and score it as
/// failed, after which the node dialled more peers than its target.
#[test]
fn onetry_to_a_connected_peer_keeps_it_and_dials_nothing_more() {
    let t0 = Instant::now();
    let mut book = AddrBook::default();
    for g in 1..=6 {
        book.add(addr(g, 0), Source::Gossip, T_UNIX);
    }
    let mut p = protocol(2, 10, book);
    p.tick(t0, T_UNIX);
    let dialled = connects(&p.take_io());
    assert_eq!(dialled.len(), 2);
    for (i, (id, _)) in dialled.iter().enumerate() {
        handshake(&mut p, *id, 100 + i as u64, t0);
    }
    p.take_io();
    assert_eq!(p.manager().outbound_count(), 2);
    let (tx, rx) = reply();
    let live = dialled[0].1;
    p.command(
        P2pCommand::AddNode {
            addr: live,
            what: AddNode::OneTry,
            reply: tx,
        },
        t0,
        T_UNIX,
    );
    let io = p.take_io();
    assert!(connects(&io).is_empty(), "{io:?}");
    assert!(disconnects(&io).is_empty(), "{io:?}");
    assert!(matches!(&io[..], [Io::Reply(_, Ok(()))]));
    drop(rx);
    assert_eq!(
        p.manager().outbound_count(),
        2,
        "the live peer is still counted"
    );
    let score = p.manager().book.get(&live).unwrap().score;
    for s in 1..=120 {
        p.tick(t0 + Duration::from_secs(s), T_UNIX + s as i64);
        let io = p.take_io();
        assert!(
            connects(&io).is_empty(),
            "target is 2, both connected: {io:?}"
        );
    }
    assert!(
        p.manager().book.get(&live).unwrap().score >= score,
        "not scored as a failure"
    );
}

/// A banned outbound peer used to stay counted as connected: its slot was never freed (each
/// ban of an outbound peer cost the node a connection for good) and, once the ban was lifted,
/// a `--connect` peer was never dialled again. Found by the stress harness's partition run.
#[test]
fn a_banned_outbound_peer_frees_its_slot_and_is_dialled_again_once_unbanned() {
    let t0 = Instant::now();
    let mut s = settings(2, 10);
    s.manager.connect_only = vec![addr(1, 0), addr(2, 0)];
    s.manager.connect_mode = true;
    let mut p = Protocol::new(
        s,
        AddrBook::default(),
        BanList::default(),
        Rng::seeded(7),
        T_UNIX,
    );
    p.tick(t0, T_UNIX);
    let dialled = connects(&p.take_io());
    assert_eq!(dialled.len(), 2);
    for (i, (id, _)) in dialled.iter().enumerate() {
        handshake(&mut p, *id, 100 + i as u64, t0);
    }
    p.take_io();
    let (id, banned) = *dialled.iter().find(|(_, a)| *a == addr(1, 0)).unwrap();
    let (tx, _rx) = reply();
    let range = format!("{}/32", banned.ip()).parse().unwrap();
    p.command(
        P2pCommand::SetBan {
            range,
            ban_secs: Some(3600),
            reply: tx,
        },
        t0,
        T_UNIX,
    );
    assert_eq!(disconnects(&p.take_io()), vec![(id, "banned")]);
    p.disconnected(id, t0, T_UNIX);
    assert_eq!(
        p.manager().outbound_count(),
        1,
        "the banned peer's slot is free"
    );
    for sec in 1..=30 {
        p.tick(t0 + Duration::from_secs(sec), T_UNIX + sec as i64);
        assert!(
            connects(&p.take_io()).is_empty(),
            "not dialled while banned"
        );
    }
    p.command(P2pCommand::ClearBanned, t0, T_UNIX);
    p.take_io();
    let later = t0 + Duration::from_secs(31);
    p.tick(later, T_UNIX + 31);
    let again: Vec<SocketAddr> = connects(&p.take_io()).into_iter().map(|(_, a)| a).collect();
    assert_eq!(again, vec![banned], "dialled again once unbanned");
}

/// The reactor reports a connection it could not register as gone: its inbound slot is free
/// again, for a newcomer, without evicting anyone.
#[test]
fn a_connection_gone_before_its_handshake_frees_its_inbound_slot() {
    let t0 = Instant::now();
    // Four connections, two kept for outbound: two inbound slots.
    let mut p = protocol(2, 4, AddrBook::default());
    let first = p.accept(addr(1, 0), t0, T_UNIX).unwrap();
    p.accept(addr(2, 0), t0, T_UNIX).unwrap();
    p.disconnected(first, t0, T_UNIX);
    p.accept(addr(3, 0), t0, T_UNIX).expect("the freed slot");
    assert!(disconnects(&p.take_io()).is_empty(), "nobody evicted");
}

/// With every inbound slot held by sockets that never handshake, a newcomer evicts one of
/// them; an honest peer that answers pings keeps its slot while the idle ones churn, even in a
/// netgroup it shares with one of them.
#[test]
fn idle_sockets_cannot_lock_out_an_honest_peer() {
    let t0 = Instant::now();
    // Forty connections, eight kept for outbound: 32 inbound slots.
    let mut p = protocol(8, 40, AddrBook::default());
    let mut idle = Vec::new();
    for g in 1..=32u8 {
        idle.push(p.accept(addr(g, 0), t0, T_UNIX).unwrap());
    }
    let t1 = t0 + Duration::from_secs(1);
    let honest_addr = SocketAddr::new(std::net::Ipv4Addr::new(127, 5, 0, 2).into(), 40_000);
    let honest = p.accept(honest_addr, t1, T_UNIX).expect("room is made");
    let io = p.take_io();
    let evicted = disconnects(&io);
    assert_eq!(evicted.len(), 1, "{io:?}");
    assert_eq!(evicted[0].1, "evicted");
    assert!(idle.contains(&evicted[0].0));
    p.disconnected(evicted[0].0, t1, T_UNIX);
    handshake(&mut p, honest, 1, t1);
    p.tick(t1, T_UNIX);
    let ping = p.take_io().into_iter().find_map(|x| match x {
        Io::Send(id, NetworkMessage::Ping(n)) if id == honest => Some(n),
        _ => None,
    });
    let nonce = ping.expect("a ready peer is pinged");
    p.received(
        honest,
        NetworkMessage::Pong(nonce),
        t1 + Duration::from_millis(30),
        T_UNIX,
    );
    // Idle sockets keep coming, every second from a new /16.
    for i in 0..100u64 {
        let t = t1 + Duration::from_secs(2 + i);
        let a = SocketAddr::new(
            std::net::Ipv4Addr::new(127, 40 + (i % 200) as u8, 1, 1).into(),
            41_000 + i as u16,
        );
        p.accept(a, t, T_UNIX).expect("an idle one makes room");
        for (victim, why) in disconnects(&p.take_io()) {
            assert_ne!(victim, honest, "the honest peer was evicted ({why})");
            p.disconnected(victim, t, T_UNIX);
        }
    }
    assert!(p.peer(honest).is_some_and(|r| r.ready()));
}

#[test]
fn our_own_version_nonce_inbound_is_a_self_connection() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let (tx, _rx) = reply();
    p.command(
        P2pCommand::AddNode {
            addr: addr(1, 1),
            what: AddNode::OneTry,
            reply: tx,
        },
        t0,
        T_UNIX,
    );
    let ours = p.take_io().into_iter().find_map(|x| match x {
        Io::Send(_, NetworkMessage::Version(v)) => Some(v.nonce),
        _ => None,
    });
    let inbound = p.accept(addr(9, 9), t0, T_UNIX).unwrap();
    p.received(
        inbound,
        NetworkMessage::Version(their_version(ours.unwrap())),
        t0,
        T_UNIX,
    );
    assert_eq!(
        disconnects(&p.take_io()),
        vec![(inbound, "self-connection")]
    );
}

#[test]
fn getaddr_is_answered_once_and_only_to_inbound_peers() {
    let t0 = Instant::now();
    let mut book = AddrBook::default();
    book.add(addr(3, 3), Source::Gossip, T_UNIX);
    let mut p = protocol(1, 10, book);
    let inbound = ready_inbound(&mut p, addr(1, 0), t0);
    p.received(inbound, NetworkMessage::GetAddr, t0, T_UNIX);
    assert_eq!(
        sent_to(&p.take_io(), inbound),
        ["addr"],
        "it did not ask for addrv2"
    );
    p.received(inbound, NetworkMessage::GetAddr, t0, T_UNIX);
    assert!(sent_to(&p.take_io(), inbound).is_empty());
    p.tick(t0, T_UNIX);
    let (out, _) = connects(&p.take_io())[0];
    handshake(&mut p, out, 2, t0);
    let to_out = sent_to(&p.take_io(), out);
    assert!(to_out.contains(&"getaddr".to_string()), "{to_out:?}");
    p.received(out, NetworkMessage::GetAddr, t0, T_UNIX);
    assert!(
        sent_to(&p.take_io(), out).is_empty(),
        "not answered outbound"
    );
}

#[test]
fn an_oversized_inv_bans_the_address_and_closes_each_of_its_connections() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let a = p.accept(addr(1, 0), t0, T_UNIX).unwrap();
    let same_ip = SocketAddr::new(addr(1, 0).ip(), 5555);
    let b = p.accept(same_ip, t0, T_UNIX).unwrap();
    let other = p.accept(addr(2, 0), t0, T_UNIX).unwrap();
    handshake(&mut p, a, 1, t0);
    p.take_io();
    let items = vec![Inventory::Block(bitcoin::BlockHash::all_zeros()); vocabulary::MAX_INV + 1];
    p.received(a, NetworkMessage::Inv(items), t0, T_UNIX);
    let closed = disconnects(&p.take_io());
    assert_eq!(closed, vec![(a, "oversized-inv"), (b, "banned")]);
    assert!(!closed.iter().any(|(id, _)| *id == other));
    assert!(p.manager().bans.is_banned(&addr(1, 0).ip(), T_UNIX));
    assert_eq!(
        p.accept(addr(1, 0), t0, T_UNIX),
        Err(Refusal::Banned),
        "refused while banned"
    );
}

/// A full `getblocks` answer (500 hashes) is followed, once the peer fetches its last block,
/// by an `inv` of our tip so the peer asks for the next batch (Core's continuation).
#[test]
fn a_full_getblocks_answer_continues_when_its_last_block_is_fetched() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let id = ready_inbound(&mut p, addr(1, 0), t0);
    let block = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    let mut hashes = vec![bitcoin::BlockHash::all_zeros(); crate::chain::serve::MAX_GETBLOCKS - 1];
    hashes.push(block.block_hash());
    p.command(P2pCommand::BlocksAfter { peer: id, hashes }, t0, T_UNIX);
    assert_eq!(sent_to(&p.take_io(), id), ["inv"]);
    p.command(
        P2pCommand::Send {
            peer: id,
            msg: NetworkMessage::Block(block.clone()),
        },
        t0,
        T_UNIX,
    );
    assert_eq!(sent_to(&p.take_io(), id), ["block", "inv"]);
    p.command(
        P2pCommand::Send {
            peer: id,
            msg: NetworkMessage::Block(block),
        },
        t0,
        T_UNIX,
    );
    assert_eq!(sent_to(&p.take_io(), id), ["block"], "once");
}

/// Block requests wait while earlier ones are with the chain: at most four at a time, and the
/// peer's next message waits until its requests are handed over.
#[test]
fn block_requests_reach_the_chain_four_at_a_time() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let id = ready_inbound(&mut p, addr(1, 0), t0);
    let items = vec![Inventory::WitnessBlock(bitcoin::BlockHash::all_zeros()); 6];
    p.received(id, NetworkMessage::GetData(items), t0, T_UNIX);
    assert!(p.busy(id));
    p.serve(id);
    let io = p.take_io();
    assert!(matches!(&io[..], [Io::Chain(PeerEvent::GetData { items, .. })] if items.len() == 4));
    p.serve(id);
    assert!(p.take_io().is_empty(), "four are out");
    let block = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    p.command(
        P2pCommand::Send {
            peer: id,
            msg: NetworkMessage::Block(block),
        },
        t0,
        T_UNIX,
    );
    p.take_io();
    p.serve(id);
    let io = p.take_io();
    assert!(matches!(&io[..], [Io::Chain(PeerEvent::GetData { items, .. })] if items.len() == 1));
    assert!(p.busy(id));
}

/// The same seed and inputs give the same outputs, nonces included.
#[test]
fn the_same_seed_gives_the_same_io() {
    let run = || {
        let t0 = Instant::now();
        let mut book = AddrBook::default();
        for g in 1..=6 {
            book.add(addr(g, 0), Source::Gossip, T_UNIX);
        }
        let mut p = protocol(3, 10, book);
        p.tick(t0, T_UNIX);
        let io = p.take_io();
        for (i, (id, _)) in connects(&io).into_iter().enumerate() {
            handshake(&mut p, id, i as u64, t0);
        }
        p.tick(t0 + Duration::from_secs(1), T_UNIX + 1);
        let mut all = format!("{io:?}");
        all.push_str(&format!("{:?}", p.take_io()));
        all
    };
    assert_eq!(run(), run());
}

// ---- transaction relay ----

/// A transaction with a witness, distinct per `n`.
fn wtx(n: u8) -> bitcoin::Transaction {
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, TxIn, TxOut, Witness};
    bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(bitcoin::Txid::from_byte_array([n; 32]), 0),
            witness: Witness::from_slice(&[vec![n; 72]]),
            ..Default::default()
        }],
        output: vec![TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new(),
        }],
    }
}

fn relayed(tx: &bitcoin::Transaction, fee_rate: u64) -> crate::messages::MempoolChange {
    crate::messages::MempoolChange::Added(crate::messages::RelayTx {
        tx: std::sync::Arc::new(tx.clone()),
        txid: tx.compute_txid(),
        wtxid: tx.compute_wtxid(),
        fee_rate,
        ancestors: 0,
    })
}

fn mempool(p: &mut Protocol, delta: crate::messages::MempoolDelta, t: Instant) {
    p.command(P2pCommand::Mempool(Box::new(delta)), t, T_UNIX);
}

/// Out of initial block download, at a new tip.
fn current(p: &mut Protocol, t: Instant) {
    let mut s = crate::messages::ChainSummary::default();
    s.tip.0 = bitcoin::BlockHash::from_byte_array([9; 32]);
    s.ibd = false;
    p.command(P2pCommand::Chain(Box::new(s)), t, T_UNIX);
}

/// A peer past its handshake; `wtxid`: it negotiated BIP339 (else it speaks 70015).
fn relay_peer(p: &mut Protocol, from: SocketAddr, wtxid: bool, t: Instant) -> PeerId {
    let id = p.accept(from, t, T_UNIX).unwrap();
    let mut v = their_version(u64::from(from.ip().to_string().len() as u8));
    if !wtxid {
        v.version = 70_015;
    }
    p.received(id, NetworkMessage::Version(v), t, T_UNIX);
    if wtxid {
        p.received(id, NetworkMessage::WtxidRelay, t, T_UNIX);
    }
    p.received(id, NetworkMessage::Verack, t, T_UNIX);
    p.take_io();
    id
}

/// Messages of one kind sent to `id`.
fn sent<'a>(io: &'a [Io], id: PeerId, cmd: &str) -> Vec<&'a NetworkMessage> {
    io.iter()
        .filter_map(|x| match x {
            Io::Send(to, m) if *to == id && m.cmd() == cmd => Some(m),
            _ => None,
        })
        .collect()
}

/// Steps time a minute at a time from `from` to `to`, the peer pinging and answering pings as a
/// live peer does; everything sent to it.
fn live(p: &mut Protocol, id: PeerId, from: Instant, to: Instant) -> Vec<NetworkMessage> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        t += Duration::from_secs(60);
        p.received(id, NetworkMessage::Ping(1), t, T_UNIX);
        p.tick(t, T_UNIX);
        for x in p.take_io() {
            if let Io::Send(to, m) = x {
                if to == id {
                    if let NetworkMessage::Ping(n) = m {
                        p.received(id, NetworkMessage::Pong(n), t, T_UNIX);
                    }
                    out.push(m);
                }
            }
        }
    }
    out
}

fn feefilters(msgs: &[NetworkMessage]) -> Vec<i64> {
    msgs.iter()
        .filter_map(|m| match m {
            NetworkMessage::FeeFilter(f) => Some(*f),
            _ => None,
        })
        .collect()
}

#[test]
fn feefilter_says_nothing_is_wanted_during_ibd_then_follows_the_pool_floor() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let id = p.accept(addr(1, 0), t0, T_UNIX).unwrap();
    handshake(&mut p, id, 1, t0);
    let io = p.take_io();
    let ibd = crate::p2p::relay::IBD_FEEFILTER as i64;
    assert_eq!(
        sent(&io, id, "feefilter"),
        [&NetworkMessage::FeeFilter(ibd)]
    );
    current(&mut p, t0);
    // The next update comes after a random (Poisson) delay, capped at ten times its mean.
    let later = t0 + Duration::from_secs(2 * 3600);
    assert_eq!(feefilters(&live(&mut p, id, t0, later)), [1000]);
    let delta = crate::messages::MempoolDelta {
        floor: 5000,
        ..Default::default()
    };
    mempool(&mut p, delta, later);
    // A large change goes out within the change delay (five minutes).
    let soon = later + Duration::from_secs(300);
    assert_eq!(feefilters(&live(&mut p, id, later, soon)), [5000]);
    // An old client (before BIP133) is sent none.
    let old = p.accept(addr(2, 0), t0, T_UNIX).unwrap();
    let mut v = their_version(2);
    v.version = 70_012;
    p.received(old, NetworkMessage::Version(v), soon, T_UNIX);
    p.received(old, NetworkMessage::Verack, soon, T_UNIX);
    let end = soon + Duration::from_secs(2 * 3600);
    assert!(feefilters(&live(&mut p, old, soon, end)).is_empty());
}

#[test]
fn a_relayed_transaction_is_fetched_once_judged_by_the_chain_and_announced_to_the_rest() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    current(&mut p, t0);
    let a = relay_peer(&mut p, addr(1, 0), true, t0);
    let b = relay_peer(&mut p, addr(2, 0), true, t0);
    let c = relay_peer(&mut p, addr(3, 0), false, t0);
    let d = relay_peer(&mut p, addr(4, 0), true, t0);
    let tx = wtx(1);
    let (txid, wtxid) = (tx.compute_txid(), tx.compute_wtxid());
    p.received(
        a,
        NetworkMessage::Inv(vec![Inventory::WTx(wtxid)]),
        t0,
        T_UNIX,
    );
    let io = p.take_io();
    assert_eq!(
        sent(&io, a, "getdata"),
        [&NetworkMessage::GetData(vec![Inventory::WTx(wtxid)])]
    );
    // A second announcer is not asked while the first may still deliver.
    p.received(
        b,
        NetworkMessage::Inv(vec![Inventory::WTx(wtxid)]),
        t0,
        T_UNIX,
    );
    assert!(sent(&p.take_io(), b, "getdata").is_empty());
    p.received(a, NetworkMessage::Tx(tx.clone()), t0, T_UNIX);
    let io = p.take_io();
    assert!(
        matches!(&io[..], [Io::Chain(PeerEvent::Tx { peer, tx: t })] if *peer == a && t.compute_txid() == txid),
        "{io:?}"
    );
    // The same transaction again (from b) is not judged twice.
    p.received(b, NetworkMessage::Tx(tx.clone()), t0, T_UNIX);
    assert!(p.take_io().is_empty());
    let delta = crate::messages::MempoolDelta {
        changes: vec![relayed(&tx, 2000)],
        floor: 1000,
        ..Default::default()
    };
    mempool(&mut p, delta, t0);
    let later = t0 + Duration::from_secs(600);
    p.tick(later, T_UNIX);
    let io = p.take_io();
    assert!(sent(&io, a, "inv").is_empty(), "it came from a");
    assert!(sent(&io, b, "inv").is_empty(), "b announced it");
    assert_eq!(
        sent(&io, c, "inv"),
        [&NetworkMessage::Inv(vec![Inventory::Transaction(txid)])]
    );
    assert_eq!(
        sent(&io, d, "inv"),
        [&NetworkMessage::Inv(vec![Inventory::WTx(wtxid)])]
    );
    // c asks without witness (MSG_TX) and gets it stripped; d by wtxid gets it whole.
    p.received(
        c,
        NetworkMessage::GetData(vec![Inventory::Transaction(txid)]),
        later,
        T_UNIX,
    );
    p.received(
        d,
        NetworkMessage::GetData(vec![Inventory::WTx(wtxid)]),
        later,
        T_UNIX,
    );
    let io = p.take_io();
    let stripped = match sent(&io, c, "tx")[..] {
        [NetworkMessage::Tx(t)] => t.clone(),
        _ => panic!("{io:?}"),
    };
    assert_eq!(stripped.compute_txid(), txid);
    assert!(stripped.input[0].witness.is_empty());
    assert_eq!(sent(&io, d, "tx"), [&NetworkMessage::Tx(tx.clone())]);
    // A peer it was never announced to cannot probe for it.
    let e = relay_peer(&mut p, addr(5, 0), true, later);
    p.received(
        e,
        NetworkMessage::GetData(vec![Inventory::WTx(wtxid)]),
        later,
        T_UNIX,
    );
    assert_eq!(
        sent(&p.take_io(), e, "notfound"),
        [&NetworkMessage::NotFound(vec![Inventory::WTx(wtxid)])]
    );
}

#[test]
fn a_refused_transaction_is_not_fetched_again_until_the_tip_changes() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    current(&mut p, t0);
    let a = relay_peer(&mut p, addr(1, 0), true, t0);
    let b = relay_peer(&mut p, addr(2, 0), true, t0);
    let tx = wtx(2);
    let inv = NetworkMessage::Inv(vec![Inventory::WTx(tx.compute_wtxid())]);
    p.received(a, inv.clone(), t0, T_UNIX);
    p.received(a, NetworkMessage::Tx(tx.clone()), t0, T_UNIX);
    p.take_io();
    let delta = crate::messages::MempoolDelta {
        rejected: vec![(tx.compute_txid(), tx.compute_wtxid())],
        floor: 1000,
        ..Default::default()
    };
    mempool(&mut p, delta, t0);
    p.received(b, inv.clone(), t0, T_UNIX);
    assert!(
        sent(&p.take_io(), b, "getdata").is_empty(),
        "refused recently"
    );
    p.received(b, NetworkMessage::Tx(tx.clone()), t0, T_UNIX);
    assert!(p.take_io().is_empty(), "not judged again");
    // A new block may make it valid: it is fetched again.
    let mut s = crate::messages::ChainSummary::default();
    s.tip.0 = bitcoin::BlockHash::from_byte_array([10; 32]);
    s.ibd = false;
    p.command(P2pCommand::Chain(Box::new(s)), t0, T_UNIX);
    p.take_io();
    p.received(b, inv, t0, T_UNIX);
    assert_eq!(sent(&p.take_io(), b, "getdata").len(), 1);
}

#[test]
fn a_request_unanswered_for_a_minute_or_not_found_goes_to_the_next_announcer() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    current(&mut p, t0);
    let a = relay_peer(&mut p, addr(1, 0), true, t0);
    let b = relay_peer(&mut p, addr(2, 0), true, t0);
    let c = relay_peer(&mut p, addr(3, 0), true, t0);
    let w = wtx(3).compute_wtxid();
    let inv = NetworkMessage::Inv(vec![Inventory::WTx(w)]);
    for id in [a, b, c] {
        p.received(id, inv.clone(), t0, T_UNIX);
    }
    assert_eq!(sent(&p.take_io(), a, "getdata").len(), 1);
    p.tick(t0 + Duration::from_secs(59), T_UNIX);
    assert!(
        sent(&p.take_io(), b, "getdata").is_empty(),
        "a still has time"
    );
    p.tick(t0 + Duration::from_secs(61), T_UNIX);
    assert_eq!(sent(&p.take_io(), b, "getdata").len(), 1, "a timed out");
    p.received(
        b,
        NetworkMessage::NotFound(vec![Inventory::WTx(w)]),
        t0,
        T_UNIX,
    );
    assert_eq!(
        sent(&p.take_io(), c, "getdata").len(),
        1,
        "b did not have it"
    );
    // The last announcer leaves: nobody is asked, nothing is left behind.
    p.disconnected(c, t0, T_UNIX);
    assert!(p
        .take_io()
        .iter()
        .all(|x| !matches!(x, Io::Send(_, NetworkMessage::GetData(_)))));
}

#[test]
fn announcements_honour_the_peers_feefilter_and_its_relay_flag() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    current(&mut p, t0);
    let picky = relay_peer(&mut p, addr(1, 0), true, t0);
    p.received(picky, NetworkMessage::FeeFilter(5000), t0, T_UNIX);
    let quiet = p.accept(addr(2, 0), t0, T_UNIX).unwrap();
    let mut v = their_version(3);
    v.relay = false;
    p.received(quiet, NetworkMessage::Version(v), t0, T_UNIX);
    p.received(quiet, NetworkMessage::Verack, t0, T_UNIX);
    let (cheap, dear) = (wtx(4), wtx(5));
    let delta = crate::messages::MempoolDelta {
        changes: vec![relayed(&cheap, 2000), relayed(&dear, 6000)],
        floor: 1000,
        ..Default::default()
    };
    mempool(&mut p, delta, t0);
    p.tick(t0 + Duration::from_secs(600), T_UNIX);
    let io = p.take_io();
    assert_eq!(
        sent(&io, picky, "inv"),
        [&NetworkMessage::Inv(vec![Inventory::WTx(
            dear.compute_wtxid()
        )])]
    );
    assert!(sent(&io, quiet, "inv").is_empty(), "relay flag off");
}

#[test]
fn a_mempool_request_is_answered_only_where_allowed() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    current(&mut p, t0);
    let tx = wtx(6);
    let delta = crate::messages::MempoolDelta {
        changes: vec![relayed(&tx, 2000)],
        floor: 1000,
        ..Default::default()
    };
    mempool(&mut p, delta, t0);
    let allowed = relay_peer(&mut p, addr(9, 1), true, t0);
    let other = relay_peer(&mut p, addr(8, 1), true, t0);
    p.received(allowed, NetworkMessage::MemPool, t0, T_UNIX);
    p.received(other, NetworkMessage::MemPool, t0, T_UNIX);
    assert_eq!(disconnects(&p.take_io()), [(other, "mempool-request")]);
    p.tick(t0 + Duration::from_secs(600), T_UNIX);
    assert_eq!(
        sent(&p.take_io(), allowed, "inv"),
        [&NetworkMessage::Inv(vec![Inventory::WTx(
            tx.compute_wtxid()
        )])]
    );
}

#[test]
fn transaction_announcements_are_ignored_during_initial_block_download() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let a = relay_peer(&mut p, addr(1, 0), true, t0);
    p.received(
        a,
        NetworkMessage::Inv(vec![Inventory::WTx(wtx(7).compute_wtxid())]),
        t0,
        T_UNIX,
    );
    assert!(sent(&p.take_io(), a, "getdata").is_empty());
}

// ---- a long outage ----

#[test]
fn after_48_hours_without_a_reachable_peer_the_node_still_tries_and_connects_when_one_answers() {
    use crate::p2p::resolver::Resolved;
    let t0 = Instant::now();
    // Testnet4 has DNS seeds: here their lookups are only `Io::Lookup`s the test answers.
    let mut s = settings(2, 10);
    s.chain = Chain::Testnet4;
    let mut book = AddrBook::default();
    for g in 1..=3 {
        book.add(addr(g, 0), Source::Gossip, T_UNIX);
    }
    let mut p = Protocol::new(s, book, BanList::default(), Rng::seeded(7), T_UNIX);
    let step = 30u64;
    let (mut lookups, mut late_dials) = (0, 0);
    for i in 0..(48 * 3600 / step) {
        let (t, unix) = (
            t0 + Duration::from_secs(i * step),
            T_UNIX + (i * step) as i64,
        );
        p.tick(t, unix);
        for io in p.take_io() {
            match io {
                // Nothing answers: every attempt is refused.
                Io::Connect(id, _, _) => {
                    if i * step >= 24 * 3600 {
                        late_dials += 1;
                    }
                    p.disconnected(id, t, unix);
                }
                // The seeds know nobody.
                Io::Lookup(lookup) => {
                    lookups += 1;
                    p.resolved(
                        Resolved {
                            lookup,
                            addrs: vec![],
                        },
                        unix,
                    );
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        p.manager().book.len(),
        3,
        "a small book keeps failing addresses"
    );
    // Retried at the longest backoff (a minute here), each of three addresses.
    assert!(
        late_dials >= 3 * 24,
        "{late_dials} attempts on the second day"
    );
    // Two seeds, asked every 15 minutes while short of peers.
    assert!(lookups >= 2 * 48 * 4 - 2, "{lookups} seed lookups in 48 h");

    // One answers: the next attempt to it completes a handshake.
    let end = t0 + Duration::from_secs(48 * 3600);
    let mut t = end;
    let connected = loop {
        t += Duration::from_secs(1);
        assert!(
            t < end + Duration::from_secs(120),
            "no attempt within two minutes"
        );
        p.tick(t, T_UNIX);
        let io = p.take_io();
        if let Some((id, _)) = connects(&io).into_iter().find(|(_, a)| *a == addr(2, 0)) {
            break id;
        }
        for (id, _) in connects(&io) {
            p.disconnected(id, t, T_UNIX);
        }
    };
    handshake(&mut p, connected, 42, t);
    assert_eq!(p.manager().outbound_count(), 1);
}
