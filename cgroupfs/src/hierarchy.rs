//! Where this host's cgroup hierarchies are: its cgroup world (pure v2, or v1 controllers
//! with an optional cgroup2 mount: hybrid), found from mountinfo text, and where each
//! controller's directory of a cgroup is; and where a process is in them (`Cgroups`).
//! Nothing here reads a cgroup's files (snapshot.rs does) or writes one (the runtime does).
//!
//! Detection reads mountinfo text given to it, so it is tested on fixtures of both worlds.

use std::path::{Path, PathBuf};

/// The cgroup world of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One cgroup2 hierarchy holding every controller (most hosts).
    V2 { mount: PathBuf },
    /// One hierarchy per v1 controller (cpu and cpuacct may be apart), and, on hybrid
    /// hosts, a cgroup2 mount without controllers (systemd's `unified`).
    V1 { controllers: Controllers, unified: Option<PathBuf> },
}

/// No hierarchy at all: no controller and no cgroup2 mount, so every number is the host's
/// (what the view is told when it is told nothing).
impl Default for Hierarchy {
    fn default() -> Hierarchy {
        Hierarchy::V1 { controllers: Controllers::default(), unified: None }
    }
}

/// The v1 controllers podrun puts containers in: those it sets limits with or reads usage
/// from (blkio: the I/O the resource view's /proc/diskstats shows), the freezer, which
/// holds a container still while it is killed, and devices, whose allow-list keeps a
/// container off the host's devices (the runtime's devices.rs). On a hybrid host a
/// container also gets a cgroup in the controller-less cgroup2 mount (`unified`): the
/// kernel keeps pressure (PSI) per cgroup only there, for the view's /proc/pressure files.
/// Others (net_cls, perf_event, ...) are left alone: a container stays in its creator's
/// cgroup there.
pub const V1_CONTROLLERS: [&str; 8] = ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"];

/// Where each of podrun's v1 controllers (V1_CONTROLLERS) is mounted: a place for each
/// (None where this host does not mount it). Co-mounted controllers (`cpu,cpuacct`) have
/// the same mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controllers([Option<PathBuf>; V1_CONTROLLERS.len()]);

impl Controllers {
    /// Where `controller` is mounted; None where it is not, or is not one of podrun's.
    pub fn get(&self, controller: &str) -> Option<&Path> {
        self.0[V1_CONTROLLERS.iter().position(|c| *c == controller)?].as_deref()
    }

    /// Records that `controller` is mounted at `mount`, unless a mount of it is known
    /// already (the first one found stays); false if it is not one of podrun's.
    pub fn add(&mut self, controller: &str, mount: PathBuf) -> bool {
        let Some(i) = V1_CONTROLLERS.iter().position(|c| *c == controller) else { return false };
        self.0[i].get_or_insert(mount);
        true
    }

    /// The mounted controllers and their mounts, in V1_CONTROLLERS' order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        V1_CONTROLLERS.iter().zip(&self.0).filter_map(|(c, m)| Some((*c, m.as_deref()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// Controllers from (name, mount) pairs, as `add` takes them (fixtures, mostly).
impl<'a> FromIterator<(&'a str, PathBuf)> for Controllers {
    fn from_iter<I: IntoIterator<Item = (&'a str, PathBuf)>>(pairs: I) -> Controllers {
        let mut c = Controllers::default();
        for (name, mount) in pairs {
            c.add(name, mount);
        }
        c
    }
}

/// The v2 controllers podrun uses, enabled in subtree_control along a cgroup's path.
pub const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// The name `Hierarchy::dirs` gives a hybrid host's cgroup2 mount.
pub const UNIFIED: &str = "unified";

/// /proc/self/mountinfo could not tell this host's hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("read /proc/self/mountinfo")]
    Read(#[source] std::io::Error),
    #[error("no cgroup hierarchy found in /proc/self/mountinfo")]
    NoHierarchy,
}

/// Works out the hierarchy from /proc/self/mountinfo: fields are `id parent major:minor
/// root mountpoint options [optional...] - fstype source superoptions`. None: no cgroup
/// mount at all.
pub fn detect(mountinfo: &str) -> Option<Hierarchy> {
    let mut v2 = Vec::new();
    let mut controllers = Controllers::default();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype), Some(opts)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        let mount = PathBuf::from(String::from_utf8_lossy(&unescape_mountinfo(mount.as_bytes())).into_owned());
        match *fstype {
            "cgroup2" => v2.push(mount),
            "cgroup" => {
                for o in opts.split(',') {
                    controllers.add(o, mount.clone());
                }
            }
            _ => {}
        }
    }
    if controllers.is_empty() {
        return v2.into_iter().next().map(|mount| Hierarchy::V2 { mount });
    }
    Some(Hierarchy::V1 { controllers, unified: v2.into_iter().next() })
}

/// Undoes /proc/self/mountinfo's escapes of space, tab, newline and backslash (`\ooo`).
pub fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

impl Hierarchy {
    /// This host's hierarchy, from /proc/self/mountinfo, read once per process (podrun
    /// asks on every start and removal; the answer does not change while it runs). The
    /// view never asks: podrun tells it (its command line).
    pub fn host() -> Result<Hierarchy, HostError> {
        static HOST: std::sync::OnceLock<Hierarchy> = std::sync::OnceLock::new();
        if let Some(h) = HOST.get() {
            return Ok(h.clone());
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(HostError::Read)?;
        let h = detect(&text).ok_or(HostError::NoHierarchy)?;
        Ok(HOST.get_or_init(|| h).clone())
    }

    /// The directories holding cgroup `path`: one on v2; on v1 one per distinct mount of
    /// podrun's controllers, and on a hybrid host the cgroup2 mount's (named UNIFIED).
    pub fn dirs(&self, path: &str) -> Vec<(Option<&str>, PathBuf)> {
        let rel = path.trim_start_matches('/');
        match self {
            Hierarchy::V2 { mount } => vec![(None, mount.join(rel))],
            Hierarchy::V1 { controllers, unified } => {
                let mut out: Vec<(Option<&str>, PathBuf)> = Vec::new();
                for (name, mount) in controllers.iter() {
                    let d = mount.join(rel);
                    if !out.iter().any(|(_, o)| *o == d) {
                        out.push((Some(name), d));
                    }
                }
                if let Some(u) = unified {
                    out.push((Some(UNIFIED), u.join(rel)));
                }
                out
            }
        }
    }

    /// Where `controller` (or UNIFIED) is mounted: the cgroup2 mount on v2, else its own
    /// v1 hierarchy; None where this host has none.
    pub fn mount_of(&self, controller: &str) -> Option<&Path> {
        match self {
            Hierarchy::V2 { mount } => Some(mount),
            Hierarchy::V1 { unified, .. } if controller == UNIFIED => unified.as_deref(),
            Hierarchy::V1 { controllers, .. } => controllers.get(controller),
        }
    }

    /// The directory of cgroup `path` in `controller`'s hierarchy.
    pub fn dir_of(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.mount_of(controller).map(|m| m.join(path.trim_start_matches('/')))
    }

    /// The cgroup2 mount, where the kernel keeps pressure (PSI): pure v2's, or a hybrid
    /// host's controller-less one.
    pub fn cgroup2(&self) -> Option<&Path> {
        self.mount_of(UNIFIED)
    }
}

/// A process's cgroup in each hierarchy: its v2 path (`0::`), and its path per v1
/// controller (each may differ). Paths are as /proc/<pid>/cgroup gives them: relative to
/// the reader's cgroup namespace (the view's and podrun's are the host's).
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    v2: Option<String>,
    v1: Vec<(String, String)>,
}

impl Cgroups {
    /// From /proc/<pid>/cgroup's text.
    pub fn parse(text: &str) -> Cgroups {
        let mut c = Cgroups::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => continue,
            };
            if ctrls.is_empty() {
                c.v2 = Some(path.to_owned());
            } else {
                for n in ctrls.split(',') {
                    c.v1.push((n.to_owned(), path.to_owned()));
                }
            }
        }
        c
    }

    /// The same path in every hierarchy, as podrun makes a container's.
    pub fn at(path: &str) -> Cgroups {
        let v1 = V1_CONTROLLERS.iter().map(|n| (n.to_string(), path.to_owned())).collect();
        Cgroups { v2: Some(path.to_owned()), v1 }
    }

    /// The cgroup2 path (on a hybrid host, in the controller-less mount).
    pub fn v2_path(&self) -> Option<&str> {
        self.v2.as_deref()
    }

    pub fn v1_path(&self, controller: &str) -> Option<&str> {
        self.v1.iter().find(|(n, _)| n == controller).map(|(_, p)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development VM: v1 controllers (cpu and cpuacct apart) plus an empty cgroup2.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
38 31 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    /// A systemd host: one cgroup2 mount.
    const PURE_V2: &str = "\
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    /// Debian's older layout: cpu and cpuacct co-mounted.
    const COMOUNTED: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn detect_tells_pure_v2_from_hybrid_and_v1() {
        assert_eq!(detect(PURE_V2).unwrap(), Hierarchy::V2 { mount: "/sys/fs/cgroup".into() });
        let Hierarchy::V1 { controllers, unified } = detect(HYBRID).unwrap() else { panic!("not v1") };
        assert_eq!(controllers.get("cpu"), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(controllers.get("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpuacct")));
        assert_eq!(controllers.get("name=systemd"), None);
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let Hierarchy::V1 { controllers, unified } = detect(COMOUNTED).unwrap() else { panic!("not v1") };
        assert_eq!(controllers.get("cpu"), controllers.get("cpuacct"));
        assert_eq!(unified, None);
        assert_eq!(detect(""), None);
    }

    #[test]
    fn each_controller_is_found_in_its_own_hierarchy_and_pressure_in_cgroup2() {
        let hybrid = detect(HYBRID).unwrap();
        assert_eq!(hybrid.dir_of("memory", "/pod/c1"), Some(PathBuf::from("/sys/fs/cgroup/memory/pod/c1")));
        assert_eq!(hybrid.dir_of(UNIFIED, "/pod/c1"), Some(PathBuf::from("/sys/fs/cgroup/unified/pod/c1")));
        assert_eq!(hybrid.mount_of("blkio"), None, "a controller the host does not mount");
        assert_eq!(hybrid.cgroup2(), Some(Path::new("/sys/fs/cgroup/unified")));
        let dirs: Vec<Option<&str>> = hybrid.dirs("/pod").into_iter().map(|(c, _)| c).collect();
        assert_eq!(dirs, [Some("cpu"), Some("cpuacct"), Some("cpuset"), Some("memory"), Some("pids"), Some(UNIFIED)]);
        assert_eq!(detect(COMOUNTED).unwrap().dirs("/pod").len(), 2, "one directory per mount");
        let v2 = detect(PURE_V2).unwrap();
        assert_eq!(v2.dirs("/pod/c1"), [(None, PathBuf::from("/sys/fs/cgroup/pod/c1"))]);
        assert_eq!((v2.mount_of("blkio"), v2.cgroup2()), (Some(Path::new("/sys/fs/cgroup")), v2.mount_of(UNIFIED)));
        assert_eq!((Hierarchy::default().mount_of("memory"), Hierarchy::default().cgroup2()), (None, None));
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain".to_vec());
    }

    #[test]
    fn a_readers_cgroups_are_its_path_in_each_hierarchy() {
        // A hybrid host: v1 controllers (some mounted together), a named hierarchy, and
        // the controller-less cgroup2 line.
        let hybrid = "12:memory:/podrun/pod/c1\n11:cpu,cpuacct:/podrun/pod/c1\n5:cpuset:/other\n\
                      1:name=systemd:/user.slice\n0::/podrun/pod/c1\n";
        let c = Cgroups::parse(hybrid);
        assert_eq!(c.v2.as_deref(), Some("/podrun/pod/c1"));
        assert_eq!(
            (c.v1_path("memory"), c.v1_path("cpu"), c.v1_path("cpuacct")),
            (Some("/podrun/pod/c1"), Some("/podrun/pod/c1"), Some("/podrun/pod/c1"))
        );
        assert_eq!(c.v1_path("cpuset"), Some("/other"), "each controller at its own path");
        assert_eq!(c.v1_path("blkio"), None, "a controller the host does not mount");
        assert_eq!(c.v1_path("name=systemd"), Some("/user.slice"));
        // Pure v2; a cgroup's name may hold a colon; lines that are not "id:controllers:path" are skipped.
        let c = Cgroups::parse("garbage\n\n0::/pod/we:ird\n");
        assert_eq!((c.v2.as_deref(), c.v1.len()), (Some("/pod/we:ird"), 0));
        let none = Cgroups::parse("");
        assert_eq!((none.v2, none.v1.len()), (None, 0), "no text: no cgroups (the host's numbers)");
        let c = Cgroups::at("/podrun/pod/c2");
        for ctrl in ["memory", "cpu", "cpuacct", "cpuset", "blkio"] {
            assert_eq!(c.v1_path(ctrl), Some("/podrun/pod/c2"), "{ctrl}");
        }
        assert_eq!(c.v2.as_deref(), Some("/podrun/pod/c2"));
    }
}
