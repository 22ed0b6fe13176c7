//! Runtime state of sandboxes and containers, under podrun's root:
//! ```text
//! sandboxes/<name>/state.json    SandboxState
//! sandboxes/<name>/shm/          the pod's /dev/shm (a tmpfs, mounted while the sandbox exists)
//! sandboxes/<name>/pause-root/   the empty directory pause's own root is mounted on
//! sandboxes/<name>/hostname, hosts, resolv.conf   bind-mounted into each joined container
//! containers/<id>/state.json     ContainerState (beside the rootfs dirs of image/store.rs)
//! containers/<id>/config.json    the container's OCI runtime spec
//! containers/<id>/log            stdout and stderr of a detached container
//! ```
//! Files are replaced atomically (temp file, rename) under a flock of their directory.
//! Whether a process still runs is never read from here: `ProcRef::alive` decides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::record::{list, lock, now, now_ms, read_json, write_json};

use crate::image::digest::Digest;
use crate::proc::ProcRef;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    pub name: String,
    pub hostname: String,
    pub share_pid: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: u64,
    pub pause: ProcRef,
    /// The sandbox's cgroup (pod limits); pause is in `<cgroup>/pause`.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// podrun's own top cgroup the sandbox's is in: removal never goes above it.
    #[serde(default)]
    pub cgroup_top: Option<String>,
    /// Its containers' resource view, unless they say otherwise.
    #[serde(default)]
    pub procview: ViewMode,
    /// The pod's user namespace (held by pause); None: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<crate::idmap::IdMaps>,
}

/// How much of the resource view a container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewMode {
    /// The files, and CPU affinity limited to the view's CPU count (so `nproc` agrees).
    #[default]
    On,
    /// Only the files.
    Files,
    /// Nothing: the host's files.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit status as a shell reports it: the code, or 128 + signal.
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub finished: u64,
    /// The kernel's OOM killer acted in the container's cgroup.
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// Checked when read (a state file naming a path is refused), never parsed again.
    pub id: crate::ids::ContainerId,
    /// The sandbox joined, or None for a container with namespaces of its own.
    pub sandbox: Option<String>,
    /// The image it was made from ("" for a bundle's).
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Digest>,
    pub command: Vec<String>,
    pub created: u64,
    /// Set once the init stage runs.
    pub init: Option<ProcRef>,
    pub detached: bool,
    pub auto_remove: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    /// The container's cgroup, absolute in the hierarchy.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// podrun's own top cgroup the container's is in: removal never goes above it.
    #[serde(default)]
    pub cgroup_top: Option<String>,
    /// A lone container's own user namespace (a joined one has its sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<crate::idmap::IdMaps>,
    /// `run --restart`: its policy and back-off (None: never restarted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<crate::restart::Restart>,
    /// Times it was started again.
    #[serde(default)]
    pub restarts: u32,
    /// How the run before the current one ended (`exit` is the current run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    /// In back-off: when the next start is due, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try_ms: Option<u64>,
    /// The process that waits for the container and records its exits: a detached one's
    /// monitor, or the foreground podrun. Gone while the container runs: unsupervised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<ProcRef>,
    /// Stopped by `podrun kill` or `rm`: not started again by its policy (`start` does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// A bundle's container (the OCI commands'): the bundle's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<std::path::PathBuf>,
    /// A bundle's container: the resource view it was given (its annotation's, or the
    /// configured default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewMode>,
    /// The spec's annotations (a bundle's container).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where it was read from (its directory, which holds its exec fifo while it is
    /// created and not started): not stored.
    #[serde(skip)]
    pub dir: Option<std::path::PathBuf>,
}

impl ContainerState {
    /// The exit that shows as "last": the current run's, else the one before.
    pub fn latest_exit(&self) -> Option<ExitInfo> {
        self.exit.or(self.last_exit)
    }
}

/// Where state lives under one root.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    /// `--cgroup-parent`: an existing cgroup podrun puts its own `podrun` cgroup in.
    pub cgroup_parent: Option<String>,
    /// `--subuid`, `--subgid`: the files --userns=auto takes its pool from.
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

/// The default root: its cgroups live under /podrun.
pub const DEFAULT_ROOT: &str = "/var/lib/podrun";

impl Paths {
    /// A root with the default cgroup parent and pool files.
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into(), cgroup_parent: None, subuid: "/etc/subuid".into(), subgid: "/etc/subgid".into() }
    }

    /// podrun's own top cgroup for this root: `/podrun` for the default root, and
    /// `/podrun-<hash of the root>` for any other, so two roots never share cgroup names.
    pub fn cgroup_top(&self) -> String {
        if let Some(p) = &self.cgroup_parent {
            return format!("{}/podrun", p.trim_end_matches('/'));
        }
        if self.root == Path::new(DEFAULT_ROOT) {
            return "/podrun".into();
        }
        format!("/podrun-{:08x}", podrun_cgroup::fnv1a(self.root.as_os_str().as_encoded_bytes()) as u32)
    }

    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }
    pub fn sandbox(&self, name: &str) -> PathBuf {
        self.sandboxes().join(name)
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    /// The table of user namespace id ranges handed out (idmap.rs).
    pub fn userns(&self) -> PathBuf {
        self.root.join("userns")
    }
    /// Whether the owner of an id range (`sandbox/NAME`, `container/ID`) still exists.
    pub fn owner_exists(&self, owner: &str) -> bool {
        match owner.split_once('/') {
            Some(("sandbox", n)) => self.sandbox(n).exists(),
            Some(("container", n)) => self.container(n).exists(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = SandboxState {
            name: "pod".into(),
            hostname: "pod".into(),
            share_pid: true,
            labels: [("app".to_owned(), "web".to_owned())].into(),
            created: 1,
            pause: ProcRef { pid: 7, start_time: 99 },
            cgroup: Some("/podrun/pod".into()),
            cgroup_top: Some("/podrun".into()),
            procview: ViewMode::Off,
            userns: None,
        };
        write_json(dir.path(), "state.json", &s).unwrap();
        let back: SandboxState = read_json(&dir.path().join("state.json")).unwrap();
        assert_eq!(back.pause, s.pause);
        assert_eq!(back.labels, s.labels);
        assert_eq!(back.procview, ViewMode::Off);
        // A state written before the view existed: its containers get the view.
        let old = serde_json::json!({"name": "p", "hostname": "p", "share_pid": false, "created": 1,
            "pause": {"pid": 7, "start_time": 99}});
        assert_eq!(serde_json::from_value::<SandboxState>(old).unwrap().procview, ViewMode::On);
        assert_eq!(list(dir.path()), vec!["state.json"]);
    }

    #[test]
    fn cgroup_top_is_podrun_for_the_default_root_and_distinct_for_others() {
        let p = |r: &str| Paths::new(r).cgroup_top();
        assert_eq!(p(DEFAULT_ROOT), "/podrun");
        assert_ne!(p("/tmp/a"), p("/tmp/b"));
        assert_eq!(p("/tmp/a"), p("/tmp/a"));
        assert!(p("/tmp/a").starts_with("/podrun-"));
        let moved = Paths { cgroup_parent: Some("/kubepods/burstable/".into()), ..Paths::new("/tmp/a") };
        assert_eq!(moved.cgroup_top(), "/kubepods/burstable/podrun");
    }
}
