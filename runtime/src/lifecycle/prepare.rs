//! What a start needs, made before anything is spawned: the mounts made on the host's side
//! for a user namespace, and another start of an existing container.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use oci_spec::runtime::Spec;

use super::*;
use crate::cgroup;
use crate::image::{Rootfs, Store};
use crate::mount::rootfs;
use crate::state::{self, ContainerState, Paths};
use crate::sync::ChildError;

/// The mounts made on the host's side for a container in a user namespace, and the view's
/// lock held from their clones on (see rootfs::ViewLock).
pub(crate) fn premake(
    rootfs: &Rootfs,
    spec: &Spec,
    userns: Option<&OwnedFd>,
    maps: Option<&crate::idmap::IdMaps>,
    view: &Option<(PathBuf, PathBuf)>,
) -> Result<(rootfs::Premade, Option<rootfs::ViewLock>), ContainerError> {
    let (Some(u), Some(m)) = (userns, maps) else { return Ok((rootfs::Premade::default(), None)) };
    let lock = view.as_ref().map(|(_, file)| rootfs::ViewLock::take(file)).transpose().map_err(ChildError::from)?;
    let premade = rootfs::premake(rootfs, spec, u.as_fd(), m).map_err(ChildError::from)?;
    Ok((premade, lock))
}

/// Prepares another start of an existing container (restart.rs's policy, or `podrun
/// start`), from its rootfs and config.json: into its sandbox again (which must still
/// run), in its own cgroup (emptied first), in a user namespace with the same maps.
pub(crate) fn prepare_again(paths: &Paths, store: &Store, st: ContainerState) -> Result<Prepared, ContainerError> {
    let cid = st.id.clone();
    let spec: Spec = state::read_json(&paths.container(cid.as_str()).join("config.json"))
        .map_err(io(format!("read config.json of container {cid}")))?;
    if spec.process().as_ref().is_some_and(|p| p.terminal().unwrap_or(false)) {
        return Err(ContainerError::StartTerminal(st.id.to_string()));
    }
    let rootfs = store.rootfs(&cid)?;
    let sb = match &st.sandbox {
        Some(name) => {
            let sb: crate::state::SandboxState = state::read_json(&paths.sandbox(name).join("state.json"))
                .map_err(|_| ContainerError::SandboxDown(name.clone()))?;
            if !sb.pause.alive() {
                return Err(ContainerError::SandboxDown(name.clone()));
            }
            Some(sb)
        }
        None => None,
    };
    let h = cgroup::Hierarchy::host()?;
    let cg = st.cgroup.clone().ok_or_else(|| ContainerError::NotFound(st.id.to_string()))?;
    // What the last run left (its orphans, with a shared pid namespace) goes first.
    cgroup::kill_all(&h, &cg)?;
    let entry = cgroup::Entry::open(&h, &cg)?;
    let oom_before = cgroup::oom_kills(&h, &cg);
    // The view may have stopped meanwhile (with no container left for a moment).
    let view_dir = crate::procview::dir(paths);
    let view_paths =
        if spec.mounts().iter().flatten().any(|m| m.source().as_ref().is_some_and(|s| s.starts_with(&view_dir))) {
            Some((crate::procview::ensure(paths)?, crate::procview::binds_lock(paths)))
        } else {
            None
        };
    let userns = match (&st.userns, &sb) {
        (Some(m), _) => Some(crate::idmap::create_userns(m)?),
        (None, Some(s)) if s.userns.is_some() => {
            Some(crate::idmap::userns_of(&s.pause).map_err(|_| ContainerError::SandboxDown(s.name.clone()))?)
        }
        _ => None,
    };
    let maps = st.userns.clone().or_else(|| sb.as_ref().and_then(|s| s.userns.clone()));
    let (premade, view_lock) = premake(&rootfs, &spec, userns.as_ref(), maps.as_ref(), &view_paths)?;
    let own = st.userns.is_some();
    Ok(Prepared {
        spec,
        rootfs,
        join: sb.map(|s| (s.pause, s.share_pid)),
        interactive: false,
        entry,
        join_userns: !own && userns.is_some(),
        userns: if own { userns } else { None },
        premade,
        view: view_paths,
        view_lock,
        fresh: false,
        oom_before,
        namespaces: None,
        preserve_fds: 0,
        state: st,
    })
}
