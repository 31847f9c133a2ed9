//! Transaction relay as a plain state machine: what each peer is told (`inv` by wtxid or txid,
//! BIP339), when (Poisson-delayed trickles from the protocol's seeded RNG), what each peer may
//! be sent (BIP133 `feefilter`), which announcements are fetched from whom (one request per
//! transaction, the next announcer after a timeout or `notfound`), and what is never asked for
//! again (recent rejects). The mempool itself lives on the chain thread; this holds the shared
//! transactions of what it last reported, to announce and serve them.

use super::rng::Rng;
use crate::messages::{MempoolChange, MempoolDelta, PeerId, RelayTx};
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Transaction, Txid, Wtxid};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Mean delay between trickles to an inbound peer (Core's INBOUND_INVENTORY_BROADCAST_INTERVAL).
pub const INBOUND_TRICKLE: Duration = Duration::from_secs(5);
/// The same for outbound peers (OUTBOUND_INVENTORY_BROADCAST_INTERVAL).
pub const OUTBOUND_TRICKLE: Duration = Duration::from_secs(2);
/// Announcements per trickle before the queue's share (Core's INVENTORY_BROADCAST_TARGET).
pub const BROADCAST_TARGET: usize = 70;
/// Announcements per trickle at most (INVENTORY_BROADCAST_MAX).
pub const BROADCAST_MAX: usize = 1000;
/// Announcements waiting for one peer; beyond it the lowest fee rates are dropped.
pub const MAX_QUEUE: usize = 5000;
/// Announcements from one peer still to be fetched (Core's MAX_PEER_TX_ANNOUNCEMENTS).
pub const MAX_ANNOUNCEMENTS: usize = 5000;
/// Transactions asked of one peer at once (MAX_PEER_TX_REQUEST_IN_FLIGHT).
pub const MAX_IN_FLIGHT: usize = 100;
/// How long a peer has to deliver a requested transaction (GETDATA_TX_INTERVAL).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Hashes remembered per peer as known to it, announced to it, or refused recently.
pub const MAX_KNOWN: usize = 5000;
/// Refused transactions remembered (Core's recent-rejects filter holds 120,000).
pub const MAX_REJECTED: usize = 50_000;
/// Mean time between `feefilter` updates (AVG_FEEFILTER_BROADCAST_INTERVAL).
pub const FEEFILTER_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How soon a large change of the floor is sent (MAX_FEEFILTER_CHANGE_DELAY).
pub const FEEFILTER_CHANGE: Duration = Duration::from_secs(5 * 60);
/// The filter sent during initial block download: nothing is wanted (Core sends MAX_MONEY).
pub const IBD_FEEFILTER: u64 = 21_000_000 * 100_000_000;
/// Transactions handed to the chain and not yet judged, at most.
const MAX_VALIDATING: usize = 10_000;

/// A hash's first 8 bytes: enough to tell transactions apart in bounded sets.
fn short(bytes: &[u8; 32]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn txid_key(t: &Txid) -> u64 {
    short(t.as_byte_array())
}

fn wtxid_key(w: &Wtxid) -> u64 {
    short(w.as_byte_array())
}

/// The transaction hash an inventory item names, keyed.
fn item_key(i: &Inventory) -> Option<u64> {
    match i {
        Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => Some(txid_key(t)),
        Inventory::WTx(w) => Some(wtxid_key(w)),
        _ => None,
    }
}

/// A set that forgets its oldest member beyond `cap`.
#[derive(Debug)]
struct Bounded {
    cap: usize,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Bounded {
    fn new(cap: usize) -> Bounded {
        Bounded {
            cap,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, k: u64) {
        if self.set.insert(k) {
            self.order.push_back(k);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, k: u64) -> bool {
        self.set.contains(&k)
    }

    fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

/// What relay needs to know of a peer, and what it holds for it.
#[derive(Debug)]
struct PeerRelay {
    inbound: bool,
    /// BIP339: announce and fetch by wtxid.
    wtxid: bool,
    /// Its `version` relay flag: false asks for no announcements.
    relays: bool,
    /// Its `feefilter`, sat/kvB.
    fee_filter: u64,
    /// Hashes it announced or was told of.
    known: Bounded,
    /// Hashes announced to it (only those are served, as Core does against mempool probing).
    announced: Bounded,
    /// Txids to announce at the next trickle.
    queue: Vec<Txid>,
    next_trickle: Instant,
    /// The filter last sent, and when the next may go.
    filter_sent: Option<u64>,
    next_filter: Instant,
    /// Its announcements not yet fetched, and requests out to it.
    announcements: usize,
    in_flight: usize,
}

/// A transaction some peer announced that we want.
#[derive(Debug)]
struct Wanted {
    /// What to ask for (by wtxid from wtxid peers, else by txid with witness).
    item: Inventory,
    /// Who announced it, in order.
    announcers: VecDeque<PeerId>,
    /// Who was asked, and until when.
    requested: Option<(PeerId, Instant)>,
}

/// What relay asks the protocol to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message to a peer.
    Send(PeerId, NetworkMessage),
    /// Hand a relayed transaction to the mempool.
    Validate(PeerId, Box<Transaction>),
}

/// The relay state.
#[derive(Debug)]
pub struct Relay {
    /// What the mempool holds, as it last reported.
    pool: HashMap<Txid, RelayTx>,
    by_wtxid: HashMap<Wtxid, Txid>,
    peers: BTreeMap<PeerId, PeerRelay>,
    wanted: HashMap<u64, Wanted>,
    /// Wanted hashes waiting for a peer to ask, oldest first.
    to_request: VecDeque<u64>,
    /// Requests in the order they time out.
    deadlines: VecDeque<(Instant, u64)>,
    rejected: Bounded,
    /// Handed to the chain and not yet judged, with when.
    validating: HashMap<u64, Instant>,
    floor: u64,
    ibd: bool,
}

impl Default for Relay {
    fn default() -> Relay {
        Relay {
            pool: HashMap::new(),
            by_wtxid: HashMap::new(),
            peers: BTreeMap::new(),
            wanted: HashMap::new(),
            to_request: VecDeque::new(),
            deadlines: VecDeque::new(),
            rejected: Bounded::new(MAX_REJECTED),
            validating: HashMap::new(),
            floor: crate::mempool::pool::MIN_RELAY_FEE,
            ibd: true,
        }
    }
}

/// An exponentially distributed delay with this mean (a Poisson process's gaps).
fn poisson(rng: &mut Rng, mean: Duration) -> Duration {
    let u = rng.unit();
    mean.mul_f64(-(1.0 - u).ln()).min(mean * 10)
}

impl Relay {
    /// Transactions held for relay.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Memory held beyond the transactions it shares with the pool, estimated per item: its
    /// index of the pool, each peer's known, announced and queued hashes, wanted transactions,
    /// recent rejects.
    pub fn usage(&self) -> usize {
        // A transaction in both pool maps; a key in a set and its order queue; a wanted entry.
        const POOL_ITEM: usize = 300;
        const SET_ITEM: usize = 40;
        const WANTED_ITEM: usize = 120;
        let peers: usize = self
            .peers
            .values()
            .map(|p| {
                (p.known.order.len() + p.announced.order.len()) * SET_ITEM + p.queue.len() * 32
            })
            .sum();
        self.pool.len() * POOL_ITEM
            + peers
            + self.wanted.len() * WANTED_ITEM
            + (self.rejected.order.len() + self.validating.len()) * SET_ITEM
    }

    /// Announcements waiting for one peer (for tests and views).
    pub fn queued(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.queue.len())
    }

    /// A peer finished its handshake; `relays` is its version's relay flag.
    pub fn peer_ready(
        &mut self,
        id: PeerId,
        inbound: bool,
        wtxid: bool,
        relays: bool,
        now: Instant,
        rng: &mut Rng,
    ) {
        let mean = if inbound {
            INBOUND_TRICKLE
        } else {
            OUTBOUND_TRICKLE
        };
        self.peers.insert(
            id,
            PeerRelay {
                inbound,
                wtxid,
                relays,
                fee_filter: 0,
                known: Bounded::new(MAX_KNOWN),
                announced: Bounded::new(MAX_KNOWN),
                queue: Vec::new(),
                next_trickle: now + poisson(rng, mean),
                filter_sent: None,
                next_filter: now,
                announcements: 0,
                in_flight: 0,
            },
        );
    }

    /// A peer left: what it was asked for goes to the next announcer.
    pub fn peer_gone(&mut self, id: PeerId) {
        if self.peers.remove(&id).is_none() {
            return;
        }
        for (k, w) in self.wanted.iter_mut() {
            w.announcers.retain(|a| *a != id);
            if w.requested.is_some_and(|(p, _)| p == id) {
                w.requested = None;
                self.to_request.push_back(*k);
            }
        }
        self.wanted
            .retain(|_, w| w.requested.is_some() || !w.announcers.is_empty());
    }

    /// The peer's `feefilter`, sat/kvB.
    pub fn on_feefilter(&mut self, id: PeerId, rate: i64) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.fee_filter = u64::try_from(rate).unwrap_or(0);
        }
    }

    /// Transactions announced by `inv`; those new to us are asked for (or queued to be).
    pub fn on_inv(&mut self, id: PeerId, items: &[Inventory], now: Instant) -> Vec<Action> {
        let Some(p) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        if self.ibd {
            // Core ignores transaction announcements until the chain is current.
            return Vec::new();
        }
        for item in items {
            // A wtxid-relay peer announces by wtxid only, the others by txid (BIP339).
            let key = match (item, p.wtxid) {
                (Inventory::WTx(w), true) => wtxid_key(w),
                (Inventory::Transaction(t), false) => txid_key(t),
                _ => continue,
            };
            p.known.insert(key);
            let have = match item {
                Inventory::WTx(w) => self.by_wtxid.contains_key(w),
                Inventory::Transaction(t) => self.pool.contains_key(t),
                _ => true,
            };
            if have || self.rejected.contains(key) || self.validating.contains_key(&key) {
                continue;
            }
            let fetch = match item {
                Inventory::Transaction(t) => Inventory::WitnessTransaction(*t),
                other => *other,
            };
            match self.wanted.get_mut(&key) {
                Some(w) if !w.announcers.contains(&id) && p.announcements < MAX_ANNOUNCEMENTS => {
                    w.announcers.push_back(id);
                    p.announcements += 1;
                }
                Some(_) => {}
                None if p.announcements < MAX_ANNOUNCEMENTS => {
                    p.announcements += 1;
                    self.wanted.insert(
                        key,
                        Wanted {
                            item: fetch,
                            announcers: VecDeque::from([id]),
                            requested: None,
                        },
                    );
                    self.to_request.push_back(key);
                }
                None => {}
            }
        }
        self.request(now)
    }

    /// Asks for wanted transactions nobody is delivering, of announcers with room.
    fn request(&mut self, now: Instant) -> Vec<Action> {
        let mut asks: BTreeMap<PeerId, Vec<Inventory>> = BTreeMap::new();
        let mut later = VecDeque::new();
        while let Some(key) = self.to_request.pop_front() {
            let Some(w) = self.wanted.get_mut(&key) else {
                continue;
            };
            if w.requested.is_some() {
                continue;
            }
            // The first announcer still connected with room; gone ones are dropped.
            let peers = &mut self.peers;
            w.announcers.retain(|a| peers.contains_key(a));
            let pick = w
                .announcers
                .iter()
                .position(|a| peers.get(a).is_some_and(|p| p.in_flight < MAX_IN_FLIGHT));
            match pick {
                Some(i) => {
                    let who = w.announcers.remove(i).expect("position is in range");
                    let p = peers.get_mut(&who).expect("retained above");
                    p.in_flight += 1;
                    p.announcements = p.announcements.saturating_sub(1);
                    let until = now + REQUEST_TIMEOUT;
                    w.requested = Some((who, until));
                    self.deadlines.push_back((until, key));
                    asks.entry(who).or_default().push(w.item);
                }
                None if w.announcers.is_empty() => {
                    self.wanted.remove(&key);
                }
                None => later.push_back(key),
            }
        }
        self.to_request = later;
        asks.into_iter()
            .map(|(id, items)| Action::Send(id, NetworkMessage::GetData(items)))
            .collect()
    }

    /// The request for `key` to `id` is over (delivered, not found, timed out).
    fn answered(&mut self, id: PeerId, key: u64) -> bool {
        let Some(w) = self.wanted.get_mut(&key) else {
            return false;
        };
        if w.requested.map(|(p, _)| p) != Some(id) {
            return false;
        }
        w.requested = None;
        if let Some(p) = self.peers.get_mut(&id) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        true
    }

    /// A `tx` arrived: unless held, refused or being judged, it goes to the mempool.
    pub fn on_tx(&mut self, id: PeerId, tx: Transaction, now: Instant) -> Vec<Action> {
        let (txid, wtxid) = (tx.compute_txid(), tx.compute_wtxid());
        let keys = [txid_key(&txid), wtxid_key(&wtxid)];
        for k in keys {
            self.answered(id, k);
            self.wanted.remove(&k);
        }
        if let Some(p) = self.peers.get_mut(&id) {
            keys.iter().for_each(|k| p.known.insert(*k));
        }
        let seen = self.pool.contains_key(&txid)
            || keys
                .iter()
                .any(|k| self.rejected.contains(*k) || self.validating.contains_key(k));
        if seen || self.validating.len() >= MAX_VALIDATING {
            return Vec::new();
        }
        keys.iter().for_each(|k| {
            self.validating.insert(*k, now);
        });
        vec![Action::Validate(id, Box::new(tx))]
    }

    /// A `notfound`: its transactions are asked of the next announcer.
    pub fn on_notfound(&mut self, id: PeerId, items: &[Inventory], now: Instant) -> Vec<Action> {
        for key in items.iter().filter_map(item_key) {
            if self.answered(id, key) {
                self.to_request.push_back(key);
            }
        }
        self.request(now)
    }

    /// A `getdata`'s transaction items: the ones announced to the peer and still held are
    /// sent; the rest come back for `notfound`.
    pub fn on_getdata(
        &mut self,
        id: PeerId,
        items: Vec<Inventory>,
    ) -> (Vec<Action>, Vec<Inventory>) {
        let mut sent = Vec::new();
        let mut missing = Vec::new();
        let Some(p) = self.peers.get(&id) else {
            return (sent, items);
        };
        for item in items {
            let (txid, key) = match item {
                Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => {
                    (Some(t), txid_key(&t))
                }
                Inventory::WTx(w) => (self.by_wtxid.get(&w).copied(), wtxid_key(&w)),
                _ => (None, 0),
            };
            let held = txid
                .and_then(|t| self.pool.get(&t))
                .filter(|_| p.announced.contains(key));
            match held {
                Some(r) => {
                    let mut tx = (*r.tx).clone();
                    if matches!(item, Inventory::Transaction(_)) {
                        // MSG_TX asks for the transaction without witnesses.
                        tx.input.iter_mut().for_each(|i| i.witness.clear());
                    }
                    sent.push(Action::Send(id, NetworkMessage::Tx(tx)));
                }
                None => missing.push(item),
            }
        }
        (sent, missing)
    }

    /// BIP35 `mempool`: everything held that passes the peer's filter is queued for it.
    pub fn on_mempool_request(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let filter = p.fee_filter;
        p.queue = self
            .pool
            .values()
            .filter(|r| r.fee_rate >= filter)
            .map(|r| r.txid)
            .collect();
        Self::bound_queue(&self.pool, p);
    }

    /// Keeps the highest fee rates of a queue over `MAX_QUEUE`.
    fn bound_queue(pool: &HashMap<Txid, RelayTx>, p: &mut PeerRelay) {
        if p.queue.len() > MAX_QUEUE {
            p.queue
                .sort_by_key(|t| std::cmp::Reverse(pool.get(t).map_or(0, |r| r.fee_rate)));
            p.queue.truncate(MAX_QUEUE);
        }
    }

    /// The tip changed: refused transactions may be valid now (Core resets its filter too).
    pub fn tip_changed(&mut self, ibd: bool) {
        self.ibd = ibd;
        self.rejected.clear();
    }

    /// The mempool reported: new transactions are queued for every peer that may want them,
    /// refused ones are remembered, orphans' parents are asked of their sender.
    pub fn mempool_changed(&mut self, delta: MempoolDelta, now: Instant) -> Vec<Action> {
        self.floor = delta.floor;
        for change in delta.changes {
            match change {
                MempoolChange::Added(r) => {
                    let keys = [txid_key(&r.txid), wtxid_key(&r.wtxid)];
                    keys.iter().for_each(|k| {
                        self.validating.remove(k);
                    });
                    // The peer's fee filter is applied when the trickle goes, as Core does: a
                    // filter that changes meanwhile (a peer leaving IBD) is the one that counts.
                    for p in self.peers.values_mut() {
                        let known = if p.wtxid { keys[1] } else { keys[0] };
                        if p.relays && !p.known.contains(known) {
                            p.queue.push(r.txid);
                        }
                    }
                    self.by_wtxid.insert(r.wtxid, r.txid);
                    self.pool.insert(r.txid, r);
                }
                MempoolChange::Removed(txid) => {
                    if let Some(r) = self.pool.remove(&txid) {
                        self.by_wtxid.remove(&r.wtxid);
                    }
                }
            }
        }
        for p in self.peers.values_mut() {
            Self::bound_queue(&self.pool, p);
        }
        for (txid, wtxid) in delta.rejected {
            for k in [txid_key(&txid), wtxid_key(&wtxid)] {
                self.validating.remove(&k);
                self.rejected.insert(k);
            }
        }
        for (peer, parents) in delta.fetch {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            for t in parents {
                let key = txid_key(&t);
                if self.pool.contains_key(&t) || self.rejected.contains(key) {
                    continue;
                }
                self.wanted.entry(key).or_insert_with(|| Wanted {
                    item: Inventory::WitnessTransaction(t),
                    announcers: VecDeque::from([peer]),
                    requested: None,
                });
                p.announcements += 1;
                self.to_request.push_back(key);
            }
        }
        self.request(now)
    }

    /// Time passed: trickles that are due, `feefilter` updates, requests that timed out.
    pub fn tick(&mut self, now: Instant, rng: &mut Rng) -> Vec<Action> {
        let mut out = Vec::new();
        while self.deadlines.front().is_some_and(|(t, _)| *t <= now) {
            let (at, key) = self.deadlines.pop_front().expect("checked");
            let late = self
                .wanted
                .get(&key)
                .and_then(|w| w.requested)
                .filter(|(_, until)| *until == at);
            if let Some((who, _)) = late {
                self.answered(who, key);
                self.to_request.push_back(key);
            }
        }
        // A transaction the chain never judged (it stopped, or dropped it) may come again.
        self.validating
            .retain(|_, since| now.saturating_duration_since(*since) < REQUEST_TIMEOUT);
        let wanted_filter = if self.ibd {
            IBD_FEEFILTER
        } else {
            self.floor.max(crate::mempool::pool::MIN_RELAY_FEE)
        };
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(msg) = self.feefilter(id, wanted_filter, now, rng) {
                out.push(Action::Send(id, msg));
            }
            if let Some(msg) = self.trickle(id, now, rng) {
                out.push(Action::Send(id, msg));
            }
        }
        out.extend(self.request(now));
        out
    }

    fn feefilter(
        &mut self,
        id: PeerId,
        value: u64,
        now: Instant,
        rng: &mut Rng,
    ) -> Option<NetworkMessage> {
        let p = self.peers.get_mut(&id)?;
        if p.filter_sent == Some(IBD_FEEFILTER) && value != IBD_FEEFILTER {
            // Out of initial block download: say so at once, as Core does.
            p.next_filter = now;
        }
        if now >= p.next_filter {
            p.next_filter = now + poisson(rng, FEEFILTER_INTERVAL);
            if p.filter_sent != Some(value) {
                p.filter_sent = Some(value);
                return Some(NetworkMessage::FeeFilter(value as i64));
            }
        } else if let Some(sent) = p.filter_sent {
            // A large change goes out within minutes, not at the next regular update.
            let big = value * 4 < sent * 3 || value * 3 > sent * 4;
            if big && p.next_filter > now + FEEFILTER_CHANGE {
                p.next_filter = now + poisson(rng, FEEFILTER_CHANGE).min(FEEFILTER_CHANGE);
            }
        }
        None
    }

    /// The peer's due announcements: held, above its filter, not known to it; parents first,
    /// then by fee rate.
    fn trickle(&mut self, id: PeerId, now: Instant, rng: &mut Rng) -> Option<NetworkMessage> {
        let p = self.peers.get_mut(&id)?;
        if now < p.next_trickle {
            return None;
        }
        let mean = if p.inbound {
            INBOUND_TRICKLE
        } else {
            OUTBOUND_TRICKLE
        };
        p.next_trickle = now + poisson(rng, mean);
        if p.queue.is_empty() {
            return None;
        }
        let pool = &self.pool;
        let mut due: Vec<&RelayTx> = std::mem::take(&mut p.queue)
            .iter()
            .filter_map(|t| pool.get(t))
            .filter(|r| r.fee_rate >= p.fee_filter)
            .collect();
        due.sort_by_key(|r| (r.ancestors, std::cmp::Reverse(r.fee_rate), r.txid));
        due.dedup_by_key(|r| r.txid);
        let max = (BROADCAST_TARGET + due.len() / 1000 * 5).min(BROADCAST_MAX);
        let mut items = Vec::new();
        for r in &due {
            if items.len() == max {
                p.queue.push(r.txid);
                continue;
            }
            let (key, item) = if p.wtxid {
                (wtxid_key(&r.wtxid), Inventory::WTx(r.wtxid))
            } else {
                (txid_key(&r.txid), Inventory::Transaction(r.txid))
            };
            if p.known.contains(key) {
                continue;
            }
            p.known.insert(key);
            p.announced.insert(key);
            items.push(item);
        }
        (!items.is_empty()).then_some(NetworkMessage::Inv(items))
    }
}

#[cfg(test)]
mod tests;
