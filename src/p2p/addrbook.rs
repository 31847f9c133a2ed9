//! Known peer addresses: bounded "new" and "tried" tables with a quality score each, persisted
//! in the store's `peers` table. Plain state: time (unix seconds) is passed in.

use super::netgroup::pick_outbound;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Addresses never connected to, at most.
pub const MAX_NEW: usize = 4096;
/// Addresses connected to at least once, at most.
pub const MAX_TRIED: usize = 1024;
/// A book this small keeps its failing addresses (retried at the longest backoff): after a long
/// outage they may be all the node has.
pub const FEW_ADDRESSES: usize = 256;
/// Failures alone take a score no lower than this (candidates need more than -100).
const FAILED_FLOOR: i32 = -95;

/// Where an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A DNS seed.
    Dns,
    /// The hardcoded seeds.
    Seed,
    /// `addr`/`addrv2` gossip.
    Gossip,
    /// `--addnode`/`--connect`.
    Manual,
    /// A peer that connected to us.
    Inbound,
}

/// What is known about one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddrInfo {
    /// Origin.
    pub source: Source,
    /// A handshake once succeeded.
    pub tried: bool,
    /// Last successful handshake (unix seconds).
    pub last_success: Option<i64>,
    /// Last time the address was heard of or connected (unix seconds).
    pub last_seen: i64,
    /// Quality: handshakes and useful blocks raise it, failures, stalls and misbehaviour lower it.
    pub score: i32,
    /// Lowest ping round trip seen, milliseconds (absent in books saved before it was kept).
    #[serde(default)]
    pub min_ping_ms: Option<u32>,
}

/// Round trip that costs one point of quality; capped at `MAX_LATENCY_PENALTY`.
const MS_PER_LATENCY_POINT: u32 = 20;
/// A peer is never marked down more than this for latency alone (a second or more).
const MAX_LATENCY_PENALTY: i32 = 50;

impl AddrInfo {
    /// What choosing and rotation go by: the score, less a point per 20 ms of best ping (at most
    /// 50), so that between equally useful peers the nearer one wins.
    pub fn quality(&self) -> i32 {
        let penalty = self
            .min_ping_ms
            .map_or(0, |ms| (ms / MS_PER_LATENCY_POINT) as i32)
            .min(MAX_LATENCY_PENALTY);
        self.score - penalty
    }
}

/// Events that change an address's quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Handshake completed.
    Handshake,
    /// A connection attempt or handshake failed.
    Failed,
    /// The peer delivered a block we used.
    UsefulBlock,
    /// The peer held up the download window.
    Stalled,
    /// The peer broke the protocol.
    Misbehaved,
}

/// The address book.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddrBook {
    entries: HashMap<SocketAddr, AddrInfo>,
}

impl AddrBook {
    /// Addresses known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses learned rather than given by hand (`--addnode`, `--connect`).
    pub fn learned(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.source != Source::Manual)
            .count()
    }

    /// What is known about `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrInfo> {
        self.entries.get(addr)
    }

    /// Learns `addr` (kept fresh if known). When the new table is full the worst new entry goes.
    pub fn add(&mut self, addr: SocketAddr, source: Source, now: i64) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.last_seen = e.last_seen.max(now);
            if source == Source::Manual {
                e.source = Source::Manual;
            }
            return;
        }
        if self.count(false) >= MAX_NEW {
            self.evict(false);
        }
        self.entries.insert(
            addr,
            AddrInfo {
                source,
                tried: false,
                last_success: None,
                last_seen: now,
                score: if source == Source::Manual { 100 } else { 0 },
                min_ping_ms: None,
            },
        );
    }

    /// Records a quality event for a known address.
    pub fn record(&mut self, addr: &SocketAddr, q: Quality, now: i64) {
        let promote = q == Quality::Handshake && self.entries.get(addr).is_some_and(|e| !e.tried);
        if promote && self.count(true) >= MAX_TRIED {
            self.evict(true);
        }
        let Some(e) = self.entries.get_mut(addr) else {
            return;
        };
        e.score = match q {
            // Failing to answer ranks an address last but never rules it out: during a long
            // outage everything fails, and it must be tried again once the network is back.
            Quality::Failed => (e.score - 5).max(e.score.min(FAILED_FLOOR)),
            Quality::Handshake => e.score + 10,
            Quality::UsefulBlock => e.score + 1,
            Quality::Stalled => e.score - 20,
            Quality::Misbehaved => e.score - 100,
        }
        .clamp(-1000, 1000);
        if q == Quality::Handshake {
            e.tried = true;
            e.last_success = Some(now);
            e.last_seen = now;
        }
    }

    /// A ping round trip to `addr` was measured; the lowest is kept (Core's min ping).
    pub fn record_ping(&mut self, addr: &SocketAddr, rtt: std::time::Duration) {
        if let Some(e) = self.entries.get_mut(addr) {
            let ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX);
            e.min_ping_ms = Some(e.min_ping_ms.map_or(ms, |m| m.min(ms)));
        }
    }

    /// Whether the book is small enough to keep what keeps failing (`FEW_ADDRESSES`).
    pub fn is_small(&self) -> bool {
        self.entries.len() <= FEW_ADDRESSES
    }

    /// Forgets `addr` (banned, or given up).
    pub fn remove(&mut self, addr: &SocketAddr) {
        self.entries.remove(addr);
    }

    fn count(&self, tried: bool) -> usize {
        self.entries.values().filter(|e| e.tried == tried).count()
    }

    /// Drops the lowest-scored, then least recently seen, non-manual entry of a table.
    fn evict(&mut self, tried: bool) {
        let worst = self
            .entries
            .iter()
            .filter(|(_, e)| e.tried == tried && e.source != Source::Manual)
            .min_by_key(|(a, e)| (e.quality(), e.last_seen, **a))
            .map(|(a, _)| *a);
        if let Some(a) = worst {
            self.entries.remove(&a);
        }
    }

    /// Up to `want` addresses to dial, best first (tried before new, then by score), at most one
    /// per netgroup and none in a group already `connected`; `eligible` filters (e.g. backoff).
    /// Equals are ordered by `salt`: nodes with the same book do not all pick the same peers.
    pub fn candidates(
        &self,
        connected: &[SocketAddr],
        want: usize,
        salt: u64,
        eligible: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let keyed = |a: &SocketAddr| {
            let mut h = salt ^ 0xcbf2_9ce4_8422_2325;
            for b in a.to_string().bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            h
        };
        let mut all: Vec<(&SocketAddr, &AddrInfo)> = self
            .entries
            .iter()
            .filter(|(a, e)| e.score > -100 && !connected.contains(a) && eligible(a))
            .collect();
        all.sort_by_cached_key(|(a, e)| (!e.tried, -e.quality(), -e.last_seen, keyed(a), **a));
        let ordered: Vec<SocketAddr> = all.into_iter().map(|(a, _)| *a).collect();
        pick_outbound(&ordered, connected, want)
    }

    /// The table's persisted form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.entries.iter().collect::<Vec<_>>()).unwrap_or_default()
    }

    /// Inverse of `encode`; a corrupt record gives an empty book (addresses are relearned).
    pub fn decode(bytes: &[u8]) -> AddrBook {
        match serde_json::from_slice::<Vec<(SocketAddr, AddrInfo)>>(bytes) {
            Ok(v) => AddrBook {
                entries: v.into_iter().collect(),
            },
            Err(e) => {
                log::warn!("stored address book unreadable ({e}); starting empty");
                AddrBook::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn a(i: u32) -> SocketAddr {
        SocketAddr::new(
            std::net::Ipv4Addr::from(0x7f00_0001 + (i << 8)).into(),
            18444,
        )
    }

    #[test]
    fn quality_orders_candidates_and_tried_come_first() {
        let mut b = AddrBook::default();
        for i in 0..5 {
            // One address per /16 so netgroup diversity does not hide the ordering.
            b.add(
                SocketAddr::new(
                    std::net::Ipv4Addr::new(127, i as u8 + 1, 0, 1).into(),
                    18444,
                ),
                Source::Gossip,
                100,
            );
        }
        let addrs: Vec<SocketAddr> = (0..5)
            .map(|i| SocketAddr::new(std::net::Ipv4Addr::new(127, i + 1, 0, 1).into(), 18444))
            .collect();
        b.record(&addrs[3], Quality::Handshake, 200);
        b.record(&addrs[1], Quality::Failed, 200);
        b.record(&addrs[4], Quality::Misbehaved, 200);
        let c = b.candidates(&[], 8, 0, |_| true);
        assert_eq!(c[0], addrs[3], "tried first");
        assert_eq!(*c.last().unwrap(), addrs[1], "failures last");
        assert!(!c.contains(&addrs[4]), "misbehaving peers are not dialled");
        assert!(
            !b.candidates(&[], 8, 0, |x| *x != addrs[3])
                .contains(&addrs[3]),
            "backoff filter"
        );
    }

    #[test]
    fn latency_marks_down_slow_peers_within_a_cap() {
        let mut b = AddrBook::default();
        let (near, far, remote) = (
            SocketAddr::new(std::net::Ipv4Addr::new(127, 1, 0, 1).into(), 18444),
            SocketAddr::new(std::net::Ipv4Addr::new(127, 2, 0, 1).into(), 18444),
            SocketAddr::new(std::net::Ipv4Addr::new(127, 3, 0, 1).into(), 18444),
        );
        for x in [near, far, remote] {
            b.add(x, Source::Gossip, 0);
            b.record(&x, Quality::Handshake, 1);
        }
        b.record_ping(&near, Duration::from_millis(30));
        b.record_ping(&near, Duration::from_millis(90));
        b.record_ping(&far, Duration::from_millis(400));
        b.record_ping(&remote, Duration::from_secs(30));
        assert_eq!(b.get(&near).unwrap().min_ping_ms, Some(30), "lowest kept");
        assert_eq!(b.get(&near).unwrap().quality(), 10 - 1);
        assert_eq!(b.get(&far).unwrap().quality(), 10 - 20);
        assert_eq!(b.get(&remote).unwrap().quality(), 10 - 50, "capped");
        assert_eq!(b.candidates(&[], 3, 0, |_| true), vec![near, far, remote]);
        // A slow but useful peer still beats a fast useless one.
        for _ in 0..80 {
            b.record(&remote, Quality::UsefulBlock, 2);
        }
        assert_eq!(b.candidates(&[], 1, 0, |_| true), vec![remote]);
    }

    #[test]
    fn books_saved_before_latency_was_kept_still_load() {
        let old = br#"[["127.0.0.1:18444",{"source":"Dns","tried":true,"last_success":6,"last_seen":6,"score":10}]]"#;
        let b = AddrBook::decode(old);
        assert_eq!(b.get(&a(0)).unwrap().min_ping_ms, None);
        assert_eq!(b.get(&a(0)).unwrap().quality(), 10);
    }

    #[test]
    fn tables_stay_bounded_and_manual_entries_survive() {
        let mut b = AddrBook::default();
        b.add(a(0), Source::Manual, 0);
        for i in 1..(MAX_NEW as u32 + 100) {
            b.add(a(i), Source::Gossip, i64::from(i));
        }
        assert_eq!(b.len(), MAX_NEW);
        assert!(b.get(&a(0)).is_some(), "addnode entries are never evicted");
    }

    #[test]
    fn persists_through_encode_and_tolerates_corruption() {
        let mut b = AddrBook::default();
        b.add(a(1), Source::Dns, 5);
        b.record(&a(1), Quality::Handshake, 6);
        assert_eq!(AddrBook::decode(&b.encode()), b);
        assert!(AddrBook::decode(b"{garbage").is_empty());
    }
}
