//! The P2P protocol as one state machine: every peer's handshake and liveness (`peer`), block
//! sync (`sync`), whom to connect to, refuse or evict (`peer_manager`, `eviction`), the address
//! book, bans, partitions, and the rules of the message vocabulary (`vocabulary`). Events go in
//! (a connection opened or closed, a message decoded, a tick, a command, a lookup answered),
//! each with the time; `Io` comes out. No socket, clock or global RNG is touched here, so the
//! reactor and the simulator in the tests drive the same code.

mod commands;
mod vocabulary;

use super::addrbook::{AddrBook, Quality, Source};
use super::bans::BanList;
use super::eviction::{self, Candidate};
use super::netgroup::netgroup;
use super::partition::{PartitionDetector, Verdict};
use super::peer::{Action as PeerAction, Direction, Peer, Phase};
use super::peer_manager::{Command, PeerManager, Refusal, Settings as ManagerSettings};
use super::relay::{Action as RelayAction, Relay};
use super::resolver::{Lookup, Purpose, Resolved};
use super::rng::Rng;
use super::sync::{Action as SyncAction, Sync};
use crate::config::Chain;
use crate::messages::{CommandError, CommandReply, PeerEvent, PeerId, PROTOCOL_VERSION};
use crate::supervisor::health::Status;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Block requests handed to the chain per peer at a time: bounds what one peer's `getdata` can
/// make us hold in memory.
pub const GETDATA_IN_CHAIN: usize = 4;

/// A tip unchanged this long is stale (Core: three block intervals).
pub const STALE_TIP_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often the stale-tip rule runs (Core's STALE_CHECK_INTERVAL).
pub const STALE_CHECK_EVERY: Duration = Duration::from_secs(45);
/// An outbound peer is not evicted as extra before it had this long (Core's MINIMUM_CONNECT_TIME).
pub const MIN_CONNECT_TIME: Duration = Duration::from_secs(30);

/// What the reactor (or the simulator) must do.
#[derive(Debug)]
pub enum Io {
    /// Frame and queue this message for the peer.
    Send(PeerId, NetworkMessage),
    /// Open an outbound connection; `id` names it from now on. A failure comes back as
    /// `disconnected`.
    Connect(PeerId, SocketAddr, Direction),
    /// Close the connection, for this reason (a metric label); `disconnected` follows.
    Disconnect(PeerId, &'static str),
    /// Hand this to the chain thread.
    Chain(PeerEvent),
    /// Resolve this name.
    Lookup(Lookup),
    /// Save the address book and bans now.
    Persist,
    /// Stop accepting connections.
    CloseListener,
    /// Answer an RPC command (after publishing what it changed).
    Reply(CommandReply, Result<(), CommandError>),
}

/// What the protocol needs to know of the node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network.
    pub chain: Chain,
    /// Peer manager settings.
    pub manager: ManagerSettings,
    /// The network's default P2P port (DNS seeds' answers use it).
    pub default_port: u16,
    /// Peers whose BIP35 `mempool` requests are answered (others are disconnected, as Core
    /// does for peers without the `mempool` permission).
    pub mempool_requests_from: Vec<crate::subnet::Subnet>,
}

/// What the peer said of itself in its `version`.
#[derive(Debug, Clone, Default)]
pub struct Their {
    /// Protocol version.
    pub version: u32,
    /// Service bits.
    pub services: u64,
    /// User agent.
    pub user_agent: String,
    /// Best height it claimed.
    pub start_height: i32,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct PeerRecord {
    /// The peer's address.
    pub addr: SocketAddr,
    /// How the connection was made.
    pub direction: Direction,
    /// Handshake, features and liveness.
    pub peer: Peer,
    /// Its version message, once received.
    pub their: Option<Their>,
    connected_at: Instant,
    /// Our version nonce (outbound), to spot connections to ourselves.
    nonce: u64,
    /// Block requests waiting until the send queue has room (Core's fPauseSend).
    getdata: VecDeque<Inventory>,
    /// Block requests handed to the chain and not yet answered.
    getdata_out: usize,
    /// The last hash of a full `getblocks` answer: when the peer fetches that block, our tip
    /// follows by `inv` so it asks for the next batch (Core's continuation block).
    continuation: Option<bitcoin::BlockHash>,
    answered_getaddr: bool,
    last_block: Option<Instant>,
    /// When it last told us of a block we did not know (Core's m_last_block_announcement).
    last_announce: Option<Instant>,
    closing: bool,
}

impl PeerRecord {
    /// Whether the peer connected to us.
    pub fn inbound(&self) -> bool {
        self.direction == Direction::Inbound
    }

    /// Whether the handshake is done.
    pub fn ready(&self) -> bool {
        self.peer.phase() == Phase::Ready
    }
}

/// The state machine.
pub struct Protocol {
    chain: Chain,
    default_port: u16,
    peers: BTreeMap<PeerId, PeerRecord>,
    next_id: PeerId,
    manager: PeerManager,
    sync: Sync,
    relay: Relay,
    mempool_requests_from: Vec<crate::subnet::Subnet>,
    partition: PartitionDetector,
    rng: Rng,
    eviction_key: u64,
    active: bool,
    /// When the DNS seeds are asked next (while short of outbound peers).
    next_seed_query: Option<Instant>,
    partitions: u64,
    changed: bool,
    /// The tip, and when it last changed.
    tip_since: Option<(bitcoin::BlockHash, Instant)>,
    last_stale_check: Option<Instant>,
    out: Vec<Io>,
}

/// With addresses in the book, the DNS seeds wait this long for them to connect (Core's 11 s).
pub const SEED_DELAY: Duration = Duration::from_secs(11);
/// While short of outbound peers, the DNS seeds are asked again this often.
pub const SEED_REFRESH: Duration = Duration::from_secs(15 * 60);

/// IPv4-mapped addresses as IPv4, so bans and netgroups see one form.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

impl Protocol {
    /// A protocol with a loaded address book and ban list; `rng` is its only randomness.
    pub fn new(
        settings: Settings,
        book: AddrBook,
        bans: BanList,
        mut rng: Rng,
        now_unix: i64,
    ) -> Protocol {
        let eviction_key = rng.next_u64();
        let salt = rng.next_u64();
        Protocol {
            chain: settings.chain,
            default_port: settings.default_port,
            peers: BTreeMap::new(),
            next_id: 0,
            manager: PeerManager::new(settings.manager, book, bans, now_unix).salted(salt),
            sync: Sync::default(),
            relay: Relay::default(),
            mempool_requests_from: settings.mempool_requests_from,
            partition: PartitionDetector::default(),
            rng,
            eviction_key,
            active: true,
            next_seed_query: None,
            partitions: 0,
            changed: true,
            tip_since: None,
            last_stale_check: None,
            out: Vec::new(),
        }
    }

    // ---- what comes out ----

    /// What to do, in order; the outbox is left empty.
    pub fn take_io(&mut self) -> Vec<Io> {
        std::mem::take(&mut self.out)
    }

    /// Whether what `getpeerinfo` and friends show changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    // ---- read access for views ----

    /// Connections, by id.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &PeerRecord)> {
        self.peers.iter()
    }

    /// One connection.
    pub fn peer(&self, id: PeerId) -> Option<&PeerRecord> {
        self.peers.get(&id)
    }

    /// Block sync state.
    pub fn sync(&self) -> &Sync {
        &self.sync
    }

    /// Transaction relay state (for views and gauges).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The peer manager (address book, bans, added nodes).
    pub fn manager(&self) -> &PeerManager {
        &self.manager
    }

    /// Whether network activity is on (`setnetworkactive`).
    pub fn active(&self) -> bool {
        self.active
    }

    /// Partitions detected so far.
    pub fn partitions(&self) -> u64 {
        self.partitions
    }

    /// Health as the partition detector sees it.
    pub fn health(&self, now: Instant) -> (Status, String) {
        self.partition.health(now)
    }

    /// The services we offer: a pruned node serves recent blocks only.
    pub fn services(&self) -> ServiceFlags {
        if self.sync.chain().pruned {
            ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS
        } else {
            ServiceFlags::NETWORK | ServiceFlags::WITNESS
        }
    }

    /// Whether the peer has block requests waiting: its next message waits for them (Core's
    /// order), so what one peer can make us hold is one request's worth.
    pub fn busy(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| !p.getdata.is_empty())
    }

    // ---- events ----

    /// Start-up: look up the `--connect`/`--addnode` names.
    pub fn start(&mut self, names: Vec<(String, u16, Purpose)>) {
        for (host, port, purpose) in names {
            self.out.push(Io::Lookup(Lookup {
                host,
                port,
                purpose,
            }));
        }
    }

    /// An inbound connection arrived: its id, or why it is refused. When every inbound slot is
    /// taken, an inbound peer may be evicted to make room (Core's rules, `eviction`).
    pub fn accept(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        now_unix: i64,
    ) -> Result<PeerId, Refusal> {
        let addr = canonical(addr);
        if !self.active {
            return Err(Refusal::Inactive);
        }
        match self.manager.inbound_arrived(addr, now, now_unix) {
            Ok(()) => {}
            Err(Refusal::Full) => {
                let victim = self.eviction_victim().ok_or(Refusal::Full)?;
                let gone = self.peers[&victim].addr;
                log::info!(peer = victim; "evicting inbound peer {gone} to make room for {addr}");
                self.close(victim, "evicted");
                self.manager.inbound_gone(gone);
                self.manager.inbound_taken(addr);
            }
            Err(e) => return Err(e),
        }
        let id = self.new_record(addr, Direction::Inbound, Peer::inbound(now), 0, now);
        Ok(id)
    }

    /// A decoded message from a peer.
    pub fn received(&mut self, id: PeerId, msg: NetworkMessage, now: Instant, now_unix: i64) {
        let Some(p) = self.peers.get_mut(&id).filter(|p| !p.closing) else {
            return;
        };
        let for_peer = !p.ready()
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
            p.peer.heard(now);
            return self.route(id, msg, now, now_unix);
        }
        if let NetworkMessage::Version(v) = &msg {
            let nonce = v.nonce;
            if p.inbound()
                && self
                    .peers
                    .values()
                    .any(|o| !o.inbound() && o.nonce == nonce)
            {
                return self.close(id, "self-connection");
            }
            let p = self.peers.get_mut(&id).expect("checked above");
            p.their = Some(Their {
                version: v.version,
                services: v.services.to_u64(),
                user_agent: v.user_agent.clone(),
                start_height: v.start_height,
            });
        }
        if matches!(msg, NetworkMessage::SendHeaders) {
            self.sync.set_send_headers(id);
        }
        let pong = matches!(msg, NetworkMessage::Pong(_));
        let (addr, inbound) = (self.peers[&id].addr, self.peers[&id].inbound());
        // Only an inbound peer's `version` is answered with ours (a nonce from the RNG).
        let ours = (inbound && matches!(msg, NetworkMessage::Version(_)))
            .then(|| self.version_message(addr, now_unix));
        let p = self.peers.get_mut(&id).expect("checked above");
        let actions = p.peer.on_message(now, msg, || {
            ours.expect("built for an inbound peer's version")
        });
        if let (true, Some(rtt)) = (pong, p.peer.min_latency) {
            self.manager.book.record_ping(&addr, rtt);
        }
        self.peer_actions(id, actions, now, now_unix);
    }

    /// A peer's byte stream did not decode: it is banned.
    pub fn malformed(&mut self, id: PeerId, detail: &str, now_unix: i64) {
        if let Some(p) = self.peers.get(&id) {
            log::info!(peer = id; "peer {}: {detail}", p.addr);
        }
        self.misbehaved(id, "malformed-message", detail, now_unix);
    }

    /// A connection closed (or an outbound attempt failed), for any reason.
    pub fn disconnected(&mut self, id: PeerId, now: Instant, now_unix: i64) {
        let Some(p) = self.peers.remove(&id) else {
            return;
        };
        self.changed = true;
        let was_ready = p.ready();
        if p.inbound() {
            self.manager.inbound_gone(p.addr);
        } else {
            if self.manager.bans.is_banned(&p.addr.ip(), now_unix) {
                // No retry while banned, but the slot is free: a banned peer left counted as
                // connected held its outbound slot for good, and was never dialled again.
                self.manager.outbound_closed(p.addr);
            } else {
                let unit = self.rng.unit();
                self.manager.outbound_lost(p.addr, now, now_unix, unit);
            }
            if was_ready && self.partition.disconnected(now) == Verdict::Partitioned {
                log::warn!(event = "network_partition"; "network partition: every outbound peer dropped at once");
                self.partitions += 1;
                self.query_seeds();
                self.next_seed_query = Some(now + SEED_REFRESH);
            }
        }
        if was_ready {
            self.relay.peer_gone(id);
            let a = self.relay.tick(now, &mut self.rng);
            self.relay_actions(a);
            let a = self.sync.peer_gone(id, now);
            self.sync_actions(a, now_unix);
        }
    }

    /// Serves the peer's waiting block requests; the caller knows its send queue has room.
    pub fn serve(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.closing || p.getdata.is_empty() || p.getdata_out >= GETDATA_IN_CHAIN {
            return;
        }
        let n = (GETDATA_IN_CHAIN - p.getdata_out).min(p.getdata.len());
        let items: Vec<Inventory> = p.getdata.drain(..n).collect();
        p.getdata_out += n;
        self.out
            .push(Io::Chain(PeerEvent::GetData { peer: id, items }));
    }

    /// A name was looked up.
    pub fn resolved(&mut self, r: Resolved, now_unix: i64) {
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

    /// Time passed: handshakes, pings, sync timeouts, bans, rotation and new connections.
    pub fn tick(&mut self, now: Instant, now_unix: i64) {
        self.tick_peers(now, now_unix);
        let a = self.sync.tick(now);
        self.sync_actions(a, now_unix);
        let a = self.relay.tick(now, &mut self.rng);
        self.relay_actions(a);
        if self.manager.bans.sweep(now_unix) > 0 {
            self.changed = true;
        }
        if !self.active {
            return;
        }
        self.stale_tip_check(now);
        if let Some(worst) = self.manager.rotation(now, now_unix) {
            let hit = self
                .peers
                .iter()
                .find(|(_, p)| p.addr == worst && !p.closing);
            if let Some((&id, _)) = hit {
                log::info!(peer = id; "replacing {worst} with a better-scored address");
                self.close(id, "rotated");
            }
        }
        let empty_book = self.manager.book.is_empty();
        for Command::Connect(addr) in self.manager.tick(now, now_unix) {
            self.dial(addr, false, now, now_unix);
        }
        self.seed_schedule(now, empty_book);
    }

    /// Core's stale-tip rule: with the tip unchanged for half an hour, one extra outbound peer
    /// is tried (it may be on a better chain, as after a partition); with more outbound peers
    /// than the target, the one that least recently announced a new block goes.
    fn stale_tip_check(&mut self, now: Instant) {
        if self.manager.connect_only()
            || self
                .last_stale_check
                .is_some_and(|t| now.saturating_duration_since(t) < STALE_CHECK_EVERY)
        {
            return;
        }
        self.last_stale_check = Some(now);
        let stale = self
            .tip_since
            .is_some_and(|(_, t)| now.saturating_duration_since(t) > STALE_TIP_AFTER);
        if stale {
            log::debug!("the tip has not changed in 30 minutes: trying an extra outbound peer");
        }
        self.manager.set_extra(stale);
        let outbound: Vec<(PeerId, Option<Instant>, Instant)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.direction == Direction::Outbound && p.ready() && !p.closing)
            .map(|(id, p)| (*id, p.last_announce, p.connected_at))
            .collect();
        if outbound.len() <= self.manager.target_outbound() {
            return;
        }
        let victim = outbound
            .into_iter()
            .filter(|(id, _, at)| {
                now.saturating_duration_since(*at) >= MIN_CONNECT_TIME
                    && self
                        .sync
                        .peer_state(*id)
                        .is_none_or(|(inflight, _)| inflight == 0)
            })
            .min_by_key(|(id, announced, at)| (*announced, std::cmp::Reverse(*at), *id));
        if let Some((id, _, _)) = victim {
            log::info!(peer = id; "disconnecting an extra outbound peer that announced nothing new");
            self.close(id, "extra-outbound");
        }
    }

    fn tick_peers(&mut self, now: Instant, now_unix: i64) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let nonce = self.rng.next_u64();
            let Some(p) = self.peers.get_mut(&id).filter(|p| !p.closing) else {
                continue;
            };
            let actions = p.peer.on_tick(now, nonce);
            self.peer_actions(id, actions, now, now_unix);
        }
    }

    // ---- helpers shared by the event handlers ----

    fn new_record(
        &mut self,
        addr: SocketAddr,
        direction: Direction,
        peer: Peer,
        nonce: u64,
        now: Instant,
    ) -> PeerId {
        let id = self.next_id;
        self.next_id += 1;
        self.changed = true;
        self.peers.insert(
            id,
            PeerRecord {
                addr,
                direction,
                peer,
                their: None,
                connected_at: now,
                nonce,
                getdata: VecDeque::new(),
                getdata_out: 0,
                continuation: None,
                answered_getaddr: false,
                last_block: None,
                last_announce: None,
                closing: false,
            },
        );
        id
    }

    /// Opens an outbound connection unless one to `addr` exists (either direction): a second
    /// would not be a new peer, and the attempt is dropped without counting as a failure.
    fn dial(&mut self, addr: SocketAddr, manual: bool, now: Instant, now_unix: i64) {
        if self.connected_to(&addr) {
            self.manager.cancel(&addr);
            return;
        }
        let direction = if manual || self.manager.is_manual(&addr) {
            Direction::Manual
        } else {
            Direction::Outbound
        };
        let ours = self.version_message(addr, now_unix);
        let nonce = ours.nonce;
        let (peer, first) = Peer::outbound(now, ours);
        let id = self.new_record(addr, direction, peer, nonce, now);
        self.out.push(Io::Connect(id, addr, direction));
        self.peer_actions(id, first, now, now_unix);
    }

    fn connected_to(&self, addr: &SocketAddr) -> bool {
        self.peers.values().any(|p| p.addr == *addr && !p.closing)
    }

    fn version_message(&mut self, to: SocketAddr, now_unix: i64) -> VersionMessage {
        let services = self.services();
        let mut v = VersionMessage::new(
            services,
            now_unix,
            Address::new(&to, ServiceFlags::NONE),
            Address::new(&SocketAddr::from(([0, 0, 0, 0], 0)), services),
            self.rng.next_u64(),
            format!("/bllvm-node:{}/", env!("CARGO_PKG_VERSION")),
            self.sync.chain().tip.1 as i32,
        );
        v.version = PROTOCOL_VERSION;
        v.relay = true;
        v
    }

    /// The DNS seeds are asked while the node is short of outbound peers: at once with an
    /// empty book, else after `SEED_DELAY` (Core's wait for the book's own addresses), then
    /// every `SEED_REFRESH` for as long as it stays short, however long the outage.
    fn seed_schedule(&mut self, now: Instant, empty_book: bool) {
        if self.manager.connect_only() || !self.manager.short_of_target() {
            self.next_seed_query = None;
            return;
        }
        let due = *self.next_seed_query.get_or_insert_with(|| {
            if empty_book {
                now
            } else {
                now + SEED_DELAY
            }
        });
        if now >= due {
            self.query_seeds();
            self.next_seed_query = Some(now + SEED_REFRESH);
        }
    }

    fn query_seeds(&mut self) {
        if self.manager.connect_only() {
            return;
        }
        for seed in super::seeds::dns_seeds(self.chain) {
            self.out.push(Io::Lookup(Lookup {
                host: (*seed).to_owned(),
                port: self.default_port,
                purpose: Purpose::Seed,
            }));
        }
    }

    /// Queues `msg` for the peer if its version, services and relay flag allow it
    /// (`Peer::may_send`).
    fn send(&mut self, id: PeerId, msg: NetworkMessage) {
        let Some(p) = self.peers.get(&id).filter(|p| !p.closing) else {
            return;
        };
        if !p.peer.may_send(&msg) {
            log::debug!(peer = id; "{} withheld from {}", msg.cmd(), p.addr);
            return;
        }
        self.out.push(Io::Send(id, msg));
    }

    /// Marks the connection for closing; its state goes when `disconnected` comes back.
    fn close(&mut self, id: PeerId, why: &'static str) {
        if let Some(p) = self.peers.get_mut(&id).filter(|p| !p.closing) {
            p.closing = true;
            self.out.push(Io::Disconnect(id, why));
        }
    }

    fn peer_actions(&mut self, id: PeerId, actions: Vec<PeerAction>, now: Instant, now_unix: i64) {
        for a in actions {
            match a {
                PeerAction::Send(m) => self.send(id, m),
                PeerAction::Disconnect(why) => self.close(id, why),
                PeerAction::Ready { start_height, .. } => {
                    self.on_ready(id, start_height, now, now_unix)
                }
            }
        }
    }

    fn on_ready(&mut self, id: PeerId, start_height: i32, now: Instant, now_unix: i64) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let (addr, direction, serves) = (p.addr, p.direction, p.peer.serves_blocks());
        let (wtxid, relays) = (p.peer.features.wtxid_relay, p.peer.relays());
        log::info!(peer = id; "peer {addr} connected ({direction:?}, height {start_height})");
        self.changed = true;
        if direction != Direction::Inbound {
            self.manager.outbound_ready(addr, now_unix);
            if self.partition.connected() == Verdict::Recovered {
                log::info!(event = "network_recovered"; "network partition over: peers are back");
            }
            self.send(id, NetworkMessage::GetAddr);
        }
        let inbound = direction == Direction::Inbound;
        self.relay
            .peer_ready(id, inbound, wtxid, relays, now, &mut self.rng);
        // The first `feefilter` goes now (`send` withholds it from peers before 70013).
        let a = self.relay.tick(now, &mut self.rng);
        self.relay_actions(a);
        let a = self.sync.peer_ready(id, start_height, serves, now);
        self.sync_actions(a, now_unix);
    }

    fn relay_actions(&mut self, actions: Vec<RelayAction>) {
        for a in actions {
            match a {
                RelayAction::Send(id, m) => self.send(id, m),
                RelayAction::Validate(peer, tx) => {
                    self.out.push(Io::Chain(PeerEvent::Tx { peer, tx }))
                }
            }
        }
    }

    fn sync_actions(&mut self, actions: Vec<SyncAction>, now_unix: i64) {
        for a in actions {
            match a {
                SyncAction::Send(id, m) => self.send(id, m),
                SyncAction::Disconnect(id, why) => {
                    if let Some(p) = self.peers.get(&id).filter(|p| !p.closing) {
                        let addr = p.addr;
                        log::info!(peer = id; "disconnecting {addr}: {why}");
                        self.manager.book.record(&addr, Quality::Stalled, now_unix);
                        self.close(id, why);
                    }
                }
                SyncAction::Misbehaved(id, why) => self.misbehaved(id, why, why, now_unix),
            }
        }
    }

    /// Bans the peer's address and disconnects every connection from it.
    fn misbehaved(&mut self, id: PeerId, label: &'static str, detail: &str, now_unix: i64) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        let addr = p.addr;
        log::warn!(peer = id; "banning {addr} for misbehaviour: {detail}");
        self.close(id, label);
        self.manager.misbehaved(addr, detail, now_unix);
        self.changed = true;
        let same: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, o)| o.addr.ip() == addr.ip())
            .map(|(i, _)| *i)
            .collect();
        for other in same {
            self.close(other, "banned");
        }
    }

    /// The inbound peer to evict for a newcomer, if Core's rules leave one.
    fn eviction_victim(&self) -> Option<PeerId> {
        let candidates = self
            .peers
            .iter()
            .filter(|(_, p)| p.inbound() && !p.closing)
            .map(|(id, p)| Candidate {
                id: *id,
                netgroup: netgroup(p.addr.ip()),
                min_ping: p.peer.min_latency,
                last_block: p.last_block,
                connected: p.connected_at,
            })
            .collect();
        eviction::select(candidates, self.eviction_key)
    }
}

#[cfg(test)]
mod tests;
