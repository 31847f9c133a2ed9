//! What the host (or the cgroup the node runs in) allows: memory and CPUs, exported so alerts
//! can be written as a share of them rather than as fixed numbers.

/// The memory the node may use: the cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) when one is set, else the machine's `MemTotal`.
pub fn memory_limit_bytes() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|t| t.trim().parse::<u64>().ok())
    .next();
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total(&t));
    match (cgroup, total) {
        // A v1 "no limit" is a huge number: the machine's memory is the real bound.
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

/// `MemTotal` from /proc/meminfo text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// CPUs the node may use (the cgroup's quota and the affinity mask count).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       25165824 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(text), Some(25_165_824 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn this_host_reports_a_limit_and_cpus() {
        assert!(memory_limit_bytes().is_some_and(|m| m > 1 << 20));
        assert!(cpus() >= 1);
    }
}
