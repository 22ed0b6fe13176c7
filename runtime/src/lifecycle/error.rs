//! The lifecycle's errors.

use crate::cgroup;
use crate::exec;
use crate::ids;
use crate::image;
use crate::spec;
use crate::sync::ChildError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    User(#[from] exec::UserError),
    #[error("no such sandbox: {0} (see `podrun sandbox ls`)")]
    NoSandbox(String),
    #[error(transparent)]
    BadName(#[from] ids::BadId),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    View(#[from] crate::procview::ViewError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    #[error("a container that joins a sandbox has the sandbox's user namespace: give --userns, --uidmap or --gidmap to `podrun sandbox create` instead")]
    UsernsWithJoin,
    #[error("sandbox {0} is not running (its pause process is gone); remove it with `podrun sandbox rm -f {0}`")]
    SandboxDown(String),
    #[error("the container name {0} is already in use; remove it with `podrun rm {0}` or choose another --name")]
    NameInUse(String),
    #[error("no such container: {0} (see `podrun ps -a`)")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running; stop it first, or use -f")]
    Running(String),
    #[error("container {0} is in back-off, waiting to be started again by its restart policy; stop it first (`podrun kill {0}`), or use -f")]
    BackingOff(String),
    #[error("--restart needs -d: a container that is started again runs in the background, its output in `podrun logs` (without --restart it can run in the foreground)")]
    RestartNeedsDetach,
    #[error("--restart cannot be combined with --rm: a container removed when it exits cannot be started again")]
    RestartWithRm,
    #[error("container {0} is already running; `podrun ps` shows its status")]
    AlreadyRunning(String),
    #[error("container {0} ran with a terminal (-t); `podrun start` starts only containers without one: run it again with `podrun run -it`")]
    StartTerminal(String),
    #[error("{0} is the name of the sandbox's own pause process; choose another --name")]
    ReservedName(String),
    #[error("volume source {0} does not exist; create it first")]
    NoVolumeSource(String),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("cannot start container {id}: {source}")]
    Start { id: String, source: crate::lifecycle::fifo::StartError },
    #[error("{op}")]
    Io { op: String, source: std::io::Error },
}

impl ContainerError {
    /// docker's exit codes: 127 command not found, 126 cannot execute, 125 podrun's own.
    pub fn exit_code(&self) -> u8 {
        match self {
            ContainerError::Child(c) => c.exit_code().unwrap_or(125),
            _ => 125,
        }
    }
}

pub(crate) fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Io { op, source }
}
