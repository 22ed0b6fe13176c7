//! `runc exec`: a process in a running container, from a process file or from the
//! container's own process with a command and the flags' changes.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use podrun::lifecycle::bundle;

use super::runc_words;

#[derive(clap::Args)]
pub(super) struct ExecArgs {
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    #[arg(short, long)]
    tty: bool,
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// UID[:GID] (numbers).
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    #[arg(short = 'g', long, value_name = "GID")]
    additional_gids: Vec<u32>,
    /// Add a capability (CAP_NET_ADMIN) to the process's sets.
    #[arg(short, long, value_name = "CAP")]
    cap: Vec<String>,
    #[arg(long)]
    no_new_privs: bool,
    /// Pass the caller's descriptors 3 to 3+N-1 on to the process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `runc exec`: the process from --process, or the container's own with the command and
/// the flags' changes.
pub(super) fn exec(root: &std::path::Path, a: ExecArgs) -> Result<u8> {
    let id = a.id.clone();
    let mut process: oci_spec::runtime::Process = match &a.process {
        Some(f) => {
            let text = std::fs::read(f).with_context(|| format!("--process {}", f.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("--process {}: not the runtime spec's process JSON", f.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command, or --process FILE");
            }
            let c = bundle::load(root, &id).map_err(|e| runc_words(e, &id))?;
            let spec = bundle::run_spec(&c).map_err(|e| runc_words(e, &id))?;
            let mut p = spec.process().clone().unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            p
        }
    };
    if a.tty {
        process.set_terminal(Some(true));
    }
    if let Some(cwd) = &a.cwd {
        process.set_cwd(cwd.into());
    }
    if !a.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for e in &a.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        process.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let bad = || anyhow::anyhow!("--user {u:?}: give UID[:GID] as numbers");
        let mut user = process.user().clone();
        user.set_uid(uid.parse().map_err(|_| bad())?);
        user.set_gid(gid.parse().map_err(|_| bad())?);
        process.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = process.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        process.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability =
                name.parse().map_err(|_| anyhow::anyhow!("--cap {name:?}: not a capability (CAP_NET_ADMIN, ...)"))?;
            for set in [caps.bounding().clone(), caps.effective().clone(), caps.permitted().clone()].iter().enumerate()
            {
                let mut v = set.1.clone().unwrap_or_default();
                v.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(v)),
                    1 => caps.set_effective(Some(v)),
                    _ => caps.set_permitted(Some(v)),
                };
            }
        }
        process.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    let opts = bundle::ExecOptions {
        preserve_fds: a.preserve_fds,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        detach: a.detach,
    };
    bundle::exec(root, &id, process, &opts).map_err(|e| runc_words(e, &id))
}
