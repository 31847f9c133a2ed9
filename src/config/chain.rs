//! Which Bitcoin network the node runs on, and that network's conventions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Bitcoin network, named as Bitcoin Core names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// The main network.
    #[default]
    Mainnet,
    /// The legacy test network.
    Testnet3,
    /// The BIP94 test network.
    Testnet4,
    /// The default signet.
    Signet,
    /// The local regression-test network.
    Regtest,
}

impl Chain {
    /// Every network, for listings and error messages.
    pub const ALL: [Chain; 5] = [
        Chain::Mainnet,
        Chain::Testnet3,
        Chain::Testnet4,
        Chain::Signet,
        Chain::Regtest,
    ];

    /// The name used on the command line, in config files and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Chain::Mainnet => "mainnet",
            Chain::Testnet3 => "testnet3",
            Chain::Testnet4 => "testnet4",
            Chain::Signet => "signet",
            Chain::Regtest => "regtest",
        }
    }

    /// Subdirectory of the datadir; Bitcoin Core keeps mainnet at the root.
    pub fn subdir(self) -> &'static str {
        match self {
            Chain::Mainnet => "",
            other => other.name(),
        }
    }

    /// Bitcoin Core's default JSON-RPC port.
    pub fn default_rpc_port(self) -> u16 {
        match self {
            Chain::Mainnet => 8332,
            Chain::Testnet3 => 18332,
            Chain::Testnet4 => 48332,
            Chain::Signet => 38332,
            Chain::Regtest => 18443,
        }
    }

    /// Bitcoin Core's default P2P port.
    pub fn default_p2p_port(self) -> u16 {
        match self {
            Chain::Mainnet => 8333,
            Chain::Testnet3 => 18333,
            Chain::Testnet4 => 48333,
            Chain::Signet => 38333,
            Chain::Regtest => 18444,
        }
    }

    /// The rust-bitcoin network for consensus types and parameters.
    pub fn bitcoin_network(self) -> bitcoin::Network {
        match self {
            Chain::Mainnet => bitcoin::Network::Bitcoin,
            Chain::Testnet3 => bitcoin::Network::Testnet,
            Chain::Testnet4 => bitcoin::Network::Testnet4,
            Chain::Signet => bitcoin::Network::Signet,
            Chain::Regtest => bitcoin::Network::Regtest,
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Chain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = match s {
            // Core's own spellings, so operators can paste what they know.
            "main" | "bitcoin" => return Ok(Chain::Mainnet),
            "test" | "testnet" => return Ok(Chain::Testnet3),
            other => other,
        };
        Chain::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| {
                format!("unknown network `{s}`, expected one of mainnet, testnet3, testnet4, signet, regtest")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_bitcoin_core() {
        let rpc: Vec<u16> = Chain::ALL.iter().map(|c| c.default_rpc_port()).collect();
        let p2p: Vec<u16> = Chain::ALL.iter().map(|c| c.default_p2p_port()).collect();
        assert_eq!(rpc, [8332, 18332, 48332, 38332, 18443]);
        assert_eq!(p2p, [8333, 18333, 48333, 38333, 18444]);
    }

    #[test]
    fn names_round_trip_and_core_aliases_parse() {
        for c in Chain::ALL {
            assert_eq!(c.name().parse::<Chain>().unwrap(), c);
        }
        assert_eq!("main".parse::<Chain>().unwrap(), Chain::Mainnet);
        assert!("moon".parse::<Chain>().unwrap_err().contains("regtest"));
    }
}
