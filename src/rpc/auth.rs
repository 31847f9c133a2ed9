//! HTTP Basic credentials as Bitcoin Core accepts them: the cookie, `rpc.user`/`rpc.password`,
//! and `rpcauth` entries (`user:salt$hex(hmac_sha256(key=salt, password))`).

use base64::Engine;
use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The cookie's user name.
pub const COOKIE_USER: &str = "__cookie__";

/// Why an `rpcauth` entry is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("rpcauth entry `{0}` is not user:salt$hash with a 64-digit hex hash")]
pub struct BadRpcAuth(pub String);

#[derive(Debug, Clone)]
struct RpcAuthEntry {
    user: String,
    salt: String,
    hash: [u8; 32],
}

/// The accepted credentials.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    cookie: Option<String>,
    user_password: Option<(String, String)>,
    rpcauth: Vec<RpcAuthEntry>,
}

fn eq_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut e = hmac::HmacEngine::<sha256::Hash>::new(key);
    e.input(msg);
    hmac::Hmac::<sha256::Hash>::from_engine(e).to_byte_array()
}

/// Parses `user:salt$hash`.
pub fn parse_rpcauth(entry: &str) -> Result<(String, String, [u8; 32]), BadRpcAuth> {
    let bad = || BadRpcAuth(entry.to_owned());
    let (user, rest) = entry.split_once(':').ok_or_else(bad)?;
    let (salt, hash) = rest.split_once('$').ok_or_else(bad)?;
    let bytes: Vec<u8> = bitcoin::hex::FromHex::from_hex(hash).map_err(|_| bad())?;
    let hash: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    if user.is_empty() {
        return Err(bad());
    }
    Ok((user.to_owned(), salt.to_owned(), hash))
}

impl Credentials {
    /// Credentials from the cookie secret, a user/password pair and `rpcauth` entries.
    pub fn new(
        cookie: Option<String>,
        user_password: Option<(String, String)>,
        rpcauth: &[String],
    ) -> Result<Credentials, BadRpcAuth> {
        let rpcauth = rpcauth
            .iter()
            .map(|e| parse_rpcauth(e).map(|(user, salt, hash)| RpcAuthEntry { user, salt, hash }))
            .collect::<Result<_, _>>()?;
        Ok(Credentials {
            cookie,
            user_password,
            rpcauth,
        })
    }

    /// The authenticated user for an `Authorization` header, or `None`.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        let encoded = authorization?.strip_prefix("Basic ")?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        if let Some(secret) = &self.cookie {
            if user == COOKIE_USER && eq_constant_time(pass.as_bytes(), secret.as_bytes()) {
                return Some(user.to_owned());
            }
        }
        if let Some((u, p)) = &self.user_password {
            if eq_constant_time(user.as_bytes(), u.as_bytes())
                && eq_constant_time(pass.as_bytes(), p.as_bytes())
            {
                return Some(user.to_owned());
            }
        }
        for e in &self.rpcauth {
            if e.user == user
                && eq_constant_time(&hmac_sha256(e.salt.as_bytes(), pass.as_bytes()), &e.hash)
            {
                return Some(user.to_owned());
            }
        }
        None
    }

    /// Whether any non-cookie credential is configured (required for non-loopback binds).
    pub fn has_static(&self) -> bool {
        self.user_password.is_some() || !self.rpcauth.is_empty()
    }
}

/// `<network dir>/.cookie`, removed when dropped (clean exit).
#[derive(Debug)]
pub struct CookieFile {
    path: PathBuf,
    secret: String,
    written: std::sync::atomic::AtomicBool,
    mode: u32,
}

impl CookieFile {
    /// A fresh random secret for `<dir>/.cookie`, to be written with file mode `mode`; nothing
    /// is written yet.
    pub fn new(dir: &Path, mode: u32) -> CookieFile {
        let secret: [u8; 32] = bitcoin::secp256k1::rand::random();
        CookieFile {
            mode,
            path: dir.join(".cookie"),
            secret: bitcoin::hex::DisplayHex::to_lower_hex_string(&secret[..]),
            written: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The password of `__cookie__`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether the file is on disk (it cannot be written on a full disk; see [`write`]).
    ///
    /// [`write`]: CookieFile::write
    pub fn written(&self) -> bool {
        self.written.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes the file with its mode (set explicitly, whatever the umask; created 0600 so it
    /// is never wider in between), via rename so readers never see half of it.
    pub fn write(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(self.mode))?;
            write!(f, "{COOKIE_USER}:{}", self.secret)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match result {
            Ok(()) => self
                .written
                .store(true, std::sync::atomic::Ordering::Release),
            Err(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        result
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CookieFile {
    fn drop(&mut self) {
        if !self.written() {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn cookie_user_password_and_rpcauth() {
        // Generated the way Core's share/rpcauth/rpcauth.py does: hmac_sha256(salt, password).
        let hash = hmac_sha256(b"cb77f0957de88ff388cf817ddbc7273", b"secret");
        let entry = format!(
            "alice:cb77f0957de88ff388cf817ddbc7273${}",
            bitcoin::hex::DisplayHex::to_lower_hex_string(&hash[..])
        );
        let c = Credentials::new(
            Some("abc".into()),
            Some(("bob".into(), "pw".into())),
            &[entry],
        )
        .unwrap();
        assert_eq!(
            c.check(Some(&basic("__cookie__", "abc"))).as_deref(),
            Some("__cookie__")
        );
        assert_eq!(c.check(Some(&basic("bob", "pw"))).as_deref(), Some("bob"));
        assert_eq!(
            c.check(Some(&basic("alice", "secret"))).as_deref(),
            Some("alice")
        );
        assert_eq!(c.check(Some(&basic("alice", "wrong"))), None);
        assert_eq!(c.check(Some(&basic("bob", "pw2"))), None);
        assert_eq!(c.check(None), None);
        assert_eq!(c.check(Some("Bearer x")), None);
        assert!(Credentials::new(None, None, &["nocolon".into()]).is_err());
    }
}
