//! The mio event loop: owns every socket, frames bytes into messages and back, and carries out
//! what the protocol state machine (`protocol`) decides. It decides nothing about peers itself;
//! its own rules are about sockets only: connect and send-queue timeouts, reading fairly, and
//! the memory that unfinished frames may hold.

use super::addrbook::AddrBook;
use super::bans::BanList;
use super::connection::{command_label, Connection, ReadOutcome};
use super::peer::Direction;
use super::peer_manager::Settings;
use super::protocol::{self, Io, Protocol};
use super::resolver::{Lookup, Purpose, Resolved};
use super::rng::Rng;
use super::send_queue::Pushed;
use super::view;
use crate::clock::unix_now;
use crate::lifecycle::StopSignal;
use crate::messages::{P2pCommand, PeerEvent, PeerId};
use crate::metrics::Metrics;
use crate::state::{NetworkView, Shared};
use crate::supervisor::health::{Heartbeat, Status};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::Magic;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
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
/// Unfinished-frame bytes an inbound connection may always hold: every message but blocks,
/// large `inv`s and full `headers` fits.
pub const FRAME_FREE_BYTES: usize = 64 * 1024;
/// Unfinished-frame bytes all inbound connections together may hold beyond their free share.
/// Outbound peers (at most the outbound target plus manual ones) are not held to it: we chose
/// them and ask them for blocks.
pub const FRAME_BUDGET: usize = 32 * 1024 * 1024;
/// An inbound peer holding more than its free share of an unfinished frame, and sending
/// nothing for this long, is disconnected so it cannot sit on the budget.
pub const FRAME_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How often timers run.
const TIMER_EVERY: Duration = Duration::from_millis(250);
/// How often the address book and bans are saved (Core's DUMP_PEERS_INTERVAL).
const PERSIST_EVERY: Duration = Duration::from_secs(15 * 60);

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
    /// Peers whose BIP35 `mempool` requests are answered.
    pub mempool_requests_from: Vec<crate::subnet::Subnet>,
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
    /// Names to the resolver thread.
    pub lookups: Sender<Lookup>,
    /// Its answers (it wakes the loop after each).
    pub resolved: Receiver<Resolved>,
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
        let settings = protocol::Settings {
            chain: setup.chain,
            manager: setup.manager,
            default_port: setup.default_port,
            mempool_requests_from: setup.mempool_requests_from,
        };
        let mut proto = Protocol::new(settings, setup.book, setup.bans, Rng::from_os(), unix_now());
        proto.start(setup.names);
        let mut net = Net {
            poll: self.poll,
            listener: self.listener,
            local_addr: self.local_addr,
            magic: magic(setup.chain),
            queue_limit: setup.send_queue_limit,
            conns: HashMap::new(),
            proto,
            blocked: VecDeque::new(),
            lookups: links.lookups.clone(),
            resolved: links.resolved.clone(),
            gone_traffic: (0, 0),
            partitions_seen: 0,
            inbound_buffered: 0,
            links,
        };
        net.carry_out(Instant::now());
        net.run()
    }
}

/// The running loop's state.
struct Net {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    magic: Magic,
    queue_limit: usize,
    conns: HashMap<Token, Connection>,
    proto: Protocol,
    /// Events the chain's full queue did not take: nothing is read from peers until they go.
    blocked: VecDeque<PeerEvent>,
    lookups: Sender<Lookup>,
    resolved: Receiver<Resolved>,
    /// Traffic of closed connections, so totals survive disconnections.
    gone_traffic: (u64, u64),
    partitions_seen: u64,
    /// Unfinished-frame bytes held by inbound connections, counted at the start of each turn.
    inbound_buffered: usize,
    links: ReactorLinks,
}

fn token_of(id: PeerId) -> Token {
    Token(id as usize + FIRST_PEER)
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
                                finish_connect(c);
                            }
                        }
                    }
                }
            }
            while let Ok(cmd) = self.links.commands.try_recv() {
                self.proto.command(cmd, now, unix_now());
                self.carry_out(now);
            }
            while let Ok(r) = self.resolved.try_recv() {
                self.proto.resolved(r, unix_now());
            }
            self.retry_blocked();
            self.inbound_buffered = self
                .conns
                .values()
                .filter(|c| c.direction == Direction::Inbound)
                .map(|c| c.decoder.buffered())
                .sum();
            let tokens: Vec<Token> = self.conns.keys().copied().collect();
            for t in &tokens {
                self.service(*t, now);
            }
            let mut publish = false;
            if now.duration_since(last_timer) >= TIMER_EVERY {
                last_timer = now;
                self.timers(now);
                publish = true;
            }
            if now.duration_since(last_persist) >= PERSIST_EVERY {
                last_persist = now;
                self.persist(Duration::ZERO);
            }
            self.flush_all();
            self.reap(now);
            if self.proto.take_changed() || publish {
                self.publish();
            }
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
        let m = self.proto.manager();
        let records = vec![
            (b"addrbook".to_vec(), m.book.encode()),
            (b"bans".to_vec(), m.bans.encode()),
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

    /// Carries out what the protocol decided, until it has nothing more to say.
    fn carry_out(&mut self, now: Instant) {
        loop {
            let io = self.proto.take_io();
            if io.is_empty() {
                return;
            }
            for action in io {
                match action {
                    Io::Send(id, msg) => self.send(token_of(id), msg, now),
                    Io::Connect(id, addr, direction) => self.dial(id, addr, direction, now),
                    Io::Disconnect(id, why) => match self.conns.get_mut(&token_of(id)) {
                        Some(c) => {
                            c.closing.get_or_insert(why);
                        }
                        None => self.proto.disconnected(id, now, unix_now()),
                    },
                    Io::Chain(ev) => self.tell_chain(ev),
                    Io::Lookup(l) => {
                        if self.lookups.try_send(l).is_err() {
                            log::warn!("resolver queue full, lookup dropped");
                        }
                    }
                    Io::Persist => self.persist(Duration::ZERO),
                    Io::CloseListener => {
                        if let Some(mut l) = self.listener.take() {
                            let _ = self.poll.registry().deregister(&mut l);
                            log::info!("p2p listener closed");
                        }
                    }
                    Io::Reply(reply, r) => {
                        // What the command changed is visible by the time its caller hears back.
                        if self.proto.take_changed() {
                            self.publish();
                        }
                        let _ = reply.send(r);
                    }
                }
            }
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
                    let addr = protocol::canonical(addr);
                    match self.proto.accept(addr, now, unix_now()) {
                        Ok(id) => self.register(id, stream, addr, Direction::Inbound, now),
                        Err(why) => {
                            log::debug!("inbound connection from {addr} refused: {why:?}");
                            self.count_close(why.label());
                        }
                    }
                    self.carry_out(now);
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

    /// Adds a socket to the poll; when that fails the protocol hears the connection is gone, so
    /// the slot it took is freed.
    fn register(
        &mut self,
        id: PeerId,
        mut stream: TcpStream,
        addr: SocketAddr,
        direction: Direction,
        now: Instant,
    ) {
        let token = token_of(id);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register connection to {addr}: {e}");
            self.count_close("register-failed");
            self.proto.disconnected(id, now, unix_now());
            return;
        }
        let _ = stream.set_nodelay(true);
        let label = match direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Manual => "manual",
        };
        let m = &self.links.metrics.net;
        m.connections_opened_total.with_label_values(&[label]).inc();
        let c = Connection::new(
            id,
            addr,
            direction,
            stream,
            self.magic,
            self.queue_limit,
            now,
            unix_now(),
        );
        self.conns.insert(token, c);
    }

    fn dial(&mut self, id: PeerId, addr: SocketAddr, direction: Direction, now: Instant) {
        self.links.metrics.net.connect_attempts_total.inc();
        match TcpStream::connect(addr) {
            Ok(stream) => self.register(id, stream, addr, direction, now),
            Err(e) => {
                log::debug!("cannot connect to {addr}: {e}");
                self.proto.disconnected(id, now, unix_now());
            }
        }
    }

    /// Reads, decodes and handles what a connection has, as far as backpressure and the frame
    /// budget allow.
    fn service(&mut self, t: Token, now: Instant) {
        let now_unix = unix_now();
        self.process(t, now);
        let over_budget = self.inbound_buffered >= FRAME_BUDGET;
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if c.closing.is_some()
            || c.connecting.is_some()
            || !c.readable
            || !self.blocked.is_empty()
            || c.queue.is_full()
            || c.decoder.space() == 0
        {
            return;
        }
        let inbound = c.direction == Direction::Inbound;
        let cap = if inbound && over_budget {
            FRAME_FREE_BYTES.saturating_sub(c.decoder.buffered())
        } else {
            usize::MAX
        };
        if cap == 0 {
            // Waiting for the budget is not the peer's stall.
            c.last_byte = now;
            return;
        }
        let before = c.decoder.buffered();
        match c.read(cap, now, now_unix) {
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
        if inbound {
            self.inbound_buffered += c.decoder.buffered().saturating_sub(before);
        }
        // One read budget per connection per turn keeps the loop fair.
        self.process(t, now);
    }

    /// Hands the whole messages buffered for a connection to the protocol while the chain and
    /// the peer's own send queue can take more.
    fn process(&mut self, t: Token, now: Instant) {
        loop {
            if !self.blocked.is_empty() {
                return;
            }
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            let id = c.id;
            if c.closing.is_some() || c.queue.is_full() || self.proto.busy(id) {
                break;
            }
            let held = c.decoder.buffered();
            match c.next_message() {
                Ok(Some(msg)) => {
                    let label = command_label(msg.cmd());
                    let m = &self.links.metrics.net;
                    m.messages_received_total.with_label_values(&[label]).inc();
                    // The frame it came in, header included.
                    let frame = held.saturating_sub(c.decoder.buffered());
                    m.bytes_received_total
                        .with_label_values(&[label])
                        .inc_by(frame as u64);
                    self.proto.received(id, msg, now, unix_now());
                }
                Ok(None) => break,
                Err(e) => self.proto.malformed(id, &e.to_string(), unix_now()),
            }
            self.carry_out(now);
        }
        if let Some(c) = self.conns.get(&t) {
            if self.blocked.is_empty() && !c.queue.is_full() {
                self.proto.serve(c.id);
                self.carry_out(now);
            }
        }
    }

    fn tell_chain(&mut self, ev: PeerEvent) {
        if !self.blocked.is_empty() {
            self.blocked.push_back(ev);
            return;
        }
        match self.links.events.try_send(ev) {
            Ok(()) => {}
            // TCP backpressure: stop reading until the chain takes it.
            Err(TrySendError::Full(ev)) => self.blocked.push_back(ev),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn retry_blocked(&mut self) {
        while let Some(ev) = self.blocked.pop_front() {
            match self.links.events.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.blocked.push_front(ev);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn send(&mut self, t: Token, msg: NetworkMessage, now: Instant) {
        let Some(c) = self.conns.get_mut(&t).filter(|c| c.closing.is_none()) else {
            return;
        };
        let label = command_label(msg.cmd());
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

    /// Closes the connections marked for closing and tells the protocol.
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
            self.gone_traffic.0 += c.traffic.bytes_sent;
            self.gone_traffic.1 += c.traffic.bytes_recv;
            self.count_close(reason);
            log::info!(peer = c.id; "peer {} disconnected: {reason}", c.addr);
            self.proto.disconnected(c.id, now, unix_now());
            self.carry_out(now);
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

    /// Socket timers, then the protocol's.
    fn timers(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            if let Some(since) = c.connecting {
                if now.saturating_duration_since(since) > CONNECT_TIMEOUT {
                    c.closing.get_or_insert("connect-timeout");
                }
                continue;
            }
            if c.queue.blocked_for(now) > SEND_STALL_TIMEOUT {
                c.closing.get_or_insert("send-queue-stalled");
                continue;
            }
            if c.direction == Direction::Inbound
                && c.decoder.buffered() > FRAME_FREE_BYTES
                && now.saturating_duration_since(c.last_byte) > FRAME_STALL_TIMEOUT
            {
                c.closing.get_or_insert("frame-stalled");
                continue;
            }
            if c.queue.bytes() < self.queue_limit / 4 {
                c.warned_full = false;
            }
        }
        self.proto.tick(now, unix_now());
        self.carry_out(now);
        let (status, reason) = self.proto.health(now);
        self.links.heartbeat.set_status(status, reason);
    }

    /// Publishes the network view and gauges: on every timer turn and when the protocol says
    /// something shown changed, never per message.
    fn publish(&mut self) {
        let v = view::build(
            self.conns.values(),
            &self.proto,
            self.gone_traffic,
            unix_now(),
        );
        let m = &self.links.metrics;
        m.peers_connected.set(v.view.peers_connected as i64);
        for (i, dir) in ["inbound", "outbound", "manual"].iter().enumerate() {
            m.net.peers.with_label_values(&[dir]).set(v.by_direction[i]);
        }
        m.net.bans.set(v.view.bans.len() as i64);
        m.net.send_queue_bytes.set(v.queued as i64);
        m.net.receive_buffer_bytes.set(v.buffered as i64);
        m.net.relay_bytes.set(self.proto.relay().usage() as i64);
        m.net
            .blocks_in_flight
            .set(self.proto.sync().in_flight() as i64);
        m.net
            .addresses_known
            .set(self.proto.manager().book.len() as i64);
        let partitions = self.proto.partitions();
        m.net
            .partitions_total
            .inc_by(partitions.saturating_sub(self.partitions_seen));
        self.partitions_seen = partitions;
        let mut shared = self.links.shared.network.write();
        let peers_max = shared.peers_max;
        *shared = NetworkView {
            peers_max,
            ..v.view
        };
    }
}

/// A non-blocking connect finished, one way or the other.
fn finish_connect(c: &mut Connection) {
    if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
        log::debug!("connection to {} failed: {e}", c.addr);
        c.closing = Some("connect-failed");
        return;
    }
    match c.stream.peer_addr() {
        Ok(_) => {
            c.connecting = None;
            log::debug!("connected to {}", c.addr);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
        Err(_) => c.closing = Some("connect-failed"),
    }
}
