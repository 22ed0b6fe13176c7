//! The last steps before a container process runs: who it runs as, what it may do, where,
//! and which file it runs. Order (runc's): bounding set first, seccomp, then groups/gid/uid, then the
//! remaining capability sets, no_new_privs, cwd, mark every fd close-on-exec
//! (CVE-2024-21626: no host fd or cwd may reach the workload), then execve.
//!
//! `identity` runs in podrun before any fork; everything else in the init (or exec) stage.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability as Cap, CapsHashSet};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::Process;

use crate::spec::Identity;
use crate::sync::Stage;
use crate::sync::StageError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("invalid user {0:?}: use NAME, UID, NAME:GROUP or UID:GID")]
    Bad(String),
    #[error("user {0:?} is not in the image's /etc/passwd")]
    NoUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    NoGroup(String),
}

/// Reads `path` from the top-most layer that has it as a regular file. Opened with
/// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: an image's symlink must not make podrun read a
/// host file.
fn read_from_layers(lowers: &[PathBuf], path: &str) -> Option<String> {
    for layer in lowers {
        let Ok(dir) = std::fs::File::open(layer) else { continue };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        if let Ok(fd) = openat2(&dir, path, how) {
            let f = std::fs::File::from(fd);
            if f.metadata().is_ok_and(|m| m.is_file()) {
                let mut s = String::new();
                return std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 20), &mut s).ok().map(|_| s);
            }
        }
    }
    None
}

/// Resolves `user` (`NAME`, `UID`, with `:GROUP` or `:GID`) against the image's
/// /etc/passwd and /etc/group, as docker does: a numeric uid needs no entry; a user's
/// supplementary groups are the groups listing it.
pub fn identity(user: Option<&str>, lowers: &[PathBuf]) -> Result<Identity, UserError> {
    let spec = user.unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g == Some("") {
        return Err(UserError::Bad(spec.to_owned()));
    }
    let passwd = read_from_layers(lowers, "etc/passwd").unwrap_or_default();
    let group = read_from_layers(lowers, "etc/group").unwrap_or_default();
    // name:x:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let (uid, mut gid, name, home) = match (u.parse::<u32>(), &entry) {
        (_, Some(f)) => (
            f[2].parse().map_err(|_| UserError::Bad(spec.into()))?,
            f[3].parse().unwrap_or(0),
            Some(f[0]),
            Some(f[5].to_owned()),
        ),
        (Ok(uid), None) => (uid, 0, None, None),
        (Err(_), None) => return Err(UserError::NoUser(u.to_owned())),
    };
    let groups: Vec<Vec<&str>> =
        group.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.to_owned()))?,
        };
    }
    let mut extra: Vec<u32> = match name {
        Some(n) => {
            groups.iter().filter(|f| f[3].split(',').any(|m| m == n)).filter_map(|f| f[2].parse().ok()).collect()
        }
        None => Vec::new(),
    };
    extra.retain(|&x| x != gid);
    extra.dedup();
    Ok(Identity { uid, gid, groups: extra, home })
}

fn caps_of(names: Option<&HashSet<oci_spec::runtime::Capability>>) -> CapsHashSet {
    names
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().and_then(|s| s.parse::<Cap>().ok()))
        .collect()
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The spec's process.rlimits, each set as asked (raising a hard limit needs
/// CAP_SYS_RESOURCE: refused then, with the limit named).
fn set_rlimits(p: &Process) -> Result<(), StageError> {
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let name = serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let resource = match name.as_str() {
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_CPU" => libc::RLIMIT_CPU,
            "RLIMIT_DATA" => libc::RLIMIT_DATA,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => libc::RLIMIT_NICE,
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_RSS" => libc::RLIMIT_RSS,
            "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
            "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            _ => {
                return Err(StageError::new(
                    Stage::Process,
                    Errno::EINVAL,
                    format!("process.rlimits[{i}]: unknown type {name:?}"),
                ))
            }
        };
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: setrlimit with a valid resource and a pointer to a filled rlimit.
        Errno::result(unsafe { libc::setrlimit(resource, &lim) }).map_err(|e| {
            StageError::new(
                Stage::Process,
                e,
                format!(
                    "process.rlimits[{i}]: set {name} to soft {} hard {} (raising a hard limit needs CAP_SYS_RESOURCE)",
                    r.soft(),
                    r.hard()
                ),
            )
        })?;
    }
    Ok(())
}

/// Identity, capabilities, seccomp, no_new_privs and cwd for the workload (STYLE: exec.rs
/// order).
pub fn setup_process(p: &Process, seccomp: Option<&crate::seccomp::Filter>) -> Result<(), StageError> {
    const STAGE: Stage = Stage::Process;
    if let Some(list) = p.exec_cpu_affinity().as_ref().and_then(|a| a.cpu_affinity_final().as_deref()) {
        let mut set = nix::sched::CpuSet::new();
        for cpu in podrun_cgroup::parse_cpulist(list).unwrap_or_default() {
            set.set(cpu as usize).map_err(StageError::at(STAGE, format!("CPU {cpu} in {list}")))?;
        }
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(StageError::at(STAGE, format!("set CPU affinity {list}")))?;
    }
    let caps = p.capabilities().as_ref();
    let bounding = caps_of(caps.and_then(|c| c.bounding().as_ref()));
    for c in caps::all() {
        if !bounding.contains(&c) {
            // A cap this kernel does not know gives EINVAL: nothing to drop.
            match caps::drop(None, CapSet::Bounding, c) {
                Ok(()) => {}
                Err(e) if e.to_string().contains("Invalid argument") => {}
                Err(e) => {
                    return Err(StageError {
                        stage: STAGE,
                        errno: Errno::EPERM,
                        message: format!("drop {c} from the bounding set: {e}"),
                    })
                }
            }
        }
    }
    // While CAP_SYS_ADMIN is still effective: a filter may be installed without
    // no_new_privs, which the spec may not ask for. Every call below is one a filter allows.
    if let Some(f) = seccomp {
        f.install()?;
    }
    set_rlimits(p)?;
    if let Some(adj) = p.oom_score_adj() {
        // Raising it needs nothing; lowering it below the parent's needs CAP_SYS_RESOURCE.
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            StageError::new(STAGE, errno_of(&e), format!("process.oomScoreAdj {adj}: write /proc/self/oom_score_adj"))
        })?;
    }
    let user = p.user();
    if let Some(mask) = user.umask() {
        // SAFETY: umask(2) takes a mode and cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    let groups: Vec<Gid> =
        user.additional_gids().as_deref().unwrap_or_default().iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&groups).map_err(StageError::at(STAGE, "setgroups"))?;
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    // Capabilities survive the change to another uid (as runc keeps them), so the spec's
    // sets are its process's whatever its user: an engine that wants a non-root user
    // without capabilities says so in the spec (spec.rs does, as docker).
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
        .map_err(StageError::at(STAGE, "keep capabilities"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(StageError::at(STAGE, format!("setgid {gid}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(StageError::at(STAGE, format!("setuid {uid}")))?;
    for (set, names) in [
        (CapSet::Effective, caps.and_then(|c| c.effective().as_ref())),
        (CapSet::Permitted, caps.and_then(|c| c.permitted().as_ref())),
        (CapSet::Inheritable, caps.and_then(|c| c.inheritable().as_ref())),
    ] {
        caps::set(None, set, &caps_of(names)).map_err(|e| StageError {
            stage: STAGE,
            errno: Errno::EPERM,
            message: format!("set capabilities ({set:?}): {e}"),
        })?;
    }
    // Ambient ones only where permitted and inheritable allow, each on its own, as runc
    // and crun do (their own default specs list ambient capabilities without inheritable
    // ones: those are skipped, not an error).
    for cap in caps_of(caps.and_then(|c| c.ambient().as_ref())) {
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    if p.no_new_privileges().unwrap_or(true) {
        // SAFETY: prctl with integer arguments.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
            .map_err(StageError::at(STAGE, "no_new_privs"))?;
    }
    let cwd = p.cwd();
    if !cwd.is_absolute() {
        return Err(StageError::new(
            STAGE,
            Errno::EINVAL,
            format!("working directory {} is not absolute", cwd.display()),
        ));
    }
    if let Err(e) = nix::unistd::chdir(cwd) {
        // docker creates a missing WORKDIR.
        if e == Errno::ENOENT && std::fs::create_dir_all(cwd).is_ok() {
            nix::unistd::chdir(cwd).map_err(StageError::at(STAGE, format!("chdir {}", cwd.display())))?;
        } else {
            return Err(StageError::new(STAGE, e, format!("chdir {}", cwd.display())));
        }
    }
    // CVE-2024-21626: the cwd must be inside the container's root. getcwd(2) says
    // "(unreachable)" for a directory outside it.
    match nix::unistd::getcwd() {
        Ok(d) if d.is_absolute() => Ok(()),
        _ => Err(StageError::new(
            STAGE,
            Errno::ENOENT,
            format!("working directory {} is outside the container", cwd.display()),
        )),
    }
}

/// Finds `arg0` as a shell would: a path when it has a '/', else the first executable
/// regular file in the container's PATH.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, StageError> {
    let not_found = || StageError {
        stage: Stage::Exec,
        errno: Errno::ENOENT,
        message: format!("exec: \"{arg0}\": executable file not found in $PATH"),
    };
    if arg0.contains('/') {
        return if Path::new(arg0).exists() {
            Ok(arg0.into())
        } else {
            Err(StageError {
                stage: Stage::Exec,
                errno: Errno::ENOENT,
                message: format!("exec: \"{arg0}\": no such file or directory"),
            })
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&cand) {
            if m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(not_found())
}

/// Marks every fd from 3 up close-on-exec: only stdio crosses into the workload.
pub fn close_fds_on_exec(keep: u32) -> Result<(), StageError> {
    // The caller's descriptors 3 to 3+keep-1 (runc's --preserve-fds) go to the workload:
    // they were inherited there, below anything podrun opened itself.
    for fd in 3..3 + keep {
        // SAFETY: clearing FD_CLOEXEC on a descriptor number; EBADF if it is not open.
        if unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) } != 0 {
            return Err(StageError::new(
                Stage::Process,
                Errno::last(),
                format!("--preserve-fds: descriptor {fd} is not open"),
            ));
        }
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3 + keep, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    Errno::result(rc).map(drop).map_err(StageError::at(Stage::Process, "close_range"))
}

/// Replaces this process with the workload; returns only on failure. The workload is
/// exec'd through the embedded `podrun-exec` trampoline (a sealed memfd): when the
/// container's file runs, /proc/self/exe is that memfd, never podrun's binary on the host,
/// so a `#!/proc/self/exe` workload cannot reach podrun (CVE-2019-5736). Up to here this
/// process is not dumpable, so nothing in the container can open its /proc/<pid>/exe.
pub fn execve(file: &Path, args: &[String], env: &[String]) -> StageError {
    let cs = |s: &[u8]| CString::new(s).unwrap_or_default();
    let mut argv: Vec<CString> = vec![cs(b"podrun-exec"), cs(file.as_os_str().as_bytes())];
    argv.extend(args.iter().map(|a| cs(a.as_bytes())));
    let envp: Vec<CString> = env.iter().map(|e| cs(e.as_bytes())).collect();
    let helper = match crate::pause::pause_memfd() {
        Ok(fd) => fd,
        Err(e) => return StageError::new(Stage::Exec, e, "create the exec trampoline"),
    };
    let errno = nix::unistd::execveat(&helper, c"", &argv, &envp, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .err()
        .unwrap_or(Errno::EINVAL);
    StageError { stage: Stage::Exec, errno, message: format!("exec: \"{}\": {}", file.display(), errno.desc()) }
}

/// Checks that `file` can be executed before handing it to the trampoline, so the common
/// failures are reported with a clear message and the shell's exit code (126).
pub fn check_executable(file: &Path) -> Result<(), StageError> {
    let c = CString::new(file.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: access(2) with a NUL-terminated path. X_OK with the effective ids (AT_EACCESS).
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
    let meta = std::fs::metadata(file);
    if rc != 0 || meta.as_ref().map_or(true, |m| !m.is_file()) {
        return Err(StageError {
            stage: Stage::Exec,
            errno: Errno::EACCES,
            message: format!("exec: \"{}\": permission denied", file.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(passwd: &str, group: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(d.path().join("etc/group"), group).unwrap();
        d
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nweb:x:500:www,other\n";

    #[test]
    fn identity_resolves_names_groups_and_numbers() {
        let l = layer(PASSWD, GROUP);
        let lowers = vec![l.path().to_owned()];
        assert_eq!(
            identity(None, &lowers).unwrap(),
            Identity { uid: 0, gid: 0, groups: vec![], home: Some("/root".into()) }
        );
        let www = identity(Some("www"), &lowers).unwrap();
        assert_eq!((www.uid, www.gid, www.groups.clone()), (33, 33, vec![500]));
        assert_eq!(identity(Some("www:root"), &lowers).unwrap().gid, 0);
        assert_eq!(
            identity(Some("1234:5678"), &lowers).unwrap(),
            Identity { uid: 1234, gid: 5678, groups: vec![], home: None }
        );
        assert_eq!(identity(Some("nobody"), &lowers), Err(UserError::NoUser("nobody".into())));
        assert_eq!(identity(Some("www:nogroup"), &lowers), Err(UserError::NoGroup("nogroup".into())));
        assert!(identity(Some(":1"), &lowers).is_err());
    }

    #[test]
    fn identity_never_follows_an_image_symlink_to_the_host() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        // The host's root entry is not read: "root" is unknown in this image.
        assert_eq!(identity(Some("root"), &[d.path().to_owned()]), Err(UserError::NoUser("root".into())));
    }
}
