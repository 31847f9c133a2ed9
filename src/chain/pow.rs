//! Proof of work: the target a header must carry, and median time past.

use super::params::{Params, MAX_TIMEWARP};
use super::reject::{ensure, Reject};
use bitcoin::block::Header;
use bitcoin::CompactTarget;

/// Looks up headers on the branch being extended, by height (`None` above the parent).
pub trait Ancestors {
    /// The header at `height` on this branch.
    fn header_at(&self, height: u32) -> Option<Header>;
}

impl<F: Fn(u32) -> Option<Header>> Ancestors for F {
    fn header_at(&self, height: u32) -> Option<Header> {
        self(height)
    }
}

/// The `bits` the child of `prev` (at `prev_height`) with timestamp `time` must carry (Core's GetNextWorkRequired).
pub fn next_work_required(
    params: &Params,
    prev_height: u32,
    prev: &Header,
    time: u32,
    anc: &dyn Ancestors,
) -> CompactTarget {
    let interval = params.difficulty_adjustment_interval();
    let limit = params.pow_limit_bits();
    let height = prev_height + 1;
    // Regtest: every block carries the limit, so Core's walk back below can only find the
    // limit; skipping it saves up to 2,015 ancestor lookups per header.
    if params.no_pow_retargeting && prev.bits == limit {
        return limit;
    }
    if height % interval != 0 {
        if !params.allow_min_difficulty_blocks {
            return prev.bits;
        }
        // Testnet: a block more than 20 minutes after its parent may be at minimum difficulty.
        if i64::from(time) > i64::from(prev.time) + params.pow_target_spacing * 2 {
            return limit;
        }
        // Otherwise: the last block that did not use the minimum-difficulty exception.
        let mut h = prev_height;
        let mut bits = prev.bits;
        while h > 0 && h % interval != 0 && bits == limit {
            h -= 1;
            match anc.header_at(h) {
                Some(hdr) => bits = hdr.bits,
                None => break,
            }
        }
        return bits;
    }
    if params.no_pow_retargeting {
        return prev.bits;
    }
    let first_height = prev_height + 1 - interval;
    let Some(first) = anc.header_at(first_height) else {
        return prev.bits;
    };
    let timespan = (i64::from(prev.time) - i64::from(first.time)).max(0) as u64;
    // BIP94: retarget from the period's first block, which the min-difficulty rule cannot lower.
    let base = if params.enforce_bip94 {
        first.bits
    } else {
        prev.bits
    };
    let mut p = bitcoin::params::Params::new(params.chain.bitcoin_network());
    p.max_attainable_target = params.pow_limit;
    CompactTarget::from_next_work_required(base, timespan, &p)
}

/// Median of the last 11 block times up to and including `height`.
pub fn median_time_past(height: u32, anc: &dyn Ancestors) -> u32 {
    let mut times: Vec<u32> = (height.saturating_sub(10)..=height)
        .filter_map(|h| anc.header_at(h).map(|hdr| hdr.time))
        .collect();
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or(0)
}

/// The header's hash meets its own target and that target is within the network's limit.
pub fn check_proof_of_work(header: &Header, params: &Params) -> Result<(), Reject> {
    let target = header.target();
    ensure(
        target <= params.pow_limit && target != bitcoin::Target::ZERO,
        "bad-diffbits",
        || {
            format!(
                "bits {:#010x} outside the network's range",
                header.bits.to_consensus()
            )
        },
    )?;
    ensure(target.is_met_by(header.block_hash()), "high-hash", || {
        "proof of work failed".into()
    })
}

/// The header is at most two hours ahead of `now` (the node's clock).
pub fn check_future_time(header: &Header, now: i64) -> Result<(), Reject> {
    ensure(
        i64::from(header.time) <= now + super::params::MAX_FUTURE_BLOCK_TIME,
        "time-too-new",
        || "block timestamp too far in the future".into(),
    )
    .map_err(|r| r.of_kind(super::reject::RejectKind::TimeTooNew))
}

/// Checks of a header against its parent (Core's ContextualCheckBlockHeader).
pub fn check_header_context(
    header: &Header,
    params: &Params,
    prev_height: u32,
    prev: &Header,
    anc: &dyn Ancestors,
    now: i64,
) -> Result<(), Reject> {
    let height = prev_height + 1;
    let expected = next_work_required(params, prev_height, prev, header.time, anc);
    ensure(header.bits == expected, "bad-diffbits", || {
        format!(
            "incorrect proof of work: {:#010x}, expected {:#010x}",
            header.bits.to_consensus(),
            expected.to_consensus()
        )
    })?;
    let mtp = median_time_past(prev_height, anc);
    ensure(header.time > mtp, "time-too-old", || {
        format!(
            "block's timestamp {} is not after median time past {mtp}",
            header.time
        )
    })?;
    if params.enforce_bip94 && height % params.difficulty_adjustment_interval() == 0 {
        ensure(
            i64::from(header.time) >= i64::from(prev.time) - MAX_TIMEWARP,
            "time-timewarp-attack",
            || "block's timestamp is too early on diff adjustment block".into(),
        )?;
    }
    check_future_time(header, now)?;
    let v = header.version.to_consensus();
    for (active_from, min) in [
        (params.bip34_height, 2),
        (params.bip66_height, 3),
        (params.bip65_height, 4),
    ] {
        ensure(
            height < active_from || v >= min,
            &format!("bad-version(0x{v:08x})"),
            || format!("rejected nVersion=0x{v:08x} block"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Chain;
    use bitcoin::block::Version;
    use bitcoin::hashes::Hash;
    use bitcoin::{BlockHash, TxMerkleNode};

    fn header(time: u32, bits: u32) -> Header {
        Header {
            version: Version::from_consensus(4),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        }
    }

    /// Mainnet's first retarget, at height 32256: 0x1d00ffff became 0x1d00d86a.
    #[test]
    fn first_mainnet_retarget() {
        let p = Params::for_chain(Chain::Mainnet);
        let first = header(1261130161, 0x1d00ffff); // block 30240
        let last = header(1262152739, 0x1d00ffff); // block 32255
        let anc = |h: u32| (h == 30240).then_some(first);
        let bits = next_work_required(&p, 32255, &last, 1262153464, &anc);
        assert_eq!(bits.to_consensus(), 0x1d00d86a);
    }

    #[test]
    fn testnet_min_difficulty_after_20_minutes_then_back() {
        let p = Params::for_chain(Chain::Testnet3);
        let limit = p.pow_limit_bits().to_consensus();
        let normal = 0x1c0fffff;
        let chain = [header(1000, normal), header(1600, limit)];
        // Heights 4040 and 4041: inside a period (the walk-back stops at period starts).
        let anc = |h: u32| chain.get((h as usize).checked_sub(4040)?).copied();
        // 20 min + 1 s after the parent: minimum difficulty.
        let b = next_work_required(&p, 4042, &header(2000, normal), 2000 + 1201, &anc);
        assert_eq!(b.to_consensus(), limit);
        // Within 20 minutes after a min-difficulty block: back to the last real difficulty.
        let b = next_work_required(&p, 4041, &chain[1], 1700, &anc);
        assert_eq!(b.to_consensus(), normal);
    }

    #[test]
    fn bip94_retargets_from_the_first_block_of_the_period() {
        let p = Params::for_chain(Chain::Testnet4);
        let limit = p.pow_limit_bits().to_consensus();
        let first = header(0, 0x1c0fffff);
        // The last block of the period used the min-difficulty exception.
        let last = header(1_209_600, limit);
        let anc = |h: u32| (h == 0).then_some(first);
        let bits = next_work_required(&p, 2015, &last, 1_209_700, &anc);
        // Exactly two weeks: unchanged from the first block, not from the min-difficulty one.
        assert_eq!(bits.to_consensus(), 0x1c0fffff);
    }

    #[test]
    fn median_time_past_of_eleven() {
        let anc = |h: u32| Some(header(h * 10, 0));
        assert_eq!(median_time_past(20, &anc), 150);
        assert_eq!(median_time_past(2, &anc), 10);
    }
}
