//! Which peers to connect to and which to refuse: outbound targets refilled from the address
//! book (diverse, backed off), `--connect` mode, the connection cap, inbound rate limits and
//! bans. Plain state: time is passed in; the reactor carries out the commands.

use super::addrbook::{AddrBook, Quality, Source};
use super::backoff::{Persistence, Policy, Reconnect};
use super::bans::{BanList, DEFAULT_BAN_SECS};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Inbound connections accepted per IP per minute.
pub const INBOUND_PER_IP_PER_MIN: usize = 10;
/// Inbound connections accepted per minute in total.
pub const INBOUND_PER_MIN: usize = 120;
/// The worst outbound peer is swapped for a better address at most this often.
pub const ROTATE_EVERY: Duration = Duration::from_secs(600);
/// How much better (address-book score) an address must be to replace a connected peer.
pub const ROTATE_MARGIN: i32 = 50;

/// Settings from `[network]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Outbound full-relay connections to keep.
    pub target_outbound: usize,
    /// Connections at most, both directions.
    pub max_connections: usize,
    /// `--connect`: only these peers, nothing else.
    pub connect_only: Vec<SocketAddr>,
    /// `--connect` was given, possibly only as names not yet resolved: no other peers meanwhile.
    pub connect_mode: bool,
    /// `--addnode`: kept connected besides the others.
    pub addnode: Vec<SocketAddr>,
    /// Reconnection backoff.
    pub backoff: Policy,
    /// The network's fixed seeds, added when the book is still empty a minute after start.
    pub fixed_seeds: Vec<SocketAddr>,
}

/// What the reactor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open an outbound connection.
    Connect(SocketAddr),
}

/// Why an inbound connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is banned.
    Banned,
    /// Connection cap reached.
    Full,
    /// Too many connections from this IP recently.
    RateLimitedIp,
    /// Too many inbound connections recently.
    RateLimitedGlobal,
    /// Network activity is off (`setnetworkactive false`).
    Inactive,
}

impl Refusal {
    /// The metric label for connections closed this way.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Banned => "banned",
            Refusal::Full => "full",
            Refusal::RateLimitedIp | Refusal::RateLimitedGlobal => "inbound-rate-limit",
            Refusal::Inactive => "network-inactive",
        }
    }
}

/// The manager.
pub struct PeerManager {
    settings: Settings,
    /// Known addresses.
    pub book: AddrBook,
    /// Bans.
    pub bans: BanList,
    reconnect: HashMap<SocketAddr, Reconnect>,
    outbound: Vec<SocketAddr>,
    pending: Vec<SocketAddr>,
    inbound: Vec<SocketAddr>,
    recent_inbound: VecDeque<(Instant, IpAddr)>,
    last_rotation: Option<Instant>,
    first_tick: Option<Instant>,
    fixed_seeds_added: bool,
    extra: bool,
    salt: u64,
}

impl PeerManager {
    /// A manager with a loaded address book and ban list; manual peers are added to the book.
    pub fn new(
        settings: Settings,
        mut book: AddrBook,
        bans: BanList,
        now_unix: i64,
    ) -> PeerManager {
        let mut settings = settings;
        settings.connect_mode |= !settings.connect_only.is_empty();
        let mut reconnect = HashMap::new();
        for a in settings.connect_only.iter().chain(&settings.addnode) {
            book.add(*a, Source::Manual, now_unix);
            reconnect.insert(*a, Reconnect::new(Persistence::Permanent));
        }
        PeerManager {
            settings,
            book,
            bans,
            reconnect,
            outbound: Vec::new(),
            pending: Vec::new(),
            inbound: Vec::new(),
            recent_inbound: VecDeque::new(),
            last_rotation: None,
            first_tick: None,
            fixed_seeds_added: false,
            extra: false,
            salt: 0,
        }
    }

    fn total(&self) -> usize {
        self.outbound.len() + self.pending.len() + self.inbound.len()
    }

    /// Connections to open now: manual peers first, then the best diverse candidates.
    pub fn tick(&mut self, now: Instant, now_unix: i64) -> Vec<Command> {
        self.add_fixed_seeds_if_needed(now, now_unix);
        let busy: Vec<SocketAddr> = self.outbound.iter().chain(&self.pending).copied().collect();
        let due = |a: &SocketAddr, r: &HashMap<SocketAddr, Reconnect>| {
            r.get(a).is_none_or(|x| x.due(now))
        };
        let mut want: Vec<SocketAddr> = Vec::new();
        let manual: Vec<SocketAddr> = if !self.connect_only() {
            self.settings.addnode.clone()
        } else {
            self.settings.connect_only.clone()
        };
        for a in manual {
            if !busy.contains(&a)
                && due(&a, &self.reconnect)
                && !self.bans.is_banned(&a.ip(), now_unix)
            {
                want.push(a);
            }
        }
        if !self.connect_only() {
            let target = self.settings.target_outbound + usize::from(self.extra);
            let room = target.saturating_sub(busy.len() + want.len());
            let mut taken = busy.clone();
            taken.extend(&want);
            let bans = &self.bans;
            let reconnect = &self.reconnect;
            want.extend(self.book.candidates(&taken, room, self.salt, |a| {
                due(a, reconnect) && !bans.is_banned(&a.ip(), now_unix)
            }));
        }
        let room = self.settings.max_connections.saturating_sub(self.total());
        want.truncate(room);
        self.pending.extend(&want);
        want.into_iter().map(Command::Connect).collect()
    }

    /// Core's last resort: the DNS seeds had a minute and the book has learned nothing.
    fn add_fixed_seeds_if_needed(&mut self, now: Instant, now_unix: i64) {
        let start = *self.first_tick.get_or_insert(now);
        if self.fixed_seeds_added
            || self.connect_only()
            || self.settings.fixed_seeds.is_empty()
            || self.book.learned() > 0
            || now.saturating_duration_since(start) < super::seeds::FIXED_SEED_DELAY
        {
            return;
        }
        self.fixed_seeds_added = true;
        log::info!(
            "adding {} fixed seeds: the address book is still empty {} s after start",
            self.settings.fixed_seeds.len(),
            super::seeds::FIXED_SEED_DELAY.as_secs()
        );
        for a in &self.settings.fixed_seeds {
            self.book.add(*a, Source::Seed, now_unix);
        }
    }

    /// An outbound attempt completed its handshake.
    pub fn outbound_ready(&mut self, addr: SocketAddr, now_unix: i64) {
        self.pending.retain(|a| *a != addr);
        self.outbound.push(addr);
        self.book.record(&addr, Quality::Handshake, now_unix);
        if let Some(r) = self.reconnect.get_mut(&addr) {
            r.succeeded();
        }
    }

    /// An outbound attempt failed or an outbound peer dropped; `unit` is uniform in [0, 1).
    pub fn outbound_lost(&mut self, addr: SocketAddr, now: Instant, now_unix: i64, unit: f64) {
        let was_pending = self.outbound_closed(addr);
        if was_pending {
            self.book.record(&addr, Quality::Failed, now_unix);
        }
        let r = self
            .reconnect
            .entry(addr)
            .or_insert_with(|| Reconnect::new(Persistence::Gossip));
        if r.failed(&self.settings.backoff, now, unit).is_none() {
            if self.book.is_small() {
                // After a long outage these may be all there is: keep trying, slowly.
                r.keep_trying(&self.settings.backoff, now, unit);
            } else {
                // A gossip address that keeps failing is forgotten while others remain.
                self.reconnect.remove(&addr);
                self.book.remove(&addr);
            }
        }
    }

    /// An outbound connection (or attempt) to `addr` is gone, with no retry planned (a ban):
    /// its slot is free. Whether it was still being dialled.
    pub fn outbound_closed(&mut self, addr: SocketAddr) -> bool {
        let was_pending = self.pending.contains(&addr);
        self.pending.retain(|a| *a != addr);
        self.outbound.retain(|a| *a != addr);
        was_pending
    }

    /// An inbound connection arrived: accept (and remember the address) or refuse.
    pub fn inbound_arrived(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        now_unix: i64,
    ) -> Result<(), Refusal> {
        if self.bans.is_banned(&addr.ip(), now_unix) {
            return Err(Refusal::Banned);
        }
        while self
            .recent_inbound
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Duration::from_secs(60))
        {
            self.recent_inbound.pop_front();
        }
        if self.recent_inbound.len() >= INBOUND_PER_MIN {
            return Err(Refusal::RateLimitedGlobal);
        }
        if self
            .recent_inbound
            .iter()
            .filter(|(_, ip)| *ip == addr.ip())
            .count()
            >= INBOUND_PER_IP_PER_MIN
        {
            return Err(Refusal::RateLimitedIp);
        }
        self.recent_inbound.push_back((now, addr.ip()));
        // Inbound may use the slots outbound does not need.
        if self.inbound.len() + self.settings.target_outbound >= self.settings.max_connections {
            return Err(Refusal::Full);
        }
        self.inbound.push(addr);
        Ok(())
    }

    /// An inbound connection takes the slot an evicted peer freed.
    pub fn inbound_taken(&mut self, addr: SocketAddr) {
        self.inbound.push(addr);
    }

    /// An inbound peer left.
    pub fn inbound_gone(&mut self, addr: SocketAddr) {
        self.inbound.retain(|a| *a != addr);
    }

    /// A peer broke the protocol: it is banned (24 h) and scored down; the reactor disconnects it.
    pub fn misbehaved(&mut self, addr: SocketAddr, reason: &str, now_unix: i64) {
        self.bans.ban(
            crate::subnet::Subnet::single(addr.ip()),
            now_unix,
            DEFAULT_BAN_SECS,
            reason,
        );
        self.book.record(&addr, Quality::Misbehaved, now_unix);
        self.outbound.retain(|a| *a != addr);
        self.inbound.retain(|a| *a != addr);
        self.pending.retain(|a| *a != addr);
    }

    /// Orders equally good addresses by `salt` (random per node), so nodes that learnt the same
    /// addresses spread their connections instead of all dialling the same few.
    pub fn salted(mut self, salt: u64) -> PeerManager {
        self.salt = salt;
        self
    }

    /// Core's stale-tip rule: while on, one outbound connection beyond the target is kept, so a
    /// node whose peers all sit on a stale chain reaches further.
    pub fn set_extra(&mut self, on: bool) {
        self.extra = on;
    }

    /// The outbound target, without the stale-tip extra.
    pub fn target_outbound(&self) -> usize {
        self.settings.target_outbound
    }

    /// Whether fewer outbound peers are connected than the target.
    pub fn short_of_target(&self) -> bool {
        self.outbound.len() < self.settings.target_outbound
    }

    /// Outbound peers connected.
    pub fn outbound_count(&self) -> usize {
        self.outbound.len()
    }

    /// With every outbound slot taken, the worst non-manual outbound peer to drop because a
    /// clearly better address is waiting (at most once per `ROTATE_EVERY`); its slot is refilled
    /// by the next `tick`.
    pub fn rotation(&mut self, now: Instant, now_unix: i64) -> Option<SocketAddr> {
        if self.connect_only()
            || self.outbound.len() < self.settings.target_outbound
            || self
                .last_rotation
                .is_some_and(|t| now.saturating_duration_since(t) < ROTATE_EVERY)
        {
            return None;
        }
        let score = |a: &SocketAddr| self.book.get(a).map(|e| e.quality()).unwrap_or(0);
        let worst = *self
            .outbound
            .iter()
            .filter(|a| !self.is_manual(a))
            .min_by_key(|a| (score(a), **a))?;
        let keep: Vec<SocketAddr> = self
            .outbound
            .iter()
            .chain(&self.pending)
            .filter(|a| **a != worst)
            .copied()
            .collect();
        let reconnect = &self.reconnect;
        let bans = &self.bans;
        let best = self.book.candidates(&keep, 1, self.salt, |a| {
            *a != worst
                && reconnect.get(a).is_none_or(|r| r.due(now))
                && !bans.is_banned(&a.ip(), now_unix)
        });
        let better = best
            .first()
            .is_some_and(|b| score(b) >= score(&worst) + ROTATE_MARGIN);
        if better {
            self.last_rotation = Some(now);
            Some(worst)
        } else {
            None
        }
    }

    /// `addnode add`: kept connected from now on; false if already added.
    pub fn add_node(&mut self, addr: SocketAddr, now_unix: i64) -> bool {
        if self.settings.addnode.contains(&addr) {
            return false;
        }
        self.settings.addnode.push(addr);
        self.book.add(addr, Source::Manual, now_unix);
        self.reconnect
            .insert(addr, Reconnect::new(Persistence::Permanent));
        true
    }

    /// `addnode remove`: no longer kept connected; false if it was not added.
    pub fn remove_node(&mut self, addr: &SocketAddr) -> bool {
        let before = self.settings.addnode.len();
        self.settings.addnode.retain(|a| a != addr);
        self.reconnect.remove(addr);
        before != self.settings.addnode.len()
    }

    /// A `--connect` name resolved to `addr`.
    pub fn add_connect(&mut self, addr: SocketAddr, now_unix: i64) {
        if !self.settings.connect_only.contains(&addr) {
            self.settings.connect_only.push(addr);
            self.book.add(addr, Source::Manual, now_unix);
            self.reconnect
                .insert(addr, Reconnect::new(Persistence::Permanent));
        }
    }

    /// `addnode onetry`: an attempt outside the managed set.
    pub fn one_try(&mut self, addr: SocketAddr) {
        if !self.pending.contains(&addr) && !self.outbound.contains(&addr) {
            self.pending.push(addr);
        }
    }

    /// A connection to `addr` was not attempted after all (it is connected already): no longer
    /// pending, and not a failure.
    pub fn cancel(&mut self, addr: &SocketAddr) {
        self.pending.retain(|a| a != addr);
    }

    /// Whether `addr` is a manual peer (`--connect`, `--addnode`, `addnode`).
    pub fn is_manual(&self, addr: &SocketAddr) -> bool {
        self.settings.connect_only.contains(addr) || self.settings.addnode.contains(addr)
    }

    /// `--connect` mode: no other peers, no DNS.
    pub fn connect_only(&self) -> bool {
        self.settings.connect_mode
    }

    /// `addnode` peers.
    pub fn added(&self) -> &[SocketAddr] {
        &self.settings.addnode
    }

    /// Reconnection state of an address: consecutive failures, and whether it may be dialled now.
    pub fn backoff_of(&self, addr: &SocketAddr, now: Instant) -> Option<(u32, bool)> {
        self.reconnect.get(addr).map(|r| (r.failures(), r.due(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: u8, b: u8) -> SocketAddr {
        SocketAddr::new(std::net::Ipv4Addr::new(127, a, b, 1).into(), 18444)
    }

    fn settings() -> Settings {
        Settings {
            target_outbound: 3,
            max_connections: 6,
            connect_only: vec![],
            connect_mode: false,
            addnode: vec![],
            backoff: Policy {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(3600),
                max_retries: 2,
                jitter: 0.2,
            },
            fixed_seeds: vec![],
        }
    }

    #[test]
    fn fixed_seeds_are_the_last_resort_after_a_minute_with_an_empty_book() {
        let t0 = Instant::now();
        let seeds: Vec<SocketAddr> = (1..=5).map(|g| addr(g, 1)).collect();
        let with_seeds = || Settings {
            fixed_seeds: seeds.clone(),
            addnode: vec![addr(9, 9)],
            ..settings()
        };
        let mut pm = PeerManager::new(with_seeds(), AddrBook::default(), BanList::default(), 0);
        // The added node is dialled; the fixed seeds wait for the DNS seeds.
        assert_eq!(pm.tick(t0, 0), vec![Command::Connect(addr(9, 9))]);
        assert!(pm.tick(t0 + Duration::from_secs(59), 59).is_empty());
        let after = pm.tick(t0 + super::super::seeds::FIXED_SEED_DELAY, 60);
        // Three outbound wanted, the added node's attempt is one.
        assert_eq!(after.len(), 2, "the rest from the seeds: {after:?}");
        assert!(after.iter().all(|Command::Connect(a)| seeds.contains(a)));
        assert_eq!(pm.book.get(&seeds[0]).unwrap().source, Source::Seed);

        // A book with anything learned (here from DNS) never needs them.
        let mut book = AddrBook::default();
        book.add(addr(7, 7), Source::Dns, 0);
        let mut pm = PeerManager::new(with_seeds(), book, BanList::default(), 0);
        pm.tick(t0, 0);
        pm.tick(t0 + Duration::from_secs(3600), 3600);
        assert!(pm.book.get(&seeds[0]).is_none());

        // Nor does --connect mode.
        let connect = Settings {
            connect_only: vec![addr(9, 9)],
            ..with_seeds()
        };
        let mut pm = PeerManager::new(connect, AddrBook::default(), BanList::default(), 0);
        pm.tick(t0, 0);
        pm.tick(t0 + Duration::from_secs(3600), 3600);
        assert!(pm.book.get(&seeds[0]).is_none());
    }

    #[test]
    fn refills_outbound_diversely_and_backs_off_failures() {
        let t0 = Instant::now();
        let mut book = AddrBook::default();
        for g in 1..=5 {
            for h in 0..10 {
                book.add(addr(g, h), Source::Gossip, 0);
            }
        }
        let mut pm = PeerManager::new(settings(), book, BanList::default(), 0);
        let first = pm.tick(t0, 0);
        assert_eq!(first.len(), 3);
        let groups: std::collections::HashSet<u8> = first
            .iter()
            .map(|Command::Connect(a)| match a.ip() {
                IpAddr::V4(v) => v.octets()[1],
                _ => 0,
            })
            .collect();
        assert_eq!(groups.len(), 3, "one per /16");
        assert!(
            pm.tick(t0, 0).is_empty(),
            "attempts in flight fill the target"
        );
        let Command::Connect(a) = first[0].clone();
        let Command::Connect(b) = first[1].clone();
        pm.outbound_ready(a, 1);
        pm.outbound_lost(b, t0, 1, 0.5);
        // The failed address is backed off; another in a free group replaces it.
        let next = pm.tick(t0, 1);
        assert_eq!(next.len(), 1);
        assert_ne!(next[0], Command::Connect(b));
        assert_eq!(pm.outbound_count(), 1);
    }

    /// Two outbound peers filling the target, and a spare address with five handshakes.
    fn full_with_a_proven_spare() -> (PeerManager, [SocketAddr; 3]) {
        let peers = [addr(1, 1), addr(2, 1), addr(3, 1)];
        let mut book = AddrBook::default();
        for a in peers {
            book.add(a, Source::Gossip, 0);
        }
        for _ in 0..5 {
            book.record(&peers[2], Quality::Handshake, 1);
        }
        let mut s = settings();
        s.target_outbound = 2;
        let mut pm = PeerManager::new(s, book, BanList::default(), 0);
        pm.outbound_ready(peers[0], 2);
        pm.outbound_ready(peers[1], 2);
        (pm, peers)
    }

    #[test]
    fn the_worst_outbound_peer_makes_room_for_a_clearly_better_address() {
        let t0 = Instant::now();
        // The spare address has a record of handshakes; the peer it would replace stalled.
        let (mut pm, [good, poor, spare]) = full_with_a_proven_spare();
        pm.book.record(&good, Quality::UsefulBlock, 3);
        assert_eq!(pm.rotation(t0, 3), None, "not clearly better yet");
        pm.book.record(&poor, Quality::Stalled, 3);
        pm.book.record(&poor, Quality::Stalled, 3);
        assert_eq!(pm.rotation(t0, 3), Some(poor));
        assert_eq!(
            pm.rotation(t0 + Duration::from_secs(60), 3),
            None,
            "once per interval"
        );
        // After the swap the refill dials the better address.
        pm.outbound_lost(poor, t0, 3, 0.5);
        assert_eq!(pm.tick(t0, 3), vec![Command::Connect(spare)]);
    }

    #[test]
    fn a_slow_peer_is_rotated_out_for_an_equally_proven_address() {
        let t0 = Instant::now();
        let (mut pm, [near, slow, _spare]) = full_with_a_proven_spare();
        for a in [near, slow] {
            pm.book.record(&a, Quality::Handshake, 2);
        }
        assert_eq!(pm.rotation(t0, 3), None, "equal peers without pings");
        pm.book.record_ping(&near, Duration::from_millis(30));
        pm.book.record_ping(&slow, Duration::from_millis(1500));
        assert_eq!(pm.rotation(t0, 3), Some(slow));
    }

    #[test]
    fn connect_mode_dials_only_the_given_peers_and_retries_them_forever() {
        let t0 = Instant::now();
        let mut s = settings();
        s.connect_only = vec![addr(9, 9)];
        let mut book = AddrBook::default();
        book.add(addr(1, 1), Source::Gossip, 0);
        let mut pm = PeerManager::new(s, book, BanList::default(), 0);
        assert_eq!(pm.tick(t0, 0), vec![Command::Connect(addr(9, 9))]);
        let mut t = t0;
        for _ in 0..20 {
            pm.outbound_lost(addr(9, 9), t, 0, 0.5);
            assert!(pm.tick(t, 0).is_empty(), "backing off");
            t += Duration::from_secs(3600 * 2);
            assert_eq!(
                pm.tick(t, 0),
                vec![Command::Connect(addr(9, 9))],
                "never given up"
            );
        }
    }

    #[test]
    fn connect_mode_by_name_dials_nothing_until_the_name_resolves() {
        let t0 = Instant::now();
        let mut s = settings();
        s.connect_mode = true;
        let mut book = AddrBook::default();
        book.add(addr(1, 1), Source::Gossip, 0);
        let mut pm = PeerManager::new(s, book, BanList::default(), 0);
        assert!(pm.connect_only());
        assert!(pm.tick(t0, 0).is_empty(), "no gossip address meanwhile");
        pm.add_connect(addr(9, 9), 0);
        assert_eq!(pm.tick(t0, 0), vec![Command::Connect(addr(9, 9))]);
    }

    #[test]
    fn inbound_limits_bans_and_misbehaviour() {
        let t0 = Instant::now();
        let mut pm = PeerManager::new(settings(), AddrBook::default(), BanList::default(), 0);
        // Cap: max 6 with 3 kept for outbound leaves 3 inbound.
        for i in 0..3 {
            pm.inbound_arrived(addr(1, i), t0, 0).unwrap();
        }
        assert_eq!(pm.inbound_arrived(addr(2, 0), t0, 0), Err(Refusal::Full));
        pm.inbound_gone(addr(1, 0));
        // Per-IP rate: the same IP reconnecting over and over is refused within the minute.
        let flood = addr(3, 3);
        let mut refused = None;
        for _ in 0..INBOUND_PER_IP_PER_MIN + 1 {
            if let Err(r) = pm.inbound_arrived(flood, t0, 0) {
                refused = Some(r);
                break;
            }
            pm.inbound_gone(flood);
        }
        assert_eq!(refused, Some(Refusal::RateLimitedIp));
        // Misbehaviour bans the address for a day.
        pm.misbehaved(addr(1, 1), "bad-checksum", 100);
        assert_eq!(
            pm.inbound_arrived(addr(1, 1), t0 + Duration::from_secs(61), 100),
            Err(Refusal::Banned)
        );
        assert!(pm
            .inbound_arrived(
                addr(1, 1),
                t0 + Duration::from_secs(61),
                100 + DEFAULT_BAN_SECS
            )
            .is_ok());
    }
}
