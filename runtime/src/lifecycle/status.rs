//! A container's status, as the OCI runtime spec names it (created, running, stopped) and
//! with podrun's restart back-off, recomputed from facts on every call, never stored: the
//! init's liveness by pid and start time, the exec fifo, the monitor's liveness, the
//! recorded exit.

use crate::state::{ContainerState, ExitInfo};

/// What `ps` and `state` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being made: no init spawned yet.
    Creating,
    /// Made, its init waiting for `start`.
    Created,
    Running,
    /// Running, its processes frozen (the OCI `pause`).
    Paused,
    /// Ended, and its restart policy starts it again at this time (Unix ms).
    BackOff {
        next_try_ms: u64,
    },
    /// Ended a moment ago: its monitor has yet to record how (and decide on a restart).
    Exiting,
    /// Stopped.
    Exited(Option<ExitInfo>),
}

impl Status {
    /// The OCI runtime spec's word: creating, created, running or stopped.
    pub fn oci(&self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::BackOff { .. } | Status::Exiting | Status::Exited(_) => "stopped",
        }
    }
}

/// The facts a status is decided from, each looked at now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Facts {
    /// An init was spawned (its pid is recorded), and whether it still runs.
    pub init: Option<bool>,
    /// Its exec fifo exists: created, not started.
    pub waiting: bool,
    /// Its cgroup is frozen (only a bundle's container can be paused).
    pub frozen: bool,
    /// Its back-off's next start, if one is due.
    pub next_try_ms: Option<u64>,
    /// Stopped for good by `kill` or `rm` (no restart).
    pub stopped: bool,
    /// The process that records its exits (monitor, or the foreground podrun) runs.
    pub supervised: bool,
    pub exit: Option<ExitInfo>,
}

impl Facts {
    pub fn of(c: &ContainerState) -> Facts {
        Facts {
            init: c.init.map(|i| i.alive()),
            waiting: c.dir.as_deref().is_some_and(crate::lifecycle::fifo::waiting),
            frozen: c.bundle.is_some()
                && c.cgroup
                    .as_deref()
                    .is_some_and(|cg| crate::cgroup::Hierarchy::host().is_ok_and(|h| crate::cgroup::is_frozen(&h, cg))),
            next_try_ms: c.next_try_ms,
            stopped: c.stopped,
            supervised: c.monitor.is_some_and(|m| m.alive()),
            exit: c.exit,
        }
    }

    /// A back-off whose monitor is gone is over (no one will start it), and a container
    /// whose end nobody saw has an unknown exit.
    pub fn status(&self) -> Status {
        match (self.init, self.next_try_ms) {
            (None, _) => Status::Creating,
            (Some(true), _) if self.waiting => Status::Created,
            (Some(true), _) if self.frozen => Status::Paused,
            (Some(true), _) => Status::Running,
            (_, Some(t)) if !self.stopped && self.supervised => Status::BackOff { next_try_ms: t },
            _ if self.exit.is_none() && self.supervised => Status::Exiting,
            _ => Status::Exited(self.exit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT: ExitInfo = ExitInfo { code: 3, signal: None, finished: 1, oom_killed: false };

    #[test]
    fn a_container_is_creating_then_created_then_running() {
        let creating = Facts::default();
        assert_eq!((creating.status(), creating.status().oci()), (Status::Creating, "creating"));
        let created = Facts { init: Some(true), waiting: true, supervised: true, ..Facts::default() };
        assert_eq!((created.status(), created.status().oci()), (Status::Created, "created"));
        let running = Facts { waiting: false, ..created };
        assert_eq!((running.status(), running.status().oci()), (Status::Running, "running"));
        let paused = Facts { frozen: true, ..running };
        assert_eq!((paused.status(), paused.status().oci()), (Status::Paused, "paused"));
    }

    #[test]
    fn an_ended_init_is_stopped_whatever_else_is_true() {
        // A created container whose init was killed before start: stopped, not created.
        let killed = Facts { init: Some(false), waiting: true, ..Facts::default() };
        assert_eq!(killed.status(), Status::Exited(None));
        assert_eq!(killed.status().oci(), "stopped");
        let recorded = Facts { init: Some(false), exit: Some(EXIT), supervised: true, ..Facts::default() };
        assert_eq!(recorded.status(), Status::Exited(Some(EXIT)));
    }

    #[test]
    fn an_exit_not_yet_recorded_is_exiting_while_someone_will_record_it() {
        let ended = Facts { init: Some(false), supervised: true, ..Facts::default() };
        assert_eq!(ended.status(), Status::Exiting);
        assert_eq!(Facts { supervised: false, ..ended }.status(), Status::Exited(None), "nobody saw its end");
    }

    #[test]
    fn a_back_off_lasts_while_its_monitor_runs_and_no_one_stopped_it() {
        let backing =
            Facts { init: Some(false), next_try_ms: Some(9), supervised: true, exit: Some(EXIT), ..Facts::default() };
        assert_eq!(backing.status(), Status::BackOff { next_try_ms: 9 });
        assert_eq!(backing.status().oci(), "stopped");
        assert_eq!(Facts { stopped: true, ..backing }.status(), Status::Exited(Some(EXIT)), "killed in back-off");
        assert_eq!(Facts { supervised: false, ..backing }.status(), Status::Exited(Some(EXIT)), "monitor gone");
        // A restarted one running again is running, whatever its last back-off said.
        assert_eq!(Facts { init: Some(true), ..backing }.status(), Status::Running);
    }
}
