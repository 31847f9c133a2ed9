//! One `bllvm-node` process under test: its datadir, ports, log, JSON-RPC and signals.

use crate::http::http_full;
use serde_json::Value;
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings every node under stress gets: the host's own disk fill must not change results
/// (scenarios that test the disk set their own marks after these).
pub const BASE_CONFIG: &str = "[storage]\ndisk_warn_percent = 99.0\ndisk_critical_percent = 100.0\n[network]\nreconnect_initial_delay_secs = 0.2\nreconnect_max_delay_secs = 1.0\n";

/// A node process (or its datadir between runs).
pub struct Node {
    /// The name reports and `ops.log` use ("node0").
    pub name: String,
    bin: PathBuf,
    /// Its datadir.
    pub datadir: PathBuf,
    /// JSON-RPC, health and metrics address.
    pub rpc: SocketAddr,
    /// P2P address.
    pub p2p: SocketAddr,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    config: PathBuf,
    /// Its log, every start appended.
    pub log: PathBuf,
    child: Option<Child>,
}

/// A free port on `ip` (the node is told it: an older binary cannot report what it bound).
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Node {
    /// A node named `name` under `work`, P2P on `ip`, with `configs` merged over
    /// [`BASE_CONFIG`] in turn.
    pub fn new(bin: &Path, work: &Path, name: &str, ip: Ipv4Addr, configs: &[&str]) -> Node {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let config_path = dir.join("node.toml");
        std::fs::write(&config_path, merged(&[&[BASE_CONFIG], configs].concat()))
            .expect("node config");
        let rpc_ip = Ipv4Addr::LOCALHOST;
        Node {
            name: name.to_owned(),
            bin: bin.to_owned(),
            datadir: dir.join("data"),
            rpc: SocketAddr::from((rpc_ip, free_port(rpc_ip))),
            p2p: SocketAddr::from((ip, free_port(ip))),
            args: Vec::new(),
            config: config_path,
            log: dir.join("node.log"),
            child: None,
        }
    }

    /// Starts the process (the datadir is kept across starts).
    pub fn start(&mut self) -> std::io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        // The node dies with the harness, whatever kills it: no node outlives a run.
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["--network", "regtest", "--datadir"])
            .arg(&self.datadir)
            .args(["--rpc-bind", &self.rpc.to_string()])
            .args(["--p2p-bind", &self.p2p.to_string()])
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Waits until `/health/ready` answers 200; the time it took, or why not.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            if let Ok((200, _, _)) = http_full(self.rpc, "GET", "/health/ready", &[], "") {
                return Ok(t.elapsed());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("{} exited with {status} before ready", self.name));
            }
            if t.elapsed() > limit {
                return Err(format!("{} not ready within {limit:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: a signal to our own child, which we have not reaped.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit; its code (None: killed after the limit).
    pub fn stop(&mut self, limit: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let mut c = self.child.take()?;
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Whether the process has exited by itself.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    /// Its cookie file.
    pub fn cookie(&self) -> PathBuf {
        self.datadir.join("regtest/.cookie")
    }

    /// A JSON-RPC call: the result, or the error (as text). The harness's own calls honour
    /// the node's rate limit as a well-behaved client does: a 429 is waited out (up to 30 s).
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let t = Instant::now();
        loop {
            match self.rpc_once(method, &params) {
                Err(e)
                    if e.contains("rate limit exceeded")
                        && t.elapsed() < Duration::from_secs(30) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    fn rpc_once(&self, method: &str, params: &Value) -> Result<Value, String> {
        let auth = cookie_auth(&self.cookie()).map_err(|e| format!("no cookie: {e}"))?;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, _, text) = http_full(
            self.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            &body.to_string(),
        )
        .map_err(|e| e.to_string())?;
        let mut reply: Value = serde_json::from_str(&text).map_err(|_| {
            format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        match reply.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(reply["result"].take()),
        }
    }

    /// The active tip (height, hash), when the node answers.
    pub fn tip(&self) -> Option<(u64, String)> {
        let info = self.rpc("getblockchaininfo", serde_json::json!([])).ok()?;
        Some((
            info["blocks"].as_u64()?,
            info["bestblockhash"].as_str()?.to_owned(),
        ))
    }

    /// Core's `hash_serialized_3` of the UTXO set and the tip it was taken at.
    pub fn utxo_digest(&self) -> Option<(u64, String)> {
        let v = self
            .rpc("gettxoutsetinfo", serde_json::json!(["hash_serialized_3"]))
            .ok()?;
        Some((
            v["height"].as_u64()?,
            v["hash_serialized_3"].as_str()?.to_owned(),
        ))
    }

    /// Polls until the tip is at least `height`; the tip, or why not.
    pub fn wait_height(&mut self, height: u64, limit: Duration) -> Result<(u64, String), String> {
        let t = Instant::now();
        loop {
            if let Some(tip) = self.tip().filter(|(h, _)| *h >= height) {
                return Ok(tip);
            }
            if self.exited() {
                return Err(format!("{} exited while syncing", self.name));
            }
            if t.elapsed() > limit {
                return Err(format!(
                    "{} reached {:?}, not {height}, within {limit:?}",
                    self.name,
                    self.tip().map(|t| t.0)
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> Option<String> {
        http_full(self.rpc, "GET", "/metrics", &[], "")
            .ok()
            .map(|r| r.2)
    }
}

/// The `Authorization` header value for the cookie file at `path`.
pub fn cookie_auth(path: &Path) -> std::io::Result<String> {
    use base64::Engine;
    let cookie = std::fs::read_to_string(path)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cookie.trim());
    Ok(format!("Basic {b64}"))
}

/// TOML documents merged table by table, later keys winning (a scenario's `[storage]` keys
/// over the base's, where writing both would define the table twice).
fn merged(docs: &[&str]) -> String {
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (k, v) in from {
            match (into.get_mut(&k), v) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                (_, v) => {
                    into.insert(k, v);
                }
            }
        }
    }
    let mut all = toml::Table::new();
    for d in docs {
        merge(
            &mut all,
            d.parse::<toml::Table>()
                .expect("scenario node config is TOML"),
        );
    }
    toml::to_string(&all).expect("TOML")
}

/// The value of `series` in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill9();
    }
}
