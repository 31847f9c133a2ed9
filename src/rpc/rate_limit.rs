//! Token buckets per client IP, per user and per method. Plain state: time is passed in.

use crate::config::RpcAuthConfig;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are evicted; a full bucket is the same as a new one.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn refill(&mut self, now: Instant, s: Shape) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * s.rate).min(s.burst);
        self.last = now;
    }

    fn wait_for(&self, n: f64, s: Shape) -> Duration {
        Duration::from_secs_f64(((n - self.tokens) / s.rate).max(0.0))
    }
}

/// Failed authentications allowed per client address: a refill of 4 a second, 10 at once. They
/// bound password guessing without Core's 250 ms sleep, which held an RPC worker per guess.
const AUTH_FAILURE_RATE: f64 = 4.0;
const AUTH_FAILURE_BURST: u32 = 10;

/// Which limit refused a request and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// `per-ip`, `per-user` or `per-method <name>`, with the limit's numbers.
    pub limit: String,
    /// How long until a token is available.
    pub retry_after: Duration,
}

struct Table<K> {
    shape: Shape,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(rate: f64, burst: u32) -> Table<K> {
        Table {
            shape: Shape {
                rate,
                burst: f64::from(burst),
            },
            buckets: HashMap::new(),
        }
    }

    /// Refills `key`'s bucket and tells how long until it has a token (zero: it has one).
    fn wait(&mut self, key: &K, now: Instant) -> Duration {
        self.wait_n(key, now, 1.0)
    }

    /// Refills `key`'s bucket and tells how long until it has `n` tokens (zero: it has them).
    fn wait_n(&mut self, key: &K, now: Instant, n: f64) -> Duration {
        let shape = self.shape;
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: shape.burst,
            last: now,
        });
        b.refill(now, shape);
        if b.tokens >= n {
            Duration::ZERO
        } else {
            b.wait_for(n, shape)
        }
    }

    fn take(&mut self, key: &K) {
        self.take_n(key, 1.0);
    }

    fn take_n(&mut self, key: &K, n: f64) {
        if let Some(b) = self.buckets.get_mut(key) {
            b.tokens -= n;
        }
    }

    fn evict_full(&mut self, now: Instant) {
        let shape = self.shape;
        self.buckets.retain(|_, b| {
            let mut b2 = *b;
            b2.refill(now, shape);
            b2.tokens < shape.burst
        });
    }
}

/// All buckets of the RPC server.
pub struct RateLimiter {
    enabled: bool,
    ips: Table<IpAddr>,
    /// Failed authentications per address; applies even with rate limits off.
    auth_failures: Table<IpAddr>,
    users: Table<String>,
    methods: HashMap<String, Table<()>>,
    describe: (String, String),
}

impl RateLimiter {
    /// Limits from `[rpc.auth]`.
    pub fn new(cfg: &RpcAuthConfig) -> RateLimiter {
        let methods = cfg
            .per_method_limits
            .iter()
            .map(|(m, l)| (m.clone(), Table::new(l.rate, l.burst)))
            .collect();
        let shape = format!("{}/s, burst {}", cfg.rate_limit_rate, cfg.rate_limit_burst);
        RateLimiter {
            enabled: cfg.rate_limit_enabled,
            ips: Table::new(cfg.rate_limit_rate, cfg.rate_limit_burst),
            auth_failures: Table::new(AUTH_FAILURE_RATE, AUTH_FAILURE_BURST),
            users: Table::new(cfg.rate_limit_rate, cfg.rate_limit_burst),
            methods,
            describe: (
                format!("per-ip limit ({shape})"),
                format!("per-user limit ({shape})"),
            ),
        }
    }

    /// Admits a request from `ip` (before authentication): takes a token or says why not.
    pub fn admit_ip(&mut self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        self.evict(now);
        let wait = self.ips.wait(&ip, now);
        if wait > Duration::ZERO {
            return Err(Limited {
                limit: self.describe.0.clone(),
                retry_after: wait,
            });
        }
        self.ips.take(&ip);
        Ok(())
    }

    /// A request from `ip` failed authentication: answered 401 while the address has failures
    /// left, 429 once it has used them up (however many workers or connections it uses).
    pub fn auth_failed(&mut self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        if self.auth_failures.buckets.len() > MAX_BUCKETS {
            self.auth_failures.evict_full(now);
        }
        let wait = self.auth_failures.wait(&ip, now);
        if wait > Duration::ZERO {
            return Err(Limited {
                limit: format!(
                    "failed authentications from this address ({AUTH_FAILURE_RATE}/s, burst {AUTH_FAILURE_BURST})"
                ),
                retry_after: wait,
            });
        }
        self.auth_failures.take(&ip);
        Ok(())
    }

    /// Admits an authenticated `user` calling `methods`: takes one token per call from the
    /// user's bucket (a batch larger than the bucket takes all of it) and one per call from each
    /// limited method's bucket, all or none.
    pub fn admit_calls(
        &mut self,
        user: &str,
        methods: &[&str],
        now: Instant,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        let user = user.to_owned();
        let cost = (methods.len().max(1) as f64).min(self.users.shape.burst);
        let wait = self.users.wait_n(&user, now, cost);
        if wait > Duration::ZERO {
            return Err(Limited {
                limit: self.describe.1.clone(),
                retry_after: wait,
            });
        }
        let mut need: HashMap<&str, f64> = HashMap::new();
        for m in methods {
            if self.methods.contains_key(*m) {
                *need.entry(m).or_default() += 1.0;
            }
        }
        for (m, n) in &need {
            let t = self.methods.get_mut(*m).expect("checked above");
            t.wait(&(), now);
            let b = t.buckets[&()];
            if b.tokens < *n {
                let shape = t.shape;
                return Err(Limited {
                    limit: format!(
                        "per-method limit for {m} ({}/s, burst {})",
                        shape.rate, shape.burst
                    ),
                    retry_after: Duration::from_secs_f64(((*n - b.tokens) / shape.rate).max(0.0)),
                });
            }
        }
        self.users.take_n(&user, cost);
        for (m, n) in need {
            if let Some(b) = self.methods.get_mut(m).and_then(|t| t.buckets.get_mut(&())) {
                b.tokens -= n;
            }
        }
        Ok(())
    }

    /// Buckets held (bounded by eviction).
    pub fn len(&self) -> usize {
        self.ips.buckets.len() + self.users.buckets.len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&mut self, now: Instant) {
        if self.ips.buckets.len() > MAX_BUCKETS {
            self.ips.evict_full(now);
        }
        if self.users.buckets.len() > MAX_BUCKETS {
            self.users.evict_full(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MethodLimit;

    fn cfg(rate: f64, burst: u32) -> RpcAuthConfig {
        RpcAuthConfig {
            rate_limit_enabled: true,
            rate_limit_rate: rate,
            rate_limit_burst: burst,
            per_method_limits: [(
                "getblocktemplate".to_string(),
                MethodLimit {
                    rate: 1.0,
                    burst: 2,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn per_ip_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(10.0, 5));
        for _ in 0..5 {
            l.admit_ip(IP, t0).unwrap();
        }
        let e = l.admit_ip(IP, t0).unwrap_err();
        assert!(e.limit.starts_with("per-ip"));
        assert_eq!(e.retry_after, Duration::from_millis(100));
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        l.admit_ip(IP, t1).unwrap();
        assert!(l.admit_ip(IP, t1).is_err());
        // Another client has its own bucket.
        l.admit_ip("127.0.0.2".parse().unwrap(), t1).unwrap();
    }

    #[test]
    fn per_user_and_per_method() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(100.0, 100));
        l.admit_calls("alice", &["getblocktemplate", "getblocktemplate"], t0)
            .unwrap();
        let e = l
            .admit_calls("alice", &["getblocktemplate"], t0)
            .unwrap_err();
        assert!(e.limit.contains("getblocktemplate"), "{e:?}");
        assert_eq!(e.retry_after, Duration::from_secs(1));
        // Unlimited methods still pass, and the refused call took nothing.
        l.admit_calls("alice", &["getblockcount"], t0).unwrap();
        l.admit_calls("bob", &["getblocktemplate"], t0 + Duration::from_secs(1))
            .unwrap();
        let mut small = RateLimiter::new(&cfg(1.0, 1));
        small.admit_calls("carol", &["uptime"], t0).unwrap();
        assert!(small
            .admit_calls("carol", &["uptime"], t0)
            .unwrap_err()
            .limit
            .starts_with("per-user"));
    }

    #[test]
    fn idle_buckets_are_evicted_so_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(1000.0, 1000));
        for i in 0..(MAX_BUCKETS as u32 + 10) {
            l.admit_ip(IpAddr::V4(i.into()), t0).unwrap();
        }
        // A second later every bucket is full again: all evictable.
        l.admit_ip(IP, t0 + Duration::from_secs(1)).unwrap();
        assert!(l.len() <= 2, "{}", l.len());
    }

    #[test]
    fn disabled_admits_everything() {
        let mut c = cfg(1.0, 1);
        c.rate_limit_enabled = false;
        let mut l = RateLimiter::new(&c);
        let t0 = Instant::now();
        for _ in 0..100 {
            l.admit_ip(IP, t0).unwrap();
            l.admit_calls("u", &["getblocktemplate"], t0).unwrap();
        }
    }
}
