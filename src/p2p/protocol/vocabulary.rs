//! The rules of the message vocabulary once a peer is past its handshake: what is too large
//! (a ban), what goes to the chain, what is answered here, what is ignored.

use super::{canonical, Io, Protocol};
use crate::messages::{PeerEvent, PeerId};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::ServiceFlags;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Items in one `inv`/`getdata`, and block requests waiting per peer (Core's MAX_INV_SZ).
pub const MAX_INV: usize = 50_000;
/// Addresses in one `addr` message (Core's MAX_ADDR_TO_SEND).
pub const MAX_ADDR: usize = 1000;
/// Locator entries accepted (Core's MAX_LOCATOR_SZ).
pub const MAX_LOCATOR: usize = 101;

/// The block hashes an `inv` or `notfound` names.
fn block_hashes(items: &[Inventory]) -> Vec<bitcoin::BlockHash> {
    items
        .iter()
        .filter_map(|i| match i {
            Inventory::Block(h) | Inventory::WitnessBlock(h) => Some(*h),
            _ => None,
        })
        .collect()
}

impl Protocol {
    /// A message past the handshake about blocks, headers or addresses.
    pub(super) fn route(&mut self, id: PeerId, msg: NetworkMessage, now: Instant, now_unix: i64) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let tell = |ev| Io::Chain(ev);
        match msg {
            NetworkMessage::Headers(h) => {
                if h.len() > crate::chain::serve::MAX_HEADERS {
                    return self.misbehaved(
                        id,
                        "oversized-headers",
                        "more than 2000 headers",
                        now_unix,
                    );
                }
                self.out.push(tell(PeerEvent::Headers {
                    peer: id,
                    headers: h,
                }));
            }
            NetworkMessage::Block(b) => {
                let (forward, actions) = self.sync.block_arrived(id, b.block_hash(), now);
                if forward {
                    p.last_block = Some(now);
                    p.last_announce = Some(now);
                    let addr = p.addr;
                    self.manager
                        .book
                        .record(&addr, super::Quality::UsefulBlock, now_unix);
                    self.out.push(tell(PeerEvent::Block {
                        peer: id,
                        block: Box::new(b),
                    }));
                }
                self.sync_actions(actions, now_unix);
            }
            NetworkMessage::Inv(items) => {
                if items.len() > MAX_INV {
                    return self.misbehaved(id, "oversized-inv", "inv too large", now_unix);
                }
                let a = self.relay.on_inv(id, &items, now);
                self.relay_actions(a);
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                let blocks = block_hashes(&items);
                if !blocks.is_empty() {
                    let a = self.sync.on_inv(id, &blocks, now);
                    if !a.is_empty() {
                        // Something it announced was new to us.
                        p.last_announce = Some(now);
                    }
                    self.sync_actions(a, now_unix);
                }
            }
            NetworkMessage::GetHeaders(m) => {
                if m.locator_hashes.len() > MAX_LOCATOR {
                    return self.misbehaved(id, "oversized-locator", "locator too large", now_unix);
                }
                self.out.push(tell(PeerEvent::GetHeaders {
                    peer: id,
                    locator: m.locator_hashes,
                    stop: m.stop_hash,
                }));
            }
            NetworkMessage::GetBlocks(m) => {
                if m.locator_hashes.len() > MAX_LOCATOR {
                    return self.misbehaved(id, "oversized-locator", "locator too large", now_unix);
                }
                self.out.push(tell(PeerEvent::GetBlocks {
                    peer: id,
                    locator: m.locator_hashes,
                    stop: m.stop_hash,
                }));
            }
            NetworkMessage::GetData(items) => {
                if items.len() > MAX_INV || p.getdata.len() + items.len() > MAX_INV {
                    return self.misbehaved(id, "oversized-getdata", "getdata too large", now_unix);
                }
                let mut txs = Vec::new();
                for i in items {
                    match i {
                        Inventory::Block(_) | Inventory::WitnessBlock(_) => p.getdata.push_back(i),
                        other => txs.push(other),
                    }
                }
                let (sent, missing) = self.relay.on_getdata(id, txs);
                self.relay_actions(sent);
                if !missing.is_empty() {
                    self.send(id, NetworkMessage::NotFound(missing));
                }
            }
            NetworkMessage::NotFound(items) => {
                let a = self.relay.on_notfound(id, &items, now);
                self.relay_actions(a);
                let blocks = block_hashes(&items);
                let a = self.sync.not_found(id, &blocks, now);
                self.sync_actions(a, now_unix);
            }
            // Only inbound peers are answered, once (Core: against address-book fingerprinting).
            NetworkMessage::GetAddr if p.inbound() && !p.answered_getaddr => {
                p.answered_getaddr = true;
                let v2 = p.peer.features.addr_v2;
                let reply = self.addr_reply(v2);
                self.send(id, reply);
            }
            NetworkMessage::Addr(list) => {
                if list.len() > MAX_ADDR {
                    return self.misbehaved(id, "oversized-addr", "addr too large", now_unix);
                }
                for (_, a) in list {
                    if let Ok(sa) = a.socket_addr() {
                        self.learn(canonical(sa), now_unix);
                    }
                }
            }
            NetworkMessage::AddrV2(list) => {
                if list.len() > MAX_ADDR {
                    return self.misbehaved(id, "oversized-addr", "addrv2 too large", now_unix);
                }
                for a in list {
                    if let Ok(sa) = a.socket_addr() {
                        self.learn(canonical(sa), now_unix);
                    }
                }
            }
            NetworkMessage::Tx(tx) => {
                let a = self.relay.on_tx(id, tx, now);
                self.relay_actions(a);
            }
            NetworkMessage::FeeFilter(rate) => self.relay.on_feefilter(id, rate),
            // BIP35: answered only where allowed; Core disconnects peers without permission.
            NetworkMessage::MemPool => {
                let ip = p.addr.ip();
                if self.mempool_requests_from.iter().any(|s| s.contains(&ip)) {
                    self.relay.on_mempool_request(id);
                } else {
                    log::info!(peer = id; "mempool request from {ip} without permission");
                    self.close(id, "mempool-request");
                }
            }
            // `reject`, `sendcmpct` and unknown commands are ignored, as Core does.
            _ => {}
        }
    }

    fn learn(&mut self, a: SocketAddr, now_unix: i64) {
        if a.port() != 0 && !a.ip().is_unspecified() {
            self.manager.book.add(a, super::Source::Gossip, now_unix);
        }
    }

    /// Our answer to `getaddr`: known addresses with when they were last seen, as `addrv2` to
    /// peers that asked for it (BIP155), `addr` to the rest.
    fn addr_reply(&mut self, v2: bool) -> NetworkMessage {
        let salt = self.rng.next_u64();
        let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        let book = &self.manager.book;
        let sample = book
            .candidates(&[], MAX_ADDR, salt, |_| true)
            .into_iter()
            .map(|a| {
                let seen = book.get(&a).map_or(0, |e| e.last_seen);
                (u32::try_from(seen).unwrap_or(0), a)
            });
        if v2 {
            NetworkMessage::AddrV2(
                sample
                    .map(|(time, a)| AddrV2Message {
                        time,
                        services,
                        addr: match a.ip() {
                            IpAddr::V4(ip) => AddrV2::Ipv4(ip),
                            IpAddr::V6(ip) => AddrV2::Ipv6(ip),
                        },
                        port: a.port(),
                    })
                    .collect(),
            )
        } else {
            NetworkMessage::Addr(
                sample
                    .map(|(time, a)| (time, Address::new(&a, services)))
                    .collect(),
            )
        }
    }
}
