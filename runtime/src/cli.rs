//! The command line: clap definitions and each command's output. Library errors get their
//! context here with anyhow; `main.rs` turns them into exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use podrun::cgroup;
use podrun::container::{self, RunOutcome, RunRequest, Status};
use podrun::image::progress::{human, Progress};
use podrun::image::reference::ImageName;
use podrun::image::{ImageRecord, Store};
use podrun::sandbox;
use podrun::spec::{RunOptions, Volume};
use podrun::state::{now, ContainerState, Paths};

const ABOUT: &str = "podrun builds Kubernetes-style pods from scratch: a pause process holding shared \
namespaces, workload containers that join them, overlay root filesystems from image layers.";

#[derive(Parser)]
#[command(name = "podrun", version, about = ABOUT, propagate_version = true)]
pub struct Cli {
    /// Where podrun keeps images, containers and sandboxes.
    #[arg(long, global = true, env = "PODRUN_ROOT", default_value = "/var/lib/podrun", value_name = "DIR")]
    pub root: PathBuf,
    /// An existing cgroup to put podrun's own `podrun` cgroup in (default: the hierarchy's
    /// root), e.g. /kubepods.slice.
    #[arg(long, global = true, env = "PODRUN_CGROUP_PARENT", value_name = "PATH", value_parser = cgroup_parent)]
    pub cgroup_parent: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Import, list, inspect and remove images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create, list, inspect and remove sandboxes (pods).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Run a command in a new container, in a sandbox (--join) or on its own.
    #[command(after_help = "Examples:\n  \
        podrun run busybox echo hello\n  \
        podrun run -d --join web --name server busybox httpd -f -p 8080\n  \
        podrun run --rm --join web busybox wget -qO- http://127.0.0.1:8080/\n  \
        podrun run -it busybox sh\n\n\
        Exit status: the command's own, 128+N if signal N killed it; 125 podrun failed,\n\
        126 the command cannot be executed, 127 it was not found.")]
    Run(Box<RunArgs>),
    /// Run a command in a running container: every namespace, root, cwd, user and env of it.
    Exec(ExecArgs),
    /// List containers (running ones; -a for all).
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only container names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a detached container's output.
    Logs {
        /// Keep printing new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        container: String,
    },
    /// Send a signal to a container's init (default SIGKILL, as docker kill).
    Kill {
        container: String,
        /// KILL, TERM, SIGHUP, 9, ...
        #[arg(default_value = "KILL")]
        signal: String,
    },
    /// Remove containers; -f stops running ones first.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's state and OCI spec as JSON.
    Inspect { container: String },
    /// Resource use of running containers (all, or those named, or a sandbox's), like
    /// `docker stats`: memory against the limit, CPU, CPU throttling, processes.
    Stats {
        containers: Vec<String>,
        /// Only this sandbox's containers, and the pod's cgroup as a whole.
        #[arg(long, value_name = "SANDBOX")]
        sandbox: Option<String>,
        /// Print once instead of refreshing every second.
        #[arg(long)]
        no_stream: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox: a pause process holding the pod's ipc, net and uts namespaces (and
    /// pid with --share-pid) and its /dev/shm. Prints the sandbox's name.
    #[command(
        after_help = "Examples:\n  podrun sandbox create web\n  podrun sandbox create --share-pid --hostname app.local"
    )]
    Create {
        /// Name (default: pod-<random>); also the hostname unless --hostname.
        name: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// Share one pid namespace: pause is PID 1 of every container and reaps zombies,
        /// and ps in one container shows the others.
        #[arg(long)]
        share_pid: bool,
        /// KEY=VALUE, repeatable.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        limits: Box<LimitArgs>,
    },
    /// List sandboxes.
    #[command(visible_alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Remove a sandbox and its pause; -f stops and removes its containers first.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show which namespaces each process of the sandbox shares: the `lsns -p PID`
    /// comparison in one table.
    Inspect {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// Join this sandbox's namespaces (default: the container gets its own).
    #[arg(long, value_name = "SANDBOX")]
    pub join: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background; print the container's name; output goes to `podrun logs`.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// USER[:GROUP], names or numbers, resolved in the image.
    #[arg(short, long)]
    pub user: Option<String>,
    /// HOSTDIR:CTRDIR[:ro], repeatable.
    #[arg(short, long = "volume", value_name = "HOSTDIR:CTRDIR[:ro]")]
    pub volumes: Vec<String>,
    pub image: String,
    /// The command and its arguments (default: the image's Entrypoint and Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Resource limits, docker's flags: on the sandbox's cgroup they bind the whole pod; on a
/// container's, that container.
#[derive(Args)]
pub struct LimitArgs {
    /// Memory limit, e.g. 256m or 1g; the kernel's OOM killer acts beyond it.
    #[arg(short, long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap (docker's meaning); -1 for unlimited swap. Default: twice --memory.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPUs' worth of time per 100 ms, e.g. 0.5.
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Relative CPU weight, 2 to 262144 (1024 is the default share).
    #[arg(long, value_name = "N")]
    pub cpu_shares: Option<String>,
    /// CPUs it may run on, e.g. 0-1 or 0,2.
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Most processes at once; -1 for no limit.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Relative io weight, 1 to 10000 (cgroup v2).
    #[arg(long, value_name = "N")]
    pub io_weight: Option<String>,
    /// Read rate limit of a block device, e.g. /dev/sda:1m; repeatable (cgroup v2).
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Write rate limit of a block device, e.g. /dev/sda:1m; repeatable (cgroup v2).
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
}

impl LimitArgs {
    fn limits(&self) -> Result<cgroup::Limits> {
        let memory = self.memory.as_deref().map(cgroup::parse_size).transpose()?;
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(cgroup::parse_size(s)? as i64),
            // docker: the container may swap as much as its memory limit.
            None => memory.map(|m| (2 * m) as i64),
        };
        if let (Some(m), Some(t)) = (memory, memory_swap) {
            if t >= 0 && (t as u64) < m {
                bail!("--memory-swap must be at least --memory (it counts memory plus swap), or -1");
            }
        }
        Ok(cgroup::Limits {
            memory,
            memory_swap,
            cpu_quota: self.cpus.as_deref().map(cgroup::parse_cpus).transpose()?,
            cpu_shares: self.cpu_shares.as_deref().map(cgroup::parse_shares).transpose()?,
            cpuset_cpus: self.cpuset_cpus.clone(),
            pids: match self.pids_limit.as_deref() {
                Some(p) => cgroup::parse_pids(p)?,
                None => None,
            },
            io_weight: self.io_weight.as_deref().map(cgroup::parse_io_weight).transpose()?,
            device_read_bps: self
                .device_read_bps
                .iter()
                .map(|d| cgroup::parse_device_rate(d))
                .collect::<Result<_, _>>()?,
            device_write_bps: self
                .device_write_bps
                .iter()
                .map(|d| cgroup::parse_device_rate(d))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The flags `run` and `exec` share: how the process meets your terminal, and its env.
#[derive(Args)]
pub struct ProcessArgs {
    /// Keep stdin open (default: /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal (a pty in the container; yours goes raw meanwhile).
    #[arg(short, long)]
    pub tty: bool,
    /// KEY=VALUE, repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub process: ProcessArgs,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an image from a file or directory, detected by content: an OCI image layout
    /// (directory or tar, as `skopeo copy … oci-archive:` writes), a `docker save` archive,
    /// or a plain root filesystem tarball (.tar, .tar.gz, .tar.zst), which becomes a
    /// one-layer image.
    ///
    /// Layers are verified against their digests while they are read and stored once: an
    /// image sharing layers with one already here unpacks only what is new.
    #[command(after_help = "Examples:\n  \
        podrun image import rootfs-fixtures/out/busybox-oci\n  \
        podrun image import busybox.tar --name localhost/busybox:1.35\n  \
        podrun image import alpine-minirootfs.tar.gz --name alpine:3.20")]
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show everything podrun knows of images, as JSON.
    Inspect {
        /// Image names or ids.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove images by name or id. Removing a name that other names share only untags;
    /// layers no image uses any more are deleted.
    #[command(visible_alias = "remove")]
    Rm {
        /// Remove an image by id even when several names point at it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
}

#[derive(Args)]
pub struct ImportArgs {
    /// The OCI layout directory, archive or rootfs tarball.
    pub path: PathBuf,
    /// Name the image NAME[:TAG] (default: the name the archive carries, or for a rootfs
    /// tarball the file name). With several images in one archive, picks that one.
    #[arg(long, short = 'n', value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// Print only the image id; no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only image ids.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Runs the command; returns the exit status (a workload's own, for run and exec).
pub fn run(cli: Cli) -> Result<u8> {
    let paths = Paths { root: cli.root.clone(), cgroup_parent: cli.cgroup_parent.clone() };
    match cli.command {
        Command::Image(cmd) => image(&cli.root, cmd).map(|()| 0),
        Command::Sandbox(cmd) => sandbox_cmd(&paths, cmd).map(|()| 0),
        Command::Run(a) => run_cmd(&paths, *a),
        Command::Exec(a) => {
            require_root()?;
            let p = a.process;
            let exit = container::exec_in(&paths, &a.container, a.command, p.env, p.interactive, p.tty)?;
            Ok(exit.code.clamp(0, 255) as u8)
        }
        Command::Ps { all, format, quiet } => ps(&paths, all, format, quiet).map(|()| 0),
        Command::Logs { follow, container } => logs(&paths, &container, follow).map(|()| 0),
        Command::Kill { container, signal } => {
            let sig = parse_signal(&signal)?;
            container::kill(&paths, &container, sig)?;
            Ok(0)
        }
        Command::Rm { force, containers } => {
            let store = open_store(&cli.root)?;
            let mut failed = false;
            for c in &containers {
                match container::remove(&paths, &store, c, force) {
                    Ok(()) => println!("{c}"),
                    Err(e) => {
                        eprintln!("podrun: error: removing {c}: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!(crate::Reported);
            }
            Ok(0)
        }
        Command::Stats { containers, sandbox, no_stream, format } => {
            stats(&paths, &containers, sandbox.as_deref(), no_stream, format).map(|()| 0)
        }
        Command::Inspect { container } => {
            let c = container::load(&paths, &container)?;
            let spec: serde_json::Value =
                podrun::state::read_json(&paths.container(&c.id).join("config.json")).context("reading config.json")?;
            let mut v = serde_json::to_value(&c)?;
            v["status"] = status_word(&c).into();
            v["spec"] = spec;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
    }
}

/// An absolute cgroup path of plain components: no `..`, nothing odd.
fn cgroup_parent(s: &str) -> std::result::Result<String, String> {
    let ok = s.starts_with('/')
        && s.split('/').skip(1).all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        });
    if ok {
        Ok(s.trim_end_matches('/').to_owned())
    } else {
        Err("use an absolute cgroup path such as /kubepods.slice or /mygroup/pods".into())
    }
}

fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("podrun needs root to create namespaces and mounts; run it with sudo");
    }
    Ok(())
}

fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("invalid signal {s:?}"));
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<Signal>().map_err(|_| anyhow::anyhow!("invalid signal {s:?}: use a name (TERM, SIGKILL) or a number"))
}

fn run_cmd(paths: &Paths, a: RunArgs) -> Result<u8> {
    if a.detach && (a.process.interactive || a.process.tty) {
        bail!("-d cannot be combined with -i or -t: a detached container has no stdin or terminal; use `podrun exec -it` to get a shell in it");
    }
    require_root()?;
    let store = open_store(&paths.root)?;
    let volumes = a.volumes.iter().map(|v| Volume::parse(v)).collect::<Result<Vec<_>, _>>()?;
    let limits = a.limits.limits()?;
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

fn status_word(c: &ContainerState) -> String {
    match container::status(c) {
        Status::Created => "created".into(),
        Status::Running => "running".into(),
        Status::Exited(Some(e)) if e.oom_killed => format!("oomkilled({})", e.code),
        Status::Exited(Some(e)) => format!("exited({})", e.code),
        Status::Exited(None) => "exited(unknown)".into(),
    }
}

fn ps(paths: &Paths, all: bool, format: Format, quiet: bool) -> Result<()> {
    let now = now();
    let rows: Vec<ContainerState> =
        container::list(paths).into_iter().filter(|c| all || container::status(c) == Status::Running).collect();
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
                    serde_json::json!({
                        "id": c.id, "image": c.image, "command": c.command, "created": c.created,
                        "status": status_word(c), "sandbox": c.sandbox, "pid": c.init.map(|i| i.pid),
                        "exit_code": c.exit.map(|e| e.code), "oom_killed": c.exit.is_some_and(|e| e.oom_killed),
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
                "SANDBOX".into(),
            ]];
            for c in &rows {
                let mut cmd = c.command.join(" ");
                if cmd.len() > 24 {
                    cmd.truncate(21);
                    cmd.push_str("...");
                }
                let status = match container::status(c) {
                    Status::Created => "Created".to_owned(),
                    Status::Running => "Up".to_owned(),
                    Status::Exited(Some(e)) if e.oom_killed => {
                        format!("OOMKilled ({}) {}", e.code, ago(now, e.finished))
                    }
                    Status::Exited(Some(e)) => format!("Exited ({}) {}", e.code, ago(now, e.finished)),
                    Status::Exited(None) => "Exited".to_owned(),
                };
                t.push([
                    c.id.clone(),
                    c.image.clone(),
                    format!("\"{cmd}\""),
                    ago(now, c.created),
                    status,
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
            names.contains(&c.id)
        };
        if wanted && container::status(&c) == Status::Running {
            if let Some(cg) = c.cgroup.clone() {
                out.push((c.id.clone(), cg));
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

fn stats(paths: &Paths, names: &[String], sandbox: Option<&str>, no_stream: bool, format: Format) -> Result<()> {
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

fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

fn logs(paths: &Paths, id: &str, follow: bool) -> Result<()> {
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
        if !follow || container::load(paths, id).map_or(true, |c| container::status(&c) != Status::Running) {
            std::io::copy(&mut f, &mut out)?;
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn sandbox_cmd(paths: &Paths, cmd: SandboxCommand) -> Result<()> {
    match cmd {
        SandboxCommand::Create { name, hostname, share_pid, labels, limits } => {
            let limits = limits.limits()?;
            require_root()?;
            let mut map = std::collections::BTreeMap::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| anyhow::anyhow!("invalid label {l:?}: use KEY=VALUE"))?;
                map.insert(k.to_owned(), v.to_owned());
            }
            let sb = sandbox::create(paths, sandbox::CreateOptions { name, hostname, share_pid, labels: map, limits })?;
            println!("{}", sb.name);
        }
        SandboxCommand::Ls { format } => {
            let list = sandbox::list(paths);
            match format {
                Format::Json => {
                    let v: Vec<serde_json::Value> = list
                        .iter()
                        .map(|s| {
                            let mut v = serde_json::to_value(s).unwrap_or_default();
                            v["status"] = if s.pause.alive() { "ready" } else { "notready" }.into();
                            v["containers"] = sandbox::containers_of(paths, &s.name)
                                .iter()
                                .map(|c| c.id.clone())
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
                        let shared =
                            sandbox::ns_kinds(s.share_pid).iter().map(|k| k.name()).collect::<Vec<_>>().join(",");
                        let n = sandbox::containers_of(paths, &s.name).len();
                        t.push([
                            s.name.clone(),
                            if alive { "Ready" } else { "NotReady" }.into(),
                            ago(now, s.created),
                            s.pause.pid.to_string(),
                            shared,
                            n.to_string(),
                        ]);
                    }
                    print!("{}", columns(&t));
                }
            }
        }
        SandboxCommand::Rm { force, names } => {
            let store = open_store(&paths.root)?;
            let mut failed = false;
            for n in &names {
                match sandbox::remove(paths, &store, n, force) {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("podrun: error: removing sandbox {n}: {e}");
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

/// The namespace matrix for people: one row per process, one column per namespace type.
fn ns_table(sb: &podrun::state::SandboxState, rows: &[sandbox::NsRow]) -> String {
    let shared = sandbox::ns_kinds(sb.share_pid).iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "Sandbox {} (hostname {}): the pod shares {shared}.\n\
         pod = the sandbox's namespace, held by pause and joined by its containers\n\
         own = this process's alone   host = the host's (not isolated)\n\n",
        sb.name, sb.hostname
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

fn open_store(root: &Path) -> Result<Store> {
    Store::open(root)
        .with_context(|| format!("opening the image store at {} (is podrun running as root?)", root.display()))
}

fn image(root: &Path, cmd: ImageCommand) -> Result<()> {
    let store = open_store(root)?;
    match cmd {
        ImageCommand::Import(a) => {
            let name = a.name.as_deref().map(ImageName::parse).transpose()?;
            let mut progress = Progress::new(!a.quiet);
            let (img, names) = store
                .import(&a.path, name.as_ref(), &mut progress)
                .with_context(|| format!("importing {}", a.path.display()))?;
            if a.quiet {
                println!("{}", img.id);
            } else {
                for n in &names {
                    println!("Loaded image: {n}");
                }
            }
        }
        ImageCommand::Ls(a) => {
            let images = store.images()?;
            let mut out = std::io::stdout().lock();
            match (a.format, a.quiet) {
                (_, true) => {
                    for i in &images {
                        writeln!(out, "{}", i.id.short())?;
                    }
                }
                (Format::Json, false) => {
                    let rows: Vec<_> = images.iter().map(summary).collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
                }
                (Format::Table, false) => write!(out, "{}", table(&images, now()))?,
            }
        }
        ImageCommand::Inspect { images } => {
            let mut all = Vec::new();
            for r in &images {
                let img = store.resolve(r)?;
                let raw = store.config_bytes(&img.id)?;
                let mut v = serde_json::to_value(&img)?;
                v["size"] = img.size().into();
                v["image_config"] = serde_json::from_slice(&raw).context("reading the stored image config")?;
                all.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        ImageCommand::Rm { force, images } => {
            let mut failed = 0;
            for r in &images {
                match store.remove(r, force) {
                    Ok(rm) => {
                        for n in &rm.untagged {
                            println!("Untagged: {n}");
                        }
                        if let Some(id) = rm.deleted {
                            println!("Deleted: {id}");
                        }
                    }
                    Err(e) => {
                        eprintln!("podrun: error: removing {r}: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!(crate::Reported);
            }
        }
    }
    Ok(())
}

fn summary(i: &ImageRecord) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "names": i.names,
        "created": i.created,
        "imported": i.imported,
        "size": i.size(),
        "layers": i.layers.len(),
    })
}

/// `docker images` style: one row per name, `<none>` for an unnamed image.
fn table(images: &[ImageRecord], now: u64) -> String {
    let mut rows = vec![["REPOSITORY".to_owned(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
    for i in images {
        let created = i.created.as_deref().and_then(parse_rfc3339).map_or("N/A".to_owned(), |t| ago(now, t));
        let names: Vec<(String, String)> = if i.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.names.iter().map(|n| (n.repo().to_owned(), n.tag().to_owned())).collect()
        };
        for (repo, tag) in names {
            rows.push([repo, tag, i.id.short().to_owned(), created.clone(), human(i.size())]);
        }
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00Z`, fraction and offset
/// allowed); only what image configs carry.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86_400 + h * 3600 + mi * 60 + sec;
    let tz = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = tz.strip_prefix('+').map(|o| (1, o)).or_else(|| tz.strip_prefix('-').map(|o| (-1, o))) {
        let (sign, o) = off;
        let oh: i64 = o.get(0..2)?.parse().ok()?;
        let om: i64 = o.get(3..5)?.parse().ok()?;
        t -= sign * (oh * 3600 + om * 60);
    }
    u64::try_from(t).ok()
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fraction_and_offset() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456789Z"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(ago(100, 100), "Less than a minute ago");
        assert_eq!(ago(7200, 0), "2 hours ago");
        assert_eq!(ago(86_400, 0), "1 day ago");
        assert_eq!(ago(3 * 31_536_000, 0), "3 years ago");
    }
}
