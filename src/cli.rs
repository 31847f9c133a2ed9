//! Command line: run the node, or check/print configuration.

use crate::config::{self, Chain, Config, ConfigError, LogFormat, LogLevel, Overrides};
use crate::supervisor::signals::RESTART_EXIT_CODE;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// bllvm-node: a Bitcoin full node built to stay up.
#[derive(Debug, Parser)]
#[command(name = "bllvm-node", version, about)]
pub struct Cli {
    /// TOML config file (see `bllvm-node config default`).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Network: mainnet, testnet3, testnet4, signet or regtest.
    #[arg(long, global = true, value_name = "NETWORK", value_parser = clap::builder::ValueParser::new(parse_chain))]
    pub network: Option<Chain>,
    /// Root data directory; files go to <datadir>/<network>/.
    #[arg(long, global = true, value_name = "PATH")]
    pub datadir: Option<PathBuf>,
    /// Listen address for JSON-RPC, /health* and /metrics.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub rpc_bind: Option<SocketAddr>,
    /// Listen address for P2P.
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub p2p_bind: Option<SocketAddr>,
    /// Connect only to this peer (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    pub connect: Vec<String>,
    /// Keep this peer connected (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    pub addnode: Vec<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level (overrides RUST_LOG and the config file).
    #[arg(long, global = true, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Rebuild the chain state from the block files at this start, after a backup of it
    /// (Core's -reindex).
    #[arg(long)]
    pub reindex: bool,
    /// What to do; without a command the node runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration tools.
    Config {
        /// Which tool.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Backups of the chain-state store.
    Backup {
        /// Which tool.
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Puts a backup back as the chain-state store (the node must be stopped); the next start
    /// reconnects the blocks written after it.
    Restore {
        /// The backup directory (`<backups>/<UTC time>-<height>/`).
        dir: PathBuf,
    },
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Checks a backup against its manifest (sizes, SHA-256, tables, tip); exit 0 or 1.
    Verify {
        /// The backup directory.
        dir: PathBuf,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a config file (with flags applied) and print the effective config; exit 0 or 1.
    Check {
        /// The file; defaults to --config, else built-in defaults.
        path: Option<PathBuf>,
    },
    /// Print a fully commented default config.
    Default,
}

fn parse_chain(s: &str) -> Result<Chain, String> {
    s.parse()
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            chain: self.network,
            datadir: self.datadir.clone(),
            rpc_bind: self.rpc_bind,
            p2p_bind: self.p2p_bind,
            connect: self.connect.clone(),
            addnode: self.addnode.clone(),
            log_format: self.log_format,
            log_level: self.log_level,
        }
    }
}

/// Parses arguments, runs, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let overrides = cli.overrides();
    match &cli.command {
        Some(Command::Config {
            action: ConfigAction::Default,
        }) => {
            print!("{}", config::DEFAULT_TOML);
            0
        }
        Some(Command::Config {
            action: ConfigAction::Check { path },
        }) => {
            let path = path.as_ref().or(cli.config.as_ref());
            match config::load(path.map(PathBuf::as_path), &overrides) {
                Ok(c) => match toml::to_string(&c.resolved()) {
                    Ok(text) => {
                        println!("# effective configuration (file, flags and defaults)\n{text}");
                        0
                    }
                    Err(e) => {
                        eprintln!("error: cannot print config: {e}");
                        1
                    }
                },
                Err(e) => {
                    report_config_error(&e, cli.log_format);
                    1
                }
            }
        }
        Some(Command::Backup {
            action: BackupAction::Verify { dir },
        }) => match crate::storage::backup::verify(dir) {
            Ok(m) => {
                println!(
                    "backup {} verified: {} at height {} ({}), {} files",
                    dir.display(),
                    m.network,
                    m.tip_height,
                    m.tip_hash,
                    m.files.len()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Some(Command::Restore { dir }) => match config::load(cli.config.as_deref(), &overrides) {
            Ok(c) => restore(&c, dir),
            Err(e) => {
                report_config_error(&e, cli.log_format);
                1
            }
        },
        None => match config::load(cli.config.as_deref(), &overrides) {
            Ok(c) => run(c, cli.log_level, cli.reindex),
            Err(e) => {
                report_config_error(&e, cli.log_format);
                1
            }
        },
    }
}

/// `restore DIR`: refuses while a node holds the datadir, else puts the backup in place.
fn restore(config: &Config, dir: &std::path::Path) -> i32 {
    let net_dir = config.network_dir();
    let _lock = match crate::datadir::lock(&net_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let network = crate::rpc::methods::blockchain::chain_name(config.chain);
    match crate::storage::backup::restore(dir, &net_dir, network) {
        Ok(m) => {
            println!(
                "restored {} (height {}, {}) into {}; the current store was moved aside. Start the node: it reconnects the blocks written after the backup.",
                dir.display(),
                m.tip_height,
                m.tip_hash,
                net_dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run(config: Config, flag_level: Option<LogLevel>, reindex: bool) -> i32 {
    crate::logging::init(config.logging.format, config.logging.level, flag_level);
    crate::logging::install_panic_hook();
    let ended = crate::node::run(config, reindex);
    let code = match ended.code {
        RESTART_EXIT_CODE => restart(ended.bound),
        code => code,
    };
    log::logger().flush();
    code
}

/// Replaces this process with a fresh start of the same command: the same PID, so systemd and
/// other supervisors see one service going on. `--reindex` is left out; why the restart
/// happens is in the marker it left. The addresses bound before are bound again (a node
/// started on port 0 keeps its ports). Returns only if that fails, with an exit code that
/// makes a service manager restart it.
fn restart(bound: Option<(std::net::SocketAddr, std::net::SocketAddr)>) -> i32 {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let mut rest = Vec::new();
    let mut skip_value = false;
    for a in args {
        let s = a.to_string_lossy();
        let bind_flag = bound.is_some() && (s == "--rpc-bind" || s == "--p2p-bind");
        if std::mem::take(&mut skip_value)
            || s == "--reindex"
            || (bound.is_some() && (s.starts_with("--rpc-bind=") || s.starts_with("--p2p-bind=")))
        {
            continue;
        }
        if bind_flag {
            skip_value = true;
            continue;
        }
        rest.push(a);
    }
    if let Some((http, p2p)) = bound {
        rest.extend(["--rpc-bind".into(), http.to_string().into()]);
        rest.extend(["--p2p-bind".into(), p2p.to_string().into()]);
    }
    log::info!("starting again");
    // exec ends this process's threads: what is queued is written first.
    log::logger().flush();
    // /proc/self/exe is this binary even if its file was replaced since (an upgrade).
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(rest)
        .exec();
    log::error!(
        exit_code = RESTART_EXIT_CODE;
        "cannot start again ({err}); exiting for the service manager to restart the node"
    );
    RESTART_EXIT_CODE
}

/// Before logging exists: a plain line, or a JSON line when JSON logs were asked for.
fn report_config_error(e: &ConfigError, format: Option<LogFormat>) {
    match format {
        Some(LogFormat::Json) => eprintln!(
            "{}",
            serde_json::json!({"level": "ERROR", "component": "main", "msg": e.to_string()})
        ),
        _ => eprintln!("error: {e}"),
    }
}
