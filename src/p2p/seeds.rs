//! Where a node with an empty address book starts: Bitcoin Core's DNS seeds per network, and
//! its fixed seeds as the last resort (files in `seeds/`, sources noted in each). Regtest has
//! neither: its peers are always given by hand. Testnet3 has DNS seeds only: Core's list of fixed
//! testnet3 nodes was empty in the copy these were taken from, and testnet4 replaces it.

use crate::config::Chain;
use std::net::SocketAddr;

/// An empty address book waits this long for the DNS seeds before the fixed seeds are added
/// (Core's behaviour).
pub const FIXED_SEED_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The fixed seeds of `chain`.
pub fn fixed_seeds(chain: Chain) -> Vec<SocketAddr> {
    let text = match chain {
        Chain::Mainnet => include_str!("seeds/mainnet.txt"),
        Chain::Testnet4 => include_str!("seeds/testnet4.txt"),
        Chain::Signet => include_str!("seeds/signet.txt"),
        Chain::Testnet3 | Chain::Regtest => "",
    };
    parse_seed_list(text)
}

/// `address:port` per line; `#` comments and blank lines skipped. The lists are compiled in and
/// unit-tested, so a line that does not parse cannot ship; it is skipped rather than fatal.
fn parse_seed_list(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The DNS seeds of `chain` (Core's chainparams).
pub fn dns_seeds(chain: Chain) -> &'static [&'static str] {
    match chain {
        Chain::Mainnet => &[
            "seed.bitcoin.sipa.be",
            "dnsseed.bluematt.me",
            "seed.bitcoin.jonasschnelli.ch",
            "seed.btc.petertodd.net",
            "seed.bitcoin.sprovoost.nl",
            "dnsseed.emzy.de",
            "seed.bitcoin.wiz.biz",
            "seed.mainnet.achownodes.xyz",
        ],
        Chain::Testnet3 => &[
            "testnet-seed.bitcoin.jonasschnelli.ch",
            "seed.tbtc.petertodd.net",
            "seed.testnet.bitcoin.sprovoost.nl",
            "testnet-seed.bluematt.me",
            "seed.testnet.achownodes.xyz",
        ],
        Chain::Testnet4 => &[
            "seed.testnet4.bitcoin.sprovoost.nl",
            "seed.testnet4.wiz.biz",
        ],
        Chain::Signet => &[
            "seed.signet.bitcoin.sprovoost.nl",
            "seed.signet.achownodes.xyz",
        ],
        Chain::Regtest => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::netgroup::netgroup;
    use std::collections::HashSet;

    #[test]
    fn fixed_seeds_parse_whole_on_the_right_port_and_spread_over_netgroups() {
        for (chain, port, at_least) in [
            (Chain::Mainnet, 8333, 60),
            (Chain::Testnet4, 48333, 50),
            (Chain::Signet, 38333, 40),
        ] {
            let text = match chain {
                Chain::Mainnet => include_str!("seeds/mainnet.txt"),
                Chain::Testnet4 => include_str!("seeds/testnet4.txt"),
                _ => include_str!("seeds/signet.txt"),
            };
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .count();
            let seeds = fixed_seeds(chain);
            assert_eq!(seeds.len(), lines, "{chain:?}: every line parses");
            assert!(seeds.len() >= at_least, "{chain:?}: {}", seeds.len());
            assert!(seeds.iter().all(|s| s.port() == port), "{chain:?}");
            assert!(seeds.iter().all(|s| !s.ip().is_loopback()));
            let groups: HashSet<_> = seeds.iter().map(|s| netgroup(s.ip())).collect();
            assert_eq!(
                groups.len(),
                seeds.len(),
                "{chain:?}: one seed per netgroup"
            );
        }
        assert!(fixed_seeds(Chain::Regtest).is_empty());
        assert!(fixed_seeds(Chain::Testnet3).is_empty());
    }

    #[test]
    fn seed_lines_skip_comments_and_blanks() {
        let list = parse_seed_list("# header\n\n1.2.3.4:8333 # AS1\n[2001:db8::1]:8333\n");
        assert_eq!(
            list,
            vec![
                "1.2.3.4:8333".parse().unwrap(),
                "[2001:db8::1]:8333".parse().unwrap()
            ]
        );
    }
}
