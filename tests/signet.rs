//! BIP325 block signatures, with a challenge the test holds the key for.

use bitcoin::hashes::Hash;
use bitcoin::key::Secp256k1;
use bitcoin::opcodes::all::OP_CHECKMULTISIG;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Block, CompactTarget, ScriptBuf, Witness};
use bllvm_node::chain::block_check::witness_commitment_index;
use bllvm_node::chain::mining::{build_block, update_merkle_root, Template};
use bllvm_node::chain::params::Params;
use bllvm_node::chain::signet::{check_solution, signet_txs, SIGNET_HEADER};
use bllvm_node::config::Chain;

fn challenge_for(sk: &SecretKey) -> ScriptBuf {
    let pk = bitcoin::PublicKey::new(sk.public_key(&Secp256k1::new()));
    Builder::new()
        .push_int(1)
        .push_key(&pk)
        .push_int(1)
        .push_opcode(OP_CHECKMULTISIG)
        .into_script()
}

/// A block at height 1 on signet, signed for `challenge` with `signer`.
fn signed_block(challenge: &ScriptBuf, signer: &SecretKey) -> Block {
    let params = Params::for_chain(Chain::Signet);
    let t = Template {
        prev: params.genesis.block_hash(),
        height: 1,
        time: params.genesis.header.time + 600,
        bits: CompactTarget::from_consensus(0x1e0377ae),
        fees: 0,
    };
    let mut block = build_block(&params, &t, ScriptBuf::new(), vec![]);
    let idx = witness_commitment_index(&block.txdata[0]).unwrap();
    let commitment = block.txdata[0].output[idx].script_pubkey.to_bytes();
    let with_push = |payload: Vec<u8>| {
        let mut script = commitment.clone();
        script.extend(
            Builder::new()
                .push_slice(PushBytesBuf::try_from(payload).unwrap())
                .into_script()
                .as_bytes(),
        );
        ScriptBuf::from_bytes(script)
    };
    // As Core's signet miner: sign the block carrying a header-only push, which is what the
    // verifier reconstructs after taking the solution out.
    block.txdata[0].output[idx].script_pubkey = with_push(SIGNET_HEADER.to_vec());
    let (_, to_sign) = signet_txs(&block, challenge).unwrap();
    let sighash = SighashCache::new(&to_sign)
        .legacy_signature_hash(0, challenge, EcdsaSighashType::All.to_u32())
        .unwrap();
    let secp = Secp256k1::new();
    let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), signer);
    let mut sig_bytes = sig.serialize_der().to_vec();
    sig_bytes.push(EcdsaSighashType::All.to_u32() as u8);
    let script_sig = Builder::new()
        .push_int(0) // CHECKMULTISIG's extra pop
        .push_slice(PushBytesBuf::try_from(sig_bytes).unwrap())
        .into_script();
    let mut solution = SIGNET_HEADER.to_vec();
    solution.extend(bitcoin::consensus::serialize(&script_sig));
    solution.extend(bitcoin::consensus::serialize(&Witness::new()));
    block.txdata[0].output[idx].script_pubkey = with_push(solution);
    update_merkle_root(&mut block);
    block
}

#[test]
fn a_block_signed_for_the_challenge_verifies_and_tampering_fails() {
    let key = SecretKey::from_slice(&[7; 32]).unwrap();
    let challenge = challenge_for(&key);
    let genesis = Params::for_chain(Chain::Signet).genesis.block_hash();
    let block = signed_block(&challenge, &key);
    check_solution(&block, &challenge, &genesis).unwrap();

    let mut later = block.clone();
    later.header.time += 1;
    assert_eq!(
        check_solution(&later, &challenge, &genesis)
            .unwrap_err()
            .reason,
        "bad-signet-blksig"
    );

    let other = SecretKey::from_slice(&[8; 32]).unwrap();
    let forged = signed_block(&challenge, &other);
    assert_eq!(
        check_solution(&forged, &challenge, &genesis)
            .unwrap_err()
            .reason,
        "bad-signet-blksig"
    );
}

#[test]
fn the_default_challenge_rejects_unsigned_blocks_but_not_genesis() {
    let params = Params::for_chain(Chain::Signet);
    let challenge = params.signet_challenge.clone().unwrap();
    assert_eq!(challenge.len(), 71);
    let genesis = params.genesis.block_hash();
    check_solution(&params.genesis, &challenge, &genesis).unwrap();
    let key = SecretKey::from_slice(&[7; 32]).unwrap();
    let block = signed_block(&challenge_for(&key), &key);
    assert_eq!(
        check_solution(&block, &challenge, &genesis)
            .unwrap_err()
            .reason,
        "bad-signet-blksig"
    );
}

fn core_signet_blocks() -> Vec<Block> {
    let path = format!(
        "{}/tests/data/signet_blocks.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let hexes: Vec<String> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    hexes
        .iter()
        .map(|h| {
            use bitcoin::hex::FromHex;
            bitcoin::consensus::deserialize(&Vec::<u8>::from_hex(h).unwrap()).unwrap()
        })
        .collect()
}

/// Core's own pregenerated default-signet blocks: every one is accepted by the full validation
/// path (PoW at signet's limit, BIP34, witness commitment, block solution).
#[test]
fn cores_signet_blocks_are_accepted_on_the_default_signet() {
    use bllvm_node::chain::chainstate::{ChainState, Submitted};
    let blocks = core_signet_blocks();
    assert_eq!(blocks.len(), 10);
    let mut cs = ChainState::new(Params::for_chain(Chain::Signet));
    let now = i64::from(blocks[9].header.time) + 600;
    for (i, b) in blocks.into_iter().enumerate() {
        let (outcome, _) = cs
            .submit_block(b, now)
            .unwrap_or_else(|r| panic!("block {}: {r}", i + 1));
        assert_eq!(outcome, Submitted::Active);
    }
    assert_eq!(cs.tip().1, 10);
}

/// As Core's test: the same challenge as a 2-of-2 rejects them.
#[test]
fn cores_signet_blocks_fail_a_2_of_2_challenge() {
    let params = Params::for_chain(Chain::Signet);
    let mut two_of_two = params.signet_challenge.clone().unwrap().to_bytes();
    two_of_two[0] = 0x52; // OP_2
    let block = &core_signet_blocks()[0];
    let err = check_solution(
        block,
        &ScriptBuf::from_bytes(two_of_two),
        &params.genesis.block_hash(),
    )
    .unwrap_err();
    assert_eq!(err.reason, "bad-signet-blksig");
    check_solution(
        block,
        params.signet_challenge.as_ref().unwrap(),
        &params.genesis.block_hash(),
    )
    .unwrap();
}
