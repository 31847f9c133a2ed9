//! Which inbound peer makes room for a newcomer when every inbound slot is taken: Bitcoin Core's
//! `SelectNodeToEvict`. Peers that are hard for an attacker to imitate are protected (distinct
//! netgroups, the lowest ping times, the most recent block deliveries, the longest connected);
//! of the rest, the newest peer of the most crowded netgroup goes. So sockets that never finish
//! a handshake cannot lock honest peers out: they have no ping and deliver no blocks.

use crate::messages::PeerId;
use std::time::{Duration, Instant};

/// Protected for the netgroup they come from (Core: 4).
const PROTECT_BY_NETGROUP: usize = 4;
/// Protected for the lowest minimum ping (Core: 8).
const PROTECT_BY_PING: usize = 8;
/// Protected for the most recent new blocks (Core: 4).
const PROTECT_BY_BLOCKS: usize = 4;

/// What eviction knows of one inbound peer.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The peer.
    pub id: PeerId,
    /// Its netgroup (`netgroup::netgroup`).
    pub netgroup: Vec<u8>,
    /// Its lowest ping round trip, if it ever answered one.
    pub min_ping: Option<Duration>,
    /// When it last gave us a block we did not have.
    pub last_block: Option<Instant>,
    /// When it connected.
    pub connected: Instant,
}

/// The peer to evict, if any is left once the protected ones are set aside. `key` keys the
/// netgroup ordering, as Core keys it with a per-node secret, so an attacker cannot tell which
/// netgroups are protected.
pub fn select(mut candidates: Vec<Candidate>, key: u64) -> Option<PeerId> {
    let keyed = |g: &[u8]| {
        g.iter().fold(key ^ 0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    // Each rule sorts the worst first and protects the last `n`; ties protect the longest
    // connected, as Core's comparators do.
    fn protect<K: Ord>(c: &mut Vec<Candidate>, n: usize, key: impl Fn(&Candidate) -> K) {
        c.sort_by_key(|x| {
            (
                key(x),
                std::cmp::Reverse(x.connected),
                std::cmp::Reverse(x.id),
            )
        });
        let keep = c.len().saturating_sub(n);
        c.truncate(keep);
    }
    protect(&mut candidates, PROTECT_BY_NETGROUP, |c| keyed(&c.netgroup));
    protect(&mut candidates, PROTECT_BY_PING, |c| {
        std::cmp::Reverse(c.min_ping.unwrap_or(Duration::MAX))
    });
    protect(&mut candidates, PROTECT_BY_BLOCKS, |c| c.last_block);
    // Half of the rest by how long they have been connected.
    let half = candidates.len() / 2;
    protect(&mut candidates, half, |_| ());
    if candidates.is_empty() {
        return None;
    }
    // The most crowded netgroup (ties: the one with the newest member), and its newest member.
    let mut groups: std::collections::BTreeMap<&[u8], (usize, Instant, PeerId)> =
        std::collections::BTreeMap::new();
    for c in &candidates {
        let e = groups.entry(&c.netgroup).or_insert((0, c.connected, c.id));
        e.0 += 1;
        if (c.connected, c.id) > (e.1, e.2) {
            e.1 = c.connected;
            e.2 = c.id;
        }
    }
    groups
        .values()
        .max_by_key(|(n, newest, id)| (*n, *newest, *id))
        .map(|(_, _, id)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: PeerId, group: u8, ping_ms: Option<u64>, age_s: u64, t0: Instant) -> Candidate {
        Candidate {
            id,
            netgroup: vec![4, 127, group],
            min_ping: ping_ms.map(Duration::from_millis),
            last_block: None,
            connected: t0 - Duration::from_secs(age_s),
        }
    }

    /// 120 idle sockets from 120 netgroups and one honest peer with a ping: the honest peer is
    /// never the one to go, whatever the key.
    #[test]
    fn idle_sockets_are_evicted_before_a_peer_that_answers_pings() {
        let t0 = Instant::now() + Duration::from_secs(10_000);
        for key in 0..50 {
            let mut c: Vec<Candidate> = (0..120).map(|i| cand(i, i as u8, None, i, t0)).collect();
            c.push(cand(500, 200, Some(40), 0, t0));
            let victim = select(c, key).expect("one is evicted");
            assert_ne!(victim, 500);
        }
    }

    #[test]
    fn the_newest_of_the_most_crowded_netgroup_goes() {
        let t0 = Instant::now() + Duration::from_secs(10_000);
        // 20 peers in distinct groups with pings (the 8 fastest protected), 10 in group 9.
        let mut c: Vec<Candidate> = (0..20)
            .map(|i| cand(i, 100 + i as u8, Some(10 + i), 1000 + i, t0))
            .collect();
        c.extend((0..10).map(|i| cand(100 + i, 9, None, 500 - i * 10, t0)));
        for key in 0..20 {
            let victim = select(c.clone(), key).unwrap();
            assert!((100..110).contains(&victim), "from group 9: {victim}");
        }
    }

    #[test]
    fn few_candidates_are_all_protected() {
        let t0 = Instant::now() + Duration::from_secs(10_000);
        let c: Vec<Candidate> = (0..4).map(|i| cand(i, i as u8, None, i, t0)).collect();
        assert_eq!(select(c, 3), None);
        assert_eq!(select(Vec::new(), 3), None);
    }

    #[test]
    fn recent_block_deliverers_are_protected() {
        let t0 = Instant::now() + Duration::from_secs(10_000);
        // One netgroup, no pings: peer 0 is the newest, so it goes unless its block saves it.
        let mut c: Vec<Candidate> = (0..30).map(|i| cand(i, 1, None, 1 + i, t0)).collect();
        assert_eq!(select(c.clone(), 5), Some(0));
        c[0].last_block = Some(t0);
        let victim = select(c, 5).expect("one goes");
        assert_ne!(victim, 0);
    }
}
