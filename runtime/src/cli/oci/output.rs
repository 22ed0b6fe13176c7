//! What the runc commands print: the runtime spec's state, the features JSON, and `ps`'s
//! table.

use anyhow::{Context, Result};
use podrun::lifecycle::{status, Status};

/// `runc ps` as a table: ps(1) with `args` (default -ef), the rows of the container's pids.
pub(super) fn ps_table(pids: &[i32], args: &[String]) -> Result<()> {
    let args: Vec<String> = if args.is_empty() { vec!["-ef".into()] } else { args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().context("run ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "PID").context("ps printed no PID column")?;
    println!("{header}");
    for l in lines {
        if l.split_whitespace().nth(col).and_then(|p| p.parse().ok()).is_some_and(|p: i32| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}

/// The runtime spec's state, with runc's additions (rootfs, created, owner).
pub(super) fn state_json(c: &podrun::state::ContainerState) -> serde_json::Value {
    let st = status(c);
    let pid = match st {
        Status::Created | Status::Running => c.init.map_or(0, |i| i.pid),
        _ => 0,
    };
    let rootfs = c.bundle.as_ref().map(|b| b.join("rootfs").display().to_string()).unwrap_or_default();
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": c.id,
        "pid": pid,
        "status": st.oci(),
        "bundle": c.bundle.as_ref().map(|b| b.display().to_string()).unwrap_or_default(),
        "rootfs": rootfs,
        "created": super::log::rfc3339(c.created, 0),
        "owner": "",
    });
    if !c.annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&c.annotations).unwrap_or_default();
    }
    v
}

/// What podrun supports, truthfully (runtime-spec features.md).
pub(super) fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "relatime", "norelatime",
            "strictatime", "noatime", "bind", "rbind", "private", "rprivate", "slave", "rslave", "shared", "rshared"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {"run.podrun.version": env!("CARGO_PKG_VERSION")},
    })
}
