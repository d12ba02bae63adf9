//! `openmid completions SHELL`: a completion script for bash, zsh or fish, made from
//! the same clap definition the binary parses with, so it never falls behind.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;
use std::process::ExitCode;

/// Flags of `openmid completions`.
#[derive(clap::Args)]
pub struct Args {
    /// bash, zsh or fish (also elvish, powershell).
    shell: Shell,
}

/// Prints the script for the command line `C` to stdout.
pub fn run<C: CommandFactory>(args: Args) -> Result<ExitCode> {
    let mut command = C::command();
    clap_complete::generate(args.shell, &mut command, "openmid", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
