//! `openmid-mid`: the MID Server alone — what runs on a host inside a private network.
//! The same command as `openmid mid`, in a binary without the instance, so the agent
//! keeps less of itself in memory (see the library's doc for why that is).

use clap::Parser;
use std::process::ExitCode;

/// openmid MID Server: dials out to its instance over TLS, takes work from the ECC
/// queue, runs it against internal systems under its egress policy, and sends the
/// results back.
#[derive(Parser)]
#[command(name = "openmid-mid", version)]
struct Cli {
    #[command(flatten)]
    mid: openmid::mid_command::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    openmid::entry::run("info", openmid::mid_command::run(cli.mid, &[]))
}
