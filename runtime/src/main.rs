//! The `podrun` binary: parse the command line, dispatch, and map errors to exit codes
//! like docker and podman: 125 when podrun itself fails (bad flags included), 126 when the
//! workload cannot be executed, 127 when it is not found; `run` and `exec` otherwise exit
//! with the workload's status (128+N when signal N killed it).

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Exit status for an error of podrun's own (docker run's convention).
const EXIT_PODRUN: u8 = 125;

/// An error already printed where it happened (e.g. one of several `image rm` arguments).
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported above")
    }
}

impl std::error::Error for Reported {}

fn main() -> ExitCode {
    // A detached container's waiter running podrun again once the container has ended: its
    // request is the monitor's own (monitor.rs), not a command line.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match podrun::monitor::Resume::from_args(&args) {
        Some(Ok((req, status))) => {
            if let Ok(store) = podrun::image::Store::open(&req.root) {
                podrun::monitor::resume(&store, &req, status);
            }
            return ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("podrun: error: {e}");
            return ExitCode::from(EXIT_PODRUN);
        }
        None => {}
    }
    // runc's command line, as containerd, conmon and podman call it (cli/oci).
    if cli::oci::is_oci(&args) {
        return ExitCode::from(cli::oci::main(args));
    }
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_PODRUN) } else { ExitCode::SUCCESS };
        }
    };
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.downcast_ref::<Reported>().is_none() {
                eprintln!("podrun: error: {}", cli::report(&e));
            }
            // 126/127 when the workload could not be executed or found, as a shell says.
            let code = e.downcast_ref::<podrun::container::ContainerError>().map_or(EXIT_PODRUN, |c| c.exit_code());
            ExitCode::from(code)
        }
    }
}
