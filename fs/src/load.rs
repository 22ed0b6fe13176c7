//! Per-cgroup load averages: the kernel's formula (an exponentially decaying average of the
//! runnable and uninterruptible tasks, sampled every 5 s) over a cgroup's own tasks. A
//! cgroup is sampled from the first time one of its processes reads /proc/loadavg until no
//! one has for ten minutes; the first read shows 0.00, as a machine just booted does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(5);
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A cgroup's averages over 1, 5 and 15 minutes, and its running and total tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub avg: [f64; 3],
    pub running: usize,
    pub total: usize,
}

struct Tracked {
    load: Load,
    read: Instant,
}

/// Where a cgroup's tasks are listed: its directory and the file (`cgroup.threads` on v2,
/// `tasks` on v1), its descendants included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskList {
    pub dir: PathBuf,
    pub file: &'static str,
}

#[derive(Clone, Default)]
pub struct Loads(Arc<Mutex<HashMap<TaskList, Tracked>>>);

impl Loads {
    /// Starts sampling in a thread of its own (which ends with the process).
    pub fn start() -> Loads {
        let loads = Loads::default();
        let inner = loads.0.clone();
        let _ = std::thread::Builder::new().name("loadavg".into()).spawn(move || loop {
            std::thread::sleep(INTERVAL);
            let lists: Vec<TaskList> = {
                let mut map = inner.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, t| t.read.elapsed() < FORGET_AFTER);
                map.keys().cloned().collect()
            };
            for list in lists {
                let (active, running, total) = count(&list.dir, list.file);
                let mut map = inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = map.get_mut(&list) {
                    t.load = next(t.load, active, running, total);
                }
            }
        });
        loads
    }

    /// The load of `list`, which is sampled from now on.
    pub fn read(&self, list: TaskList) -> Load {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let t = map.entry(list.clone()).or_insert_with(|| {
            let (_, running, total) = count(&list.dir, list.file);
            Tracked { load: Load { running, total, ..Load::default() }, read: Instant::now() }
        });
        t.read = Instant::now();
        t.load
    }
}

/// One step of the kernel's calc_load: load = load·e + n·(1 − e), e = exp(−5 s / period).
pub fn next(prev: Load, active: usize, running: usize, total: usize) -> Load {
    let mut avg = prev.avg;
    for (a, period) in avg.iter_mut().zip([60.0, 300.0, 900.0]) {
        let e = (-INTERVAL.as_secs_f64() / period).exp();
        *a = *a * e + active as f64 * (1.0 - e);
    }
    Load { avg, running, total }
}

/// (runnable or uninterruptible, running, all) threads of the cgroup and its descendants.
fn count(dir: &Path, file: &str) -> (usize, usize, usize) {
    let (mut active, mut running, mut total) = (0, 0, 0);
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for tid in std::fs::read_to_string(d.join(file)).unwrap_or_default().lines() {
            total += 1;
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", tid.trim())).unwrap_or_default();
            match stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()) {
                Some('R') => {
                    running += 1;
                    active += 1;
                }
                Some('D') => active += 1,
                _ => {}
            }
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
    }
    (active, running, total)
}

/// /proc/loadavg: the averages, running/total tasks, and the host's last pid field.
pub fn render_loadavg(host: &str, l: &Load) -> String {
    let last = host.split_whitespace().nth(4).unwrap_or("0");
    format!("{:.2} {:.2} {:.2} {}/{} {}\n", l.avg[0], l.avg[1], l.avg[2], l.running, l.total, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_busy_tasks_raise_the_load_as_the_kernel_does() {
        let mut l = Load::default();
        for _ in 0..12 {
            l = next(l, 2, 2, 3);
        }
        // After one minute of 2 runnable tasks: 2·(1 − e^−1) ≈ 1.26 over 1 minute.
        assert!((l.avg[0] - 1.264).abs() < 0.01, "{l:?}");
        assert!(l.avg[1] < l.avg[0] && l.avg[2] < l.avg[1]);
        assert_eq!(render_loadavg("0.5 0.4 0.3 1/100 4242\n", &l), "1.26 0.36 0.13 2/3 4242\n");
    }
}
