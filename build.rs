//! Builds podrun's no-std binaries, podrun-pause (pause/src/main.rs) and podrun-keeper
//! (pause/src/keeper.rs), and embeds them in podrun, so podrun is one file and starts them
//! from sealed memfds (see runtime/src/pause.rs). They are compiled here with rustc
//! directly, because Cargo cannot yet depend on another package's binary.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=pause/src");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    for (name, src) in [("podrun-pause", "pause/src/main.rs"), ("podrun-keeper", "pause/src/keeper.rs")] {
        let mut cmd = Command::new(&rustc);
        let crate_name = name.replace('-', "_");
        cmd.args(["--edition=2021", "--crate-type=bin", "--crate-name", &crate_name, "--target", &target]);
        for c in
            ["opt-level=s", "panic=abort", "debuginfo=0", "strip=symbols", "relocation-model=static", "codegen-units=1"]
        {
            cmd.args(["-C", c]);
        }
        for a in ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"] {
            cmd.arg("-C").arg(format!("link-arg={a}"));
        }
        cmd.arg("-o").arg(out_dir.join(name)).arg(src);
        let st = cmd.status().unwrap_or_else(|e| panic!("running rustc for {name}: {e}"));
        assert!(st.success(), "building {name} failed: {st}");
    }
}
