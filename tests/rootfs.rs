//! The container rootfs: an overlay of the image's layers with a private upper dir, mounted
//! with the library function, used with chroot, and torn down leaving nothing behind.
//! Mounts happen in a forked child inside its own mount namespace, so even a failing test
//! cannot leave a mount on the host.

mod common;

use common::{busybox_oci, hostile, need_root, TestRoot};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use podrun::ids::ContainerId;
use podrun::image::Store;
use podrun::mount::overlay::{mount_rootfs, unmount_all_under};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Runs `body` in a forked child with a private mount namespace; fails the test unless the
/// child exits 0.
fn in_child_mount_ns(body: impl FnOnce() -> Result<(), String>) {
    // SAFETY: the child only runs `body` and then _exits; it never returns into the harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
                mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                    .map_err(|e| format!("make / private: {e}"))?;
                body()
            }));
            let code = match r {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("child: {e}");
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: _exit never returns and skips the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, 0) => {}
            other => panic!("child failed: {other:?}"),
        },
    }
}

/// Runs `argv` chrooted into `root`; returns stdout.
fn chrooted(root: &Path, argv: &[&str]) -> Result<String, String> {
    let root = root.to_owned();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).env_clear().env("PATH", "/bin:/usr/bin:/sbin:/usr/sbin");
    // SAFETY: chroot and chdir are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| format!("running {argv:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{argv:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

#[test]
fn rootfs_runs_busybox_and_leaves_nothing_behind() {
    if !need_root("rootfs_runs_busybox_and_leaves_nothing_behind") {
        return;
    }
    let t = TestRoot::new();
    t.import(&busybox_oci(), &[]);
    let store_dir = t.store();
    in_child_mount_ns(|| {
        let store = Store::open(&store_dir).map_err(|e| e.to_string())?;
        let image = store.resolve("busybox").map_err(|e| e.to_string())?;
        let cid = ContainerId::parse("c1").unwrap();
        let rootfs = store.create_rootfs(&cid, &image).map_err(|e| e.to_string())?;
        mount_rootfs(&rootfs, &rootfs.merged).map_err(|e| e.to_string())?;
        chrooted(&rootfs.merged, &["/bin/busybox", "true"])?;
        let out = chrooted(&rootfs.merged, &["/bin/sh", "-c", "echo written > /new; rm /etc/group; cat /etc/passwd"])?;
        check(out.starts_with("root:x:0:0"), "/etc/passwd is the image's")?;
        // Writes land in the container's upper dir; the layer is never written.
        let layer = &rootfs.lowers[0];
        check(rootfs.upper.join("new").exists(), "the write is in upper/")?;
        check(!layer.join("new").exists() && layer.join("etc/group").exists(), "the layer was written")?;
        // Teardown: unmount and remove, leaving no mount and no directory.
        store.remove_rootfs(&cid).map_err(|e| e.to_string())?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        check(!mounts.contains(store_dir.to_str().unwrap()), "a mount is left under the store")?;
        check(!rootfs.dir.exists(), "the container dir is left")?;
        check(layer.join("etc/group").exists(), "removing the rootfs touched the layer")
    });
    assert!(t.entries("containers").is_empty());
}

#[test]
fn rootfs_hides_whiteouts_and_opaque_dirs_of_lower_layers() {
    if !need_root("rootfs_hides_whiteouts_and_opaque_dirs_of_lower_layers") {
        return;
    }
    let t = TestRoot::new();
    t.import(&hostile("whiteouts"), &[]);
    let store_dir = t.store();
    in_child_mount_ns(|| {
        let store = Store::open(&store_dir).map_err(|e| e.to_string())?;
        let image = store.resolve("whiteouts").map_err(|e| e.to_string())?;
        let cid = ContainerId::parse("w").unwrap();
        let rootfs = store.create_rootfs(&cid, &image).map_err(|e| e.to_string())?;
        mount_rootfs(&rootfs, &rootfs.merged).map_err(|e| e.to_string())?;
        let m = &rootfs.merged;
        let seen = (m.join("etc/a").exists(), m.join("etc/b").exists(), m.join("d/x").exists(), m.join("d/y").exists());
        unmount_all_under(&rootfs.dir).map_err(|e| e.to_string())?;
        store.remove_rootfs(&cid).map_err(|e| e.to_string())?;
        check(seen == (false, true, false, true), &format!("etc/a, etc/b, d/x, d/y visible: {seen:?}"))
    });
}

#[test]
fn image_in_use_by_a_rootfs_cannot_be_removed() {
    if !need_root("image_in_use_by_a_rootfs_cannot_be_removed") {
        return;
    }
    let t = TestRoot::new();
    t.import(&busybox_oci(), &[]);
    let store = Store::open(&t.store()).unwrap();
    let cid = ContainerId::parse("user").unwrap();
    store.create_rootfs(&cid, &store.resolve("busybox").unwrap()).unwrap();
    let err = t.fails(["image", "rm", "busybox"]);
    assert!(err.contains("in use by container(s) user"), "{err}");
    assert!(matches!(
        store.create_rootfs(&cid, &store.resolve("busybox").unwrap()),
        Err(podrun::image::Error::RootfsExists(_))
    ));
    store.remove_rootfs(&cid).unwrap();
    t.ok(["image", "rm", "busybox"]);
    assert!(t.entries("layers").is_empty() && t.entries("containers").is_empty());
}
