//! Network methods: reads from the view the p2p thread publishes, changes as commands to it.

use super::{Context, CORE_VERSION};
use crate::messages::{AddNode, CommandError, P2pCommand};
use crate::rpc::protocol::{code, Args, Params, RpcError};
use crate::state::PeerInfo;
use crossbeam_channel::bounded;
use serde_json::{json, Map, Value};
use std::net::{IpAddr, SocketAddr};

/// Answers a network method, or `None` if `method` is not one.
pub fn dispatch(ctx: &Context, method: &str, params: &Params) -> Option<Result<Value, RpcError>> {
    Some(match method {
        "getpeerinfo" => Args::new(params, &[]).map(|_| getpeerinfo(ctx)),
        "getconnectioncount" => {
            Args::new(params, &[]).map(|_| ctx.probes.shared.network.read().peers_connected.into())
        }
        "getnetworkinfo" => Args::new(params, &[]).map(|_| getnetworkinfo(ctx)),
        "getnettotals" => Args::new(params, &[]).map(|_| getnettotals(ctx)),
        "listbanned" => Args::new(params, &[]).map(|_| listbanned(ctx)),
        "getaddednodeinfo" => getaddednodeinfo(ctx, params),
        "addnode" => addnode(ctx, params),
        "disconnectnode" => disconnectnode(ctx, params),
        "setban" => setban(ctx, params),
        "clearbanned" => Args::new(params, &[])
            .and_then(|_| command(ctx, |_| P2pCommand::ClearBanned).map(|_| Value::Null)),
        "setnetworkactive" => setnetworkactive(ctx, params),
        "ping" => Args::new(params, &[])
            .and_then(|_| command(ctx, |_| P2pCommand::PingAll).map(|_| Value::Null)),
        _ => return None,
    })
}

/// Sends a command that needs no answer.
fn command(ctx: &Context, make: impl FnOnce(()) -> P2pCommand) -> Result<(), RpcError> {
    ctx.p2p
        .send(make(()), ctx.timeout)
        .map_err(|_| RpcError::internal(code::MISC_ERROR, "the p2p thread is not taking commands"))
}

/// Sends a command and waits for p2p's verdict.
fn ask(
    ctx: &Context,
    make: impl FnOnce(crate::messages::CommandReply) -> P2pCommand,
) -> Result<Value, RpcError> {
    let (tx, rx) = bounded(1);
    command(ctx, |_| make(tx))?;
    match rx.recv_timeout(ctx.timeout) {
        Ok(Ok(())) => Ok(Value::Null),
        Ok(Err(e)) => {
            let c = match e {
                CommandError::AlreadyAdded | CommandError::AlreadyBanned => {
                    code::NODE_ALREADY_ADDED
                }
                CommandError::NotAdded => code::NODE_NOT_ADDED,
                CommandError::NotConnected => code::NODE_NOT_CONNECTED,
                CommandError::NotBanned => code::INVALID_IP_OR_SUBNET,
            };
            Err(RpcError::new(c, e.to_string()))
        }
        Err(_) => Err(RpcError::internal(
            code::MISC_ERROR,
            "the p2p thread did not answer in time",
        )),
    }
}

fn services_names(bits: u64) -> Vec<&'static str> {
    [
        (1, "NETWORK"),
        (4, "BLOOM"),
        (8, "WITNESS"),
        (64, "COMPACT_FILTERS"),
        (1024, "NETWORK_LIMITED"),
        (2048, "P2P_V2"),
    ]
    .into_iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| n)
    .collect()
}

fn per_msg(list: &[(&'static str, u64)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

fn peer_json(p: &PeerInfo) -> Value {
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let network = match p.addr.map(|a| a.ip()) {
        Some(IpAddr::V6(_)) => "ipv6",
        _ => "ipv4",
    };
    let mut o = json!({
        "id": p.id,
        "addr": addr(p.addr),
        "addrbind": addr(p.local),
        "network": network,
        "services": format!("{:016x}", p.services),
        "servicesnames": services_names(p.services),
        "relaytxes": false,
        "lastsend": p.lastsend,
        "lastrecv": p.lastrecv,
        "last_transaction": 0,
        "last_block": 0,
        "bytessent": p.bytessent,
        "bytesrecv": p.bytesrecv,
        "conntime": p.conntime,
        "timeoffset": 0,
        "version": p.version,
        "subver": p.subver,
        "inbound": p.inbound,
        "bip152_hb_to": false,
        "bip152_hb_from": false,
        "startingheight": p.starting_height,
        "presynced_headers": -1,
        "synced_headers": p.synced_headers,
        "synced_blocks": p.synced_headers,
        "inflight": Vec::<u32>::new(),
        "addr_relay_enabled": true,
        "addr_processed": 0,
        "addr_rate_limited": 0,
        "permissions": Vec::<String>::new(),
        "minfeefilter": 0.0,
        "bytessent_per_msg": per_msg(&p.bytessent_per_msg),
        "bytesrecv_per_msg": per_msg(&p.bytesrecv_per_msg),
        "connection_type": p.connection_type,
        "transport_protocol_type": "v1",
        "session_id": "",
        // Not in Core: what this node adds for operators.
        "handshake_done": p.ready,
        "blocks_in_flight": p.inflight,
        "send_queue_bytes": p.send_queue_bytes,
        "wtxid_relay": p.wtxid_relay,
        "addr_v2": p.addr_v2,
        "send_headers": p.send_headers,
    });
    if let Some(t) = p.pingtime {
        o["pingtime"] = json!(t);
    }
    if let Some(t) = p.minping {
        o["minping"] = json!(t);
    }
    o
}

fn getpeerinfo(ctx: &Context) -> Value {
    let view = ctx.probes.shared.network.read();
    Value::Array(view.peers.iter().map(peer_json).collect())
}

fn getnetworkinfo(ctx: &Context) -> Value {
    let net = ctx.probes.shared.network.read().clone();
    let networks: Vec<Value> = ["ipv4", "ipv6"]
        .iter()
        .map(|n| {
            json!({
                "name": n, "limited": false, "reachable": true, "proxy": "",
                "proxy_randomize_credentials": false,
            })
        })
        .collect();
    json!({
        "version": CORE_VERSION,
        "subversion": format!("/bllvm-node:{}/", env!("CARGO_PKG_VERSION")),
        "protocolversion": crate::messages::PROTOCOL_VERSION,
        "localservices": format!("{:016x}", net.local_services),
        "localservicesnames": services_names(net.local_services),
        "localrelay": true,
        "timeoffset": 0,
        "networkactive": net.active,
        "connections": net.peers_connected,
        "connections_in": net.peers_inbound,
        "connections_out": net.peers_connected - net.peers_inbound,
        "networks": networks,
        "relayfee": bitcoin::Amount::from_sat(crate::mempool::pool::MIN_RELAY_FEE).to_btc(),
        "incrementalfee": bitcoin::Amount::from_sat(crate::mempool::pool::INCREMENTAL_RELAY_FEE)
            .to_btc(),
        "localaddresses": [],
        "warnings": [],
    })
}

fn getnettotals(ctx: &Context) -> Value {
    let net = ctx.probes.shared.network.read();
    json!({
        "totalbytesrecv": net.bytes_recv,
        "totalbytessent": net.bytes_sent,
        "timemillis": crate::clock::unix_now_millis(),
        "uploadtarget": {
            "timeframe": 86400,
            "target": 0,
            "target_reached": false,
            "serve_historical_blocks": true,
            "bytes_left_in_cycle": 0,
            "time_left_in_cycle": 0,
        },
    })
}

fn listbanned(ctx: &Context) -> Value {
    let now = crate::clock::unix_now();
    let net = ctx.probes.shared.network.read();
    Value::Array(
        net.bans
            .iter()
            .map(|b| {
                json!({
                    "address": b.address,
                    "ban_created": b.created,
                    "banned_until": b.until,
                    "ban_duration": b.until - b.created,
                    "time_remaining": (b.until - now).max(0),
                    "reason": b.reason,
                })
            })
            .collect(),
    )
}

fn getaddednodeinfo(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["node"])?;
    let filter = a.str(0)?;
    let net = ctx.probes.shared.network.read();
    let list: Vec<Value> = net
        .added
        .iter()
        .filter(|(addr, _)| filter.is_none_or(|f| f == addr.to_string()))
        .map(|(addr, connected)| {
            let addresses = if *connected {
                json!([{ "address": addr.to_string(), "connected": "outbound" }])
            } else {
                json!([])
            };
            json!({ "addednode": addr.to_string(), "connected": connected, "addresses": addresses })
        })
        .collect();
    if filter.is_some() && list.is_empty() {
        return Err(RpcError::new(
            code::NODE_NOT_ADDED,
            "Error: Node has not been added.",
        ));
    }
    Ok(Value::Array(list))
}

/// A peer address, or a name looked up here (an RPC worker may block; the event loop may not):
/// its first address, as Core connects to one.
fn parse_addr(s: &str, ctx: &Context) -> Result<SocketAddr, RpcError> {
    use std::net::ToSocketAddrs;
    let (host, port) = match crate::messages::parse_peer(s, ctx.chain.default_p2p_port()) {
        Ok(a) => return Ok(a),
        Err(named) => named,
    };
    let bad = |why: String| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("Error: cannot resolve node address {s}: {why}"),
        )
    };
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no addresses".into()))
}

fn addnode(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["node", "command", "v2transport"])?;
    let addr = parse_addr(a.required_str(0)?, ctx)?;
    let what = match a.required_str(1)? {
        "add" => AddNode::Add,
        "remove" => AddNode::Remove,
        "onetry" => AddNode::OneTry,
        _ => {
            return Err(RpcError::new(
                code::INVALID_PARAMETER,
                "Error: Command must be \"add\", \"remove\" or \"onetry\"",
            ))
        }
    };
    ask(ctx, |reply| P2pCommand::AddNode { addr, what, reply })
}

fn disconnectnode(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["address", "nodeid"])?;
    let addr = match a.str(0)? {
        Some(s) if !s.is_empty() => Some(parse_addr(s, ctx)?),
        _ => None,
    };
    let peer = a.int(1)?.map(|n| n as u64);
    if addr.is_some() == peer.is_some() {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Only one of address and nodeid should be provided.",
        ));
    }
    ask(ctx, |reply| P2pCommand::Disconnect { addr, peer, reply })
}

/// An address or `ADDRESS/PREFIX` range (Core's `setban` subnet).
fn parse_ban_target(s: &str) -> Result<crate::subnet::Subnet, RpcError> {
    s.parse()
        .map_err(|_| RpcError::new(code::INVALID_IP_OR_SUBNET, "Error: Invalid IP/Subnet"))
}

fn setban(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["subnet", "command", "bantime", "absolute"])?;
    let range = parse_ban_target(a.required_str(0)?)?;
    let ban_secs = match a.required_str(1)? {
        "add" => {
            let t = a.int(2)?.filter(|t| *t > 0);
            let absolute = a.get(3).and_then(Value::as_bool).unwrap_or(false);
            let now = crate::clock::unix_now();
            Some(match (t, absolute) {
                (Some(until), true) => (until - now).max(1),
                (Some(secs), false) => secs,
                (None, _) => crate::messages::DEFAULT_BAN_SECS,
            })
        }
        "remove" => None,
        _ => {
            return Err(RpcError::new(
                code::MISC_ERROR,
                "Error: Command must be \"add\" or \"remove\"",
            ))
        }
    };
    ask(ctx, |reply| P2pCommand::SetBan {
        range,
        ban_secs,
        reply,
    })
}

fn setnetworkactive(ctx: &Context, params: &Params) -> Result<Value, RpcError> {
    let a = Args::new(params, &["state"])?;
    let on = a.required(0)?.as_bool().ok_or_else(|| {
        RpcError::new(
            code::TYPE_ERROR,
            "JSON value of type number is not of expected type bool",
        )
    })?;
    command(ctx, |_| P2pCommand::SetActive(on))?;
    Ok(Value::Bool(on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_targets_are_addresses_or_ranges() {
        assert_eq!(
            parse_ban_target("127.0.0.2").unwrap().to_string(),
            "127.0.0.2/32"
        );
        assert_eq!(
            parse_ban_target("10.9.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_ban_target("::1/128").is_ok());
        assert_eq!(
            parse_ban_target("nonsense").unwrap_err().code,
            code::INVALID_IP_OR_SUBNET
        );
    }

    #[test]
    fn service_bits_are_named_as_core_does() {
        assert_eq!(
            services_names(0x409),
            ["NETWORK", "WITNESS", "NETWORK_LIMITED"]
        );
    }
}
