//! Network groups: outbound peers are chosen at most one per group, so one operator's
//! address block cannot surround the node.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// The group of an address: /16 for IPv4 (and IPv4-mapped IPv6), /32 for IPv6.
pub fn netgroup(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            vec![4, o[0], o[1]]
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => netgroup(IpAddr::V4(v4)),
            None => {
                let o = v6.octets();
                vec![6, o[0], o[1], o[2], o[3]]
            }
        },
    }
}

/// From `candidates` (best first), the ones to dial: at most one per group, none in a group
/// already connected, up to `want`.
pub fn pick_outbound(
    candidates: &[SocketAddr],
    connected: &[SocketAddr],
    want: usize,
) -> Vec<SocketAddr> {
    let mut groups: HashSet<Vec<u8>> = connected.iter().map(|a| netgroup(a.ip())).collect();
    let mut out = Vec::new();
    for c in candidates {
        if out.len() >= want {
            break;
        }
        if groups.insert(netgroup(c.ip())) {
            out.push(*c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn many_addresses_in_one_16_give_one_outbound() {
        let candidates: Vec<SocketAddr> =
            (1..=50).map(|i| a(&format!("127.1.{i}.1:8333"))).collect();
        assert_eq!(
            pick_outbound(&candidates, &[], 8),
            vec![a("127.1.1.1:8333")]
        );
        let mut mixed = candidates.clone();
        mixed.extend([
            a("127.2.0.1:8333"),
            a("127.3.0.1:8333"),
            a("[2001:db8::1]:8333"),
            a("[2001:db8:ff::1]:8333"),
        ]);
        let picked = pick_outbound(&mixed, &[a("127.3.9.9:8333")], 8);
        // One from 127.1/16, one from 127.2/16, none from 127.3/16 (connected), one from 2001:db8::/32.
        assert_eq!(
            picked,
            vec![
                a("127.1.1.1:8333"),
                a("127.2.0.1:8333"),
                a("[2001:db8::1]:8333")
            ]
        );
    }

    #[test]
    fn mapped_ipv4_shares_the_ipv4_group() {
        assert_eq!(
            netgroup("::ffff:10.1.2.3".parse().unwrap()),
            netgroup("10.1.99.4".parse().unwrap())
        );
        assert_ne!(
            netgroup("127.1.0.1".parse().unwrap()),
            netgroup("127.2.0.1".parse().unwrap())
        );
    }
}
