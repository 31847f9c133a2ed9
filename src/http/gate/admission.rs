//! Which new connections the gate takes: a cap in total and per address, with the last slots
//! of the total kept for addresses that hold no connection yet, so a flood from a few addresses
//! cannot shut out a load balancer's or kubelet's probe.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection was turned away; the `reason` label of
/// `bllvm_http_connections_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Total,
    /// The address holds `max_connections_per_ip`.
    PerIp,
    /// Only the reserved slots are left and the address already holds a connection.
    Reserved,
}

impl Refusal {
    /// Every label value.
    pub const ALL: [Refusal; 3] = [Refusal::Total, Refusal::PerIp, Refusal::Reserved];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
            Refusal::Reserved => "reserved",
        }
    }
}

/// Open connections by address, against the caps.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_ip: usize,
    reserve: usize,
    open: HashMap<IpAddr, usize>,
    total: usize,
}

impl Admission {
    /// Caps of `max` in total and `per_ip` per address; a sixteenth of `max` (at least 4) is
    /// kept for addresses without a connection.
    pub fn new(max: usize, per_ip: usize) -> Admission {
        Admission {
            max,
            per_ip,
            reserve: (max / 16).max(4).min(max),
            open: HashMap::new(),
            total: 0,
        }
    }

    /// Counts a new connection from `ip`, or says why not.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let held = self.open.get(&ip).copied().unwrap_or(0);
        if self.total >= self.max {
            return Err(Refusal::Total);
        }
        if held >= self.per_ip {
            return Err(Refusal::PerIp);
        }
        if held > 0 && self.total >= self.max - self.reserve {
            return Err(Refusal::Reserved);
        }
        *self.open.entry(ip).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `ip` closed.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.open.get_mut(&ip) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Connections open.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn caps_per_address_and_in_total_with_slots_kept_for_newcomers() {
        let mut a = Admission::new(64, 30);
        for _ in 0..30 {
            a.admit(ip(1)).unwrap();
        }
        assert_eq!(a.admit(ip(1)), Err(Refusal::PerIp));
        for _ in 0..30 {
            a.admit(ip(2)).unwrap();
        }
        // 60 of 64 open: the last 4 are for addresses holding nothing.
        assert_eq!(a.admit(ip(2)), Err(Refusal::PerIp));
        a.admit(ip(3)).unwrap();
        assert_eq!(a.admit(ip(3)), Err(Refusal::Reserved));
        for n in 4..7 {
            a.admit(ip(n)).unwrap();
        }
        assert_eq!(a.admit(ip(9)), Err(Refusal::Total));
        a.release(ip(1));
        a.admit(ip(9)).unwrap();
        assert_eq!(a.total(), 64);
        for _ in 0..29 {
            a.release(ip(1));
        }
        a.release(ip(1)); // not open: ignored
        assert_eq!(a.total(), 35);
    }
}
