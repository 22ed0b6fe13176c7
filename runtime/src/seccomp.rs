//! Seccomp filters from the spec's `linux.seccomp`: compiled to classic BPF by podrun before
//! any fork, installed by the container's process before it gives up its capabilities, and,
//! where a rule says SCMP_ACT_NOTIFY, its listener handed to the agent at `listenerPath` as
//! the OCI runtime spec's seccomp-notify protocol says (a unix stream socket; the listener
//! with SCM_RIGHTS, and the container process state as JSON). podrun's own agent is the
//! resource view's keeper, which answers sysinfo(2) (see procview.rs).
//!
//! Rules match by syscall name on the machine's own architecture. A call from another ABI
//! (i386 or x32 on x86_64) gets the default action.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxSeccomp, Spec};

use crate::sync::StageError;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp rule for {0}: conditions on syscall arguments are not supported")]
    Args(String),
    #[error("seccomp: the spec asks for SCMP_ACT_NOTIFY but gives no listenerPath")]
    NoListener,
    #[error("cannot reach the seccomp agent at {path}; if that is the resource view's socket, it is restarted once this root has no containers or sandboxes left; until then use --procview=files")]
    Agent { path: PathBuf, source: std::io::Error },
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// x32 system calls on x86_64 have this bit set in their number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The syscalls rules may name, with their numbers on this architecture. A name not here is
/// skipped, as runc and crun skip names libseccomp does not know.
const SYSCALLS: &[(&str, libc::c_long)] = &[
    ("sysinfo", libc::SYS_sysinfo),
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("init_module", libc::SYS_init_module),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mount", libc::SYS_mount),
    ("move_mount", libc::SYS_move_mount),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("ptrace", libc::SYS_ptrace),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("setdomainname", libc::SYS_setdomainname),
    ("sethostname", libc::SYS_sethostname),
    ("settimeofday", libc::SYS_settimeofday),
    ("setns", libc::SYS_setns),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("vhangup", libc::SYS_vhangup),
];

fn syscall_nr(name: &str) -> Option<u32> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr as u32)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

/// `if A == k` run the next instruction, else skip it.
fn if_eq(k: u32) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt: 0, jf: 1, k }
}

fn ret(action: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, action)
}

/// The BPF program for `s`: other ABIs get the default action; then each named syscall its
/// rule's action, the first rule naming it winning; everything else the default action.
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    const NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    let default = s.default_action().as_u32(s.default_errno_ret());
    let load = |off| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, off);
    let mut p = vec![load(ARCH), libc::sock_filter { jt: 1, jf: 0, ..if_eq(AUDIT_ARCH) }, ret(default), load(NR)];
    #[cfg(target_arch = "x86_64")]
    p.extend([
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        ret(default),
    ]);
    let mut seen = std::collections::HashSet::new();
    for rule in s.syscalls().iter().flatten() {
        if rule.args().as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(SeccompError::Args(rule.names().join(",")));
        }
        let action = rule.action().as_u32(rule.errno_ret());
        for nr in rule.names().iter().filter_map(|n| syscall_nr(n)) {
            if seen.insert(nr) {
                p.extend([if_eq(nr), ret(action)]);
            }
        }
    }
    p.push(ret(default));
    Ok(p)
}

/// A compiled filter, and for SCMP_ACT_NOTIFY the agent's connection (made in podrun,
/// before the container's process leaves the host's mount namespace) and what to tell it.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    agent: Option<(OwnedFd, String)>,
}

impl Filter {
    /// The filter `spec` asks for, if any. `id` and `bundle` go into the agent's state.
    pub fn prepare(spec: &Spec, id: &str, bundle: &Path) -> Result<Option<Filter>, SeccompError> {
        let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else { return Ok(None) };
        let program = compile(s)?;
        let notify =
            s.syscalls().iter().flatten().any(|r| r.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActNotify);
        let agent = if notify {
            let path = s.listener_path().as_ref().ok_or(SeccompError::NoListener)?;
            let conn =
                UnixStream::connect(path).map_err(|source| SeccompError::Agent { path: path.clone(), source })?;
            let state = serde_json::json!({
                "ociVersion": "1.0.2",
                "fds": ["seccompFd"],
                "pid": 0,
                "metadata": s.listener_metadata().clone().unwrap_or_default(),
                "state": {"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": 0, "bundle": bundle},
            });
            Some((OwnedFd::from(conn), state.to_string()))
        } else {
            None
        };
        Ok(Some(Filter { program, agent }))
    }

    /// Installs the filter on this process (it needs CAP_SYS_ADMIN or no_new_privs) and
    /// hands the listener, if any, to the agent. The state's pids are 0: this process
    /// cannot name itself in podrun's pid namespace, and podrun's agent takes the caller
    /// from each notification.
    pub fn install(&self) -> Result<(), StageError> {
        const STAGE: &str = "seccomp";
        let prog = libc::sock_fprog { len: self.program.len() as u16, filter: self.program.as_ptr() as *mut _ };
        let flags = if self.agent.is_some() { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { 0 };
        // SAFETY: prog points at the program, alive for the call.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog) };
        let rc = Errno::result(rc).map_err(StageError::at(STAGE, "install the seccomp filter"))?;
        if let Some((conn, state)) = &self.agent {
            // SAFETY: with NEW_LISTENER, seccomp returns a new descriptor that is ours.
            let listener = unsafe { OwnedFd::from_raw_fd(rc as i32) };
            podrun_procfs::notify::send_fd(conn.as_raw_fd(), listener.as_raw_fd(), state.as_bytes()).map_err(|e| {
                StageError::new(
                    STAGE,
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    "hand the listener to the seccomp agent",
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn rule(names: &[&str], action: LinuxSeccompAction) -> oci_spec::runtime::LinuxSyscall {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(action)
            .build()
            .unwrap()
    }

    /// Runs `prog` on (arch, nr) the way the kernel would: enough of classic BPF for the
    /// programs `compile` makes.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = if i.k == 4 { arch } else { nr },
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf })
                }
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                    pc += usize::from(if a >= i.k { i.jt } else { i.jf })
                }
                _ => panic!("unexpected instruction {code:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn filter_acts_on_the_named_calls_of_this_abi_only() {
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                rule(&["sysinfo", "no_such_call"], LinuxSeccompAction::ScmpActNotify),
                rule(&["keyctl"], LinuxSeccompAction::ScmpActErrno),
                rule(&["sysinfo"], LinuxSeccompAction::ScmpActKillProcess),
            ])
            .build()
            .unwrap();
        let p = compile(&s).unwrap();
        let sysinfo = libc::SYS_sysinfo as u32;
        assert_eq!(run(&p, AUDIT_ARCH, sysinfo), libc::SECCOMP_RET_USER_NOTIF, "the first rule wins");
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_keyctl as u32), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_getpid as u32), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, 0x4000_0003, sysinfo), libc::SECCOMP_RET_ALLOW, "i386: the default");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&p, AUDIT_ARCH, sysinfo | X32_SYSCALL_BIT), libc::SECCOMP_RET_ALLOW, "x32: the default");
    }

    #[test]
    fn argument_conditions_are_refused_not_ignored() {
        let mut r = rule(&["personality"], LinuxSeccompAction::ScmpActAllow);
        r.set_args(Some(vec![oci_spec::runtime::LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(8u64)
            .op(oci_spec::runtime::LinuxSeccompOperator::ScmpCmpEq)
            .build()
            .unwrap()]));
        let s = LinuxSeccompBuilder::default().syscalls(vec![r]).build().unwrap();
        assert!(matches!(compile(&s), Err(SeccompError::Args(_))));
    }
}
