//! `rpc.allow_ip`: which client addresses may use the RPC port besides loopback.

use std::net::IpAddr;

/// A parsed `ADDR` or `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    addr: IpAddr,
    prefix: u8,
}

/// Why a range is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an IP address or ADDR/PREFIX range")]
pub struct BadRange(pub String);

impl std::str::FromStr for Range {
    type Err = BadRange;

    fn from_str(s: &str) -> Result<Range, BadRange> {
        let bad = || BadRange(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                p.parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let a = s.parse::<IpAddr>().map_err(|_| bad())?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Range { addr, prefix })
    }
}

impl Range {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(r), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(r) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(r), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(r) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// Loopback always; the configured ranges besides.
#[derive(Debug, Clone, Default)]
pub struct AllowList(pub Vec<Range>);

impl AllowList {
    /// Whether `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.0.iter().any(|r| r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let l = AllowList(vec![
            "10.1.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(l.permits("127.0.0.1".parse().unwrap()));
        assert!(l.permits("127.5.0.1".parse().unwrap()));
        assert!(l.permits("10.1.200.3".parse().unwrap()));
        assert!(!l.permits("10.2.0.1".parse().unwrap()));
        assert!(l.permits("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Range>().is_err());
        assert!("nope".parse::<Range>().is_err());
        let none = AllowList::default();
        assert!(!none.permits("10.1.0.1".parse().unwrap()));
    }
}
