//! Per-cgroup load averages: the kernel's formula (an exponentially decaying average of the
//! runnable and uninterruptible tasks, sampled every 5 s) over a cgroup's own tasks. A
//! cgroup is sampled from the first time one of its processes reads /proc/loadavg until no
//! one has for ten minutes; the first read shows 0.00, as a machine just booted does.
//! The averages also live in memory the view's keeper holds and each server maps (`Kept`,
//! in server::Shared), so a server that replaces a dead one goes on from them instead of
//! from 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::render::uptime::Tasks;

pub const INTERVAL: Duration = Duration::from_secs(5);
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

/// How many cgroups' averages are kept (a 16 kB page run).
const KEPT: usize = 512;

/// One kept cgroup: a hash of its task list (0: free) and its three averages (f64 bits).
#[repr(C)]
struct Slot {
    key: AtomicU64,
    avg: [AtomicU64; 3],
}

/// The averages of the cgroups being sampled, in memory that outlives each server (the
/// keeper holds it). One server at a time writes it.
#[repr(C)]
pub struct Kept {
    slots: [Slot; KEPT],
}

impl Kept {
    fn key(list: &TaskList) -> u64 {
        let mut k =
            podrun_cgroup::fnv1a(list.dir.as_os_str().as_encoded_bytes()) ^ podrun_cgroup::fnv1a(list.file.as_bytes());
        if k == 0 {
            k = 1;
        }
        k
    }

    /// The slot of `list`, if kept (or, with `claim`, a free one claimed for it).
    fn slot(&self, list: &TaskList, claim: bool) -> Option<&Slot> {
        let key = Kept::key(list);
        let start = key as usize % KEPT;
        for i in 0..KEPT {
            let s = &self.slots[(start + i) % KEPT];
            match s.key.load(Ordering::Acquire) {
                k if k == key => return Some(s),
                0 if claim && s.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire).is_ok() => {
                    return Some(s)
                }
                _ => {}
            }
        }
        None
    }

    fn get(&self, list: &TaskList) -> Option<[f64; 3]> {
        self.slot(list, false).map(|s| s.avg.each_ref().map(|a| f64::from_bits(a.load(Ordering::Acquire))))
    }

    fn put(&self, list: &TaskList, avg: [f64; 3]) {
        if let Some(s) = self.slot(list, true) {
            for (a, v) in s.avg.iter().zip(avg) {
                a.store(v.to_bits(), Ordering::Release);
            }
        }
    }

    fn forget(&self, list: &TaskList) {
        if let Some(s) = self.slot(list, false) {
            s.key.store(0, Ordering::Release);
        }
    }
}

#[derive(Clone, Default)]
pub struct Loads {
    map: Arc<Mutex<HashMap<TaskList, Tracked>>>,
    kept: Option<&'static Kept>,
}

impl Loads {
    /// Loads that go on from the averages in `kept`, if given, and keep them there. Someone
    /// (ProcView::serve) must call `sample` every INTERVAL.
    pub fn new(kept: Option<&'static Kept>) -> Loads {
        Loads { map: Arc::default(), kept }
    }

    /// One sample of every cgroup being sampled; forgets those no one read for
    /// FORGET_AFTER.
    pub fn sample(&self) {
        let lists: Vec<TaskList> = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|list, t| {
                let keep = t.read.elapsed() < FORGET_AFTER;
                if !keep {
                    self.kept.inspect(|k| k.forget(list));
                }
                keep
            });
            map.keys().cloned().collect()
        };
        for list in lists {
            let (active, running, total) = States::of(&list).counts();
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = map.get_mut(&list) {
                t.load = next(t.load, active, running, total);
                self.kept.inspect(|k| k.put(&list, t.load.avg));
            }
        }
    }

    /// Whether some cgroup's load is being sampled (read in the last FORGET_AFTER).
    pub fn sampling(&self) -> bool {
        !self.map.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// The load of `list`, which is sampled from now on.
    pub fn read(&self, list: TaskList) -> Load {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let t = map.entry(list.clone()).or_insert_with(|| {
            let (_, running, total) = States::of(&list).counts();
            let avg = self.kept.and_then(|k| k.get(&list)).unwrap_or_default();
            Tracked { load: Load { avg, running, total }, read: Instant::now() }
        });
        t.read = Instant::now();
        t.load
    }
}

/// The kernel's decay per INTERVAL for the 1, 5 and 15-minute averages: EXP_1, EXP_5 and
/// EXP_15 of include/linux/sched/loadavg.h, exp(−5 s / period) in 11-bit fixed point. (The
/// same numbers as the kernel's, and no call to libm's exp, which would load libm.)
const DECAY: [f64; 3] = [1884.0 / 2048.0, 2014.0 / 2048.0, 2037.0 / 2048.0];

/// One step of the kernel's calc_load: load = load·e + n·(1 − e).
pub fn next(prev: Load, active: usize, running: usize, total: usize) -> Load {
    let mut avg = prev.avg;
    for (a, e) in avg.iter_mut().zip(DECAY) {
        *a = *a * e + active as f64 * (1.0 - e);
    }
    Load { avg, running, total }
}

/// The threads of a cgroup and its descendants: those running, those blocked (D), and
/// how many there are.
#[derive(Clone, Debug, Default)]
pub struct States {
    running: Vec<u32>,
    blocked: Vec<u32>,
    total: usize,
}

impl States {
    /// The threads of `list` now.
    pub fn of(list: &TaskList) -> States {
        let mut s = States::default();
        let mut dirs = vec![list.dir.clone()];
        while let Some(d) = dirs.pop() {
            for tid in podrun_cgroup::read_kernel_file(d.join(list.file)).unwrap_or_default().lines() {
                let Ok(tid) = tid.trim().parse::<u32>() else { continue };
                s.total += 1;
                let stat = podrun_cgroup::read_kernel_file(format!("/proc/{tid}/stat")).unwrap_or_default();
                match stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()) {
                    Some('R') => s.running.push(tid),
                    Some('D') => s.blocked.push(tid),
                    _ => {}
                }
            }
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        s
    }

    /// The counts as the kernel's own files give them to `reader` (a thread id): it runs as
    /// it reads. The view's reader waits in its request meanwhile, asleep, or caught
    /// running on its way there: either way it is counted once, as running.
    pub fn seen_by(&self, reader: u32) -> Tasks {
        let others = |v: &[u32]| v.iter().filter(|&&t| t != reader).count();
        Tasks { running: others(&self.running) + 1, blocked: others(&self.blocked), total: self.total.max(1) }
    }

    /// (runnable or uninterruptible, running, all), as calc_load counts them.
    fn counts(&self) -> (usize, usize, usize) {
        (self.running.len() + self.blocked.len(), self.running.len(), self.total)
    }
}

/// /proc/loadavg: the averages, running/total tasks, and the host's last pid field.
/// The averages are sampled every 5 s (as the kernel's); the task counts are `now`'s.
pub fn render_loadavg(host: &str, l: &Load, now: Tasks) -> String {
    let last = host.split_whitespace().nth(4).unwrap_or("0");
    format!("{:.2} {:.2} {:.2} {}/{} {}\n", l.avg[0], l.avg[1], l.avg[2], now.running, now.total, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_averages_outlive_the_table_that_wrote_them() {
        use std::os::fd::AsRawFd;
        let memfd = crate::server::shared_memory().unwrap();
        let first = &crate::server::map_shared(memfd.as_raw_fd()).unwrap().kept;
        let list = |d: &str| TaskList { dir: PathBuf::from(d), file: "tasks" };
        assert_eq!(first.get(&list("/a")), None);
        first.put(&list("/a"), [1.5, 0.5, 0.25]);
        first.put(&list("/b"), [2.0, 1.0, 0.5]);
        // A new server maps the same memory, and its Loads starts from them.
        let kept = &crate::server::map_shared(memfd.as_raw_fd()).unwrap().kept;
        assert!(!std::ptr::eq(first, kept));
        let loads = Loads { map: Arc::default(), kept: Some(kept) };
        assert_eq!(loads.read(list("/a")).avg, [1.5, 0.5, 0.25]);
        assert_eq!(kept.get(&list("/b")), Some([2.0, 1.0, 0.5]));
        kept.forget(&list("/a"));
        assert_eq!(kept.get(&list("/a")), None);
        // A full table keeps what it has and takes no more.
        for i in 0..KEPT + 10 {
            kept.put(&list(&format!("/c{i}")), [1.0; 3]);
        }
        assert_eq!(kept.get(&list("/b")), Some([2.0, 1.0, 0.5]));
    }

    #[test]
    fn the_reader_counts_once_as_running_whatever_state_it_was_seen_in() {
        let s = States { running: vec![7, 9], blocked: vec![8], total: 5 };
        assert_eq!(s.seen_by(9), Tasks { running: 2, blocked: 1, total: 5 }, "caught running on its way");
        assert_eq!(s.seen_by(8), Tasks { running: 3, blocked: 0, total: 5 }, "waiting in its request");
        assert_eq!(s.seen_by(1), Tasks { running: 3, blocked: 1, total: 5 }, "asleep, not listed");
    }

    #[test]
    fn two_busy_tasks_raise_the_load_as_the_kernel_does() {
        let mut l = Load::default();
        for _ in 0..12 {
            l = next(l, 2, 2, 3);
        }
        // After one minute of 2 runnable tasks: 2·(1 − (1884/2048)^12) ≈ 2·(1 − e^−1) ≈ 1.265
        // over 1 minute.
        assert!((l.avg[0] - 1.265).abs() < 0.001, "{l:?}");
        assert!(l.avg[1] < l.avg[0] && l.avg[2] < l.avg[1]);
        let now = Tasks { running: 3, blocked: 0, total: 4 };
        assert_eq!(render_loadavg("0.5 0.4 0.3 1/100 4242\n", &l, now), "1.27 0.36 0.13 3/4 4242\n");
    }
}
