//! Namespaces: the order podrun enters and creates them, written once, and reading a
//! process's namespace inodes for `sandbox inspect`.
//!
//! Order for a joined container (STYLE.md): set non-dumpable; one `setns(pidfd, ipc|net|uts
//! [|pid])` into the sandbox's pause; `unshare(mnt|cgroup[|pid])`; then fork, because a pid
//! namespace, joined or new, applies only to children.

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

/// The namespaces a sandbox shares with its containers.
pub fn sandbox_flags(share_pid: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    if share_pid {
        f |= CloneFlags::CLONE_NEWPID;
    }
    f
}

/// Joins the sandbox's namespaces through pause's pidfd, all in one call (Linux 5.8+):
/// either every namespace is joined or none. With `userns` its user namespace too (the
/// kernel enters that first, so the others are joined with its capabilities); the caller
/// then becomes root in it (idmap::become_root) once it has opened what it needs by path.
pub fn join(pause: &impl AsRawFd, share_pid: bool, userns: bool) -> Result<(), Errno> {
    let mut flags = sandbox_flags(share_pid);
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // SAFETY: setns on a live pidfd with namespace flags.
    let rc = unsafe { libc::setns(pause.as_raw_fd(), flags.bits()) };
    Errno::result(rc).map(drop)
}

/// What a container makes of its own: mount and cgroup always, pid unless the sandbox's is
/// shared. Without a sandbox (plain `run`), ipc, net and uts as well.
pub fn own_flags(share_pid: bool, standalone: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP;
    if !share_pid {
        f |= CloneFlags::CLONE_NEWPID;
    }
    if standalone {
        f |= sandbox_flags(false);
    }
    f
}

/// Enters every namespace of a container's init, for `podrun exec`; with `userns` (the
/// init's user namespace is not ours) that one too.
pub fn enter_all(init: &impl AsRawFd, userns: bool) -> Result<(), Errno> {
    let mut f = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS;
    if userns {
        f |= CloneFlags::CLONE_NEWUSER;
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
        assert!(own_flags(false, false).contains(CloneFlags::CLONE_NEWPID));
        assert!(!own_flags(true, false).contains(CloneFlags::CLONE_NEWPID));
        assert!(!own_flags(false, false).contains(CloneFlags::CLONE_NEWNET));
        assert!(own_flags(false, true).contains(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS));
    }

    #[test]
    fn this_process_has_every_namespace_inode() {
        let me = std::process::id() as i32;
        for k in NsKind::ALL {
            assert!(inode(me, k).is_some(), "{}", k.name());
        }
    }
}
