//! Shell completions and man pages, generated from the clap definitions in mod.rs so that
//! they say what `--help` says and never drift from it. Nothing here reads podrun's state.

use super::*;
use clap::CommandFactory;
use std::path::Path;

/// `podrun completion SHELL`: the script on stdout.
pub(super) fn completion(shell: clap_complete::Shell) -> Result<()> {
    // Generated into memory first: clap_complete panics on a write error, and a closed pipe
    // should be an error, not an abort.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_commands(), "podrun", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).context("writing the completion script")
}

/// podrun's commands less the hidden ones, which clap_complete would offer too
/// (clap-rs/clap#1335). A `Command` cannot drop a subcommand, so the root is built again from
/// its own arguments and its visible subcommands, taken as they are: only the root has
/// hidden ones, and nothing of the interface is restated here.
fn visible_commands() -> clap::Command {
    let all = Cli::command();
    clap::Command::new("podrun")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .args(all.get_arguments().cloned())
        .subcommands(all.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// `podrun man DIR`: one page per command that --help lists, named as `man` looks them up
/// (`man podrun-sandbox-ls` for `podrun sandbox ls`); prints each page's path.
pub(super) fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Built once from the top, so that each subcommand has its full name (podrun-sandbox-ls)
    // and the global flags; `help` gets no page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_pages(&cmd, dir, &mut std::io::stdout().lock())
}

fn write_pages(cmd: &clap::Command, dir: &Path, out: &mut impl Write) -> Result<()> {
    // The footer names podrun's version, not the subcommand's ("ls 0.1.0").
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("podrun {}", env!("CARGO_PKG_VERSION")));
    let path = man.generate_to(dir).with_context(|| format!("writing {}", dir.join(man.get_filename()).display()))?;
    writeln!(out, "{}", path.display())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, out)?;
    }
    Ok(())
}
