//! podrun-view: the resource view's keeper and server (podrun_procfs::keeper), a binary of
//! its own so that what stays resident per root is small. podrun starts it; it is not a
//! command for people.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match podrun_procfs::keeper::parse_args(&argv) {
        Ok(roots) => podrun_procfs::keeper::run(roots),
        Err(e) => {
            eprintln!("podrun-view: {e} (it is started by podrun, not by hand)");
            125
        }
    };
    std::process::exit(code)
}
