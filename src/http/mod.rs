//! The HTTP server: one dispatcher thread routes tiny_http requests to bounded queues
//! served by separate pools, so probes never wait behind slow JSON-RPC calls.

pub mod gate;
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
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

/// The port and the server behind it.
pub struct Bound {
    /// The public listener, served by the gate.
    pub listener: std::net::TcpListener,
    /// Its address.
    pub addr: SocketAddr,
    /// tiny_http, listening on the internal socket.
    pub server: Arc<Server>,
    /// The internal socket's file, removed when this is dropped.
    pub backend: SocketFile,
}

/// The internal socket's file: removed on drop (a clean exit; tiny_http's server removes it
/// too when dropped), with the private directory it may be in, which tiny_http leaves; a
/// crash leaves them for the next start to replace.
#[derive(Debug)]
pub struct SocketFile {
    /// Where it is.
    pub path: PathBuf,
    /// A private directory made for it (a long datadir path), removed with it.
    private_dir: Option<PathBuf>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(d) = &self.private_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Binds the port and starts tiny_http on an internal Unix socket only the gate (and the node's
/// user) can reach; done on the caller's thread so a taken port fails the start.
pub fn bind(addr: SocketAddr, net_dir: &Path) -> Result<Bound, HttpError> {
    let bind_err = |message: String| HttpError::Bind { addr, message };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_err(e.to_string()))?;
    // A deeper accept queue than std's 128, so a burst of connections waits for the gate
    // instead of being dropped (clients then retry their SYN only after a second). Listening
    // again only changes the backlog; the kernel caps it at net.core.somaxconn.
    // SAFETY: listen on a socket this function owns.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) } != 0 {
        return Err(bind_err(std::io::Error::last_os_error().to_string()));
    }
    let local = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
    let backend = internal_socket(net_dir).map_err(|e| bind_err(e.to_string()))?;
    // A socket file left by a crash; the datadir lock says no other node uses it.
    let _ = std::fs::remove_file(&backend.path);
    let unix = std::os::unix::net::UnixListener::bind(&backend.path)
        .and_then(|l| {
            std::fs::set_permissions(&backend.path, std::fs::Permissions::from_mode(0o600))?;
            Ok(l)
        })
        .map_err(|e| bind_err(format!("internal socket {}: {e}", backend.path.display())))?;
    let server = Server::from_listener(unix, None).map_err(|e| bind_err(e.to_string()))?;
    Ok(Bound {
        listener,
        addr: local,
        server: Arc::new(server),
        backend,
    })
}

/// `<net_dir>/http.sock`, or, when that path is too long for a Unix socket (108 bytes), a
/// new private directory under the temporary directory.
fn internal_socket(net_dir: &Path) -> std::io::Result<SocketFile> {
    let path = net_dir.join("http.sock");
    if path.as_os_str().len() < 100 {
        return Ok(SocketFile {
            path,
            private_dir: None,
        });
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("bllvm-node-{}-{nanos}", std::process::id()));
    // Not recursive: a directory someone else made there is an error, never used.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(SocketFile {
        path: dir.join("http.sock"),
        private_dir: Some(dir),
    })
}

/// The client's address: the gate's header on requests it forwards, else the socket's peer.
pub fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(gate::request::PEER_HEADER))
        .and_then(|h| h.value.as_str().parse().ok())
        .or_else(|| request.remote_addr().copied())
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
    /// REST work queue (used when REST is on).
    pub rest: Sender<Job>,
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
        // The gate's warm-up of a new internal connection (no client sends one: the gate adds
        // the client's address to everything it forwards): answered here, not counted.
        if request.url() == gate::WARM_UP_PATH && peer(&request).is_none() {
            let _ = request.respond(tiny_http::Response::empty(204));
            return;
        }
        let route = route::route(request.method().as_str(), request.url(), self.enabled);
        let mut job = Job {
            request,
            route,
            received: Instant::now(),
            user: String::new(),
        };
        let (queue, full_message) = match route {
            Route::Rpc | Route::Rest if self.shared.shutting_down.load(Ordering::Acquire) => {
                return respond(job, Reply::error(503, "Shutting down"), &self.metrics);
            }
            Route::Rpc | Route::Rest if self.shared.startup.read().is_some() => {
                let step = self.shared.startup.read().clone().unwrap_or_default();
                // REST says it as Core's REST does during its warm-up.
                let message = if route == Route::Rest {
                    format!("Service temporarily unavailable: {step}")
                } else {
                    format!("Starting up: {step}")
                };
                return respond(job, Reply::error(503, &message), &self.metrics);
            }
            Route::Rpc => {
                let authorization = job
                    .request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_owned());
                let remote = peer(&job.request);
                match self.gate.admit(remote, authorization.as_deref()) {
                    Ok(user) => job.user = user,
                    Err(reply) => return respond(job, reply, &self.metrics),
                }
                (&self.rpc, "Work queue depth exceeded")
            }
            Route::Rest => {
                // Unauthenticated, as Core's; the address rules and its rate limit still hold.
                if let Err(mut reply) = self.gate.admit_anonymous(peer(&job.request)) {
                    // Core's REST has no rate limit, and its clients (electrs) retry only 503
                    // (Core's warm-up); a 429 would stop them. So over the limit is 503 with
                    // Retry-After, which they wait out.
                    if reply.status == 429 {
                        reply.status = 503;
                    }
                    return respond(job, reply, &self.metrics);
                }
                (&self.rest, "REST work queue depth exceeded")
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

/// Records a request to `path` answered with `status`; called before the answer leaves, so
/// a scrape the client makes next sees it.
pub fn count(metrics: &Metrics, path: &str, status: u16, received: Instant) {
    let path = Metrics::path_label(path);
    metrics
        .http_requests_total
        .with_label_values(&[path, &status.to_string()])
        .inc();
    metrics
        .http_request_duration_seconds
        .with_label_values(&[path])
        .observe(received.elapsed().as_secs_f64());
}

/// Writes the reply and records the request.
fn respond(job: Job, reply: Reply, metrics: &Metrics) {
    let path = job.request.url().split('?').next().unwrap_or("");
    count(metrics, path, reply.status, job.received);
    if let Err(e) = job.request.respond(reply.into_response()) {
        log::debug!("client went away before the response: {e}");
    }
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
        Route::NotFound | Route::Rpc | Route::Rest => Reply::error(404, "not found"),
    };
    serve(&jobs, &stop, &ctx.metrics, answer, answer);
    Ok(())
}

/// A REST worker: answers Core's REST paths.
pub fn rest_worker(
    jobs: Receiver<Job>,
    stop: StopSignal,
    server: Arc<crate::rest::RestServer>,
) -> Result<(), std::convert::Infallible> {
    let metrics = server.rpc.metrics.clone();
    let handle = |job: &mut Job| server.answer(job.request.url());
    serve(&jobs, &stop, &metrics, handle, |_| {
        Reply::error(503, "Shutting down")
    });
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
            remote: peer(&job.request),
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
