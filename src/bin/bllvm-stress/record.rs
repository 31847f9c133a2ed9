//! What a run measures: latencies and completions per operation, errors by kind, and a sampler
//! thread reading each node's RSS, threads, descriptors, CPU, tip and probe latency.

use crate::http::http_full;
use crate::node::metric;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading of one node.
#[derive(Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// The node's name.
    pub node: String,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// CPU seconds used since the process started.
    pub cpu_s: f64,
    /// Tip height from its metrics.
    pub height: Option<u64>,
    /// How long `/health/live` took to answer, ms (None: no answer within 2 s).
    pub probe_ms: Option<f64>,
}

#[derive(Default)]
struct Inner {
    latency: BTreeMap<String, Vec<f64>>,
    done: BTreeMap<String, Vec<f64>>,
    errors: BTreeMap<String, u64>,
    samples: Vec<Sample>,
    figures: BTreeMap<String, f64>,
}

/// Everything measured in a run; shared by the scenario's threads.
pub struct Recorder {
    t0: Instant,
    inner: Mutex<Inner>,
}

/// What a recorder holds at the end.
pub struct Recorded {
    pub latency: BTreeMap<String, Vec<f64>>,
    pub done: BTreeMap<String, Vec<f64>>,
    pub errors: BTreeMap<String, u64>,
    pub samples: Vec<Sample>,
    pub figures: BTreeMap<String, f64>,
    pub seconds: f64,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            t0: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// An operation of kind `op` that started at `started` succeeded.
    pub fn ok(&self, op: &str, started: Instant) {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let now = self.now();
        let mut i = self.inner.lock();
        i.latency.entry(op.to_owned()).or_default().push(ms);
        i.done.entry(op.to_owned()).or_default().push(now);
    }

    /// `n` units of `what` (blocks, transactions) completed now, for throughput over time.
    pub fn completed(&self, what: &str, n: u64) {
        let now = self.now();
        let mut i = self.inner.lock();
        let v = i.done.entry(what.to_owned()).or_default();
        v.extend(std::iter::repeat_n(now, n as usize));
    }

    /// An error of `kind` (e.g. `rpc:getblock:503`, `probe:timeout`).
    pub fn err(&self, kind: &str) {
        *self.inner.lock().errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Errors so far whose kind starts with `prefix`.
    pub fn errors(&self, prefix: &str) -> u64 {
        let i = self.inner.lock();
        i.errors
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Successful operations so far whose kind starts with `prefix`.
    pub fn count_ok(&self, prefix: &str) -> usize {
        let i = self.inner.lock();
        i.latency
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.len())
            .sum()
    }

    /// A scenario's own figure (sync seconds, rounds, ...).
    pub fn figure(&self, name: &str, value: f64) {
        self.inner.lock().figures.insert(name.to_owned(), value);
    }

    /// Samples node `name` now (a node just started, so even a short run has a reading).
    pub fn sample_now(&self, name: &str, pid: Option<i32>, rpc: SocketAddr) {
        if let Some(s) = pid.and_then(|pid| read(self, name, &Target { pid, rpc })) {
            self.inner.lock().samples.push(s);
        }
    }

    /// Hands over what was recorded.
    pub fn take(&self) -> Recorded {
        let mut i = self.inner.lock();
        let i = std::mem::take(&mut *i);
        Recorded {
            latency: i.latency,
            done: i.done,
            errors: i.errors,
            samples: i.samples,
            figures: i.figures,
            seconds: self.now(),
        }
    }
}

/// A node the sampler reads.
#[derive(Clone)]
pub struct Target {
    pid: i32,
    rpc: SocketAddr,
}

/// The nodes to sample; scenarios update it as nodes start, restart and stop.
#[derive(Clone, Default)]
pub struct Watch(Arc<Mutex<BTreeMap<String, Target>>>);

impl Watch {
    /// Samples `name` (process `pid`, HTTP at `rpc`) from now on.
    pub fn set(&self, name: &str, pid: Option<i32>, rpc: SocketAddr) {
        match pid {
            Some(pid) => {
                self.0.lock().insert(name.to_owned(), Target { pid, rpc });
            }
            None => self.remove(name),
        }
    }

    /// Stops sampling `name`.
    pub fn remove(&self, name: &str) {
        self.0.lock().remove(name);
    }
}

/// The sampler thread; stops when dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Reads every watched node every `every`.
    pub fn start(rec: Arc<Recorder>, watch: Watch, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !s.load(Ordering::Relaxed) {
                    let targets: Vec<_> = watch.0.lock().clone().into_iter().collect();
                    for (name, t) in targets {
                        if let Some(sample) = read(&rec, &name, &t) {
                            rec.inner.lock().samples.push(sample);
                        }
                    }
                    next += every;
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    } else {
                        next = Instant::now();
                    }
                }
            })
            .expect("sampler thread");
        Sampler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(rec: &Recorder, name: &str, t: &Target) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).ok()?;
    // A stopped process (SIGSTOP) still has its /proc entries; a zombie has no memory.
    let field = |k: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rss_kib = field("VmRSS:")?;
    let threads = field("Threads:").unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", t.pid))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", t.pid)).ok()?;
    // Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The time of the CPU reading, not of the end of the probe (up to 2 s later): CPU per
    // second is their quotient.
    let at = rec.now();
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let started = Instant::now();
    let probe_ms = probe(t.rpc).then(|| started.elapsed().as_secs_f64() * 1e3);
    if probe_ms.is_none() {
        // A node killed meanwhile (gone, or a zombie not yet reaped) is not a missed probe.
        let state = std::fs::read_to_string(format!("/proc/{}/status", t.pid)).unwrap_or_default();
        if !state
            .lines()
            .any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"))
        {
            return None;
        }
        rec.err("probe:no answer in 2 s");
    }
    // A stopped process accepts connections but never answers: ask only a node that answered.
    let height = probe_ms
        .and_then(|_| http_get(t.rpc, "/metrics"))
        .and_then(|m| metric(&m, "bllvm_chain_height"))
        .map(|h| h as u64);
    Some(Sample {
        t: at,
        node: name.to_owned(),
        rss_mib: rss_kib as f64 / 1024.0,
        threads,
        fds,
        cpu_s: ticks / hz,
        height,
        probe_ms,
    })
}

/// `GET /health/live` answered 200 within 2 s.
fn probe(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http_full(addr, "GET", path, &[], "").ok().map(|r| r.2)
}

/// CPU seconds the threads of `pid` named `name` have used (from schedstat: ns resolution).
pub fn thread_cpu(pid: i32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}
