//! Builds podrun-pause (pause/src/main.rs) and embeds it in podrun, so podrun is one file
//! and starts pause from a sealed memfd (see runtime/src/pause.rs). It is compiled here with
//! rustc directly, because Cargo cannot yet depend on another package's binary.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "pause/src/main.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("podrun-pause");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition=2021", "--crate-type=bin", "--crate-name=podrun_pause", "--target", &target]);
    for c in
        ["opt-level=s", "panic=abort", "debuginfo=0", "strip=symbols", "relocation-model=static", "codegen-units=1"]
    {
        cmd.args(["-C", c]);
    }
    for a in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"] {
        cmd.arg("-C").arg(format!("link-arg={a}"));
    }
    cmd.arg("-o").arg(&out).arg(src);
    let st = cmd.status().expect("running rustc for podrun-pause");
    assert!(st.success(), "building podrun-pause failed: {st}");
}
