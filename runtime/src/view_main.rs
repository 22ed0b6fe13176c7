//! podrun-view: the resource view's server (podrun_procfs::server), a binary of its own so
//! that what stays resident per root is small. The view's keeper starts it; it is not a
//! command for people.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match podrun_procfs::server::parse_args(&argv) {
        Ok(args) => podrun_procfs::server::run(args),
        Err(e) => {
            eprintln!("podrun-view: {e} (it is started by podrun's view keeper, not by hand)");
            125
        }
    };
    std::process::exit(code)
}
