//! /proc/uptime: time since the container started, not the host.

/// `host_up`: the host's uptime; `started`: when the container started, in seconds after
/// boot. The idle column counts every view CPU as idle for the whole time (the second field
/// is the sum over CPUs, as the kernel's is).
pub fn render_uptime(host_up: f64, started: f64, cpus: usize) -> String {
    let up = (host_up - started).max(0.0);
    format!("{:.2} {:.2}\n", up, up * cpus as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_from_the_container_start() {
        assert_eq!(render_uptime(1000.0, 990.5, 2), "9.50 19.00\n");
        assert_eq!(render_uptime(5.0, 9.0, 1), "0.00 0.00\n", "never negative");
    }
}
