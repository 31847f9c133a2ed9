//! What `getpeerinfo`, `getnetworkinfo`, `listbanned` and the gauges show, built from the
//! sockets' counters and the protocol's state.

use super::connection::Connection;
use super::peer::Direction;
use super::protocol::Protocol;
use crate::state::{BanInfo, NetworkView, PeerInfo};

/// A view and the totals the gauges need.
pub struct Built {
    /// The view (`peers_max` left at its default: the reactor keeps the published one).
    pub view: NetworkView,
    /// Ready peers by direction: inbound, outbound, manual.
    pub by_direction: [i64; 3],
    /// Bytes in all send queues.
    pub queued: usize,
    /// Bytes of unfinished incoming frames.
    pub buffered: usize,
}

/// Builds the view; `gone` is the traffic (sent, received) of connections already closed.
pub fn build<'a>(
    conns: impl Iterator<Item = &'a Connection>,
    proto: &Protocol,
    gone: (u64, u64),
    now_unix: i64,
) -> Built {
    let mut peers = Vec::new();
    let (mut ready, mut inbound, mut queued, mut buffered) = (0, 0, 0, 0);
    let mut by_direction = [0i64; 3];
    let (mut sent, mut recv) = gone;
    for c in conns {
        let Some(p) = proto.peer(c.id) else {
            continue;
        };
        let is_ready = p.ready();
        sent += c.traffic.bytes_sent;
        recv += c.traffic.bytes_recv;
        queued += c.queue.bytes();
        buffered += c.decoder.buffered();
        if is_ready {
            ready += 1;
            by_direction[c.direction as usize] += 1;
            if c.inbound() {
                inbound += 1;
            }
        }
        let their = p.their.clone().unwrap_or_default();
        let (inflight, best) = proto.sync().peer_state(c.id).unwrap_or((0, 0));
        peers.push(PeerInfo {
            id: c.id,
            addr: Some(c.addr),
            local: c.stream.local_addr().ok(),
            inbound: c.inbound(),
            connection_type: match c.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound-full-relay",
                Direction::Manual => "manual",
            },
            ready: is_ready,
            services: their.services,
            version: their.version,
            subver: their.user_agent,
            starting_height: if p.their.is_some() {
                their.start_height
            } else {
                -1
            },
            synced_headers: if is_ready { i64::from(best) } else { -1 },
            inflight,
            conntime: c.since,
            lastsend: c.traffic.last_send,
            lastrecv: c.traffic.last_recv,
            bytessent: c.traffic.bytes_sent,
            bytesrecv: c.traffic.bytes_recv,
            bytessent_per_msg: c
                .traffic
                .sent_per_msg
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            bytesrecv_per_msg: c
                .traffic
                .recv_per_msg
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            pingtime: p.peer.latency.map(|d| d.as_secs_f64()),
            minping: p.peer.min_latency.map(|d| d.as_secs_f64()),
            send_queue_bytes: c.queue.bytes(),
            wtxid_relay: p.peer.features.wtxid_relay,
            addr_v2: p.peer.features.addr_v2,
            send_headers: p.peer.features.send_headers,
        });
    }
    peers.sort_by_key(|p| p.id);
    let manager = proto.manager();
    let bans: Vec<BanInfo> = manager
        .bans
        .list(now_unix)
        .into_iter()
        .map(|(range, b)| BanInfo {
            address: range.to_string(),
            created: b.created,
            until: b.until,
            reason: b.reason.clone(),
        })
        .collect();
    let added = manager
        .added()
        .iter()
        .map(|a| {
            let connected = proto.peers().any(|(_, p)| p.addr == *a && p.ready());
            (*a, connected)
        })
        .collect();
    Built {
        view: NetworkView {
            peers_connected: ready,
            peers_inbound: inbound,
            active: proto.active(),
            peers,
            bytes_sent: sent,
            bytes_recv: recv,
            bans,
            added,
            local_services: proto.services().to_u64(),
            ..NetworkView::default()
        },
        by_direction,
        queued,
        buffered,
    }
}
