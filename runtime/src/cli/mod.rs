//! The command line: clap definitions and dispatch (this file), the image commands
//! (image.rs), the pod and container commands (pod.rs), table formatting (table.rs), and
//! completions and man pages generated from these definitions (manual.rs).
//! Library errors get their context here with anyhow; `main.rs` turns them into exit codes.

mod advice;
mod image;
mod manual;
pub mod oci;
mod pod;
mod table;

use image::{image, open_store};
use pod::{logs, ps, run_cmd, sandbox_cmd, stats, status_word};

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use podrun::cgroup;
use podrun::container::{self, RunOutcome, RunRequest, Status};
use podrun::image::progress::human;
use podrun::sandbox;
use podrun::spec::{RunOptions, Seccomp, Volume};
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
    /// Where --userns=auto takes host uids from: the file's `podrun:START:COUNT` lines
    /// (default pool without any: 2147483648, 1073741824 ids).
    #[arg(long, global = true, env = "PODRUN_SUBUID", default_value = "/etc/subuid", value_name = "FILE")]
    pub subuid: PathBuf,
    /// As --subuid, for gids.
    #[arg(long, global = true, env = "PODRUN_SUBGID", default_value = "/etc/subgid", value_name = "FILE")]
    pub subgid: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// A user namespace, podman's flags.
#[derive(Args)]
pub struct UsernsArgs {
    /// auto: a user namespace with 65536 ids of its own from podrun's pool (container root
    /// is an unprivileged host uid; image layers are idmapped, never chowned); host: none
    /// (container root is host root). Default host.
    #[arg(long, value_name = "auto|host")]
    pub userns: Option<String>,
    /// CONTAINER:HOST:SIZE, repeatable: a user namespace with this uid map (the gid map
    /// defaults to it).
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// CONTAINER:HOST:SIZE, repeatable (the uid map defaults to it).
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub gidmap: Vec<String>,
}

impl UsernsArgs {
    fn mode(&self, paths: &Paths) -> Result<(podrun::idmap::UsernsMode, podrun::idmap::Pool)> {
        let mode = podrun::idmap::UsernsMode::parse(self.userns.as_deref(), &self.uidmap, &self.gidmap)?;
        Ok((mode, podrun::idmap::Pool::load(&paths.subuid, &paths.subgid)))
    }
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
    /// Start a container that is not running again (detached, output to its log), from its
    /// own rootfs, with its restart policy. Also how supervision resumes after podrun's
    /// monitor was killed: a container `ps` shows as "Up (unsupervised)" gets a new monitor
    /// and keeps running.
    #[command(
        after_help = "Examples:\n  podrun start server      # after it exited, or was killed\n  podrun start server      # it runs unsupervised: watch it again"
    )]
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
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
    /// Send a signal to a container's init (default SIGKILL, as docker kill). KILL, TERM and
    /// INT also stop it for good: its restart policy does not start it again (`podrun start`
    /// does). In a restart back-off, any signal stops it.
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
    /// Print a completion script for SHELL, generated from the same definitions as --help;
    /// docs/install-extras.md says where each shell looks for it.
    #[command(after_help = "Examples:\n  \
        podrun completion bash > /usr/local/share/bash-completion/completions/podrun\n  \
        podrun completion zsh > /usr/local/share/zsh/site-functions/_podrun\n  \
        podrun completion fish > /usr/local/share/fish/vendor_completions.d/podrun.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// For packagers: write a man page for each command (podrun.1, podrun-sandbox-ls.1, ...)
    /// to DIR and print their paths; see docs/install-extras.md.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
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
        /// The resource view for the pod's containers (each may override it with its own
        /// --procview): on, files or off, as for `run`.
        #[arg(long, value_enum, default_value_t = Procview::On)]
        procview: Procview,
        /// The pod's user namespace, shared by all its containers.
        #[command(flatten)]
        userns: UsernsArgs,
    },
    /// List sandboxes.
    #[command(visible_alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only sandbox names.
        #[arg(short, long)]
        quiet: bool,
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
    /// Start it again when it ends: never (the default), always, or on-failure[:MAX] (after
    /// a non-zero exit, an OOM kill included, at most MAX times). Needs -d. `podrun kill`
    /// or `rm` stops it for good.
    #[arg(long, value_name = "POLICY", value_parser = restart_policy)]
    pub restart: Option<podrun::restart::Policy>,
    /// INITIAL[:CAP]: wait INITIAL before the first restart, doubling up to CAP (default
    /// 10s:5m, as Kubernetes); a run longer than 2 x CAP starts again from INITIAL.
    #[arg(long, value_name = "INITIAL[:CAP]", value_parser = restart_backoff)]
    pub restart_backoff: Option<podrun::restart::Backoff>,
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The resource view (default: on, or the sandbox's setting). on: /proc files (meminfo,
    /// cpuinfo, stat, uptime, loadavg, vmstat, diskstats, swaps, pressure) and
    /// /sys/devices/system/cpu and node0 files computed from the container's limits,
    /// sysinfo(2) answered likewise, and CPU affinity cut to the view's CPU count (nproc);
    /// files: the files only; off: the host's files (docs/view.md lists each file).
    #[arg(long, value_enum)]
    pub procview: Option<Procview>,
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// USER[:GROUP], names or numbers, resolved in the image.
    #[arg(short, long)]
    pub user: Option<String>,
    /// HOSTDIR:CTRDIR[:OPTIONS], repeatable; OPTIONS a comma list of ro, rw, and, in a user
    /// namespace, idmap (the default: ownership seen through its maps) or noidmap.
    #[arg(short, long = "volume", value_name = "HOSTDIR:CTRDIR[:OPTIONS]")]
    pub volumes: Vec<String>,
    /// HOSTDEV[:CTRPATH][:PERMS]: give the container a host device (PERMS of r, w, m;
    /// default rwm), e.g. --device /dev/sdb:/dev/xvdb:r. Only null, zero, full, random,
    /// urandom, tty, console and pseudo-terminals open otherwise. Repeatable.
    #[arg(long = "device", value_name = "HOSTDEV[:CTRPATH][:PERMS]")]
    pub devices: Vec<String>,
    /// seccomp=unconfined: no seccomp profile (by default, what Docker's default profile
    /// refuses gets EPERM: mount, unshare, setns, keyctl, bpf, kexec, modules, ...);
    /// seccomp=FILE: an OCI `linux.seccomp` JSON object instead.
    #[arg(long = "security-opt", value_name = "seccomp=unconfined|FILE")]
    pub security_opt: Vec<String>,
    /// Its own user namespace (not with --join: a joined container has its sandbox's).
    #[command(flatten)]
    pub userns: UsernsArgs,
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
            devices: None,
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
    let paths = Paths {
        root: cli.root.clone(),
        cgroup_parent: cli.cgroup_parent.clone(),
        subuid: cli.subuid.clone(),
        subgid: cli.subgid.clone(),
    };
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
        Command::Start { containers } => {
            require_root()?;
            let store = open_store(&cli.root)?;
            let mut failed = false;
            for c in &containers {
                match podrun::monitor::start(&paths, &store, c) {
                    Ok(()) => println!("{c}"),
                    Err(e) => {
                        eprintln!("podrun: error: starting {c}: {}", advice::say(&e));
                        failed = true;
                    }
                }
            }
            if failed {
                bail!(crate::Reported);
            }
            Ok(0)
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
                        eprintln!("podrun: error: removing {c}: {}", advice::say(&e));
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
        Command::Completion { shell } => manual::completion(shell).map(|()| 0),
        Command::Man { dir } => manual::man_pages(&dir).map(|()| 0),
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

fn restart_policy(s: &str) -> std::result::Result<podrun::restart::Policy, String> {
    podrun::restart::Policy::parse(s).map_err(|e| e.to_string())
}

fn restart_backoff(s: &str) -> std::result::Result<podrun::restart::Backoff, String> {
    podrun::restart::Backoff::parse(s).map_err(|e| e.to_string())
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

/// `--procview`: how much of the resource view a container gets (the library's ViewMode,
/// which knows nothing of flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Procview {
    /// The files, and CPU affinity limited to the view's CPU count (so `nproc` agrees).
    On,
    /// Only the files.
    Files,
    /// Nothing: the host's files.
    Off,
}

impl From<Procview> for podrun::state::ViewMode {
    fn from(p: Procview) -> Self {
        match p {
            Procview::On => Self::On,
            Procview::Files => Self::Files,
            Procview::Off => Self::Off,
        }
    }
}

pub use advice::report;
