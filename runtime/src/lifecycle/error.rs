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
    #[error("no such sandbox: {0}")]
    NoSandbox(String),
    #[error(transparent)]
    BadName(#[from] ids::BadId),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Hierarchy(#[from] cgroup::HostError),
    #[error(transparent)]
    View(#[from] crate::procview::ViewError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    #[error("a container that joins a sandbox has the sandbox's user namespace")]
    UsernsWithJoin,
    #[error("sandbox {0} is not running (its pause process is gone)")]
    SandboxDown(String),
    #[error("the container name {0} is already in use")]
    NameInUse(String),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running")]
    Running(String),
    #[error("container {0} is in back-off, waiting to be started again by its restart policy")]
    BackingOff(String),
    #[error("a container with a restart policy runs detached: it is started again in the background")]
    RestartNeedsDetach,
    #[error("a container with a restart policy cannot be removed when it exits: it could not be started again")]
    RestartWithRm,
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container {0} is paused")]
    Paused(String),
    #[error("container {0} is not paused")]
    NotPaused(String),
    #[error("container {0} ran with a terminal, and only a container without one is started again")]
    StartTerminal(String),
    #[error("{0} is the name of the sandbox's own pause process")]
    ReservedName(String),
    #[error("volume source {0} does not exist; create it first")]
    NoVolumeSource(String),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error(transparent)]
    Bundle(#[from] crate::lifecycle::bundle::BundleError),
    #[error("the spec asks for a terminal (process.terminal), and no console socket was given to send it to")]
    NoConsoleSocket,
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
