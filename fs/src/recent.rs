//! Values made at most once per period (FRESH, or longer for what changes rarely), by key:
//! what many readers in a burst share. Only reuse here; what is made, and what fails, is
//! the caller's.

/// How long a cgroup's numbers and the host's files are reused: readers that come in a burst
/// (8 at once, or a loop) share one look at the kernel, which for a v1 memory.stat is most of
/// a read's cost. The kernel itself flushes memory statistics lazily (up to 2 s), so 10 ms
/// adds nothing a reader could notice. Not for diskstats (I/O just done must show) or uptime.
pub(crate) const FRESH: std::time::Duration = std::time::Duration::from_millis(10);

/// Values made within a period, by key.
pub(crate) struct Recent<T> {
    made: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, T)>>>,
    period: std::time::Duration,
}

impl<T: Clone> Recent<T> {
    /// Values reused for FRESH.
    pub(crate) const fn new() -> Self {
        Self::kept_for(FRESH)
    }

    /// Values reused for `period`.
    pub(crate) const fn kept_for(period: std::time::Duration) -> Self {
        Recent { made: std::sync::OnceLock::new(), period }
    }

    pub(crate) fn get(&self, key: &str, make: impl FnOnce() -> T) -> T {
        let map = self.made.get_or_init(Default::default);
        if let Some((at, v)) = map.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            if at.elapsed() < self.period {
                return v.clone();
            }
        }
        let v = make();
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        // Only what is fresh is of use: pruned early (per-pid keys come and go with every
        // reading process), and the table's room given back once it has emptied.
        if m.len() >= 64 {
            m.retain(|_, (at, _)| at.elapsed() < self.period);
            m.shrink_to(128);
        }
        m.insert(key.to_owned(), (std::time::Instant::now(), v.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_once_while_fresh_and_again_after() {
        static VALUES: Recent<u32> = Recent::new();
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            made.get()
        };
        assert_eq!((VALUES.get("a", make), VALUES.get("a", make)), (1, 1));
        assert_eq!(VALUES.get("b", make), 2, "another key, another value");
        std::thread::sleep(FRESH);
        assert_eq!(VALUES.get("a", make), 3);
    }
}
