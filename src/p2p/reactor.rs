//! The mio event loop: owns every socket and drives the protocol state machines (`peer`,
//! `sync`, `peer_manager`, `partition`) with what the sockets, the chain and RPC say. The
//! decisions are theirs; this file moves bytes, messages and timers between them.

use super::addrbook::{AddrBook, Source};
use super::bans::BanList;
use super::connection::{command_label, Connection, Direction, ReadOutcome};
use super::partition::{PartitionDetector, Verdict};
use super::peer::{Action as PeerAction, Peer, Phase};
use super::peer_manager::{Command, PeerManager, Settings};
use super::resolver::{self, Lookup, Purpose, Resolved};
use super::send_queue::Pushed;
use super::sync::{Action as SyncAction, Sync};
use crate::clock::unix_now;
use crate::lifecycle::StopSignal;
use crate::messages::{
    AddNode, ChainSummary, CommandError, P2pCommand, PeerEvent, PeerId, PROTOCOL_VERSION,
};
use crate::metrics::Metrics;
use crate::state::{BanInfo, NetworkView, PeerInfo, Shared};
use crate::supervisor::health::{Heartbeat, Status};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Peer tokens start here; a peer's token is its id plus this.
const FIRST_PEER: usize = 2;

/// An outbound connect that takes longer is abandoned (Core's DEFAULT_CONNECT_TIMEOUT).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer whose send queue stays over its limit this long is disconnected.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often timers run.
const TIMER_EVERY: Duration = Duration::from_millis(250);
/// How often the address book and bans are saved (Core's DUMP_PEERS_INTERVAL).
const PERSIST_EVERY: Duration = Duration::from_secs(15 * 60);
/// Block requests handed to the chain per peer at a time: bounds what one peer's `getdata` can
/// make us hold in memory.
const GETDATA_IN_CHAIN: usize = 4;
/// Items in one `inv`/`getdata`, and block requests waiting per peer (Core's MAX_INV_SZ).
const MAX_INV: usize = 50_000;
/// Addresses in one `addr` message (Core's MAX_ADDR_TO_SEND).
const MAX_ADDR: usize = 1000;
/// Locator entries accepted (Core's MAX_LOCATOR_SZ).
const MAX_LOCATOR: usize = 101;
/// Minimum relay fee announced with `feefilter`, sat/kvB.
const FEEFILTER: u64 = 1000;

/// Why the p2p thread could not start or stopped working.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// The listen address could not be bound.
    #[error("cannot listen for P2P connections on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Polling failed.
    #[error("p2p poll failed")]
    Poll(#[source] std::io::Error),
    /// The resolver thread could not start.
    #[error("cannot start the resolver thread")]
    Resolver(#[source] std::io::Error),
}

/// The network magic of a chain.
pub fn magic(chain: crate::config::Chain) -> Magic {
    use crate::config::Chain;
    match chain {
        Chain::Mainnet => Magic::BITCOIN,
        Chain::Testnet3 => Magic::TESTNET3,
        Chain::Testnet4 => Magic::from_bytes([0x1c, 0x16, 0x3f, 0x28]),
        Chain::Signet => Magic::SIGNET,
        Chain::Regtest => Magic::REGTEST,
    }
}

/// The reactor before its thread starts: binding happens on the caller's thread so errors surface at start.
pub struct Reactor {
    poll: Poll,
    waker: Arc<Waker>,
    listener: Option<TcpListener>,
    /// Where the listener is bound.
    pub local_addr: SocketAddr,
}

/// What the loop needs besides sockets: settings and the state loaded from the store.
pub struct P2pSetup {
    /// The network.
    pub chain: crate::config::Chain,
    /// Peer manager settings.
    pub manager: Settings,
    /// `--connect`/`--addnode` names that need a DNS lookup.
    pub names: Vec<(String, u16, Purpose)>,
    /// The chain's default P2P port.
    pub default_port: u16,
    /// Per-peer send queue limit in bytes.
    pub send_queue_limit: usize,
    /// Saved address book.
    pub book: AddrBook,
    /// Saved bans.
    pub bans: BanList,
}

/// The channels and handles the running loop needs.
pub struct ReactorLinks {
    /// Commands in.
    pub commands: Receiver<P2pCommand>,
    /// Events out.
    pub events: Sender<PeerEvent>,
    /// Address book and ban list snapshots to the storage writer, as (key, value) records.
    pub persist: Sender<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Where the network view is published.
    pub shared: Arc<Shared>,
    /// Network metrics.
    pub metrics: Arc<Metrics>,
    /// Poll timeout, so the loop beats while idle.
    pub tick: Duration,
}

impl Reactor {
    /// Creates the poll and binds the listener.
    pub fn bind(addr: SocketAddr) -> Result<Reactor, ReactorError> {
        let bind_err = |source| ReactorError::Bind { addr, source };
        let poll = Poll::new().map_err(ReactorError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ReactorError::Poll)?);
        let mut listener = TcpListener::bind(addr).map_err(bind_err)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(Reactor {
            poll,
            waker,
            listener: Some(listener),
            local_addr,
        })
    }

    /// Wakes the loop from another thread (commands, shutdown).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs the loop until stopped.
    pub fn run(self, setup: P2pSetup, links: ReactorLinks) -> Result<(), ReactorError> {
        let (lookup_tx, lookup_rx) = bounded(64);
        let (resolved_tx, resolved_rx) = bounded(64);
        resolver::spawn(lookup_rx, resolved_tx, self.waker.clone())
            .map_err(ReactorError::Resolver)?;
        let now_unix = unix_now();
        let manager = PeerManager::new(setup.manager, setup.book, setup.bans, now_unix);
        let net = Net {
            poll: self.poll,
            listener: self.listener,
            local_addr: self.local_addr,
            magic: magic(setup.chain),
            chain: setup.chain,
            default_port: setup.default_port,
            queue_limit: setup.send_queue_limit,
            conns: HashMap::new(),
            next_id: 0,
            manager,
            sync: Sync::default(),
            partition: PartitionDetector::default(),
            blocked: None,
            active: true,
            nonces: HashSet::new(),
            lookups: lookup_tx,
            resolved: resolved_rx,
            seeds_asked: false,
            gone_traffic: (0, 0),
            links,
        };
        for (host, port, purpose) in setup.names {
            net.lookup(host, port, purpose);
        }
        net.run()
    }
}

/// The running loop's state.
struct Net {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    magic: Magic,
    chain: crate::config::Chain,
    default_port: u16,
    queue_limit: usize,
    conns: HashMap<Token, Connection>,
    next_id: PeerId,
    manager: PeerManager,
    sync: Sync,
    partition: PartitionDetector,
    /// An event the chain's full queue did not take: nothing is read from peers until it goes.
    blocked: Option<PeerEvent>,
    active: bool,
    nonces: HashSet<u64>,
    lookups: Sender<Lookup>,
    resolved: Receiver<Resolved>,
    seeds_asked: bool,
    /// Traffic of closed connections, so totals survive disconnections.
    gone_traffic: (u64, u64),
    links: ReactorLinks,
}

fn token_of(id: PeerId) -> Token {
    Token(id as usize + FIRST_PEER)
}

fn random_u64() -> u64 {
    bitcoin::secp256k1::rand::random()
}

fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The block hashes an `inv` or `notfound` names.
fn block_hashes(items: &[Inventory]) -> Vec<bitcoin::BlockHash> {
    items
        .iter()
        .filter_map(|i| match i {
            Inventory::Block(h) | Inventory::WitnessBlock(h) => Some(*h),
            _ => None,
        })
        .collect()
}

/// IPv4-mapped addresses as IPv4, so bans and netgroups see one form.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

impl Net {
    fn run(mut self) -> Result<(), ReactorError> {
        let mut events = Events::with_capacity(1024);
        self.links.heartbeat.set_status(Status::Healthy, "");
        log::info!("p2p listening on {}", self.local_addr);
        let mut last_timer = Instant::now() - TIMER_EVERY;
        let mut last_persist = Instant::now();
        let poll_timeout = self.links.tick.min(TIMER_EVERY);
        loop {
            self.links.heartbeat.beat();
            match self.poll.poll(&mut events, Some(poll_timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReactorError::Poll(e)),
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {}
                    t => {
                        if let Some(c) = self.conns.get_mut(&t) {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                c.readable = true;
                            }
                            if c.connecting.is_some() && (ev.is_writable() || ev.is_error()) {
                                self.finish_connect(t, now);
                            }
                        }
                    }
                }
            }
            while let Ok(cmd) = self.links.commands.try_recv() {
                self.command(cmd, now);
            }
            while let Ok(r) = self.resolved.try_recv() {
                self.on_resolved(r);
            }
            self.retry_blocked();
            let tokens: Vec<Token> = self.conns.keys().copied().collect();
            for t in &tokens {
                self.service(*t, now);
            }
            if now.duration_since(last_timer) >= TIMER_EVERY {
                last_timer = now;
                self.timers(now);
                self.publish();
            }
            if now.duration_since(last_persist) >= PERSIST_EVERY {
                last_persist = now;
                self.persist(Duration::ZERO);
            }
            self.flush_all();
            self.reap(now);
            if self.links.stop.requested() {
                self.shutdown();
                return Ok(());
            }
        }
    }

    /// Shutdown step 4: nothing new is sent, peers and bans are saved, sockets close.
    fn shutdown(&mut self) {
        let n = self.conns.len();
        for (_, mut c) in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.persist(Duration::from_secs(2));
        self.links.shared.network.write().peers_connected = 0;
        log::info!(peers = n; "p2p stopped");
    }

    fn persist(&self, wait: Duration) {
        let records = vec![
            (b"addrbook".to_vec(), self.manager.book.encode()),
            (b"bans".to_vec(), self.manager.bans.encode()),
        ];
        let sent = if wait.is_zero() {
            self.links.persist.try_send(records).is_ok()
        } else {
            self.links.persist.send_timeout(records, wait).is_ok()
        };
        if !sent {
            log::warn!("address book not saved: the storage writer is busy or gone");
        }
    }

    fn lookup(&self, host: String, port: u16, purpose: Purpose) {
        let l = Lookup {
            host,
            port,
            purpose,
        };
        if self.lookups.try_send(l).is_err() {
            log::warn!("resolver queue full, lookup dropped");
        }
    }

    fn query_seeds(&self) {
        if self.manager.connect_only() {
            return;
        }
        for seed in super::seeds::dns_seeds(self.chain) {
            self.lookup((*seed).to_owned(), self.default_port, Purpose::Seed);
        }
    }

    fn on_resolved(&mut self, r: Resolved) {
        let now_unix = unix_now();
        log::debug!("{} resolved to {} addresses", r.lookup.host, r.addrs.len());
        let mut addrs = r.addrs.into_iter().map(canonical);
        match r.lookup.purpose {
            Purpose::Seed => addrs.for_each(|a| self.manager.book.add(a, Source::Dns, now_unix)),
            // A named peer is one peer: its first address, as Core connects to one.
            Purpose::Connect => addrs
                .next()
                .into_iter()
                .for_each(|a| self.manager.add_connect(a, now_unix)),
            Purpose::AddNode => addrs.next().into_iter().for_each(|a| {
                self.manager.add_node(a, now_unix);
            }),
        }
    }

    // ---- connections ----

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    let addr = canonical(addr);
                    if !self.active {
                        self.count_close("network-inactive");
                        continue;
                    }
                    if let Err(why) = self.manager.inbound_arrived(addr, now, unix_now()) {
                        log::debug!("inbound connection from {addr} refused: {why:?}");
                        self.count_close(match why {
                            super::peer_manager::Refusal::Banned => "banned",
                            super::peer_manager::Refusal::Full => "full",
                            _ => "inbound-rate-limit",
                        });
                        continue;
                    }
                    self.open(stream, addr, Direction::Inbound, Peer::inbound(now), now);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: retry on the next readiness event instead of spinning.
                    log::warn!("p2p accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn open(
        &mut self,
        mut stream: TcpStream,
        addr: SocketAddr,
        direction: Direction,
        peer: Peer,
        now: Instant,
    ) -> Option<Token> {
        let id = self.next_id;
        self.next_id += 1;
        let token = token_of(id);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register connection to {addr}: {e}");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let label = match direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Manual => "manual",
        };
        self.links
            .metrics
            .net
            .connections_opened_total
            .with_label_values(&[label])
            .inc();
        let c = Connection::new(
            id,
            addr,
            direction,
            stream,
            peer,
            self.magic,
            self.queue_limit,
            now,
            unix_now(),
        );
        self.conns.insert(token, c);
        Some(token)
    }

    fn dial(&mut self, addr: SocketAddr, now: Instant) {
        if self.conns.values().any(|c| c.addr == addr) {
            // Already connected (e.g. it connected to us): nothing to do but tell the manager.
            self.manager
                .outbound_lost(addr, now, unix_now(), random_unit());
            return;
        }
        self.links.metrics.net.connect_attempts_total.inc();
        let direction = if self.manager.is_manual(&addr) {
            Direction::Manual
        } else {
            Direction::Outbound
        };
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let ours = self.version_message(addr);
                let nonce = ours.nonce;
                let (peer, first) = Peer::outbound(now, ours);
                if let Some(t) = self.open(stream, addr, direction, peer, now) {
                    self.nonces.insert(nonce);
                    if let Some(c) = self.conns.get_mut(&t) {
                        c.nonce = nonce;
                    }
                    self.peer_actions(t, first, now);
                }
            }
            Err(e) => {
                log::debug!("cannot connect to {addr}: {e}");
                self.manager
                    .outbound_lost(addr, now, unix_now(), random_unit());
            }
        }
    }

    fn finish_connect(&mut self, t: Token, now: Instant) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
            log::debug!("connection to {} failed: {e}", c.addr);
            c.closing = Some("connect-failed");
            return;
        }
        match c.stream.peer_addr() {
            Ok(_) => {
                c.connecting = None;
                log::debug!("connected to {}", c.addr);
                let _ = now;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
            Err(_) => c.closing = Some("connect-failed"),
        }
    }

    fn version_message(&self, to: SocketAddr) -> VersionMessage {
        let services = self.services();
        let mut v = VersionMessage::new(
            services,
            unix_now(),
            Address::new(&to, ServiceFlags::NONE),
            Address::new(&SocketAddr::from(([0, 0, 0, 0], 0)), services),
            random_u64(),
            format!("/bllvm-node:{}/", env!("CARGO_PKG_VERSION")),
            self.sync.chain().tip.1 as i32,
        );
        v.version = PROTOCOL_VERSION;
        v.relay = true;
        v
    }

    fn services(&self) -> ServiceFlags {
        if self.sync.chain().pruned {
            ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS
        } else {
            ServiceFlags::NETWORK | ServiceFlags::WITNESS
        }
    }

    /// Reads, decodes and handles what a connection has, as far as backpressure allows.
    fn service(&mut self, t: Token, now: Instant) {
        let now_unix = unix_now();
        self.process(t, now);
        {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            if c.closing.is_some()
                || c.connecting.is_some()
                || !c.readable
                || self.blocked.is_some()
                || c.queue.is_full()
                || c.decoder.space() == 0
            {
                return;
            }
            match c.read(now_unix) {
                Ok(ReadOutcome::Drained) => c.readable = false,
                Ok(ReadOutcome::MoreWaiting) => {}
                Ok(ReadOutcome::Closed) => {
                    c.readable = false;
                    c.closing = Some("peer-closed");
                }
                Err(e) => {
                    log::debug!("read from {} failed: {e}", c.addr);
                    c.closing = Some("read-error");
                }
            }
        }
        // One read budget per connection per turn keeps the loop fair.
        self.process(t, now);
    }

    /// Handles the whole messages buffered for a connection while the chain and the peer's own
    /// send queue can take more.
    fn process(&mut self, t: Token, now: Instant) {
        loop {
            if self.blocked.is_some() {
                return;
            }
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            // Core's order: a peer's pending block requests are served before its next message,
            // so what one peer can make us hold is one request's worth.
            if c.closing.is_some() || c.queue.is_full() || !c.getdata.is_empty() {
                break;
            }
            let msg = match c.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    let addr = c.addr;
                    log::info!("peer {addr}: {e}");
                    self.misbehaved(t, "malformed-message", &e.to_string());
                    return;
                }
            };
            let label = command_label(msg.cmd());
            let m = &self.links.metrics.net;
            m.messages_received_total.with_label_values(&[label]).inc();
            self.on_message(t, msg, now);
        }
        self.pump_getdata(t);
    }

    fn on_message(&mut self, t: Token, msg: NetworkMessage, now: Instant) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let ready = c.peer.phase() == Phase::Ready;
        let for_peer = !ready
            || matches!(
                msg,
                NetworkMessage::Version(_)
                    | NetworkMessage::Verack
                    | NetworkMessage::Ping(_)
                    | NetworkMessage::Pong(_)
                    | NetworkMessage::SendHeaders
                    | NetworkMessage::WtxidRelay
                    | NetworkMessage::SendAddrV2
            );
        if !for_peer {
            c.peer.heard(now);
            self.route(t, msg, now);
            return;
        }
        if let NetworkMessage::Version(v) = &msg {
            if c.inbound() && self.nonces.contains(&v.nonce) {
                c.closing = Some("self-connection");
                return;
            }
            c.version = Some((
                v.version,
                v.services.to_u64(),
                v.user_agent.clone(),
                v.start_height,
            ));
        }
        if matches!(msg, NetworkMessage::SendHeaders) {
            self.sync.set_send_headers(c.id);
        }
        let addr = c.addr;
        let ours = || self.version_message(addr);
        let ours = ours();
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let pong = matches!(msg, NetworkMessage::Pong(_));
        let actions = c.peer.on_message(now, msg, || ours);
        if let (true, Some(rtt)) = (pong, c.peer.min_latency) {
            self.manager.book.record_ping(&addr, rtt);
        }
        self.peer_actions(t, actions, now);
    }

    /// Messages past the handshake that are about blocks, headers and addresses.
    fn route(&mut self, t: Token, msg: NetworkMessage, now: Instant) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let id = c.id;
        match msg {
            NetworkMessage::Headers(h) => {
                if h.len() > crate::chain::serve::MAX_HEADERS {
                    return self.misbehaved(t, "oversized-headers", "more than 2000 headers");
                }
                self.tell_chain(PeerEvent::Headers {
                    peer: id,
                    headers: h,
                });
            }
            NetworkMessage::Block(b) => {
                let (forward, actions) = self.sync.block_arrived(id, b.block_hash(), now);
                if forward {
                    let addr = c.addr;
                    self.manager.book.record(
                        &addr,
                        super::addrbook::Quality::UsefulBlock,
                        unix_now(),
                    );
                    self.tell_chain(PeerEvent::Block {
                        peer: id,
                        block: Box::new(b),
                    });
                }
                self.sync_actions(actions, now);
            }
            NetworkMessage::Inv(items) => {
                if items.len() > MAX_INV {
                    return self.misbehaved(t, "oversized-inv", "inv too large");
                }
                let blocks = block_hashes(&items);
                if !blocks.is_empty() {
                    let a = self.sync.on_inv(id, &blocks, now);
                    self.sync_actions(a, now);
                }
            }
            NetworkMessage::GetHeaders(m) => {
                if m.locator_hashes.len() > MAX_LOCATOR {
                    return self.misbehaved(t, "oversized-locator", "locator too large");
                }
                self.tell_chain(PeerEvent::GetHeaders {
                    peer: id,
                    locator: m.locator_hashes,
                    stop: m.stop_hash,
                });
            }
            NetworkMessage::GetBlocks(m) => {
                if m.locator_hashes.len() > MAX_LOCATOR {
                    return self.misbehaved(t, "oversized-locator", "locator too large");
                }
                self.tell_chain(PeerEvent::GetBlocks {
                    peer: id,
                    locator: m.locator_hashes,
                    stop: m.stop_hash,
                });
            }
            NetworkMessage::GetData(items) => {
                if items.len() > MAX_INV {
                    return self.misbehaved(t, "oversized-getdata", "getdata too large");
                }
                let mut missing = Vec::new();
                for i in items {
                    match i {
                        Inventory::Block(_) | Inventory::WitnessBlock(_) => c.getdata.push_back(i),
                        // No mempool: every transaction is "not found".
                        other => missing.push(other),
                    }
                }
                if !missing.is_empty() {
                    self.send(t, NetworkMessage::NotFound(missing), now);
                }
            }
            NetworkMessage::NotFound(items) => {
                let blocks = block_hashes(&items);
                let a = self.sync.not_found(id, &blocks, now);
                self.sync_actions(a, now);
            }
            // Only inbound peers are answered, once (Core: against address-book fingerprinting).
            NetworkMessage::GetAddr if c.inbound() && !c.answered_getaddr => {
                c.answered_getaddr = true;
                let v2 = c.peer.features.addr_v2;
                let reply = self.addr_reply(v2);
                self.send(t, reply, now);
            }
            NetworkMessage::Addr(list) => {
                if list.len() > MAX_ADDR {
                    return self.misbehaved(t, "oversized-addr", "addr too large");
                }
                let now_unix = unix_now();
                for (_, a) in list {
                    if let Ok(sa) = a.socket_addr() {
                        self.learn(canonical(sa), now_unix);
                    }
                }
            }
            NetworkMessage::AddrV2(list) => {
                if list.len() > MAX_ADDR {
                    return self.misbehaved(t, "oversized-addr", "addrv2 too large");
                }
                let now_unix = unix_now();
                for a in list {
                    if let Ok(sa) = a.socket_addr() {
                        self.learn(canonical(sa), now_unix);
                    }
                }
            }
            // No mempool yet: transactions and their announcements are not relayed. `reject`,
            // `feefilter`, `sendcmpct` and unknown commands are ignored, as Core does.
            _ => {}
        }
    }

    fn learn(&mut self, a: SocketAddr, now_unix: i64) {
        if a.port() != 0 && !a.ip().is_unspecified() {
            self.manager.book.add(a, Source::Gossip, now_unix);
        }
    }

    /// Our answer to `getaddr`: known addresses with when they were last seen, as `addrv2` to
    /// peers that asked for it (BIP155), `addr` to the rest.
    fn addr_reply(&self, v2: bool) -> NetworkMessage {
        let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        let book = &self.manager.book;
        let sample = book
            .candidates(&[], MAX_ADDR, |_| true)
            .into_iter()
            .map(|a| {
                let seen = book.get(&a).map_or(0, |e| e.last_seen);
                (u32::try_from(seen).unwrap_or(0), a)
            });
        if v2 {
            NetworkMessage::AddrV2(
                sample
                    .map(|(time, a)| AddrV2Message {
                        time,
                        services,
                        addr: match a.ip() {
                            IpAddr::V4(ip) => AddrV2::Ipv4(ip),
                            IpAddr::V6(ip) => AddrV2::Ipv6(ip),
                        },
                        port: a.port(),
                    })
                    .collect(),
            )
        } else {
            NetworkMessage::Addr(
                sample
                    .map(|(time, a)| (time, Address::new(&a, services)))
                    .collect(),
            )
        }
    }

    /// Hands waiting block requests to the chain while the peer's queue has room.
    fn pump_getdata(&mut self, t: Token) {
        loop {
            if self.blocked.is_some() {
                return;
            }
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            if c.getdata.is_empty() || c.getdata_out >= GETDATA_IN_CHAIN || c.queue.is_full() {
                return;
            }
            let n = (GETDATA_IN_CHAIN - c.getdata_out).min(c.getdata.len());
            let items: Vec<Inventory> = c.getdata.drain(..n).collect();
            c.getdata_out += n;
            let peer = c.id;
            self.tell_chain(PeerEvent::GetData { peer, items });
        }
    }

    fn tell_chain(&mut self, ev: PeerEvent) {
        match self.links.events.try_send(ev) {
            Ok(()) => {}
            // TCP backpressure: stop reading until the chain takes it.
            Err(TrySendError::Full(ev)) => self.blocked = Some(ev),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn retry_blocked(&mut self) {
        if let Some(ev) = self.blocked.take() {
            self.tell_chain(ev);
        }
    }

    fn send(&mut self, t: Token, msg: NetworkMessage, now: Instant) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        let label = command_label(msg.cmd());
        if !c.peer.may_send(&msg) {
            // Its version, services or relay flag say it cannot take this (`Peer::may_send`).
            log::debug!(peer = c.id; "{label} withheld from {}", c.addr);
            return;
        }
        let before = c.queue.bytes();
        let m = &self.links.metrics.net;
        if c.send(self.magic, msg, now) == Pushed::Dropped {
            m.queue_drops_total.inc();
            return;
        }
        m.messages_sent_total.with_label_values(&[label]).inc();
        m.bytes_sent_total
            .with_label_values(&[label])
            .inc_by((c.queue.bytes() - before) as u64);
        if !c.warned_full && c.queue.bytes() > self.queue_limit / 2 {
            c.warned_full = true;
            log::warn!(
                "peer {} ({}) is not reading: {} bytes queued",
                c.id,
                c.addr,
                c.queue.bytes()
            );
        }
    }

    fn peer_actions(&mut self, t: Token, actions: Vec<PeerAction>, now: Instant) {
        for a in actions {
            match a {
                PeerAction::Send(m) => self.send(t, m, now),
                PeerAction::Disconnect(why) => {
                    if let Some(c) = self.conns.get_mut(&t) {
                        c.closing.get_or_insert(why);
                    }
                }
                PeerAction::Ready { start_height, .. } => self.on_ready(t, start_height, now),
            }
        }
    }

    fn on_ready(&mut self, t: Token, start_height: i32, now: Instant) {
        let Some(c) = self.conns.get(&t) else {
            return;
        };
        let (id, addr, direction, serves) = (c.id, c.addr, c.direction, c.peer.serves_blocks());
        log::info!(peer = id; "peer {addr} connected ({direction:?}, height {start_height})");
        if direction != Direction::Inbound {
            self.manager.outbound_ready(addr, unix_now());
            if self.partition.connected() == Verdict::Recovered {
                log::info!(event = "network_recovered"; "network partition over: peers are back");
            }
            self.send(t, NetworkMessage::GetAddr, now);
        }
        // Withheld by `send` while no transactions are relayed, and from peers before 70013.
        self.send(t, NetworkMessage::FeeFilter(FEEFILTER as i64), now);
        let a = self.sync.peer_ready(id, start_height, serves, now);
        self.sync_actions(a, now);
        self.publish();
    }

    fn sync_actions(&mut self, actions: Vec<SyncAction>, now: Instant) {
        for a in actions {
            match a {
                SyncAction::Send(id, m) => self.send(token_of(id), m, now),
                SyncAction::Disconnect(id, why) => {
                    if let Some(c) = self.conns.get_mut(&token_of(id)) {
                        log::info!(peer = id; "disconnecting {}: {why}", c.addr);
                        self.manager.book.record(
                            &c.addr,
                            super::addrbook::Quality::Stalled,
                            unix_now(),
                        );
                        c.closing.get_or_insert(why);
                    }
                }
                SyncAction::Misbehaved(id, why) => self.misbehaved(token_of(id), why, why),
            }
        }
    }

    /// Bans the peer's address and disconnects it.
    fn misbehaved(&mut self, t: Token, label: &'static str, detail: &str) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        log::warn!(peer = c.id; "banning {} for misbehaviour: {detail}", c.addr);
        c.closing = Some(label);
        let addr = c.addr;
        self.manager.misbehaved(addr, detail, unix_now());
        for other in self.conns.values_mut() {
            if other.addr.ip() == addr.ip() {
                other.closing.get_or_insert("banned");
            }
        }
    }

    fn flush_all(&mut self) {
        let now_unix = unix_now();
        for c in self.conns.values_mut() {
            if c.connecting.is_some() || c.queue.is_empty() || c.closing.is_some() {
                continue;
            }
            if let Err(e) = c.flush(now_unix) {
                log::debug!("write to {} failed: {e}", c.addr);
                c.closing = Some("write-error");
            }
        }
    }

    /// Closes the connections marked for closing and tells everyone who cares.
    fn reap(&mut self, now: Instant) {
        let gone: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_some())
            .map(|(t, _)| *t)
            .collect();
        for t in gone {
            let Some(mut c) = self.conns.remove(&t) else {
                continue;
            };
            let reason = c.closing.unwrap_or("unknown");
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.nonces.remove(&c.nonce);
            self.gone_traffic.0 += c.traffic.bytes_sent;
            self.gone_traffic.1 += c.traffic.bytes_recv;
            self.count_close(reason);
            let was_ready = c.peer.phase() == Phase::Ready;
            log::info!(peer = c.id; "peer {} disconnected: {reason}", c.addr);
            if c.inbound() {
                self.manager.inbound_gone(c.addr);
            } else {
                if !self.manager.bans.is_banned(&c.addr.ip(), unix_now()) {
                    self.manager
                        .outbound_lost(c.addr, now, unix_now(), random_unit());
                }
                if was_ready && self.partition.disconnected(now) == Verdict::Partitioned {
                    log::warn!(event = "network_partition"; "network partition: every outbound peer dropped at once");
                    self.links.metrics.net.partitions_total.inc();
                    self.query_seeds();
                }
            }
            if was_ready {
                let a = self.sync.peer_gone(c.id, now);
                self.sync_actions(a, now);
            }
        }
    }

    fn count_close(&self, reason: &'static str) {
        self.links
            .metrics
            .net
            .connections_closed_total
            .with_label_values(&[reason])
            .inc();
    }

    fn timers(&mut self, now: Instant) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            let Some(c) = self.conns.get_mut(&t) else {
                continue;
            };
            if let Some(since) = c.connecting {
                if now.saturating_duration_since(since) > CONNECT_TIMEOUT {
                    c.closing = Some("connect-timeout");
                }
                continue;
            }
            if c.queue.blocked_for(now) > SEND_STALL_TIMEOUT {
                c.closing = Some("send-queue-stalled");
                continue;
            }
            if c.queue.bytes() < self.queue_limit / 4 {
                c.warned_full = false;
            }
            let actions = c.peer.on_tick(now, random_u64());
            self.peer_actions(t, actions, now);
        }
        let a = self.sync.tick(now);
        self.sync_actions(a, now);
        let now_unix = unix_now();
        self.manager.bans.sweep(now_unix);
        if self.active {
            if let Some(worst) = self.manager.rotation(now, now_unix) {
                if let Some(c) = self.conns.values_mut().find(|c| c.addr == worst) {
                    log::info!(peer = c.id; "replacing {worst} with a better-scored address");
                    c.closing.get_or_insert("rotated");
                }
            }
            let before_book = self.manager.book.len();
            for Command::Connect(addr) in self.manager.tick(now, now_unix) {
                self.dial(addr, now);
            }
            // An empty book outside --connect mode: ask the seeds (none on regtest).
            if before_book == 0 && self.conns.is_empty() && !self.manager.connect_only() {
                self.query_seeds_once();
            }
        }
        let (status, reason) = self.partition.health(now);
        self.links.heartbeat.set_status(status, reason);
    }

    fn query_seeds_once(&mut self) {
        if !std::mem::replace(&mut self.seeds_asked, true) {
            self.query_seeds();
        }
    }

    fn command(&mut self, cmd: P2pCommand, now: Instant) {
        match cmd {
            P2pCommand::CloseListener => {
                if let Some(mut l) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                    log::info!("p2p listener closed");
                }
            }
            P2pCommand::Send { peer, msg } => {
                let t = token_of(peer);
                if let Some(c) = self.conns.get_mut(&t) {
                    let answered = match &msg {
                        NetworkMessage::Block(_) => 1,
                        NetworkMessage::NotFound(items) => items.len(),
                        _ => 0,
                    };
                    c.getdata_out = c.getdata_out.saturating_sub(answered);
                    let continued = match (&msg, c.continuation) {
                        (NetworkMessage::Block(b), Some(h)) => b.block_hash() == h,
                        _ => false,
                    };
                    if continued {
                        c.continuation = None;
                    }
                    self.send(t, msg, now);
                    if continued {
                        // Right after the block, so the peer's next `getblocks` starts from it.
                        let tip = Inventory::Block(self.sync.chain().tip.0);
                        self.send(t, NetworkMessage::Inv(vec![tip]), now);
                    }
                    self.pump_getdata(t);
                }
            }
            P2pCommand::BlocksAfter { peer, hashes } => {
                let t = token_of(peer);
                if let Some(c) = self.conns.get_mut(&t) {
                    if hashes.len() == crate::chain::serve::MAX_GETBLOCKS {
                        c.continuation = hashes.last().copied();
                    }
                    if !hashes.is_empty() {
                        let inv = hashes.into_iter().map(Inventory::Block).collect();
                        self.send(t, NetworkMessage::Inv(inv), now);
                    }
                }
            }
            P2pCommand::Chain(summary) => self.chain_changed(*summary, now),
            P2pCommand::HeadersDone {
                peer,
                last,
                more,
                unconnected,
            } => {
                let a = self.sync.headers_done(peer, last, more, unconnected, now);
                self.sync_actions(a, now);
            }
            P2pCommand::Misbehaved { peer, reason } => {
                self.misbehaved(token_of(peer), "misbehaviour", &reason)
            }
            P2pCommand::AddNode { addr, what, reply } => {
                let addr = canonical(addr);
                let r = match what {
                    AddNode::Add => {
                        if self.manager.add_node(addr, unix_now()) {
                            Ok(())
                        } else {
                            Err(CommandError::AlreadyAdded)
                        }
                    }
                    AddNode::Remove => {
                        if self.manager.remove_node(&addr) {
                            Ok(())
                        } else {
                            Err(CommandError::NotAdded)
                        }
                    }
                    AddNode::OneTry => {
                        self.manager.one_try(addr);
                        self.dial(addr, now);
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            P2pCommand::Disconnect { addr, peer, reply } => {
                let hit = self
                    .conns
                    .values_mut()
                    .find(|c| addr.is_some_and(|a| canonical(a) == c.addr) || peer == Some(c.id));
                let r = match hit {
                    Some(c) => {
                        c.closing = Some("rpc-disconnect");
                        Ok(())
                    }
                    None => Err(CommandError::NotConnected),
                };
                let _ = reply.send(r);
            }
            P2pCommand::SetBan {
                range,
                ban_secs,
                reply,
            } => {
                let now_unix = unix_now();
                let r = match ban_secs {
                    Some(_) if self.manager.bans.has(&range, now_unix) => {
                        Err(CommandError::AlreadyBanned)
                    }
                    Some(secs) => {
                        self.manager.bans.ban(range, now_unix, secs, "manual");
                        for c in self.conns.values_mut() {
                            if range.contains(&c.addr.ip()) {
                                c.closing = Some("banned");
                            }
                        }
                        Ok(())
                    }
                    None if self.manager.bans.unban(&range) => Ok(()),
                    None => Err(CommandError::NotBanned),
                };
                if r.is_ok() {
                    self.persist(Duration::ZERO);
                }
                let _ = reply.send(r);
            }
            P2pCommand::ClearBanned => {
                self.manager.bans.clear();
                self.persist(Duration::ZERO);
            }
            P2pCommand::SetActive(on) => {
                self.active = on;
                log::info!(
                    "network activity {}",
                    if on { "enabled" } else { "disabled" }
                );
                if !on {
                    for c in self.conns.values_mut() {
                        c.closing = Some("network-inactive");
                    }
                }
            }
            P2pCommand::PingAll => {
                for c in self.conns.values_mut() {
                    c.peer.ping_soon(now);
                }
                self.timers(now);
            }
        }
        self.publish();
    }

    fn chain_changed(&mut self, summary: ChainSummary, now: Instant) {
        log::debug!(
            "chain summary: tip {} at {}, {} blocks wanted",
            summary.tip.0,
            summary.tip.1,
            summary.wanted.len()
        );
        let a = self.sync.chain_changed(summary, now);
        self.sync_actions(a, now);
        let m = &self.links.metrics.net;
        m.blocks_in_flight.set(self.sync.in_flight() as i64);
    }

    /// Publishes the network view and gauges.
    fn publish(&self) {
        let now_unix = unix_now();
        let mut peers = Vec::with_capacity(self.conns.len());
        let (mut ready, mut inbound, mut queued) = (0, 0, 0);
        let mut by_dir = [0i64; 3];
        let (mut sent, mut recv) = self.gone_traffic;
        for c in self.conns.values() {
            let is_ready = c.peer.phase() == Phase::Ready;
            sent += c.traffic.bytes_sent;
            recv += c.traffic.bytes_recv;
            queued += c.queue.bytes();
            if is_ready {
                ready += 1;
                by_dir[c.direction as usize] += 1;
                if c.inbound() {
                    inbound += 1;
                }
            }
            let (version, services, subver, starting_height) =
                c.version.clone().unwrap_or((0, 0, String::new(), -1));
            let (inflight, best) = self.sync.peer_state(c.id).unwrap_or((0, 0));
            peers.push(PeerInfo {
                id: c.id,
                addr: Some(c.addr),
                local: c.stream.local_addr().ok(),
                inbound: c.inbound(),
                connection_type: match c.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound-full-relay",
                    Direction::Manual => "manual",
                },
                ready: is_ready,
                services,
                version,
                subver,
                starting_height,
                synced_headers: if is_ready { i64::from(best) } else { -1 },
                inflight,
                conntime: c.since,
                lastsend: c.traffic.last_send,
                lastrecv: c.traffic.last_recv,
                bytessent: c.traffic.bytes_sent,
                bytesrecv: c.traffic.bytes_recv,
                bytessent_per_msg: c
                    .traffic
                    .sent_per_msg
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect(),
                bytesrecv_per_msg: c
                    .traffic
                    .recv_per_msg
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect(),
                pingtime: c.peer.latency.map(|d| d.as_secs_f64()),
                minping: c.peer.min_latency.map(|d| d.as_secs_f64()),
                send_queue_bytes: c.queue.bytes(),
                wtxid_relay: c.peer.features.wtxid_relay,
                addr_v2: c.peer.features.addr_v2,
                send_headers: c.peer.features.send_headers,
            });
        }
        peers.sort_by_key(|p| p.id);
        let bans: Vec<BanInfo> = self
            .manager
            .bans
            .list(now_unix)
            .into_iter()
            .map(|(range, b)| BanInfo {
                address: range.to_string(),
                created: b.created,
                until: b.until,
                reason: b.reason.clone(),
            })
            .collect();
        let added = self
            .manager
            .added()
            .iter()
            .map(|a| {
                let connected = self
                    .conns
                    .values()
                    .any(|c| c.addr == *a && c.peer.phase() == Phase::Ready);
                (*a, connected)
            })
            .collect();
        let m = &self.links.metrics;
        m.peers_connected.set(ready as i64);
        for (i, dir) in ["inbound", "outbound", "manual"].iter().enumerate() {
            m.net.peers.with_label_values(&[dir]).set(by_dir[i]);
        }
        m.net.bans.set(bans.len() as i64);
        m.net.send_queue_bytes.set(queued as i64);
        m.net.blocks_in_flight.set(self.sync.in_flight() as i64);
        m.net.addresses_known.set(self.manager.book.len() as i64);
        let mut view = self.links.shared.network.write();
        *view = NetworkView {
            peers_connected: ready,
            peers_inbound: inbound,
            peers_max: view.peers_max,
            active: self.active,
            peers,
            bytes_sent: sent,
            bytes_recv: recv,
            bans,
            added,
            local_services: self.services().to_u64(),
        };
    }
}
