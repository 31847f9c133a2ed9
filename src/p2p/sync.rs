//! Block sync as a plain state machine: headers first (one peer during initial block download,
//! every peer after), then blocks from several peers at once within the chain's moving window, at
//! most 16 in flight per peer, with stall detection. The chain says what it wants
//! (`ChainSummary`); this decides whom to ask and when. Time is passed in.

use crate::messages::{ChainSummary, PeerId};
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::BlockHash;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Blocks requested from one peer at a time (Core's MAX_BLOCKS_IN_TRANSIT_PER_PEER).
pub const MAX_IN_FLIGHT_PER_PEER: usize = 16;
/// First stall timeout (Core's BLOCK_STALLING_TIMEOUT_DEFAULT); doubles on each stall.
pub const STALL_TIMEOUT_MIN: Duration = Duration::from_secs(2);
/// Largest stall timeout (Core's BLOCK_STALLING_TIMEOUT_MAX).
pub const STALL_TIMEOUT_MAX: Duration = Duration::from_secs(64);
/// A requested block not delivered in this long ends the connection.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// A headers request unanswered this long is asked of another peer.
pub const HEADERS_TIMEOUT: Duration = Duration::from_secs(120);
/// Unrequested blocks tolerated from one peer before it counts as a flood.
pub const MAX_UNREQUESTED_BLOCKS: u32 = 10;

/// What the reactor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message.
    Send(PeerId, NetworkMessage),
    /// Disconnect without a ban (slow, not malicious), for this reason.
    Disconnect(PeerId, &'static str),
    /// Disconnect and ban.
    Misbehaved(PeerId, &'static str),
}

#[derive(Debug, Clone, Default)]
struct PeerSync {
    /// Offers blocks (`NODE_NETWORK` or `NODE_NETWORK_LIMITED`); others are told of new blocks
    /// but never asked for anything.
    serves: bool,
    best_height: u32,
    /// The highest block it has shown us it has (headers that connected, blocks it delivered),
    /// or that we announced to it: nothing at or below is announced to it again (Core's
    /// `PeerHasHeader`), or syncing peers would hear of every block from everyone.
    has: u32,
    in_flight: usize,
    send_headers: bool,
    unrequested: u32,
    headers_asked: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    peer: PeerId,
    height: u32,
    at: Instant,
}

/// The sync state.
#[derive(Debug)]
pub struct Sync {
    chain: ChainSummary,
    peers: BTreeMap<PeerId, PeerSync>,
    in_flight: HashMap<BlockHash, Request>,
    received: HashSet<BlockHash>,
    headers_peer: Option<PeerId>,
    stall_timeout: Duration,
    /// Every wanted block before this index is in flight or received: `schedule` starts here
    /// (reset whenever a request is dropped or the wanted list changes).
    cursor: usize,
}

impl Default for Sync {
    fn default() -> Sync {
        Sync {
            chain: ChainSummary::default(),
            peers: BTreeMap::new(),
            in_flight: HashMap::new(),
            received: HashSet::new(),
            headers_peer: None,
            stall_timeout: STALL_TIMEOUT_MIN,
            cursor: 0,
        }
    }
}

impl Sync {
    /// What the chain last said.
    pub fn chain(&self) -> &ChainSummary {
        &self.chain
    }

    /// Blocks requested and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Blocks in flight from one peer, and the best height it is known to have.
    pub fn peer_state(&self, peer: PeerId) -> Option<(usize, u32)> {
        self.peers.get(&peer).map(|p| (p.in_flight, p.best_height))
    }

    /// The current stall timeout.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    fn getheaders(&mut self, peer: PeerId, locator: Vec<BlockHash>, now: Instant) -> Action {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.headers_asked = Some(now);
        }
        Action::Send(
            peer,
            NetworkMessage::GetHeaders(GetHeadersMessage::new(locator, BlockHash::all_zeros())),
        )
    }

    /// A peer completed its handshake.
    pub fn peer_ready(
        &mut self,
        peer: PeerId,
        start_height: i32,
        serves: bool,
        now: Instant,
    ) -> Vec<Action> {
        self.peers.insert(
            peer,
            PeerSync {
                serves,
                best_height: if serves {
                    start_height.max(0) as u32
                } else {
                    0
                },
                ..PeerSync::default()
            },
        );
        if !serves {
            return Vec::new();
        }
        let mut out = Vec::new();
        // During initial download one peer is enough for headers; after it, everyone is asked so
        // that a peer on a better chain is noticed.
        if !self.chain.ibd || self.headers_peer.is_none() {
            if self.chain.ibd {
                self.headers_peer = Some(peer);
            }
            out.push(self.getheaders(peer, self.chain.locator.clone(), now));
        }
        out.extend(self.schedule(now));
        out
    }

    /// The peer has our chain up to `height` (its `getheaders` locator said so): it is not told
    /// of blocks it has, and may be asked for them.
    pub fn peer_has(&mut self, peer: PeerId, height: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.has = p.has.max(height);
            if p.serves {
                p.best_height = p.best_height.max(height);
            }
        }
    }

    /// The peer asked to be told of new blocks by `headers` (BIP130).
    pub fn set_send_headers(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.send_headers = true;
        }
    }

    /// A peer disconnected: its requests go to others.
    pub fn peer_gone(&mut self, peer: PeerId, now: Instant) -> Vec<Action> {
        self.peers.remove(&peer);
        self.cursor = 0;
        self.in_flight.retain(|_, r| r.peer != peer);
        let mut out = Vec::new();
        if self.headers_peer == Some(peer) {
            self.headers_peer = None;
            out.extend(self.ask_headers_elsewhere(now));
        }
        out.extend(self.schedule(now));
        out
    }

    /// The chain changed: announce a new tip, refill downloads.
    pub fn chain_changed(&mut self, summary: ChainSummary, now: Instant) -> Vec<Action> {
        let tip_changed = summary.tip != self.chain.tip;
        let wanted: HashSet<BlockHash> = summary.wanted.iter().map(|(_, h)| *h).collect();
        self.received.retain(|h| wanted.contains(h));
        self.chain = summary;
        self.cursor = 0;
        let mut out = Vec::new();
        if tip_changed && !self.chain.ibd {
            let headers = self.chain.connected.clone();
            let inv = NetworkMessage::Inv(vec![Inventory::Block(self.chain.tip.0)]);
            let height = self.chain.tip.1;
            for (id, p) in self.peers.iter_mut() {
                if p.has >= height {
                    continue;
                }
                p.has = height;
                let msg = if p.send_headers && !headers.is_empty() {
                    NetworkMessage::Headers(headers.clone())
                } else {
                    inv.clone()
                };
                out.push(Action::Send(*id, msg));
            }
        }
        out.extend(self.schedule(now));
        out
    }

    /// The chain processed a peer's `headers`.
    pub fn headers_done(
        &mut self,
        peer: PeerId,
        last: Option<(BlockHash, u32)>,
        more: bool,
        unconnected: bool,
        now: Instant,
    ) -> Vec<Action> {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.serves) else {
            return Vec::new();
        };
        p.headers_asked = None;
        if let Some((_, h)) = last {
            p.best_height = p.best_height.max(h);
            p.has = p.has.max(h);
        }
        let mut out = Vec::new();
        match last {
            Some((hash, _)) if more => out.push(self.getheaders(peer, vec![hash], now)),
            _ if unconnected => {
                out.push(self.getheaders(peer, self.chain.locator.clone(), now));
            }
            _ => {
                if self.headers_peer == Some(peer) {
                    self.headers_peer = None;
                    out.extend(self.ask_headers_elsewhere(now));
                }
            }
        }
        out.extend(self.schedule(now));
        out
    }

    /// In initial download, a peer that claims more than our best header is asked next.
    fn ask_headers_elsewhere(&mut self, now: Instant) -> Vec<Action> {
        if !self.chain.ibd || self.headers_peer.is_some() {
            return Vec::new();
        }
        let best = self.chain.best_header.1;
        let next = self
            .peers
            .iter()
            .find(|(_, p)| p.serves && p.best_height > best && p.headers_asked.is_none())
            .map(|(id, _)| *id);
        match next {
            Some(id) => {
                self.headers_peer = Some(id);
                vec![self.getheaders(id, self.chain.locator.clone(), now)]
            }
            None => Vec::new(),
        }
    }

    /// The peer announced blocks by `inv`: unknown ones are fetched by their headers.
    pub fn on_inv(&mut self, peer: PeerId, blocks: &[BlockHash], now: Instant) -> Vec<Action> {
        let known = |h: &BlockHash| {
            *h == self.chain.tip.0
                || *h == self.chain.best_header.0
                || self.in_flight.contains_key(h)
                || self.received.contains(h)
                || self.chain.wanted.iter().any(|(_, w)| w == h)
        };
        if blocks.iter().all(known) || !self.peers.get(&peer).is_some_and(|p| p.serves) {
            return Vec::new();
        }
        vec![self.getheaders(peer, self.chain.locator.clone(), now)]
    }

    /// A block arrived: whether to pass it to the chain, and what else to do.
    pub fn block_arrived(
        &mut self,
        peer: PeerId,
        hash: BlockHash,
        now: Instant,
    ) -> (bool, Vec<Action>) {
        match self.in_flight.get(&hash) {
            Some(r) if r.peer == peer => {
                let height = self.in_flight.remove(&hash).map(|r| r.height);
                // A paused chain drops what it is handed: it stays wanted.
                if !self.chain.paused {
                    self.received.insert(hash);
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.in_flight -= 1;
                    p.has = p.has.max(height.unwrap_or(0));
                }
                // Deliveries ease the stall timeout back down (Core decays it by 0.85).
                self.stall_timeout = self.stall_timeout.mul_f64(0.85).max(STALL_TIMEOUT_MIN);
                (true, self.schedule(now))
            }
            _ => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return (false, Vec::new());
                };
                p.unrequested += 1;
                if p.unrequested > MAX_UNREQUESTED_BLOCKS {
                    (false, vec![Action::Misbehaved(peer, "unrequested-blocks")])
                } else {
                    (false, Vec::new())
                }
            }
        }
    }

    /// The peer does not have these blocks: ask others, and expect less of it.
    pub fn not_found(&mut self, peer: PeerId, hashes: &[BlockHash], now: Instant) -> Vec<Action> {
        self.cursor = 0;
        for h in hashes {
            if let Some(r) = self.in_flight.get(h).copied() {
                if r.peer == peer {
                    self.in_flight.remove(h);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.in_flight -= 1;
                        p.best_height = p.best_height.min(r.height.saturating_sub(1));
                    }
                }
            }
        }
        self.schedule(now)
    }

    /// Time passed: download and headers timeouts, window stalls, refills.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let mut late: Vec<PeerId> = self
            .in_flight
            .values()
            .filter(|r| now.saturating_duration_since(r.at) > BLOCK_TIMEOUT)
            .map(|r| r.peer)
            .collect();
        late.sort_unstable();
        late.dedup();
        out.extend(
            late.into_iter()
                .map(|p| Action::Disconnect(p, "block-download-timeout")),
        );
        if let Some(staller) = self.staller(now) {
            self.stall_timeout = (self.stall_timeout * 2).min(STALL_TIMEOUT_MAX);
            out.push(Action::Disconnect(staller, "stall"));
        }
        let slow = self.headers_peer.filter(|id| {
            self.peers
                .get(id)
                .and_then(|p| p.headers_asked)
                .is_some_and(|t| now.saturating_duration_since(t) > HEADERS_TIMEOUT)
        });
        if let Some(id) = slow {
            if let Some(p) = self.peers.get_mut(&id) {
                p.headers_asked = None;
            }
            self.headers_peer = None;
            out.extend(self.ask_headers_elsewhere(now));
        }
        out.extend(self.schedule(now));
        out
    }

    /// Core's window stall: nothing left to request, another peer could take more, and the block
    /// the window waits on has been with one peer longer than the stall timeout.
    fn staller(&self, now: Instant) -> Option<PeerId> {
        let (h0, first) = self
            .chain
            .wanted
            .iter()
            .find(|(_, h)| !self.received.contains(h))?;
        let r = self.in_flight.get(first)?;
        let exhausted = self
            .chain
            .wanted
            .iter()
            .all(|(_, h)| self.received.contains(h) || self.in_flight.contains_key(h));
        let other_idle = self.peers.iter().any(|(id, p)| {
            *id != r.peer
                && p.serves
                && p.in_flight < MAX_IN_FLIGHT_PER_PEER
                && p.best_height >= *h0
        });
        (exhausted && other_idle && now.saturating_duration_since(r.at) > self.stall_timeout)
            .then_some(r.peer)
    }

    /// Requests wanted blocks that nobody is fetching from the least busy peer that has them.
    /// Runs after every delivery, so it stops as soon as no peer can take more.
    fn schedule(&mut self, now: Instant) -> Vec<Action> {
        // Peers that can take more: (in flight, id, best height).
        let mut free: Vec<(usize, PeerId, u32)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.serves && p.in_flight < MAX_IN_FLIGHT_PER_PEER)
            .map(|(id, p)| (p.in_flight, *id, p.best_height))
            .collect();
        let mut asks: BTreeMap<PeerId, Vec<Inventory>> = BTreeMap::new();
        let mut covered = true;
        // Wanted blocks are lowest first: past the highest a free peer has, nobody can help.
        let mut reach = free.iter().map(|f| f.2).max().unwrap_or(0);
        for (i, (height, hash)) in self.chain.wanted.iter().enumerate().skip(self.cursor) {
            if free.is_empty() || *height > reach {
                break;
            }
            if self.in_flight.contains_key(hash) || self.received.contains(hash) {
                if covered {
                    self.cursor = i + 1;
                }
                continue;
            }
            let Some(slot) = free
                .iter_mut()
                .filter(|(_, _, best)| *best >= *height)
                .min_by_key(|(load, id, _)| (*load, *id))
            else {
                covered = false;
                continue;
            };
            if covered {
                self.cursor = i + 1;
            }
            slot.0 += 1;
            let id = slot.1;
            if let Some(p) = self.peers.get_mut(&id) {
                p.in_flight += 1;
            }
            free.retain(|(load, _, _)| *load < MAX_IN_FLIGHT_PER_PEER);
            reach = free.iter().map(|f| f.2).max().unwrap_or(0);
            self.in_flight.insert(
                *hash,
                Request {
                    peer: id,
                    height: *height,
                    at: now,
                },
            );
            asks.entry(id)
                .or_default()
                .push(Inventory::WitnessBlock(*hash));
        }
        asks.into_iter()
            .map(|(id, items)| Action::Send(id, NetworkMessage::GetData(items)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> BlockHash {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        b[31] = 1;
        BlockHash::from_byte_array(b)
    }

    /// Tip at `tip`, headers up to `best`, every block between wanted.
    fn summary(tip: u32, best: u32, ibd: bool) -> ChainSummary {
        ChainSummary {
            tip: (hash(tip), tip),
            best_header: (hash(best), best),
            locator: vec![hash(tip)],
            wanted: (tip + 1..=best).map(|h| (h, hash(h))).collect(),
            connected: vec![],
            ibd,
            pruned: false,
            paused: false,
        }
    }

    /// Blocks that arrive while the chain cannot store them are dropped there; they used to
    /// stay marked as received, so once space returned nobody asked for them again and sync
    /// stopped below the peer's tip (found by the stress harness's disk-full run).
    #[test]
    fn blocks_dropped_while_storage_is_paused_are_asked_for_again() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(0, 10, true), t);
        let asked = s.peer_ready(1, 10, true, t);
        assert_eq!(getdata(&asked)[&1].len(), 10);
        // Two arrive before the chain says it is paused, two after; all four are dropped.
        s.block_arrived(1, hash(1), t);
        s.block_arrived(1, hash(2), t);
        let paused = ChainSummary {
            wanted: vec![],
            paused: true,
            ..summary(0, 10, true)
        };
        assert!(
            getdata(&s.chain_changed(paused, t)).is_empty(),
            "nothing asked while paused"
        );
        s.block_arrived(1, hash(3), t);
        s.block_arrived(1, hash(4), t);
        let resumed = s.chain_changed(summary(0, 10, true), t);
        assert_eq!(getdata(&resumed)[&1], (1..=4).map(hash).collect::<Vec<_>>());
    }

    fn getdata(actions: &[Action]) -> BTreeMap<PeerId, Vec<BlockHash>> {
        let mut m: BTreeMap<PeerId, Vec<BlockHash>> = BTreeMap::new();
        for a in actions {
            if let Action::Send(p, NetworkMessage::GetData(items)) = a {
                m.entry(*p)
                    .or_default()
                    .extend(items.iter().map(|i| match i {
                        Inventory::WitnessBlock(h) => *h,
                        _ => panic!("blocks are fetched with witness"),
                    }));
            }
        }
        m
    }

    #[test]
    fn downloads_spread_over_peers_with_at_most_16_each() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(0, 100, true), t);
        let first = s.peer_ready(1, 100, true, t);
        assert!(matches!(
            &first[0],
            Action::Send(1, NetworkMessage::GetHeaders(_))
        ));
        assert_eq!(getdata(&first)[&1].len(), 16);
        // In initial download only the first peer is asked for headers.
        let second = s.peer_ready(2, 100, true, t);
        assert!(!second
            .iter()
            .any(|a| matches!(a, Action::Send(_, NetworkMessage::GetHeaders(_)))));
        let third = s.peer_ready(3, 50, true, t);
        assert_eq!(
            getdata(&second)[&2],
            (17..=32).map(hash).collect::<Vec<_>>()
        );
        assert_eq!(getdata(&third)[&3].len(), 16);
        assert_eq!(s.in_flight(), 48);
        // A delivery frees a slot, refilled with the next block nobody has asked for.
        let (forward, more) = s.block_arrived(1, hash(1), t);
        assert!(forward);
        assert_eq!(getdata(&more)[&1], vec![hash(49)]);
        // A peer that only has 50 is not asked for more.
        for h in 33..=48 {
            s.block_arrived(3, hash(h), t);
        }
        assert_eq!(
            s.peer_state(3),
            Some((1, 50)),
            "49 went to peer 1; only 50 remained for it"
        );
    }

    #[test]
    fn a_peer_holding_up_the_window_is_disconnected_and_its_blocks_rerequested() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(0, 20, false), t);
        s.peer_ready(1, 20, true, t);
        s.peer_ready(2, 20, true, t);
        // Peer 2 delivers all of its blocks; peer 1 sits on block 1.
        for h in 17..=20 {
            s.block_arrived(2, hash(h), t);
        }
        assert!(s.tick(t + STALL_TIMEOUT_MIN).is_empty(), "not yet");
        let a = s.tick(t + STALL_TIMEOUT_MIN + Duration::from_millis(1));
        assert_eq!(a, vec![Action::Disconnect(1, "stall")]);
        assert_eq!(s.stall_timeout(), STALL_TIMEOUT_MIN * 2);
        let again = s.peer_gone(1, t + Duration::from_secs(3));
        assert_eq!(getdata(&again)[&2], (1..=16).map(hash).collect::<Vec<_>>());
    }

    /// A peer offering no blocks (an indexer, a light client) is told of new tips but never
    /// asked for headers or blocks, whatever it announces.
    #[test]
    fn peers_without_blocks_are_told_but_never_asked() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(10, 20, false), t);
        assert_eq!(s.peer_ready(1, 30, false, t), vec![]);
        assert_eq!(s.on_inv(1, &[hash(99)], t), vec![]);
        assert_eq!(
            s.headers_done(1, Some((hash(40), 40)), true, true, t),
            vec![]
        );
        assert!(getdata(&s.tick(t + Duration::from_secs(60))).is_empty());
        let mut next = summary(11, 20, false);
        next.wanted.clear();
        assert_eq!(
            s.chain_changed(next, t),
            vec![Action::Send(
                1,
                NetworkMessage::Inv(vec![Inventory::Block(hash(11))])
            )]
        );
        // A peer with blocks is asked at once.
        let a = s.peer_ready(2, 30, true, t);
        assert!(
            matches!(&a[0], Action::Send(2, NetworkMessage::GetHeaders(_))),
            "{a:?}"
        );
    }

    #[test]
    fn unrequested_blocks_are_not_passed_on_and_a_flood_is_misbehaviour() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.peer_ready(1, 0, true, t);
        for i in 0..MAX_UNREQUESTED_BLOCKS {
            assert_eq!(s.block_arrived(1, hash(i), t), (false, vec![]));
        }
        assert_eq!(
            s.block_arrived(1, hash(99), t).1,
            vec![Action::Misbehaved(1, "unrequested-blocks")]
        );
    }

    #[test]
    fn headers_continue_while_full_and_new_tips_are_announced_as_peers_asked() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(10, 10, false), t);
        s.peer_ready(1, 10, true, t);
        s.peer_ready(2, 10, true, t);
        s.set_send_headers(2);
        let a = s.headers_done(1, Some((hash(2010), 2010)), true, false, t);
        assert!(
            matches!(&a[0], Action::Send(1, NetworkMessage::GetHeaders(g)) if g.locator_hashes == vec![hash(2010)])
        );
        assert_eq!(s.peer_state(1), Some((0, 2010)));
        let mut next = summary(11, 11, false);
        let header = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        next.connected = vec![header];
        let a = s.chain_changed(next.clone(), t);
        // Peer 1 showed us headers up to 2010: it is not told of block 11.
        assert_eq!(
            a,
            vec![Action::Send(2, NetworkMessage::Headers(vec![header]))]
        );
        // Nor is peer 2 told twice; a peer that has shown nothing hears by `inv`.
        s.peer_ready(3, 0, true, t);
        let mut other = next;
        other.tip = (hash(12), 11);
        let a = s.chain_changed(other, t);
        assert_eq!(
            a.iter()
                .filter(|x| matches!(
                    x,
                    Action::Send(_, NetworkMessage::Inv(_) | NetworkMessage::Headers(_))
                ))
                .collect::<Vec<_>>(),
            vec![&Action::Send(
                3,
                NetworkMessage::Inv(vec![Inventory::Block(hash(12))])
            )]
        );
        // An inv of something unknown asks for headers; of the tip, nothing.
        assert!(s.on_inv(1, &[hash(12)], t).is_empty());
        assert_eq!(s.on_inv(1, &[hash(13)], t).len(), 1);
    }

    #[test]
    fn notfound_moves_the_request_and_lowers_the_peers_height() {
        let t = Instant::now();
        let mut s = Sync::default();
        s.chain_changed(summary(0, 4, true), t);
        s.peer_ready(1, 4, true, t);
        let a = s.not_found(1, &[hash(3)], t);
        assert_eq!(s.peer_state(1), Some((3, 2)));
        assert!(getdata(&a).is_empty(), "nobody else has block 3");
        let a = s.peer_ready(2, 4, true, t);
        assert_eq!(getdata(&a)[&2], vec![hash(3)], "4 is still with peer 1");
    }
}
