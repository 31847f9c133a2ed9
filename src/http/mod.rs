//! The HTTP server: one dispatcher thread routes tiny_http requests to bounded queues
//! served by separate pools, so probes never wait behind slow JSON-RPC calls.

pub mod probes;
pub mod reply;
pub mod route;

use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::health::{Heartbeat, Status};
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use probes::ProbeContext;
use reply::Reply;
use route::{Enabled, Route};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiny_http::{Request, Server};

/// Probe workers; two so one slow reader of `/metrics` cannot hold every probe.
pub const PROBE_WORKERS: usize = 2;

/// HTTP failures.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("cannot listen for RPC/HTTP on {addr}: {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// tiny_http's accept loop ended; no new connection will be served.
    #[error("HTTP accept loop failed")]
    Accept(#[source] std::io::Error),
}

/// A request with where it goes and when it arrived.
pub struct Job {
    request: Request,
    route: Route,
    received: Instant,
    /// For JSON-RPC: the user the gate authenticated.
    user: String,
}

/// Binds the server; done on the caller's thread so a taken port fails the start.
pub fn bind(addr: SocketAddr) -> Result<(Arc<Server>, SocketAddr), HttpError> {
    let server = Server::http(addr).map_err(|e| HttpError::Bind {
        addr,
        message: e.to_string(),
    })?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| HttpError::Bind {
            addr,
            message: "not an IP listener".into(),
        })?;
    Ok((Arc::new(server), local))
}

/// The dispatcher thread's state.
pub struct Dispatcher {
    /// The server.
    pub server: Arc<Server>,
    /// Which endpoints are on.
    pub enabled: Enabled,
    /// Probe queue.
    pub probes: Sender<Job>,
    /// RPC work queue.
    pub rpc: Sender<Job>,
    /// The checks a JSON-RPC request passes before it is queued for a worker.
    pub gate: Arc<crate::rpc::RpcGate>,
    /// Shared views (shutdown flag).
    pub shared: Arc<Shared>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Shutdown.
    pub stop: StopSignal,
    /// Liveness.
    pub heartbeat: Heartbeat,
    /// Beat interval.
    pub tick: Duration,
}

impl Dispatcher {
    /// Routes requests until stopped.
    pub fn run(self) -> Result<(), HttpError> {
        self.heartbeat.set_status(Status::Healthy, "");
        loop {
            self.heartbeat.beat();
            if self.stop.requested() {
                return Ok(());
            }
            // Short waits so a stop request is seen promptly (tiny_http has no stop channel).
            match self
                .server
                .recv_timeout(self.tick.min(Duration::from_millis(50)))
            {
                Ok(Some(request)) => self.dispatch(request),
                Ok(None) => {}
                Err(e) => {
                    self.heartbeat
                        .set_status(Status::Unhealthy, format!("accept loop failed: {e}"));
                    return Err(HttpError::Accept(e));
                }
            }
        }
    }

    fn dispatch(&self, request: Request) {
        let route = route::route(request.method().as_str(), request.url(), self.enabled);
        let mut job = Job {
            request,
            route,
            received: Instant::now(),
            user: String::new(),
        };
        let (queue, full_message) = match route {
            Route::Rpc if self.shared.shutting_down.load(Ordering::Acquire) => {
                return respond(job, Reply::error(503, "Shutting down"), &self.metrics);
            }
            Route::Rpc if self.shared.startup.read().is_some() => {
                let step = self.shared.startup.read().clone().unwrap_or_default();
                let reply = Reply::error(503, &format!("Starting up: {step}"));
                return respond(job, reply, &self.metrics);
            }
            Route::Rpc => {
                let authorization = job
                    .request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_owned());
                let remote = job.request.remote_addr().copied();
                match self.gate.admit(remote, authorization.as_deref()) {
                    Ok(user) => job.user = user,
                    Err(reply) => return respond(job, reply, &self.metrics),
                }
                (&self.rpc, "Work queue depth exceeded")
            }
            _ => (&self.probes, "Probe queue depth exceeded"),
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                if route == Route::Rpc {
                    self.metrics
                        .rpc_rejections_total
                        .with_label_values(&["queue"])
                        .inc();
                }
                respond(job, Reply::error(503, full_message), &self.metrics)
            }
        }
    }
}

/// Writes the reply and records the request.
fn respond(job: Job, reply: Reply, metrics: &Metrics) {
    let path = Metrics::path_label(job.request.url().split('?').next().unwrap_or(""));
    let status = reply.status.to_string();
    if let Err(e) = job.request.respond(reply.into_response()) {
        log::debug!("client went away before the response: {e}");
    }
    metrics
        .http_requests_total
        .with_label_values(&[path, &status])
        .inc();
    metrics
        .http_request_duration_seconds
        .with_label_values(&[path])
        .observe(job.received.elapsed().as_secs_f64());
}

/// Serves jobs until stopped, then answers what is still queued with `on_stop`.
fn serve(
    jobs: &Receiver<Job>,
    stop: &StopSignal,
    metrics: &Metrics,
    handle: impl Fn(&mut Job) -> Reply,
    on_stop: impl Fn(&mut Job) -> Reply,
) {
    loop {
        select! {
            recv(jobs) -> job => match job {
                Ok(mut job) => { let r = handle(&mut job); respond(job, r, metrics) }
                Err(_) => return,
            },
            recv(stop.receiver()) -> _ => break,
        }
    }
    for mut job in jobs.try_iter() {
        let r = on_stop(&mut job);
        respond(job, r, metrics);
    }
}

/// A probe worker: health, metrics, 404 and 405 answers.
pub fn probe_worker(
    jobs: Receiver<Job>,
    stop: StopSignal,
    ctx: Arc<ProbeContext>,
) -> Result<(), std::convert::Infallible> {
    let answer = |job: &mut Job| match job.route {
        Route::Probe(p) => probes::answer(p, &ctx),
        Route::MethodNotAllowed(allow) => {
            Reply::error(405, "method not allowed").with_header("Allow", allow)
        }
        Route::NotFound | Route::Rpc => Reply::error(404, "not found"),
    };
    serve(&jobs, &stop, &ctx.metrics, answer, answer);
    Ok(())
}

/// An RPC worker: reads the bounded body and answers JSON-RPC.
pub fn rpc_worker(
    jobs: Receiver<Job>,
    stop: StopSignal,
    server: Arc<crate::rpc::RpcServer>,
) -> Result<(), std::convert::Infallible> {
    let metrics = server.metrics.clone();
    let handle = |job: &mut Job| {
        let mut body = Vec::new();
        let read = job
            .request
            .as_reader()
            .take(crate::rpc::MAX_BODY_BYTES + 1)
            .read_to_end(&mut body);
        if read.is_err() {
            return Reply::error(400, "cannot read request body");
        }
        if body.len() as u64 > crate::rpc::MAX_BODY_BYTES {
            return Reply::error(413, "request body exceeds 32 MiB");
        }
        let header = |name: &'static str| {
            job.request
                .headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_owned())
        };
        let request_id = header("X-Request-Id");
        let meta = crate::rpc::RequestMeta {
            remote: job.request.remote_addr().copied(),
            user: &job.user,
            request_id: request_id.as_deref(),
        };
        server.handle(&meta, &body)
    };
    serve(&jobs, &stop, &metrics, handle, |_| {
        Reply::error(503, "Shutting down")
    });
    Ok(())
}
