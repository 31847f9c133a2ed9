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

/// No transaction relay yet: `feefilter` reaches no peer, whatever its version.
#[test]
fn feefilter_is_sent_to_nobody_while_transactions_are_not_relayed() {
    let t0 = Instant::now();
    let mut p = protocol(1, 10, AddrBook::default());
    let id = p.accept(addr(1, 0), t0, T_UNIX).unwrap();
    handshake(&mut p, id, 1, t0);
    let sent = sent_to(&p.take_io(), id);
    assert!(sent.contains(&"verack".to_string()));
    assert!(!sent.contains(&"feefilter".to_string()), "{sent:?}");
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
