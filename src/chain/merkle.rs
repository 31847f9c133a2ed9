//! Merkle roots with Core's mutation detection (CVE-2012-2459).

use bitcoin::hashes::{sha256d, Hash, HashEngine};

/// Root of `leaves` and whether a level contained two identical adjacent hashes, which lets
/// a block with a duplicated transaction share the root of a valid one.
pub fn root_with_mutation(leaves: &[[u8; 32]]) -> ([u8; 32], bool) {
    if leaves.is_empty() {
        return ([0; 32], false);
    }
    let mut level = leaves.to_vec();
    let mut mutated = false;
    while level.len() > 1 {
        for pair in level.chunks(2) {
            if pair.len() == 2 && pair[0] == pair[1] {
                mutated = true;
            }
        }
        level = level
            .chunks(2)
            .map(|pair| {
                let right = pair.get(1).unwrap_or(&pair[0]);
                let mut e = sha256d::Hash::engine();
                e.input(&pair[0]);
                e.input(right);
                sha256d::Hash::from_engine(e).to_byte_array()
            })
            .collect();
    }
    (level[0], mutated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_last_pair_is_flagged_but_odd_count_is_not() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let (r3, m3) = root_with_mutation(&[a, b, c]);
        let (r4, m4) = root_with_mutation(&[a, b, c, c]);
        assert_eq!(r3, r4, "the CVE-2012-2459 collision");
        assert!(!m3 && m4);
    }
}
