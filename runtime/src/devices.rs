//! Which devices a container may open: the device cgroup. CAP_MKNOD (a default capability,
//! as in Docker) lets a container create any device node; without this allow-list it could
//! then open the host's disks or /dev/fuse through it. As runc and Docker do, a container
//! may create nodes of any device but read and write only the few every container gets
//! (null, zero, full, random, urandom, tty, console, ptmx and its pseudo-terminals).
//!
//! On cgroup v1 the rules are written to the `devices` controller; on v2, which has no
//! such controller, they are an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the
//! container's cgroup, as crun and runc do. It lives as long as the cgroup.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Access bits, as the kernel's BPF_DEVCG_ACC_* and v1's "rwm".
const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
/// Device types, as BPF_DEVCG_DEV_*.
const BLOCK: u32 = 1;
const CHAR: u32 = 2;

/// (type, major, minor, access); None matches any number.
type Rule = (u32, Option<u32>, Option<u32>, u32);

/// runc's and Docker's default list.
const RULES: [Rule; 11] = [
    (CHAR, None, None, MKNOD),
    (BLOCK, None, None, MKNOD),
    (CHAR, Some(1), Some(3), MKNOD | READ | WRITE), // null
    (CHAR, Some(1), Some(5), MKNOD | READ | WRITE), // zero
    (CHAR, Some(1), Some(7), MKNOD | READ | WRITE), // full
    (CHAR, Some(1), Some(8), MKNOD | READ | WRITE), // random
    (CHAR, Some(1), Some(9), MKNOD | READ | WRITE), // urandom
    (CHAR, Some(5), Some(0), MKNOD | READ | WRITE), // tty
    (CHAR, Some(5), Some(1), MKNOD | READ | WRITE), // console
    (CHAR, Some(5), Some(2), MKNOD | READ | WRITE), // ptmx
    (CHAR, Some(136), None, MKNOD | READ | WRITE),  // pts/*
];

/// A host device a container is given (`--device HOST[:CTR][:PERMS]`, docker's flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: std::path::PathBuf,
    /// Where the container sees it (default: the host's path).
    pub target: String,
    block: bool,
    major: u32,
    minor: u32,
    access: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid device {0:?}: {DEVICE_FORMAT}")]
pub struct DeviceError(pub String);

/// How a device is given.
pub const DEVICE_FORMAT: &str =
    "HOSTDEV[:CTRPATH][:PERMS], e.g. /dev/sdb:/dev/xvdb:rw, with a character or block device and PERMS of r, w, m";

impl Device {
    pub fn parse(s: &str) -> Result<Device, DeviceError> {
        let bad = || DeviceError(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        let perms = |p: &str| access_bits(p).filter(|&a| a != 0);
        let (host, target, access) = match parts[..] {
            [h] => (h, h, READ | WRITE | MKNOD),
            [h, t] if t.starts_with('/') => (h, t, READ | WRITE | MKNOD),
            [h, p] => (h, h, perms(p).ok_or_else(bad)?),
            [h, t, p] => (h, t, perms(p).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if !host.starts_with('/') || !target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Err(bad());
        }
        let (block, major, minor) = node(host).ok_or_else(bad)?;
        Ok(Device { host: host.into(), target: target.to_owned(), block, major, minor, access })
    }

    /// An allow rule of an OCI spec (`linux.resources.devices`) for one device number:
    /// nothing to bind, only the cgroup's permission.
    pub fn allowed(block: bool, major: u32, minor: u32, access: &str) -> Option<Device> {
        let access = access_bits(access)?;
        Some(Device { host: std::path::PathBuf::new(), target: String::new(), block, major, minor, access })
    }

    /// Whether the standard list already allows `access` to this device (or number range):
    /// an OCI client's copy of the defaults (containerd's, podman's) needs nothing more.
    pub fn standard(block: bool, major: Option<u32>, minor: Option<u32>, access: &str) -> bool {
        let Some(want) = Device::allowed(block, 0, 0, access).map(|d| d.access) else { return false };
        let t = if block { BLOCK } else { CHAR };
        RULES.iter().any(|&(rt, rmaj, rmin, racc)| {
            rt == t && (rmaj.is_none() || rmaj == major) && (rmin.is_none() || rmin == minor) && racc & want == want
        })
    }

    fn rule(&self) -> Rule {
        (if self.block { BLOCK } else { CHAR }, Some(self.major), Some(self.minor), self.access)
    }
}

/// "rwm" (or part of it) as access bits; None for another letter.
fn access_bits(letters: &str) -> Option<u32> {
    letters.chars().try_fold(0, |a, c| {
        Some(
            a | match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => return None,
            },
        )
    })
}

/// A device node's (is it a block device, major, minor); None for anything else.
pub fn node(path: &str) -> Option<(bool, u32, u32)> {
    use nix::sys::stat::{major, minor, stat, SFlag};
    let st = stat(path).ok()?;
    let block = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFBLK => true,
        SFlag::S_IFCHR => false,
        _ => return None,
    };
    Some((block, major(st.st_rdev) as u32, minor(st.st_rdev) as u32))
}

/// An access mask as cgroup v1 and the OCI spec write it: "rwm" or a part of it.
fn letters(acc: u32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(b, _)| acc & b != 0).map(|(_, c)| *c).collect()
}

/// The default rules, then those for the devices given.
fn rules(extra: &[Device]) -> Vec<Rule> {
    RULES.iter().copied().chain(extra.iter().map(Device::rule)).collect()
}

/// The same list as the OCI spec's `linux.resources.devices`, for `podrun inspect`: deny
/// all, then each rule.
pub fn oci_rules(extra: &[Device]) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let mut v = vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().expect("all fields set")];
    for (t, maj, min, acc) in rules(extra) {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(if t == BLOCK { LinuxDeviceType::B } else { LinuxDeviceType::C })
            .access(letters(acc));
        if let Some(m) = maj {
            b = b.major(i64::from(m));
        }
        if let Some(m) = min {
            b = b.minor(i64::from(m));
        }
        v.push(b.build().expect("all fields set"));
    }
    v
}

/// The v1 `devices.allow` lines (after "a" to `devices.deny`), one write each.
pub fn v1_allow(extra: &[Device]) -> Vec<String> {
    let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
    rules(extra)
        .iter()
        .map(|&(t, maj, min, acc)| {
            format!("{} {}:{} {}", if t == BLOCK { 'b' } else { 'c' }, num(maj), num(min), letters(acc))
        })
        .collect()
}

/// One eBPF instruction: opcode, dst and src registers, offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// The opcodes used (BPF_CLASS | BPF_OP/SIZE | BPF_SRC).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program: r2 = access, r3 = type, r4 = major, r5 = minor (struct
/// bpf_cgroup_dev_ctx: access_type = access << 16 | type, major, minor); then each rule:
/// if it matches and the access asked is within the rule's, return 1 (allow); at the end,
/// return 0 (EPERM).
pub fn program(extra: &[Device]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 3, 0, 0, 0xffff),
        insn(RSH_K, 2, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for (t, maj, min, acc) in rules(extra) {
        // Tests that jump to the rule's end when they fail, then "allow".
        let mut tests = vec![(3u8, t as i32)];
        tests.extend(maj.map(|m| (4u8, m as i32)));
        tests.extend(min.map(|m| (5u8, m as i32)));
        // r6 = access & ~allowed; must be 0.
        let len = tests.len() + 3 + 2; // the tests, r6's three, then mov r0 + exit
        let mut at = 0;
        for (reg, v) in tests {
            at += 1;
            p.push(insn(JNE_K, reg, 0, (len - at) as i16, v));
        }
        p.push(insn(MOV_X, 6, 2, 0, 0));
        p.push(insn(AND_K, 6, 0, 0, !(acc as i32)));
        at += 3;
        p.push(insn(JNE_K, 6, 0, (len - at) as i16, 0));
        p.push(insn(MOV_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a zeroed bpf_attr prefix of 128 bytes, filled for `cmd`; the kernel
    // reads at most that many.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program and attaches it to the v2 cgroup `dir` (with BPF_F_ALLOW_MULTI, so a
/// parent's program, if any, still applies too).
pub fn attach_v2(dir: BorrowedFd<'_>, extra: &[Device]) -> std::io::Result<()> {
    let prog = program(extra);
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..55].copy_from_slice(b"podrun\0");
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on a device access the way the kernel would (the few opcodes it uses).
    fn decide(typ: u32, major: u32, minor: u32, access: u32) -> bool {
        decide_with(&[], typ, major, minor, access)
    }

    fn decide_with(extra: &[Device], typ: u32, major: u32, minor: u32, access: u32) -> bool {
        let p = program(extra);
        let mut r = [0u64; 11];
        let ctx = [access << 16 | typ, major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                MOV_X => r[dst] = r[src],
                MOV_K => r[dst] = i.imm as i64 as u64,
                AND_K => r[dst] &= i.imm as i64 as u64,
                RSH_K => r[dst] >>= i.imm,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc = (pc as isize + i.off as isize) as usize,
                JNE_K => {}
                EXIT => return r[0] == 1,
                c => panic!("opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn only_the_standard_devices_open_and_any_node_can_be_made() {
        for (maj, min) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, 0), (136, 7)] {
            assert!(decide(CHAR, maj, min, READ | WRITE), "c {maj}:{min} rw");
            assert!(decide(CHAR, maj, min, READ), "c {maj}:{min} r");
        }
        for (t, maj, min) in
            [(CHAR, 10, 229), (CHAR, 1, 1), (CHAR, 1, 11), (BLOCK, 254, 0), (BLOCK, 8, 0), (BLOCK, 1, 3)]
        {
            assert!(!decide(t, maj, min, READ), "{t} {maj}:{min} r");
            assert!(!decide(t, maj, min, WRITE), "{t} {maj}:{min} w");
            assert!(decide(t, maj, min, MKNOD), "{t} {maj}:{min} m");
        }
        // Access beyond the rule's: mknod is allowed, mknod + read of a disk is not.
        assert!(!decide(BLOCK, 8, 0, MKNOD | READ));
    }

    #[test]
    fn a_device_given_opens_with_its_permissions_only() {
        let null = Device::parse("/dev/null:/dev/mine:r").unwrap();
        assert_eq!((null.block, null.major, null.minor, null.target.as_str()), (false, 1, 3, "/dev/mine"));
        let full = Device::parse("/dev/full:r").unwrap();
        assert_eq!(full.target, "/dev/full");
        let mut fake = full.clone();
        (fake.block, fake.major, fake.minor) = (true, 8, 16);
        assert!(decide_with(&[fake.clone()], BLOCK, 8, 16, READ));
        assert!(!decide_with(&[fake.clone()], BLOCK, 8, 16, WRITE), "r only");
        assert!(!decide_with(&[fake], BLOCK, 8, 17, READ), "another minor");
        assert_eq!(Device::parse("/dev/zero").unwrap().access, READ | WRITE | MKNOD);
        for bad in ["/etc/passwd", "dev/null", "/dev/null:rx", "/dev/null:/a:/b:r", "/dev/null:/../x", "/nonexistent"] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
        assert!(v1_allow(&[Device::parse("/dev/null:/x:rw").unwrap()]).contains(&"c 1:3 rw".to_owned()));
    }

    #[test]
    fn v1_lines_are_the_same_rules() {
        let v = v1_allow(&[]);
        assert_eq!(v[0], "c *:* m");
        assert_eq!(v[1], "b *:* m");
        assert!(v.contains(&"c 1:3 rwm".to_owned()) && v.contains(&"c 136:* rwm".to_owned()));
        assert_eq!(v.len(), RULES.len());
    }
}
