//! Builds the OCI runtime spec (config.json) that describes a container: from the image
//! config and the `run` flags. The start path (container.rs, mount/rootfs.rs, exec.rs) reads
//! the process, mounts, masked and read-only paths from it, so a later `podrun create
//! BUNDLE` can feed the same path from a user's config.json.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, ExecCPUAffinityBuilder, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMappingBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscallBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::cgroup::Hierarchy;
use crate::image::ImageRecord;

/// The capabilities runc and Docker give a container by default.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// runc's default masked paths: kernel data a container should not read.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths: kernel knobs a container must not turn.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the image has no Entrypoint or Cmd: give a command after the image name")]
    NoCommand,
    #[error("invalid volume {0:?}: use HOSTDIR:CTRDIR[:ro|rw] with absolute paths")]
    BadVolume(String),
    #[error("invalid environment variable {0:?}: use KEY=VALUE")]
    BadEnv(String),
    #[error(
        "invalid --security-opt {0:?}: use seccomp=unconfined, or seccomp=FILE with an OCI linux.seccomp JSON object (no-new-privileges is always on)"
    )]
    BadSecurityOpt(String),
    #[error("seccomp profile {path}: {message}")]
    BadProfile { path: String, message: String },
    #[error("the seccomp profile has SCMP_ACT_NOTIFY rules, and the resource view answers sysinfo(2) through its own listener")]
    NotifyConflict,
    #[error("building the OCI spec")]
    Build(#[from] oci_spec::OciSpecError),
}

/// A `-v HOSTDIR:CTRDIR[:OPTIONS]` bind mount; OPTIONS a comma list of ro, rw, idmap and
/// noidmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub target: String,
    pub readonly: bool,
    /// In a user namespace, seen through its maps (the default): files the container's root
    /// makes are the host root's, and host files keep their owners inside. `noidmap`: the
    /// host's owners as they are, which the namespace mostly does not map (nobody).
    pub idmap: bool,
}

impl Volume {
    pub fn parse(s: &str) -> Result<Volume, SpecError> {
        let bad = || SpecError::BadVolume(s.to_owned());
        let mut parts = s.split(':');
        let (host, target) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let (mut readonly, mut idmap) = (false, true);
        if let Some(opts) = parts.next() {
            for o in opts.split(',') {
                match o {
                    "rw" => readonly = false,
                    "ro" => readonly = true,
                    "idmap" => idmap = true,
                    "noidmap" => idmap = false,
                    _ => return Err(bad()),
                }
            }
        }
        if parts.next().is_some()
            || !host.starts_with('/')
            || !target.starts_with('/')
            || target.split('/').any(|c| c == "..")
        {
            return Err(bad());
        }
        Ok(Volume { host: host.into(), target: target.to_owned(), readonly, idmap })
    }
}

/// Which seccomp filter a container gets (`--security-opt seccomp=...`).
#[derive(Debug, Clone, Default)]
pub enum Seccomp {
    /// podrun's default profile: what Docker's refuses (seccomp::default_profile).
    #[default]
    Default,
    /// No profile (the resource view's sysinfo rule, if on, still applies).
    Unconfined,
    /// A user's profile, as an OCI `linux.seccomp` object.
    Profile(LinuxSeccomp),
}

impl Seccomp {
    /// Parses the `--security-opt` values (docker's syntax); the last seccomp= wins.
    pub fn parse(opts: &[String]) -> Result<Seccomp, SpecError> {
        let mut s = Seccomp::Default;
        for o in opts {
            let bad = || SpecError::BadSecurityOpt(o.clone());
            // no_new_privs is always set: docker's flag for it is accepted and changes nothing.
            if matches!(o.as_str(), "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true") {
                continue;
            }
            let (key, value) = o.split_once(['=', ':']).ok_or_else(bad)?;
            if key != "seccomp" {
                return Err(bad());
            }
            s = match value {
                "unconfined" => Seccomp::Unconfined,
                "" => return Err(bad()),
                path => {
                    let fail = |message: String| SpecError::BadProfile { path: path.to_owned(), message };
                    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
                    let profile: LinuxSeccomp = serde_json::from_str(&text)
                        .map_err(|e| fail(format!("not an OCI linux.seccomp object: {e}")))?;
                    // Compiled now, so that a bad rule is reported before anything starts.
                    let mut check = profile.clone();
                    check.set_listener_path(None);
                    crate::seccomp::compile(&check).map_err(|e| fail(e.to_string()))?;
                    Seccomp::Profile(profile)
                }
            };
        }
        Ok(s)
    }
}

/// The numeric identity a container runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

/// What `run` was asked for, beyond the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub volumes: Vec<Volume>,
    pub tty: bool,
    pub hostname: String,
    /// The resource view's directory, bind-mounted file by file over /proc and /sys.
    pub procview: Option<PathBuf>,
    /// CPUs the container's processes run on (execCPUAffinity.final; podrun applies it to
    /// the init too).
    pub affinity: Option<Vec<u32>>,
    /// The resource view's seccomp agent: where sysinfo(2) calls are answered from.
    pub sysinfo_agent: Option<PathBuf>,
    pub seccomp: Seccomp,
    /// Host devices given with --device: bound in, and added to the device allow-list.
    pub devices: Vec<crate::devices::Device>,
    /// The user namespace's maps (the sandbox's for a joined container); None: the host's.
    pub idmaps: Option<crate::idmap::IdMaps>,
}

/// Where the sandbox's shared namespaces and /dev/shm are; None for a standalone container.
pub struct Join {
    pub pause_pid: i32,
    pub share_pid: bool,
    /// The sandbox's directory: its shm/ and its hostname, hosts and resolv.conf files.
    pub dir: PathBuf,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// What docker sets TERM to for a container with a terminal.
pub const TERM: &str = "TERM=xterm";

/// Environment: the image's, then -e values, replacing by key; PATH, HOSTNAME and HOME
/// filled in as docker does, and TERM=xterm with a terminal (without it Debian's top exits
/// with no word, and less and vi guess).
fn environment(
    image_env: &[String],
    extra: &[String],
    hostname: &str,
    home: Option<&str>,
    tty: bool,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: &str| {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.to_owned());
    };
    for e in image_env {
        set(e);
    }
    for e in extra {
        if !e.contains('=') || e.starts_with('=') {
            return Err(SpecError::BadEnv(e.clone()));
        }
        set(e);
    }
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "PATH") {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", home.unwrap_or("/")));
    }
    if tty && !has(&env, "TERM") {
        env.push(TERM.to_owned());
    }
    Ok(env)
}

/// The container's view of its cgroups at /sys/fs/cgroup, read-only: with a cgroup
/// namespace, each hierarchy's root there is the container's own cgroup, so JVMs and Go
/// read their limits from it.
fn cgroup_mounts(h: &Hierarchy) -> Result<Vec<Mount>, SpecError> {
    cgroup_mounts_at(h, "/sys/fs/cgroup", true)
}

/// The mounts that give a container its cgroups at `dest` on this host: cgroup2 on a v2
/// host; on a v1 (hybrid) one a tmpfs with a mount per hierarchy, as runc does for a spec's
/// mount of type `cgroup` (which names no controller, so cannot be mounted as it is).
pub(crate) fn cgroup_mounts_at(h: &Hierarchy, dest: &str, ro: bool) -> Result<Vec<Mount>, SpecError> {
    let all: [&str; 4] = ["nosuid", "noexec", "nodev", "ro"];
    let opts = if ro { &all[..] } else { &all[..3] };
    let dest = dest.trim_end_matches('/');
    Ok(match h {
        Hierarchy::V2 { .. } => vec![mount(dest, "cgroup2", "cgroup", opts)?],
        Hierarchy::V1 { controllers, .. } => {
            let mut by_mount: std::collections::BTreeMap<&std::path::Path, Vec<&str>> = Default::default();
            for (name, m) in controllers.iter() {
                by_mount.entry(m).or_default().push(name);
            }
            let mut v = vec![mount(dest, "tmpfs", "cgroup", &["nosuid", "noexec", "nodev", "mode=755", "size=64k"])?];
            for (m, names) in by_mount {
                let dir = m.file_name().map_or_else(|| names.join(","), |d| d.to_string_lossy().into_owned());
                let opts: Vec<&str> = names.iter().copied().chain(opts.iter().copied()).collect();
                v.push(mount(&format!("{dest}/{dir}"), "cgroup", "cgroup", &opts)?);
            }
            v
        }
    })
}

/// The rule that hands sysinfo(2) to the view's agent (busybox `free` and `uptime` ask it,
/// not /proc), to go first among `rules`; a profile with a notify rule of its own cannot
/// have it (one listener per filter).
fn sysinfo_rule(rules: &[oci_spec::runtime::LinuxSyscall]) -> Result<oci_spec::runtime::LinuxSyscall, SpecError> {
    if rules.iter().any(|r| r.action() == LinuxSeccompAction::ScmpActNotify) {
        return Err(SpecError::NotifyConflict);
    }
    Ok(LinuxSyscallBuilder::default()
        .names(vec!["sysinfo".to_string()])
        .action(LinuxSeccompAction::ScmpActNotify)
        .build()?)
}

/// The resource view added to a bundle's spec (the annotation `run.podrun.procview`): a
/// bind of each view file it serves over the spec's own /proc and /sys, and with `agent`
/// the rule that hands the container's sysinfo calls to the view (first in the spec's
/// seccomp, or the whole of a new one that allows everything else).
pub(crate) fn add_view(
    spec: &mut Spec,
    view: &std::path::Path,
    agent: Option<&std::path::Path>,
    h: &Hierarchy,
) -> Result<(), SpecError> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for f in podrun_procfs::caller::ViewFile::ALL.into_iter().filter(|f| f.served(h)) {
        mounts.push(mount(f.target(), "bind", &view.join(f.name()).to_string_lossy(), &["bind"])?);
    }
    spec.set_mounts(Some(mounts));
    let Some(agent) = agent else { return Ok(()) };
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut sc = match linux.seccomp().clone() {
        Some(sc) => sc,
        None => LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActAllow).build()?,
    };
    let mut rules = sc.syscalls().clone().unwrap_or_default();
    if sc.listener_path().is_some() {
        return Err(SpecError::NotifyConflict);
    }
    rules.insert(0, sysinfo_rule(&rules)?);
    sc.set_syscalls(Some(rules));
    sc.set_listener_path(Some(agent.to_owned()));
    linux.set_seccomp(Some(sc));
    spec.set_linux(Some(linux));
    Ok(())
}

/// The container's `linux.seccomp`: the view's sysinfo rule first (when the view answers
/// sysinfo), then the profile's rules; none when that leaves nothing to filter.
fn seccomp(opts: &RunOptions) -> Result<Option<LinuxSeccomp>, SpecError> {
    let (default, errno, mut rules, mut listener) = match &opts.seccomp {
        Seccomp::Default => (LinuxSeccompAction::ScmpActAllow, None, crate::seccomp::default_profile(), None),
        Seccomp::Unconfined => (LinuxSeccompAction::ScmpActAllow, None, Vec::new(), None),
        Seccomp::Profile(p) => (
            p.default_action(),
            p.default_errno_ret(),
            p.syscalls().clone().unwrap_or_default(),
            p.listener_path().clone(),
        ),
    };
    if let Some(agent) = &opts.sysinfo_agent {
        rules.insert(0, sysinfo_rule(&rules)?);
        listener = Some(agent.clone());
    }
    if rules.is_empty() && default == LinuxSeccompAction::ScmpActAllow {
        return Ok(None);
    }
    let mut b = LinuxSeccompBuilder::default().default_action(default).syscalls(rules);
    if let Some(e) = errno {
        b = b.default_errno_ret(e);
    }
    if let Some(l) = listener {
        b = b.listener_path(l);
    }
    Ok(Some(b.build()?))
}

pub fn build(
    image: &ImageRecord,
    opts: &RunOptions,
    who: &Identity,
    join: Option<&Join>,
    cgroups: &Hierarchy,
) -> Result<Spec, SpecError> {
    let cfg = &image.config;
    let mut args = cfg.entrypoint.clone();
    args.extend(if opts.command.is_empty() { cfg.cmd.clone() } else { opts.command.clone() });
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let cwd = opts.workdir.clone().or_else(|| cfg.working_dir.clone()).unwrap_or_else(|| "/".to_owned());
    let caps = DEFAULT_CAPS.iter().copied().collect::<std::collections::HashSet<_>>();
    // A user other than root holds none (docker's rule); the bounding set is everyone's.
    let held = if who.uid == 0 { caps.clone() } else { Default::default() };
    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .args(args)
        .env(environment(&cfg.env, &opts.env, &opts.hostname, who.home.as_deref(), opts.tty)?)
        .cwd(cwd)
        .user(UserBuilder::default().uid(who.uid).gid(who.gid).additional_gids(who.groups.clone()).build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps)
                .effective(held.clone())
                .permitted(held.clone())
                .inheritable(held)
                // (oci-spec's default fills ambient too; podrun gives none.)
                .ambient(std::collections::HashSet::new())
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;
    let mut process = process;
    if let Some(cpus) = &opts.affinity {
        let list = cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        process.set_exec_cpu_affinity(Some(ExecCPUAffinityBuilder::default().cpu_affinity_final(list).build()?));
    }

    let ns = |typ, path: Option<String>| {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build()
    };
    let shared = |typ, name: &str| ns(typ, join.map(|j| format!("/proc/{}/ns/{name}", j.pause_pid)));
    let mut namespaces = vec![
        ns(LinuxNamespaceType::Mount, None)?,
        ns(LinuxNamespaceType::Cgroup, None)?,
        shared(LinuxNamespaceType::Network, "net")?,
    ];
    namespaces.push(shared(LinuxNamespaceType::Ipc, "ipc")?);
    namespaces.push(shared(LinuxNamespaceType::Uts, "uts")?);
    if opts.idmaps.is_some() {
        namespaces.push(shared(LinuxNamespaceType::User, "user")?);
    }
    let share_pid = join.is_some_and(|j| j.share_pid);
    namespaces.push(if share_pid {
        shared(LinuxNamespaceType::Pid, "pid")?
    } else {
        ns(LinuxNamespaceType::Pid, None)?
    });

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        match join {
            Some(j) => mount(
                "/dev/shm",
                "bind",
                &j.dir.join("shm").to_string_lossy(),
                &["rbind", "nosuid", "noexec", "nodev"],
            )?,
            None => mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        },
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
    ];
    mounts.extend(cgroup_mounts(cgroups)?);
    if let Some(j) = join {
        // The pod's /etc files, one copy for all its containers (as docker binds them):
        // nothing to write into each container's rootfs.
        for f in ["hostname", "hosts", "resolv.conf"] {
            mounts.push(mount(&format!("/etc/{f}"), "bind", &j.dir.join(f).to_string_lossy(), &["bind", "ro"])?);
        }
    }
    if let Some(view) = &opts.procview {
        for f in podrun_procfs::caller::ViewFile::ALL.into_iter().filter(|f| f.served(cgroups)) {
            // No "ro": the view is mounted read-only, and a clone keeps that.
            mounts.push(mount(f.target(), "bind", &view.join(f.name()).to_string_lossy(), &["bind"])?);
        }
    }
    for v in &opts.volumes {
        let mut o = vec!["rbind"];
        if v.readonly {
            o.push("ro");
        }
        // OCI 1.1's option for an idmapped bind (runc, crun).
        if v.idmap && opts.idmaps.is_some() {
            o.push("ridmap");
        }
        mounts.push(mount(&v.target, "bind", &v.host.to_string_lossy(), &o)?);
    }
    for d in &opts.devices {
        // The host's node, bound in (a container cannot mknod a usable one).
        mounts.push(mount(&d.target, "bind", &d.host.to_string_lossy(), &["bind"])?);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?;
    linux.set_seccomp(seccomp(opts)?);
    if let Some(m) = &opts.idmaps {
        let oci = |v: &[crate::idmap::IdRange]| {
            v.iter()
                .map(|r| {
                    LinuxIdMappingBuilder::default().container_id(r.container).host_id(r.host).size(r.size).build()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        linux.set_uid_mappings(Some(oci(&m.uid)?));
        linux.set_gid_mappings(Some(oci(&m.gid)?));
    }
    // What the container's cgroup lets it open (applied by cgroup::create, from the same list).
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(crate::devices::oci_rules(&opts.devices)));
    linux.set_resources(Some(resources));
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path("rootfs").readonly(false).build()?)
        .hostname(opts.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts_take_dockers_seccomp_forms() {
        let parse = |v: &[&str]| Seccomp::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(parse(&[]), Ok(Seccomp::Default)));
        assert!(matches!(parse(&["seccomp=unconfined"]), Ok(Seccomp::Unconfined)));
        assert!(matches!(parse(&["seccomp:unconfined", "no-new-privileges"]), Ok(Seccomp::Unconfined)));
        assert!(matches!(parse(&["no-new-privileges:true"]), Ok(Seccomp::Default)));
        for bad in ["no-new-privileges=false", "apparmor=unconfined", "seccomp=", "label=disable", "seccomp"] {
            assert!(matches!(parse(&[bad]), Err(SpecError::BadSecurityOpt(_))), "{bad}");
        }
        assert!(matches!(parse(&["seccomp=/no/such.json"]), Err(SpecError::BadProfile { .. })));
    }

    #[test]
    fn volume_parses_docker_forms_and_refuses_the_rest() {
        assert_eq!(
            Volume::parse("/a:/b").unwrap(),
            Volume { host: "/a".into(), target: "/b".into(), readonly: false, idmap: true }
        );
        assert!(Volume::parse("/a:/b:ro").unwrap().readonly);
        let v = Volume::parse("/a:/b:noidmap,ro").unwrap();
        assert!(v.readonly && !v.idmap);
        for bad in ["a:/b", "/a:b", "/a", "/a:/b:rx", "/a:/b:ro:x", "/a:/../etc", "/a:/b:ro,", "/a:/b:"] {
            assert!(Volume::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_overrides_by_key_and_fills_defaults() {
        let env =
            environment(&["A=1".into(), "PATH=/bin".into()], &["A=2".into()], "pod", Some("/root"), false).unwrap();
        assert_eq!(env, vec!["PATH=/bin", "A=2", "HOSTNAME=pod", "HOME=/root"]);
        let env = environment(&[], &[], "h", None, false).unwrap();
        assert_eq!(env[0], DEFAULT_PATH);
        assert!(environment(&[], &["NOVALUE".into()], "h", None, false).is_err());
        let env = environment(&[], &[], "h", None, true).unwrap();
        assert_eq!(env.last().map(String::as_str), Some(TERM), "a terminal's type, as docker sets it");
        let env = environment(&[], &["TERM=vt100".into()], "h", None, true).unwrap();
        assert!(env.contains(&"TERM=vt100".to_owned()) && !env.contains(&TERM.to_owned()), "-e wins");
    }
}
