//! Consensus parameters of each network, as Bitcoin Core 26+ defines them.

use crate::config::Chain;
use bitcoin::{Block, BlockHash, CompactTarget, Target};
use std::str::FromStr;

/// Largest block weight (BIP141).
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Largest sigop cost per block (BIP141).
pub const MAX_BLOCK_SIGOPS_COST: u64 = 80_000;
/// Scale of legacy sigops and sizes relative to witness data.
pub const WITNESS_SCALE_FACTOR: u64 = 4;
/// Blocks before a coinbase output may be spent.
pub const COINBASE_MATURITY: u32 = 100;
/// 21 million bitcoin in satoshis.
pub const MAX_MONEY: u64 = 21_000_000 * 100_000_000;
/// A block may be at most this far ahead of the node's clock.
pub const MAX_FUTURE_BLOCK_TIME: i64 = 2 * 60 * 60;
/// BIP94: the first block of a period may be at most this much older than its parent.
pub const MAX_TIMEWARP: i64 = 600;

/// The rules that differ per network.
#[derive(Debug, Clone)]
pub struct Params {
    /// Which network.
    pub chain: Chain,
    /// The genesis block.
    pub genesis: Block,
    /// Easiest allowed target.
    pub pow_limit: Target,
    /// Target time between blocks, seconds.
    pub pow_target_spacing: i64,
    /// Target time of one retarget period, seconds.
    pub pow_target_timespan: i64,
    /// Testnet rule: a block 20 minutes after its parent may use the minimum difficulty.
    pub allow_min_difficulty_blocks: bool,
    /// Regtest: difficulty never changes.
    pub no_pow_retargeting: bool,
    /// BIP94 (testnet4): retarget from the period's first block; timewarp limit.
    pub enforce_bip94: bool,
    /// Blocks between subsidy halvings.
    pub subsidy_halving_interval: u32,
    /// BIP34 (height in coinbase) from this height.
    pub bip34_height: u32,
    /// BIP65 (CHECKLOCKTIMEVERIFY) from this height.
    pub bip65_height: u32,
    /// BIP66 (strict DER) from this height.
    pub bip66_height: u32,
    /// BIP68/112/113 (CSV) from this height.
    pub csv_height: u32,
    /// BIP141/143/147 (segwit) from this height.
    pub segwit_height: u32,
    /// BIP341/342 (taproot) from this height, where Core buries it; informational.
    pub taproot_height: Option<u32>,
    /// Mainnet blocks Core validates with special script flags.
    pub script_flag_exceptions: Vec<(BlockHash, u32)>,
    /// Signet: the script every block's solution must satisfy (BIP325).
    pub signet_challenge: Option<bitcoin::ScriptBuf>,
}

/// Each public network's default assumevalid block, as Bitcoin Core 28 ships them (its
/// `bitcoind -help` text for `-assumevalid`). Scripts of the block and its ancestors are not
/// verified when it is on the best header chain; `[validation] assumevalid = "0"` turns it off.
pub fn default_assume_valid(chain: Chain) -> Option<BlockHash> {
    let h = match chain {
        Chain::Mainnet => "000000000000000000011c5890365bdbe5d25b97ce0057589acaef4f1a57263f",
        Chain::Testnet3 => "000000000000000465b1a66c9f386308e8c75acef9201f3f577811da09fc90ad",
        // Height 39,550.
        Chain::Testnet4 => "000000005be348057db991fa5d89fe7c4695b667cfb311391a8db374b6f681fd",
        Chain::Signet => "0000014aad1d58dddcb964dd749b073374c6306e716b22f573a2efe68d414539",
        Chain::Regtest => return None,
    };
    Some(hash(h))
}

fn hash(s: &str) -> BlockHash {
    // Constants below are valid hex; a typo is caught by the unit tests.
    BlockHash::from_str(s).expect("valid block hash constant")
}

impl Params {
    /// The parameters of `chain`.
    pub fn for_chain(chain: Chain) -> Params {
        let network = chain.bitcoin_network();
        let base = bitcoin::params::Params::new(network);
        let genesis = bitcoin::constants::genesis_block(network);
        let mut p = Params {
            chain,
            genesis,
            pow_limit: base.max_attainable_target,
            pow_target_spacing: base.pow_target_spacing as i64,
            pow_target_timespan: base.pow_target_timespan as i64,
            allow_min_difficulty_blocks: base.allow_min_difficulty_blocks,
            no_pow_retargeting: base.no_pow_retargeting,
            enforce_bip94: false,
            subsidy_halving_interval: 210_000,
            bip34_height: base.bip34_height,
            bip65_height: base.bip65_height,
            bip66_height: base.bip66_height,
            csv_height: 1,
            segwit_height: 1,
            taproot_height: None,
            script_flag_exceptions: Vec::new(),
            signet_challenge: None,
        };
        match chain {
            Chain::Mainnet => {
                p.csv_height = 419_328;
                p.segwit_height = 481_824;
                p.taproot_height = Some(709_632);
                p.script_flag_exceptions = vec![
                    // BIP16 exception: a P2SH-invalid spend mined before BIP16 was enforced.
                    (
                        hash("00000000000002dc756eebf4f49723ed8d30cc28a5f108eb94b1ba88ac4f9c22"),
                        script_flags::NONE,
                    ),
                    // Taproot exception: an invalid taproot spend mined before activation.
                    (
                        hash("0000000000000000000f14c35b2d841e986ab5441de8c585d5ffe55ea1e395ad"),
                        script_flags::P2SH | script_flags::WITNESS,
                    ),
                ];
            }
            Chain::Testnet3 => {
                p.csv_height = 770_112;
                p.segwit_height = 834_624;
            }
            Chain::Testnet4 => {
                p.enforce_bip94 = true;
                p.taproot_height = Some(1);
            }
            Chain::Signet => {
                p.taproot_height = Some(1);
                p.signet_challenge = Some(
                    bitcoin::ScriptBuf::from_hex(super::signet::DEFAULT_CHALLENGE_HEX)
                        .expect("valid challenge constant"),
                );
            }
            Chain::Regtest => {
                // Core's current regtest: every soft fork active from the start.
                p.subsidy_halving_interval = 150;
                p.bip34_height = 1;
                p.bip65_height = 1;
                p.bip66_height = 1;
                p.csv_height = 1;
                p.segwit_height = 0;
                p.taproot_height = Some(0);
            }
        }
        p
    }

    /// Blocks per retarget period (2016).
    pub fn difficulty_adjustment_interval(&self) -> u32 {
        (self.pow_target_timespan / self.pow_target_spacing) as u32
    }

    /// The compact form of the pow limit.
    pub fn pow_limit_bits(&self) -> CompactTarget {
        self.pow_limit.to_compact_lossy()
    }

    /// Block subsidy at `height`, in satoshis.
    pub fn subsidy(&self, height: u32) -> u64 {
        let halvings = height / self.subsidy_halving_interval;
        if halvings >= 64 {
            0
        } else {
            (50 * 100_000_000u64) >> halvings
        }
    }
}

/// Script verification flags understood by libbitcoinconsensus.
pub mod script_flags {
    /// No flags.
    pub const NONE: u32 = bitcoinconsensus::VERIFY_NONE;
    /// BIP16.
    pub const P2SH: u32 = bitcoinconsensus::VERIFY_P2SH;
    /// BIP66.
    pub const DERSIG: u32 = bitcoinconsensus::VERIFY_DERSIG;
    /// BIP147.
    pub const NULLDUMMY: u32 = bitcoinconsensus::VERIFY_NULLDUMMY;
    /// BIP65.
    pub const CHECKLOCKTIMEVERIFY: u32 = bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY;
    /// BIP112.
    pub const CHECKSEQUENCEVERIFY: u32 = bitcoinconsensus::VERIFY_CHECKSEQUENCEVERIFY;
    /// BIP141.
    pub const WITNESS: u32 = bitcoinconsensus::VERIFY_WITNESS;
    /// BIP341/342.
    pub const TAPROOT: u32 = bitcoinconsensus::VERIFY_TAPROOT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_hashes_match_each_network() {
        let expect = [
            (
                Chain::Mainnet,
                "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
            ),
            (
                Chain::Testnet3,
                "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
            ),
            (
                Chain::Testnet4,
                "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
            ),
            (
                Chain::Signet,
                "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
            ),
            (
                Chain::Regtest,
                "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            ),
        ];
        for (chain, h) in expect {
            let p = Params::for_chain(chain);
            assert_eq!(p.genesis.block_hash().to_string(), h, "{chain}");
            // Every genesis block meets its own network's proof of work.
            assert!(p
                .genesis
                .header
                .validate_pow(p.genesis.header.target())
                .is_ok());
        }
    }

    #[test]
    fn subsidy_halves() {
        let main = Params::for_chain(Chain::Mainnet);
        assert_eq!(main.subsidy(0), 5_000_000_000);
        assert_eq!(main.subsidy(210_000), 2_500_000_000);
        assert_eq!(main.subsidy(840_000), 312_500_000);
        assert_eq!(main.subsidy(64 * 210_000), 0);
        let reg = Params::for_chain(Chain::Regtest);
        assert_eq!(reg.subsidy(150), 2_500_000_000);
        assert_eq!(reg.difficulty_adjustment_interval(), 2016);
    }

    #[test]
    fn default_assume_valid_parses_for_public_networks_only() {
        for chain in [
            Chain::Mainnet,
            Chain::Testnet3,
            Chain::Testnet4,
            Chain::Signet,
        ] {
            let h = default_assume_valid(chain).unwrap();
            // Every one of them is a real block: it meets at least the minimum difficulty.
            assert!(h.to_string().starts_with("0000"), "{chain}");
        }
        assert_eq!(default_assume_valid(Chain::Regtest), None);
    }

    #[test]
    fn exception_hashes_parse() {
        assert_eq!(
            Params::for_chain(Chain::Mainnet)
                .script_flag_exceptions
                .len(),
            2
        );
    }
}
