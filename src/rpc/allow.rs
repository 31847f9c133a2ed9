//! `rpc.allow_ip`: which client addresses may use the RPC port besides loopback.

use crate::subnet::Subnet;
use std::net::IpAddr;

/// Loopback always; the configured ranges besides.
#[derive(Debug, Clone, Default)]
pub struct AllowList(pub Vec<Subnet>);

impl AllowList {
    /// Whether `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.0.iter().any(|r| r.contains(&ip))
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
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("nope".parse::<Subnet>().is_err());
        let none = AllowList::default();
        assert!(!none.permits("10.1.0.1".parse().unwrap()));
    }
}
