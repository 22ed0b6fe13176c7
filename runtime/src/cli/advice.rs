//! What to do about an error: the library's errors say what is wrong, in terms of things
//! (a container, a sandbox, a limit); here they are said again in terms of podrun's flags
//! and commands, as the user typed them, with the step that fixes it.

use std::error::Error;

use podrun::cgroup::{CgroupError, LimitError};
use podrun::container::ContainerError;
use podrun::idmap::IdMapError;
use podrun::sandbox::SandboxError;

/// The error's message with advice where podrun has some; None: its own message says all.
pub fn advise(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(c) = e.downcast_ref::<ContainerError>() {
        return container(c);
    }
    if let Some(s) = e.downcast_ref::<SandboxError>() {
        return sandbox(s);
    }
    if let Some(i) = e.downcast_ref::<podrun::image::Error>() {
        return image(i);
    }
    if let Some(c) = e.downcast_ref::<CgroupError>() {
        return cgroup(c);
    }
    if let Some(l) = e.downcast_ref::<LimitError>() {
        return limit(l);
    }
    if let Some(i) = e.downcast_ref::<IdMapError>() {
        return idmap(i);
    }
    if let Some(s) = e.downcast_ref::<podrun::spec::SpecError>() {
        return spec(s);
    }
    if let Some(s) = e.downcast_ref::<podrun::seccomp::SeccompError>() {
        return seccomp(s);
    }
    if let Some(d) = e.downcast_ref::<podrun::devices::DeviceError>() {
        return Some(format!("invalid --device {:?}: use {}", d.0, podrun::devices::DEVICE_FORMAT));
    }
    None
}

/// One error's message, with advice where podrun has some.
pub fn say(e: &(dyn Error + 'static)) -> String {
    advise(e).unwrap_or_else(|| e.to_string())
}

/// An error chain as anyhow's `{:#}` prints it ("outer: inner: ..."), each with advice.
pub fn report(e: &anyhow::Error) -> String {
    e.chain().map(say).collect::<Vec<_>>().join(": ")
}

fn container(e: &ContainerError) -> Option<String> {
    use ContainerError as E;
    Some(match e {
        // (Transparent: their message is the inner error's, which is not in the chain.)
        E::Image(i) => image(i)?,
        E::Spec(s) => spec(s)?,
        E::Cgroup(c) => cgroup(c)?,
        E::Seccomp(s) => seccomp(s)?,
        E::IdMap(i) => idmap(i)?,
        E::NoSandbox(_) => format!("{e} (see `podrun sandbox ls`)"),
        E::UsernsWithJoin => format!("{e}: give --userns, --uidmap or --gidmap to `podrun sandbox create` instead"),
        E::SandboxDown(n) => format!("{e}; remove it with `podrun sandbox rm -f {n}`"),
        E::NameInUse(n) => format!("{e}; remove it with `podrun rm {n}` or choose another --name"),
        E::NotFound(_) => format!("{e} (see `podrun ps -a`)"),
        E::Running(_) => format!("{e}; stop it first, or use -f"),
        E::BackingOff(n) => format!("{e}; stop it first (`podrun kill {n}`), or use -f"),
        E::RestartNeedsDetach => "--restart needs -d: a container that is started again runs in the background, its \
                                  output in `podrun logs` (without --restart it can run in the foreground)"
            .into(),
        E::RestartWithRm => {
            "--restart cannot be combined with --rm: a container removed when it exits cannot be started again".into()
        }
        E::AlreadyRunning(_) => format!("{e}; `podrun ps` shows its status"),
        E::StartTerminal(n) => format!(
            "container {n} ran with a terminal (-t); `podrun start` starts only containers without one: run it again \
             with `podrun run -it`"
        ),
        E::ReservedName(_) => format!("{e}; choose another --name"),
        _ => return None,
    })
}

fn sandbox(e: &SandboxError) -> Option<String> {
    use SandboxError as E;
    Some(match e {
        E::Cgroup(c) => cgroup(c)?,
        E::IdMap(i) => idmap(i)?,
        E::Exists(_) | E::NotFound(_) => format!("{e} (see `podrun sandbox ls`)"),
        E::Busy(..) => format!("{e}; stop them first, or use -f"),
        _ => return None,
    })
}

fn image(e: &podrun::image::Error) -> Option<String> {
    use podrun::image::Error as E;
    Some(match e {
        E::AmbiguousManifest { .. } => format!("{e}; choose one with --name"),
        E::NoName => format!("{e}; give it one with --name NAME[:TAG]"),
        E::NotFound(_) => format!("{e} (see `podrun image ls`)"),
        E::SeveralNames { .. } => format!("{e}; remove them by name, or use --force"),
        _ => return None,
    })
}

fn cgroup(e: &CgroupError) -> Option<String> {
    match e {
        CgroupError::Limit(l) => limit(l),
        _ => None,
    }
}

fn limit(e: &LimitError) -> Option<String> {
    use LimitError as E;
    Some(match e {
        E::Cpus(v) => format!("invalid --cpus {v:?}: use a positive number of CPUs, e.g. 0.5 or 2"),
        E::Shares(v) => format!("invalid --cpu-shares {v:?}: use 2 to 262144"),
        E::Pids(v) => format!("invalid --pids-limit {v:?}: use a positive number, or -1 for no limit"),
        E::IoWeight(v) => format!("invalid --io-weight {v:?}: use 1 to 10000"),
        _ => return None,
    })
}

fn idmap(e: &IdMapError) -> Option<String> {
    use IdMapError as E;
    Some(match e {
        E::BadMode(m) => format!("--userns={m:?}: use auto or host"),
        E::Conflict(m) => format!("--uidmap/--gidmap cannot be combined with --userns={m}"),
        E::Exhausted(_) => {
            format!("{e}; remove a sandbox, or add `podrun:START:COUNT` lines to /etc/subuid and /etc/subgid")
        }
        E::Overlap { .. } => format!("{e}: choose another range, or --userns=auto"),
        _ => return None,
    })
}

fn spec(e: &podrun::spec::SpecError) -> Option<String> {
    match e {
        podrun::spec::SpecError::NotifyConflict => {
            Some(format!("{e}: use --procview=files (or off) with this profile"))
        }
        _ => None,
    }
}

fn seccomp(e: &podrun::seccomp::SeccompError) -> Option<String> {
    match e {
        podrun::seccomp::SeccompError::Agent { .. } => Some(format!(
            "{e}; if that is the resource view's socket, it is restarted once this root has no containers or \
             sandboxes left; until then use --procview=files"
        )),
        _ => None,
    }
}
