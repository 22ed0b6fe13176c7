//! A detached container's monitor: the podrun process, forked by `run -d` (or `start`),
//! that starts the container with its output going to the log, waits for it, records each
//! exit, and, under a restart policy, starts it again after the back-off (restart.rs).
//!
//! Every decision is taken under the container's lock and against its state.json, so
//! `kill` and `rm` (which take the same lock) always win: a stopped or removed container
//! is never started again. The monitor holds nothing while it sleeps through a back-off;
//! `kill` and `rm` end it there. If the monitor itself is killed, the container keeps
//! running: `ps` reports it unsupervised, and `podrun start` supervises it again.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::{fork, ForkResult, Pid};

use crate::clone::{self, Signals};
use crate::image::Store;
use crate::lifecycle::{self as container, io, launch, record_exit, ContainerError, Prepared, Status};
use crate::proc::ProcRef;
use crate::restart::{Restart, Steps};
use crate::state::{self, now, now_ms, ContainerState, ExitInfo, Paths};
use crate::sync::ChildError;
use crate::sync::Stage;

/// Undoes a start that failed: a new container is removed; one started again stays as
/// it was (its last exit still recorded).
fn undo(paths: &Paths, store: &Store, p: &ContainerState, fresh: bool) {
    if fresh {
        container::discard(paths, store, p);
    }
}

/// Forks a monitor that starts the container with its output going to the log, tells us
/// the result, then supervises it. Returns the container's name once it runs.
pub(crate) fn run_detached(paths: &Paths, store: &Store, p: Prepared) -> Result<String, ContainerError> {
    let id = p.state.id.to_string();
    let (p_state, fresh) = (p.state.clone(), p.fresh);
    // SAFETY: single-threaded; the monitor ends with _exit.
    let forked = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).and_then(|(rd, wr)| Ok((rd, wr, unsafe { fork() }?)));
    let (rd, wr, forked) = match forked {
        Ok(x) => x,
        Err(e) => {
            undo(paths, store, &p.state, fresh);
            return Err(io("start the monitor")(e.into()));
        }
    };
    match forked {
        ForkResult::Child => {
            drop(rd);
            clone::set_name("podrun:[monitor]");
            let code = monitor(paths, store, p, wr);
            // SAFETY: see clone.rs: children _exit.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            let _ = fs::File::from(rd).read_to_string(&mut msg);
            if msg.is_empty() {
                let _ = nix::sys::wait::waitpid(child, None);
                // It died before it could say: whatever it started goes with the cgroup.
                undo(paths, store, &p_state, fresh);
                return Err(ContainerError::Child(ChildError {
                    stage: Stage::Monitor,
                    errno: libc::ECHILD,
                    message: "the monitor process died".into(),
                }));
            }
            match serde_json::from_str::<Result<(), ChildError>>(&msg) {
                Ok(Ok(())) => Ok(id),
                Ok(Err(e)) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(ContainerError::Child(e))
                }
                Err(_) => {
                    Err(ContainerError::Child(ChildError { stage: Stage::Monitor, errno: libc::EPROTO, message: msg }))
                }
            }
        }
    }
}

/// A forked monitor's setup: a session of its own, stdin from /dev/null, stdout and
/// stderr appended to the container's log (`dir`/log), subreaper for the container's
/// orphans, and SIGCHLD read from a signalfd.
fn become_monitor(dir: &std::path::Path) -> Result<Signals, ContainerError> {
    nix::unistd::setsid().map_err(|e| io("setsid")(e.into()))?;
    let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).map_err(io("open the log"))?;
    let null = fs::File::open("/dev/null").map_err(io("open /dev/null"))?;
    for (from, to) in [(null.as_raw_fd(), 0), (log.as_raw_fd(), 1), (log.as_raw_fd(), 2)] {
        // SAFETY: dup2 onto the stdio numbers.
        Errno::result(unsafe { libc::dup2(from, to) }).map_err(|e| io("dup2")(e.into()))?;
    }
    clone::set_subreaper().map_err(|e| io("become a subreaper")(e.into()))?;
    Signals::block(false).map_err(|e| io("block signals")(e.into()))
}

fn monitor(paths: &Paths, store: &Store, mut p: Prepared, report: OwnedFd) -> i32 {
    let mut report = fs::File::from(report);
    let tell = |r: &mut fs::File, v: Result<(), ChildError>| {
        let _ = r.write_all(serde_json::to_string(&v).unwrap_or_default().as_bytes());
    };
    let setup = (|| {
        let signals = become_monitor(&p.rootfs.dir)?;
        p.state.monitor = ProcRef::of(std::process::id() as i32);
        Ok::<_, ContainerError>((signals, launch(&p)?.pid))
    })();
    let (mut signals, pid) = match setup {
        Ok(x) => x,
        Err(e) => {
            undo(paths, store, &p.state, p.fresh);
            let ce = match e {
                ContainerError::Child(c) => c,
                e => ChildError { stage: Stage::Monitor, errno: libc::EIO, message: e.to_string() },
            };
            tell(&mut report, Err(ce));
            return 1;
        }
    };
    tell(&mut report, Ok(()));
    drop(report);
    let (id, restart, oom_before) = (p.state.id.clone(), p.state.restart, p.oom_before);
    drop(p);
    match restart {
        Some(r) => {
            supervise(paths, store, &id, r, &mut signals, Run::Child(pid), oom_before, Steps::default(), now_ms())
        }
        None => {
            wait_small(paths, &id, pid, oom_before, Steps::default(), now_ms());
            record_exit(paths, store, &id, signals.wait(pid), false, None, oom_before);
        }
    }
    0
}

/// The argument with which the waiter runs podrun again (first, after the program's name):
/// podrun's main looks for it before it parses a command line, and hands the rest to
/// `Resume::from_args`. Not a command of the CLI: the request is this module's own.
pub const RESUME: &str = "monitor-resume";

/// What the waiter hands back to podrun once a run has ended: where the container is, and
/// the run's facts. Written by `become_waiter` as one JSON argument, then `--status` and
/// the waiter's placeholder for the wait status (-1 if the waiter had no such child).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    pub root: std::path::PathBuf,
    pub cgroup_parent: Option<String>,
    pub subuid: std::path::PathBuf,
    pub subgid: std::path::PathBuf,
    pub container: String,
    /// Its cgroup's OOM kills before the run began.
    pub oom_before: u64,
    /// Back-off delays in a row before it.
    pub steps: u32,
    /// When it began: ms since the epoch.
    pub started_ms: u64,
}

/// The placeholder the waiter writes the status over: as wide as any i32.
const STATUS_PLACEHOLDER: &str = "XXXXXXXXXXX";

impl Resume {
    fn of(paths: &Paths, id: &str, oom_before: u64, steps: Steps, started_ms: u64) -> Resume {
        Resume {
            root: paths.root.clone(),
            cgroup_parent: paths.cgroup_parent.clone(),
            subuid: paths.subuid.clone(),
            subgid: paths.subgid.clone(),
            container: id.to_owned(),
            oom_before,
            steps: steps.0,
            started_ms,
        }
    }

    pub fn paths(&self) -> Paths {
        Paths {
            root: self.root.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            subuid: self.subuid.clone(),
            subgid: self.subgid.clone(),
        }
    }

    /// The arguments after podrun's name: RESUME, the request, `--status`, the placeholder.
    fn args(&self) -> Vec<String> {
        let json = serde_json::to_string(self).unwrap_or_default();
        vec![RESUME.into(), json, "--status".into(), STATUS_PLACEHOLDER.into()]
    }

    /// The request and the wait status, if `args` (podrun's, its name first) are a resume;
    /// Err if they are one but malformed.
    pub fn from_args(args: &[std::ffi::OsString]) -> Option<Result<(Resume, i32), String>> {
        if args.get(1).map(|a| a.as_os_str()) != Some(std::ffi::OsStr::new(RESUME)) {
            return None;
        }
        let parse = || -> Result<(Resume, i32), String> {
            let [_, _, json, flag, status] = args else { return Err(format!("{RESUME}: expected REQUEST --status N")) };
            let req = serde_json::from_str(&json.to_string_lossy()).map_err(|e| format!("{RESUME}: {e}"))?;
            let status = match flag.to_str() {
                Some("--status") => status.to_str().and_then(|s| s.trim().parse().ok()),
                _ => None,
            };
            Ok((req, status.ok_or_else(|| format!("{RESUME}: no --status"))?))
        };
        Some(parse())
    }
}

/// The monitor, run again by its waiter once the container ended: records the exit and,
/// under a restart policy, goes on supervising (and becomes the waiter again while the
/// next run runs).
pub fn resume(store: &Store, req: &Resume, status: i32) {
    clone::set_name("podrun:[monitor]");
    let (paths, id) = (req.paths(), req.container.as_str());
    let exit = match status {
        s if s < 0 => ExitInfo { code: 255, signal: None, finished: now(), oom_killed: false },
        s => decode_status(s),
    };
    let Ok(st) = container::load(&paths, id) else { return };
    match st.restart {
        Some(r) => {
            let Ok(mut signals) = Signals::block(false) else { return };
            let (steps, since) = (Steps(req.steps), req.started_ms);
            supervise(&paths, store, id, r, &mut signals, Run::Ended(exit), req.oom_before, steps, since);
        }
        None => {
            record_exit(&paths, store, id, exit, false, None, req.oom_before);
        }
    }
}

/// While `pid` (our child) runs, the monitor becomes `podrun-wait` (the embedded pause
/// binary's third role, a few kB resident) in place of podrun's resident pages (its
/// relocated data alone is 196 kB). It runs podrun again (`monitor-resume`, from a
/// descriptor of this binary, so a podrun replaced meanwhile is not mixed in) with `pid`'s
/// wait status. Returns only if it cannot: then this process, having given back what it
/// can, waits itself.
fn wait_small(paths: &Paths, id: &str, pid: Pid, oom: u64, steps: Steps, started_ms: u64) {
    become_waiter(paths, id, pid, oom, steps, started_ms);
    clone::shed_memory();
}

fn become_waiter(paths: &Paths, id: &str, pid: Pid, oom: u64, steps: Steps, started_ms: u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(waiter) = crate::pause::pause_memfd() else { return };
    // Not close-on-exec: the waiter's to run.
    let Ok(exe) = nix::fcntl::open("/proc/self/exe", nix::fcntl::OFlag::O_PATH, nix::sys::stat::Mode::empty()) else {
        return;
    };
    let mut args: Vec<Vec<u8>> = vec![b"podrun-wait".to_vec()];
    args.extend([pid.to_string(), exe.as_raw_fd().to_string(), "podrun".into()].map(String::into_bytes));
    args.extend(Resume::of(paths, id, oom, steps, started_ms).args().into_iter().map(String::into_bytes));
    let env = std::env::vars_os().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat());
    let cstrings = |v: Vec<Vec<u8>>| v.into_iter().map(std::ffi::CString::new).collect::<Result<Vec<_>, _>>();
    let (Ok(args), Ok(env)) = (cstrings(args), cstrings(env.collect())) else { return };
    let _ = std::io::stdout().flush();
    // Only stdio and podrun's binary go to the waiter, not what podrun's caller left open.
    // SAFETY: marks descriptors close-on-exec, then clears the mark on one we own.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        libc::fcntl(exe.as_raw_fd(), libc::F_SETFD, 0);
    }
    let _ = nix::unistd::fexecve(&waiter, &args, &env);
}

/// What came of starting the container again.
enum Next {
    /// It runs: its pid, and its cgroup's OOM kills before it started.
    Started(Pid, u64),
    /// It could not start: this is its exit (podrun's 125, or 126/127 from exec).
    Failed(ExitInfo),
    /// Stopped or removed meanwhile, or its sandbox is gone: supervision ends.
    Stop,
}

/// What the monitor waits for.
enum Run {
    /// A run it started: its child.
    Child(Pid),
    /// A run that ended while the monitor was its waiter: its exit.
    Ended(ExitInfo),
    /// A run a killed monitor started (`podrun start` of an unsupervised container): a
    /// pidfd opened while it ran.
    Adopted(OwnedFd),
    /// A start that failed, with its exit.
    Failed(ExitInfo),
}

/// How long an adopted run's exit status may take to appear: until its parent (the
/// nearest subreaper, or PID 1, which some inits do lazily) has reaped it.
const REAP_PATIENCE: Duration = Duration::from_secs(30);

/// Waits for each run and applies the policy, until it says no or someone stops it.
/// `oom`: the cgroup's OOM kills before `run` started; `steps`, the back-off delays in a
/// row before it; `started`, when it started (ms since the epoch).
#[allow(clippy::too_many_arguments)]
fn supervise(
    paths: &Paths,
    store: &Store,
    id: &str,
    r: Restart,
    signals: &mut Signals,
    mut run: Run,
    mut oom: u64,
    mut steps: Steps,
    mut started: u64,
) {
    loop {
        let (exit, oom_before) = match run {
            Run::Child(pid) => {
                wait_small(paths, id, pid, oom, steps, started);
                (Some(signals.wait(pid)), Some(oom))
            }
            Run::Ended(exit) => (Some(exit), Some(oom)),
            Run::Adopted(fd) => (exit_of(&fd, REAP_PATIENCE), Some(oom)),
            Run::Failed(exit) => (Some(exit), None),
        };
        let delay = steps.next(&r.backoff, Duration::from_millis(now_ms().saturating_sub(started)));
        if !plan(paths, id, exit, oom_before, &r, delay) {
            return;
        }
        std::thread::sleep(delay);
        run = match relaunch(paths, store, id) {
            Next::Started(pid, o) => {
                oom = o;
                Run::Child(pid)
            }
            Next::Failed(exit) => Run::Failed(exit),
            Next::Stop => return,
        };
        started = now_ms();
    }
}

/// PIDFD_GET_INFO (linux/pidfd.h): _IOWR(0xFF, 11, struct pidfd_info), its first 64 bytes.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// How a process that is not our child ended, through a pidfd opened while it ran: once
/// its parent has reaped it, the kernel gives pidfd holders its wait status
/// (PIDFD_INFO_EXIT, Linux 6.15). None if that does not happen within `patience`.
fn exit_of(pidfd: &OwnedFd, patience: Duration) -> Option<ExitInfo> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd; a pidfd becomes readable when its process exits.
    while unsafe { libc::poll(&mut pfd, 1, -1) } < 0 && Errno::last() == Errno::EINTR {}
    let deadline = Instant::now() + patience;
    loop {
        let mut info = [0u8; 64];
        info[..8].copy_from_slice(&PIDFD_INFO_EXIT.to_ne_bytes());
        // SAFETY: the request's size is 64 bytes, the buffer's.
        let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, info.as_mut_ptr()) };
        let mask = u64::from_ne_bytes(info[..8].try_into().unwrap_or_default());
        if rc == 0 && mask & PIDFD_INFO_EXIT != 0 {
            return Some(decode_status(i32::from_ne_bytes(info[60..64].try_into().unwrap_or_default())));
        }
        // An older kernel knows no such request.
        if rc != 0 && matches!(Errno::last(), Errno::ENOTTY | Errno::EINVAL) || Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A wait status as a shell reports it: the code, or 128 + signal.
fn decode_status(status: i32) -> ExitInfo {
    let (code, signal) = match status & 0x7f {
        0 => ((status >> 8) & 0xff, None),
        sig => (128 + sig, Some(sig)),
    };
    ExitInfo { code, signal, finished: now(), oom_killed: false }
}

/// Records an exit (None: unknown, counted as a failure) and, if the policy starts the
/// container again, when (the back-off `ps` shows). Returns whether it will be started again.
fn plan(
    paths: &Paths,
    id: &str,
    exit: Option<ExitInfo>,
    oom_before: Option<u64>,
    r: &Restart,
    delay: Duration,
) -> bool {
    let dir = paths.container(id);
    let Ok(_lock) = state::lock(&dir) else { return false };
    let Ok(mut st) = state::read_json::<ContainerState>(&dir.join("state.json")) else { return false };
    let exit = exit.map(|e| ExitInfo { oom_killed: oom_before.is_some_and(|b| container::oom_killed(&st, b)), ..e });
    st.exit = exit;
    let again = r.again(exit.map_or(1, |e| e.code), st.restarts, st.stopped);
    st.next_try_ms = again.then(|| now_ms() + delay.as_millis() as u64);
    let _ = state::write_json(&dir, "state.json", &st);
    again
}

/// How an exit reads in the log and in `ps`: exited(3), oomkilled(137).
pub fn exit_word(e: Option<ExitInfo>) -> String {
    match e {
        Some(e) if e.oom_killed => format!("oomkilled({})", e.code),
        Some(e) => format!("exited({})", e.code),
        None => "exited(unknown)".into(),
    }
}

/// Starts the container again, from its rootfs and config.json, unless it was stopped or
/// removed during the back-off. A marker line in the log tells the runs apart.
fn relaunch(paths: &Paths, store: &Store, id: &str) -> Next {
    let dir = paths.container(id);
    let Ok(_lock) = state::lock(&dir) else { return Next::Stop };
    let Ok(mut st) = state::read_json::<ContainerState>(&dir.join("state.json")) else { return Next::Stop };
    // `kill` in the back-off clears the next try (and ends this monitor, unless the
    // monitor got the lock first).
    if st.stopped || st.next_try_ms.is_none() {
        return Next::Stop;
    }
    st.last_exit = st.exit.take();
    st.restarts += 1;
    st.next_try_ms = None;
    st.monitor = ProcRef::of(std::process::id() as i32);
    let policy = st.restart.map(|r| r.policy.to_string()).unwrap_or_default();
    let mut log = std::io::stdout();
    let _ = writeln!(log, "--- podrun: restart {} ({policy}) after {} ---", st.restarts, exit_word(st.last_exit));
    let _ = log.flush();
    let started = container::prepare_again(paths, store, st.clone()).and_then(|p| {
        let oom = p.oom_before;
        launch(&p).map(|s| (s.pid, oom))
    });
    match started {
        Ok((pid, oom)) => Next::Started(pid, oom),
        Err(e) => {
            let _ = writeln!(log, "--- podrun: restart {} failed: {e} ---", st.restarts);
            let exit = ExitInfo { code: i32::from(e.exit_code()), signal: None, finished: now(), oom_killed: false };
            // Its sandbox is gone: nothing to start it in again; the exit is final.
            let gone = matches!(e, ContainerError::SandboxDown(_));
            if gone {
                st.exit = Some(exit);
            }
            let _ = state::write_json(&dir, "state.json", &st);
            if gone {
                Next::Stop
            } else {
                Next::Failed(exit)
            }
        }
    }
}

/// `podrun start` of a container that runs without its monitor (it was killed): a new
/// monitor watches it through a pidfd (no process can become a running one's parent),
/// records its exit and applies its policy from then on.
fn adopt(
    paths: &Paths,
    store: &Store,
    st: ContainerState,
    lock: nix::fcntl::Flock<fs::File>,
) -> Result<(), ContainerError> {
    let id = st.id.clone();
    let not_running = || ContainerError::NotRunning(id.to_string());
    let pidfd = st.init.ok_or_else(not_running)?.pidfd().map_err(|_| not_running())?;
    let oom = match (&st.cgroup, crate::cgroup::Hierarchy::host()) {
        (Some(cg), Ok(h)) => crate::cgroup::oom_kills(&h, cg),
        _ => 0,
    };
    // Before the fork: the monitor must not inherit the lock.
    drop(lock);
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe")(e.into()))?;
    // SAFETY: single-threaded; the monitor ends with _exit.
    match unsafe { fork() }.map_err(|e| io("start the monitor")(e.into()))? {
        ForkResult::Child => {
            drop(rd);
            clone::set_name("podrun:[monitor]");
            let mut report = fs::File::from(wr);
            let taken = take_over(paths, &id);
            let _ = report.write_all(
                serde_json::to_string(&taken.as_ref().map(drop).map_err(|e| e.to_string()))
                    .unwrap_or_default()
                    .as_bytes(),
            );
            drop(report);
            if let Ok((mut signals, restart, auto_remove)) = taken {
                clone::shed_memory();
                supervise(
                    paths,
                    store,
                    &id,
                    restart,
                    &mut signals,
                    Run::Adopted(pidfd),
                    oom,
                    Steps::default(),
                    now_ms(),
                );
                if auto_remove {
                    let _ = container::remove(paths, store, &id, true);
                }
            }
            // SAFETY: see clone.rs: children _exit.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            let _ = fs::File::from(rd).read_to_string(&mut msg);
            match serde_json::from_str::<Result<(), String>>(&msg) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(io("take over supervision")(std::io::Error::other(e)))
                }
                Err(_) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(io("take over supervision")(std::io::Error::other("the monitor process died")))
                }
            }
        }
    }
}

/// The adopting monitor's setup: its own session, output to the log, and itself recorded
/// as the container's monitor (unless another `start` got there first).
fn take_over(paths: &Paths, id: &str) -> Result<(Signals, Restart, bool), ContainerError> {
    let dir = paths.container(id);
    let signals = become_monitor(&dir)?;
    let _lock = state::lock(&dir).map_err(io(format!("lock container {id}")))?;
    let mut st = container::load(paths, id)?;
    if container::supervised(&st) {
        return Err(ContainerError::AlreadyRunning(id.to_owned()));
    }
    st.monitor = ProcRef::of(std::process::id() as i32);
    st.detached = true;
    state::write_json(&dir, "state.json", &st).map_err(io(format!("write the state of {id}")))?;
    let _ = writeln!(std::io::stdout(), "--- podrun: supervised again by a new monitor ---");
    Ok((signals, st.restart.unwrap_or_default(), st.auto_remove))
}

/// `podrun start`: starts a container that is not running again, under a new monitor,
/// from its rootfs and config.json, with its restart policy (a `kill` no longer holds).
/// One that runs without its monitor is supervised again instead (`adopt`).
pub fn start(paths: &Paths, store: &Store, id: &str) -> Result<(), ContainerError> {
    let dir = paths.container(crate::ids::ContainerId::parse(id)?.as_str());
    let lock = state::lock(&dir).map_err(|_| ContainerError::NotFound(id.to_owned()))?;
    let mut st = container::load(paths, id)?;
    match container::status(&st) {
        Status::Running if !container::supervised(&st) => return adopt(paths, store, st, lock),
        // (Created: its init waits for a start that is under way.)
        Status::Created | Status::Running | Status::Paused | Status::BackOff { .. } | Status::Exiting => {
            return Err(ContainerError::AlreadyRunning(id.to_owned()))
        }
        Status::Creating | Status::Exited(_) => {}
    }
    st.stopped = false;
    st.next_try_ms = None;
    st.detached = true;
    // A new run: what ended the old one becomes its last exit.
    if st.exit.is_some() {
        st.last_exit = st.exit.take();
    }
    let p = container::prepare_again(paths, store, st)?;
    // Before the fork: the monitor must not inherit the lock.
    drop(lock);
    run_detached(paths, store, p).map(drop)
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    #[test]
    fn a_resume_request_round_trips_through_the_waiters_argv() {
        let paths = Paths { cgroup_parent: Some("/kube".into()), ..Paths::new("/var/lib/podrun") };
        let req = Resume::of(&paths, "web", 3, Steps(2), 1_700_000_000_000);
        let mut argv: Vec<std::ffi::OsString> = vec!["podrun".into()];
        argv.extend(req.args().into_iter().map(Into::into));
        // The waiter writes the status over the placeholder, padded to its width.
        *argv.last_mut().unwrap() = format!("{:<11}", -1).into();
        let (back, status) = Resume::from_args(&argv).unwrap().unwrap();
        assert_eq!((&back, status), (&req, -1));
        assert_eq!(back.paths().cgroup_top(), paths.cgroup_top());
    }

    #[test]
    fn other_command_lines_are_not_a_resume_and_a_broken_one_says_so() {
        let args = |a: &[&str]| a.iter().map(Into::into).collect::<Vec<std::ffi::OsString>>();
        assert!(Resume::from_args(&args(&["podrun", "ps", "-a"])).is_none());
        assert!(Resume::from_args(&args(&["podrun"])).is_none());
        assert!(Resume::from_args(&args(&["podrun", RESUME, "{}", "--status", "0"])).unwrap().is_err());
        assert!(Resume::from_args(&args(&["podrun", RESUME])).unwrap().is_err());
    }
}
