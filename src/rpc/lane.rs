//! The RPC server's lane in the HTTP gate: single JSON-RPC calls answered without tiny_http or
//! a worker. Calls a published view answers ([`methods::VIEW_METHODS`]) are answered at once;
//! quick chain reads ([`methods::chain_read`]) go straight to the chain thread, whose answer
//! the gate writes when it comes (or a timeout at the method's deadline). Every check a worker
//! makes is made here too: address, rate limits, credentials, per-method tokens, breaker,
//! metrics and the request's log line. Anything else is declined and forwarded.

use super::protocol::{self, Answer, Body, RpcError};
use super::{methods, Finished, RequestMeta, RpcServer};
use crate::chain::thread::ChainRequest;
use crate::http::gate::request::Forward;
use crate::http::gate::{Completion, Lane, Laned};
use crate::http::reply::Reply;
use parking_lot::Mutex;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Bodies longer than this are never looked at in the gate: these calls are a few dozen
/// bytes, and parsing a large body there would hold every other connection.
const LANE_MAX_BODY: usize = 1024;

/// The lane, sharing the workers' server.
pub struct RpcLane(pub Arc<RpcServer>);

/// A call handed to the chain thread: what its reply needs, taken by whichever comes first,
/// the answer or the deadline.
struct Deferred {
    id: Option<Value>,
    version: protocol::Version,
    begun: super::Begun,
    label: &'static str,
    request_id: String,
    remote: SocketAddr,
    user: String,
    size: usize,
    received: Instant,
}

impl Lane for RpcLane {
    fn answer(&self, f: &Forward, peer: SocketAddr, later: Completion) -> Option<Laned> {
        let server = &self.0;
        let body = f.bytes.get(f.fields.body_at..)?;
        if !f.fields.rpc || body.len() > LANE_MAX_BODY {
            return None;
        }
        let shared = &server.methods.probes.shared;
        if shared.shutting_down.load(Ordering::Acquire)
            || shared.startup.read().is_some()
            || !shared.chain.read().initialized
        {
            return None;
        }
        let parsed = protocol::parse(body).ok()?;
        let Body::Single(Ok(call)) = &parsed else {
            return None;
        };
        let view = methods::VIEW_METHODS.contains(&call.method.as_str());
        let read = methods::chain_read(&call.method);
        if !view && read.is_none() {
            return None;
        }
        let received = Instant::now();
        let answer = |reply: Reply| {
            crate::http::count(&server.metrics, "/", reply.status, received);
            Some(Laned::Answer(reply))
        };
        let user = match server
            .gate
            .admit(Some(peer), f.fields.authorization.as_deref())
        {
            Ok(user) => user,
            Err(reply) => return answer(reply),
        };
        let meta = RequestMeta {
            remote: Some(peer),
            user: &user,
            request_id: f.fields.request_id.as_deref(),
        };
        // A stalled chain thread would hold the call to its timeout: the usual path refuses it
        // at once, saying why.
        let read = match read {
            Some(read) if !view && server.methods.chain_trouble().is_none() => read,
            _ => return answer(server.handle_parsed(&meta, body.len(), Ok(parsed))),
        };
        let Body::Single(Ok(call)) = parsed else {
            return None;
        };
        let label = methods::label(&call.method);
        let request_id = server.request_id(meta.request_id);
        let finished = |method| Finished {
            request_id: &request_id,
            remote: Some(peer),
            user: &user,
            size: body.len(),
            method,
            started: received,
        };
        let admitted =
            server
                .gate
                .limiter
                .lock()
                .admit_calls(&user, &[call.method.as_str()], Instant::now());
        if let Err(l) = admitted {
            let reply = server.gate.too_many(&l);
            return answer(server.finish_request(reply, &finished("none")));
        }
        let begun = match server.begin(label, true) {
            Ok(b) => b,
            Err(e) => {
                let reply = RpcServer::single_reply(call.id, call.version, Err(e));
                return answer(server.finish_request(reply, &finished(label)));
            }
        };
        let timeout = server.methods.timeout_for(&call.method);
        let deferred = Arc::new(Mutex::new(Some(Deferred {
            id: call.id,
            version: call.version,
            begun,
            label,
            request_id: request_id.clone(),
            remote: peer,
            user: user.clone(),
            size: body.len(),
            received,
        })));
        let params = call.params;
        let (on_chain, server_then) = (deferred.clone(), server.clone());
        let query = Box::new(move |cs: &crate::chain::chainstate::ChainState| {
            let outcome = read(cs, &params).map(Answer::from);
            later.complete(Box::new(move || finish(&server_then, &on_chain, outcome)));
        });
        if server
            .methods
            .chain_requests
            .try_send(ChainRequest::Query(query))
            .is_err()
        {
            let busy = RpcError::internal(
                protocol::code::MISC_ERROR,
                "chain is busy or stopping; try again",
            );
            return answer(finish(server, &deferred, Err(busy)));
        }
        let server = server.clone();
        Some(Laned::Later {
            deadline: received + timeout,
            expired: Box::new(move || {
                let e = RpcError::internal(
                    protocol::code::MISC_ERROR,
                    format!("request timed out after {:.1}s", timeout.as_secs_f64()),
                );
                finish(&server, &deferred, Err(e))
            }),
        })
    }
}

/// The reply to a deferred call, with the bookkeeping a worker's would have; made once.
fn finish(
    server: &RpcServer,
    deferred: &Mutex<Option<Deferred>>,
    outcome: Result<Answer, RpcError>,
) -> Reply {
    let Some(d) = deferred.lock().take() else {
        // The gate takes one answer per request; this one is never written.
        return Reply::error(500, "answered already");
    };
    let outcome = server.end(d.begun, outcome);
    let reply = RpcServer::single_reply(d.id, d.version, outcome);
    let done = Finished {
        request_id: &d.request_id,
        remote: Some(d.remote),
        user: &d.user,
        size: d.size,
        method: d.label,
        started: d.received,
    };
    let reply = server.finish_request(reply, &done);
    crate::http::count(&server.metrics, "/", reply.status, d.received);
    reply
}
