//! Containers: `run` (in a sandbox, or with namespaces of their own), `exec`, `kill`, `rm`,
//! `ps`, `logs`. The start path: resolve the image and sandbox, create the rootfs dirs,
//! build the OCI spec, spawn (clone.rs) with the join stage entering the sandbox and the init
//! stage building the mounts (mount/rootfs.rs) and the process (exec.rs); then wait in the
//! foreground, or hand the waiting to a detached monitor that records the exit status.

use std::fs;

use crate::cgroup;
use crate::clone::{self, Signals};
use crate::exec;
use crate::ids::{self, ContainerId};
use crate::image::{self, Store};
pub use crate::lifecycle::exec::exec_in;
pub use crate::lifecycle::ContainerError;
use crate::lifecycle::{discard, io, launch, premake, record_exit, Prepared};
pub use crate::lifecycle::{kill, list, load, remove, remove_state, status, supervised, Status};
use crate::proc::ProcRef;
use crate::restart::{Policy, Restart};
use crate::sandbox;
use crate::spec::{self, Join, RunOptions};
use crate::state::{now, ContainerState, ExitInfo, Paths, ViewMode};

/// What `podrun run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    pub join: Option<String>,
    pub detach: bool,
    pub auto_remove: bool,
    pub interactive: bool,
    pub user: Option<String>,
    pub options: RunOptions,
    pub limits: cgroup::Limits,
    /// The resource view: None takes the sandbox's setting (on without a sandbox).
    pub procview: Option<crate::state::ViewMode>,
    /// A lone container's own user namespace (a joined one has its sandbox's).
    pub userns: crate::idmap::UsernsMode,
    pub pool: crate::idmap::Pool,
    /// `--restart` and `--restart-backoff` (None: never).
    pub restart: Option<Restart>,
}

/// How a `run` ended, for the CLI.
pub enum RunOutcome {
    Detached(String),
    Exited(ExitInfo),
}

pub fn run(paths: &Paths, store: &Store, req: RunRequest) -> Result<RunOutcome, ContainerError> {
    let id = ContainerId::parse(&req.name.clone().unwrap_or_else(|| ids::generate("")))?;
    let image = store.resolve(&req.image)?;
    let sb = match &req.join {
        Some(name) => {
            let sb = sandbox::load(paths, name).map_err(|e| match e {
                sandbox::SandboxError::BadName(b) => ContainerError::BadName(b),
                _ => ContainerError::NoSandbox(name.clone()),
            })?;
            if !sb.pause.alive() {
                return Err(ContainerError::SandboxDown(name.clone()));
            }
            Some(sb)
        }
        None => None,
    };
    for v in &req.options.volumes {
        if !v.host.exists() {
            return Err(ContainerError::NoVolumeSource(v.host.display().to_string()));
        }
    }
    if sb.is_some() && id.as_str() == cgroup::PAUSE {
        return Err(ContainerError::ReservedName(id.to_string()));
    }
    if sb.is_some() && req.userns != crate::idmap::UsernsMode::Host {
        return Err(ContainerError::UsernsWithJoin);
    }
    let restart = req.restart.filter(|r| r.policy != Policy::Never);
    if restart.is_some() && !req.detach {
        return Err(ContainerError::RestartNeedsDetach);
    }
    if restart.is_some() && req.auto_remove {
        return Err(ContainerError::RestartWithRm);
    }
    let rootfs = store.create_rootfs(&id, &image).map_err(|e| match e {
        image::Error::RootfsExists(n) => ContainerError::NameInUse(n),
        e => e.into(),
    })?;
    // A joined container's cgroup is inside its sandbox's, under the sandbox's top.
    let top = sb.as_ref().and_then(|s| s.cgroup_top.clone()).unwrap_or_else(|| paths.cgroup_top());
    let cgroup_path = match &sb {
        Some(s) => format!("{}/{id}", s.cgroup.clone().unwrap_or_else(|| format!("{top}/{}", s.name))),
        // `@` is outside the name alphabet: a container alone never meets a sandbox's cgroup.
        None => format!("{top}/{}{id}", cgroup::LONE_PREFIX),
    };
    let mut made_cgroup = false;
    let owner = format!("container/{id}");
    let prepared = (|| {
        // A lone container's range is recorded once its directory exists (the rootfs's).
        let own_maps =
            crate::idmap::allocate(&paths.userns(), &owner, &req.userns, &req.pool, |o| paths.owner_exists(o))?;
        let h = cgroup::Hierarchy::host()?;
        // Set first: a create that fails halfway (a limit the kernel refuses) has made dirs.
        made_cgroup = true;
        // A container's cgroup always gets the device allow-list (with its --device ones).
        let mut limits = req.limits.clone();
        limits.devices = Some(req.options.devices.clone());
        cgroup::create(&h, &top, &cgroup_path, &limits)?;
        let entry = cgroup::Entry::open(&h, &cgroup_path)?;
        let who = exec::identity(req.user.as_deref().or(image.config.user.as_deref()), &rootfs.lowers)?;
        let mut options = req.options.clone();
        options.hostname = sb.as_ref().map_or_else(|| id.to_string(), |s| s.hostname.clone());
        let view = req.procview.unwrap_or_else(|| sb.as_ref().map_or(ViewMode::On, |s| s.procview));
        if view != ViewMode::Off {
            options.procview = Some(crate::procview::ensure(paths)?);
        }
        if view == ViewMode::On {
            // Spread over the allowed CPUs by pod (or container), so pods share them evenly.
            let key = sb.as_ref().map_or(id.as_str(), |s| s.name.as_str());
            options.affinity = crate::procview::affinity(&h, &cgroup_path, key);
            options.sysinfo_agent = Some(crate::procview::agent_path(paths));
        }
        options.idmaps = own_maps.clone().or_else(|| sb.as_ref().and_then(|s| s.userns.clone()));
        // The user namespace: a lone container's is made now; a pod's is pause's.
        let userns = match (&own_maps, &sb) {
            (Some(m), _) => Some(crate::idmap::create_userns(m)?),
            (None, Some(s)) if s.userns.is_some() => {
                Some(crate::idmap::userns_of(&s.pause).map_err(|_| ContainerError::SandboxDown(s.name.clone()))?)
            }
            _ => None,
        };
        let join =
            sb.as_ref().map(|s| Join { pause_pid: s.pause.pid, share_pid: s.share_pid, dir: paths.sandbox(&s.name) });
        let spec = spec::build(&image, &options, &who, join.as_ref(), &h)?;
        let view_paths = options.procview.clone().map(|d| (d, crate::procview::binds_lock(paths)));
        let (premade, view_lock) = premake(&rootfs, &spec, userns.as_ref(), options.idmaps.as_ref(), &view_paths)?;
        let state = ContainerState {
            id: id.clone(),
            sandbox: sb.as_ref().map(|s| s.name.clone()),
            image: req.image.clone(),
            image_id: Some(image.id.clone()),
            command: spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default(),
            created: now(),
            init: None,
            detached: req.detach,
            auto_remove: req.auto_remove,
            exit: None,
            cgroup: Some(cgroup_path.clone()),
            cgroup_top: Some(top.clone()),
            userns: own_maps.clone(),
            restart,
            restarts: 0,
            last_exit: None,
            next_try_ms: None,
            monitor: None,
            stopped: false,
            bundle: None,
            view: None,
            annotations: Default::default(),
            dir: Some(rootfs.dir.clone()),
        };
        // config.json is read only once state.json exists, so it needs no rename.
        let config = serde_json::to_vec(&spec).map_err(|e| io("serialize config.json")(e.into()))?;
        fs::write(rootfs.dir.join("config.json"), config).map_err(io("write config.json"))?;
        Ok::<_, ContainerError>(Prepared {
            state,
            spec,
            rootfs: rootfs.clone(),
            join: sb.map(|s| (s.pause, s.share_pid)),
            interactive: req.interactive,
            entry,
            join_userns: own_maps.is_none() && userns.is_some(),
            userns: if own_maps.is_some() { userns } else { None },
            premade,
            view: view_paths,
            view_lock,
            fresh: true,
            oom_before: 0,
            namespaces: None,
            preserve_fds: 0,
        })
    })();
    let p = match prepared {
        Ok(p) => p,
        Err(e) => {
            if made_cgroup {
                if let Ok(h) = cgroup::Hierarchy::host() {
                    let _ = cgroup::remove(&h, &top, &cgroup_path);
                }
            }
            let _ = store.remove_rootfs(&id);
            crate::idmap::release(&paths.userns(), &owner);
            crate::procview::release_if_unused(paths);
            return Err(e);
        }
    };
    if req.detach {
        crate::monitor::run_detached(paths, store, p).map(RunOutcome::Detached)
    } else {
        run_foreground(paths, store, p).map(RunOutcome::Exited)
    }
}

fn run_foreground(paths: &Paths, store: &Store, mut p: Prepared) -> Result<ExitInfo, ContainerError> {
    // This podrun is the one that waits: if it is killed, `ps` says so.
    p.state.monitor = ProcRef::of(std::process::id() as i32);
    let started = (|| {
        clone::set_subreaper().map_err(|e| io("become a subreaper")(e.into()))?;
        let signals = Signals::block(true).map_err(|e| io("block signals")(e.into()))?;
        let spawned = launch(&p)?;
        Ok::<_, ContainerError>((signals, spawned))
    })();
    let (mut signals, spawned) = match started {
        Ok(x) => x,
        Err(e) => {
            discard(paths, store, &p.state);
            return Err(e);
        }
    };
    let pid = spawned.pid;
    // Held so that the container's mount namespace outlives its last process: unmounting
    // its overlay, /proc, /dev and the rest (0.3–0.5 ms here) then happens when this is
    // closed, in the --rm cleanup child, not in the workload's exit that podrun waits for.
    let mounts = fs::File::open(format!("/proc/{pid}/ns/mnt")).ok();
    let exit = match spawned.terminal {
        Some(master) => crate::terminal::proxy(master, &mut signals, pid),
        None => signals.wait(pid),
    };
    Ok(record_exit(paths, store, &p.state.id, exit, true, mounts, p.oom_before))
}
