//! The view's server, as the `podrun-view` binary runs it. podrun's procview.rs mounts the
//! view and starts its keeper, `podrun-keeper`, a no-std binary (pause/src/keeper.rs):
//!
//! ```text
//! podrun:[keeper]   holds the /dev/fuse connection, the sysinfo listeners and the memory
//!   │               servers share; starts a server, and another when one dies
//!   └─ podrun:[view]  this: serves requests (threads), exec'd by the keeper
//! ```
//! The keeper does nothing but wait and hold, so it has nothing to crash on, and it takes a
//! few kB. A server with nothing to do ends (IDLE_EXIT), and the keeper starts the next when
//! a request or call comes. A server that dies (killed, or a bug) is replaced within 50 ms; the new one takes
//! over the same connection and asks the kernel to resend what the dead one had read, so
//! containers keep their mounts and no reader hangs. What a server must hand on to the next
//! (the sysinfo call it was answering, the load averages) lives in the shared memory.
//!
//! A binary of its own, not podrun's: podrun's code (image store, OCI config, CLI) is most
//! of what a process of podrun's binary keeps resident. This one links only this crate and
//! libc.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use podrun_cgroup::{Controllers, Hierarchy, UNIFIED};

use crate::fuse::ProcView;
use crate::{notify, rescue};

// Here too, where podrun's procview.rs names them.
pub use crate::fds::{AGENT_FD, FUSE_FD, KEEPER_EXE_FD, LISTEN_FD, LOCK_FD, SERVER_EXE_FD, SHARED_FD};

/// A server's command line: `podrun-view --root ROOT`, the hierarchy podrun found (`--v2
/// DIR` on a pure v2 host; else `--CONTROLLER DIR` for each v1 controller, by its name in
/// V1_CONTROLLERS, and `--unified DIR` for a hybrid host's cgroup2 mount), and last
/// `--resume 0`, which the keeper turns into `--resume 1` once a server has run before.
/// The root is there to tell the view's processes of different roots apart in `ps`.
pub fn args(root: &std::path::Path, h: &Hierarchy) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["podrun-view".into(), "--root".into(), root.into()];
    let mut dir = |name: &str, d: &std::path::Path| a.extend([format!("--{name}").into(), d.into()]);
    match h {
        Hierarchy::V2 { mount } => dir("v2", mount),
        Hierarchy::V1 { controllers, unified } => {
            for (name, d) in controllers.iter() {
                dir(name, d);
            }
            if let Some(u) = unified {
                dir(UNIFIED, u);
            }
        }
    }
    a.extend(["--resume".into(), "0".into()]);
    a
}

/// What a server's command line (`args`) says.
#[derive(Debug, Default)]
pub struct Args {
    pub hierarchy: Hierarchy,
    /// A server ran before this one: have the kernel resend what it had read.
    pub resume: bool,
}

/// `args`' command line (the first word is the program). Never inlined: its caller,
/// podrun-view's main, is podrun's code, built for speed (opt-level 3), where this code,
/// run once per server, would take more room than at the view's opt-level z.
#[inline(never)]
pub fn parse_args(argv: &[std::ffi::OsString]) -> Result<Args, String> {
    let mut a = Args::default();
    let (mut v2, mut controllers, mut unified) = (None, Controllers::default(), None);
    let mut it = argv.iter().skip(1);
    let mut root = false;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
        let dir = std::path::PathBuf::from(value);
        let unknown = || format!("unknown argument {}", flag.to_string_lossy());
        match flag.to_str().and_then(|f| f.strip_prefix("--")) {
            Some("root") => root = true,
            Some("v2") => v2 = Some(dir),
            Some(UNIFIED) => unified = Some(dir),
            Some("resume") if value == "0" || value == "1" => a.resume = value == "1",
            Some(name) if controllers.add(name, dir) => {}
            _ => return Err(unknown()),
        }
    }
    if !root {
        return Err("--root is missing".into());
    }
    a.hierarchy = match v2 {
        None => Hierarchy::V1 { controllers, unified },
        Some(mount) if controllers.is_empty() && unified.is_none() => Hierarchy::V2 { mount },
        Some(_) => return Err("--v2 with v1 hierarchies".into()),
    };
    Ok(a)
}

/// Sets the calling thread's name (what `ps` shows as the command of a process).
pub fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: prctl with a NUL-terminated name of at most 16 bytes (longer is truncated).
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
}

/// `fd` if it is open and `S_IFMT` of it is `kind` (and, for a device, its number is `rdev`).
fn fd_of(fd: RawFd, kind: libc::mode_t, rdev: Option<libc::dev_t>) -> Option<OwnedFd> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor number into a live stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != kind {
        return None;
    }
    if rdev.is_some_and(|r| r != st.st_rdev) {
        return None;
    }
    // SAFETY: the descriptor is open, and the keeper was handed it to own.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What every server of a view shares with the ones before and after it, in a memfd the
/// keeper holds: the sysinfo call being answered, and the load averages.
#[repr(C)]
pub struct Shared {
    pub calls: [notify::InFlight; notify::IN_FLIGHT],
    pub kept: crate::load::Kept,
    /// The servers that ran lately: each records itself, and waits for those still
    /// exiting, whose late page-cache stores it must not run beside
    /// (ProcView::set_predecessors). Several may be exiting at once: servers killed in
    /// quick succession, or one a keeper that took over ended beside one killed before.
    pub servers: [ServerSlot; SERVERS],
}

/// How many recent servers `Shared` remembers.
pub const SERVERS: usize = 8;

/// A server: its pid and its start time (/proc/PID/stat's field 22), so that a recycled
/// pid is not taken for it. All zeros: none.
#[repr(C)]
pub struct ServerSlot {
    pid: std::sync::atomic::AtomicU32,
    start: std::sync::atomic::AtomicU64,
}

/// Field 22 of /proc/`pid`/stat: when it started, in ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = podrun_cgroup::read_kernel_file(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Records this server in `slots` (in the place of one that has ended) and returns
/// pidfds of the earlier ones still running or exiting.
fn record_server(slots: &[ServerSlot; SERVERS]) -> Vec<OwnedFd> {
    use std::sync::atomic::Ordering::SeqCst;
    let me = std::process::id();
    let (mut running, mut free) = (Vec::new(), None);
    for (i, s) in slots.iter().enumerate() {
        let (pid, start) = (s.pid.load(SeqCst), s.start.load(SeqCst));
        match (pid != 0 && pid != me && start_time(pid) == Some(start)).then(|| pidfd_open(pid)).flatten() {
            Some(fd) => running.push(fd),
            None => {
                free.get_or_insert(i);
            }
        }
    }
    // Every place taken by a server still running: the oldest place is reused.
    let s = &slots[free.unwrap_or(0)];
    s.pid.store(me, SeqCst);
    s.start.store(start_time(me).unwrap_or(0), SeqCst);
    running
}

/// A new memfd for `Shared`, zeroed (all zeros is an empty slot and table), for podrun to
/// hand the keeper at `SHARED_FD`.
pub fn shared_memory() -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(c"podrun-view".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate of our memfd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), std::mem::size_of::<Shared>() as libc::off_t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Maps the shared memory at `fd` (at least a `Shared` long). Never unmapped: it lives as
/// long as the server.
pub(crate) fn map_shared(fd: RawFd) -> Option<&'static Shared> {
    let len = std::mem::size_of::<Shared>();
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor number into a live stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFREG
        || (st.st_size as usize) < len
    {
        return None;
    }
    // SAFETY: a shared mapping of a file at least `len` long.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: page-aligned and long enough; Shared is atomics only, valid for any bytes
    // the keeper's earlier servers wrote (and all zeros at first); never unmapped.
    Some(unsafe { &*(p as *const Shared) })
}

/// The server's work: serves the connection at `FUSE_FD` until the view is unmounted, and
/// sysinfo calls through the listeners the keeper sends over `AGENT_FD`. Returns the
/// process's exit code (0: the view was unmounted), or ends it with IDLE_EXIT once it has
/// had nothing to do for `idle_limit`.
pub fn run(args: Args) -> i32 {
    let (Some(fuse), Some(chan)) =
        (fd_of(FUSE_FD, libc::S_IFCHR, Some(libc::makedev(10, 229))), fd_of(AGENT_FD, libc::S_IFSOCK, None))
    else {
        eprintln!("podrun-view is started by the view's keeper, with a FUSE connection at descriptor {FUSE_FD}");
        return 125;
    };
    let Some(shared) = map_shared(SHARED_FD) else {
        eprintln!("podrun-view: no shared memory at descriptor {SHARED_FD}");
        return 125;
    };
    // The memfd stays open too (as the connection, the binaries and the agent's socket):
    // a keeper this server starts when the keepers are gone needs it (rescue.rs).
    set_name("podrun:[view]");
    rescue::reserve();
    // One malloc arena for all threads: glibc's default of one per thread cost about 150 kB
    // each, most of the server's memory; requests allocate little. And free memory at the
    // heap's top goes back past 64 kB (fixed: glibc's default threshold grows with the
    // largest block freed).
    // SAFETY: mallopt before any thread of this process exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
    let view = Arc::new(ProcView::with_kept_loads(args.hierarchy, Some(&shared.kept)));
    view.set_predecessors(record_server(&shared.servers));
    let v = view.clone();
    // Held while a sysinfo call is taken and answered, and by an idle exit: so the server
    // never ends with a call taken and not answered (nothing would wake the keeper for it).
    let calls: &'static std::sync::Mutex<()> = Box::leak(Box::default());
    // The channel's hang-up, watched on a copy of its own: the keepers are gone.
    match chan.try_clone() {
        Ok(watch) => rescue::watch_keepers(watch),
        Err(e) => eprintln!("podrun-view: cannot watch the keepers ({e}): this server cannot start one"),
    }
    let _ = std::thread::Builder::new().name("sysinfo".into()).stack_size(crate::THREAD_STACK).spawn(move || {
        // The call a killed predecessor was answering is in the slot once it has
        // exited: a dying server's thread may still receive a call and record it after
        // this one looked (a Python sysinfo loop waited for ever, 1 run in 17).
        v.wait_for_predecessor();
        notify::serve(chan, Vec::new(), &shared.calls, calls, |pid| v.sysinfo_for(pid))
    });
    let idle = idle_limit();
    view.serve(std::os::fd::AsFd::as_fd(&fuse), 2, args.resume, |view| {
        if idle.is_some_and(|limit| view.idle_for().is_some_and(|d| d >= limit)) && !rescue::orphaned() {
            let _taken = calls.lock();
            // SAFETY: the process ends here. A FUSE request read meanwhile is resent to the
            // next server (the keeper has the kernel resend once it reaps this one).
            unsafe { libc::_exit(IDLE_EXIT) }
        }
    });
    0
}

/// A pidfd of `pid`, None if it is gone.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with no flags; the descriptor it returns is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A server's exit status when it ended for having nothing to do: the keeper starts the
/// next one when a request or call comes.
pub const IDLE_EXIT: i32 = 3;

/// How long a server waits with nothing to do before it ends: PODRUN_VIEW_IDLE seconds
/// (in the environment podrun started the view with; 0: never), else a minute. While it
/// has ended, only the keeper's few kB stay.
fn idle_limit() -> Option<Duration> {
    let secs = std::env::var("PODRUN_VIEW_IDLE").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(60);
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_carries_the_mounts_both_ways() {
        let v1 = Hierarchy::V1 {
            controllers: ["memory", "cpu", "cpuacct", "cpuset", "blkio"]
                .map(|c| (c, std::path::PathBuf::from(format!("/sys/fs/cgroup/{c}"))))
                .into_iter()
                .collect(),
            unified: Some("/sys/fs/cgroup/unified".into()),
        };
        let a = args(std::path::Path::new("/run/podrun"), &v1);
        assert_eq!(a[..3], ["podrun-view", "--root", "/run/podrun"]);
        assert_eq!(a[a.len() - 2..], ["--resume", "0"], "last, for the keeper to turn into 1");
        let back = parse_args(&a).unwrap();
        assert!(!back.resume);
        assert_eq!(back.hierarchy, v1, "each controller's mount and the unified one; no v2");
        let v2 = Hierarchy::V2 { mount: "/sys/fs/cgroup".into() };
        let mut a = args(std::path::Path::new("/r"), &v2);
        *a.last_mut().unwrap() = "1".into();
        let back = parse_args(&a).unwrap();
        assert_eq!((back.hierarchy, back.resume), (v2, true));
        *a.last_mut().unwrap() = "yes".into();
        assert!(parse_args(&a).is_err(), "--resume is 0 or 1");
        assert!(parse_args(&["podrun-view".into(), "--v2".into()]).is_err(), "a flag without a value");
        assert!(parse_args(&["podrun-view".into(), "--bogus".into(), "x".into()]).is_err());
        assert!(parse_args(&["podrun-view".into()]).is_err(), "no root");
        let both = ["podrun-view", "--root", "/r", "--v2", "/a", "--memory", "/b"].map(std::ffi::OsString::from);
        assert!(parse_args(&both).is_err(), "one world or the other");
    }
}
