//! `openmid`: the one binary. Each subcommand is a thin layer over the library crates:
//! `instance` and `mid` run the two sides, `demo` shows a call end to end, `ctl` speaks
//! the admin API.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// openmid: an instance (hub) in the cloud, MID Servers inside private networks that
/// dial out to it and run work against internal systems.
#[derive(Parser)]
#[command(name = "openmid", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the instance: ECC queue, MID registry and HTTPS API.
    Instance(commands::instance::Args),
    /// Run a MID Server from a TOML config.
    Mid(commands::mid::Args),
    /// Start an instance, an internal service and a MID on loopback, and send a REST
    /// call through the MID.
    Demo(commands::demo::Args),
    /// Call an instance's admin API (OPENMID_URL, OPENMID_TOKEN, OPENMID_CA).
    Ctl(Box<commands::ctl::Args>),
    /// Measure the system as users run it (failover, …).
    Bench(commands::bench::Args),
    /// Print a shell completion script: `openmid completions bash > /etc/bash_completion.d/openmid`.
    Completions(commands::completions::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Instance(_) | Command::Mid(_) => "info",
        Command::Demo(_) | Command::Ctl(_) | Command::Completions(_) => "warn",
        Command::Bench(_) => "error",
    };
    openmid::entry::run(default_level, async move {
        match cli.command {
            Command::Instance(args) => commands::instance::run(args).await,
            Command::Mid(args) => commands::mid::run(args, &["mid"]).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Ctl(args) => commands::ctl::run(*args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Completions(args) => commands::completions::run::<Cli>(args),
        }
    })
}
