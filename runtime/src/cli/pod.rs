//! The pod and container commands: run, ps, stats, logs, and the sandbox commands with the
//! namespace table.

use super::advice;
use super::table::{ago, columns};
use super::*;
use podrun::monitor::exit_word;
use podrun::restart::human_ms;

pub(super) fn run_cmd(paths: &Paths, a: RunArgs) -> Result<u8> {
    if a.detach && (a.process.interactive || a.process.tty) {
        bail!("-d cannot be combined with -i or -t: a detached container has no stdin or terminal; use `podrun exec -it` to get a shell in it");
    }
    require_root()?;
    let store = open_store(&paths.root)?;
    let volumes = a.volumes.iter().map(|v| Volume::parse(v)).collect::<Result<Vec<_>, _>>()?;
    let limits = a.limits.limits()?;
    let devices = a.devices.iter().map(|d| podrun::devices::Device::parse(d)).collect::<Result<Vec<_>, _>>()?;
    let (userns, pool) = a.userns.mode(paths)?;
    let req = RunRequest {
        limits,
        image: a.image,
        name: a.name,
        join: a.join,
        detach: a.detach,
        auto_remove: a.rm,
        interactive: a.process.interactive,
        user: a.user,
        options: RunOptions {
            command: a.command,
            env: a.process.env,
            workdir: a.workdir,
            volumes,
            tty: a.process.tty,
            hostname: String::new(),
            procview: None,
            affinity: None,
            sysinfo_agent: None,
            seccomp: Seccomp::parse(&a.security_opt)?,
            devices,
            idmaps: None,
        },
        userns,
        pool,
        procview: a.procview.map(Into::into),
        restart: match (a.restart, a.restart_backoff) {
            (None, None) => None,
            (None, Some(_)) => bail!("--restart-backoff needs --restart always or on-failure"),
            (Some(policy), b) => Some(podrun::restart::Restart { policy, backoff: b.unwrap_or_default() }),
        },
    };
    match container::run(paths, &store, req)? {
        RunOutcome::Detached(id) => {
            println!("{id}");
            Ok(0)
        }
        RunOutcome::Exited(e) => Ok(e.code.clamp(0, 255) as u8),
    }
}

pub(super) fn status_word(c: &ContainerState) -> String {
    match container::status(c) {
        Status::Creating => "creating".into(),
        Status::Created => "created".into(),
        Status::Running => "running".into(),
        Status::Paused => "paused".into(),
        Status::BackOff { .. } => "back-off".into(),
        Status::Exiting => "exiting".into(),
        Status::Exited(e) => exit_word(e),
    }
}

/// The STATUS column: docker's words, plus the back-off and who is watching.
fn status_text(c: &ContainerState, now_ms: u64) -> String {
    let now = now_ms / 1000;
    match container::status(c) {
        Status::Creating => "Creating".to_owned(),
        Status::Created => "Created".to_owned(),
        Status::Running if c.detached && !container::supervised(c) => "Up (unsupervised)".to_owned(),
        Status::Running => "Up".to_owned(),
        Status::Paused => "Up (Paused)".to_owned(),
        Status::BackOff { next_try_ms } => {
            format!("Back-off (next try in {})", human_ms(next_try_ms.saturating_sub(now_ms)))
        }
        Status::Exited(Some(e)) => {
            let word = if e.oom_killed { "OOMKilled" } else { "Exited" };
            // A back-off whose monitor is gone: nobody will start it.
            let unsupervised = if c.next_try_ms.is_some() && !c.stopped { ", not restarted: unsupervised" } else { "" };
            format!("{word} ({}) {}{unsupervised}", e.code, ago(now, e.finished))
        }
        Status::Exiting => "Exiting".to_owned(),
        Status::Exited(None) => "Exited (unknown: unsupervised)".to_owned(),
    }
}

/// The LAST EXIT column: how the latest run ended, and when.
fn last_exit_text(c: &ContainerState, now: u64) -> String {
    match c.latest_exit() {
        Some(e) => format!("{} {}", exit_word(Some(e)), ago(now, e.finished)),
        None => "-".into(),
    }
}

/// A container with a process, or one its policy will start again: created (its init
/// waiting for start, as during each start), running, exiting or in back-off.
fn live(c: &ContainerState) -> bool {
    matches!(container::status(c), Status::Created | Status::Running | Status::BackOff { .. } | Status::Exiting)
}

pub(super) fn ps(paths: &Paths, all: bool, format: Format, quiet: bool) -> Result<()> {
    let now_ms = podrun::state::now_ms();
    let now = now_ms / 1000;
    let rows: Vec<ContainerState> = container::list(paths).into_iter().filter(|c| all || live(c)).collect();
    if quiet {
        for c in &rows {
            println!("{}", c.id);
        }
        return Ok(());
    }
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|c| {
                    let next = match container::status(c) {
                        Status::BackOff { next_try_ms } => Some(next_try_ms),
                        _ => None,
                    };
                    serde_json::json!({
                        "id": c.id, "image": c.image, "command": c.command, "created": c.created,
                        "status": status_word(c), "sandbox": c.sandbox, "pid": c.init.map(|i| i.pid),
                        "exit_code": c.exit.map(|e| e.code), "oom_killed": c.exit.is_some_and(|e| e.oom_killed),
                        "restart_policy": c.restart.map_or("never".to_owned(), |r| r.policy.to_string()),
                        "restart_backoff": c.restart.map(|r| r.backoff.to_string()),
                        "restarts": c.restarts, "next_try_ms": next, "last_exit": c.latest_exit(),
                        "supervised": container::supervised(c),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let mut t = vec![[
                "CONTAINER".to_owned(),
                "IMAGE".into(),
                "COMMAND".into(),
                "CREATED".into(),
                "STATUS".into(),
                "RESTARTS".into(),
                "LAST EXIT".into(),
                "SANDBOX".into(),
            ]];
            for c in &rows {
                let mut cmd = c.command.join(" ");
                if cmd.len() > 24 {
                    cmd.truncate(21);
                    cmd.push_str("...");
                }
                t.push([
                    c.id.to_string(),
                    c.image.clone(),
                    format!("\"{cmd}\""),
                    ago(now, c.created),
                    status_text(c, now_ms),
                    c.restarts.to_string(),
                    last_exit_text(c, now),
                    c.sandbox.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            print!("{}", columns(&t));
        }
    }
    Ok(())
}

/// The cgroups `stats` reports on: (name, cgroup path).
fn stat_targets(paths: &Paths, names: &[String], sandbox: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(sb) = sandbox {
        let s = sandbox::load(paths, sb)?;
        if let Some(cg) = s.cgroup {
            out.push((format!("{sb} (pod)"), cg));
        }
    }
    for c in container::list(paths) {
        let wanted = if names.is_empty() {
            sandbox.is_none_or(|sb| c.sandbox.as_deref() == Some(sb))
        } else {
            names.iter().any(|n| n == &*c.id)
        };
        if wanted && container::status(&c) == Status::Running {
            if let Some(cg) = c.cgroup.clone() {
                out.push((c.id.to_string(), cg));
            }
        }
    }
    for n in names {
        if !out.iter().any(|(id, _)| id == n) {
            container::load(paths, n)?;
            bail!("container {n} is not running");
        }
    }
    Ok(out)
}

pub(super) fn stats(
    paths: &Paths,
    names: &[String],
    sandbox: Option<&str>,
    no_stream: bool,
    format: Format,
) -> Result<()> {
    let h = cgroup::Hierarchy::host()?;
    let sample = |targets: &[(String, String)]| targets.iter().map(|(_, cg)| cgroup::usage(&h, cg)).collect::<Vec<_>>();
    let mut targets = stat_targets(paths, names, sandbox)?;
    let mut before = sample(&targets);
    let mut t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(if no_stream { 200 } else { 1000 }));
        let after = sample(&targets);
        let wall = t0.elapsed().as_micros().max(1) as f64;
        let rows: Vec<serde_json::Value> = targets
            .iter()
            .zip(before.iter().zip(&after))
            .map(|((name, cg), (b, a))| {
                let cpu = (a.cpu_usec.saturating_sub(b.cpu_usec)) as f64 / wall * 100.0;
                serde_json::json!({
                    "name": name, "cgroup": cg, "cpu_percent": (cpu * 100.0).round() / 100.0,
                    "cpu_usage_usec": a.cpu_usec, "throttled_periods": a.throttled_periods,
                    "throttled_usec": a.throttled_usec, "memory_bytes": a.memory_bytes,
                    "memory_limit": a.memory_limit, "pids": a.pids, "pids_limit": a.pids_limit,
                    "oom_kills": a.oom_kills,
                })
            })
            .collect();
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            Format::Table => {
                if !no_stream {
                    print!("\x1b[2J\x1b[H");
                }
                let mut t = vec![[
                    "NAME".to_owned(),
                    "CPU %".into(),
                    "MEM USAGE / LIMIT".into(),
                    "MEM %".into(),
                    "PIDS".into(),
                    "THROTTLED".into(),
                ]];
                for ((name, _), a) in targets.iter().zip(&after) {
                    let row = rows.iter().find(|r| r["name"] == name.as_str()).cloned().unwrap_or_default();
                    let limit = a.memory_limit.map_or("unlimited".to_owned(), human);
                    let pct = a
                        .memory_limit
                        .map_or("-".to_owned(), |l| format!("{:.2}%", a.memory_bytes as f64 / l as f64 * 100.0));
                    t.push([
                        name.clone(),
                        format!("{:.2}%", row["cpu_percent"].as_f64().unwrap_or(0.0)),
                        format!("{} / {limit}", human(a.memory_bytes)),
                        pct,
                        a.pids.to_string(),
                        format!("{} periods", a.throttled_periods),
                    ]);
                }
                print!("{}", columns(&t));
            }
        }
        if no_stream {
            return Ok(());
        }
        targets = stat_targets(paths, names, sandbox)?;
        before = sample(&targets);
        t0 = std::time::Instant::now();
    }
}

pub(super) fn logs(paths: &Paths, id: &str, follow: bool) -> Result<()> {
    let c = container::load(paths, id)?;
    let path = paths.container(&c.id).join("log");
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) if !c.detached => {
            bail!("container {id} ran in the foreground: its output went to the terminal, not to a log")
        }
        Err(e) => return Err(e).context(format!("opening {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    loop {
        std::io::copy(&mut f, &mut out)?;
        out.flush()?;
        if !follow || !container::load(paths, id).is_ok_and(|c| live(&c)) {
            std::io::copy(&mut f, &mut out)?;
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub(super) fn sandbox_cmd(paths: &Paths, cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Create { name, hostname, share_pid, labels, limits, procview, userns } => {
            let limits = limits.limits()?;
            let (userns, pool) = userns.mode(paths)?;
            require_root()?;
            let mut map = std::collections::BTreeMap::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| anyhow::anyhow!("invalid label {l:?}: use KEY=VALUE"))?;
                map.insert(k.to_owned(), v.to_owned());
            }
            let opts = sandbox::CreateOptions {
                name,
                hostname,
                share_pid,
                labels: map,
                limits,
                procview: procview.into(),
                userns,
                pool,
            };
            let sb = sandbox::create(paths, opts)?;
            println!("{}", sb.name);
        }
        SandboxCommand::Ls { format, quiet } => sandbox_ls(paths, format, quiet)?,
        SandboxCommand::Rm { force, names } => {
            let store = open_store(&paths.root)?;
            let mut failed = false;
            for n in &names {
                match sandbox::remove(paths, &store, n, force) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("podrun: error: removing sandbox {n}: {}", advice::say(&e));
                        failed = true;
                    }
                }
            }
            if failed {
                bail!(crate::Reported);
            }
        }
        SandboxCommand::Inspect { name, format } => {
            let sb = sandbox::load(paths, &name)?;
            let rows = sandbox::matrix(paths, &sb);
            match format {
                Format::Json => {
                    let mut v = serde_json::to_value(&sb)?;
                    v["status"] = if sb.pause.alive() { "ready" } else { "notready" }.into();
                    v["namespaces"] = serde_json::to_value(&rows)?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Table => print!("{}", ns_table(&sb, &rows)),
            }
        }
    }
    Ok(())
}

/// `sandbox ls`: names only (-q), JSON, or the table.
fn sandbox_ls(paths: &Paths, format: Format, quiet: bool) -> Result<()> {
    let list = sandbox::list(paths);
    if quiet {
        for s in &list {
            println!("{}", s.name);
        }
        return Ok(());
    }
    let shared = |s: &podrun::state::SandboxState| sandbox::ns_kinds(s).iter().map(|k| k.name()).collect::<Vec<_>>();
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = list
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["status"] = if s.pause.alive() { "ready" } else { "notready" }.into();
                    v["shared"] = shared(s).into();
                    v["containers"] = sandbox::containers_of(paths, &s.name)
                        .iter()
                        .map(|c| c.id.to_string())
                        .collect::<Vec<_>>()
                        .into();
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let now = now();
            let mut t = vec![[
                "SANDBOX".to_owned(),
                "STATUS".into(),
                "CREATED".into(),
                "PAUSE PID".into(),
                "SHARED".into(),
                "CONTAINERS".into(),
            ]];
            for s in &list {
                let alive = s.pause.alive();
                let n = sandbox::containers_of(paths, &s.name).len();
                t.push([
                    s.name.clone(),
                    if alive { "Ready" } else { "NotReady" }.into(),
                    ago(now, s.created),
                    s.pause.pid.to_string(),
                    shared(s).join(","),
                    n.to_string(),
                ]);
            }
            print!("{}", columns(&t));
        }
    }
    Ok(())
}

/// What a pod's (or lone container's) user namespace maps, for people.
pub(super) fn userns_line(maps: Option<&podrun::idmap::IdMaps>) -> String {
    let list = |v: &[podrun::idmap::IdRange]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" ");
    match maps {
        None => "User namespace: the host's (container root is host root; --userns=auto isolates it).\n".into(),
        Some(m) => format!(
            "User namespace: uid map {}, gid map {} (CONTAINER:HOST:SIZE{}): container root is host uid {}.\n",
            list(&m.uid),
            list(&m.gid),
            if m.auto { ", from podrun's pool" } else { "" },
            m.root().0
        ),
    }
}

/// The namespace matrix for people: one row per process, one column per namespace type.
fn ns_table(sb: &podrun::state::SandboxState, rows: &[sandbox::NsRow]) -> String {
    let shared = sandbox::ns_kinds(sb).iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "Sandbox {} (hostname {}): the pod shares {shared}.\n{}\
         pod = the sandbox's namespace, held by pause and joined by its containers\n\
         own = this process's alone   host = the host's (not isolated)\n\n",
        sb.name,
        sb.hostname,
        userns_line(sb.userns.as_ref()),
    );
    if rows.is_empty() {
        out.push_str("(pause is not running: nothing to show; remove the sandbox with `podrun sandbox rm -f`)\n");
        return out;
    }
    let mut t: Vec<[String; 10]> = Vec::new();
    let mut head = [
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    head[0] = "PROCESS".into();
    head[1] = "PID".into();
    for (i, k) in podrun::ns::NsKind::ALL.iter().enumerate() {
        head[i + 2] = k.name().to_ascii_uppercase();
    }
    t.push(head);
    for r in rows {
        let mut row: [String; 10] = Default::default();
        row[0] = r.process.clone();
        row[1] = r.pid.to_string();
        for (i, k) in podrun::ns::NsKind::ALL.iter().enumerate() {
            row[i + 2] = match r.namespaces.get(k) {
                Some(c) if c.shared == "host" => "host".into(),
                Some(c) => format!("{} {}", c.shared, c.inode.map_or("?".into(), |n| n.to_string())),
                None => "?".into(),
            };
        }
        t.push(row);
    }
    out.push_str(&columns(&t));
    out
}
