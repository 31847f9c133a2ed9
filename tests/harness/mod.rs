//! Test harness: starts the real `bllvm-node` binary on loopback with a temporary datadir.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod chain;
pub mod electrs;
pub mod http;
pub mod raw_peer;
pub mod systemd;
pub mod tmpfs;

pub use http::*;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bllvm-node");

/// A port the OS just handed out on 127.0.0.1, never one this test process handed out before,
/// for tools that cannot bind port 0 and say what they got (Prometheus, electrs). Our nodes
/// bind port 0 and name their addresses (`listening.json`): no window between picking and
/// binding.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The addresses a node started with port 0 bound, from its `listening.json` or its log (a full
/// disk can keep the file from being written); `None` when the process exits first (a test that
/// expects it to fail at start).
fn bound_addresses(
    path: &Path,
    child: &mut Child,
    log_path: &Path,
) -> Option<(SocketAddr, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("listening.json");
            let addr = |k: &str| v[k].as_str().and_then(|a| a.parse().ok());
            return Some((addr("rpc")?, addr("p2p")?));
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let after = |needle: &str| -> Option<SocketAddr> {
            let line = log.lines().find(|l| l.contains(needle))?;
            line.rsplit(needle).next()?.trim().parse().ok()
        };
        if let (Some(rpc), Some(p2p)) = (
            after("http (rpc, health, metrics) listening on "),
            after("p2p listening on "),
        ) {
            return Some((rpc, p2p));
        }
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            panic!("the node named no bound addresses within 120 s: {log}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running node; killed on drop.
pub struct TestNode {
    pub child: Child,
    pub datadir: PathBuf,
    pub rpc: SocketAddr,
    pub p2p: SocketAddr,
    pub log_path: PathBuf,
    /// Credentials `rpc` uses instead of the cookie.
    pub rpc_auth: Option<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
    exit: Option<ExitStatus>,
}

/// How to start a node.
#[derive(Default)]
pub struct NodeOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Config file contents, passed as --config.
    pub config: Option<String>,
    /// Reuse this datadir instead of a fresh one.
    pub datadir: Option<PathBuf>,
    /// Reuse these ports.
    pub ports: Option<(u16, u16)>,
    /// Where the log and config go (default: beside the datadir).
    pub log_dir: Option<PathBuf>,
    /// RPC credentials to use instead of the cookie (they must be in the config too).
    pub rpc_auth: Option<(String, String)>,
    /// The node's open-file limit, soft and hard (so it cannot raise it).
    pub nofile: Option<u64>,
    /// Where its stderr goes instead of the log file (a pipe the test holds).
    pub stderr: Option<Stdio>,
}

/// Reconnection fast enough for tests.
pub const FAST_RECONNECT: &str =
    "[network]\nreconnect_initial_delay_secs = 0.2\nreconnect_max_delay_secs = 1.0\n";

impl NodeOptions {
    /// A node that connects only to `peers` (`--connect`), redialling them quickly.
    pub fn connect(peers: &[&TestNode]) -> NodeOptions {
        NodeOptions {
            args: peers
                .iter()
                .flat_map(|p| ["--connect".to_owned(), p.p2p.to_string()])
                .collect(),
            config: Some(FAST_RECONNECT.into()),
            ..NodeOptions::default()
        }
    }
}

/// A regtest P2WPKH address from a fixed key.
pub fn address(key: u8) -> String {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[key; 32]).unwrap();
    let pk = bitcoin::CompressedPublicKey(sk.public_key(&secp));
    bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest).to_string()
}

/// A process's resident and peak resident memory, KiB.
pub fn proc_kib(pid: i32) -> (u64, u64) {
    (proc_field(pid, "VmRSS:"), proc_field(pid, "VmHWM:"))
}

/// CPU seconds (user and system) in a /proc `stat` line: utime and stime are the 12th and 13th
/// fields after the command name (which may hold spaces).
fn stat_cpu_seconds(stat: &str) -> f64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks = 100.0; // USER_HZ
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

/// CPU seconds a process has used.
pub fn cpu_seconds(pid: i32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU seconds the process's threads named `thread` have used (`p2p`, `chain`, ...), to the
/// nanosecond (`schedstat`; `stat` counts in 10 ms ticks).
pub fn thread_cpu_seconds(pid: i32, thread: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == thread)
        })
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// A number from /proc/<pid>/status (`VmRSS:` in KiB, `Threads:`), 0 when missing.
pub fn proc_field(pid: i32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `config` with the disk marks moved to 99 % / 100 % unless it sets them: the datadirs share the
/// host's disk, and a host past the default 80 % would otherwise degrade health and refuse backups
/// in tests that are about neither. Text that is not TOML is left for the node to refuse.
pub fn with_disk_marks(config: &str) -> String {
    let Ok(mut table) = config.parse::<toml::Table>() else {
        return config.to_owned();
    };
    let storage = table
        .entry("storage")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(storage) = storage.as_table_mut() else {
        return config.to_owned();
    };
    if !storage.contains_key("disk_warn_percent") && !storage.contains_key("disk_critical_percent")
    {
        storage.insert("disk_warn_percent".into(), 99.0.into());
        storage.insert("disk_critical_percent".into(), 100.0.into());
    }
    toml::to_string(&table).expect("a parsed table serialises")
}

impl TestNode {
    /// Starts a regtest node with a fresh datadir and OS-chosen ports.
    pub fn start() -> TestNode {
        Self::start_with(NodeOptions::default())
    }

    /// Starts a regtest node with `opts`.
    pub fn start_with(opts: NodeOptions) -> TestNode {
        let (tmp, datadir) = match opts.datadir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("bllvm-test-")
                    .tempdir()
                    .unwrap();
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        // Port 0 unless a test needs the ports it had before (a restart): the node binds, then
        // names what it bound in `listening.json`, so no port is picked before it is bound.
        let (rpc_port, p2p_port) = opts.ports.unwrap_or((0, 0));
        let listening = datadir.join("regtest").join("listening.json");
        if opts.ports.is_none() {
            // A file left by an earlier run would name its ports.
            let _ = std::fs::remove_file(&listening);
        }
        let rpc: SocketAddr = format!("127.0.0.1:{rpc_port}").parse().unwrap();
        let p2p: SocketAddr = format!("127.0.0.1:{p2p_port}").parse().unwrap();
        let log_dir = opts.log_dir.clone().unwrap_or_else(|| {
            tmp.as_ref()
                .map(|t| t.path().to_owned())
                .unwrap_or_else(|| datadir.parent().unwrap().to_owned())
        });
        let log_path = unique(&log_dir, "node", "log");
        let mut cmd = Command::new(BIN);
        cmd.args(["--network", "regtest"])
            .arg("--datadir")
            .arg(&datadir)
            .args([
                "--rpc-bind",
                &rpc.to_string(),
                "--p2p-bind",
                &p2p.to_string(),
            ])
            .args(&opts.args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                opts.stderr
                    .unwrap_or_else(|| File::create(&log_path).unwrap().into()),
            );
        let path = unique(&log_dir, "node", "toml");
        std::fs::write(&path, with_disk_marks(opts.config.as_deref().unwrap_or(""))).unwrap();
        cmd.arg("--config").arg(path);
        if let Some(n) = opts.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("start bllvm-node");
        let (rpc, p2p) = if rpc_port == 0 || p2p_port == 0 {
            bound_addresses(&listening, &mut child, &log_path).unwrap_or((rpc, p2p))
        } else {
            (rpc, p2p)
        };
        TestNode {
            child,
            datadir,
            rpc,
            p2p,
            log_path,
            rpc_auth: opts.rpc_auth,
            _tmp: tmp,
            exit: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log once it contains `needle` (its lines are written by a thread of their own, a
    /// moment after the event); panics with the log after 10 s.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(self.rpc, "GET", path, "")
    }

    /// Waits until `/health/ready` answers 200; panics with the log otherwise.
    pub fn wait_ready(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if let Ok((200, _)) = self.get("/health/ready") {
                return started.elapsed();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("node exited with {status} before ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node not ready within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill failed");
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let child = &mut self.child;
        self.exit = Some(poll(Duration::from_secs(30), "node to die", || {
            child.try_wait().unwrap()
        }));
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = &mut self.child;
        let status = poll(timeout, "node to exit", || child.try_wait().unwrap());
        self.exit = Some(status);
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status}"))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    (0..)
        .map(|i| dir.join(format!("{stem}-{i}.{ext}")))
        .find(|p| !p.exists())
        .unwrap()
}

impl TestNode {
    /// The `Authorization` header value for this node's RPC (its cookie, or the configured user).
    pub fn auth(&self) -> std::io::Result<String> {
        use base64::Engine;
        let cookie = match &self.rpc_auth {
            Some((user, password)) => format!("{user}:{password}"),
            None => std::fs::read_to_string(self.datadir.join("regtest/.cookie"))?,
        };
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cookie.trim())
        ))
    }

    /// Calls a JSON-RPC method with the node's cookie: the result, or the error object.
    pub fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let auth = self
            .auth()
            .map_err(|e| serde_json::json!({ "message": format!("no cookie: {e}") }))?;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (_, _, text) = http_full(
            self.rpc,
            "POST",
            "/",
            &[("Authorization", &auth)],
            &body.to_string(),
        )
        .map_err(|e| serde_json::json!({ "message": e.to_string() }))?;
        let mut reply = json(&text);
        match reply.get("error") {
            Some(e) if !e.is_null() => Err(e.clone()),
            _ => Ok(reply["result"].take()),
        }
    }

    /// Calls a method that must succeed.
    pub fn call(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.rpc(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e}\nlog:\n{}", self.log()))
    }

    /// The active tip: (height, hash).
    pub fn tip(&self) -> (u64, String) {
        let info = self.call("getblockchaininfo", serde_json::json!([]));
        (
            info["blocks"].as_u64().unwrap(),
            info["bestblockhash"].as_str().unwrap().to_owned(),
        )
    }
}

impl TestNode {
    /// The value of the metric series `series` (name with labels, as exposed); panics when the
    /// node does not export it, so a renamed metric fails the test instead of reading as 0.
    pub fn metric(&self, series: &str) -> f64 {
        self.metric_opt(series)
            .unwrap_or_else(|| panic!("metric {series} is not exported"))
    }

    /// The value of the metric series `series`, or `None` when the node does not export it
    /// (yet: a labelled series appears once it is first counted).
    pub fn metric_opt(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The txids in the node's mempool, sorted.
    pub fn mempool_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .call("getrawmempool", serde_json::json!([]))
            .as_array()
            .expect("an array")
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The coinbase output of the node's block at `height`.
    pub fn coinbase(&self, height: u64) -> (bitcoin::OutPoint, bitcoin::TxOut) {
        let hash = self.call("getblockhash", serde_json::json!([height]));
        let block = self.call("getblock", serde_json::json!([hash, 2]));
        let cb = &block["tx"][0];
        let txid = cb["txid"].as_str().unwrap().parse().unwrap();
        let vout = &cb["vout"][0];
        let sat = (vout["value"].as_f64().unwrap() * 1e8).round() as u64;
        let script = vout["scriptPubKey"]["hex"].as_str().unwrap();
        (
            bitcoin::OutPoint::new(txid, 0),
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(sat),
                script_pubkey: bitcoin::ScriptBuf::from_hex(script).unwrap(),
            },
        )
    }

    /// Submits a block; panics unless the node accepts it (`null`).
    pub fn submit(&self, block: &bitcoin::Block) {
        let hex = bitcoin::consensus::encode::serialize_hex(block);
        let r = self.call("submitblock", serde_json::json!([hex]));
        assert!(r.is_null(), "block {} refused: {r}", block.block_hash());
    }
}

impl TestNode {
    /// A node started with `opts`, once ready.
    pub fn ready_with(opts: NodeOptions) -> TestNode {
        let mut n = TestNode::start_with(opts);
        n.wait_ready(Duration::from_secs(30));
        n
    }

    /// A ready regtest node on `datadir`, with `config` (TOML; empty for defaults).
    pub fn ready_on(datadir: &Path, config: &str) -> TestNode {
        let mut n = TestNode::start_with(NodeOptions {
            datadir: Some(datadir.to_owned()),
            config: (!config.is_empty()).then(|| config.to_owned()),
            ..NodeOptions::default()
        });
        n.wait_ready(Duration::from_secs(60));
        n
    }

    /// SIGTERM; asserts a clean exit (0) within 20 s.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(20));
        assert_eq!(code, 0, "{}", self.log());
    }

    /// Calls a method that must fail with a message containing `text`; the error object.
    pub fn rpc_err(
        &self,
        method: &str,
        params: serde_json::Value,
        text: &str,
    ) -> serde_json::Value {
        let err = self
            .rpc(method, params)
            .expect_err(&format!("{method} must fail"));
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{method}: {err}");
        err
    }
}

/// Flips one byte of `path` at `at`.
pub fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Flips byte `offset` of every occurrence of `pattern` in `path` (a store file may hold stale
/// copies of a record beside the live one); returns how many there were.
pub fn flip_every(path: &Path, pattern: &[u8], offset: usize) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let at: Vec<usize> = bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern)
        .map(|(i, _)| i)
        .collect();
    for i in &at {
        bytes[i + offset] ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
    at.len()
}

/// A node's datadir (in a temporary directory kept alive by the first value) after it mined
/// `blocks` blocks and stopped cleanly, and its tip's hash.
pub fn stopped_after_mining(blocks: u32) -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let datadir = tmp.path().join("data");
    let node = TestNode::ready_on(&datadir, "");
    node.call("generatetoaddress", serde_json::json!([blocks, address(1)]));
    let (_, tip) = node.tip();
    node.stop();
    (tmp, datadir, tip)
}

/// Raises this process's own open-file limit to its hard limit (tests that open thousands of
/// connections); returns it.
pub fn raise_own_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct only.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Runs the binary with `args` against `datadir` (regtest); (exit code, stdout + stderr).
pub fn cli(datadir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["--network", "regtest", "--datadir"])
        .arg(datadir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
