//! The P2P wire frame, decoded as bytes arrive: magic, command, length and checksum are
//! checked before the payload is buffered or parsed, so a peer cannot make us allocate more
//! than one bounded frame. Message types are rust-bitcoin's.

use bitcoin::consensus::Decodable;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::Magic;

/// Largest payload accepted (Core's MAX_PROTOCOL_MESSAGE_LENGTH).
pub const MAX_PAYLOAD: usize = 4_000_000;
const HEADER: usize = 24;
/// A decoder holding more spare capacity than this after a large frame gives it back.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The largest payload a command can carry: a peer declaring more is cut off at the frame
/// header, before it can make us buffer the payload. Commands not listed (blocks, transactions,
/// and those we do not know) may use the protocol's limit.
pub fn max_payload(command: &[u8]) -> usize {
    // A compact-size count: at most 9 bytes.
    const COUNT: usize = 9;
    match command {
        b"verack" | b"getaddr" | b"sendheaders" | b"wtxidrelay" | b"sendaddrv2" | b"mempool" => 0,
        b"ping" | b"pong" | b"feefilter" => 8,
        b"sendcmpct" => 9,
        // Core's MAX_SUBVERSION_LENGTH of 256 plus the fixed fields, with room to spare.
        b"version" => 1024,
        // 2,000 headers of 80 bytes and a zero transaction count each.
        b"headers" => COUNT + 2000 * 81,
        // 50,000 inventory items of 36 bytes (MAX_INV_SZ).
        b"inv" | b"getdata" | b"notfound" => COUNT + 50_000 * 36,
        // 1,000 addresses (MAX_ADDR_TO_SEND); addrv2 addresses are at most 512 bytes.
        b"addr" => COUNT + 1000 * 30,
        b"addrv2" => COUNT + 1000 * (4 + COUNT + 1 + COUNT + 512 + 2),
        // A version, up to 2,000 locator hashes (more is refused later) and a stop hash.
        b"getheaders" | b"getblocks" => 4 + COUNT + 2001 * 32,
        _ => MAX_PAYLOAD,
    }
}

/// Why a peer's byte stream is unusable; the peer is disconnected (and may be scored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Another network's (or no network's) magic.
    #[error("wrong network magic")]
    BadMagic,
    /// The command is not NUL-padded ASCII.
    #[error("malformed command")]
    BadCommand,
    /// The declared payload is larger than any valid message.
    #[error("declared payload of {0} bytes exceeds the limit")]
    Oversized(u32),
    /// The payload does not match its checksum.
    #[error("bad checksum")]
    BadChecksum,
    /// The payload does not parse as its command.
    #[error("malformed {command} payload")]
    Payload {
        /// The command.
        command: String,
    },
}

/// A stream decoder for one peer.
pub struct FrameDecoder {
    magic: Magic,
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder for `magic`'s network.
    pub fn new(magic: Magic) -> FrameDecoder {
        FrameDecoder {
            magic,
            buf: Vec::new(),
        }
    }

    /// How many more bytes may be read now: never more than one whole frame is buffered.
    pub fn space(&self) -> usize {
        (HEADER + MAX_PAYLOAD).saturating_sub(self.buf.len())
    }

    /// Bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes; at most `space()` are taken, the count is returned.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.space());
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<NetworkMessage>, DecodeError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        if self.buf[..4] != self.magic.to_bytes() {
            return Err(DecodeError::BadMagic);
        }
        let command = &self.buf[4..16];
        let name_len = command.iter().position(|b| *b == 0).unwrap_or(12);
        if !command[..name_len].iter().all(|b| b.is_ascii_graphic())
            || command[name_len..].iter().any(|b| *b != 0)
        {
            return Err(DecodeError::BadCommand);
        }
        let len = u32::from_le_bytes([self.buf[16], self.buf[17], self.buf[18], self.buf[19]]);
        if len as usize > max_payload(&command[..name_len]) {
            return Err(DecodeError::Oversized(len));
        }
        let end = HEADER + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let sum = sha256d::Hash::hash(&self.buf[HEADER..end]).to_byte_array();
        if sum[..4] != self.buf[20..24] {
            return Err(DecodeError::BadChecksum);
        }
        let msg = match RawNetworkMessage::consensus_decode(&mut &self.buf[..end]) {
            Ok(m) => m.into_payload(),
            Err(_) if &command[..name_len] == b"version" => {
                // The relay flag is optional (BIP37); Core takes a version without it as
                // relay = true, and so does this.
                let mut payload = self.buf[HEADER..end].to_vec();
                payload.push(1);
                let v = VersionMessage::consensus_decode(&mut &payload[..]).map_err(|_| {
                    DecodeError::Payload {
                        command: "version".into(),
                    }
                })?;
                NetworkMessage::Version(v)
            }
            Err(_) => {
                let name = String::from_utf8_lossy(&command[..name_len]).into_owned();
                return Err(DecodeError::Payload { command: name });
            }
        };
        self.buf.drain(..end);
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() < KEEP_CAPACITY {
            // A block's worth of capacity per idle peer would add up.
            self.buf.shrink_to(KEEP_CAPACITY);
        }
        Ok(Some(msg))
    }
}

/// A message framed for `magic`'s network.
pub fn encode(magic: Magic, msg: NetworkMessage) -> Vec<u8> {
    bitcoin::consensus::serialize(&RawNetworkMessage::new(magic, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::p2p::message_blockdata::GetHeadersMessage;

    const MAGIC: Magic = Magic::REGTEST;

    /// xorshift64*: fixed seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// A `version` without the optional relay byte (protocol 60000 and 70015 clients send
    /// one) decodes with relay = true; one missing more is malformed.
    #[test]
    fn a_version_without_its_relay_byte_is_relay_true() {
        let a = bitcoin::p2p::Address::new(
            &"127.0.0.1:0".parse().unwrap(),
            bitcoin::p2p::ServiceFlags::NONE,
        );
        let mut v = VersionMessage::new(
            bitcoin::p2p::ServiceFlags::NONE,
            0,
            a.clone(),
            a,
            7,
            "/x/".into(),
            5,
        );
        v.version = 60_000;
        v.relay = false;
        let mut payload = bitcoin::consensus::serialize(&v);
        payload.pop();
        let frame = |payload: &[u8]| {
            let mut f = MAGIC.to_bytes().to_vec();
            f.extend_from_slice(b"version\0\0\0\0\0");
            f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            f.extend_from_slice(&sha256d::Hash::hash(payload).to_byte_array()[..4]);
            f.extend_from_slice(payload);
            f
        };
        let mut d = FrameDecoder::new(MAGIC);
        d.push(&frame(&payload));
        match d.next_message() {
            Ok(Some(NetworkMessage::Version(got))) => {
                assert!(got.relay);
                assert_eq!((got.version, got.start_height, got.nonce), (60_000, 5, 7));
            }
            other => panic!("{other:?}"),
        }
        payload.truncate(payload.len() - 2);
        let mut d = FrameDecoder::new(MAGIC);
        d.push(&frame(&payload));
        assert!(matches!(d.next_message(), Err(DecodeError::Payload { .. })));
    }

    #[test]
    fn messages_round_trip_one_byte_at_a_time() {
        let msgs = vec![
            NetworkMessage::Ping(7),
            NetworkMessage::Verack,
            NetworkMessage::GetHeaders(GetHeadersMessage::new(
                vec![bitcoin::BlockHash::all_zeros()],
                bitcoin::BlockHash::all_zeros(),
            )),
            NetworkMessage::Headers(vec![
                bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header,
            ]),
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode(MAGIC, m.clone())).collect();
        let mut d = FrameDecoder::new(MAGIC);
        let mut got = Vec::new();
        for b in bytes {
            assert_eq!(d.push(&[b]), 1);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn bad_frames_are_refused_before_their_payload_is_read() {
        let ping = encode(MAGIC, NetworkMessage::Ping(1));
        let mut wrong_magic = ping.clone();
        wrong_magic[0] ^= 1;
        let mut oversized = ping.clone();
        oversized[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
        let mut bad_sum = ping.clone();
        bad_sum[20] ^= 1;
        let mut bad_cmd = ping.clone();
        bad_cmd[6] = 0x01;
        for (bytes, want) in [
            (wrong_magic, DecodeError::BadMagic),
            (oversized[..24].to_vec(), DecodeError::Oversized(4_000_001)),
            (bad_sum, DecodeError::BadChecksum),
            (bad_cmd, DecodeError::BadCommand),
        ] {
            let mut d = FrameDecoder::new(MAGIC);
            d.push(&bytes);
            assert_eq!(d.next_message().unwrap_err(), want);
        }
        // A well-framed ping whose payload is short does not parse.
        let mut short = encode(MAGIC, NetworkMessage::Verack);
        short[4..16].copy_from_slice(b"ping\0\0\0\0\0\0\0\0");
        let mut d = FrameDecoder::new(MAGIC);
        d.push(&short);
        assert!(matches!(d.next_message(), Err(DecodeError::Payload { .. })));
    }

    /// A small command declaring a large payload is refused at its header: a `ping` may not
    /// make us buffer more than its 8 bytes, nor `headers` more than 2,000 headers.
    #[test]
    fn each_command_is_held_to_what_it_can_carry() {
        let frame_header = |cmd: &[u8], len: u32| {
            let mut f = MAGIC.to_bytes().to_vec();
            let mut name = [0u8; 12];
            name[..cmd.len()].copy_from_slice(cmd);
            f.extend_from_slice(&name);
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&[0; 4]);
            f
        };
        for (cmd, ok, too_big) in [
            (&b"ping"[..], 8u32, 9u32),
            (b"verack", 0, 1),
            (b"headers", 162_009, 162_010),
            (b"inv", 1_800_009, 1_800_010),
            (b"block", 4_000_000, 4_000_001),
            (b"someday", 4_000_000, 4_000_001),
        ] {
            let mut d = FrameDecoder::new(MAGIC);
            d.push(&frame_header(cmd, ok));
            let got = d.next_message();
            assert!(
                !matches!(got, Err(DecodeError::Oversized(_))),
                "{cmd:?} {ok}"
            );
            let mut d = FrameDecoder::new(MAGIC);
            d.push(&frame_header(cmd, too_big));
            assert_eq!(d.next_message(), Err(DecodeError::Oversized(too_big)));
        }
    }

    /// Random bytes, in random chunks, half of them behind a valid header: never a panic, and
    /// never more than one frame buffered.
    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let mut rng = Rng(0xdec0de);
        for round in 0..2000 {
            let len = (rng.next() % 20_000) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round % 2 == 0 && bytes.len() >= 24 {
                bytes[..4].copy_from_slice(&MAGIC.to_bytes());
                bytes[4..16].copy_from_slice(b"tx\0\0\0\0\0\0\0\0\0\0");
            }
            let mut d = FrameDecoder::new(MAGIC);
            let mut at = 0;
            'feed: while at < bytes.len() {
                let chunk = 1 + (rng.next() % 4096) as usize;
                let end = (at + chunk).min(bytes.len());
                at += d.push(&bytes[at..end]);
                assert!(d.buffered() <= HEADER + MAX_PAYLOAD);
                loop {
                    match d.next_message() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}
