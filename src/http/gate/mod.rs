//! The gate: one mio thread owns every connection to the RPC port, so no client holds a thread.
//! It admits connections under caps ([`admission`]), reads each request whole under size and
//! time limits ([`request`]), and only then hands it to tiny_http over one of a fixed set of
//! internal Unix-socket connections, passing the answer back ([`response`]). tiny_http thus
//! sees a bounded number of well-formed requests and keeps one thread per internal
//! connection. Errors of `accept` (out of file descriptors) pause accepting and never end it.
//! A [`Lane`] may answer some requests in the gate itself (JSON-RPC calls a published view
//! answers), which then skip both hops.

pub mod admission;
pub mod request;
pub mod response;

use super::reply::Reply;
use crate::lifecycle::StopSignal;
use crate::metrics::Metrics;
use crate::supervisor::health::{Heartbeat, Status};
use admission::Admission;
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use request::{Forward, Limits, Reader, Step};
use response::Framer;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
/// The stop signal's waker.
const WAKER: Token = Token(usize::MAX);
/// Tokens from here on are internal connections; below, clients (offset by one).
const BACKEND_BASE: usize = 1 << 40;
/// The first request on a new internal connection: answered by the dispatcher itself (it
/// carries no client address, which every forwarded request does).
const WARM_UP: &[u8] = b"GET /.gate-warm-up HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
/// The warm-up's path.
pub const WARM_UP_PATH: &str = "/.gate-warm-up";
/// Longest a probe's answer may take.
const PROBE_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(100);
/// Pause after `accept` fails for want of resources (Core sleeps and retries too).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Answer bytes queued for one client before the gate stops reading its internal connection.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Request bytes buffered over all clients before large bodies wait.
const BUFFER_BUDGET: usize = 64 * 1024 * 1024;
/// How long a refused request's remaining input is read and dropped before closing.
const LINGER: Duration = Duration::from_secs(2);
/// A client may buffer this much however full the budget is.
const BUFFER_FLOOR: usize = 64 * 1024;

/// Answers some complete requests in the gate thread, without the hop to the server behind
/// it. It must never block: what it cannot answer at once it declines, or hands to another
/// thread that completes it through `later`.
pub trait Lane: Send + Sync {
    /// What becomes of `request` from `peer`; `None`: forward it.
    fn answer(&self, request: &Forward, peer: SocketAddr, later: Completion) -> Option<Laned>;
}

/// Makes a reply on the gate thread: the last step of an answer given later.
pub type Finisher = Box<dyn FnOnce() -> Reply + Send>;

/// What a lane did with a request.
pub enum Laned {
    /// Answered it.
    Answer(Reply),
    /// Handed it on: the answer comes through the [`Completion`]; if it has not by
    /// `deadline`, `expired` makes one (a timeout), and a late one is dropped.
    Later {
        /// When to give up waiting.
        deadline: Instant,
        /// The answer then.
        expired: Finisher,
    },
}

/// Where a lane's later answer goes: to the gate, which it wakes.
pub struct Completion {
    tx: crossbeam_channel::Sender<Done>,
    waker: Arc<mio::Waker>,
    client: usize,
    serial: u64,
}

impl Completion {
    /// Hands the answer to the gate (from any thread; never blocks).
    pub fn complete(self, finish: Finisher) {
        let done = Done {
            client: self.client,
            serial: self.serial,
            finish,
        };
        // Full only if the gate is far behind: the request then gets its deadline's answer.
        if self.tx.try_send(done).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

struct Done {
    client: usize,
    serial: u64,
    finish: Finisher,
}

/// Where the lane is put once what it answers from exists (the gate starts first).
pub type LaneSlot = Arc<OnceLock<Arc<dyn Lane>>>;

/// What the gate enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateConfig {
    /// Per-request limits.
    pub limits: Limits,
    /// Open client connections in total.
    pub max_connections: usize,
    /// Open client connections per address.
    pub max_connections_per_ip: usize,
    /// Internal connections for JSON-RPC; requests beyond them wait for one.
    pub rpc_slots: usize,
    /// Internal connections kept for probes (`/health*`, `/metrics`), so no RPC load delays
    /// them; probes beyond them wait for one.
    pub probe_slots: usize,
    /// Longest a JSON-RPC answer may take (past every call's own timeout); a request still
    /// unanswered then gets 502 and its internal connection is replaced.
    pub rpc_answer_timeout: Duration,
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    reader: Reader,
    out: Vec<u8>,
    out_at: usize,
    state: Flow,
    deadline: Instant,
    /// When writing last made progress (or the answer started): slow readers are cut.
    wrote_at: Instant,
    /// Reading stopped with bytes maybe waiting (the buffer budget, or a request in flight).
    paused: bool,
    /// Close once `out` is written, for this reason.
    closing: Option<&'static str>,
    /// After refusing a request whose body may still be coming: answered and shut for writing,
    /// input is read and dropped until the client closes or this time, so it reads the answer
    /// instead of a reset.
    linger: Option<Instant>,
    close_after: bool,
    /// Tells this connection from a later one in the same slot (for answers given later).
    serial: u64,
}

enum Flow {
    Reading,
    Queued(Forward),
    InFlight(usize),
    /// A lane answers later; `close` after it.
    Lane {
        deadline: Instant,
        expired: Finisher,
        close: bool,
    },
}

struct Backend {
    stream: Option<UnixStream>,
    probe: bool,
    /// The client being answered; `None` with a framer: its client left, the rest is dropped.
    client: Option<usize>,
    framer: Option<Framer>,
    out: Vec<u8>,
    out_at: usize,
    /// Reading stopped until the client's queue drains.
    held: bool,
    /// When the request in flight was handed over.
    since: Instant,
    /// Connected, and its first answer not back yet.
    fresh: bool,
}

/// The gate thread.
pub struct Gate {
    poll: Poll,
    listener: TcpListener,
    backend_path: PathBuf,
    config: GateConfig,
    admission: Admission,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    backends: Vec<Backend>,
    /// Clients whose request waits for an internal connection: RPC, probes.
    waiting: [VecDeque<usize>; 2],
    buffered: usize,
    accept_resume: Option<Instant>,
    accept_logged: Option<Instant>,
    metrics: Arc<Metrics>,
    waker: Arc<mio::Waker>,
    lane: LaneSlot,
    /// Clients whose answers drained with requests or input left: read again.
    resume: Vec<usize>,
    /// Answers lanes give later, and where they arrive.
    done_tx: crossbeam_channel::Sender<Done>,
    done_rx: crossbeam_channel::Receiver<Done>,
    next_serial: u64,
}

impl Gate {
    /// Takes the bound listener and where tiny_http listens.
    pub fn new(
        listener: std::net::TcpListener,
        backend_path: PathBuf,
        config: GateConfig,
        metrics: Arc<Metrics>,
        lane: LaneSlot,
    ) -> std::io::Result<Gate> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let backends = (0..config.probe_slots + config.rpc_slots)
            .map(|i| Backend {
                stream: None,
                probe: i < config.probe_slots,
                client: None,
                framer: None,
                out: Vec::new(),
                out_at: 0,
                held: false,
                since: Instant::now(),
                fresh: false,
            })
            .collect();
        // A client waits for at most one answer; the slack covers answers for clients gone.
        let (done_tx, done_rx) = crossbeam_channel::bounded(2 * config.max_connections + 16);
        Ok(Gate {
            poll,
            listener,
            backend_path,
            admission: Admission::new(config.max_connections, config.max_connections_per_ip),
            config,
            clients: Vec::new(),
            free: Vec::new(),
            backends,
            waiting: [VecDeque::new(), VecDeque::new()],
            buffered: 0,
            accept_resume: None,
            accept_logged: None,
            metrics,
            waker,
            lane,
            resume: Vec::new(),
            done_tx,
            done_rx,
            next_serial: 0,
        })
    }

    /// Wakes the gate's poll (for the stop signal).
    pub fn waker(&self) -> Arc<mio::Waker> {
        self.waker.clone()
    }

    /// Serves until stopped.
    pub fn run(
        mut self,
        stop: StopSignal,
        heartbeat: Heartbeat,
        tick: Duration,
    ) -> Result<(), std::io::Error> {
        heartbeat.set_status(Status::Healthy, "");
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            heartbeat.beat();
            if stop.requested() {
                return Ok(());
            }
            let now = Instant::now();
            let mut timeout = next_sweep.saturating_duration_since(now).min(tick);
            if let Some(at) = self.accept_resume {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.completed(now),
                    Token(t) if t >= BACKEND_BASE => {
                        let b = t - BACKEND_BASE;
                        if ev.is_writable() {
                            self.backend_write(b, now);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.backend_read(b, now);
                        }
                    }
                    Token(t) => {
                        let c = t - 1;
                        if ev.is_writable() {
                            self.client_write(c, now);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.client_read(c, now);
                        }
                    }
                }
            }
            if self.accept_resume.is_some_and(|at| now >= at) {
                self.accept_resume = None;
                self.accept(now);
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP;
                self.sweep(now);
                self.sweep_backends(now);
            }
            while let Some(idx) = self.resume.pop() {
                self.client_read(idx, now);
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_resume.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors or memory: what is open keeps being served, and
                    // accepting resumes shortly (the backlog waits in the kernel meanwhile).
                    let kind = match e.raw_os_error() {
                        Some(libc::EMFILE) => "emfile",
                        Some(libc::ENFILE) => "enfile",
                        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => "enomem",
                        _ => "other",
                    };
                    self.metrics
                        .http_accept_errors_total
                        .with_label_values(&[kind])
                        .inc();
                    if self
                        .accept_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                    {
                        self.accept_logged = Some(now);
                        log::error!(
                            open = self.admission.total();
                            "cannot accept RPC/HTTP connections ({e}); retrying every {} ms (logged once a minute)",
                            ACCEPT_PAUSE.as_millis()
                        );
                    }
                    self.accept_resume = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        if let Err(r) = self.admission.admit(peer.ip()) {
            self.metrics
                .http_connections_rejected_total
                .with_label_values(&[r.label()])
                .inc();
            // Best effort on a fresh socket (its send buffer is empty): the client learns why.
            let _ = stream.write(&error_answer(503, "too many connections"));
            return;
        }
        let _ = stream.set_nodelay(true);
        let idx = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(idx + 1),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot watch a new RPC/HTTP connection: {e}");
            self.admission.release(peer.ip());
            self.free.push(idx);
            return;
        }
        self.clients[idx] = Some(Client {
            stream,
            peer,
            reader: Reader::new(self.config.limits, peer, now),
            out: Vec::new(),
            out_at: 0,
            state: Flow::Reading,
            deadline: now + self.config.limits.header_timeout,
            wrote_at: now,
            paused: false,
            closing: None,
            linger: None,
            close_after: false,
            serial: self.next_serial,
        });
        self.next_serial += 1;
        self.metrics.http_connections_open.inc();
    }

    /// Whether a client's socket is read now: a request being read may buffer up to its
    /// limits (large bodies wait while the budget is spent); one being answered only a head.
    fn may_read(&self, c: &Client) -> bool {
        match c.state {
            // Answers the lane made and the client has not read: no more requests until it does.
            Flow::Reading if c.out.len() - c.out_at >= OUT_HIGH_WATER => false,
            Flow::Reading => c.reader.buffered() < BUFFER_FLOOR || self.buffered < BUFFER_BUDGET,
            _ => c.reader.buffered() <= self.config.limits.max_header_bytes,
        }
    }

    fn client_read(&mut self, idx: usize, now: Instant) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some(c) = self.clients.get(idx).and_then(|c| c.as_ref()) else {
                return;
            };
            if c.linger.is_some() {
                let Some(c) = self.clients[idx].as_mut() else {
                    return;
                };
                let reason = c.closing.unwrap_or("client");
                match c.stream.read(&mut buf) {
                    Ok(0) => return self.close(idx, reason),
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return self.close(idx, reason),
                }
            }
            if c.closing.is_some() {
                break;
            }
            let paused = !self.may_read(c);
            let Some(c) = self.clients[idx].as_mut() else {
                return;
            };
            c.paused = paused;
            if paused {
                break;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => return self.close(idx, "client"),
                Ok(n) => {
                    c.reader.push(&buf[..n], now);
                    self.buffered += n;
                    // A short read emptied the socket: what comes later is a new readiness
                    // edge, so the read that would only say "would block" is saved.
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(idx, "client"),
            }
        }
        self.advance(idx, now);
    }

    /// Moves a reading client on: waits, forwards a complete request, or answers and closes.
    /// Requests the lane answers are answered here, pipelined ones in turn, until the client's
    /// unread answers reach the high-water mark (a loop, so a long pipeline cannot recurse).
    fn advance(&mut self, idx: usize, now: Instant) {
        let lane = self.lane.get().cloned();
        let mut answered_here = false;
        let step = loop {
            let Some(c) = self.clients.get_mut(idx).and_then(|c| c.as_mut()) else {
                return;
            };
            if !matches!(c.state, Flow::Reading)
                || c.closing.is_some()
                || c.out.len() - c.out_at >= OUT_HIGH_WATER
            {
                if answered_here {
                    c.paused = true;
                    self.client_write(idx, now);
                }
                return;
            }
            let before = c.reader.buffered();
            let step = c.reader.step(now);
            self.buffered -= before - c.reader.buffered();
            let Step::Forward(f) = step else {
                break step;
            };
            let laned = match &lane {
                Some(lane) if !f.probe => {
                    let later = Completion {
                        tx: self.done_tx.clone(),
                        waker: self.waker.clone(),
                        client: idx,
                        serial: c.serial,
                    };
                    lane.answer(&f, c.peer, later)
                }
                _ => None,
            };
            let reply = match laned {
                None => break Step::Forward(f),
                Some(Laned::Answer(reply)) => reply,
                Some(Laned::Later { deadline, expired }) => {
                    c.state = Flow::Lane {
                        deadline,
                        expired,
                        close: f.close,
                    };
                    // The loop's first check ends it, writing what was answered so far.
                    continue;
                }
            };
            c.out.extend_from_slice(&answer_bytes(&reply, f.close));
            c.wrote_at = now;
            if f.close {
                c.closing = Some("asked");
            } else {
                c.reader.answered(now);
            }
            answered_here = true;
        };
        if answered_here {
            self.client_write(idx, now);
        }
        let Some(c) = self.clients.get_mut(idx).and_then(|c| c.as_mut()) else {
            return;
        };
        match step {
            Step::Wait(deadline) => c.deadline = deadline,
            Step::Continue(deadline) => {
                c.deadline = deadline;
                c.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.client_write(idx, now);
            }
            Step::Forward(f) => {
                c.close_after = f.close;
                match self.free_backend(f.probe) {
                    Some(b) => self.assign(b, idx, f, now),
                    // Slots exceed the work queue, so a full queue still gets Core's 503 from
                    // the dispatcher at once; waiting here is brief.
                    None => {
                        self.waiting[usize::from(f.probe)].push_back(idx);
                        if let Some(c) = self.clients[idx].as_mut() {
                            c.state = Flow::Queued(f);
                        }
                    }
                }
            }
            Step::Reject(status, why) => self.answer(idx, status, why, "rejected", now),
            Step::TimedOut(reason) => {
                if reason != "idle_timeout" {
                    // Best effort, as a courtesy to a slow but honest client.
                    let _ = c.stream.write(&error_answer(408, "request timeout"));
                }
                self.close(idx, reason);
            }
        }
    }

    /// Answers lanes gave later: each goes to its client if it still waits for it.
    fn completed(&mut self, now: Instant) {
        while let Ok(done) = self.done_rx.try_recv() {
            let Some(c) = self.clients.get_mut(done.client).and_then(|c| c.as_mut()) else {
                continue;
            };
            if c.serial != done.serial || !matches!(c.state, Flow::Lane { .. }) {
                continue;
            }
            if let Flow::Lane { close, .. } = std::mem::replace(&mut c.state, Flow::Reading) {
                let reply = (done.finish)();
                self.lane_answered(done.client, &reply, close, now);
            }
        }
    }

    /// A lane's later answer (or its deadline's) is in: it is written and the client goes on.
    fn lane_answered(&mut self, idx: usize, reply: &Reply, close: bool, now: Instant) {
        let Some(c) = self.clients[idx].as_mut() else {
            return;
        };
        c.out.extend_from_slice(&answer_bytes(reply, close));
        c.wrote_at = now;
        if close {
            c.closing = Some("asked");
        } else {
            c.reader.answered(now);
        }
        self.client_write(idx, now);
        self.resume.push(idx);
    }

    /// Queues an answer made by the gate itself, then closes for `reason`.
    fn answer(&mut self, idx: usize, status: u16, why: &str, reason: &'static str, now: Instant) {
        let Some(c) = self.clients[idx].as_mut() else {
            return;
        };
        c.out.extend_from_slice(&error_answer(status, why));
        c.closing = Some(reason);
        c.wrote_at = now;
        self.client_write(idx, now);
    }

    /// A free internal connection of the class, or `None`: then the request waits, and a new
    /// connection may be on its way.
    ///
    /// New connections are made one at a time: tiny_http runs each connection as a task of
    /// its thread pool, and two tasks queued at once can leave the second waiting for a thread
    /// that never frees (its tasks are our connections, which live for ever). So a new
    /// connection first carries a warm-up request the dispatcher answers at once, and the next
    /// is made only after that answer, which proves its task is running.
    fn free_backend(&mut self, probe: bool) -> Option<usize> {
        let connected = |b: &Backend| b.probe == probe && b.framer.is_none() && b.stream.is_some();
        if let Some(b) = self.backends.iter().position(connected) {
            return Some(b);
        }
        if self.backends.iter().any(|b| b.fresh) {
            return None;
        }
        let b = self
            .backends
            .iter()
            .position(|b| b.probe == probe && b.framer.is_none())?;
        if self.backends[b].stream.is_none() {
            let std = std::os::unix::net::UnixStream::connect(&self.backend_path)
                .and_then(|s| s.set_nonblocking(true).map(|()| s));
            let mut stream = match std {
                Ok(s) => UnixStream::from_std(s),
                Err(e) => {
                    log::error!("cannot reach the HTTP server behind the gate: {e}");
                    return None;
                }
            };
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(BACKEND_BASE + b),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                return None;
            }
            let be = &mut self.backends[b];
            be.stream = Some(stream);
            be.fresh = true;
            be.client = None;
            be.framer = Some(Framer::new(false, false));
            be.out = WARM_UP.to_vec();
            be.out_at = 0;
            be.since = Instant::now();
            self.backend_write(b, Instant::now());
            return None;
        }
        Some(b)
    }

    fn assign(&mut self, b: usize, idx: usize, f: Forward, now: Instant) {
        if let Some(c) = self.clients[idx].as_mut() {
            c.state = Flow::InFlight(b);
            c.wrote_at = now;
        }
        let be = &mut self.backends[b];
        be.client = Some(idx);
        be.framer = Some(Framer::new(f.head_only, f.close));
        be.since = now;
        be.out = f.bytes;
        be.out_at = 0;
        self.backend_write(b, now);
    }

    fn backend_write(&mut self, b: usize, now: Instant) {
        let be = &mut self.backends[b];
        let Some(stream) = be.stream.as_mut() else {
            return;
        };
        while be.out_at < be.out.len() {
            match stream.write(&be.out[be.out_at..]) {
                Ok(n) => be.out_at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.backend_failed(b, now),
            }
        }
        be.out = Vec::new();
        be.out_at = 0;
    }

    fn backend_read(&mut self, b: usize, now: Instant) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let be = &mut self.backends[b];
            let (Some(stream), Some(framer)) = (be.stream.as_mut(), be.framer.as_mut()) else {
                if be.stream.is_some() && be.framer.is_none() {
                    // Nothing is owed on an idle connection: a read here is its close.
                    let mut probe = [0u8; 1];
                    if let Some(s) = be.stream.as_mut() {
                        match s.read(&mut probe) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            _ => self.backend_failed(b, now),
                        }
                    }
                }
                return;
            };
            let client = be.client;
            let queued = client
                .and_then(|i| self.clients[i].as_ref())
                .map_or(0, |c| c.out.len() - c.out_at);
            if queued >= OUT_HIGH_WATER {
                be.held = true;
                return;
            }
            be.held = false;
            let n = match stream.read(&mut buf) {
                Ok(0) => return self.backend_failed(b, now),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.backend_failed(b, now),
            };
            let mut scratch = Vec::new();
            let out = match client.and_then(|i| self.clients[i].as_mut()) {
                Some(c) => &mut c.out,
                None => &mut scratch,
            };
            match framer.feed(&buf[..n], out) {
                Ok(false) => {}
                Ok(true) => {
                    be.framer = None;
                    be.client = None;
                    be.fresh = false;
                    self.answered(client, now);
                    // Both classes: a new connection of either may have waited for this one.
                    self.next_waiting(0, now);
                    self.next_waiting(1, now);
                    return;
                }
                Err(e) => {
                    log::error!("{e}");
                    return self.backend_failed(b, now);
                }
            }
            if let Some(i) = client {
                self.client_write(i, now);
            }
        }
    }

    /// The internal connection broke: its client gets 502 and it is connected again when next
    /// needed.
    fn backend_failed(&mut self, b: usize, now: Instant) {
        let be = &mut self.backends[b];
        if let Some(mut s) = be.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        be.framer = None;
        be.fresh = false;
        be.out = Vec::new();
        be.out_at = 0;
        if let Some(idx) = be.client.take() {
            log::warn!("the HTTP server behind the gate dropped a request");
            if let Some(c) = self.clients[idx].as_mut() {
                c.state = Flow::Reading;
            }
            self.answer(idx, 502, "internal HTTP server error", "backend", now);
        }
        self.next_waiting(0, now);
        self.next_waiting(1, now);
    }

    /// A client's answer is complete: it reads its next request, or closes as it asked.
    fn answered(&mut self, client: Option<usize>, now: Instant) {
        let Some(idx) = client else {
            return;
        };
        let Some(c) = self.clients[idx].as_mut() else {
            return;
        };
        c.state = Flow::Reading;
        if c.close_after {
            c.closing = Some("asked");
        } else {
            c.reader.answered(now);
        }
        self.client_write(idx, now);
        self.client_read(idx, now);
    }

    /// Hands free internal connections of a class (`1`: probes) to waiting requests.
    fn next_waiting(&mut self, class: usize, now: Instant) {
        while let Some(&idx) = self.waiting[class].front() {
            let Some(b) = self.free_backend(class == 1) else {
                return;
            };
            self.waiting[class].pop_front();
            let Some(c) = self.clients[idx].as_mut() else {
                continue;
            };
            if let Flow::Queued(f) = std::mem::replace(&mut c.state, Flow::Reading) {
                self.assign(b, idx, f, now);
            }
        }
    }

    fn client_write(&mut self, idx: usize, now: Instant) {
        let Some(c) = self.clients.get_mut(idx).and_then(|c| c.as_mut()) else {
            return;
        };
        while c.out_at < c.out.len() {
            match c.stream.write(&c.out[c.out_at..]) {
                Ok(n) => {
                    c.out_at += n;
                    c.wrote_at = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(idx, "client"),
            }
        }
        c.out.clear();
        c.out_at = 0;
        if c.out.capacity() > 4 * OUT_HIGH_WATER {
            c.out = Vec::new();
        }
        if matches!(c.state, Flow::Reading) && c.closing.is_none() && c.paused {
            // Reading stopped while its answers were queued (the lane): go on.
            c.paused = false;
            self.resume.push(idx);
        }
        match c.closing {
            Some("rejected") if c.linger.is_none() => {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
                c.linger = Some(now + LINGER);
                return self.client_read(idx, now);
            }
            Some(_) if c.linger.is_some() => return,
            Some(reason) => return self.close(idx, reason),
            None => {}
        }
        if let Flow::InFlight(b) = c.state {
            if self.backends[b].held {
                self.backend_read(b, now);
            }
        }
    }

    /// Deadlines: requests that took too long, answers not read for too long, and clients
    /// whose reading waited for the buffer budget.
    fn sweep(&mut self, now: Instant) {
        let send_limit = self.config.limits.header_timeout;
        for idx in 0..self.clients.len() {
            let Some(c) = self.clients[idx].as_ref() else {
                continue;
            };
            let pending = c.out_at < c.out.len();
            if matches!(c.state, Flow::Lane { deadline, .. } if now >= deadline) {
                let Some(c) = self.clients[idx].as_mut() else {
                    continue;
                };
                if let Flow::Lane { expired, close, .. } =
                    std::mem::replace(&mut c.state, Flow::Reading)
                {
                    let reply = expired();
                    self.lane_answered(idx, &reply, close, now);
                }
            } else if c.linger.is_some_and(|t| now >= t) {
                self.close(idx, c.closing.unwrap_or("rejected"));
            } else if pending && now.duration_since(c.wrote_at) >= send_limit {
                self.close(idx, "send_timeout");
            } else if matches!(c.state, Flow::Reading) && c.closing.is_none() {
                if now >= c.deadline {
                    self.advance(idx, now);
                } else if c.paused && self.may_read(c) {
                    self.client_read(idx, now);
                }
            }
        }
    }

    /// Internal connections whose answer is overdue: nothing may wait on one for ever.
    fn sweep_backends(&mut self, now: Instant) {
        for b in 0..self.backends.len() {
            let be = &self.backends[b];
            let limit = if be.probe {
                PROBE_ANSWER_TIMEOUT
            } else {
                self.config.rpc_answer_timeout
            };
            if be.framer.is_some() && now.duration_since(be.since) >= limit {
                log::error!(
                    "the HTTP server behind the gate has not answered a request in {} s; replacing its connection",
                    limit.as_secs()
                );
                self.backend_failed(b, now);
            }
        }
    }

    fn close(&mut self, idx: usize, reason: &'static str) {
        let Some(mut c) = self.clients.get_mut(idx).and_then(|c| c.take()) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.admission.release(c.peer.ip());
        self.buffered -= c.reader.buffered();
        match c.state {
            // The answer still comes and is dropped, so the connection can be used again.
            Flow::InFlight(b) => self.backends[b].client = None,
            Flow::Queued(_) => self
                .waiting
                .iter_mut()
                .for_each(|w| w.retain(|&i| i != idx)),
            // A later answer finds another serial (or nobody) and is dropped.
            Flow::Reading | Flow::Lane { .. } => {}
        }
        self.free.push(idx);
        self.metrics.http_connections_open.dec();
        self.metrics
            .http_connections_closed_total
            .with_label_values(&[reason])
            .inc();
    }
}

/// Reasons a connection is closed; the `reason` label of
/// `bllvm_http_connections_closed_total`.
pub const CLOSE_REASONS: [&str; 8] = [
    "client",
    "asked",
    "rejected",
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "send_timeout",
    "backend",
];

/// A lane's answer on the wire, with a length (never chunked) and `Connection: close` when
/// the client asked for it.
fn answer_bytes(reply: &Reply, close: bool) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reply.status,
        tiny_http::StatusCode(reply.status).default_reason_phrase(),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&reply.body);
    out
}

/// An answer the gate makes itself, with `Reply::error`'s body, after which it closes.
fn error_answer(status: u16, why: &str) -> Vec<u8> {
    answer_bytes(&Reply::error(status, why), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers every request with 200 KB, counting the calls.
    struct Big(AtomicUsize);

    impl Lane for Big {
        fn answer(&self, _: &Forward, _: SocketAddr, _: Completion) -> Option<Laned> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Some(Laned::Answer(Reply {
                status: 200,
                content_type: "text/plain",
                headers: vec![("X-N", n.to_string())],
                body: vec![b'x'; 200_000],
            }))
        }
    }

    /// A client pipelining requests without reading the answers gets no more answered than
    /// the high-water mark (plus what the kernel holds) until it reads; then it gets them all,
    /// in order.
    #[test]
    fn pipelined_answers_wait_at_the_high_water_mark() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_header_bytes: 8192,
            max_body_bytes: 1 << 20,
            // Longer than the client's patience: no deadline may be what moves the answers on.
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            body_min_bytes_per_sec: 1,
        };
        let config = GateConfig {
            limits,
            max_connections: 8,
            max_connections_per_ip: 8,
            rpc_slots: 1,
            probe_slots: 1,
            rpc_answer_timeout: Duration::from_secs(10),
        };
        let metrics = Arc::new(Metrics::new("redb").unwrap());
        let big = Arc::new(Big(AtomicUsize::new(0)));
        let slot: LaneSlot = Arc::default();
        let _ = slot.set(big.clone());
        let dir = std::env::temp_dir().join(format!("bllvm-gate-hw-{}", std::process::id()));
        let gate = Gate::new(listener, dir.join("none.sock"), config, metrics, slot).unwrap();
        let shared = crate::state::Shared::new(true);
        let heartbeat = shared
            .vitals
            .heartbeat(crate::component::Component::Http, None);
        let (stop, signal) = crate::lifecycle::stop_pair(Some(gate.waker()));
        let thread =
            std::thread::spawn(move || gate.run(signal, heartbeat, Duration::from_secs(1)));

        let n = 50;
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A small window, so the answers wait in the gate rather than in the kernel.
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut s: std::net::TcpStream = sock.into();
        let one = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
        s.write_all(one.repeat(n).as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while big.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Nothing is read for a moment: the gate must stop short of answering everything.
        std::thread::sleep(Duration::from_millis(300));
        let answered = big.0.load(Ordering::SeqCst);
        assert!(
            answered > 0 && answered < n / 2,
            "{answered} answered unread"
        );
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = std::io::BufReader::new(s);
        for i in 0..n {
            use std::io::BufRead;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains(&format!("X-N: {i}\r\n")), "in order: {head}");
            let mut body = vec![0u8; 200_000];
            r.read_exact(&mut body).unwrap();
        }
        stop.stop();
        thread.join().unwrap().unwrap();
    }
}
