//! Banned addresses and ranges with expiry (`setban`, misbehaviour), persisted in the store's `peers`
//! table. Plain state: time (unix seconds) is passed in.

use crate::subnet::Subnet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub use crate::messages::DEFAULT_BAN_SECS;

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// When it was created (unix seconds).
    pub created: i64,
    /// When it ends (unix seconds).
    pub until: i64,
    /// Why (misbehaviour reason or "manual").
    pub reason: String,
}

/// The ban list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BanList {
    bans: BTreeMap<Subnet, Ban>,
}

impl BanList {
    /// Bans `range` for `secs` from `now`.
    pub fn ban(&mut self, range: Subnet, now: i64, secs: i64, reason: &str) {
        self.bans.insert(
            range,
            Ban {
                created: now,
                until: now + secs,
                reason: reason.to_owned(),
            },
        );
    }

    /// Lifts the ban of exactly `range`; whether there was one.
    pub fn unban(&mut self, range: &Subnet) -> bool {
        self.bans.remove(range).is_some()
    }

    /// Whether exactly `range` is banned at `now`.
    pub fn has(&self, range: &Subnet, now: i64) -> bool {
        self.bans.get(range).is_some_and(|b| b.until > now)
    }

    /// Whether `ip` is in a banned range at `now`. The list is small (bans expire, and the
    /// misbehaviour that adds them costs the peer its connection), so a scan is enough.
    pub fn is_banned(&self, ip: &IpAddr, now: i64) -> bool {
        self.bans
            .iter()
            .any(|(range, b)| b.until > now && range.contains(ip))
    }

    /// Drops expired bans; returns how many.
    pub fn sweep(&mut self, now: i64) -> usize {
        let before = self.bans.len();
        self.bans.retain(|_, b| b.until > now);
        before - self.bans.len()
    }

    /// Current bans, for `listbanned`.
    pub fn list(&self, now: i64) -> Vec<(Subnet, &Ban)> {
        self.bans
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(range, b)| (*range, b))
            .collect()
    }

    /// Removes every ban (`clearbanned`).
    pub fn clear(&mut self) {
        self.bans.clear();
    }

    /// The persisted form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Inverse of `encode`; unreadable data gives an empty list, logged.
    pub fn decode(bytes: &[u8]) -> BanList {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            log::warn!("stored ban list unreadable ({e}); starting empty");
            BanList::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_ban_every_address_in_them() {
        let mut l = BanList::default();
        let range: Subnet = "127.70.0.0/16".parse().unwrap();
        l.ban(range, 0, 100, "manual");
        assert!(l.is_banned(&"127.70.9.9".parse().unwrap(), 50));
        assert!(!l.is_banned(&"127.71.0.1".parse().unwrap(), 50));
        assert!(l.has(&range, 50));
        assert!(
            !l.has(&"127.70.9.9".parse().unwrap(), 50),
            "exact ranges only"
        );
        assert!(l.unban(&range));
        assert!(!l.is_banned(&"127.70.9.9".parse().unwrap(), 50));
    }

    #[test]
    fn lists_saved_with_single_addresses_still_load() {
        let old = br#"{"bans":{"127.9.0.1":{"created":1,"until":99,"reason":"manual"}}}"#;
        let l = BanList::decode(old);
        assert!(l.is_banned(&"127.9.0.1".parse().unwrap(), 50));
        assert_eq!(l.list(50)[0].0.to_string(), "127.9.0.1/32");
    }

    #[test]
    fn bans_expire_and_persist() {
        let ip: IpAddr = "127.9.0.1".parse().unwrap();
        let mut l = BanList::default();
        l.ban(
            Subnet::single(ip),
            1000,
            DEFAULT_BAN_SECS,
            "bad-checksum flood",
        );
        assert!(l.is_banned(&ip, 1000 + DEFAULT_BAN_SECS - 1));
        assert!(!l.is_banned(&ip, 1000 + DEFAULT_BAN_SECS));
        assert_eq!(BanList::decode(&l.encode()), l);
        assert_eq!(l.list(2000).len(), 1);
        assert_eq!(l.sweep(1000 + DEFAULT_BAN_SECS), 1);
        assert!(l.list(2000).is_empty());
        assert!(BanList::decode(b"nope").list(0).is_empty());
    }
}
