//! IP ranges as `setban` and `listbanned` write them (Core's `CSubNet`): an address and a
//! prefix length, `/32` or `/128` for a single address.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

/// Why a range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or ADDRESS/PREFIX range")]
pub struct SubnetError(String);

impl Subnet {
    /// The range of `ip` with `prefix` leading bits; host bits are cleared. IPv4-mapped IPv6
    /// ranges become IPv4 ones, as peers' addresses are. `None` if the prefix is too long.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Subnet> {
        let (network, prefix) = match ip {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (IpAddr::V4(v6.to_ipv4_mapped()?), prefix - 96)
            }
            other => (other, prefix),
        };
        let network = match network {
            IpAddr::V4(v4) if prefix <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix)))
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix)))
            }
            _ => return None,
        };
        Some(Subnet { network, prefix })
    }

    /// The range holding only `ip`.
    pub fn single(ip: IpAddr) -> Subnet {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        Subnet::new(ip, bits).expect("full-length prefix")
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            v4 => *v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    /// `ADDRESS` or `ADDRESS/PREFIX`.
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let bad = || SubnetError(s.to_owned());
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        match prefix {
            Some(p) => Subnet::new(ip, p).ok_or_else(bad),
            None => Ok(Subnet::single(ip)),
        }
    }
}

// Stored as its text, so ban lists saved when bans were single addresses ("1.2.3.4") still load.
impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_print_and_contain() {
        let s: Subnet = "192.168.7.9/24".parse().unwrap();
        assert_eq!(s.to_string(), "192.168.7.0/24", "host bits cleared");
        assert!(s.contains(&ip("192.168.7.200")));
        assert!(s.contains(&ip("::ffff:192.168.7.1")), "mapped IPv4");
        assert!(!s.contains(&ip("192.168.8.1")));
        assert!(!s.contains(&ip("2001:db8::1")));
        let one: Subnet = "10.1.2.3".parse().unwrap();
        assert_eq!(one.to_string(), "10.1.2.3/32");
        assert!(one.contains(&ip("10.1.2.3")) && !one.contains(&ip("10.1.2.4")));
        let v6: Subnet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&ip("2001:db8:ffff::1")) && !v6.contains(&ip("2001:db9::1")));
        assert_eq!(
            "::ffff:10.0.0.1/128".parse::<Subnet>().unwrap().to_string(),
            "10.0.0.1/32"
        );
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.1/x", "/8"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_as_text_and_reads_bare_addresses() {
        let s: Subnet = "10.0.0.0/8".parse().unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"10.0.0.0/8\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<Subnet>("\"127.9.0.1\"").unwrap(),
            Subnet::single(ip("127.9.0.1"))
        );
    }
}
