//! The `podrun` binary: parse the command line, dispatch, and map errors to exit codes
//! like docker and podman: 125 when podrun itself fails (bad flags included), 0 on success.

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
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_PODRUN) } else { ExitCode::SUCCESS };
        }
    };
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Reported>().is_none() {
                eprintln!("podrun: error: {e:#}");
            }
            ExitCode::from(EXIT_PODRUN)
        }
    }
}
