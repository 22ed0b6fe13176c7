//! `podrun image import|ls|inspect|rm`: every input format, the layer store's sharing, and
//! imports that fail or race leaving the store whole.

mod common;

use common::{busybox_oci, fixtures, hostile, need_root, TestRoot};
use std::os::unix::fs::MetadataExt;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn import_oci_layout_lists_busybox_latest() {
    if !need_root("import_oci_layout_lists_busybox_latest") {
        return;
    }
    let t = TestRoot::new();
    let out = t.import(&busybox_oci(), &[]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");

    let table = t.ok(["image", "ls"]);
    let row = table.lines().nth(1).expect("a row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..2], ["busybox", "latest"], "{table}");

    let list = json(&t.ok(["image", "ls", "--format", "json"]));
    assert_eq!(list[0]["names"], serde_json::json!(["busybox:latest"]));
    assert_eq!(list[0]["layers"], 1);

    let inspect = json(&t.ok(["image", "inspect", "busybox"]));
    let img = &inspect[0];
    assert_eq!(img["config"]["cmd"], serde_json::json!(["sh"]));
    assert!(img["config"]["env"][0].as_str().unwrap().starts_with("PATH=/usr/local/sbin"));
    assert_eq!(img["image_config"]["rootfs"]["type"], "layers");
    assert_eq!(img["os"], "linux");
    // The short id from `ls -q` finds the same image.
    let short = t.ok(["image", "ls", "-q"]);
    let again = json(&t.ok(["image", "inspect", short.trim()]));
    assert_eq!(again[0]["id"], img["id"]);
}

#[test]
fn import_detects_every_format_by_content_and_stores_the_layer_once() {
    if !need_root("import_detects_every_format_by_content_and_stores_the_layer_once") {
        return;
    }
    let t = TestRoot::new();
    let bb = fixtures().join("busybox");
    // File names that say nothing: detection must look at the content.
    let oci_tar = t.path().join("image.bin");
    let docker = t.path().join("other.dat");
    let rootfs = t.path().join("rootfs");
    std::fs::copy(bb.join("busybox-oci.tar"), &oci_tar).unwrap();
    std::fs::copy(bb.join("busybox-docker.tar"), &docker).unwrap();
    std::fs::copy(bb.join("busybox-rootfs.tar.gz"), &rootfs).unwrap();

    let id = |name: &str| json(&t.ok(["image", "inspect", name]))[0]["id"].as_str().unwrap().to_owned();
    t.import(&oci_tar, &["--name", "from-oci-tar"]);
    let out = t.import(&docker, &[]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest", "docker save carries its RepoTags");
    t.import(&rootfs, &["--name", "localhost/plain:1"]);
    t.import(&busybox_oci(), &["--name", "from-dir"]);

    // OCI and docker-save hold the same config, so the same image id.
    assert_eq!(id("from-oci-tar"), id("busybox"));
    assert_eq!(id("from-dir"), id("busybox"));
    assert_ne!(id("localhost/plain:1"), id("busybox"), "a rootfs tarball gets podrun's own config");
    // One uncompressed layer content, one layer directory, whatever the wrapping.
    assert_eq!(t.entries("layers").len(), 1, "{:?}", t.entries("layers"));
    assert!(t.entries("tmp").is_empty());
}

#[test]
fn import_twice_unpacks_nothing_twice_and_shared_layers_are_stored_once() {
    if !need_root("import_twice_unpacks_nothing_twice_and_shared_layers_are_stored_once") {
        return;
    }
    let t = TestRoot::new();
    t.import(&busybox_oci(), &[]);
    let layer = t.store().join("layers").join(&t.entries("layers")[0]);
    let (ino, mtime) = (layer.metadata().unwrap().ino(), layer.join("bin/busybox").metadata().unwrap().ctime_nsec());
    t.import(&busybox_oci(), &[]);
    assert_eq!(layer.metadata().unwrap().ino(), ino, "the layer directory was replaced");
    assert_eq!(layer.join("bin/busybox").metadata().unwrap().ctime_nsec(), mtime, "the layer was rewritten");
    assert_eq!(json(&t.ok(["image", "ls", "--format", "json"])).as_array().unwrap().len(), 1);

    // Two images that share their bottom layer: three layers in all.
    t.import(&hostile("shared-a"), &[]);
    t.import(&hostile("shared-b"), &[]);
    assert_eq!(t.entries("layers").len(), 1 + 3);
}

#[test]
fn image_rm_untags_deletes_and_collects_unused_layers() {
    if !need_root("image_rm_untags_deletes_and_collects_unused_layers") {
        return;
    }
    let t = TestRoot::new();
    t.import(&busybox_oci(), &[]);
    t.import(&busybox_oci(), &["--name", "localhost/bb:2"]);
    t.import(&hostile("shared-a"), &[]);
    assert_eq!(t.entries("layers").len(), 3);

    // By id while two names point at it: refused without --force.
    let id = json(&t.ok(["image", "inspect", "busybox"]))[0]["id"].as_str().unwrap().to_owned();
    let err = t.fails(["image", "rm", &id[7..19]]);
    assert!(err.contains("several names"), "{err}");

    assert_eq!(t.ok(["image", "rm", "busybox"]).trim(), "Untagged: busybox:latest");
    assert_eq!(t.entries("layers").len(), 3, "still used by localhost/bb:2");
    let out = t.ok(["image", "rm", "localhost/bb:2"]);
    assert!(out.contains("Untagged: localhost/bb:2") && out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(t.entries("layers").len(), 2, "busybox's layer is collected");
    assert_eq!(t.entries("images").len(), 1, "its config too");

    let err = t.fails(["image", "rm", "busybox"]);
    assert!(err.contains("no such image: busybox"), "{err}");
    t.ok(["image", "rm", "shared-a"]);
    assert!(t.entries("layers").is_empty());
    assert_eq!(json(&t.ok(["image", "ls", "--format", "json"])), serde_json::json!([]));
}

/// A failed import leaves no image, no layer and no temporary directory behind.
fn assert_store_empty(t: &TestRoot) {
    assert!(t.entries("layers").is_empty(), "layers left: {:?}", t.entries("layers"));
    assert!(t.entries("tmp").is_empty(), "tmp left: {:?}", t.entries("tmp"));
    assert!(t.entries("images").is_empty(), "configs left: {:?}", t.entries("images"));
    assert_eq!(json(&t.ok(["image", "ls", "--format", "json"])), serde_json::json!([]));
}

#[test]
fn broken_images_fail_clearly_and_leave_nothing() {
    if !need_root("broken_images_fail_clearly_and_leave_nothing") {
        return;
    }
    for (fixture, says) in [
        ("oci-bad-digest", "has digest sha256:"),
        ("oci-missing-blob", "which is not in the archive"),
        ("oci-bad-diffid", "(uncompressed) has digest"),
        ("truncated.tar.gz", "truncated or corrupt"),
    ] {
        let t = TestRoot::new();
        let err = t.import_fails(&hostile(fixture), &["--name", "x"]);
        assert!(err.contains(says), "{fixture}: {err}");
        assert!(err.starts_with("podrun: error: importing "), "{fixture}: {err}");
        assert_store_empty(&t);
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    if !need_root("bad_input_is_refused_before_anything_is_written") {
        return;
    }
    let t = TestRoot::new();
    let err = t.import_fails(&busybox_oci(), &["--name", "Bad Name"]);
    assert!(err.contains("invalid image name \"Bad Name\""), "{err}");
    let err = t.import_fails(&t.path().join("nope"), &[]);
    assert!(err.contains("nope") && err.contains("No such file"), "{err}");
    let empty = t.path().join("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    let err = t.import_fails(&empty, &[]);
    assert!(err.contains("not an image"), "{err}");
    let err = t.fails(["image", "inspect", "missing"]);
    assert!(err.contains("no such image: missing"), "{err}");
    assert_store_empty(&t);

    // Usage errors are podrun's own (125); --help is not an error.
    let out = t.podrun(["image", "import"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
    let out = t.podrun(["image", "import", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker save"));
}

#[test]
fn concurrent_imports_of_one_image_both_succeed_with_one_copy() {
    if !need_root("concurrent_imports_of_one_image_both_succeed_with_one_copy") {
        return;
    }
    let t = TestRoot::new();
    let archive = fixtures().join("busybox/busybox-oci.tar");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_podrun"))
            .arg("--root")
            .arg(t.store())
            .args(["image", "import"])
            .arg(&archive)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for _ in 0..3 {
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert_eq!(t.entries("layers").len(), 1);
    assert!(t.entries("tmp").is_empty(), "{:?}", t.entries("tmp"));
    let list = json(&t.ok(["image", "ls", "--format", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["names"], serde_json::json!(["busybox:latest"]));
    // The layer is whole: busybox is there and runs.
    let layer = t.store().join("layers").join(&t.entries("layers")[0]);
    let out = std::process::Command::new(layer.join("bin/busybox")).arg("true").status().unwrap();
    assert!(out.success());
}

#[test]
fn import_takes_plain_gzip_and_zstd_rootfs_tarballs_alike() {
    if !need_root("import_takes_plain_gzip_and_zstd_rootfs_tarballs_alike") {
        return;
    }
    let t = TestRoot::new();
    let gz = fixtures().join("busybox/busybox-rootfs.tar.gz");
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()), &mut tar).unwrap();
    let zst = ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    std::fs::write(t.path().join("bb.tar"), &tar).unwrap();
    std::fs::write(t.path().join("bb.tar.zst"), &zst).unwrap();
    for (file, name) in [(gz, "gz"), (t.path().join("bb.tar"), "plain"), (t.path().join("bb.tar.zst"), "zst")] {
        let out = t.try_import(&file, &["--name", name]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "not a terminal, so no progress: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Same content, same image: one record with three names, one layer.
    let list = json(&t.ok(["image", "ls", "--format", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["names"], serde_json::json!(["gz:latest", "plain:latest", "zst:latest"]));
    assert_eq!(t.entries("layers").len(), 1);
}

#[test]
fn import_shows_progress_on_a_terminal() {
    if !need_root("import_shows_progress_on_a_terminal") {
        return;
    }
    let t = TestRoot::new();
    let cmd = format!(
        "{} --root {} image import {}",
        env!("CARGO_BIN_EXE_podrun"),
        t.store().display(),
        busybox_oci().display()
    );
    // script(1) gives podrun a pseudo-terminal as stdout and stderr.
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script(1) from util-linux");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("layer 1/1 ") && shown.contains(" files"), "{shown}");
    assert!(shown.contains("Loaded image: busybox:latest"), "{shown}");
}

#[test]
fn import_killed_midway_leaves_no_image_or_layer() {
    if !need_root("import_killed_midway_leaves_no_image_or_layer") {
        return;
    }
    let t = TestRoot::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_podrun"))
        .arg("--root")
        .arg(t.store())
        .args(["image", "import", "--name", "many"])
        .arg(hostile("many-files.tar.gz"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it is unpacking, then kill -9 (the child is ours, by pid).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let busy = t.entries("tmp").iter().any(|w| t.store().join("tmp").join(w).join("layer-0/d000").exists());
        if busy {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the import ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "the import never started unpacking");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(t.entries("layers").is_empty(), "{:?}", t.entries("layers"));
    assert!(t.entries("images").is_empty());
    assert_eq!(json(&t.ok(["image", "ls", "--format", "json"])), serde_json::json!([]));
    // The next import cleans the dead one's work directory.
    t.import(&busybox_oci(), &[]);
    assert!(t.entries("tmp").is_empty(), "{:?}", t.entries("tmp"));
    assert_eq!(t.entries("layers").len(), 1);
}

#[test]
fn import_picks_an_image_from_a_layout_holding_several() {
    if !need_root("import_picks_an_image_from_a_layout_holding_several") {
        return;
    }
    let t = TestRoot::new();
    let err = t.import_fails(&hostile("two-tags"), &[]);
    assert!(err.contains("holds 2 images") && err.contains("choose one with --name"), "{err}");
    let err = t.import_fails(&hostile("two-tags"), &["--name", "two:3.0"]);
    assert!(err.contains("no image in the archive matches two:3.0"), "{err}");
    assert_store_empty(&t);

    // --name picks by the tag the layout gives each manifest.
    t.import(&hostile("two-tags"), &["--name", "two:2.0"]);
    t.import(&hostile("two-tags"), &["--name", "localhost/other:1.0"]);
    let which = |name: &str| {
        let img = json(&t.ok(["image", "inspect", name]));
        let layer = img[0]["layers"][0]["diff_id"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
        std::fs::read_to_string(t.store().join("layers").join(layer).join("which")).unwrap()
    };
    assert_eq!(which("two:2.0"), "2.0");
    assert_eq!(which("localhost/other:1.0"), "1.0");
}

#[test]
fn import_picks_this_hosts_platform_from_a_multi_arch_image() {
    if !need_root("import_picks_this_hosts_platform_from_a_multi_arch_image") {
        return;
    }
    let t = TestRoot::new();
    assert_eq!(t.import(&hostile("multi-arch"), &[]).trim(), "Loaded image: multi:latest");
    let img = json(&t.ok(["image", "inspect", "multi"]));
    assert_eq!(img[0]["architecture"], "amd64");
    assert_eq!(t.entries("layers").len(), 1, "only this platform's layer is unpacked");
}

#[test]
fn import_takes_compressed_docker_save_and_oci_archives() {
    if !need_root("import_takes_compressed_docker_save_and_oci_archives") {
        return;
    }
    let t = TestRoot::new();
    for (src, name) in [("busybox-docker.tar", "from-docker"), ("busybox-oci.tar", "from-oci")] {
        let gz = t.path().join(format!("{src}.gz"));
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
        std::io::copy(&mut std::fs::File::open(fixtures().join("busybox").join(src)).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
        t.import(&gz, &["--name", name]);
    }
    let list = json(&t.ok(["image", "ls", "--format", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "both are the busybox image: {list}");
    assert_eq!(list[0]["names"], serde_json::json!(["from-docker:latest", "from-oci:latest"]));
    assert!(t.entries("tmp").is_empty(), "the decompressed copy is gone");
}
