//! Namespaces: the order podrun enters and creates them, written once, and reading a
//! process's namespace inodes for `sandbox inspect`.
//!
//! Order for a joined container (STYLE.md): set non-dumpable; one `setns(pidfd, ipc|net|uts
//! [|pid|time])` into the sandbox's pause; `unshare(mnt|cgroup[|pid|time])` and the new
//! clock's offset; then fork, because a pid namespace, joined or new, applies only to
//! children (and a new time namespace too).
//!
//! A container with the resource view has a clock of its own (a time namespace, Linux 5.6)
//! whose boot is its start, so that the kernel itself counts from there: /proc/uptime's
//! first field, sysinfo's uptime, every process's start time in /proc/PID/stat (`ps` START
//! and ELAPSED, `top`'s TIME) and the view's btime then agree. A pod that shares its pid
//! namespace has one clock, pause's, from the sandbox's start: its containers see each
//! other's processes, none of which may seem to have started before boot.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Cgroup,
    Ipc,
    Mnt,
    Net,
    Pid,
    Time,
    User,
    Uts,
}

impl NsKind {
    pub const ALL: [NsKind; 8] =
        [NsKind::Cgroup, NsKind::Ipc, NsKind::Mnt, NsKind::Net, NsKind::Pid, NsKind::Time, NsKind::User, NsKind::Uts];

    /// The name under /proc/<pid>/ns/ (and in lsns).
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Cgroup => "cgroup",
            NsKind::Ipc => "ipc",
            NsKind::Mnt => "mnt",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::Time => "time",
            NsKind::User => "user",
            NsKind::Uts => "uts",
        }
    }
}

/// The inode of `pid`'s namespace of `kind` (what `lsns` and `readlink /proc/PID/ns/X` show).
pub fn inode(pid: i32, kind: NsKind) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{}", kind.name())).ok().map(|m| m.ino())
}

/// nix has no name for it (0x80, Linux 5.6).
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// The namespaces a sandbox shares with its containers: with a shared pid namespace, its
/// clock too (`start_clock` sets it once pause's namespaces are made).
pub fn sandbox_flags(share_pid: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    if share_pid {
        f |= CloneFlags::CLONE_NEWPID | CLONE_NEWTIME;
    }
    f
}

/// Joins the sandbox's namespaces through pause's pidfd, all in one call (Linux 5.8+):
/// either every namespace is joined or none. With `userns` its user namespace too (the
/// kernel enters that first, so the others are joined with its capabilities); the caller
/// then becomes root in it (idmap::become_root) once it has opened what it needs by path.
/// A pod's clock (a shared pid namespace's) only with `clock`: a container without the
/// resource view keeps the host's.
pub fn join(pause: &impl AsRawFd, share_pid: bool, userns: bool, clock: bool) -> Result<(), Errno> {
    let mut flags = sandbox_flags(share_pid);
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if !clock {
        flags.remove(CLONE_NEWTIME);
    }
    // SAFETY: setns on a live pidfd with namespace flags.
    let rc = unsafe { libc::setns(pause.as_raw_fd(), flags.bits()) };
    Errno::result(rc).map(drop)
}

/// What a container makes of its own: mount and cgroup always, pid unless the sandbox's is
/// shared, and then with `clock` a clock of its own (`start_clock` sets it). Without a
/// sandbox (plain `run`), ipc, net and uts as well.
pub fn own_flags(share_pid: bool, standalone: bool, clock: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP;
    if !share_pid {
        f |= CloneFlags::CLONE_NEWPID;
        if clock {
            f |= CLONE_NEWTIME;
        }
    }
    if standalone {
        f |= sandbox_flags(false);
    }
    f
}

/// unshare(`flags`). A kernel without time namespaces (CONFIG_TIME_NS) refuses
/// CLONE_NEWTIME with EINVAL: then without it (the view times such a container from its
/// pid namespace's first process). Returns whether a new clock was made, for `start_clock`.
pub fn unshare_with_clock(flags: CloneFlags) -> Result<bool, Errno> {
    match nix::sched::unshare(flags) {
        Ok(()) => Ok(flags.contains(CLONE_NEWTIME)),
        Err(Errno::EINVAL) if flags.contains(CLONE_NEWTIME) => {
            nix::sched::unshare(flags - CLONE_NEWTIME).map(|()| false)
        }
        Err(e) => Err(e),
    }
}

/// After `unshare(CLONE_NEWTIME)`: the new clock's boot is now. The offset is set before
/// any process is in the namespace (the kernel refuses it afterwards: EACCES), from the
/// process that unshared it (/proc/self/timens_offsets is that of its children's
/// namespace). The offset is minus the host's boot time now, written as whole seconds
/// down and nanoseconds up (the kernel wants 0 <= ns < 1e9); boot time in the namespace
/// is then the few microseconds since, never negative (ERANGE). CLOCK_MONOTONIC is left
/// alone: timers and timeouts keep the host's.
pub fn start_clock() -> Result<(), Errno> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec it is given.
    Errno::result(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) })?;
    let offset = match now.tv_nsec {
        0 => format!("boottime {} 0", -now.tv_sec),
        ns => format!("boottime {} {}", -now.tv_sec - 1, 1_000_000_000 - ns),
    };
    std::fs::write("/proc/self/timens_offsets", offset)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The namespaces an OCI spec asks for (`linux.namespaces`): those with a `path` are
/// joined (opened now, on the host's side, entered in the join stage), the others made
/// new. A pid namespace, joined or new, applies to the init, which the join stage forks
/// after `enter`.
#[derive(Debug)]
pub struct Plan {
    /// Joined, in the order entered: a user namespace first, as setns requires for the
    /// others to be its own.
    pub join: Vec<(NsKind, std::os::fd::OwnedFd)>,
    /// Made new, with one unshare.
    pub new: CloneFlags,
}

/// Why a spec's namespaces cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("linux.namespaces[{index}]: {kind:?} is not a namespace type (use pid, network, mount, ipc, uts, user, cgroup or time)")]
    Unknown { index: usize, kind: String },
    #[error("linux.namespaces[{index}]: open {path}: {errno}")]
    Open { index: usize, path: String, errno: Errno },
    #[error("linux.namespaces[{index}]: {path} is not a namespace of type {kind}")]
    NotThatKind { index: usize, path: String, kind: &'static str },
    #[error("linux.namespaces[{index}]: {kind} is listed twice")]
    Twice { index: usize, kind: &'static str },
}

impl NsKind {
    /// The spec's word for it (`network`, `mount`; oci-spec writes `net`, `mnt`), and the
    /// clone flag.
    fn of_spec(word: &str) -> Option<(NsKind, CloneFlags)> {
        Some(match word {
            "pid" => (NsKind::Pid, CloneFlags::CLONE_NEWPID),
            "network" | "net" => (NsKind::Net, CloneFlags::CLONE_NEWNET),
            "mount" | "mnt" => (NsKind::Mnt, CloneFlags::CLONE_NEWNS),
            "ipc" => (NsKind::Ipc, CloneFlags::CLONE_NEWIPC),
            "uts" => (NsKind::Uts, CloneFlags::CLONE_NEWUTS),
            "user" => (NsKind::User, CloneFlags::CLONE_NEWUSER),
            "cgroup" => (NsKind::Cgroup, CloneFlags::CLONE_NEWCGROUP),
            "time" => (NsKind::Time, CLONE_NEWTIME),
            _ => return None,
        })
    }
}

impl Plan {
    /// From the spec's list of (type, path): paths are opened and checked to be that kind
    /// of namespace (NS_GET_NSTYPE) now, so a wrong path fails `create` with its name.
    pub fn of_spec<'a>(
        list: impl IntoIterator<Item = (String, Option<&'a std::path::Path>)>,
    ) -> Result<Plan, PlanError> {
        let mut plan = Plan { join: Vec::new(), new: CloneFlags::empty() };
        let mut seen = CloneFlags::empty();
        for (index, (word, path)) in list.into_iter().enumerate() {
            let (kind, flag) = NsKind::of_spec(&word).ok_or(PlanError::Unknown { index, kind: word.clone() })?;
            if seen.contains(flag) {
                return Err(PlanError::Twice { index, kind: kind.name() });
            }
            seen |= flag;
            let Some(path) = path else {
                plan.new |= flag;
                continue;
            };
            let shown = path.display().to_string();
            let fd = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|errno| PlanError::Open { index, path: shown.clone(), errno })?;
            const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
            // SAFETY: an ioctl without argument on a descriptor we own.
            let t = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
            if t != flag.bits() {
                return Err(PlanError::NotThatKind { index, path: shown, kind: kind.name() });
            }
            plan.join.push((kind, fd));
        }
        plan.join.sort_by_key(|(k, _)| *k != NsKind::User);
        Ok(plan)
    }

    /// Whether the init gets a namespace of `flag`'s kind of its own.
    pub fn makes(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag)
    }

    /// In the join stage: setns into each joined one, then unshare the new ones, with
    /// `clock` a time namespace too (the resource view's). Returns whether a clock was
    /// made, for `start_clock`.
    pub fn enter(&self, clock: bool) -> Result<bool, Errno> {
        for (_, fd) in &self.join {
            // SAFETY: setns on a namespace descriptor we own; 0: any type (checked above).
            Errno::result(unsafe { libc::setns(fd.as_raw_fd(), 0) })?;
        }
        let flags = if clock { self.new | CLONE_NEWTIME } else { self.new };
        if flags.is_empty() {
            return Ok(false);
        }
        unshare_with_clock(flags)
    }
}

/// Enters every namespace of a container's init, for `podrun exec`; with `userns` (the
/// init's user namespace is not ours) that one too, and with `clock` its time namespace,
/// so that the exec'd process counts from the container's start as the others do.
pub fn enter_all(init: &impl AsRawFd, userns: bool, clock: bool) -> Result<(), Errno> {
    let mut f = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS;
    if userns {
        f |= CloneFlags::CLONE_NEWUSER;
    }
    if clock {
        f |= CLONE_NEWTIME;
    }
    // SAFETY: setns on a live pidfd with namespace flags.
    let rc = unsafe { libc::setns(init.as_raw_fd(), f.bits()) };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_flags_follow_the_sandbox() {
        assert!(own_flags(false, false, false).contains(CloneFlags::CLONE_NEWPID));
        assert!(!own_flags(true, false, false).contains(CloneFlags::CLONE_NEWPID));
        assert!(!own_flags(false, false, false).contains(CloneFlags::CLONE_NEWNET));
        assert!(own_flags(false, true, false).contains(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS));
    }

    #[test]
    fn a_container_has_its_own_clock_unless_it_shares_the_pods() {
        let time = CLONE_NEWTIME;
        assert!(own_flags(false, false, true).contains(time), "its own pid namespace: its own clock");
        assert!(own_flags(false, true, true).contains(time), "a lone container too");
        assert!(!own_flags(true, false, true).contains(time), "a shared pid namespace: the pod's clock");
        assert!(!own_flags(false, false, false).contains(time), "no view: the host's");
        assert!(sandbox_flags(true).contains(time) && !sandbox_flags(false).contains(time));
    }

    #[test]
    fn a_specs_namespaces_are_joined_by_path_or_made_new() {
        fn list<'a>(v: &[(&str, Option<&'a str>)]) -> Vec<(String, Option<&'a std::path::Path>)> {
            v.iter().map(|(w, p)| (w.to_string(), p.map(std::path::Path::new))).collect()
        }
        let p = Plan::of_spec(list(&[("pid", None), ("network", Some("/proc/self/ns/net")), ("mount", None)])).unwrap();
        assert_eq!(p.new, CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS);
        assert_eq!(p.join.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![NsKind::Net]);
        let err = |v: &[(&str, Option<&str>)]| Plan::of_spec(list(v)).unwrap_err().to_string();
        assert!(err(&[("pid", None), ("nett", None)]).starts_with("linux.namespaces[1]: \"nett\""));
        assert!(err(&[("ipc", Some("/proc/self/ns/net"))]).contains("is not a namespace of type ipc"));
        assert!(err(&[("uts", Some("/nonexistent"))]).contains("open /nonexistent"));
        assert!(err(&[("uts", None), ("uts", None)]).contains("listed twice"));
    }

    #[test]
    fn this_process_has_every_namespace_inode() {
        let me = std::process::id() as i32;
        for k in NsKind::ALL {
            assert!(inode(me, k).is_some(), "{}", k.name());
        }
    }
}

/// Brings up `lo` in the current network namespace (SIOCSIFFLAGS, as `ip link set lo up`).
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: a plain socket call with integer arguments.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    // SAFETY: socket(2) succeeded (checked by Errno::result), so the fd is new and ours.
    let s: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(Errno::result(s)?) };
    // SAFETY: ifreq is plain data; zeroed is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: ioctls on a live socket with a live ifreq.
    unsafe {
        Errno::result(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        Errno::result(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}
