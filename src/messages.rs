//! What crosses between the p2p thread, the chain thread and RPC. It lives apart from all three
//! so that `chain` and `rpc` can talk to `p2p` without importing it.

use bitcoin::block::Header;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Block, BlockHash};
use crossbeam_channel::Sender;
use std::net::SocketAddr;

/// The protocol version spoken (Core's, with wtxidrelay).
pub const PROTOCOL_VERSION: u32 = 70016;

/// Core's default ban time: 24 hours.
pub const DEFAULT_BAN_SECS: i64 = 24 * 3600;

/// A connection's id, unique for the life of the process (Core's peer id).
pub type PeerId = u64;

/// What the p2p thread tells the chain thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// `headers` arrived.
    Headers {
        /// From whom.
        peer: PeerId,
        /// The headers, in the peer's order.
        headers: Vec<Header>,
    },
    /// A block we asked for arrived.
    Block {
        /// From whom.
        peer: PeerId,
        /// The block.
        block: Box<Block>,
    },
    /// The peer asks for headers after the first locator hash on our active chain.
    GetHeaders {
        /// From whom.
        peer: PeerId,
        /// Its locator.
        locator: Vec<BlockHash>,
        /// Where to stop (all zeros: up to 2,000).
        stop: BlockHash,
    },
    /// The peer asks for the hashes of the active chain after its locator (`getblocks`).
    GetBlocks {
        /// From whom.
        peer: PeerId,
        /// Its locator.
        locator: Vec<BlockHash>,
        /// Where to stop (left out, as Core does).
        stop: BlockHash,
    },
    /// The peer asks for blocks (a bounded slice of its `getdata`).
    GetData {
        /// From whom.
        peer: PeerId,
        /// Block items only.
        items: Vec<Inventory>,
    },
    /// A transaction a peer relayed, for the mempool to judge.
    Tx {
        /// From whom.
        peer: PeerId,
        /// The transaction.
        tx: Box<bitcoin::Transaction>,
    },
}

/// A transaction the mempool took in, as relay needs it.
#[derive(Debug, Clone)]
pub struct RelayTx {
    /// The transaction (shared with the pool's entry).
    pub tx: std::sync::Arc<bitcoin::Transaction>,
    /// Its id.
    pub txid: bitcoin::Txid,
    /// Its witness id.
    pub wtxid: bitcoin::Wtxid,
    /// Its own fee rate, sat/kvB: what a peer's `feefilter` is compared with.
    pub fee_rate: u64,
    /// Its in-pool ancestors: parents are announced before their children.
    pub ancestors: usize,
}

/// One change of the mempool's contents.
#[derive(Debug, Clone)]
pub enum MempoolChange {
    /// Entered (from a peer, RPC, a reorganisation or the orphan pool).
    Added(RelayTx),
    /// Left (mined, conflicted, evicted, expired, replaced).
    Removed(bitcoin::Txid),
}

/// What the mempool did since it last told p2p, in order.
#[derive(Debug, Clone, Default)]
pub struct MempoolDelta {
    /// Entries and exits.
    pub changes: Vec<MempoolChange>,
    /// Relayed transactions refused: not asked for again until the tip changes.
    pub rejected: Vec<(bitcoin::Txid, bitcoin::Wtxid)>,
    /// Orphans' missing parents, to ask of the peer that sent the orphan.
    pub fetch: Vec<(PeerId, Vec<bitcoin::Txid>)>,
    /// The pool's fee floor, sat/kvB (sent to peers as `feefilter`).
    pub floor: u64,
}

/// What the chain knows that block download needs, sent to p2p after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Active tip.
    pub tip: (BlockHash, u32),
    /// Most-work valid header.
    pub best_header: (BlockHash, u32),
    /// Locator from the best header, for `getheaders`.
    pub locator: Vec<BlockHash>,
    /// Blocks on the best header chain within the download window that have no data, lowest first.
    pub wanted: Vec<(u32, BlockHash)>,
    /// Headers of blocks connected since the previous summary (at most 8, oldest first), to announce.
    pub connected: Vec<Header>,
    /// Core's initial block download: the tip is more than a day old.
    pub ibd: bool,
    /// Whether blocks below some height are gone (services: `NODE_NETWORK_LIMITED`).
    pub pruned: bool,
    /// Blocks cannot be stored now (a full disk): none is wanted, and blocks that arrive are
    /// dropped, so they must be asked for again once this clears.
    pub paused: bool,
}

impl Default for ChainSummary {
    /// Before the chain's first summary: nothing known, nothing wanted.
    fn default() -> ChainSummary {
        let zero = <BlockHash as bitcoin::hashes::Hash>::all_zeros();
        ChainSummary {
            tip: (zero, 0),
            best_header: (zero, 0),
            locator: Vec::new(),
            wanted: Vec::new(),
            connected: Vec::new(),
            ibd: true,
            pruned: false,
            paused: false,
        }
    }
}

/// The outcome of an RPC command carried out by p2p, in the words RPC reports.
pub type CommandReply = Sender<Result<(), CommandError>>;

/// Why p2p refused an RPC's command; maps to Core's RPC error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Core's RPC_CLIENT_NODE_ALREADY_ADDED (-23).
    #[error("Error: Node already added")]
    AlreadyAdded,
    /// Core's RPC_CLIENT_NODE_NOT_ADDED (-24).
    #[error("Error: Node could not be removed. It has not been added previously.")]
    NotAdded,
    /// Core's RPC_CLIENT_NODE_NOT_CONNECTED (-29).
    #[error("Node not found in connected nodes")]
    NotConnected,
    /// Core's RPC_CLIENT_NODE_ALREADY_ADDED for bans (-23).
    #[error("Error: IP/Subnet already banned")]
    AlreadyBanned,
    /// Core's RPC_CLIENT_INVALID_IP_OR_SUBNET (-30).
    #[error("Error: Unban failed. Requested address/subnet was not previously manually banned.")]
    NotBanned,
}

/// `addnode`'s sub-commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddNode {
    /// Keep connected, retried forever.
    Add,
    /// Stop keeping connected.
    Remove,
    /// Connect once.
    OneTry,
}

/// Commands to the p2p thread (from the chain thread, RPC and the supervisor).
#[derive(Debug)]
pub enum P2pCommand {
    /// Stop accepting inbound connections (first step of shutdown).
    CloseListener,
    /// Send a message to one peer (chain's answers to `getheaders`/`getdata`).
    Send {
        /// To whom.
        peer: PeerId,
        /// What.
        msg: NetworkMessage,
    },
    /// The chain's answer to `getblocks`: announce these blocks to the peer by `inv`.
    BlocksAfter {
        /// To whom.
        peer: PeerId,
        /// Hashes of the active chain, oldest first (at most 500).
        hashes: Vec<BlockHash>,
    },
    /// The chain changed: new wanted blocks, tip to announce.
    Chain(Box<ChainSummary>),
    /// The chain processed a peer's headers.
    HeadersDone {
        /// The peer.
        peer: PeerId,
        /// Height of the last header of the message, if it connected.
        last: Option<(BlockHash, u32)>,
        /// The message was full (2,000): ask for more.
        more: bool,
        /// The first header did not connect to anything known: ask with our locator.
        unconnected: bool,
    },
    /// A peer's `getheaders` locator or `getdata` shows it has our active chain up to `height`.
    PeerHas {
        /// The peer.
        peer: PeerId,
        /// The height of the locator's first hash on our active chain.
        height: u32,
    },
    /// A peer sent something consensus-invalid: disconnect and ban.
    Misbehaved {
        /// The peer.
        peer: PeerId,
        /// Why (logged and recorded in the ban).
        reason: String,
    },
    /// `addnode`.
    AddNode {
        /// Where.
        addr: SocketAddr,
        /// What to do.
        what: AddNode,
        /// The outcome.
        reply: CommandReply,
    },
    /// `disconnectnode` by address or id.
    Disconnect {
        /// By address.
        addr: Option<SocketAddr>,
        /// By id.
        peer: Option<PeerId>,
        /// The outcome.
        reply: CommandReply,
    },
    /// `setban add|remove`.
    SetBan {
        /// The address or range.
        range: crate::subnet::Subnet,
        /// Seconds from now (add) or `None` (remove).
        ban_secs: Option<i64>,
        /// The outcome.
        reply: CommandReply,
    },
    /// `clearbanned`.
    ClearBanned,
    /// `setnetworkactive`.
    SetActive(bool),
    /// `ping`: ping every peer now.
    PingAll,
    /// The mempool changed: announce, forget, stop asking.
    Mempool(Box<MempoolDelta>),
}

/// How other threads reach the p2p thread: its bounded command queue, and the waker that gets
/// the mio loop to read it at once.
#[derive(Clone)]
pub struct P2pHandle {
    tx: Sender<P2pCommand>,
    waker: Option<std::sync::Arc<mio::Waker>>,
}

impl P2pHandle {
    /// A handle over the command queue; without a waker the loop reads it on its next tick.
    pub fn new(tx: Sender<P2pCommand>, waker: Option<std::sync::Arc<mio::Waker>>) -> P2pHandle {
        P2pHandle { tx, waker }
    }

    /// Queues `cmd`, waiting up to `timeout` for room.
    pub fn send(
        &self,
        cmd: P2pCommand,
        timeout: std::time::Duration,
    ) -> Result<(), Box<crossbeam_channel::SendTimeoutError<P2pCommand>>> {
        let sent = self.tx.send_timeout(cmd, timeout).map_err(Box::new);
        if let Some(w) = &self.waker {
            let _ = w.wake();
        }
        sent
    }
}

/// Splits `host[:port]` (or an IP literal with or without port) into a lookup or an address.
pub fn parse_peer(s: &str, default_port: u16) -> Result<SocketAddr, (String, u16)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            Err((host.to_owned(), port.parse().unwrap_or(default_port)))
        }
        _ => Err((s.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_as_addresses_or_names() {
        assert_eq!(
            parse_peer("127.0.0.1:1234", 8333),
            Ok("127.0.0.1:1234".parse().unwrap())
        );
        assert_eq!(parse_peer("::1", 8333), Ok("[::1]:8333".parse().unwrap()));
        assert_eq!(
            parse_peer("localhost:99", 8333),
            Err(("localhost".into(), 99))
        );
        assert_eq!(
            parse_peer("seed.example", 8333),
            Err(("seed.example".into(), 8333))
        );
    }
}
