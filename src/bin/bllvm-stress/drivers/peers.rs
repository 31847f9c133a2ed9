//! Synthetic P2P peers: honest feeders serving the generated chain, and hostile ones (slow
//! readers, stallers, junk senders, inv flooders, connection churners). Each hostile peer does
//! a fixed number of actions at seeded intervals, so a seed replays the same attack.

use crate::ops::Rng;
use crate::raw_peer::RawPeer;
use crate::record::Recorder;
use bitcoin::block::Header;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::{Block, BlockHash, Txid};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a synthetic peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Asks for headers again and again and never reads the answers.
    SlowReader,
    /// Announces the chain, then never delivers a block it is asked for.
    Staller,
    /// Frames with the wrong network magic.
    BadMagic,
    /// Frames whose checksum does not match.
    BadChecksum,
    /// A header declaring a payload far over the limit.
    Oversized,
    /// Headers that do not connect or lack proof of work.
    InvalidHeaders,
    /// Floods `inv` with unknown transactions.
    InvFlooder,
    /// Connects, handshakes and leaves, over and over.
    Churner,
}

impl Kind {
    /// The hostile kinds, by weight.
    pub const HOSTILE: &'static [(Kind, u32)] = &[
        (Kind::SlowReader, 2),
        (Kind::Staller, 2),
        (Kind::BadMagic, 1),
        (Kind::BadChecksum, 1),
        (Kind::Oversized, 1),
        (Kind::InvalidHeaders, 1),
        (Kind::InvFlooder, 2),
        (Kind::Churner, 2),
    ];

    /// Its name in `ops.log` and the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SlowReader => "slow-reader",
            Kind::Staller => "staller",
            Kind::BadMagic => "junk:bad-magic",
            Kind::BadChecksum => "junk:bad-checksum",
            Kind::Oversized => "junk:oversized-length",
            Kind::InvalidHeaders => "junk:invalid-headers",
            Kind::InvFlooder => "inv-flooder",
            Kind::Churner => "churner",
        }
    }
}

/// The chain a peer serves, indexed by hash.
pub struct Served {
    blocks: Vec<Block>,
    height_of: HashMap<BlockHash, usize>,
    genesis: BlockHash,
}

impl Served {
    /// Serves `blocks` (heights 1..) on top of regtest's genesis.
    pub fn new(blocks: Vec<Block>) -> Arc<Served> {
        let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).block_hash();
        let mut height_of: HashMap<BlockHash, usize> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.block_hash(), i + 1))
            .collect();
        height_of.insert(genesis, 0);
        Arc::new(Served {
            blocks,
            height_of,
            genesis,
        })
    }

    fn headers_after(&self, locator: &[BlockHash]) -> Vec<Header> {
        let from = locator
            .iter()
            .find_map(|h| self.height_of.get(h))
            .copied()
            .unwrap_or(0);
        self.blocks
            .iter()
            .skip(from)
            .take(2000)
            .map(|b| b.header)
            .collect()
    }
}

/// One peer's plan: what it is, where it connects from, how many actions, how far apart.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Its number.
    pub id: usize,
    /// Its kind.
    pub kind: Kind,
    /// Its loopback source address.
    pub from: Ipv4Addr,
    /// How many actions (messages, connections).
    pub actions: u32,
    /// Between actions, ms.
    pub gap_ms: u64,
    /// Its seed for payloads.
    pub seed: u64,
}

impl Plan {
    /// The line `ops.log` gets for it.
    pub fn describe(&self) -> String {
        format!(
            "peer {} kind={} from={} actions={} gap_ms={}",
            self.id,
            self.kind.name(),
            self.from,
            self.actions,
            self.gap_ms
        )
    }
}

/// Running peers; stopped on drop.
pub struct Peers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Peers {
    /// No peers yet.
    pub fn new() -> Peers {
        Peers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    /// Starts a hostile (or connecting honest) peer against the node at `to`.
    pub fn spawn(&mut self, plan: Plan, to: SocketAddr, served: Arc<Served>, rec: Arc<Recorder>) {
        let stop = self.stop.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name(format!("peer-{}", plan.id))
                .spawn(move || act(&plan, to, &served, &rec, &stop))
                .expect("peer thread"),
        );
    }

    /// A listening honest feeder on `ip`: the node is told to `--connect` to the address
    /// returned. It serves every connection the node makes, one at a time.
    pub fn feeder(&mut self, ip: Ipv4Addr, served: Arc<Served>, rec: Arc<Recorder>) -> SocketAddr {
        let listener = TcpListener::bind((ip, 0)).expect("feeder listens");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("feeder address");
        let stop = self.stop.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name("feeder".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((s, _)) => {
                                let _ = s.set_nonblocking(false);
                                let peer = RawPeer::from_stream(s);
                                serve(peer, &served, &rec, &stop, false);
                                if !stop.load(Ordering::Relaxed) {
                                    rec.completed("p2p:feeder connections ended", 1);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })
                .expect("feeder thread"),
        );
        addr
    }

    /// Stops every peer and waits for them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn version(height: i32) -> NetworkMessage {
    let addr = Address::new(&"127.0.0.1:0".parse().unwrap(), ServiceFlags::NONE);
    let mut v = VersionMessage::new(
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        1_700_000_000,
        addr.clone(),
        addr,
        0x57e55,
        "/bllvm-stress:0.1/".into(),
        height,
    );
    v.version = 70016;
    NetworkMessage::Version(v)
}

/// Sends our version and answers theirs; false when the node closed or stayed silent.
fn handshake(p: &mut RawPeer, height: i32) -> bool {
    if p.send(version(height)).is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match p.recv(Duration::from_millis(200)) {
            Some(NetworkMessage::Version(_)) if p.send(NetworkMessage::Verack).is_err() => {
                return false
            }
            Some(NetworkMessage::Verack) => return true,
            Some(_) => {}
            None if p.closed() => return false,
            None => {}
        }
    }
    false
}

/// An honest peer's loop: headers and blocks on request until the node or the run ends.
/// A staller answers headers and pings but never sends a block.
fn serve(mut p: RawPeer, served: &Served, rec: &Recorder, stop: &AtomicBool, stall: bool) {
    if !handshake(&mut p, served.blocks.len() as i32) {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let Some(msg) = p.recv(Duration::from_millis(100)) else {
            if p.closed() {
                return;
            }
            continue;
        };
        let sent = match msg {
            NetworkMessage::Ping(n) => p.send(NetworkMessage::Pong(n)),
            NetworkMessage::GetHeaders(GetHeadersMessage { locator_hashes, .. }) => {
                let h = served.headers_after(&locator_hashes);
                p.send(NetworkMessage::Headers(h))
            }
            NetworkMessage::GetData(inv) if !stall => {
                let mut r = Ok(());
                for i in inv {
                    let hash = match i {
                        Inventory::Block(h) | Inventory::WitnessBlock(h) => h,
                        _ => continue,
                    };
                    if let Some(&height) = served.height_of.get(&hash) {
                        if hash != served.genesis {
                            let block = served.blocks[height - 1].clone();
                            r = r.and(p.send(NetworkMessage::Block(block)));
                            rec.completed("blocks served", 1);
                        }
                    }
                }
                r
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

fn frame(msg: NetworkMessage) -> Vec<u8> {
    serialize(&RawNetworkMessage::new(Magic::REGTEST, msg))
}

/// A hostile peer's actions.
fn act(plan: &Plan, to: SocketAddr, served: &Served, rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng::new(plan.seed, "peer");
    let gap = Duration::from_millis(plan.gap_ms);
    let connect = || RawPeer::connect(&plan.from.to_string(), to).ok();
    let label = plan.kind.name();
    if plan.kind == Kind::Churner {
        for _ in 0..plan.actions {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match connect() {
                Some(mut p) => {
                    if handshake(&mut p, 0) {
                        rec.completed(&format!("p2p:{label}:handshakes"), 1);
                    } else {
                        rec.err(&format!("p2p:{label}:refused"));
                    }
                }
                None => rec.err(&format!("p2p:{label}:connect failed")),
            }
            std::thread::sleep(gap);
        }
        return;
    }
    let Some(mut p) = connect() else {
        rec.err(&format!("p2p:{label}:connect failed"));
        return;
    };
    if plan.kind == Kind::Staller {
        // Offers the whole chain, then holds every block it is asked for.
        return serve(p, served, rec, stop, true);
    }
    if plan.kind == Kind::BadMagic {
        let mut bytes = frame(NetworkMessage::Ping(rng.next()));
        bytes[..4].copy_from_slice(&Magic::BITCOIN.to_bytes());
        let _ = p.send_raw(&bytes);
        if p.closed_within(Duration::from_secs(5)) {
            rec.completed(&format!("p2p:{label}:dropped by the node"), 1);
        }
        return;
    }
    if !handshake(&mut p, 0) {
        rec.err(&format!("p2p:{label}:refused"));
        return;
    }
    let genesis = served.genesis;
    for _ in 0..plan.actions {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let bytes = match plan.kind {
            Kind::SlowReader => frame(NetworkMessage::GetHeaders(GetHeadersMessage::new(
                vec![genesis],
                BlockHash::all_zeros(),
            ))),
            Kind::BadChecksum => {
                let mut b = frame(NetworkMessage::Ping(rng.next()));
                b[20] ^= 0xff;
                b
            }
            Kind::Oversized => {
                let mut b = frame(NetworkMessage::Ping(rng.next()));
                b[16..20].copy_from_slice(&(64u32 << 20).to_le_bytes());
                b
            }
            Kind::InvalidHeaders => {
                let mut h = served.blocks[0].header;
                h.prev_blockhash = BlockHash::from_byte_array(rng.next_bytes());
                h.nonce = rng.next() as u32;
                frame(NetworkMessage::Headers(vec![h]))
            }
            Kind::InvFlooder => frame(NetworkMessage::Inv(
                (0..rng.range(1_000, 50_000))
                    .map(|_| Inventory::Transaction(Txid::from_byte_array(rng.next_bytes())))
                    .collect(),
            )),
            _ => unreachable!("handled above"),
        };
        // A slow reader never reads: the node's answers pile up in its send queue.
        if p.push_until_blocked(&bytes, Duration::from_secs(2)) < bytes.len() {
            rec.completed(&format!("p2p:{label}:blocked or dropped by the node"), 1);
            return;
        }
        if plan.kind != Kind::SlowReader && p.closed() {
            rec.completed(&format!("p2p:{label}:dropped by the node"), 1);
            return;
        }
        std::thread::sleep(gap);
    }
}
