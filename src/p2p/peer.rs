//! One peer's protocol state: handshake, feature negotiation and liveness. Messages and time
//! go in, actions come out; the reactor owns the socket.

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use std::time::{Duration, Instant};

/// Core's handshake deadline.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a ready peer is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(120);
/// Silence, or an unanswered ping, for this long ends the connection (Core's TIMEOUT_INTERVAL).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Oldest protocol version served (Core's MIN_PEER_PROTO_VERSION).
pub const MIN_PROTOCOL_VERSION: u32 = 31_800;
/// Peers at or above this version negotiate wtxidrelay (BIP339) before verack.
pub const WTXID_RELAY_VERSION: u32 = 70_016;
/// Peers at or above this version understand sendheaders (BIP130).
pub const SENDHEADERS_VERSION: u32 = 70_012;
/// First version Core sends `sendaddrv2` to (BIP155 is older, but no software below this has it).
pub const ADDRV2_VERSION: u32 = 70_016;
/// Peers at or above this version understand `feefilter` (BIP133).
pub const FEEFILTER_VERSION: u32 = 70_013;
/// Peers at or above this version understand `sendcmpct` (BIP152).
pub const SHORT_IDS_VERSION: u32 = 70_014;

/// How a connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer connected to us.
    Inbound,
    /// We connected to a peer the peer manager chose.
    Outbound,
    /// We connected because of `--connect`, `--addnode` or `addnode`.
    Manual,
}

/// What the reactor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message.
    Send(NetworkMessage),
    /// Close the connection, for this reason (a metric label).
    Disconnect(&'static str),
    /// The handshake completed.
    Ready {
        /// The peer's best height.
        start_height: i32,
        /// The peer's user agent.
        user_agent: String,
    },
}

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's version.
    AwaitVersion,
    /// Version exchanged; waiting for verack.
    AwaitVerack,
    /// Handshake done.
    Ready,
}

/// Features the peer asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// BIP339: announce transactions by wtxid.
    pub wtxid_relay: bool,
    /// BIP155: addrv2 messages.
    pub addr_v2: bool,
    /// BIP130: announce blocks with headers.
    pub send_headers: bool,
}

/// One connection's state.
#[derive(Debug, Clone)]
pub struct Peer {
    inbound: bool,
    phase: Phase,
    connected_at: Instant,
    last_recv: Instant,
    ping: Option<(u64, Instant)>,
    next_ping: Option<Instant>,
    their_version: u32,
    /// The services the peer offers (its version message).
    their_services: bitcoin::p2p::ServiceFlags,
    /// The peer's relay flag: false asks for no transactions (light clients, BIP37).
    their_relay: bool,
    /// Negotiated features.
    pub features: Features,
    /// Last ping round trip.
    pub latency: Option<Duration>,
    /// Lowest ping round trip.
    pub min_latency: Option<Duration>,
    pending_ready: Option<(i32, String)>,
}

impl Peer {
    /// An outbound connection: our version goes first.
    pub fn outbound(now: Instant, ours: VersionMessage) -> (Peer, Vec<Action>) {
        (
            Peer::new(false, now),
            vec![Action::Send(NetworkMessage::Version(ours))],
        )
    }

    /// An inbound connection: we answer the peer's version.
    pub fn inbound(now: Instant) -> Peer {
        Peer::new(true, now)
    }

    fn new(inbound: bool, now: Instant) -> Peer {
        Peer {
            inbound,
            phase: Phase::AwaitVersion,
            connected_at: now,
            last_recv: now,
            ping: None,
            next_ping: None,
            their_version: 0,
            their_services: bitcoin::p2p::ServiceFlags::NONE,
            their_relay: true,
            features: Features::default(),
            latency: None,
            min_latency: None,
            pending_ready: None,
        }
    }

    /// The handshake phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A message the sync layer handles arrived: the peer is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_recv = now;
    }

    /// `ping` RPC: ping at the next tick unless a ping is already out.
    pub fn ping_soon(&mut self, now: Instant) {
        if self.phase == Phase::Ready && self.ping.is_none() {
            self.next_ping = Some(now);
        }
    }

    /// Its `version` relay flag: false asks for no transaction announcements (BIP37).
    pub fn relays(&self) -> bool {
        self.their_relay
    }

    /// Whether the peer serves blocks (`NODE_NETWORK` or `NODE_NETWORK_LIMITED`): only then is
    /// it asked for headers or blocks. Indexers and light clients offer neither, and stop on
    /// requests they cannot serve.
    pub fn serves_blocks(&self) -> bool {
        use bitcoin::p2p::ServiceFlags;
        self.their_services.has(ServiceFlags::NETWORK)
            || self.their_services.has(ServiceFlags::NETWORK_LIMITED)
    }

    /// Whether `msg` may go to this peer, as Core gates it: by the peer's protocol version (a
    /// message it cannot know would end old software's connection), the services it offers,
    /// its relay flag, the handshake's phase and the connection's direction.
    pub fn may_send(&self, msg: &NetworkMessage) -> bool {
        use bitcoin::p2p::message_blockdata::Inventory;
        let v = self.their_version;
        let txs = self.their_relay;
        match msg {
            NetworkMessage::SendHeaders => v >= SENDHEADERS_VERSION,
            NetworkMessage::FeeFilter(_) => v >= FEEFILTER_VERSION && txs,
            NetworkMessage::SendCmpct(_) => v >= SHORT_IDS_VERSION,
            NetworkMessage::WtxidRelay => v >= WTXID_RELAY_VERSION && self.phase != Phase::Ready,
            NetworkMessage::SendAddrV2 => v >= ADDRV2_VERSION && self.phase != Phase::Ready,
            NetworkMessage::Tx(_) | NetworkMessage::MemPool => txs,
            NetworkMessage::Inv(items) => items.iter().all(|i| match i {
                Inventory::Transaction(_)
                | Inventory::WitnessTransaction(_)
                | Inventory::WTx(_) => txs,
                _ => true,
            }),
            // Addresses are asked of peers we chose, never of those that came to us.
            NetworkMessage::GetAddr => !self.inbound,
            NetworkMessage::GetHeaders(_) | NetworkMessage::GetBlocks(_) => self.serves_blocks(),
            NetworkMessage::GetData(items) => items.iter().all(|i| match i {
                Inventory::Transaction(_)
                | Inventory::WitnessTransaction(_)
                | Inventory::WTx(_) => txs,
                _ => self.serves_blocks(),
            }),
            _ => true,
        }
    }

    /// A message arrived; `ours` builds our version message when an inbound peer needs it.
    pub fn on_message(
        &mut self,
        now: Instant,
        msg: NetworkMessage,
        ours: impl FnOnce() -> VersionMessage,
    ) -> Vec<Action> {
        self.last_recv = now;
        match (self.phase, msg) {
            (Phase::AwaitVersion, NetworkMessage::Version(v)) => {
                if v.version < MIN_PROTOCOL_VERSION {
                    return vec![Action::Disconnect("obsolete-version")];
                }
                self.their_version = v.version;
                self.their_services = v.services;
                self.their_relay = v.relay;
                self.phase = Phase::AwaitVerack;
                let mut out = Vec::new();
                if self.inbound {
                    out.push(Action::Send(NetworkMessage::Version(ours())));
                }
                if v.version >= WTXID_RELAY_VERSION {
                    out.push(Action::Send(NetworkMessage::WtxidRelay));
                }
                // Core's courtesy: older software may reject messages it does not know.
                if v.version >= ADDRV2_VERSION {
                    out.push(Action::Send(NetworkMessage::SendAddrV2));
                }
                out.push(Action::Send(NetworkMessage::Verack));
                self.pending_ready = Some((v.start_height, v.user_agent));
                out
            }
            (_, NetworkMessage::Version(_)) => vec![Action::Disconnect("duplicate-version")],
            (Phase::AwaitVerack, NetworkMessage::WtxidRelay) => {
                self.features.wtxid_relay = true;
                vec![]
            }
            (Phase::AwaitVerack, NetworkMessage::SendAddrV2) => {
                self.features.addr_v2 = true;
                vec![]
            }
            (Phase::AwaitVerack, NetworkMessage::Verack) => {
                self.phase = Phase::Ready;
                self.next_ping = Some(now);
                let (start_height, user_agent) = self.pending_ready.take().unwrap_or_default();
                let mut out = vec![Action::Ready {
                    start_height,
                    user_agent,
                }];
                if self.their_version >= SENDHEADERS_VERSION {
                    out.push(Action::Send(NetworkMessage::SendHeaders));
                }
                out
            }
            // Core ignores anything else before the handshake completes; the handshake timeout
            // ends a peer that never completes it.
            (Phase::AwaitVersion | Phase::AwaitVerack, _) => vec![],
            (Phase::Ready, NetworkMessage::Ping(n)) => vec![Action::Send(NetworkMessage::Pong(n))],
            (Phase::Ready, NetworkMessage::Pong(n)) => {
                if let Some((nonce, sent)) = self.ping {
                    if nonce == n {
                        let rtt = now.saturating_duration_since(sent);
                        self.latency = Some(rtt);
                        self.min_latency = Some(self.min_latency.map_or(rtt, |m| m.min(rtt)));
                        self.ping = None;
                    }
                }
                vec![]
            }
            (Phase::Ready, NetworkMessage::SendHeaders) => {
                self.features.send_headers = true;
                vec![]
            }
            // Late feature negotiation is a protocol violation in Core; ignoring it is enough here.
            (Phase::Ready, NetworkMessage::WtxidRelay | NetworkMessage::SendAddrV2) => vec![],
            // Everything else is for the sync and relay logic above this layer.
            (Phase::Ready, _) => vec![],
        }
    }

    /// Time passed: handshake deadline, pings, and silence. `nonce` is used if a ping is sent.
    pub fn on_tick(&mut self, now: Instant, nonce: u64) -> Vec<Action> {
        if self.phase != Phase::Ready {
            if now.saturating_duration_since(self.connected_at) > HANDSHAKE_TIMEOUT {
                return vec![Action::Disconnect("handshake-timeout")];
            }
            return vec![];
        }
        if now.saturating_duration_since(self.last_recv) > INACTIVITY_TIMEOUT {
            return vec![Action::Disconnect("inactivity")];
        }
        if let Some((_, sent)) = self.ping {
            if now.saturating_duration_since(sent) > INACTIVITY_TIMEOUT {
                return vec![Action::Disconnect("ping-timeout")];
            }
            return vec![];
        }
        match self.next_ping {
            Some(t) if now >= t => {
                self.ping = Some((nonce, now));
                self.next_ping = Some(now + PING_INTERVAL);
                vec![Action::Send(NetworkMessage::Ping(nonce))]
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::p2p::address::Address;
    use bitcoin::p2p::ServiceFlags;

    fn version(v: u32) -> VersionMessage {
        let addr = Address::new(&"127.0.0.1:18444".parse().unwrap(), ServiceFlags::NONE);
        let mut m = VersionMessage::new(
            ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            0,
            addr.clone(),
            addr,
            1,
            "/test:1/".into(),
            7,
        );
        m.version = v;
        m
    }

    fn sent(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.cmd().to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn outbound_handshake_negotiates_features_then_pings() {
        let t0 = Instant::now();
        let (mut p, first) = Peer::outbound(t0, version(70016));
        assert_eq!(sent(&first), ["version"]);
        let a = p.on_message(
            t0,
            NetworkMessage::Version(version(70016)),
            || unreachable!(),
        );
        assert_eq!(sent(&a), ["wtxidrelay", "sendaddrv2", "verack"]);
        assert!(p
            .on_message(t0, NetworkMessage::WtxidRelay, || unreachable!())
            .is_empty());
        let a = p.on_message(t0, NetworkMessage::Verack, || unreachable!());
        assert_eq!(
            a[0],
            Action::Ready {
                start_height: 7,
                user_agent: "/test:1/".into()
            }
        );
        assert_eq!(sent(&a), ["sendheaders"]);
        assert!(p.features.wtxid_relay && !p.features.addr_v2);
        // Ping at once, then not again until answered and two minutes have passed.
        assert_eq!(
            p.on_tick(t0, 42),
            vec![Action::Send(NetworkMessage::Ping(42))]
        );
        assert!(p.on_tick(t0 + Duration::from_secs(10), 43).is_empty());
        p.on_message(
            t0 + Duration::from_millis(30),
            NetworkMessage::Pong(42),
            || unreachable!(),
        );
        assert_eq!(p.latency, Some(Duration::from_millis(30)));
        assert!(p.on_tick(t0 + Duration::from_secs(119), 44).is_empty());
        assert_eq!(sent(&p.on_tick(t0 + PING_INTERVAL, 45)), ["ping"]);
        assert_eq!(
            sent(&p.on_message(t0, NetworkMessage::Ping(9), || unreachable!())),
            ["pong"]
        );
    }

    #[test]
    fn inbound_answers_version_and_old_peers_get_no_wtxidrelay() {
        let t0 = Instant::now();
        let mut p = Peer::inbound(t0);
        let a = p.on_message(t0, NetworkMessage::Version(version(70015)), || {
            version(70016)
        });
        assert_eq!(sent(&a), ["version", "verack"]);
        assert!(matches!(
            p.on_message(t0, NetworkMessage::Version(version(70015)), || version(1))[..],
            [Action::Disconnect("duplicate-version")]
        ));
    }

    #[test]
    fn protocol_and_timeout_violations_disconnect() {
        let t0 = Instant::now();
        let mut early = Peer::inbound(t0);
        assert!(early
            .on_message(t0, NetworkMessage::Ping(1), || version(1))
            .is_empty());
        assert_eq!(early.phase(), Phase::AwaitVersion, "ignored, as in Core");
        let mut old = Peer::inbound(t0);
        assert_eq!(
            old.on_message(t0, NetworkMessage::Version(version(100)), || version(1)),
            vec![Action::Disconnect("obsolete-version")]
        );
        let mut slow = Peer::inbound(t0);
        assert!(slow.on_tick(t0 + HANDSHAKE_TIMEOUT, 1).is_empty());
        assert_eq!(
            slow.on_tick(t0 + HANDSHAKE_TIMEOUT + Duration::from_secs(1), 1),
            vec![Action::Disconnect("handshake-timeout")]
        );

        let (mut p, _) = Peer::outbound(t0, version(70016));
        p.on_message(
            t0,
            NetworkMessage::Version(version(70016)),
            || unreachable!(),
        );
        p.on_message(t0, NetworkMessage::Verack, || unreachable!());
        p.on_tick(t0, 5); // ping sent, never answered
        let late = t0 + INACTIVITY_TIMEOUT + Duration::from_secs(1);
        assert_eq!(p.on_tick(late, 6), vec![Action::Disconnect("inactivity")]);
        // Traffic without the pong still ends the connection once the ping is 20 minutes old.
        p.on_message(late, NetworkMessage::SendHeaders, || unreachable!());
        assert_eq!(p.on_tick(late, 6), vec![Action::Disconnect("ping-timeout")]);
    }

    /// Core's gates: what a 70001 light client with no services and relay off may receive.
    #[test]
    fn messages_are_gated_by_version_services_and_relay() {
        use bitcoin::hashes::Hash;
        use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
        let t0 = Instant::now();
        let ours = || {
            let a = bitcoin::p2p::Address::new(
                &"127.0.0.1:0".parse().unwrap(),
                bitcoin::p2p::ServiceFlags::NONE,
            );
            VersionMessage::new(
                bitcoin::p2p::ServiceFlags::NETWORK,
                0,
                a.clone(),
                a,
                1,
                "/t/".into(),
                0,
            )
        };
        let mut old = ours();
        old.version = 70_001;
        old.services = bitcoin::p2p::ServiceFlags::NONE;
        old.relay = false;
        let mut p = Peer::inbound(t0);
        p.on_message(t0, NetworkMessage::Version(old), ours);
        p.on_message(t0, NetworkMessage::Verack, || unreachable!());
        let getheaders = NetworkMessage::GetHeaders(GetHeadersMessage::new(
            vec![],
            bitcoin::BlockHash::all_zeros(),
        ));
        let block = Inventory::Block(bitcoin::BlockHash::all_zeros());
        let tx = Inventory::Transaction(bitcoin::Txid::all_zeros());
        for m in [
            NetworkMessage::SendHeaders,
            NetworkMessage::FeeFilter(1000),
            NetworkMessage::WtxidRelay,
            NetworkMessage::SendAddrV2,
            NetworkMessage::GetAddr,
            getheaders.clone(),
            NetworkMessage::GetData(vec![block]),
            NetworkMessage::Inv(vec![tx]),
        ] {
            assert!(!p.may_send(&m), "{} to a 70001 client", m.cmd());
        }
        for m in [NetworkMessage::Inv(vec![block]), NetworkMessage::Ping(1)] {
            assert!(p.may_send(&m), "{}", m.cmd());
        }
        // A current full node we dialled: everything, transaction traffic included.
        let (mut p, _) = Peer::outbound(t0, ours());
        let mut v = ours();
        v.version = 70_016;
        v.services = bitcoin::p2p::ServiceFlags::NETWORK_LIMITED;
        v.relay = true;
        p.on_message(t0, NetworkMessage::Version(v), ours);
        assert!(p.may_send(&NetworkMessage::WtxidRelay), "before verack");
        p.on_message(t0, NetworkMessage::Verack, || unreachable!());
        assert!(!p.may_send(&NetworkMessage::WtxidRelay), "after verack");
        for m in [
            NetworkMessage::SendHeaders,
            NetworkMessage::GetAddr,
            getheaders,
        ] {
            assert!(p.may_send(&m), "{}", m.cmd());
        }
        assert!(p.may_send(&NetworkMessage::FeeFilter(1000)), "it relays");
    }
}
