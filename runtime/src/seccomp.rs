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
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall, LinuxSyscallBuilder, Spec};

use crate::sync::Stage;
use crate::sync::StageError;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp rule for {0}")]
    Args(String),
    #[error("seccomp: the filter would have {0} instructions; the kernel takes at most 4096")]
    TooLong(usize),
    #[error("seccomp: the spec asks for SCMP_ACT_NOTIFY but gives no listenerPath")]
    NoListener,
    #[error("cannot reach the seccomp agent at {path}")]
    Agent { path: PathBuf, source: std::io::Error },
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
/// x32 system calls on x86_64 have this bit set in their number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("podrun's seccomp filters need a system call table for this architecture (see seccomp_x86_64.rs)");

/// A system call's number on this architecture, by name. Names not known (other
/// architectures' calls, or newer ones) are skipped, as runc and crun skip names libseccomp
/// does not know.
fn syscall_nr(name: &str) -> Option<u32> {
    crate::seccomp_x86_64::X86_64.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr)
}

/// What Docker's (and containerd's RuntimeDefault) profile refuses a container with the
/// default capabilities, written as a deny list: kernel modules, kexec, keyrings, bpf,
/// perf, fanotify, file handles, mounts and new namespaces, clock and swap changes, NUMA
/// policy, userfaultfd, obsolete calls. Each gets EPERM, as the capability check would
/// give. ptrace and process_vm_* stay allowed (as in Docker since Linux 4.8: the kernel
/// confines them to the container's own processes).
const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "afs_syscall",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "getpmsg",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "putpmsg",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "security",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "syslog",
    "tuxcall",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vserver",
];

/// The namespace flags of clone(2) that Docker's profile refuses (CLONE_NEWNS, NEWCGROUP,
/// NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET): a container makes no new namespaces.
const CLONE_NAMESPACES: [u64; 7] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000];

/// personality(2) values Docker allows: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0x0, 0x0002_0000, 0x8, 0x0002_0008, 0xffff_ffff];

/// AF_VSOCK: sockets to the hypervisor, which Docker's profile refuses.
const AF_VSOCK: u64 = 40;

/// podrun's default seccomp profile (see DENIED): everything else is allowed. clone3 gets
/// ENOSYS, as in Docker's profile: its flags live in memory a filter cannot read, and
/// glibc falls back to clone(2), whose flags it can.
pub fn default_profile() -> Vec<LinuxSyscall> {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator as Op};
    let arg = |index: usize, op: Op, value: u64, two: Option<u64>| {
        let mut b = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
        if let Some(t) = two {
            b = b.value_two(t);
        }
        b.build().expect("all fields set")
    };
    let rule = |names: Vec<String>, errno: u32, args: Vec<LinuxSeccompArg>| {
        let mut r = LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno)
            .build()
            .expect("all fields set");
        if !args.is_empty() {
            r.set_args(Some(args));
        }
        r
    };
    let eperm = libc::EPERM as u32;
    let mut v = vec![rule(DENIED.iter().map(|s| s.to_string()).collect(), eperm, vec![])];
    v.push(rule(vec!["clone3".into()], libc::ENOSYS as u32, vec![]));
    for flag in CLONE_NAMESPACES {
        v.push(rule(vec!["clone".into()], eperm, vec![arg(0, Op::ScmpCmpMaskedEq, flag, Some(flag))]));
    }
    v.push(rule(
        vec!["personality".into()],
        eperm,
        PERSONALITIES.iter().map(|&p| arg(0, Op::ScmpCmpNe, p, None)).collect(),
    ));
    v.push(rule(vec!["socket".into()], libc::EAFNOSUPPORT as u32, vec![arg(0, Op::ScmpCmpEq, AF_VSOCK, None)]));
    v
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(op: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | op | libc::BPF_K) as u16, jt, jf, k }
}

fn ret(action: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, action)
}

fn load(offset: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

/// A jump offset that means "this condition failed": patched to the end of the rule.
const FAIL: u8 = u8::MAX;

/// The instructions testing one argument condition: they fall through when it holds and
/// jump FAIL when it does not. Arguments are 64 bits, compared as two 32-bit halves (high
/// first); little-endian, so the low half is at the lower offset.
fn condition(arg: &LinuxSeccompArg) -> Result<Vec<libc::sock_filter>, String> {
    use oci_spec::runtime::LinuxSeccompOperator as Op;
    if arg.index() > 5 {
        return Err(format!("argument index {} (0 to 5)", arg.index()));
    }
    let lo_at = 16 + 8 * arg.index() as u32; // offsetof(struct seccomp_data, args[i])
    let hi_at = lo_at + 4;
    let (vhi, vlo) = ((arg.value() >> 32) as u32, arg.value() as u32);
    let (jeq, jgt, jge) = (libc::BPF_JEQ, libc::BPF_JGT, libc::BPF_JGE);
    Ok(match arg.op() {
        Op::ScmpCmpEq => vec![load(hi_at), jump(jeq, vhi, 0, FAIL), load(lo_at), jump(jeq, vlo, 0, FAIL)],
        // Holds when either half differs: a different high half skips the low test.
        Op::ScmpCmpNe => vec![load(hi_at), jump(jeq, vhi, 0, 2), load(lo_at), jump(jeq, vlo, FAIL, 0)],
        Op::ScmpCmpMaskedEq => {
            let want = arg.value_two().ok_or("SCMP_CMP_MASKED_EQ without valueTwo")?;
            let and = |m: u32| stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, m);
            vec![
                load(hi_at),
                and(vhi),
                jump(jeq, (want >> 32) as u32, 0, FAIL),
                load(lo_at),
                and(vlo),
                jump(jeq, want as u32, 0, FAIL),
            ]
        }
        // Unsigned: a greater (or smaller) high half decides; an equal one defers to the low.
        Op::ScmpCmpGt | Op::ScmpCmpGe => vec![
            load(hi_at),
            jump(jgt, vhi, 3, 0),
            jump(jeq, vhi, 0, FAIL),
            load(lo_at),
            jump(if arg.op() == Op::ScmpCmpGt { jgt } else { jge }, vlo, 0, FAIL),
        ],
        Op::ScmpCmpLt | Op::ScmpCmpLe => vec![
            load(hi_at),
            jump(jge, vhi, 0, 3),
            jump(jeq, vhi, 0, FAIL),
            load(lo_at),
            jump(if arg.op() == Op::ScmpCmpLt { jge } else { jgt }, vlo, FAIL, 0),
        ],
    })
}

/// One rule's code: its conditions (all must hold), then its action; a failed condition
/// jumps past the end, to the next rule for the same call.
fn rule_code(args: &[LinuxSeccompArg], action: u32) -> Result<Vec<libc::sock_filter>, String> {
    let mut code = Vec::new();
    for a in args {
        code.extend(condition(a)?);
    }
    code.push(ret(action));
    let end = code.len();
    for (i, insn) in code.iter_mut().enumerate() {
        let to_end = u8::try_from(end - i - 1).map_err(|_| "too many conditions in one rule".to_owned())?;
        if insn.jt == FAIL {
            insn.jt = to_end;
        }
        if insn.jf == FAIL {
            insn.jf = to_end;
        }
    }
    Ok(code)
}

/// Code that sends the call numbered A to its block (each ends in a return), or returns
/// `default`: a binary search on the (sorted) numbers down to runs of a few, then a test
/// each. A call then passes a handful of tests, not one per named call; this matters at
/// install too, where the kernel runs the filter for every call number to precompute
/// which are always allowed.
fn dispatch(blocks: &[(u32, Vec<libc::sock_filter>)], default: u32) -> Vec<libc::sock_filter> {
    let ja = |n: usize| stmt(libc::BPF_JMP | libc::BPF_JA, n as u32);
    let mut p = Vec::new();
    if blocks.len() <= 4 {
        for (nr, code) in blocks {
            // if (A != nr) skip the block (BPF_JA takes a 32-bit offset).
            p.extend([jump(libc::BPF_JEQ, *nr, 1, 0), ja(code.len())]);
            p.extend_from_slice(code);
        }
        p.push(ret(default));
        return p;
    }
    let (low, high) = blocks.split_at(blocks.len() / 2);
    let left = dispatch(low, default);
    // if (A >= first of the upper half) jump over the lower half's code.
    p.extend([jump(libc::BPF_JGE, high[0].0, 0, 1), ja(left.len())]);
    p.extend(left);
    p.extend(dispatch(high, default));
    p
}

/// Whether an action lets the call happen (possibly after an agent looked at it).
fn permits(action: u32) -> bool {
    matches!(action, libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG | libc::SECCOMP_RET_USER_NOTIF)
}

/// The BPF program for `s`. For each named call on this architecture, its rules in the
/// order given, each with its argument conditions (ANDed): the first rule that matches
/// decides; a call no rule matches gets the default action.
///
/// Calls from another ABI (i386 or x32 on x86_64) are numbered differently, so the rules
/// cannot be applied to them: they get the default action when no rule refuses anything
/// (e.g. the resource view's sysinfo rule alone), and ENOSYS otherwise, so that a deny-list
/// profile such as the default one cannot be bypassed through them.
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    const NR: u32 = 0; // offsetof(struct seccomp_data, nr)
    const ARCH: u32 = 4; // offsetof(struct seccomp_data, arch)
    let default = s.default_action().as_u32(s.default_errno_ret());
    let rules: Vec<_> = s.syscalls().iter().flatten().collect();
    let refuses = !permits(default) || rules.iter().any(|r| !permits(r.action().as_u32(r.errno_ret())));
    let foreign = if refuses && permits(default) { libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32 } else { default };
    let mut p = vec![load(ARCH), jump(libc::BPF_JEQ, AUDIT_ARCH, 1, 0), ret(foreign), load(NR)];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1), ret(foreign)]);
    // Calls in order of first mention, each with its rules' code.
    let mut blocks: Vec<(u32, Vec<libc::sock_filter>)> = Vec::new();
    for rule in &rules {
        let action = rule.action().as_u32(rule.errno_ret());
        let args = rule.args().as_deref().unwrap_or_default();
        let code =
            rule_code(args, action).map_err(|e| SeccompError::Args(format!("{}: {e}", rule.names().join(","))))?;
        for nr in rule.names().iter().filter_map(|n| syscall_nr(n)) {
            match blocks.iter_mut().find(|(n, _)| *n == nr) {
                Some((_, b)) => b.extend_from_slice(&code),
                None => blocks.push((nr, code.clone())),
            }
        }
    }
    for (_, code) in &mut blocks {
        // A call whose every rule has conditions that may all fail ends with the default.
        code.push(ret(default));
    }
    blocks.sort_by_key(|(nr, _)| *nr);
    p.extend(dispatch(&blocks, default));
    // BPF_MAXINSNS.
    if p.len() > 4096 {
        return Err(SeccompError::TooLong(p.len()));
    }
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
        const STAGE: Stage = Stage::Seccomp;
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

    /// Runs `prog` on (arch, nr, args) the way the kernel would: enough of classic BPF for
    /// the programs `compile` makes.
    fn run_args(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let v = args[(o as usize - 16) / 8];
                    if (o - 16) % 8 == 0 {
                        v as u32
                    } else {
                        (v >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            let (jt, jf) = (usize::from(i.jt), usize::from(i.jf));
            let k = libc::BPF_K;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = word(i.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | k => a &= i.k,
                c if c == libc::BPF_RET | k => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | k => pc += if a == i.k { jt } else { jf },
                c if c == libc::BPF_JMP | libc::BPF_JGT | k => pc += if a > i.k { jt } else { jf },
                c if c == libc::BPF_JMP | libc::BPF_JGE | k => pc += if a >= i.k { jt } else { jf },
                _ => panic!("unexpected instruction {code:#x}"),
            }
            pc += 1;
        }
    }

    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        run_args(prog, arch, nr, [0; 6])
    }

    #[test]
    fn filter_acts_on_the_named_calls_of_this_abi_only() {
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![
                rule(&["sysinfo", "no_such_call"], LinuxSeccompAction::ScmpActNotify),
                rule(&["sysinfo"], LinuxSeccompAction::ScmpActKillProcess),
            ])
            .build()
            .unwrap();
        let p = compile(&s).unwrap();
        let sysinfo = libc::SYS_sysinfo as u32;
        assert_eq!(run(&p, AUDIT_ARCH, sysinfo), libc::SECCOMP_RET_USER_NOTIF, "the first rule wins");
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_getpid as u32), libc::SECCOMP_RET_ALLOW);
        // A rule refuses something: other ABIs, whose numbers differ, are refused.
        assert_eq!(run(&p, 0x4000_0003, sysinfo), errno(libc::ENOSYS), "i386");
        // The view's rule alone refuses nothing: other ABIs get the default.
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![rule(&["sysinfo"], LinuxSeccompAction::ScmpActNotify)])
            .build()
            .unwrap();
        let p = compile(&s).unwrap();
        assert_eq!(run(&p, 0x4000_0003, sysinfo), libc::SECCOMP_RET_ALLOW, "i386: the default");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&p, AUDIT_ARCH, sysinfo | X32_SYSCALL_BIT), libc::SECCOMP_RET_ALLOW, "x32: the default");
    }

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    #[test]
    fn the_default_profile_refuses_what_docker_refuses() {
        let s = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(default_profile())
            .build()
            .unwrap();
        let p = compile(&s).unwrap();
        let nr = |n: libc::c_long| n as u32;
        for call in
            [libc::SYS_keyctl, libc::SYS_bpf, libc::SYS_kexec_load, libc::SYS_mount, libc::SYS_unshare, libc::SYS_setns]
        {
            assert_eq!(run(&p, AUDIT_ARCH, nr(call)), errno(libc::EPERM), "call {call}");
        }
        for call in [libc::SYS_read, libc::SYS_getpid, libc::SYS_ptrace, libc::SYS_sysinfo] {
            assert_eq!(run(&p, AUDIT_ARCH, nr(call)), libc::SECCOMP_RET_ALLOW, "call {call}");
        }
        assert_eq!(run(&p, AUDIT_ARCH, nr(libc::SYS_clone3)), errno(libc::ENOSYS));
        // clone: a thread or a fork passes; any namespace flag, alone or with others, not.
        let clone = |flags: u64| run_args(&p, AUDIT_ARCH, nr(libc::SYS_clone), [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(0x003d_0f00), libc::SECCOMP_RET_ALLOW, "pthread_create's flags");
        assert_eq!(clone(libc::SIGCHLD as u64), libc::SECCOMP_RET_ALLOW, "fork");
        for f in CLONE_NAMESPACES {
            assert_eq!(clone(f | libc::SIGCHLD as u64), errno(libc::EPERM), "flag {f:#x}");
        }
        assert_eq!(clone(0xffff_ffff_0000_0011), libc::SECCOMP_RET_ALLOW, "high bits are not namespace flags");
        // personality: the listed values only, compared on all 64 bits.
        let pers = |v: u64| run_args(&p, AUDIT_ARCH, nr(libc::SYS_personality), [v, 0, 0, 0, 0, 0]);
        for ok in PERSONALITIES {
            assert_eq!(pers(ok), libc::SECCOMP_RET_ALLOW, "{ok:#x}");
        }
        for bad in [0x0040_0000u64 /* ADDR_NO_RANDOMIZE */, 1 << 32, 0x8 | 1 << 40] {
            assert_eq!(pers(bad), errno(libc::EPERM), "{bad:#x}");
        }
        let socket = |family: u64| run_args(&p, AUDIT_ARCH, nr(libc::SYS_socket), [family, 1, 0, 0, 0, 0]);
        assert_eq!(socket(AF_VSOCK), errno(libc::EAFNOSUPPORT));
        assert_eq!(socket(libc::AF_INET as u64), libc::SECCOMP_RET_ALLOW);
        // Every call number finds its rules through the search (zero arguments pass the
        // conditional rules).
        for &(name, nr) in crate::seccomp_x86_64::X86_64 {
            let want = match name {
                n if DENIED.contains(&n) => errno(libc::EPERM),
                "clone3" => errno(libc::ENOSYS),
                _ => libc::SECCOMP_RET_ALLOW,
            };
            assert_eq!(run(&p, AUDIT_ARCH, nr), want, "{name}");
        }
        assert_eq!(run(&p, AUDIT_ARCH, 1000), libc::SECCOMP_RET_ALLOW, "beyond the table");
        assert!(p.len() < 400, "{} instructions", p.len());
        // A deny list cannot be bypassed through another ABI's numbers.
        assert_eq!(run(&p, 0x4000_0003, 11), errno(libc::ENOSYS), "i386");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&p, AUDIT_ARCH, nr(libc::SYS_keyctl) | X32_SYSCALL_BIT), errno(libc::ENOSYS), "x32");
    }

    #[test]
    fn comparisons_are_unsigned_on_64_bits() {
        use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator as Op};
        let values = [0u64, 1, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0001, 0x2_0000_0000, u64::MAX];
        for op in [Op::ScmpCmpEq, Op::ScmpCmpNe, Op::ScmpCmpLt, Op::ScmpCmpLe, Op::ScmpCmpGt, Op::ScmpCmpGe] {
            for &v in &values {
                let mut r = rule(&["personality"], LinuxSeccompAction::ScmpActErrno);
                r.set_args(Some(vec![LinuxSeccompArgBuilder::default()
                    .index(2usize)
                    .value(v)
                    .op(op)
                    .build()
                    .unwrap()]));
                let s = LinuxSeccompBuilder::default()
                    .default_action(LinuxSeccompAction::ScmpActAllow)
                    .syscalls(vec![r])
                    .build()
                    .unwrap();
                let p = compile(&s).unwrap();
                for &x in &values {
                    let want = match op {
                        Op::ScmpCmpEq => x == v,
                        Op::ScmpCmpNe => x != v,
                        Op::ScmpCmpLt => x < v,
                        Op::ScmpCmpLe => x <= v,
                        Op::ScmpCmpGt => x > v,
                        _ => x >= v,
                    };
                    let got = run_args(&p, AUDIT_ARCH, libc::SYS_personality as u32, [0, 0, x, 0, 0, 0])
                        != libc::SECCOMP_RET_ALLOW;
                    assert_eq!(got, want, "{x:#x} {op:?} {v:#x}");
                }
            }
        }
    }

    #[test]
    fn a_bad_condition_is_refused_not_ignored() {
        use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator as Op};
        for arg in [
            LinuxSeccompArgBuilder::default().index(6usize).value(8u64).op(Op::ScmpCmpEq).build().unwrap(),
            LinuxSeccompArgBuilder::default().index(0usize).value(8u64).op(Op::ScmpCmpMaskedEq).build().unwrap(),
        ] {
            let mut r = rule(&["personality"], LinuxSeccompAction::ScmpActAllow);
            r.set_args(Some(vec![arg]));
            let s = LinuxSeccompBuilder::default().syscalls(vec![r]).build().unwrap();
            assert!(matches!(compile(&s), Err(SeccompError::Args(_))));
        }
    }
}
