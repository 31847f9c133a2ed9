//! Reading a config file and laying command-line overrides over it.

use super::{Chain, Config, LogFormat, LogLevel};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A config that cannot be used; the message names the file, the key and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrongly typed value.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message, which quotes the offending line.
        message: String,
    },
    /// A value is well-formed but out of range or inconsistent with another.
    #[error("invalid config{origin}: `{key}` {problem}")]
    Invalid {
        /// ` in <file>` or empty when no file was read.
        origin: String,
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--network`.
    pub chain: Option<Chain>,
    /// `--datadir`.
    pub datadir: Option<PathBuf>,
    /// `--rpc-bind`.
    pub rpc_bind: Option<SocketAddr>,
    /// `--p2p-bind`.
    pub p2p_bind: Option<SocketAddr>,
    /// `--connect`, replaces the file's list when given.
    pub connect: Vec<String>,
    /// `--addnode`, added to the file's list.
    pub addnode: Vec<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--log-level`.
    pub log_level: Option<LogLevel>,
}

/// Loads `path` (or the defaults when `None`), applies `overrides`, and validates the result.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let mut config = match path {
        Some(path) => parse_file(path)?,
        None => Config::default(),
    };
    overrides.apply(&mut config);
    config
        .validate()
        .map_err(|(key, problem)| ConfigError::Invalid {
            origin: path
                .map(|p| format!(" in {}", p.display()))
                .unwrap_or_default(),
            key,
            problem,
        })?;
    Ok(config)
}

fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

impl Overrides {
    fn apply(&self, c: &mut Config) {
        if let Some(chain) = self.chain {
            c.chain = chain;
        }
        if let Some(d) = &self.datadir {
            c.datadir = Some(d.clone());
        }
        if let Some(b) = self.rpc_bind {
            c.rpc.bind = Some(b);
        }
        if let Some(b) = self.p2p_bind {
            c.network.bind = Some(b);
        }
        if !self.connect.is_empty() {
            c.network.connect = self.connect.clone();
        }
        c.network.addnode.extend(self.addnode.iter().cloned());
        if let Some(f) = self.log_format {
            c.logging.format = f;
        }
        if let Some(l) = self.log_level {
            c.logging.level = l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    /// A unique temporary directory removed on drop (std only, to keep dev-dependencies small).
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};
        pub struct Dir(PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "bllvm-config-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn unknown_key_names_key_file_and_allowed_keys() {
        let (_d, path) = write("[rpc]\nthreadz = 4\n");
        let msg = load(Some(&path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("threadz"), "{msg}");
        assert!(msg.contains("work_queue"), "{msg}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let (_d, path) = write("[rpc]\nmetrics_enabled = \"yes\"\n");
        let msg = load(Some(&path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metrics_enabled"), "{msg}");
        assert!(msg.contains("boolean") || msg.contains("bool"), "{msg}");
    }

    #[test]
    fn flags_override_the_file() {
        let (_d, path) = write("chain = \"testnet4\"\n[logging]\nlevel = \"warn\"\n");
        let o = Overrides {
            chain: Some(Chain::Regtest),
            ..Overrides::default()
        };
        let c = load(Some(&path), &o).unwrap();
        assert_eq!(c.chain, Chain::Regtest);
        assert_eq!(c.logging.level, LogLevel::Warn);
    }

    #[test]
    fn inconsistent_values_name_file_and_key() {
        let (_d, path) = write("[storage]\npruning_threshold_gb = 1.0\npruning_target_gb = 2.0\n");
        let msg = load(Some(&path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("storage.pruning_target_gb"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}
