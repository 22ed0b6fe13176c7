//! Containers made from an OCI bundle, the runc command line's: `create` reads the bundle's
//! config.json and makes the container under a state root (runc's `--root`), its init
//! waiting on the exec fifo; `start`, `state`, `kill` and `delete` act on it by id, each
//! in a process of its own, as containerd's shim and conmon call them.
//!
//! ```text
//! <root>/<id>/state.json   ContainerState (with the bundle and its annotations)
//! <root>/<id>/config.json  the spec as run (the bundle's, with what podrun added)
//! <root>/<id>/exec.fifo    while created and not started
//! ```
//! The init is not podrun's child once `create` returns: it is the caller's (a subreaper,
//! as containerd's shim and conmon are), which waits for it and knows its exit status.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Mount, Spec};

use super::*;
use crate::cgroup;
use crate::ids::ContainerId;
use crate::state::{self, now};

/// Why a bundle's spec cannot be run, with the JSON path of what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error(transparent)]
    Namespaces(#[from] crate::ns::PlanError),
}

fn field(field: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Field { field: field.into(), message: message.into() }
}

/// The annotation that gives a bundle's container podrun's resource view: `on` (the
/// files, sysinfo(2) and CPU affinity cut to the view's count), `files`, or `off` (the
/// default).
pub const VIEW_ANNOTATION: &str = "run.podrun.procview";

/// The view a spec's annotation asks for.
fn view_mode(spec: &Spec, default: Option<crate::state::ViewMode>) -> Result<crate::state::ViewMode, BundleError> {
    use crate::state::ViewMode;
    match spec.annotations().as_ref().and_then(|a| a.get(VIEW_ANNOTATION)).map(String::as_str) {
        None => Ok(default.unwrap_or(ViewMode::Off)),
        Some("off") => Ok(ViewMode::Off),
        Some("on") => Ok(ViewMode::On),
        Some("files") => Ok(ViewMode::Files),
        Some(other) => {
            Err(field(format!("annotations[\"{VIEW_ANNOTATION}\"]"), format!("{other:?}: use on, files or off")))
        }
    }
}

/// Where the view of the bundle containers under `root` lives (its own podrun root, a name
/// no container id can have).
pub fn view_paths(root: &Path) -> crate::state::Paths {
    crate::state::Paths::new(root.join(".podrun"))
}

fn uses_view(c: &ContainerState) -> bool {
    c.view.is_some_and(|v| v != crate::state::ViewMode::Off)
}

/// Stops the view of `root` once no container there asks for it.
fn release_view(root: &Path) {
    let users = list(root).iter().filter(|c| uses_view(c)).count();
    let vp = view_paths(root);
    if users == 0 && vp.root.exists() {
        crate::procview::stop(&vp);
        // Its directory too, so that the state root holds containers only. (A create
        // that started the view again meanwhile keeps it: rmdir fails on what is in it.)
        let _ = fs::remove_file(crate::procview::binds_lock(&vp));
        let _ = fs::remove_dir(&vp.root);
    }
}

/// What `create` is asked for, beside the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory (config.json and, usually, the root filesystem).
    pub bundle: PathBuf,
    /// Where to write the init's pid, once it waits (atomically: a temp file renamed).
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to, for a spec with `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// The caller's descriptors 3 to 3+N-1 that the process gets.
    pub preserve_fds: u32,
    /// The resource view of a spec without the annotation (podrun's configuration; none: off).
    pub default_view: Option<crate::state::ViewMode>,
}

/// The state root's directory of container `id`.
pub fn dir_of(root: &Path, id: &ContainerId) -> PathBuf {
    root.join(id.as_str())
}

/// Reads and checks `<bundle>/config.json`.
pub fn read_spec(bundle: &Path) -> Result<Spec, BundleError> {
    let path = bundle.join("config.json");
    let text = fs::read(&path).map_err(|e| BundleError::Config { path: path.clone(), message: e.to_string() })?;
    let spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| BundleError::Config { path: path.clone(), message: format!("not an OCI runtime spec: {e}") })?;
    check(&spec)?;
    Ok(spec)
}

/// Refuses, by JSON path, what podrun does not do yet, rather than run without it.
fn check(spec: &Spec) -> Result<(), BundleError> {
    if spec.process().is_none() {
        return Err(field("process", "missing: a container needs a process to run"));
    }
    if spec.root().is_none() {
        return Err(field("root", "missing: a container needs a root filesystem (root.path)"));
    }
    if spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container(), h.start_container(), h.poststart(), h.poststop()]
            .iter()
            .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    }) {
        return Err(field("hooks", "not supported by podrun yet"));
    }
    let Some(linux) = spec.linux() else { return Err(field("linux", "missing: podrun runs Linux containers")) };
    for (i, n) in linux.namespaces().iter().flatten().enumerate() {
        let word = n.typ().to_string();
        if (word == "user" || word == "time") && n.path().is_none() {
            return Err(field(
                format!("linux.namespaces[{i}]"),
                format!("a new {word} namespace is not supported by podrun yet"),
            ));
        }
    }
    if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(field("linux.uidMappings", "not supported by podrun yet"));
    }
    if linux.intel_rdt().is_some() {
        return Err(field("linux.intelRdt", "not supported: podrun does not manage Intel RDT"));
    }
    if linux.time_offsets().is_some() {
        return Err(field("linux.timeOffsets", "not supported by podrun yet"));
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let path = d.path().to_string_lossy();
        if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
            return Err(field(format!("linux.devices[{i}].path"), format!("{path:?}: a device goes under /dev")));
        }
    }
    if linux.personality().is_some() {
        return Err(field("linux.personality", "not supported by podrun yet"));
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(field("linux.mountLabel", "SELinux is not enabled on this host"));
    }
    if let Some(p) = linux.rootfs_propagation().as_deref().filter(|p| !matches!(*p, "" | "private" | "rprivate")) {
        return Err(field("linux.rootfsPropagation", format!("{p:?}: podrun makes the root private (rprivate)")));
    }
    let process = spec.process().as_ref().expect("checked above");
    if process.apparmor_profile().as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(field("process.apparmorProfile", "AppArmor is not enabled on this host"));
    }
    if process.selinux_label().as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(field("process.selinuxLabel", "SELinux is not enabled on this host"));
    }
    if process.io_priority().is_some() {
        return Err(field("process.ioPriority", "not supported by podrun yet"));
    }
    if process.scheduler().is_some() {
        return Err(field("process.scheduler", "not supported by podrun yet"));
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(field("process.args", "missing: the command to run"));
    }
    Ok(())
}

/// The cgroup limits a spec's `linux.resources` asks for, in podrun's terms.
fn limits(r: Option<&LinuxResources>) -> Result<cgroup::Limits, BundleError> {
    let mut l = cgroup::Limits { devices: Some(Vec::new()), ..Default::default() };
    let Some(r) = r else { return Ok(l) };
    if let Some(m) = r.memory() {
        l.memory = m.limit().filter(|&v| v > 0).map(|v| v as u64);
        l.memory_swap = m.swap().filter(|&v| v != 0);
    }
    if let Some(c) = r.cpu() {
        if let (Some(q), p) = (c.quota().filter(|&q| q > 0), c.period().unwrap_or(100_000)) {
            l.cpu_quota = Some((q as u64, p));
        }
        l.cpu_shares = c.shares().filter(|&s| s > 0);
        l.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
    }
    if let Some(p) = r.pids() {
        l.pids = u64::try_from(p.limit()).ok().filter(|&v| v > 0);
    }
    // A rule allowing every device (a privileged container's) lifts the allow-list; the
    // usual list (deny all, then the standard devices) is podrun's own default one, and
    // a rule allowing one device number (linux.devices' nodes, a device plugin's) is added
    // to it, unless the standard list allows it already (clients copy it). Other rules (a
    // deny of one device, a number range beyond the standard ones) are refused.
    let mut extra = Vec::new();
    for (i, d) in r.devices().iter().flatten().enumerate() {
        let typ = d.typ().map(|t| t.as_str().to_owned()).unwrap_or_else(|| "a".into());
        let access = d.access().clone().unwrap_or_else(|| "rwm".into());
        match (d.allow(), typ.as_str(), d.major(), d.minor()) {
            (true, "a", None, None) => {
                l.devices = None;
                return Ok(l);
            }
            (false, "a", None, None) => {}
            // The standard devices, as clients list them too (c *:* m, c 136:* rwm, ...).
            (true, t @ ("c" | "b"), maj, min)
                if crate::devices::Device::standard(
                    t == "b",
                    maj.and_then(|m| u32::try_from(m).ok()),
                    min.and_then(|m| u32::try_from(m).ok()),
                    &access,
                ) => {}
            (true, t @ ("c" | "b"), Some(maj), Some(min)) if maj >= 0 && min >= 0 => {
                let dev =
                    crate::devices::Device::allowed(t == "b", maj as u32, min as u32, &access).ok_or_else(|| {
                        field(format!("linux.resources.devices[{i}].access"), format!("{access:?}: use r, w and m"))
                    })?;
                extra.push(dev);
            }
            _ => {
                return Err(field(
                    format!("linux.resources.devices[{i}]"),
                    "podrun takes a deny of all, an allow of all, or an allow of one c or b device number",
                ))
            }
        }
    }
    l.devices = Some(extra);
    Ok(l)
}

/// The cgroup a spec's `linux.cgroupsPath` names: absolute in the hierarchy as given; a
/// relative one, and none, as runc takes them (under the root, by id).
fn cgroup_path(spec: &Spec, id: &ContainerId) -> Result<String, BundleError> {
    let given = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let p = match given {
        None => format!("/{id}"),
        Some(p) => {
            let s = p.to_string_lossy().into_owned();
            if s.contains(':') {
                return Err(field(
                    "linux.cgroupsPath",
                    format!("{s:?} is the systemd form (slice:prefix:name), which podrun does not manage"),
                ));
            }
            format!("/{}", s.trim_start_matches('/'))
        }
    };
    if p.split('/').any(|c| c == ".." || c == ".") || p == "/" {
        return Err(field("linux.cgroupsPath", format!("{p:?} is not a cgroup of its own")));
    }
    Ok(p.trim_end_matches('/').to_owned())
}

/// The spec's mounts, with each of type `cgroup` or `cgroup2` made what this host has.
fn host_mounts(spec: &mut Spec, h: &cgroup::Hierarchy) -> Result<(), ContainerError> {
    let Some(mounts) = spec.mounts().clone() else { return Ok(()) };
    let mut out: Vec<Mount> = Vec::with_capacity(mounts.len());
    for m in mounts {
        if matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")) {
            let ro = m.options().iter().flatten().any(|o| o == "ro");
            out.extend(crate::spec::cgroup_mounts_at(h, &m.destination().to_string_lossy(), ro)?);
        } else {
            out.push(m);
        }
    }
    spec.set_mounts(Some(out));
    Ok(())
}

/// Makes container `id` from `opts.bundle` under `root`: its init waits for `start`, its
/// pid in the pid file. On failure nothing is left.
pub fn create(root: &Path, id: &str, opts: &CreateOptions) -> Result<ContainerState, ContainerError> {
    let cid = ContainerId::parse(id)?;
    let bundle = fs::canonicalize(&opts.bundle).map_err(io(format!("bundle {}", opts.bundle.display())))?;
    let mut spec = read_spec(&bundle)?;
    let rootfs_path = bundle.join(spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default());
    if !rootfs_path.is_dir() {
        return Err(field("root.path", format!("{} is not a directory", rootfs_path.display())).into());
    }
    let terminal = spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false));
    if terminal && opts.console_socket.is_none() {
        return Err(ContainerError::NoConsoleSocket);
    }
    let cg = cgroup_path(&spec, &cid)?;
    let view = view_mode(&spec, opts.default_view)?;
    let lim = limits(spec.linux().as_ref().and_then(|l| l.resources().as_ref()))?;
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    let plan = crate::ns::Plan::of_spec(namespaces.iter().map(|n| (n.typ().to_string(), n.path().as_deref())))
        .map_err(BundleError::from)?;
    fs::create_dir_all(root).map_err(io(format!("create {}", root.display())))?;
    let dir = dir_of(root, &cid);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ContainerError::NameInUse(id.to_owned()))
        }
        Err(e) => return Err(io(format!("create {}", dir.display()))(e)),
    }
    let h = cgroup::Hierarchy::host();
    let made = h.as_ref().ok().map(|h| (h, cg.clone()));
    let result = (|| {
        let state = ContainerState {
            id: cid.clone(),
            sandbox: None,
            image: String::new(),
            image_id: None,
            command: spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default(),
            created: now(),
            init: None,
            detached: true,
            auto_remove: false,
            exit: None,
            cgroup: Some(cg.clone()),
            cgroup_top: Some(cg.clone()),
            userns: None,
            restart: None,
            restarts: 0,
            last_exit: None,
            next_try_ms: None,
            monitor: None,
            stopped: false,
            bundle: Some(bundle.clone()),
            view: Some(view),
            annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            dir: Some(dir.clone()),
        };
        // Written first: a create killed from here on leaves a state naming the cgroup, so
        // `delete --force` frees it ("creating" until the init is recorded).
        state::write_json(&dir, "state.json", &state).map_err(io("write state.json"))?;
        let h = cgroup::Hierarchy::host()?;
        host_mounts(&mut spec, &h)?;
        // Only the container's own cgroup is podrun's: its parents (containerd's namespace,
        // a pod's) are made if missing, as runc does, and left alone on delete.
        cgroup::create(&h, &first_level(&cg), &cg, &lim)?;
        let entry = cgroup::Entry::open(&h, &cg)?;
        let view_dirs = match view {
            crate::state::ViewMode::Off => None,
            mode => {
                let vp = view_paths(root);
                fs::create_dir_all(&vp.root).map_err(io(format!("create {}", vp.root.display())))?;
                let dir = crate::procview::ensure(&vp)?;
                let on = mode == crate::state::ViewMode::On;
                let agent = crate::procview::agent_path(&vp);
                crate::spec::add_view(&mut spec, &dir, on.then_some(agent.as_path()), &h)?;
                let process = spec.process_mut().as_mut().expect("checked");
                if on && process.exec_cpu_affinity().is_none() {
                    if let Some(cpus) = crate::procview::affinity(&h, &cg, id) {
                        let list = cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
                        let a = oci_spec::runtime::ExecCPUAffinityBuilder::default()
                            .cpu_affinity_final(list)
                            .build()
                            .map_err(|e| field("process.execCPUAffinity", e.to_string()))?;
                        process.set_exec_cpu_affinity(Some(a));
                    }
                }
                Some((dir, crate::procview::binds_lock(&vp)))
            }
        };
        // The spec as run (the host's cgroup mounts, the view's binds and sysinfo rule),
        // which `exec` reads: an exec'd process gets what the init got.
        state::write_json(&dir, "config.json", &spec).map_err(io("write config.json"))?;
        let p = Prepared {
            state,
            spec,
            rootfs: crate::mount::Rootfs::directory(dir.clone(), rootfs_path.clone()),
            join: None,
            // The caller's stdio is the container's.
            interactive: true,
            entry,
            userns: None,
            join_userns: false,
            premade: Default::default(),
            view: view_dirs,
            view_lock: None,
            fresh: true,
            oom_before: 0,
            namespaces: Some(plan),
            preserve_fds: opts.preserve_fds,
        };
        let fifo = fifo::make(&dir).map_err(io("make the exec fifo"))?;
        let spawned = spawn::create(&p, &fifo)?;
        let mut st = p.state.clone();
        st.init = crate::proc::ProcRef::of(spawned.pid.as_raw());
        if let Some(master) = spawned.terminal {
            let socket = opts.console_socket.as_deref().ok_or(ContainerError::NoConsoleSocket)?;
            send_console(socket, master).map_err(io(format!("send the terminal to {}", socket.display())))?;
        }
        if let Some(f) = &opts.pid_file {
            write_pid_file(f, spawned.pid.as_raw()).map_err(io(format!("write the pid file {}", f.display())))?;
        }
        Ok::<_, ContainerError>(st)
    })();
    result.inspect_err(|_| {
        if let Some((h, cg)) = &made {
            let _ = cgroup::remove(h, cg, cg);
        }
        let _ = fs::remove_dir_all(&dir);
        if view != crate::state::ViewMode::Off {
            release_view(root);
        }
    })
}

/// `/a/b/c` -> `/a`: the level from which `cgroup::create` may make directories.
fn first_level(cg: &str) -> String {
    format!("/{}", cg.trim_start_matches('/').split('/').next().unwrap_or_default())
}

/// The pid, as runc writes it (no newline), through a temp file renamed into place: a
/// reader never sees a partial file.
fn write_pid_file(path: &Path, pid: i32) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.podrun-tmp"));
    fs::write(&tmp, pid.to_string())?;
    fs::rename(&tmp, path)
}

/// Sends the pty master over the console socket (SCM_RIGHTS, with the name runc gives it),
/// as containerd's and conmon's receivers expect.
fn send_console(socket: &Path, master: OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    let name = b"/dev/ptmx";
    let iov = [std::io::IoSlice::new(name)];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)?;
    Ok(())
}

/// A bundle container's state, by id.
pub fn load(root: &Path, id: &str) -> Result<ContainerState, ContainerError> {
    let cid = ContainerId::parse(id)?;
    let dir = dir_of(root, &cid);
    let mut c: ContainerState =
        state::read_json(&dir.join("state.json")).map_err(|_| ContainerError::NotFound(id.to_owned()))?;
    c.dir = Some(dir);
    Ok(c)
}

/// Every bundle container under `root`, oldest first (as runc lists them).
pub fn list(root: &Path) -> Vec<ContainerState> {
    let mut v: Vec<ContainerState> = state::list(root).iter().filter_map(|id| load(root, id).ok()).collect();
    v.sort_by_key(|c| c.created);
    v
}

/// Lets a created container's init exec its process.
pub fn start(root: &Path, id: &str) -> Result<(), ContainerError> {
    let c = load(root, id)?;
    match status(&c) {
        Status::Created => {}
        Status::Running => return Err(ContainerError::AlreadyRunning(id.to_owned())),
        _ => return Err(ContainerError::NotRunning(id.to_owned())),
    }
    let dir = c.dir.clone().unwrap_or_default();
    let init = c.init.ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
    fifo::start(&dir, &init).map_err(|source| ContainerError::Start { id: id.to_owned(), source })
}

/// Signals the init, or with `all` every process in the container's cgroup.
pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<(), ContainerError> {
    let c = load(root, id)?;
    if all {
        let h = cgroup::Hierarchy::host()?;
        let pids = c.cgroup.as_deref().map(|cg| cgroup::pids(&h, cg)).unwrap_or_default();
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        return Ok(());
    }
    match (status(&c), c.init) {
        (Status::Created | Status::Running | Status::Paused, Some(init)) => {
            init.signal(sig).map_err(|_| ContainerError::NotRunning(id.to_owned()))
        }
        _ => Err(ContainerError::NotRunning(id.to_owned())),
    }
}

/// Freezes a running container's processes (`paused`), or thaws a paused one's.
pub fn pause(root: &Path, id: &str, paused: bool) -> Result<(), ContainerError> {
    let c = load(root, id)?;
    match (status(&c), paused) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => return Err(ContainerError::Paused(id.to_owned())),
        (Status::Running, false) => return Err(ContainerError::NotPaused(id.to_owned())),
        _ => return Err(ContainerError::NotRunning(id.to_owned())),
    }
    let cg = c.cgroup.as_deref().ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
    Ok(cgroup::freeze(&cgroup::Hierarchy::host()?, cg, paused)?)
}

/// The processes in the container's cgroup, host pids.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, ContainerError> {
    let c = load(root, id)?;
    let h = cgroup::Hierarchy::host()?;
    Ok(c.cgroup.as_deref().map(|cg| cgroup::pids(&h, cg)).unwrap_or_default())
}

/// Sets a running container's cgroup limits to `resources` (the OCI `update`).
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    let c = load(root, id)?;
    if !matches!(status(&c), Status::Created | Status::Running | Status::Paused) {
        return Err(ContainerError::NotRunning(id.to_owned()));
    }
    let mut l = limits(Some(resources))?;
    // The allow-list was attached at create; an update leaves devices as they are.
    l.devices = None;
    let cg = c.cgroup.as_deref().ok_or_else(|| ContainerError::NotRunning(id.to_owned()))?;
    Ok(cgroup::set_limits(&cgroup::Hierarchy::host()?, cg, &l)?)
}

/// The spec a container was created with, as run (create wrote it to its directory).
pub fn run_spec(c: &ContainerState) -> Result<Spec, ContainerError> {
    let path = c.dir.clone().unwrap_or_default().join("config.json");
    state::read_json(&path).map_err(io(format!("read {}", path.display())))
}

/// What `exec` is asked for, beside the process.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub preserve_fds: u32,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs (its parent is then the caller's subreaper).
    pub detach: bool,
}

/// Runs `process` in a running container; returns its exit status (0 when detached).
pub fn exec(
    root: &Path,
    id: &str,
    process: oci_spec::runtime::Process,
    opts: &ExecOptions,
) -> Result<u8, ContainerError> {
    let c = load(root, id)?;
    if status(&c) != Status::Running {
        return Err(ContainerError::NotRunning(id.to_owned()));
    }
    let dir = c.dir.clone().unwrap_or_default();
    let spec = run_spec(&c)?;
    let tty = process.terminal().unwrap_or(false);
    if tty && opts.detach && opts.console_socket.is_none() {
        return Err(ContainerError::NoConsoleSocket);
    }
    match super::exec::exec_into(&c, &spec, &dir, process, true, opts.detach, opts.preserve_fds)? {
        super::exec::Exec::Waited(e) => Ok(e.code.clamp(0, 255) as u8),
        super::exec::Exec::Detached(spawned) => {
            if let (Some(master), Some(socket)) = (spawned.terminal, &opts.console_socket) {
                send_console(socket, master).map_err(io(format!("send the terminal to {}", socket.display())))?;
            }
            if let Some(f) = &opts.pid_file {
                write_pid_file(f, spawned.pid.as_raw()).map_err(io(format!("write the pid file {}", f.display())))?;
            }
            Ok(0)
        }
    }
}

/// Removes a container: a created or stopped one as it is, a running one only with
/// `force` (killed first); its processes, cgroup and state go.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let c = load(root, id)?;
    if matches!(status(&c), Status::Running | Status::Paused) && !force {
        return Err(ContainerError::Running(id.to_owned()));
    }
    if let Some(init) = c.init.filter(|i| i.alive()) {
        let _ = init.signal(Signal::SIGKILL);
        init.wait_gone(Duration::from_secs(10));
    }
    if let Some(cg) = &c.cgroup {
        cgroup::remove(&cgroup::Hierarchy::host()?, cg, cg)?;
    }
    let dir = c.dir.clone().unwrap_or_else(|| root.join(id));
    fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
    if uses_view(&c) {
        release_view(root);
    }
    Ok(())
}

/// Removes what a `create` killed midway left under `root` for `id` (a directory without
/// a state, a cgroup): `delete --force` of a container that does not load.
pub fn delete_remains(root: &Path, id: &str) -> Result<bool, ContainerError> {
    let cid = ContainerId::parse(id)?;
    let dir = dir_of(root, &cid);
    if !dir.exists() {
        return Ok(false);
    }
    fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Spec, String> {
        serde_json::from_str::<Spec>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_cgroups_path_is_absolute_or_by_id() {
        let id = ContainerId::parse("c1").unwrap();
        let mut s = Spec::default();
        assert_eq!(cgroup_path(&s, &id).unwrap(), "/c1");
        s.linux_mut().get_or_insert_with(Default::default).set_cgroups_path(Some("/default/c1".into()));
        assert_eq!(cgroup_path(&s, &id).unwrap(), "/default/c1");
        s.linux_mut().as_mut().unwrap().set_cgroups_path(Some("pods/c1/".into()));
        assert_eq!(cgroup_path(&s, &id).unwrap(), "/pods/c1");
        s.linux_mut().as_mut().unwrap().set_cgroups_path(Some("system.slice:docker:c1".into()));
        assert!(cgroup_path(&s, &id).unwrap_err().to_string().starts_with("linux.cgroupsPath: "));
        s.linux_mut().as_mut().unwrap().set_cgroups_path(Some("/a/../b".into()));
        assert!(cgroup_path(&s, &id).is_err());
        assert_eq!(first_level("/default/c1"), "/default");
    }

    #[test]
    fn resources_become_limits_and_an_allow_all_rule_lifts_the_device_list() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":268435456,"swap":536870912},
            "cpu":{"quota":50000,"period":100000,"shares":512,"cpus":"0"},"pids":{"limit":64},
            "devices":[{"allow":false,"access":"rwm"}]}}}"#,
        )
        .unwrap();
        let l = limits(s.linux().as_ref().unwrap().resources().as_ref()).unwrap();
        assert_eq!((l.memory, l.memory_swap, l.cpu_quota), (Some(256 << 20), Some(512 << 20), Some((50_000, 100_000))));
        assert_eq!((l.cpu_shares, l.cpuset_cpus.as_deref(), l.pids), (Some(512), Some("0"), Some(64)));
        assert_eq!(l.devices, Some(Vec::new()), "the standard list");
        let privileged =
            spec(r#"{"ociVersion":"1.0.2","linux":{"resources":{"devices":[{"allow":true,"access":"rwm"}]}}}"#)
                .unwrap();
        assert_eq!(limits(privileged.linux().as_ref().unwrap().resources().as_ref()).unwrap().devices, None);
        // A client's copy of the standard list needs nothing more; a device of its own is
        // added; a range beyond the standard ones, or a deny of one device, is refused.
        let of = |rules: &str| {
            let s =
                spec(&format!(r#"{{"ociVersion":"1.0.2","linux":{{"resources":{{"devices":{rules}}}}}}}"#)).unwrap();
            limits(s.linux().as_ref().unwrap().resources().as_ref()).map(|l| l.devices.map(|d| d.len()))
        };
        let standard = r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","access":"m"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},{"allow":true,"type":"c","major":136,"access":"rwm"}]"#;
        assert_eq!(of(standard).unwrap(), Some(0));
        assert_eq!(of(r#"[{"allow":true,"type":"c","major":10,"minor":200,"access":"rwm"}]"#).unwrap(), Some(1));
        assert!(of(r#"[{"allow":true,"type":"c","major":10,"access":"rwm"}]"#).is_err());
        assert!(of(r#"[{"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]"#).is_err());
    }

    #[test]
    fn what_podrun_does_not_do_is_refused_by_its_json_path() {
        let base = r#""process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}"#;
        let refused = |linux: &str| {
            let s = spec(&format!(r#"{{"ociVersion":"1.0.2",{base},"linux":{linux}}}"#)).unwrap();
            check(&s).unwrap_err().to_string()
        };
        assert!(refused(r#"{"namespaces":[{"type":"pid"},{"type":"user"}]}"#).starts_with("linux.namespaces[1]: "));
        assert!(refused(r#"{"intelRdt":{"closID":"x"}}"#).starts_with("linux.intelRdt: "));
        let ok =
            spec(&format!(r#"{{"ociVersion":"1.0.2",{base},"linux":{{"namespaces":[{{"type":"pid"}}]}}}}"#)).unwrap();
        assert!(check(&ok).is_ok());
        let no_args = spec(
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"r"},"linux":{}}"#,
        )
        .unwrap();
        assert!(check(&no_args).unwrap_err().to_string().starts_with("process.args: "));
    }
}
