//! A deterministic network of real protocol state machines (`p2p::protocol`) and real in-memory
//! chains (`ChainState`, `chain::serve`), the pattern nakamoto's simulator uses: no sockets, no
//! threads, no clock. Bytes go through the real frame codec; each directed link has a seeded
//! latency and a bandwidth; connection attempts can be lost; partitions cut links and refuse
//! connections across the cut. The same seed gives the same trace.

#![allow(dead_code)]

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::Magic;
use bllvm_node::chain::chainstate::{ChainState, Update};
use bllvm_node::chain::mining::op_true_payout;
use bllvm_node::chain::params::Params;
use bllvm_node::chain::serve;
use bllvm_node::config::Chain;
use bllvm_node::messages::{MempoolDelta, P2pCommand, PeerEvent, PeerId};
use bllvm_node::p2p::addrbook::{AddrBook, Source};
use bllvm_node::p2p::backoff::Policy;
use bllvm_node::p2p::bans::BanList;
use bllvm_node::p2p::codec::{encode, FrameDecoder};
use bllvm_node::p2p::peer_manager::Settings as ManagerSettings;
use bllvm_node::p2p::protocol::{Io, Protocol, Settings};
use bllvm_node::p2p::rng::Rng;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Simulated wall clock at the start.
pub const T0_UNIX: i64 = 1_700_000_000;
const MAGIC: Magic = Magic::REGTEST;
/// How long the chain thread takes to send its summary after a change: it batches them.
const SUMMARY_DELAY: Duration = Duration::from_millis(50);

/// How a node behaves besides running the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs the protocol as it is.
    Honest,
    /// Never sends a block it is asked for (a block-download staller).
    Staller,
    /// Sends a frame with a bad checksum on every connection it has.
    Junk,
}

/// The network's properties.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One-way latency, uniformly between these.
    pub latency: (Duration, Duration),
    /// Bytes per second per direction of a link.
    pub bandwidth: u64,
    /// Chance a connection attempt is lost.
    pub connect_loss: f64,
    /// How often each node's protocol ticks.
    pub tick: Duration,
    /// Outbound target and connection cap of every node.
    pub target_outbound: usize,
    /// Connection cap.
    pub max_connections: usize,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            latency: (Duration::from_millis(10), Duration::from_millis(80)),
            bandwidth: 10_000_000,
            connect_loss: 0.05,
            tick: Duration::from_secs(1),
            target_outbound: 8,
            max_connections: 40,
        }
    }
}

/// The address of node `i` in its own /16 (127.{10+i/250}.{i%250}.1 would share groups).
pub fn node_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 10;
    SocketAddr::new(
        Ipv4Addr::new(127, (i % 250) as u8, (i / 250) as u8, 1).into(),
        18444,
    )
}

struct Node {
    addr: SocketAddr,
    proto: Protocol,
    chain: ChainState,
    /// Headers connected since the last summary.
    connected: Vec<bitcoin::block::Header>,
    behaviour: Behaviour,
    /// A summary is due: the chain thread sends one when its queue empties or a while passed.
    summary_due: bool,
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    /// A connection attempt reaches `to`.
    Syn {
        from: usize,
        conn: PeerId,
        to: SocketAddr,
    },
    /// The attempt failed: refused, lost or cut.
    Refused {
        node: usize,
        conn: PeerId,
    },
    /// Bytes arrive on a connection.
    Bytes {
        node: usize,
        conn: PeerId,
        bytes: Vec<u8>,
    },
    /// The other end closed.
    Fin {
        node: usize,
        conn: PeerId,
    },
    /// The chain's answer reaches the node's protocol.
    Chain {
        node: usize,
        cmd: P2pCommand,
    },
    /// The chain thread sends its summary.
    Summary(usize),
}

/// The simulator.
pub struct Sim {
    cfg: NetConfig,
    rng: Rng,
    t0: Instant,
    now: Duration,
    seq: u64,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BTreeMap<(Duration, u64), Event>,
    /// (node, conn) to the other end, once the connection is established.
    links: HashMap<(usize, PeerId), (usize, PeerId)>,
    /// Bytes a connecting side sent before the other end accepted.
    early: HashMap<(usize, PeerId), Vec<Vec<u8>>>,
    decoders: HashMap<(usize, PeerId), FrameDecoder>,
    /// When each directed link finishes sending what it has.
    busy_until: HashMap<(usize, PeerId), Duration>,
    /// When the last bytes sent on each directed link arrive.
    arrivals: HashMap<(usize, PeerId), Duration>,
    /// Which side of a partition each node is on, while one lasts.
    sides: Option<Vec<u8>>,
    /// Disconnections, with their reasons: (node, peer address, reason).
    pub disconnections: Vec<(usize, SocketAddr, &'static str)>,
    trace: u64,
    /// Events handled.
    pub events: u64,
}

impl Sim {
    /// `n` honest nodes, each knowing `known` others (seeded choice).
    pub fn new(seed: u64, cfg: NetConfig, n: usize, known: usize) -> Sim {
        let mut sim = Sim {
            cfg,
            rng: Rng::seeded(seed),
            t0: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            queue: BTreeMap::new(),
            links: HashMap::new(),
            early: HashMap::new(),
            decoders: HashMap::new(),
            busy_until: HashMap::new(),
            arrivals: HashMap::new(),
            sides: None,
            disconnections: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            events: 0,
        };
        let addrs: Vec<SocketAddr> = (0..n).map(node_addr).collect();
        for (i, a) in addrs.iter().enumerate() {
            let mut book = Vec::new();
            while book.len() < known.min(n - 1) {
                let j = sim.rng.below(n as u64) as usize;
                if j != i && !book.contains(&addrs[j]) {
                    book.push(addrs[j]);
                }
            }
            sim.add_node(*a, Behaviour::Honest, &book);
        }
        sim
    }

    /// Adds a node at `addr` that knows `book`; returns its index.
    pub fn add_node(
        &mut self,
        addr: SocketAddr,
        behaviour: Behaviour,
        book: &[SocketAddr],
    ) -> usize {
        let mut b = AddrBook::default();
        for a in book {
            b.add(*a, Source::Dns, T0_UNIX);
        }
        let settings = Settings {
            chain: Chain::Regtest,
            default_port: 18444,
            mempool_requests_from: vec![],
            manager: ManagerSettings {
                target_outbound: self.cfg.target_outbound,
                max_connections: self.cfg.max_connections,
                connect_only: vec![],
                connect_mode: false,
                addnode: vec![],
                backoff: Policy {
                    initial: Duration::from_secs(5),
                    max: Duration::from_secs(600),
                    max_retries: 10,
                    jitter: 0.2,
                },
                fixed_seeds: vec![],
            },
        };
        let proto = Protocol::new(
            settings,
            b,
            BanList::default(),
            Rng::seeded(self.rng.next_u64()),
            T0_UNIX,
        );
        let i = self.nodes.len();
        self.nodes.push(Node {
            addr,
            proto,
            chain: ChainState::new(Params::for_chain(Chain::Regtest)),
            connected: Vec::new(),
            behaviour,
            summary_due: false,
        });
        self.by_addr.insert(addr, i);
        let first = Duration::from_millis(self.rng.below(1000));
        self.schedule(first, Event::Tick(i));
        // Every node starts with the chain's first summary, as the chain thread sends one.
        let s = serve::summary(&self.nodes[i].chain, &[], false, self.now_unix());
        self.schedule(
            Duration::ZERO,
            Event::Chain {
                node: i,
                cmd: P2pCommand::Chain(Box::new(s)),
            },
        );
        i
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    fn now_unix(&self) -> i64 {
        T0_UNIX + self.now.as_secs() as i64
    }

    fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    fn schedule(&mut self, after: Duration, ev: Event) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.cfg.latency;
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(self.rng.below(span + 1))
    }

    fn fold(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.trace = (self.trace ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn record(&mut self, what: std::fmt::Arguments) {
        let line = format!("{:?} {what}", self.now);
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{line}");
        }
        self.fold(line.as_bytes());
    }

    /// A digest of everything that happened: equal for equal seeds.
    pub fn trace(&self) -> u64 {
        self.trace
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// A node's tip.
    pub fn tip(&self, i: usize) -> (bitcoin::BlockHash, u32) {
        self.nodes[i].chain.tip()
    }

    /// A node's protocol, to look at.
    pub fn protocol(&self, i: usize) -> &Protocol {
        &self.nodes[i].proto
    }

    /// A node's address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// Mines `n` blocks on node `i`'s tip (regtest proof of work, real validation).
    pub fn mine(&mut self, i: usize, n: usize) {
        for _ in 0..n {
            let now = self.now_unix();
            let node = &mut self.nodes[i];
            let (_, updates) = node
                .chain
                .mine(payout(i), vec![], now)
                .expect("a regtest block");
            note_connected(node, &updates);
        }
        self.summarise(i);
    }

    /// Offers `tx` to node `i`'s mempool as `sendrawtransaction` does; relay is told.
    pub fn send_tx(&mut self, i: usize, tx: bitcoin::Transaction) {
        let now = self.now_unix();
        let node = &mut self.nodes[i];
        node.chain
            .mempool_accept(tx, 0, now)
            .expect("the mempool takes it");
        let mut delta = MempoolDelta::default();
        serve::mempool_delta(&mut node.chain, &mut delta, now);
        let cmd = P2pCommand::Mempool(Box::new(delta));
        self.schedule(Duration::ZERO, Event::Chain { node: i, cmd });
    }

    /// The coinbase output of node `i`'s block at `height`, and its value.
    pub fn coinbase(&self, i: usize, height: u32) -> (bitcoin::OutPoint, u64) {
        let chain = &self.nodes[i].chain;
        let hash = chain.hash_at(height).expect("a block at that height");
        let cb = &chain.block(&hash).expect("its data").txdata[0];
        (
            bitcoin::OutPoint::new(cb.compute_txid(), 0),
            cb.output[0].value.to_sat(),
        )
    }

    /// Whether node `i`'s mempool holds `txid`.
    pub fn has_tx(&self, i: usize, txid: &bitcoin::Txid) -> bool {
        self.nodes[i].chain.mempool.get(txid).is_some()
    }

    /// Cuts the network in two: links across the cut close, connections across are refused.
    pub fn partition(&mut self, side: impl Fn(usize) -> u8) {
        let sides: Vec<u8> = (0..self.nodes.len()).map(side).collect();
        let across: Vec<(usize, PeerId)> = self
            .links
            .iter()
            .filter(|((a, _), (b, _))| sides[*a] != sides[*b])
            .map(|(k, _)| *k)
            .collect();
        self.sides = Some(sides);
        for (node, conn) in across {
            // Both ends see the connection die (a TCP timeout, in effect).
            self.close_local(node, conn, "partition");
        }
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.sides = None;
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.sides.as_ref().is_some_and(|s| s[a] != s[b])
    }

    /// Runs until `done` holds (checked after every simulated second) or `limit` passes;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        let mut next_check = self.now;
        loop {
            if self.now >= next_check {
                if done(self) {
                    return true;
                }
                next_check = self.now + Duration::from_secs(1);
            }
            let Some((&(at, seq), _)) = self.queue.iter().next() else {
                return done(self);
            };
            if at > end {
                self.now = end;
                return done(self);
            }
            let ev = self.queue.remove(&(at, seq)).expect("just seen");
            self.now = at;
            self.events += 1;
            self.handle(ev);
        }
    }

    /// Runs for `d` whatever happens.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn handle(&mut self, ev: Event) {
        let now = self.instant();
        let now_unix = self.now_unix();
        match ev {
            Event::Tick(i) => {
                self.nodes[i].proto.tick(now, now_unix);
                if self.nodes[i].behaviour == Behaviour::Junk {
                    let conns: Vec<PeerId> = self
                        .links
                        .keys()
                        .filter(|(n, _)| *n == i)
                        .map(|(_, c)| *c)
                        .collect();
                    for c in conns {
                        let mut junk = encode(MAGIC, NetworkMessage::Ping(7));
                        junk[20] ^= 0xff;
                        self.transmit(i, c, junk);
                    }
                }
                let every = self.cfg.tick;
                self.schedule(every, Event::Tick(i));
                self.drain(i);
            }
            Event::Syn { from, conn, to } => {
                let target = self.by_addr.get(&to).copied();
                let lost = self.rng.unit() < self.cfg.connect_loss;
                let accepted = match target {
                    Some(t) if !lost && !self.cut(from, t) => {
                        // The connecting side's address with an ephemeral port.
                        let src = SocketAddr::new(self.nodes[from].addr.ip(), 40_000 + conn as u16);
                        match self.nodes[t].proto.accept(src, now, now_unix) {
                            Ok(id) => Some((t, id)),
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                let back = self.latency();
                match accepted {
                    Some((t, id)) => {
                        self.links.insert((from, conn), (t, id));
                        self.links.insert((t, id), (from, conn));
                        self.record(format_args!("link {from}/{conn} {t}/{id}"));
                        for bytes in self.early.remove(&(from, conn)).unwrap_or_default() {
                            self.transmit(from, conn, bytes);
                        }
                        self.drain(t);
                    }
                    None => self.schedule(back, Event::Refused { node: from, conn }),
                }
            }
            Event::Refused { node, conn } => {
                self.early.remove(&(node, conn));
                self.nodes[node].proto.disconnected(conn, now, now_unix);
                self.drain(node);
            }
            Event::Bytes { node, conn, bytes } => {
                if !self.links.contains_key(&(node, conn)) {
                    return;
                }
                let d = self
                    .decoders
                    .entry((node, conn))
                    .or_insert_with(|| FrameDecoder::new(MAGIC));
                d.push(&bytes);
                let mut msgs = Vec::new();
                let mut bad = None;
                loop {
                    match d.next_message() {
                        Ok(Some(m)) => msgs.push(m),
                        Ok(None) => break,
                        Err(e) => {
                            bad = Some(e.to_string());
                            break;
                        }
                    }
                }
                for m in msgs {
                    self.nodes[node].proto.received(conn, m, now, now_unix);
                    self.nodes[node].proto.serve(conn);
                    self.drain(node);
                }
                if let Some(e) = bad {
                    self.nodes[node].proto.malformed(conn, &e, now_unix);
                    self.drain(node);
                }
            }
            Event::Fin { node, conn } => {
                self.decoders.remove(&(node, conn));
                self.busy_until.remove(&(node, conn));
                self.arrivals.remove(&(node, conn));
                if self.links.remove(&(node, conn)).is_some() {
                    self.nodes[node].proto.disconnected(conn, now, now_unix);
                    self.drain(node);
                }
            }
            Event::Summary(i) => {
                self.nodes[i].summary_due = false;
                let cmd = self.summary_of(i);
                self.nodes[i].proto.command(cmd, now, now_unix);
                self.drain(i);
            }
            Event::Chain { node, cmd } => {
                self.nodes[node].proto.command(cmd, now, now_unix);
                self.drain(node);
            }
        }
    }

    /// Sends bytes from `node` on `conn`, after what the link is already sending.
    fn transmit(&mut self, node: usize, conn: PeerId, bytes: Vec<u8>) {
        // Every byte counts towards the trace: nonces and timestamps included.
        self.fold(&bytes);
        let Some(&(to, their)) = self.links.get(&(node, conn)) else {
            if let Some(early) = self.early.get_mut(&(node, conn)) {
                early.push(bytes);
            }
            return;
        };
        let start = self
            .busy_until
            .get(&(node, conn))
            .copied()
            .unwrap_or_default()
            .max(self.now);
        let wire = Duration::from_secs_f64(bytes.len() as f64 / self.cfg.bandwidth as f64);
        let done = start + wire;
        self.busy_until.insert((node, conn), done);
        // A stream: nothing overtakes what was sent before it.
        let l = self.latency();
        let last = self
            .arrivals
            .get(&(node, conn))
            .copied()
            .unwrap_or_default();
        let arrive = (done + l).max(last);
        self.arrivals.insert((node, conn), arrive);
        self.schedule(
            arrive - self.now,
            Event::Bytes {
                node: to,
                conn: their,
                bytes,
            },
        );
    }

    /// Closes a connection from `node`'s side: it hears at once, the other end after a latency.
    fn close_local(&mut self, node: usize, conn: PeerId, why: &'static str) {
        let addr = self.remote_addr(node, conn);
        self.disconnections.push((node, addr, why));
        self.record(format_args!("close {node}/{conn} {why}"));
        self.early.remove(&(node, conn));
        self.decoders.remove(&(node, conn));
        self.busy_until.remove(&(node, conn));
        self.arrivals.remove(&(node, conn));
        if let Some((to, their)) = self.links.remove(&(node, conn)) {
            let l = self.latency();
            self.schedule(
                l,
                Event::Fin {
                    node: to,
                    conn: their,
                },
            );
        }
        let (now, now_unix) = (self.instant(), self.now_unix());
        self.nodes[node].proto.disconnected(conn, now, now_unix);
        self.drain(node);
    }

    fn remote_addr(&self, node: usize, conn: PeerId) -> SocketAddr {
        self.nodes[node]
            .proto
            .peer(conn)
            .map(|p| p.addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Carries out what node `i`'s protocol decided.
    fn drain(&mut self, i: usize) {
        loop {
            let io = self.nodes[i].proto.take_io();
            if io.is_empty() {
                return;
            }
            for action in io {
                match action {
                    Io::Send(conn, msg) => {
                        self.record(format_args!("{i}/{conn} > {}", msg.cmd()));
                        if self.nodes[i].behaviour == Behaviour::Staller
                            && matches!(msg, NetworkMessage::Block(_))
                        {
                            continue;
                        }
                        let bytes = encode(MAGIC, msg);
                        self.transmit(i, conn, bytes);
                    }
                    Io::Connect(conn, to, _) => {
                        self.record(format_args!("{i}/{conn} connect {to}"));
                        self.early.insert((i, conn), Vec::new());
                        let l = self.latency();
                        self.schedule(l, Event::Syn { from: i, conn, to });
                    }
                    Io::Disconnect(conn, why) => self.close_local(i, conn, why),
                    Io::Chain(ev) => {
                        let cmds = self.chain_event(i, ev);
                        for cmd in cmds {
                            self.schedule(Duration::ZERO, Event::Chain { node: i, cmd });
                        }
                    }
                    Io::Reply(reply, r) => {
                        let _ = reply.send(r);
                    }
                    Io::Lookup(_) | Io::Persist | Io::CloseListener => {}
                }
            }
        }
    }

    /// What the chain thread does with a peer event, on the real chain state.
    fn chain_event(&mut self, i: usize, ev: PeerEvent) -> Vec<P2pCommand> {
        let now_unix = self.now_unix();
        let node = &mut self.nodes[i];
        let mut out = Vec::new();
        let mut changed = false;
        match ev {
            PeerEvent::Headers { peer, headers } => {
                let (cmd, touched) = serve::take_headers(&mut node.chain, peer, headers, now_unix);
                out.push(cmd);
                changed = touched;
            }
            PeerEvent::Block { peer, block } => {
                match node.chain.submit_block(*block, now_unix) {
                    Ok((_, updates)) => note_connected(node, &updates),
                    Err(r) if r.is_consensus() => out.push(P2pCommand::Misbehaved {
                        peer,
                        reason: format!("invalid block: {}", r.reason),
                    }),
                    Err(_) => {}
                }
                changed = true;
            }
            PeerEvent::GetHeaders {
                peer,
                locator,
                stop,
            } => {
                let msg =
                    NetworkMessage::Headers(serve::headers_after(&node.chain, &locator, &stop));
                out.push(P2pCommand::Send { peer, msg });
            }
            PeerEvent::GetBlocks {
                peer,
                locator,
                stop,
            } => {
                let hashes = serve::blocks_after(&node.chain, &locator, &stop);
                out.push(P2pCommand::BlocksAfter { peer, hashes });
            }
            PeerEvent::Tx { peer, tx } => {
                let mut delta = MempoolDelta::default();
                node.chain.offer_relayed(*tx, peer, now_unix, &mut delta);
                serve::mempool_delta(&mut node.chain, &mut delta, now_unix);
                out.push(P2pCommand::Mempool(Box::new(delta)));
            }
            PeerEvent::GetData { peer, items } => {
                if let Some(height) = serve::requested_height(&node.chain, &items) {
                    out.push(P2pCommand::PeerHas { peer, height });
                }
                for msg in serve::blocks_for(&node.chain, &items) {
                    out.push(P2pCommand::Send { peer, msg });
                }
            }
        }
        if changed && !std::mem::replace(&mut self.nodes[i].summary_due, true) {
            self.schedule(SUMMARY_DELAY, Event::Summary(i));
        }
        out
    }

    fn summary_of(&mut self, i: usize) -> P2pCommand {
        let now_unix = self.now_unix();
        let node = &mut self.nodes[i];
        let connected = std::mem::take(&mut node.connected);
        let s = serve::summary(&node.chain, &connected, false, now_unix);
        P2pCommand::Chain(Box::new(s))
    }

    fn summarise(&mut self, i: usize) {
        let cmd = self.summary_of(i);
        self.schedule(Duration::ZERO, Event::Chain { node: i, cmd });
    }
}

/// Each node's own coinbase output, so two nodes mining on one parent make different blocks.
fn payout(i: usize) -> bitcoin::ScriptBuf {
    if i == 0 {
        return op_true_payout();
    }
    let data: [u8; 8] = (i as u64).to_le_bytes();
    bitcoin::ScriptBuf::new_op_return(data)
}

fn note_connected(node: &mut Node, updates: &[Update]) {
    for u in updates {
        match u {
            Update::Connected { hash, .. } => {
                if let Some(e) = node.chain.tree().get(hash) {
                    node.connected.push(e.header);
                }
            }
            Update::Disconnected { .. } => node.connected.clear(),
        }
    }
    if node.connected.len() > serve::MAX_ANNOUNCE_HEADERS + 1 {
        let extra = node.connected.len() - serve::MAX_ANNOUNCE_HEADERS - 1;
        node.connected.drain(..extra);
    }
}
