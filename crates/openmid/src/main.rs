//! `openmid`: the one binary. Each subcommand is a thin layer over the library crates:
//! `instance` and `mid` run the two sides, `demo` shows a call end to end, `ctl` speaks
//! the admin API.

mod commands;
mod config_file;

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
    init_logging(default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Instance(args) => commands::instance::run(args).await,
            Command::Mid(args) => commands::mid::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Ctl(args) => commands::ctl::run(*args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Completions(args) => commands::completions::run::<Cli>(args),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each said once: a cause whose text the
/// message before it already holds (a library that prints its source and also
/// returns it as `source()`) is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || previous.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        previous = text;
    }
    out
}

/// Logs to stderr; `OPENMID_LOG` sets the filter (e.g. `debug`, `openmid_mid=debug`),
/// `OPENMID_LOG_FORMAT=json` switches to JSON lines.
fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("OPENMID_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("OPENMID_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
