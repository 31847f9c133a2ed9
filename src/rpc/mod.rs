//! JSON-RPC: protocol, credentials, methods, and the handling of one HTTP request.

pub mod allow;
pub mod auth;
pub mod circuit_breaker;
pub mod lane;
pub mod methods;
pub mod protocol;
pub mod rate_limit;

use crate::http::reply::Reply;
use crate::metrics::Metrics;
use protocol::{Body, Parsed, RpcError, Version};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body accepted, as Bitcoin Core's limit.
pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Everything needed to answer RPC requests; shared by the RPC workers.
pub struct RpcServer {
    /// Method context.
    pub methods: methods::Context,
    /// The checks made at the door (addresses, credentials, rate limits).
    pub gate: Arc<RpcGate>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Source of generated request ids.
    pub next_id: AtomicU64,
    /// Circuit breakers per method.
    pub breakers: Breakers,
    /// Calls running now, for `getrpcinfo`: (method, started).
    pub active: parking_lot::Mutex<Vec<(&'static str, Instant)>>,
    /// Longest JSON-RPC batch answered (`rpc.max_batch`).
    pub max_batch: usize,
    /// Largest answer a batch builds (`rpc.max_response_mb`): calls past it are not run.
    pub max_response_bytes: usize,
    /// The level of each request's log line (`[logging] rpc_requests`); `None`: not logged.
    pub request_log: Option<log::Level>,
}

/// A breaker per known method (unknown names have none); the lock is never held across a call.
pub struct Breakers {
    enabled: bool,
    map: parking_lot::Mutex<std::collections::HashMap<&'static str, circuit_breaker::Breaker>>,
}

impl Breakers {
    /// Breakers with `[rpc.breaker]` settings.
    pub fn new(cfg: &crate::config::BreakerConfig) -> Breakers {
        let settings = circuit_breaker::Settings {
            window: Duration::from_secs_f64(cfg.window_secs),
            min_calls: cfg.min_calls,
            failure_ratio: cfg.failure_ratio,
            cooldown: Duration::from_secs_f64(cfg.cooldown_secs),
            trials: cfg.half_open_trials,
        };
        let map = methods::METHODS
            .iter()
            .map(|m| (*m, circuit_breaker::Breaker::new(settings)))
            .collect();
        Breakers {
            enabled: cfg.enabled,
            map: parking_lot::Mutex::new(map),
        }
    }
}

/// What the transport knows about a request.
pub struct RequestMeta<'a> {
    /// The client.
    pub remote: Option<SocketAddr>,
    /// The user the gate authenticated.
    pub user: &'a str,
    /// `X-Request-Id` header, if the client sent one.
    pub request_id: Option<&'a str>,
}

/// The checks every JSON-RPC request passes before it may take a worker, made by the HTTP
/// dispatcher as the request arrives: a request refused here (forbidden address, too many
/// requests, wrong credentials) is answered at once and never queues behind, or holds, a worker.
pub struct RpcGate {
    /// Accepted credentials.
    pub credentials: auth::Credentials,
    /// Who may connect besides loopback.
    pub allow: allow::AllowList,
    /// Token buckets; held only for the check, never across I/O.
    pub limiter: parking_lot::Mutex<rate_limit::RateLimiter>,
    /// Rejection counters.
    pub metrics: Arc<Metrics>,
}

impl RpcGate {
    /// The authenticated user, or the answer refusing the request: address allowed (403), a
    /// token for it (429, before authentication so guessing floods are limited too), then
    /// credentials (401 at once; 429 once the address has used up its failures; Core instead
    /// sleeps 250 ms, which here would hold a worker per guess).
    pub fn admit(
        &self,
        remote: Option<SocketAddr>,
        authorization: Option<&str>,
    ) -> Result<String, Reply> {
        if let Some(addr) = remote {
            if !self.allow.permits(addr.ip()) {
                self.reject("forbidden");
                return Err(Reply::error(403, "Forbidden"));
            }
            let admitted = self.limiter.lock().admit_ip(addr.ip(), Instant::now());
            if let Err(l) = admitted {
                return Err(self.too_many(&l));
            }
        }
        if let Some(user) = self.credentials.check(authorization) {
            return Ok(user);
        }
        self.reject("auth");
        if let Some(addr) = remote {
            let limited = self.limiter.lock().auth_failed(addr.ip(), Instant::now());
            if let Err(l) = limited {
                return Err(self.too_many(&l));
            }
        }
        Err(Reply::error(401, "Unauthorized")
            .with_header("WWW-Authenticate", "Basic realm=\"jsonrpc\""))
    }

    /// For requests without credentials (REST): the address allowed (403) and a token for it
    /// (429).
    pub fn admit_anonymous(&self, remote: Option<SocketAddr>) -> Result<(), Reply> {
        let Some(addr) = remote else {
            return Ok(());
        };
        if !self.allow.permits(addr.ip()) {
            self.reject("forbidden");
            return Err(Reply::error(403, "Forbidden"));
        }
        let admitted = self.limiter.lock().admit_ip(addr.ip(), Instant::now());
        admitted.map_err(|l| self.too_many(&l))
    }

    /// HTTP 429 with `Retry-After` and a JSON-RPC error naming the limit.
    pub fn too_many(&self, l: &rate_limit::Limited) -> Reply {
        self.reject("rate");
        let secs = l.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let err = RpcError::new(
            protocol::code::MISC_ERROR,
            format!("rate limit exceeded: {}", l.limit),
        );
        let text = protocol::reply(Some(Value::Null), Version::V1, Err(err)).unwrap_or_default();
        Reply::json_text(429, text).with_header("Retry-After", secs.to_string())
    }

    fn reject(&self, reason: &str) {
        self.metrics
            .rpc_rejections_total
            .with_label_values(&[reason])
            .inc();
    }
}

impl RpcServer {
    /// Answers one HTTP request to `/`.
    pub fn handle(&self, meta: &RequestMeta<'_>, body: &[u8]) -> Reply {
        self.handle_parsed(meta, body.len(), protocol::parse(body))
    }

    /// Answers a request whose body (of `size` bytes) is parsed.
    fn handle_parsed(
        &self,
        meta: &RequestMeta<'_>,
        size: usize,
        body: Result<Body, RpcError>,
    ) -> Reply {
        let started = Instant::now();
        let request_id = self.request_id(meta.request_id);
        let (reply, method, user) = self.answer(meta, body);
        let done = Finished {
            request_id: &request_id,
            remote: meta.remote,
            user: &user,
            size,
            method,
            started,
        };
        self.finish_request(reply, &done)
    }

    /// The request's id: the client's `X-Request-Id` when it is a sane token, else a new one.
    fn request_id(&self, given: Option<&str>) -> String {
        given
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
            })
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:016x}", self.next_id.fetch_add(1, Ordering::Relaxed)))
    }

    /// Stamps a request's reply with its id, writes its log line and times it.
    fn finish_request(&self, reply: Reply, done: &Finished<'_>) -> Reply {
        let reply = reply.with_header("X-Request-Id", done.request_id.to_owned());
        let duration = done.started.elapsed();
        if let Some(level) = self.request_log.filter(|l| log::log_enabled!(*l)) {
            let client = done.remote.map(|a| a.to_string()).unwrap_or_default();
            log::log!(
                level,
                request_id = done.request_id, method = done.method, client_addr = client.as_str(),
                user = done.user, request_size = done.size, status = reply.status,
                duration_ms = duration.as_millis() as u64;
                "rpc request"
            );
        }
        self.metrics
            .rpc_request_duration_seconds
            .with_label_values(&[done.method])
            .observe(duration.as_secs_f64());
        reply
    }

    /// The HTTP reply to a single call (204 without a body for a 2.0 notification).
    fn single_reply(
        id: Option<Value>,
        version: Version,
        outcome: Result<protocol::Answer, RpcError>,
    ) -> Reply {
        let status = protocol::http_status(version, &outcome);
        match protocol::reply(id, version, outcome) {
            Some(text) => Reply::json_text(status, text),
            None => Reply {
                status: 204,
                content_type: "application/json",
                headers: Vec::new(),
                body: Vec::new(),
            },
        }
    }

    /// Core's getrpcinfo: the commands running now.
    fn rpcinfo(&self) -> Value {
        let now = Instant::now();
        let mut active: Vec<Value> = self
            .active
            .lock()
            .iter()
            .map(|(m, t)| serde_json::json!({"method": m, "duration": now.duration_since(*t).as_micros() as u64}))
            .collect();
        active.push(serde_json::json!({"method": "getrpcinfo", "duration": 0}));
        serde_json::json!({"active_commands": active, "logpath": ""})
    }

    fn breaker_allows(&self, method: &'static str) -> bool {
        if !self.breakers.enabled {
            return true;
        }
        let mut map = self.breakers.map.lock();
        let Some(b) = map.get_mut(method) else {
            return true;
        };
        let before = b.state().gauge();
        let allowed = b.allow(Instant::now());
        // Published on a change only: every call would otherwise take the view's write lock.
        if b.state().gauge() != before {
            self.publish_breaker(method, b.state());
        }
        allowed
    }

    fn breaker_record(&self, method: &'static str, failed: bool) {
        if !self.breakers.enabled {
            return;
        }
        let mut map = self.breakers.map.lock();
        if let Some(b) = map.get_mut(method) {
            let before = b.state();
            b.record(Instant::now(), failed);
            let after = b.state();
            if before.name() != after.name() {
                log::warn!(
                    "circuit breaker for {method}: {} -> {}",
                    before.name(),
                    after.name()
                );
                self.publish_breaker(method, after);
            }
        }
    }

    fn publish_breaker(&self, method: &'static str, state: circuit_breaker::State) {
        self.metrics
            .rpc_breaker_state
            .with_label_values(&[method])
            .set(state.gauge());
        let mut view = self.methods.probes.shared.rpc_breakers.write();
        match state {
            circuit_breaker::State::Closed => {
                view.remove(method);
            }
            s => {
                view.insert(method, s.name());
            }
        }
    }

    fn reject(&self, reason: &str) {
        self.gate.reject(reason);
    }

    fn answer(
        &self,
        meta: &RequestMeta<'_>,
        body: Result<Body, RpcError>,
    ) -> (Reply, &'static str, String) {
        // The gate admitted and authenticated this request in the dispatcher.
        let user = meta.user.to_owned();
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                let text = protocol::reply(Some(Value::Null), Version::V1, Err(e));
                return (
                    Reply::json_text(500, text.unwrap_or_default()),
                    "unknown",
                    user,
                );
            }
        };
        if let Body::Batch(calls) = &body {
            if calls.len() > self.max_batch {
                log::warn!(
                    calls = calls.len(), user = user.as_str();
                    "batch of {} calls refused (rpc.max_batch = {})",
                    calls.len(),
                    self.max_batch
                );
                let e = RpcError::new(
                    protocol::code::INVALID_REQUEST,
                    format!(
                        "batch of {} calls is over the limit of {} (rpc.max_batch)",
                        calls.len(),
                        self.max_batch
                    ),
                );
                let text = protocol::reply(Some(Value::Null), Version::V2, Err(e));
                return (
                    Reply::json_text(400, text.unwrap_or_default()),
                    "batch",
                    user,
                );
            }
        }
        let names: Vec<&str> = match &body {
            Body::Single(Ok(c)) => vec![c.method.as_str()],
            Body::Single(Err(_)) => vec![],
            Body::Batch(calls) => calls
                .iter()
                .filter_map(|c| c.as_ref().ok())
                .map(|c| c.method.as_str())
                .collect(),
        };
        let admitted = self
            .gate
            .limiter
            .lock()
            .admit_calls(&user, &names, Instant::now());
        if let Err(l) = admitted {
            return (self.gate.too_many(&l), "none", user);
        }
        match body {
            Body::Single(call) => {
                let (id, version, method, outcome) = self.run(call);
                (Self::single_reply(id, version, outcome), method, user)
            }
            Body::Batch(calls) => {
                // Each answer is serialized as it comes, so the batch's memory is its text,
                // bounded: once it passes the limit the remaining calls are not run and each
                // says so (Core's RPC_OUT_OF_MEMORY), for the client to send them again.
                let mut body = String::from("[");
                let mut over = false;
                for c in calls {
                    let (id, version, _, outcome) = if over {
                        let (id, version) = match &c {
                            Ok(c) => (c.id.clone(), c.version),
                            Err(b) => (b.id.clone(), b.version),
                        };
                        let e = RpcError::new(
                            protocol::code::OUT_OF_MEMORY,
                            format!(
                                "not run: the batch's answer passed {} MiB (rpc.max_response_mb); send this call again",
                                self.max_response_bytes >> 20
                            ),
                        );
                        (id, version, "batch", Err(e))
                    } else {
                        self.run(c)
                    };
                    if let Some(text) = protocol::reply(id, version, outcome) {
                        if body.len() > 1 {
                            body.push(',');
                        }
                        body.push_str(&text);
                    }
                    if !over && body.len() > self.max_response_bytes {
                        over = true;
                        log::warn!(
                            user = user.as_str();
                            "batch answer passed rpc.max_response_mb ({} MiB): the remaining calls are not run",
                            self.max_response_bytes >> 20
                        );
                    }
                }
                body.push(']');
                let reply = Reply::json_text(200, body);
                (reply, "batch", user)
            }
        }
    }

    /// Runs one call and records its outcome.
    fn run(
        &self,
        call: Parsed,
    ) -> (
        Option<Value>,
        Version,
        &'static str,
        Result<protocol::Answer, RpcError>,
    ) {
        match call {
            Err(b) => (b.id, b.version, "unknown", Err(b.error)),
            Ok(c) => {
                let label = methods::label(&c.method);
                let outcome = if c.method == "getrpcinfo" {
                    // Not listed among the running commands: its answer adds itself.
                    self.begin(label, false)
                        .map(|b| self.end(b, Ok(self.rpcinfo().into())))
                } else {
                    self.begin(label, true).map(|b| {
                        let outcome = methods::call(&self.methods, &c.method, &c.params);
                        self.end(b, outcome)
                    })
                };
                (c.id, c.version, label, outcome.unwrap_or_else(Err))
            }
        }
    }

    /// Starts a call of `label`: its breaker must allow it (else the error to answer); then it
    /// counts as in flight and, if `listed`, shows in `getrpcinfo`.
    fn begin(&self, label: &'static str, listed: bool) -> Result<Begun, RpcError> {
        if !self.breaker_allows(label) {
            self.reject("breaker");
            return Err(RpcError::new(
                protocol::code::MISC_ERROR,
                format!("circuit breaker open for {label}: recent calls failed; retry later"),
            ));
        }
        let started = Instant::now();
        if listed {
            self.metrics.rpc_in_flight.inc();
            self.active.lock().push((label, started));
        }
        Ok(Begun {
            label,
            started,
            listed,
        })
    }

    /// Ends a call [`RpcServer::begin`] started: its breaker and counters learn the outcome,
    /// which is passed on.
    fn end(
        &self,
        b: Begun,
        outcome: Result<protocol::Answer, RpcError>,
    ) -> Result<protocol::Answer, RpcError> {
        if b.listed {
            let mut active = self.active.lock();
            if let Some(i) = active
                .iter()
                .position(|(m, t)| *m == b.label && *t == b.started)
            {
                active.swap_remove(i);
            }
            self.metrics.rpc_in_flight.dec();
        }
        self.breaker_record(b.label, matches!(&outcome, Err(e) if e.internal));
        self.methods
            .probes
            .shared
            .rpc_requests
            .fetch_add(1, Ordering::Relaxed);
        let kind = match &outcome {
            Ok(_) => "success",
            Err(e) if e.code == protocol::code::METHOD_NOT_FOUND => "not_found",
            Err(_) => "error",
        };
        self.metrics
            .rpc_requests_total
            .with_label_values(&[b.label, kind])
            .inc();
        outcome
    }
}

/// A call under way, between [`RpcServer::begin`] and [`RpcServer::end`].
pub struct Begun {
    label: &'static str,
    started: Instant,
    listed: bool,
}

/// What a request's log line and timing need once it is answered.
pub struct Finished<'a> {
    request_id: &'a str,
    remote: Option<SocketAddr>,
    user: &'a str,
    size: usize,
    method: &'static str,
    started: Instant,
}
