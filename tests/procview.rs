//! The resource view served over FUSE (podrun-procfs), read by processes in different
//! cgroups: each sees its own cgroup's limits, a process outside sees the host. Runs on both
//! cgroup worlds. (Mounting it into containers is the next step of issue 6.)

mod common;

use common::need_root;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use podrun::cgroup::{self, Hierarchy, Limits};
use podrun_procfs::caller::CgroupRoots;

fn roots(h: &Hierarchy) -> CgroupRoots {
    match h {
        Hierarchy::V2 { mount } => CgroupRoots { v2: Some(mount.clone()), ..Default::default() },
        Hierarchy::V1 { controllers, .. } => CgroupRoots {
            memory: controllers.get("memory").cloned(),
            cpu: controllers.get("cpu").cloned(),
            cpuset: controllers.get("cpuset").cloned(),
            ..Default::default()
        },
    }
}

fn mem_total_kb(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Removes the test's cgroup also when the test fails.
struct TestCgroup<'a> {
    h: &'a Hierarchy,
    top: String,
    path: String,
}

impl Drop for TestCgroup<'_> {
    fn drop(&mut self) {
        let _ = cgroup::remove(self.h, &self.top, &self.path);
    }
}

#[test]
fn a_reader_sees_its_own_cgroups_limits_and_an_outsider_the_host() {
    if !need_root("a_reader_sees_its_own_cgroups_limits_and_an_outsider_the_host") {
        return;
    }
    let h = Hierarchy::host().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = podrun_procfs::fuse::serve(roots(&h), dir.path()).expect("mount the view");
    let top = format!("/podrun-procview-test-{}", std::process::id());
    let cg = TestCgroup { h: &h, top: top.clone(), path: format!("{top}/c") };
    let limits = Limits { memory: Some(256 << 20), cpu_quota: Some((50_000, 100_000)), ..Limits::default() };
    cgroup::create(&h, &cg.top, &cg.path, &limits).unwrap();
    let entry = cgroup::Entry::open(&h, &cg.path).unwrap();

    // SAFETY: the child only joins the cgroup, reads three files and _exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let ok = entry.join(false).is_ok()
                && std::fs::read_to_string(dir.path().join("meminfo")).is_ok_and(|m| mem_total_kb(&m) == 262_144)
                && std::fs::read_to_string(dir.path().join("online")).is_ok_and(|o| o == "0\n")
                && std::fs::read_to_string(dir.path().join("cpuinfo"))
                    .is_ok_and(|c| c.matches("processor").count() == 1);
            // SAFETY: _exit in the forked child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            assert_eq!(
                waitpid(child, None).unwrap(),
                WaitStatus::Exited(child, 0),
                "the limited reader saw other values"
            );
        }
    }
    // This process is not in that cgroup: it sees the host's memory.
    let host = mem_total_kb(&std::fs::read_to_string("/proc/meminfo").unwrap());
    assert_eq!(mem_total_kb(&std::fs::read_to_string(dir.path().join("meminfo")).unwrap()), host);
    let listing: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listing.len(), 3, "{listing:?}");
    drop(session);
    drop(cg);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.path().to_str().unwrap()), "the view is still mounted");
    assert!(h.dirs(&top).iter().all(|(_, d)| !d.exists()), "the test cgroup was left");
}
