//! The runc-compatible command line: what containerd's shim (go-runc), conmon and podman
//! call. Its contract is runc's, not podman's: global `--root` (the state of OCI
//! containers, default /run/podrun), `--log FILE` and `--log-format text|json` (errors
//! are written there as runc's logrus lines, also when the arguments are wrong), exit
//! status 1 on error, runc's words where clients match on them ("does not exist",
//! "container not running").
//!
//! Which command line a `podrun` call is (`is_oci`): runc's command words that podrun's
//! own command line does not have (create, state, delete, ...) are always runc's; those
//! both have (run, start, exec, kill, ps) are runc's when a runc-only global flag comes
//! first (`--log`, `--log-format`, `--systemd-cgroup`, ...), as containerd and conmon
//! always pass, when the id names a container in the OCI state root, or (run) with a
//! `--bundle`.

mod exec;
mod log;
mod output;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use podrun::container::ContainerError;
use podrun::lifecycle::bundle::{self, CreateOptions};
use podrun::lifecycle::status;

pub use log::LogFormat;

/// runc's command words that podrun's own command line does not have.
const OCI_ONLY: [&str; 9] = ["create", "state", "delete", "list", "features", "pause", "resume", "update", "events"];
/// Global flags only runc's command line has (with their value, if they take one).
const OCI_FLAGS: [(&str, bool); 6] = [
    ("--log", true),
    ("--log-format", true),
    ("--systemd-cgroup", false),
    ("--rootless", true),
    ("--criu", true),
    ("--debug", false),
];

/// Flags of runc's run, exec, kill and ps that take a value (to find the id after them).
const VALUE_FLAGS: [&str; 16] = [
    "-b",
    "--bundle",
    "--pid-file",
    "--console-socket",
    "--preserve-fds",
    "-p",
    "--process",
    "--cwd",
    "-e",
    "--env",
    "-u",
    "--user",
    "--cap",
    "-f",
    "--format",
    "--process-label",
];

/// Whether `args` (argv, with the program's name) is a runc command line: a runc-only
/// command word; or one both have, after a runc-only flag, or naming a container that is
/// in the OCI state root (`--root`, default /run/podrun).
pub fn is_oci(args: &[std::ffi::OsString]) -> bool {
    let mut oci_flag = false;
    let mut root = PathBuf::from(DEFAULT_ROOT);
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, _)) => (n.to_owned(), true),
            None => (a.to_string(), false),
        };
        if let Some(&(_, takes)) = OCI_FLAGS.iter().find(|(f, _)| *f == name) {
            oci_flag = true;
            if takes && !inline {
                it.next();
            }
            continue;
        }
        if name == "--root" || name == "--cgroup-parent" || name == "--subuid" || name == "--subgid" {
            let value =
                if inline { a.split_once('=').map(|(_, v)| v.to_owned()) } else { it.next().map(|v| v.into_owned()) };
            if name == "--root" {
                root = value.map(PathBuf::from).unwrap_or_default();
            }
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        if OCI_ONLY.contains(&a.as_ref()) {
            return true;
        }
        if !matches!(a.as_ref(), "run" | "start" | "exec" | "kill" | "ps") {
            return false;
        }
        if oci_flag {
            return true;
        }
        // The first word that is not a flag or a flag's value: the container's id.
        let mut id = None;
        let command = a.into_owned();
        while let Some(w) = it.next() {
            // podrun's own run takes an image, never a bundle.
            if command == "run" && (w == "-b" || w == "--bundle" || w.starts_with("--bundle=")) {
                return true;
            }
            if VALUE_FLAGS.contains(&w.as_ref()) {
                it.next();
            } else if !w.starts_with('-') {
                id = Some(w.into_owned());
                break;
            }
        }
        return id.is_some_and(|id| {
            podrun::ids::ContainerId::parse(&id).is_ok() && root.join(&id).join("state.json").is_file()
        });
    }
    false
}

/// runc's /run/runc, for podrun.
const DEFAULT_ROOT: &str = "/run/podrun";

#[derive(Parser)]
#[command(
    name = "podrun",
    version,
    about = "podrun's runc-compatible commands, for containerd, podman and other OCI clients",
    after_help = "These follow runc's command line: `--runc-binary` (ctr), `BinaryName` (containerd's runc \
shim options) or `--runtime` (podman) may name podrun. podrun's own commands are in `podrun --help`."
)]
pub struct OciCli {
    /// Where OCI containers' state lives.
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,
    /// Write errors (and, with --debug, more) to FILE as well as to stderr.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[arg(long, global = true)]
    debug: bool,
    /// Cgroups paths in systemd's slice:prefix:name form: podrun does not manage systemd
    /// units, and refuses it.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// runc's rootless mode: podrun runs as root only; `false` and `auto` (as root) are fine.
    #[arg(long, global = true, value_name = "true|false|auto")]
    rootless: Option<String>,
    /// Accepted for runc's command line; podrun does not checkpoint.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Subcommand)]
enum OciCommand {
    /// Create a container from a bundle: its init waits for `start`.
    Create {
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Start a created container's process.
    Start { id: String },
    /// Create and start a container (with -d, return once it runs).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
    },
    /// Print a container's state, as the runtime spec's JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to all its processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container: its processes (with --force also a running one), cgroup and state.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime supports, as the runtime spec's features JSON.
    Features,
    /// List a container's processes (host pids): --format json prints them as a JSON array.
    Ps {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        id: String,
        /// Options for ps(1), with --format table (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container's processes.
    Pause { id: String },
    /// Thaw a paused container's processes.
    Resume { id: String },
    /// Change a container's cgroup limits: --resources FILE (or - for stdin), the runtime
    /// spec's linux.resources JSON.
    Update {
        #[arg(short, long, value_name = "FILE|-")]
        resources: Option<PathBuf>,
        #[arg(long, value_name = "BYTES")]
        memory: Option<i64>,
        #[arg(long, value_name = "N")]
        pids_limit: Option<i64>,
        #[arg(long, value_name = "US")]
        cpu_quota: Option<i64>,
        #[arg(long, value_name = "US")]
        cpu_period: Option<u64>,
        id: String,
    },
    /// Run a process in a running container: --process FILE (the runtime spec's process
    /// JSON), or the container's process with COMMAND and these changes.
    Exec(Box<exec::ExecArgs>),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle: a directory with config.json.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    bundle: PathBuf,
    /// Write the init's pid to FILE.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to (process.terminal).
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    /// Refused: podrun always uses pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted: podrun makes no session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass the caller's descriptors 3 to 3+N-1 on to the process.
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    id: String,
}

/// Runs a runc command line; errors go to stderr and to `--log`, and give status 1.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    // The log's place is known even when the rest of the line is wrong.
    let logger = log::Logger::from_args(&args);
    let cli = match OciCli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                let _ = e.print();
                return 0;
            }
            let text = e.render().to_string();
            logger.error(text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            let _ = e.print();
            return 1;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            logger.error(&text);
            // Never a panic on a closed stderr (podman closes it during `state`).
            let _ = writeln!(std::io::stderr(), "{text}");
            1
        }
    }
}

/// The exit status of child `pid` as a shell gives it (128+N for signal N).
fn wait_exit(pid: i32) -> u8 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c as u8,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as u8,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

fn run(cli: OciCli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: podrun does not manage systemd units; run without it (cgroupfs paths)");
    }
    if cli.rootless.as_deref().is_some_and(|r| r == "true") || !nix::unistd::Uid::effective().is_root() {
        bail!("rootless mode is not supported: podrun runs containers as root (--rootless false or auto)");
    }
    let root = &cli.root;
    match cli.command {
        OciCommand::Create { create } => {
            bundle::create(root, &create.id, &create_options(&create)?).map_err(|e| runc_words(e, &create.id))?;
            Ok(0)
        }
        OciCommand::Start { id } => bundle::start(root, &id).map(|()| 0).map_err(|e| runc_words(e, &id)),
        OciCommand::Run { create, detach } => {
            let id = create.id.clone();
            // In the foreground podrun waits for the init as runc does: as its subreaper
            // (the init's parent, the join stage, has exited by then).
            if !detach {
                podrun::clone::set_subreaper().context("become a subreaper")?;
            }
            let c = bundle::create(root, &id, &create_options(&create)?).map_err(|e| runc_words(e, &id))?;
            if let Err(e) = bundle::start(root, &id) {
                let _ = bundle::delete(root, &id, true);
                return Err(runc_words(e, &id));
            }
            if detach {
                return Ok(0);
            }
            let code = c.init.map_or(0, |init| wait_exit(init.pid));
            bundle::delete(root, &id, true).map_err(|e| runc_words(e, &id))?;
            Ok(code)
        }
        OciCommand::State { id } => {
            let c = bundle::load(root, &id).map_err(|e| runc_words(e, &id))?;
            println!("{}", serde_json::to_string_pretty(&output::state_json(&c))?);
            Ok(0)
        }
        OciCommand::Kill { all, id, signal } => {
            let sig = parse_signal(&signal)?;
            bundle::kill(root, &id, sig, all).map(|()| 0).map_err(|e| runc_words(e, &id))
        }
        OciCommand::Delete { force, id } => match bundle::delete(root, &id, force) {
            Err(ContainerError::NotFound(_)) if force => {
                bundle::delete_remains(root, &id).map(|_| 0).map_err(|e| runc_words(e, &id))
            }
            r => r.map(|()| 0).map_err(|e| runc_words(e, &id)),
        },
        OciCommand::List { format, quiet } => {
            let all = bundle::list(root);
            if quiet {
                for c in &all {
                    println!("{}", c.id);
                }
            } else if format == "json" {
                let v: Vec<serde_json::Value> = all.iter().map(output::state_json).collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!("{:<12} {:<10} {:<10} {:<30} {:<20} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
                for c in &all {
                    let s = output::state_json(c);
                    println!(
                        "{:<12} {:<10} {:<10} {:<30} {:<20} {}",
                        c.id,
                        s["pid"].to_string(),
                        status(c).oci(),
                        c.bundle.as_deref().map(|b| b.display().to_string()).unwrap_or_default(),
                        s["created"].as_str().unwrap_or_default(),
                        "root"
                    );
                }
            }
            Ok(0)
        }
        OciCommand::Ps { format, id, ps_args } => {
            let pids = bundle::pids(root, &id).map_err(|e| runc_words(e, &id))?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
                return Ok(0);
            }
            output::ps_table(&pids, &ps_args)?;
            Ok(0)
        }
        OciCommand::Pause { id } => bundle::pause(root, &id, true).map(|()| 0).map_err(|e| runc_words(e, &id)),
        OciCommand::Resume { id } => bundle::pause(root, &id, false).map(|()| 0).map_err(|e| runc_words(e, &id)),
        OciCommand::Update { resources, memory, pids_limit, cpu_quota, cpu_period, id } => {
            let mut r: oci_spec::runtime::LinuxResources = match &resources {
                Some(f) if f.as_os_str() == "-" => serde_json::from_reader(std::io::stdin())
                    .context("--resources -: not the runtime spec's linux.resources JSON")?,
                Some(f) => {
                    let text = std::fs::read(f).with_context(|| format!("--resources {}", f.display()))?;
                    serde_json::from_slice(&text).with_context(|| {
                        format!("--resources {}: not the runtime spec's linux.resources JSON", f.display())
                    })?
                }
                None => Default::default(),
            };
            if let Some(m) = memory {
                let mut mem = r.memory().clone().unwrap_or_default();
                mem.set_limit(Some(m));
                r.set_memory(Some(mem));
            }
            if let Some(p) = pids_limit {
                r.set_pids(Some(oci_spec::runtime::LinuxPidsBuilder::default().limit(p).build()?));
            }
            if cpu_quota.is_some() || cpu_period.is_some() {
                let mut cpu = r.cpu().clone().unwrap_or_default();
                cpu.set_quota(cpu_quota.or(cpu.quota()));
                cpu.set_period(cpu_period.or(cpu.period()));
                r.set_cpu(Some(cpu));
            }
            bundle::update(root, &id, &r).map(|()| 0).map_err(|e| runc_words(e, &id))
        }
        OciCommand::Exec(a) => exec::exec(root, *a),
        OciCommand::Features => {
            println!("{}", serde_json::to_string_pretty(&output::features())?);
            Ok(0)
        }
    }
}

fn create_options(a: &CreateArgs) -> Result<CreateOptions> {
    if a.no_pivot {
        bail!("--no-pivot is not supported: podrun always pivots into the root filesystem");
    }
    Ok(CreateOptions {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        default_view: default_view()?,
    })
}

/// podrun's configuration file (PODRUN_CONFIG, default /etc/podrun/config.json).
const CONFIG: &str = "/etc/podrun/config.json";

/// The resource view of an OCI container whose spec does not ask (`oci.procview` in the
/// configuration: on, files or off); none without a configuration file.
fn default_view() -> Result<Option<podrun::state::ViewMode>> {
    let path = std::env::var_os("PODRUN_CONFIG").map_or_else(|| PathBuf::from(CONFIG), PathBuf::from);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Some(word) = v.get("oci").and_then(|o| o.get("procview")) else { return Ok(None) };
    serde_json::from_value(word.clone())
        .map(Some)
        .with_context(|| format!("{}: oci.procview is {word}: use \"on\", \"files\" or \"off\"", path.display()))
}

/// The errors clients match on, in runc's words.
fn runc_words(e: ContainerError, id: &str) -> anyhow::Error {
    match e {
        ContainerError::NotFound(_) => anyhow::anyhow!("container {id} does not exist"),
        ContainerError::NotRunning(_) => anyhow::anyhow!("container not running"),
        ContainerError::AlreadyRunning(_) => anyhow::anyhow!("cannot start an already running container"),
        ContainerError::Running(_) => {
            anyhow::anyhow!("cannot delete container {id} that is not stopped: running (use --force)")
        }
        ContainerError::NameInUse(_) => anyhow::anyhow!("container with id {id} already exists"),
        ContainerError::Paused(_) => anyhow::anyhow!("container {id} is paused"),
        ContainerError::NotPaused(_) => anyhow::anyhow!("container not paused"),
        e => anyhow::Error::new(e),
    }
}

/// A signal by name (KILL, SIGKILL) or number, as runc's kill takes it.
fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("invalid signal {s:?}"));
    }
    let name = s.to_ascii_uppercase();
    let full = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    full.parse::<Signal>().map_err(|_| anyhow::anyhow!("invalid signal {s:?}: use a name (TERM, SIGKILL) or a number"))
}

impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Text, LogFormat::Json]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<std::ffi::OsString> {
        std::iter::once("podrun").chain(s.split_whitespace()).map(Into::into).collect()
    }

    #[test]
    fn runc_words_and_runc_flags_make_a_runc_command_line() {
        assert!(is_oci(&args("create --bundle b c1")));
        assert!(is_oci(&args("--root /run/x --log /l --log-format json start c1")));
        assert!(is_oci(&args("--log=/l kill c1 9")));
        assert!(is_oci(&args("--root /r delete --force c1")));
        assert!(!is_oci(&args("run busybox true")), "podrun's own run");
        assert!(is_oci(&args("run -d --bundle /b c1")), "runc's run takes a bundle");
        assert!(!is_oci(&args("--root /var/lib/x start c1")), "podrun's own start");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("c1")).unwrap();
        std::fs::write(root.path().join("c1/state.json"), "{}").unwrap();
        let r = root.path().display();
        assert!(is_oci(&args(&format!("--root {r} start c1"))), "a container in the OCI root");
        assert!(is_oci(&args(&format!("--root={r} exec -e A=1 --cwd / c1 sh"))));
        assert!(!is_oci(&args(&format!("--root {r} start c2"))));
        assert!(!is_oci(&args("ps -a")));
        assert!(!is_oci(&args("sandbox create")));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
    }
}
