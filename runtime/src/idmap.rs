//! User namespaces: id maps (`C:H:N`), the pool podrun gives pods their host id ranges
//! from, making a user namespace from maps, and entering one as its root.
//!
//! The pool is the `podrun` entries of /etc/subuid and /etc/subgid (as podman's `containers`
//! user); without any, host ids 2^31 to 2^31 + 2^30. It is cut into slots of 65,536 ids; a
//! sandbox (or lone container) with `--userns=auto` gets the first free slot, recorded in
//! `<root>/userns/table.json` under a flock of that directory, and returned on removal. A
//! record whose owner's state directory is gone (a start that was killed) is dropped at the
//! next allocation. Explicit `--uidmap` ranges are recorded too, so auto never hands them out,
//! and may not overlap any recorded range.
//!
//! Never chowns anything but a container's own upper and work directories (overlay.rs):
//! image layers are shared between pods through idmapped mounts.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

/// Ids a pod gets with --userns=auto: container ids 0..65535, as in Kubernetes.
pub const SLOT: u32 = 65536;
/// The pool when /etc/subuid (or subgid) names no `podrun` range.
pub const DEFAULT_POOL: (u32, u32) = (1 << 31, 1 << 30);
/// The kernel takes at most 340 lines in a uid_map (user_namespaces(7)).
const MAX_LINES: usize = 340;

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("invalid id map {0:?}: use CONTAINER:HOST:SIZE, e.g. 0:100000:65536")]
    Bad(String),
    #[error("{0}")]
    Invalid(String),
    #[error("user namespace mode {0:?} is not auto or host")]
    BadMode(String),
    #[error("explicit id maps cannot be combined with user namespace mode {0}")]
    Conflict(String),
    #[error("no free id range of {SLOT} in the pool ({0})")]
    Exhausted(String),
    #[error("host {kind}s {start}-{end} are in use by {owner}")]
    Overlap { kind: &'static str, start: u64, end: u64, owner: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("creating the user namespace: {0}")]
    Create(Errno),
}

/// One line of a uid_map or gid_map: `size` ids from `container` on map to `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdRange {
    pub fn parse(s: &str) -> Result<IdRange, IdMapError> {
        let bad = || IdMapError::Bad(s.to_owned());
        let mut f = s.split(':').map(|p| p.parse::<u32>().map_err(|_| bad()));
        let r = IdRange {
            container: f.next().ok_or_else(bad)??,
            host: f.next().ok_or_else(bad)??,
            size: f.next().ok_or_else(bad)??,
        };
        if f.next().is_some() || r.size == 0 {
            return Err(bad());
        }
        // u32::MAX (-1) is never a valid id.
        if r.container as u64 + r.size as u64 > u32::MAX as u64 || r.host as u64 + r.size as u64 > u32::MAX as u64 {
            return Err(IdMapError::Invalid(format!(
                "id map {s}: the range goes past the largest id ({})",
                u32::MAX - 1
            )));
        }
        Ok(r)
    }

    fn end(&self) -> u64 {
        self.host as u64 + self.size as u64
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// A user namespace's maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uid: Vec<IdRange>,
    pub gid: Vec<IdRange>,
    /// Allocated by podrun (--userns=auto), not given by the user.
    #[serde(default)]
    pub auto: bool,
}

impl IdMaps {
    /// The maps as the kernel takes them (one write of every line).
    pub fn text(ranges: &[IdRange]) -> String {
        ranges.iter().map(|r| format!("{} {} {}\n", r.container, r.host, r.size)).collect()
    }

    /// The host ids container root runs as.
    pub fn root(&self) -> (u32, u32) {
        let host0 = |v: &[IdRange]| v.iter().find(|r| r.container == 0).map_or(0, |r| r.host);
        (host0(&self.uid), host0(&self.gid))
    }

    fn check(&self) -> Result<(), IdMapError> {
        for (kind, v) in [("uid", &self.uid), ("gid", &self.gid)] {
            if v.len() > MAX_LINES {
                return Err(IdMapError::Invalid(format!(
                    "{} {kind} ranges: the kernel takes at most {MAX_LINES}",
                    v.len()
                )));
            }
            if !v.iter().any(|r| r.container == 0) {
                return Err(IdMapError::Invalid(format!(
                    "the {kind} map does not map container {kind} 0 (root): add a range starting at 0, e.g. 0:100000:65536"
                )));
            }
            for (i, a) in v.iter().enumerate() {
                for b in &v[i + 1..] {
                    let c = |r: &IdRange| (r.container as u64, r.container as u64 + r.size as u64);
                    let (h, hb) = ((a.host as u64, a.end()), (b.host as u64, b.end()));
                    if overlaps(c(a), c(b)) || overlaps(h, hb) {
                        return Err(IdMapError::Invalid(format!("{kind} ranges {a} and {b} overlap")));
                    }
                }
            }
        }
        Ok(())
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// What `--userns`, `--uidmap` and `--gidmap` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UsernsMode {
    /// The host's user namespace: container root is host root (the default).
    #[default]
    Host,
    /// A range from the pool.
    Auto,
    /// The user's maps.
    Maps(IdMaps),
}

impl UsernsMode {
    /// podman's rules: a gid map defaults to the uid map, and the other way round.
    pub fn parse(userns: Option<&str>, uidmap: &[String], gidmap: &[String]) -> Result<UsernsMode, IdMapError> {
        let parse = |v: &[String]| v.iter().map(|s| IdRange::parse(s)).collect::<Result<Vec<_>, _>>();
        let (uid, gid) = (parse(uidmap)?, parse(gidmap)?);
        let explicit = !uid.is_empty() || !gid.is_empty();
        match userns {
            Some("host") | None if !explicit => Ok(UsernsMode::Host),
            Some("auto") if !explicit => Ok(UsernsMode::Auto),
            None => {
                let maps = IdMaps {
                    uid: if uid.is_empty() { gid.clone() } else { uid.clone() },
                    gid: if gid.is_empty() { uid } else { gid },
                    auto: false,
                };
                maps.check()?;
                Ok(UsernsMode::Maps(maps))
            }
            Some(m @ ("host" | "auto")) => Err(IdMapError::Conflict(m.to_owned())),
            Some(m) => Err(IdMapError::BadMode(m.to_owned())),
        }
    }
}

/// Where ids come from: (start, count) ranges of host uids and gids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub uid: Vec<(u32, u32)>,
    pub gid: Vec<(u32, u32)>,
}

/// The `podrun:START:COUNT` lines of a subuid/subgid file (a missing file has none).
fn subid_ranges(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            if f.next() != Some("podrun") {
                return None;
            }
            let start = f.next()?.parse::<u32>().ok()?;
            let count = f.next()?.parse::<u32>().ok()?;
            (start as u64 + count as u64 <= u32::MAX as u64).then_some((start, count))
        })
        .collect()
}

impl Default for Pool {
    /// The default pool, for both.
    fn default() -> Pool {
        Pool { uid: vec![DEFAULT_POOL], gid: vec![DEFAULT_POOL] }
    }
}

impl Pool {
    pub fn load(subuid: &Path, subgid: &Path) -> Pool {
        let read = |p: &Path| {
            let v = subid_ranges(&std::fs::read_to_string(p).unwrap_or_default());
            if v.is_empty() {
                vec![DEFAULT_POOL]
            } else {
                v
            }
        };
        Pool { uid: read(subuid), gid: read(subgid) }
    }

    /// The host start of every slot of `ranges`, in order.
    fn slots(ranges: &[(u32, u32)]) -> Vec<u32> {
        ranges.iter().flat_map(|&(start, count)| (0..count / SLOT).map(move |k| start + k * SLOT)).collect()
    }

    fn describe(&self) -> String {
        let r = |v: &[(u32, u32)]| v.iter().map(|(s, c)| format!("{s}+{c}")).collect::<Vec<_>>().join(",");
        format!("uids {}, gids {}", r(&self.uid), r(&self.gid))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Allocation {
    /// `sandbox/NAME` or `container/ID`.
    owner: String,
    maps: IdMaps,
}

const TABLE: &str = "table.json";

/// The maps for `mode` (None for the host's namespace), recorded for `owner` in the table
/// under `dir` (`<root>/userns`). `live` says whether an owner still exists.
pub fn allocate(
    dir: &Path,
    owner: &str,
    mode: &UsernsMode,
    pool: &Pool,
    live: impl Fn(&str) -> bool,
) -> Result<Option<IdMaps>, IdMapError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IdMapError::Io { path, source }
    };
    if *mode == UsernsMode::Host {
        return Ok(None);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _lock = crate::record::lock(dir).map_err(io(dir))?;
    let mut table: Vec<Allocation> = match crate::record::read_json(&dir.join(TABLE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&dir.join(TABLE))(e)),
    };
    table.retain(|a| a.owner != owner && live(&a.owner));
    let taken = |kind: &'static str, lo: u64, hi: u64| -> Result<(), IdMapError> {
        for a in &table {
            let v = if kind == "uid" { &a.maps.uid } else { &a.maps.gid };
            if let Some(r) = v.iter().find(|r| overlaps((r.host as u64, r.end()), (lo, hi))) {
                return Err(IdMapError::Overlap {
                    kind,
                    start: r.host as u64,
                    end: r.end() - 1,
                    owner: a.owner.clone(),
                });
            }
        }
        Ok(())
    };
    let maps = match mode {
        UsernsMode::Host => return Ok(None),
        UsernsMode::Maps(m) => {
            for (kind, v) in [("uid", &m.uid), ("gid", &m.gid)] {
                for r in v {
                    taken(kind, r.host as u64, r.end())?;
                }
            }
            m.clone()
        }
        UsernsMode::Auto => {
            let free = |kind: &'static str, ranges: &[(u32, u32)]| {
                Pool::slots(ranges).into_iter().find(|&h| taken(kind, h as u64, h as u64 + SLOT as u64).is_ok())
            };
            let (Some(u), Some(g)) = (free("uid", &pool.uid), free("gid", &pool.gid)) else {
                return Err(IdMapError::Exhausted(pool.describe()));
            };
            IdMaps {
                uid: vec![IdRange { container: 0, host: u, size: SLOT }],
                gid: vec![IdRange { container: 0, host: g, size: SLOT }],
                auto: true,
            }
        }
    };
    table.push(Allocation { owner: owner.to_owned(), maps: maps.clone() });
    crate::record::write_json(dir, TABLE, &table).map_err(io(&dir.join(TABLE)))?;
    Ok(Some(maps))
}

/// Returns `owner`'s ranges to the pool (nothing to do when it has none).
pub fn release(dir: &Path, owner: &str) {
    let Ok(_lock) = crate::record::lock(dir) else { return };
    let Ok(mut table) = crate::record::read_json::<Vec<Allocation>>(&dir.join(TABLE)) else { return };
    let before = table.len();
    table.retain(|a| a.owner != owner);
    if table.len() != before {
        let _ = crate::record::write_json(dir, TABLE, &table);
    }
}

/// A new user namespace with `maps`, as an nsfs descriptor: a helper is cloned straight
/// into it (so it needs no signal that it is there), its maps are written from here (the
/// parent namespace, with CAP_SETUID and CAP_SETGID: setgroups stays allowed inside), its
/// namespace opened, and it is let go. The namespace lives as long as the descriptor or a
/// process in it.
pub fn create_userns(maps: &IdMaps) -> Result<OwnedFd, IdMapError> {
    let fail = IdMapError::Create;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail)?;
    // SAFETY: a raw clone without CLONE_VM is a fork: the child gets a copy of this
    // single-threaded process, only reads its pipe and _exits (no allocation, no locks).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        drop(wr);
        let mut b = [0u8; 1];
        // SAFETY: reads into a live one-byte buffer; returns at end of file.
        unsafe {
            libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0)
        }
    }
    drop(rd);
    let pid = Errno::result(pid).map_err(fail)? as i32;
    let made = (|| {
        for (file, v) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
            std::fs::write(format!("/proc/{pid}/{file}"), IdMaps::text(v))
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        }
        nix::fcntl::open(
            format!("/proc/{pid}/ns/user").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
    })();
    drop(wr);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    made.map_err(fail)
}

/// The user namespace of a running process (pause), checked to still be that process.
pub fn userns_of(p: &crate::proc::ProcRef) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        format!("/proc/{}/ns/user", p.pid).as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // Opened, then checked: a pid reused in between fails the start-time check.
    if !p.alive() {
        return Err(Errno::ESRCH);
    }
    Ok(fd)
}

/// In a user namespace just entered (setns): become its root. The ids were the host's
/// root, which the namespace does not map, so files made from here on would belong to no
/// one inside (or fail with EOVERFLOW); the supplementary groups were the host's.
///
/// Until then the caller is still host uid 0 for permission checks: it may look up paths
/// in podrun's own directories (the host root's, mode 0700), which the namespace's root
/// cannot (its capabilities cover only files whose owners it maps). Callers open those
/// first, after unsharing their mount namespace (a descriptor opened before names a mount
/// of the old one, where nothing can be attached).
pub fn become_root() -> Result<(), Errno> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())?;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())?;
    // A change of ids resets "dumpable" to fs.suid_dumpable, which a host may have set to
    // 1: then the container's root, now the same uid, could ptrace this podrun stage or
    // open its /proc/PID/exe (CVE-2019-5736). Not dumpable again.
    crate::proc::set_non_dumpable();
    Ok(())
}

/// Enters the user namespace `ns` (then `become_root`, see there).
pub fn enter(ns: BorrowedFd<'_>) -> Result<(), Errno> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn modes_follow_podmans_flags() {
        assert_eq!(UsernsMode::parse(None, &[], &[]).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("host"), &[], &[]).unwrap(), UsernsMode::Host);
        assert_eq!(UsernsMode::parse(Some("auto"), &[], &[]).unwrap(), UsernsMode::Auto);
        let UsernsMode::Maps(m) = UsernsMode::parse(None, &s(&["0:100000:65536"]), &[]).unwrap() else { panic!() };
        assert_eq!(m.gid, m.uid);
        assert_eq!(m.root(), (100000, 100000));
        let UsernsMode::Maps(m) =
            UsernsMode::parse(None, &s(&["0:100000:1000", "1000:1000:1"]), &s(&["0:200000:65536"])).unwrap()
        else {
            panic!()
        };
        assert_eq!((m.uid.len(), m.root()), (2, (100000, 200000)));
        assert_eq!(IdMaps::text(&m.uid), "0 100000 1000\n1000 1000 1\n");
        for (mode, u) in [(Some("auto"), "0:1:1"), (Some("host"), "0:1:1")] {
            assert!(matches!(UsernsMode::parse(mode, &s(&[u]), &[]), Err(IdMapError::Conflict(_))));
        }
        assert!(matches!(UsernsMode::parse(Some("private"), &[], &[]), Err(IdMapError::BadMode(_))));
        for bad in ["0:1", "0:1:0", "a:1:1", "0:1:1:1", "-1:1:1", "0:4294967295:1", "1:2:3 "] {
            assert!(UsernsMode::parse(None, &s(&[bad]), &[]).is_err(), "{bad}");
        }
        // Root unmapped, or ranges that overlap on either side.
        for bad in [&["1:100000:10"][..], &["0:100000:10", "5:200000:10"], &["0:100000:10", "20:100005:10"]] {
            assert!(matches!(UsernsMode::parse(None, &s(bad), &[]), Err(IdMapError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn pool_takes_podruns_subid_lines_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&u, "alice:100000:65536\npodrun:300000:131072\npodrun:bad\npodrun:900000:65535\n").unwrap();
        let p = Pool::load(&u, &g);
        assert_eq!(p.uid, vec![(300000, 131072), (900000, 65535)]);
        assert_eq!(p.gid, vec![DEFAULT_POOL]);
        // The short range holds no slot.
        assert_eq!(Pool::slots(&p.uid), vec![300000, 365536]);
    }

    #[test]
    fn auto_ranges_never_overlap_and_come_back_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("userns");
        let pool = Pool { uid: vec![(100000, 3 * SLOT)], gid: vec![(500000, 2 * SLOT)] };
        let all = |_: &str| true;
        let a = allocate(&t, "sandbox/a", &UsernsMode::Auto, &pool, all).unwrap().unwrap();
        let b = allocate(&t, "sandbox/b", &UsernsMode::Auto, &pool, all).unwrap().unwrap();
        assert_eq!((a.root(), b.root()), ((100000, 500000), (165536, 565536)));
        assert!(a.auto);
        // Two gid slots only: the third pod finds none.
        assert!(matches!(allocate(&t, "sandbox/c", &UsernsMode::Auto, &pool, all), Err(IdMapError::Exhausted(_))));
        release(&t, "sandbox/a");
        let c = allocate(&t, "sandbox/c", &UsernsMode::Auto, &pool, all).unwrap().unwrap();
        assert_eq!(c.root(), (100000, 500000));
        // An explicit map may not overlap a recorded one; auto skips explicit ones.
        let m = |u: &str| UsernsMode::parse(None, &s(&[u]), &s(&["0:900000:10"])).unwrap();
        let e = allocate(&t, "sandbox/d", &m("0:170000:10"), &pool, all).unwrap_err();
        assert!(matches!(&e, IdMapError::Overlap { owner, .. } if owner == "sandbox/b"), "{e}");
        assert!(allocate(&t, "sandbox/d", &m("0:100000:10"), &pool, all).is_err());
        release(&t, "sandbox/c");
        allocate(&t, "sandbox/d", &m("0:100000:10"), &pool, all).unwrap();
        let f = allocate(&t, "sandbox/f", &UsernsMode::Auto, &pool, all).unwrap().unwrap();
        assert_eq!(f.root(), (231072, 500000), "the slot that holds d's uids is skipped");
        // An owner that is gone gives its range back at the next allocation.
        let only_d = |o: &str| o == "sandbox/d";
        let g = allocate(&t, "sandbox/g", &UsernsMode::Auto, &pool, only_d).unwrap().unwrap();
        assert_eq!(g.root(), (165536, 500000));
        assert_eq!(allocate(&t, "x", &UsernsMode::Host, &pool, all).unwrap(), None);
    }
}
