//! Commands from the chain thread, RPC and the supervisor.

use super::{canonical, Io, Protocol};
use crate::messages::{AddNode, ChainSummary, CommandError, P2pCommand};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use std::time::Instant;

impl Protocol {
    /// Carries out a command.
    pub fn command(&mut self, cmd: P2pCommand, now: Instant, now_unix: i64) {
        match cmd {
            P2pCommand::CloseListener => self.out.push(Io::CloseListener),
            P2pCommand::Send { peer, msg } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let answered = match &msg {
                    NetworkMessage::Block(_) => 1,
                    NetworkMessage::NotFound(items) => items.len(),
                    _ => 0,
                };
                p.getdata_out = p.getdata_out.saturating_sub(answered);
                let continued = match (&msg, p.continuation) {
                    (NetworkMessage::Block(b), Some(h)) => b.block_hash() == h,
                    _ => false,
                };
                if continued {
                    p.continuation = None;
                }
                self.send(peer, msg);
                if continued {
                    // Right after the block, so the peer's next `getblocks` starts from it.
                    let tip = Inventory::Block(self.sync.chain().tip.0);
                    self.send(peer, NetworkMessage::Inv(vec![tip]));
                }
            }
            P2pCommand::BlocksAfter { peer, hashes } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if hashes.len() == crate::chain::serve::MAX_GETBLOCKS {
                    p.continuation = hashes.last().copied();
                }
                if !hashes.is_empty() {
                    let inv = hashes.into_iter().map(Inventory::Block).collect();
                    self.send(peer, NetworkMessage::Inv(inv));
                }
            }
            P2pCommand::Chain(summary) => self.chain_changed(*summary, now, now_unix),
            P2pCommand::Mempool(delta) => {
                let a = self.relay.mempool_changed(*delta, now);
                self.relay_actions(a);
            }
            P2pCommand::HeadersDone {
                peer,
                last,
                more,
                unconnected,
            } => {
                let best = self.sync.chain().best_header.1;
                if let Some(p) = self.peers.get_mut(&peer) {
                    if last.is_some_and(|(_, h)| h > best) {
                        p.last_announce = Some(now);
                    }
                }
                let a = self.sync.headers_done(peer, last, more, unconnected, now);
                self.sync_actions(a, now_unix);
            }
            P2pCommand::PeerHas { peer, height } => self.sync.peer_has(peer, height),
            P2pCommand::Misbehaved { peer, reason } => {
                self.misbehaved(peer, "misbehaviour", &reason, now_unix)
            }
            P2pCommand::AddNode { addr, what, reply } => {
                let r = self.add_node(canonical(addr), what, now, now_unix);
                self.out.push(Io::Reply(reply, r));
            }
            P2pCommand::Disconnect { addr, peer, reply } => {
                let hit = self
                    .peers
                    .iter()
                    .find(|(id, p)| {
                        !p.closing
                            && (addr.is_some_and(|a| canonical(a) == p.addr) || peer == Some(**id))
                    })
                    .map(|(id, _)| *id);
                let r = match hit {
                    Some(id) => {
                        self.close(id, "rpc-disconnect");
                        Ok(())
                    }
                    None => Err(CommandError::NotConnected),
                };
                self.out.push(Io::Reply(reply, r));
            }
            P2pCommand::SetBan {
                range,
                ban_secs,
                reply,
            } => {
                let r = match ban_secs {
                    Some(_) if self.manager.bans.has(&range, now_unix) => {
                        Err(CommandError::AlreadyBanned)
                    }
                    Some(secs) => {
                        self.manager.bans.ban(range, now_unix, secs, "manual");
                        let hit: Vec<_> = self
                            .peers
                            .iter()
                            .filter(|(_, p)| range.contains(&p.addr.ip()))
                            .map(|(id, _)| *id)
                            .collect();
                        for id in hit {
                            self.close(id, "banned");
                        }
                        Ok(())
                    }
                    None if self.manager.bans.unban(&range) => Ok(()),
                    None => Err(CommandError::NotBanned),
                };
                if r.is_ok() {
                    self.changed = true;
                    self.out.push(Io::Persist);
                }
                self.out.push(Io::Reply(reply, r));
            }
            P2pCommand::ClearBanned => {
                self.manager.bans.clear();
                self.changed = true;
                self.out.push(Io::Persist);
            }
            P2pCommand::SetActive(on) => {
                self.active = on;
                self.changed = true;
                log::info!(
                    "network activity {}",
                    if on { "enabled" } else { "disabled" }
                );
                if !on {
                    let ids: Vec<_> = self.peers.keys().copied().collect();
                    for id in ids {
                        self.close(id, "network-inactive");
                    }
                }
            }
            P2pCommand::PingAll => {
                for p in self.peers.values_mut() {
                    p.peer.ping_soon(now);
                }
                self.tick_peers(now, now_unix);
            }
        }
    }

    fn add_node(
        &mut self,
        addr: std::net::SocketAddr,
        what: AddNode,
        now: Instant,
        now_unix: i64,
    ) -> Result<(), CommandError> {
        self.changed = true;
        match what {
            AddNode::Add if self.manager.add_node(addr, now_unix) => Ok(()),
            AddNode::Add => Err(CommandError::AlreadyAdded),
            AddNode::Remove if self.manager.remove_node(&addr) => Ok(()),
            AddNode::Remove => Err(CommandError::NotAdded),
            // Core returns at once when the address is already connected: a second connection
            // would not be a new peer.
            AddNode::OneTry if self.connected_to(&addr) => Ok(()),
            AddNode::OneTry => {
                self.manager.one_try(addr);
                // Core's onetry connections are manual: never evicted as extra, never rotated.
                self.dial(addr, true, now, now_unix);
                Ok(())
            }
        }
    }

    fn chain_changed(&mut self, summary: ChainSummary, now: Instant, now_unix: i64) {
        log::debug!(
            "chain summary: tip {} at {}, {} blocks wanted",
            summary.tip.0,
            summary.tip.1,
            summary.wanted.len()
        );
        let pruned = summary.pruned != self.sync.chain().pruned;
        if self.tip_since.is_none_or(|(tip, _)| tip != summary.tip.0) {
            self.tip_since = Some((summary.tip.0, now));
            self.relay.tip_changed(summary.ibd);
        }
        let a = self.sync.chain_changed(summary, now);
        self.sync_actions(a, now_unix);
        self.changed |= pruned;
    }
}
